"""Full-text search over customer records, with Persian/Arabic folding on both sides.

The folded text of each record lives in ``search_docs``; SQLite indexes it with FTS5,
PostgreSQL with a pg_trgm GIN index. Queries are folded the same way, so "علي" finds "علی".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Select, and_, delete, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import SearchDoc
from crm.textfold import fold, tokens


def document_body(parts: Iterable[str | None]) -> str:
    """The folded text stored for a record (names, e-mail, company, phones in all forms)."""
    return fold(" ".join(p for p in parts if p))


async def index_record(
    session: AsyncSession, entity_type: str, entity_id: int, parts: Iterable[str | None]
) -> None:
    """Insert or replace the search document of one record."""
    body = document_body(parts)
    existing = await session.scalar(
        select(SearchDoc).where(
            SearchDoc.entity_type == entity_type, SearchDoc.entity_id == entity_id
        )
    )
    if existing is None:
        session.add(SearchDoc(entity_type=entity_type, entity_id=entity_id, body=body))
    elif existing.body != body:
        existing.body = body


async def unindex_record(session: AsyncSession, entity_type: str, entity_id: int) -> None:
    await session.execute(
        delete(SearchDoc).where(
            SearchDoc.entity_type == entity_type, SearchDoc.entity_id == entity_id
        )
    )


def _fts5_query(tokens: Sequence[str]) -> str:
    # Every token must match as a prefix; quotes keep FTS5 syntax characters literal.
    return " AND ".join('"' + t.replace('"', '""') + '"*' for t in tokens)


def matching_ids(dialect: str, entity_type: str, query: str) -> Select[Any] | None:
    """A SELECT of the ids of ``entity_type`` records matching ``query`` (None: empty query)."""
    words = tokens(query)
    if not words:
        return None
    if dialect == "sqlite":
        hits: Select[Any] = (
            select(literal_column("rowid"))
            .select_from(text("search_fts"))
            .where(text("search_fts MATCH :q").bindparams(q=_fts5_query(words)))
        )
        return select(SearchDoc.entity_id).where(
            SearchDoc.entity_type == entity_type, SearchDoc.id.in_(hits)
        )
    conds = [SearchDoc.body.contains(t, autoescape=True) for t in words]
    return select(SearchDoc.entity_id).where(SearchDoc.entity_type == entity_type, and_(*conds))
