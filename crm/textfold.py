"""Folding of Persian/Arabic/Latin text for search.

Names and notes in the CRM are typed on Persian keyboards, Arabic keyboards (ي ك instead of
ی ک), copied from PDFs (presentation forms), with or without harakat, tatweel and half-spaces.
Search compares *folded* text on both sides, so :func:`fold` must map all those spellings of a
word to one string.  :func:`fold` is what is stored; :func:`fold_query` is what queries go
through; they are the same folding, so a stored value always matches its own query.

Decisions (documented because search results depend on them):

* Unicode NFKD first: presentation forms (``ﻋﻠﻲ``), ligatures (``ﻻ``) and full-width
  characters become plain letters, and composed letters split into base + mark.
* Case-insensitive (``str.casefold``) and accent-insensitive: every non-spacing mark is
  removed.  For Arabic script that means harakat, the superscript alef, Quranic marks and
  the hamza/madda carried by ``أ إ آ ؤ ئ ۀ``, so alef variants fold to ``ا`` (users rarely
  type the madda or hamza), ``ؤ`` to ``و``, ``ئ`` to ``ی`` and ``ۀ`` to ``ه``.  For Latin
  script ``José`` folds to ``jose``.
* Arabic letters map to their Persian counterparts: ``ي ى → ی``, ``ك → ک``, ``ة ە ہ ھ → ه``,
  ``ٱ → ا``.  Tatweel (``ـ``) is removed.
* All decimal digits (Persian ``۰-۹``, Arabic-Indic ``٠-٩`` and any other script) become ASCII.
  Arabic comma/semicolon/question mark/percent become their ASCII counterparts.
* Zero-width non-joiner (U+200C, the Persian half-space) and zero-width space (U+200B) become
  a space, so ``می‌خواهم`` folds equal to ``می خواهم`` (both are written, and a space is what
  word tokenisation needs).  It does *not* fold equal to ``میخواهم``; a search layer that
  wants that can compare with spaces removed.  The other invisible format characters (ZWJ,
  word joiner, BOM, bidi marks, soft hyphen) are removed: they never separate words.
* Whitespace runs collapse to one space; leading/trailing whitespace is stripped.

The per-character work is one ``str.translate`` over a lazily filled table, so folding costs
NFKD and casefold (C loops) plus the translate; pure ASCII input takes a shorter path.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["fold", "fold_query", "tokens"]

_EXPLICIT: dict[int, str | None] = {
    # Arabic letters -> Persian letters
    0x064A: "ی",  # ARABIC LETTER YEH
    0x0649: "ی",  # ARABIC LETTER ALEF MAKSURA
    0x0643: "ک",  # ARABIC LETTER KAF
    0x06AA: "ک",  # ARABIC LETTER SWASH KAF
    0x0629: "ه",  # ARABIC LETTER TEH MARBUTA
    0x06D5: "ه",  # ARABIC LETTER AE (NFKD base of ۀ)
    0x06C1: "ه",  # ARABIC LETTER HEH GOAL (NFKD base of ۂ)
    0x06BE: "ه",  # ARABIC LETTER HEH DOACHASHMEE
    0x0671: "ا",  # ARABIC LETTER ALEF WASLA
    0x0672: "ا",  # ARABIC LETTER ALEF WITH WAVY HAMZA ABOVE
    0x0673: "ا",  # ARABIC LETTER ALEF WITH WAVY HAMZA BELOW
    0x0640: None,  # ARABIC TATWEEL
    # Arabic punctuation -> ASCII
    0x060C: ",",  # ARABIC COMMA
    0x061B: ";",  # ARABIC SEMICOLON
    0x061F: "?",  # ARABIC QUESTION MARK
    0x066A: "%",  # ARABIC PERCENT SIGN
    # zero-width characters that separate words -> space
    0x200B: " ",  # ZERO WIDTH SPACE
    0x200C: " ",  # ZERO WIDTH NON-JOINER (Persian half-space)
}


class _FoldTable(dict[int, "str | int | None"]):
    """``str.translate`` table computed per code point on first use.

    Building it eagerly for all of Unicode would cost a noticeable fraction of a second at
    import; texts only ever use a few hundred distinct characters.
    """

    def __missing__(self, code_point: int) -> str | int | None:
        value = _fold_char(code_point)
        self[code_point] = value
        return value


def _fold_char(code_point: int) -> str | int | None:
    """Folded form of one (already NFKD-normalized and casefolded) character."""
    if code_point in _EXPLICIT:
        return _EXPLICIT[code_point]
    char = chr(code_point)
    category = unicodedata.category(char)
    if category in ("Mn", "Me"):  # harakat, hamza/madda marks, Latin accents
        return None
    if category == "Cf":  # ZWJ, word joiner, BOM, bidi marks, soft hyphen, ...
        return None
    if category == "Nd":
        return str(unicodedata.digit(char))
    return code_point


_TABLE = _FoldTable()

# Persian and Arabic-Indic digits to ASCII and nothing else: dates, times and numbers typed
# on Persian keyboards, where the rest of the text must stay as written.
ASCII_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
_WORD_RE = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """Search key of ``text``: equal for spellings that users consider the same word."""
    if text.isascii():
        return " ".join(text.lower().split())
    # NFKD before casefold (so "ℌ" -> "H" -> "h"); one pass of each is enough for fold to be
    # idempotent, checked exhaustively over all code points when this was written.
    text = unicodedata.normalize("NFKD", text).casefold().translate(_TABLE)
    return " ".join(text.split())


def fold_query(text: str) -> str:
    """Folding of a user's search query; by construction identical to :func:`fold`.

    A separate name so call sites say which side of the comparison they are on; escaping for
    SQL ``LIKE`` belongs to the query layer, not here.
    """
    return fold(text)


def tokens(text: str) -> list[str]:
    """Words of the folded ``text`` (letters and digits; punctuation and ``_`` separate)."""
    return _WORD_RE.findall(fold(text))
