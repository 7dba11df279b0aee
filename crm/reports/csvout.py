"""Reports as CSV for Excel: UTF-8 with a byte order mark (Excel otherwise reads Persian as
mojibake), headers in the user's language, plain numbers (seconds as whole seconds,
money with two decimals) so the sheet can compute with them."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from crm.reports.base import Column, Filters, Report

BOM = "\ufeff"

_DISPOSITION_LABEL = {"en": "Disposition: {code}", "fa": "نتیجه تماس: {code}"}
_TOTAL = {"en": "Total", "fa": "جمع"}


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if kind == "seconds" and isinstance(value, int | float):
        return str(round(value))
    if isinstance(value, Decimal):
        return str(value.quantize(Decimal("0.01")))
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def _csv_safe(text: str) -> str:
    # A cell starting with = + - @ is a formula to Excel: user-typed names must not run.
    if text and text[0] in "=+-@" and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def to_csv(report: Report, f: Filters, labels: dict[str, dict[str, str]] | None = None) -> bytes:
    """The report's rows (and its totals row) as CSV bytes with a BOM.

    ``labels`` maps disposition codes to ``{"en": ..., "fa": ...}`` for the agent report's
    one-column-per-disposition layout."""
    lang = f.language
    columns: list[Column] = list(report.columns)
    extra_codes: list[str] = list(report.extra.get("disposition_codes", []))
    for code in extra_codes:
        names = (labels or {}).get(code, {})
        columns.append(
            Column(
                f"disposition:{code}",
                _DISPOSITION_LABEL["en"].format(code=names.get("en", code)),
                _DISPOSITION_LABEL["fa"].format(code=names.get("fa", code)),
            )
        )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([c.label(lang) for c in columns])
    rows = list(report.rows)
    if report.totals is not None:
        total = dict(report.totals)
        first = columns[0].key if columns else ""
        total[first] = _TOTAL[lang]
        rows.append(total)
    for row in rows:
        out = []
        for c in columns:
            if c.key.startswith("disposition:"):
                value: Any = (row.get("dispositions") or {}).get(c.key.split(":", 1)[1], 0)
            else:
                value = row.get(c.key)
            out.append(_csv_safe(_cell(value, c.kind)))
        w.writerow(out)
    return (BOM + buf.getvalue()).encode("utf-8")
