"""Knowledge base articles: drafts, review, the approved current version, and search.

Every edit of an article is a numbered version. A new version is a draft; agents never see
drafts. A supervisor or admin approves a version, which becomes the article's current
version (the one agents read and search); the one it replaces becomes ``superseded``, as do
older drafts. Approving an older version again is a rollback. Every step is audited.

Search reuses the CRM's full-text index (crm/search.py): the approved text is indexed as
``kb_article``, the newest draft as ``kb_draft`` (authors search both). Text is folded
(crm/textfold.py) so Persian/Arabic spellings, digits and half-spaces match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit
from crm.errors import Conflict, NotFound, ValidationFailed
from crm.models import KbArticle, KbArticleVersion, KbCategory, utcnow
from crm.permissions import PermissionDenied, Principal
from crm.schemas import Strict
from crm.search import index_record, matching_ids, unindex_record
from crm.textfold import fold, tokens

APPROVED_DOC = "kb_article"
DRAFT_DOC = "kb_draft"


# -- who may do what ------------------------------------------------------------------------


def can_author(p: Principal) -> bool:
    """Supervisors and admins write articles (or a role granted ``knowledge: create``)."""
    return p.scope in ("team", "all") or p.can("knowledge", "create")


def can_approve(p: Principal) -> bool:
    """Supervisors and admins approve (or a role granted ``knowledge: approve``)."""
    return p.scope in ("team", "all") or p.can("knowledge", "approve")


def require_author(p: Principal) -> None:
    if not can_author(p):
        raise PermissionDenied(f"role {p.role!r} may not write knowledge base articles")


def require_approver(p: Principal) -> None:
    if not can_approve(p):
        raise PermissionDenied(f"role {p.role!r} may not approve knowledge base articles")


# -- input --------------------------------------------------------------------------------


class CategoryIn(Strict):
    name_fa: str = Field(min_length=1, max_length=128)
    name_en: str = Field(min_length=1, max_length=128)
    position: int = 0


class CategoryPatch(Strict):
    name_fa: str | None = Field(default=None, min_length=1, max_length=128)
    name_en: str | None = Field(default=None, min_length=1, max_length=128)
    position: int | None = None


class ArticleIn(Strict):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=200_000)
    language: Literal["fa", "en"] = "fa"
    category_id: int | None = None
    note: str | None = Field(default=None, max_length=2000)


class ArticlePatch(Strict):
    language: Literal["fa", "en"] | None = None
    category_id: int | None = None


class VersionIn(Strict):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=200_000)
    note: str | None = Field(default=None, max_length=2000)


class VersionPatch(Strict):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, max_length=200_000)
    note: str | None = Field(default=None, max_length=2000)


class ReviewIn(Strict):
    note: str | None = Field(default=None, max_length=2000)


# -- presenting -----------------------------------------------------------------------------


def present_category(c: KbCategory) -> dict[str, Any]:
    return {"id": c.id, "name_fa": c.name_fa, "name_en": c.name_en, "position": c.position}


def present_version(v: KbArticleVersion, with_body: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": v.id,
        "article_id": v.article_id,
        "number": v.number,
        "title": v.title,
        "status": v.status,
        "note": v.note,
        "author_id": v.author_id,
        "created_at": audit.jsonable(v.created_at),
        "reviewed_by_id": v.reviewed_by_id,
        "reviewed_at": audit.jsonable(v.reviewed_at),
    }
    if with_body:
        out["body"] = v.body
    return out


# -- categories -----------------------------------------------------------------------------


async def list_categories(session: AsyncSession) -> list[dict[str, Any]]:
    rows = await session.scalars(select(KbCategory).order_by(KbCategory.position, KbCategory.id))
    return [present_category(c) for c in rows]


async def create_category(session: AsyncSession, p: Principal, data: CategoryIn) -> KbCategory:
    require_author(p)
    cat = KbCategory(**data.model_dump())
    session.add(cat)
    await session.flush()
    audit.record(
        session, p.user_id, "create", "kb_category", cat.id, audit.diff({}, data.model_dump())
    )
    return cat


async def update_category(
    session: AsyncSession, p: Principal, cid: int, data: CategoryPatch
) -> KbCategory:
    require_author(p)
    cat = await session.get(KbCategory, cid)
    if cat is None:
        raise NotFound(f"no category {cid}")
    before = present_category(cat)
    for k, v in data.model_dump(exclude_unset=True).items():
        if v is None:
            raise ValidationFailed.one(k, "may not be null")
        setattr(cat, k, v)
    await session.flush()
    changes = audit.diff(before, present_category(cat))
    if changes:
        audit.record(session, p.user_id, "update", "kb_category", cid, changes)
        for art in await session.scalars(select(KbArticle).where(KbArticle.category_id == cid)):
            await reindex(session, art)  # category names are searchable
    return cat


async def delete_category(session: AsyncSession, p: Principal, cid: int) -> None:
    require_author(p)
    cat = await session.get(KbCategory, cid)
    if cat is None:
        raise NotFound(f"no category {cid}")
    await session.execute(
        update(KbArticle).where(KbArticle.category_id == cid).values(category_id=None)
    )
    await session.delete(cat)
    audit.record(session, p.user_id, "delete", "kb_category", cid, {}, name_en=cat.name_en)


async def _category(session: AsyncSession, cid: int | None) -> KbCategory | None:
    if cid is None:
        return None
    cat = await session.get(KbCategory, cid)
    if cat is None:
        raise ValidationFailed.one("category_id", f"no category {cid}")
    return cat


# -- articles and versions ---------------------------------------------------------------------


async def _article(session: AsyncSession, aid: int) -> KbArticle:
    art = await session.get(KbArticle, aid)
    if art is None or art.deleted_at is not None:
        raise NotFound(f"no article {aid}")
    return art


async def _version(session: AsyncSession, vid: int) -> KbArticleVersion:
    v = await session.get(KbArticleVersion, vid)
    if v is None:
        raise NotFound(f"no version {vid}")
    return v


async def _versions(session: AsyncSession, aid: int) -> list[KbArticleVersion]:
    rows = await session.scalars(
        select(KbArticleVersion)
        .where(KbArticleVersion.article_id == aid)
        .order_by(KbArticleVersion.number)
    )
    return list(rows)


async def _latest_draft(session: AsyncSession, aid: int) -> KbArticleVersion | None:
    result: KbArticleVersion | None = await session.scalar(
        select(KbArticleVersion)
        .where(KbArticleVersion.article_id == aid, KbArticleVersion.status == "draft")
        .order_by(KbArticleVersion.number.desc())
        .limit(1)
    )
    return result


def _doc_parts(v: KbArticleVersion, cat: KbCategory | None) -> list[str | None]:
    return [v.title, v.body, cat.name_fa if cat else None, cat.name_en if cat else None]


async def reindex(session: AsyncSession, art: KbArticle) -> None:
    """Index the approved text (what agents search) and the newest draft (authors)."""
    cat = await session.get(KbCategory, art.category_id) if art.category_id else None
    if art.deleted_at is not None:
        await unindex_record(session, APPROVED_DOC, art.id)
        await unindex_record(session, DRAFT_DOC, art.id)
        return
    current = await session.get(KbArticleVersion, art.current_version_id or 0)
    if current is not None:
        await index_record(session, APPROVED_DOC, art.id, _doc_parts(current, cat))
    else:
        await unindex_record(session, APPROVED_DOC, art.id)
    draft = await _latest_draft(session, art.id)
    if draft is not None:
        await index_record(session, DRAFT_DOC, art.id, _doc_parts(draft, cat))
    else:
        await unindex_record(session, DRAFT_DOC, art.id)


async def create_article(
    session: AsyncSession, p: Principal, data: ArticleIn
) -> tuple[KbArticle, KbArticleVersion]:
    """A new article whose first version is a draft."""
    require_author(p)
    await _category(session, data.category_id)
    art = KbArticle(category_id=data.category_id, language=data.language, created_by_id=p.user_id)
    session.add(art)
    await session.flush()
    v = KbArticleVersion(
        article_id=art.id,
        number=1,
        title=data.title,
        body=data.body,
        note=data.note,
        status="draft",
        author_id=p.user_id,
    )
    session.add(v)
    await session.flush()
    await reindex(session, art)
    audit.record(
        session,
        p.user_id,
        "create",
        "kb_article",
        art.id,
        audit.diff({}, {"language": art.language, "category_id": art.category_id}),
        version=1,
        title=v.title,
    )
    return art, v


async def update_article(
    session: AsyncSession, p: Principal, aid: int, data: ArticlePatch
) -> KbArticle:
    """Language and category (the text changes only through versions)."""
    require_author(p)
    art = await _article(session, aid)
    fields = data.model_dump(exclude_unset=True)
    if "language" in fields and fields["language"] is None:
        raise ValidationFailed.one("language", "may not be null")
    if "category_id" in fields:
        await _category(session, fields["category_id"])
    before = {"language": art.language, "category_id": art.category_id}
    for k, v in fields.items():
        setattr(art, k, v)
    art.updated_at = utcnow()
    await session.flush()
    changes = audit.diff(before, {"language": art.language, "category_id": art.category_id})
    if changes:
        audit.record(session, p.user_id, "update", "kb_article", aid, changes)
        await reindex(session, art)
    return art


async def add_version(
    session: AsyncSession, p: Principal, aid: int, data: VersionIn
) -> KbArticleVersion:
    """A new draft of the article (the current version stays what agents see)."""
    require_author(p)
    art = await _article(session, aid)
    number = (
        await session.scalar(
            select(func.max(KbArticleVersion.number)).where(KbArticleVersion.article_id == aid)
        )
        or 0
    ) + 1
    v = KbArticleVersion(
        article_id=aid,
        number=number,
        title=data.title,
        body=data.body,
        note=data.note,
        status="draft",
        author_id=p.user_id,
    )
    session.add(v)
    art.updated_at = utcnow()
    await session.flush()
    await reindex(session, art)
    audit.record(session, p.user_id, "draft", "kb_article", aid, {}, version=number, title=v.title)
    return v


async def edit_draft(
    session: AsyncSession, p: Principal, vid: int, data: VersionPatch
) -> KbArticleVersion:
    """Change a draft in place; approved and reviewed versions never change."""
    require_author(p)
    v = await _version(session, vid)
    art = await _article(session, v.article_id)
    if v.status != "draft":
        raise Conflict(f"version {v.number} is {v.status}; write a new version instead")
    before = {"title": v.title, "body": v.body, "note": v.note}
    for k, value in data.model_dump(exclude_unset=True).items():
        if value is None and k != "note":
            raise ValidationFailed.one(k, "may not be null")
        setattr(v, k, value)
    await session.flush()
    changes = audit.diff(before, {"title": v.title, "body": v.body, "note": v.note})
    if changes:
        audit.record(session, p.user_id, "update", "kb_article", art.id, changes, version=v.number)
        await reindex(session, art)
    return v


async def approve(session: AsyncSession, p: Principal, vid: int, note: str | None) -> KbArticle:
    """Make a version the article's current one (a draft, or an older version: rollback)."""
    require_approver(p)
    v = await _version(session, vid)
    art = await _article(session, v.article_id)
    if v.status not in ("draft", "superseded"):
        raise Conflict(f"version {v.number} is {v.status} and cannot be approved")
    previous = art.current_version_id
    for other in await _versions(session, art.id):
        if other.id == v.id:
            continue
        if other.status == "approved" or (other.status == "draft" and other.number < v.number):
            other.status = "superseded"
    v.status = "approved"
    v.reviewed_by_id = p.user_id
    v.reviewed_at = utcnow()
    if note:
        v.note = note
    art.current_version_id = v.id
    art.updated_at = utcnow()
    await session.flush()
    await reindex(session, art)
    audit.record(
        session,
        p.user_id,
        "approve",
        "kb_article",
        art.id,
        {"current_version_id": [previous, v.id]},
        version=v.number,
        note=note,
    )
    return art


async def reject(
    session: AsyncSession, p: Principal, vid: int, note: str | None
) -> KbArticleVersion:
    require_approver(p)
    v = await _version(session, vid)
    art = await _article(session, v.article_id)
    if v.status != "draft":
        raise Conflict(f"version {v.number} is {v.status}; only drafts can be rejected")
    v.status = "rejected"
    v.reviewed_by_id = p.user_id
    v.reviewed_at = utcnow()
    if note:
        v.note = note
    await session.flush()
    await reindex(session, art)
    audit.record(
        session, p.user_id, "reject", "kb_article", art.id, {}, version=v.number, note=note
    )
    return v


async def archive(session: AsyncSession, p: Principal, aid: int) -> None:
    """Remove an article from the knowledge base (kept, with its versions, for the record)."""
    require_approver(p)
    art = await _article(session, aid)
    art.deleted_at = utcnow()
    await reindex(session, art)
    audit.record(session, p.user_id, "delete", "kb_article", aid, {})


# -- reading ----------------------------------------------------------------------------------


def _summary(
    art: KbArticle,
    shown: KbArticleVersion,
    cat: KbCategory | None,
    draft: KbArticleVersion | None,
) -> dict[str, Any]:
    return {
        "id": art.id,
        "language": art.language,
        "category": present_category(cat) if cat else None,
        "title": shown.title,
        "version": shown.number,
        "status": shown.status,
        "approved": art.current_version_id is not None,
        "current_version_id": art.current_version_id,
        "draft_version_id": draft.id if draft else None,
        "updated_at": audit.jsonable(shown.reviewed_at or shown.created_at),
    }


async def get_article(session: AsyncSession, p: Principal, aid: int) -> dict[str, Any]:
    """The approved current version; authors also get the newest draft and the history.
    An agent asking for an article without an approved version gets 404."""
    art = await _article(session, aid)
    author = can_author(p)
    current = await session.get(KbArticleVersion, art.current_version_id or 0)
    if current is None and not author:
        raise NotFound(f"no article {aid}")
    cat = await session.get(KbCategory, art.category_id) if art.category_id else None
    draft = await _latest_draft(session, aid) if author else None
    shown = current or draft or (await _versions(session, aid))[-1]
    out = _summary(art, shown, cat, draft)
    out["body"] = shown.body
    out["current"] = present_version(current) if current else None
    if author:
        out["draft"] = present_version(draft) if draft else None
        out["versions"] = [present_version(v, False) for v in await _versions(session, aid)]
        out["can_approve"] = can_approve(p)
    return out


async def get_version(session: AsyncSession, p: Principal, vid: int) -> dict[str, Any]:
    v = await _version(session, vid)
    art = await _article(session, v.article_id)
    if not can_author(p) and v.id != art.current_version_id:
        raise NotFound(f"no version {vid}")
    return present_version(v)


@dataclass(frozen=True)
class Query:
    text: str = ""
    category_id: int | None = None
    language: str | None = None
    include_drafts: bool = False
    limit: int = 20


def snippet(body: str, words: Sequence[str], width: int = 200) -> str:
    """The first line of ``body`` that contains a query word (folded), shortened."""
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    if not lines:
        return ""
    chosen = lines[0]
    if words:
        for ln in lines:
            folded = fold(ln)
            if any(w in folded for w in words):
                chosen = ln
                break
    if len(chosen) <= width:
        return chosen
    folded = fold(chosen)
    hit = min((folded.find(w) for w in words if w in folded), default=0)
    start = max(0, min(hit - width // 3, len(chosen) - width))
    text = chosen[start : start + width]
    return ("…" if start else "") + text + ("…" if start + width < len(chosen) else "")


def _score(v: KbArticleVersion, words: Sequence[str]) -> int:
    title, body = fold(v.title), fold(v.body)
    return sum(3 * title.count(w) + min(body.count(w), 5) for w in words)


async def search(
    session: AsyncSession, p: Principal, dialect: str, q: Query
) -> list[dict[str, Any]]:
    """Articles matching ``q``: agents get approved ones only (their approved text); authors
    asking for drafts also get articles whose newest draft matches."""
    drafts = q.include_drafts and can_author(p)
    words = tokens(q.text)
    stmt = select(KbArticle).where(KbArticle.deleted_at.is_(None))
    if q.category_id is not None:
        stmt = stmt.where(KbArticle.category_id == q.category_id)
    if q.language is not None:
        stmt = stmt.where(KbArticle.language == q.language)
    if not drafts:
        stmt = stmt.where(KbArticle.current_version_id.isnot(None))
    if words:
        ids = matching_ids(dialect, APPROVED_DOC, q.text)
        assert ids is not None
        if drafts:
            draft_ids = matching_ids(dialect, DRAFT_DOC, q.text)
            assert draft_ids is not None
            stmt = stmt.where(KbArticle.id.in_(ids) | KbArticle.id.in_(draft_ids))
        else:
            stmt = stmt.where(KbArticle.id.in_(ids))
    arts = list(await session.scalars(stmt.order_by(KbArticle.updated_at.desc()).limit(500)))
    if not arts:
        return []
    versions = {
        v.id: v
        for v in await session.scalars(
            select(KbArticleVersion).where(
                KbArticleVersion.article_id.in_([a.id for a in arts]),
                KbArticleVersion.status.in_(["approved", "draft"]),
            )
        )
    }
    newest_draft: dict[int, KbArticleVersion] = {}
    for v in versions.values():
        if v.status == "draft":
            d = newest_draft.get(v.article_id)
            if d is None or v.number > d.number:
                newest_draft[v.article_id] = v
    cats = {c.id: c for c in await session.scalars(select(KbCategory))}
    hits = []
    for art in arts:
        current = versions.get(art.current_version_id or 0)
        draft = newest_draft.get(art.id) if drafts else None
        candidates = [v for v in (current, draft) if v is not None]
        if not candidates:
            continue
        if words:
            shown = max(candidates, key=lambda v: _score(v, words))
            score = _score(shown, words)
        else:
            shown, score = candidates[0], 0
        item = _summary(art, shown, cats.get(art.category_id or 0), draft)
        item["snippet"] = snippet(shown.body, words)
        hits.append((score, item))
    hits.sort(key=lambda h: -h[0])  # stable: newest first among equal scores
    return [item for _, item in hits[: q.limit]]
