"""SQL expressions that differ between SQLite and PostgreSQL, for the report queries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, cast, func, literal_column

from crm.reports.period import SLOT_SECONDS


def epoch(col: Any, dialect: str) -> ColumnElement[int]:
    """Whole seconds since 1970 of a UTC timestamp column."""
    if dialect == "sqlite":
        # UTCDateTime stores naive UTC text there; strftime reads it as UTC.
        return cast(func.strftime("%s", col), Integer)
    return cast(func.floor(func.extract("epoch", col)), BigInteger)


def slot(col: Any, dialect: str) -> ColumnElement[int]:
    """The quarter hour of UTC a timestamp falls in (``epoch // 900``)."""
    # A literal, not a bound parameter: PostgreSQL must see the same expression in GROUP BY.
    width = literal_column(str(SLOT_SECONDS), Integer)
    if dialect == "sqlite":
        return cast(func.strftime(literal_column("'%s'"), col), Integer) // width
    return cast(func.floor(func.extract("epoch", col) / width), BigInteger)
