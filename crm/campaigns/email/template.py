"""Campaign e-mail templates: personal fields, Persian/English, RTL-safe HTML, tracked links.

Pure: everything here turns strings into strings.

Placeholders are ``{{name}}`` or ``{{name|fallback}}`` (the fallback when the record has
no value, e.g. ``{{first_name|دوست عزیز}}``). Names: ``PERSONAL_FIELDS`` and
``custom.<key>`` for custom fields. In HTML text each value is escaped and isolated in
``<bdi>`` so a Latin name inside Persian text (or the reverse) never reorders the sentence
around it; inside a tag (an attribute) it is only escaped. The subject and the text part
get the plain value.

Each recipient gets the template's version in their language (the record's ``language``)
or the template's default; an empty version falls back to the other language. The HTML is
wrapped in a document with ``lang``/``dir`` set (``rtl`` for Persian) unless the template
is a whole document already, an unsubscribe footer is added unless the template places
``{{unsubscribe_url}}`` itself, and the open pixel goes last.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Protocol

PERSONAL_FIELDS = (
    "first_name",
    "last_name",
    "full_name",
    "name",
    "email",
    "company",
    "job_title",
    "city",
    "owner_name",
    "campaign",
    "offer",
    "unsubscribe_url",
)
LANGUAGES = ("fa", "en")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:\|([^{}]*))?\}\}")
_TAG = re.compile(r"<[^>]*>")
_LINK = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}

FOOTER = {
    "fa": (
        '<p dir="rtl" style="margin-top:24px;font-size:12px;color:#666;text-align:right">'
        'اگر نمی‌خواهید این نامه‌ها را دریافت کنید، <a href="{url}">لغو اشتراک</a>.</p>'
    ),
    "en": (
        '<p dir="ltr" style="margin-top:24px;font-size:12px;color:#666;text-align:left">'
        'To stop receiving these e-mails, <a href="{url}">unsubscribe</a>.</p>'
    ),
}
TEXT_FOOTER = {
    "fa": "برای لغو اشتراک: {url}",
    "en": "To unsubscribe: {url}",
}


class TemplateLike(Protocol):
    default_language: str
    subject_fa: str
    subject_en: str
    html_fa: str
    html_en: str
    text_fa: str | None
    text_en: str | None


@dataclass(frozen=True)
class RenderedEmail:
    language: str
    subject: str
    html: str
    text: str


def placeholders(template: str) -> list[str]:
    return [m.group(1) for m in _PLACEHOLDER.finditer(template)]


def check(parts: Mapping[str, str | None]) -> list[dict[str, str]]:
    """Problems in the template's parts: unknown fields, unclosed ``{{``."""
    errors = []
    for part, text in parts.items():
        if not text:
            continue
        for name in placeholders(text):
            if name not in PERSONAL_FIELDS and not re.fullmatch(r"custom\.[a-z][a-z0-9_]*", name):
                errors.append(
                    {
                        "field": part,
                        "reason": f"unknown field {{{{{name}}}}} (known: "
                        + ", ".join(PERSONAL_FIELDS)
                        + ", custom.<key>)",
                    }
                )
        leftover = _PLACEHOLDER.sub("", text)
        if "{{" in leftover or "}}" in leftover:
            errors.append({"field": part, "reason": "a {{ placeholder }} is not closed"})
    return errors


def _value(values: Mapping[str, str | None], name: str, fallback: str | None) -> str:
    value = values.get(name)
    if value is None or str(value).strip() == "":
        return (fallback or "").strip()
    return str(value)


def render_plain(template: str, values: Mapping[str, str | None]) -> str:
    return _PLACEHOLDER.sub(lambda m: _value(values, m.group(1), m.group(2)), template)


def render_html(template: str, values: Mapping[str, str | None]) -> str:
    """Fill placeholders: isolated and escaped in text, escaped inside tags."""
    out: list[str] = []
    pos = 0
    for tag in _TAG.finditer(template):
        out.append(_fill_text(template[pos : tag.start()], values))
        out.append(
            _PLACEHOLDER.sub(
                lambda m: html.escape(_value(values, m.group(1), m.group(2)), quote=True),
                tag.group(0),
            )
        )
        pos = tag.end()
    out.append(_fill_text(template[pos:], values))
    return "".join(out)


def _fill_text(text: str, values: Mapping[str, str | None]) -> str:
    def one(m: re.Match[str]) -> str:
        value = _value(values, m.group(1), m.group(2))
        if not value:
            return ""
        escaped = html.escape(value, quote=False)
        return escaped if m.group(1) == "unsubscribe_url" else f"<bdi>{escaped}</bdi>"

    return _PLACEHOLDER.sub(one, text)


def rewrite_links(html_text: str, tracked: Callable[[str], str | None]) -> str:
    """Point each ``<a href="http...">`` at ``tracked(url)`` (None keeps the link)."""

    def one(m: re.Match[str]) -> str:
        url = html.unescape(m.group(3)).strip()
        if not url.lower().startswith(("http://", "https://")):
            return m.group(0)
        new = tracked(url)
        if new is None:
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{html.escape(new, quote=True)}{m.group(2)}"

    return _LINK.sub(one, html_text)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.href: str | None = None
        self.link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head", "title"):
            self.skip += 1
        elif tag in _BLOCK:
            self.parts.append("\n")
        elif tag == "a":
            self.href = dict(attrs).get("href")
            self.link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title"):
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK:
            self.parts.append("\n")
        elif tag == "a" and self.href:
            shown = "".join(self.link_text).strip()
            if self.href.startswith(("http://", "https://")) and self.href != shown:
                self.parts.append(f" ({self.href})")
            self.href = None

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        self.parts.append(data)
        if self.href is not None:
            self.link_text.append(data)


def html_to_text(html_text: str) -> str:
    """A readable plain-text version of an HTML body (links kept as ``text (url)``)."""
    parser = _TextExtractor()
    parser.feed(html_text)
    parser.close()
    lines = [
        re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in "".join(parser.parts).split("\n")
    ]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def choose_language(template: TemplateLike, record_language: str | None) -> str:
    """The recipient's language if the template has that version, else a version it has."""
    lang = (record_language or "").strip().lower()[:2]
    if lang not in LANGUAGES:
        lang = template.default_language if template.default_language in LANGUAGES else "fa"
    if not _has_version(template, lang):
        other = "en" if lang == "fa" else "fa"
        if _has_version(template, other):
            return other
    return lang


def _has_version(template: TemplateLike, lang: str) -> bool:
    return bool(getattr(template, f"subject_{lang}") and getattr(template, f"html_{lang}"))


def document(body: str, lang: str, subject: str) -> str:
    """``body`` as a whole HTML document in ``lang``'s direction (kept if it is one)."""
    if re.search(r"<html\b", body, re.IGNORECASE):
        return body
    direction = "rtl" if lang == "fa" else "ltr"
    align = "right" if lang == "fa" else "left"
    font = "Tahoma,Vazirmatn,'Segoe UI',Arial,sans-serif" if lang == "fa" else "Arial,sans-serif"
    return (
        f'<!doctype html>\n<html lang="{lang}" dir="{direction}">\n<head>\n'
        '<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(subject)}</title>\n</head>\n"
        f'<body dir="{direction}" style="margin:0;padding:0">\n'
        f'<div dir="{direction}" style="direction:{direction};text-align:{align};'
        f'font-family:{font};line-height:1.8;max-width:640px;margin:0 auto;padding:16px">\n'
        f"{body}\n</div>\n</body>\n</html>\n"
    )


def _before_body_end(doc: str, snippet: str) -> str:
    idx = doc.lower().rfind("</body>")
    if idx < 0:
        return doc + snippet
    return doc[:idx] + snippet + doc[idx:]


def render_email(
    template: TemplateLike,
    language: str,
    values: Mapping[str, str | None],
    *,
    unsubscribe_url: str,
    pixel_url: str | None = None,
    tracked: Callable[[str], str | None] | None = None,
) -> RenderedEmail:
    """The subject, HTML and text of one recipient's message."""
    values = {**values, "unsubscribe_url": unsubscribe_url}
    subject = render_plain(getattr(template, f"subject_{language}"), values)
    subject = " ".join(subject.split())  # no folding surprises in the header
    source = getattr(template, f"html_{language}")
    body = render_html(source, values)
    if tracked is not None:
        body = rewrite_links(body, tracked)
    doc = document(body, language, subject)
    if "unsubscribe_url" not in placeholders(source):
        doc = _before_body_end(
            doc, FOOTER[language].format(url=html.escape(unsubscribe_url, quote=True)) + "\n"
        )
    if pixel_url is not None:
        doc = _before_body_end(
            doc,
            f'<img src="{html.escape(pixel_url, quote=True)}" width="1" height="1" alt="" '
            'style="display:block;border:0;width:1px;height:1px">\n',
        )
    text_source = getattr(template, f"text_{language}")
    if text_source:
        text = render_plain(text_source, values)
    else:
        text = html_to_text(render_html(source, values))
    if "unsubscribe_url" not in placeholders(text_source or source):
        text = text.rstrip() + "\n\n" + TEXT_FOOTER[language].format(url=unsubscribe_url)
    return RenderedEmail(language, subject, doc, text.strip() + "\n")
