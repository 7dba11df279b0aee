"""Call script templates: ``{{first_name}}``, ``{{account.name}}``, ``{{custom.key}}``.

A pure, tiny template language (no code runs, nothing is evaluated), so a script written by
a supervisor can never break the agent desktop:

* ``{{ path }}``: a field of the customer (``first_name``, ``account.name``,
  ``owner.full_name``, ``custom.budget``...). Spaces inside the braces are ignored.
* ``{{ path | fallback words }}``: the fallback is shown when the field is empty.
* ``{{#fa}} ... {{/fa}}`` and ``{{#en}} ... {{/en}}``: language sections; only the section
  of the language being rendered is kept, text outside sections is always kept.
* Anything else between ``{{`` and ``}}``, an unclosed ``{{`` or an unmatched section tag is
  kept as literal text and reported in ``problems``: a typo shows, it never crashes.

A field without a value renders as a visible placeholder (``[first_name]``) and is listed in
``missing``. Rendering produces segments (text, field) so the desktop builds DOM text
nodes; :func:`to_html` escapes every piece for other consumers.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

LANGUAGES = ("fa", "en")
MAX_TEMPLATE = 100_000

_TAG = re.compile(r"\{\{(.*?)\}\}", re.S)
_PATH = re.compile(r"^[^\W\d][\w]*(\.[^\W\d][\w]*)*$")
_SECTION = re.compile(r"^([#/])\s*(fa|en)$")


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Field:
    path: str
    fallback: str | None = None


@dataclass(frozen=True)
class Section:
    language: str
    parts: tuple[Text | Field, ...]


Node = Text | Field | Section


@dataclass(frozen=True)
class Template:
    nodes: tuple[Node, ...]
    problems: tuple[str, ...] = ()

    @property
    def fields(self) -> list[str]:
        """Every field path the template uses, in order of first use."""
        out: list[str] = []
        for node in self.nodes:
            for part in node.parts if isinstance(node, Section) else (node,):
                if isinstance(part, Field) and part.path not in out:
                    out.append(part.path)
        return out


@dataclass(frozen=True)
class Segment:
    """One piece of rendered text: plain text, or a field's value (or its placeholder)."""

    text: str
    field: str | None = None
    missing: bool = False
    masked: bool = False

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"text": self.text}
        if self.field is not None:
            out["field"] = self.field
            out["missing"] = self.missing
            if self.masked:
                out["masked"] = True
        return out


@dataclass
class Rendered:
    segments: list[Segment]
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    @property
    def html(self) -> str:
        return to_html(self.segments)


def placeholder(path: str) -> str:
    return f"[{path}]"


def parse(source: str) -> Template:
    """The template's nodes; never raises (bad tags become text and a problem)."""
    if len(source) > MAX_TEMPLATE:
        source = source[:MAX_TEMPLATE]
    nodes: list[Node] = []
    problems: list[str] = []
    section: tuple[str, list[Text | Field], str] | None = None  # (lang, parts, raw open tag)
    pos = 0

    def emit(node: Text | Field) -> None:
        target = section[1] if section is not None else nodes
        if isinstance(node, Text) and target and isinstance(target[-1], Text):
            target[-1] = Text(target[-1].text + node.text)
        else:
            target.append(node)

    for match in _TAG.finditer(source):
        if match.start() > pos:
            emit(Text(source[pos : match.start()]))
        pos = match.end()
        raw, inner = match.group(0), match.group(1).strip()
        sec = _SECTION.match(inner)
        if sec:
            kind, lang = sec.groups()
            if kind == "#" and section is None:
                section = (lang, [], raw)
            elif kind == "/" and section is not None and section[0] == lang:
                nodes.append(Section(lang, tuple(section[1])))
                section = None
            else:
                problems.append(f"unmatched section tag {raw}")
                emit(Text(raw))
            continue
        path, bar, fallback = inner.partition("|")
        path = path.strip()
        if _PATH.match(path):
            emit(Field(path, fallback.strip() if bar else None))
        else:
            problems.append(f"not a field: {raw}")
            emit(Text(raw))
    rest = source[pos:]
    if "{{" in rest:
        problems.append("unclosed {{")
    if rest:
        emit(Text(rest))
    if section is not None:
        # An unclosed section: keep its content (losing words is worse than showing both).
        problems.append(f"unclosed section {section[2]}")
        nodes.append(Text(section[2]))
        nodes.extend(section[1])
    return Template(tuple(nodes), tuple(problems))


def render(
    template: Template | str,
    values: Mapping[str, str | None],
    language: str = "fa",
    masked: frozenset[str] = frozenset(),
) -> Rendered:
    """Fill in ``values`` (path -> already formatted text); ``masked`` paths are flagged."""
    tpl = parse(template) if isinstance(template, str) else template
    out: list[Segment] = []
    missing: list[str] = []

    def add(part: Text | Field) -> None:
        if isinstance(part, Text):
            if out and out[-1].field is None:
                out[-1] = Segment(out[-1].text + part.text)
            else:
                out.append(Segment(part.text))
            return
        value = values.get(part.path)
        if value is None or value == "":
            if part.fallback:
                out.append(Segment(part.fallback, part.path))
                return
            if part.path not in missing:
                missing.append(part.path)
            out.append(Segment(placeholder(part.path), part.path, missing=True))
            return
        out.append(Segment(str(value), part.path, masked=part.path in masked))

    for node in tpl.nodes:
        if isinstance(node, Section):
            if node.language == language:
                for part in node.parts:
                    add(part)
        else:
            add(node)
    return Rendered(out, missing, list(tpl.problems))


def to_html(segments: list[Segment]) -> str:
    """The segments as HTML: every text escaped, fields in ``<span>``/``<mark>``."""
    parts = []
    for s in segments:
        text = html.escape(s.text).replace("\n", "<br>")
        if s.field is None:
            parts.append(text)
        elif s.missing:
            parts.append(
                f'<mark class="missing-field" data-field="{html.escape(s.field)}">{text}</mark>'
            )
        else:
            parts.append(f'<span class="field" data-field="{html.escape(s.field)}">{text}</span>')
    return "".join(parts)
