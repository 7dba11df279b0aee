"""Passwords (argon2) and login tokens (random, stored hashed, expiring, revocable)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import ApiToken, TeamMember, User, utcnow
from crm.permissions import Principal

_hasher = PasswordHasher()


class AuthError(Exception):
    """Authentication failed; the message says why in words safe to show the client."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def login(
    session: AsyncSession, username: str, password: str, ttl_hours: float
) -> tuple[str, User, dt.datetime]:
    """Check the password and issue a new token; raises AuthError."""
    user = await session.scalar(select(User).where(User.username == username))
    if user is None or not verify_password(user.password_hash, password):
        raise AuthError("wrong username or password")
    if not user.is_active:
        raise AuthError("this user is deactivated")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    token = secrets.token_urlsafe(32)
    expires = utcnow() + dt.timedelta(hours=ttl_hours)
    session.add(ApiToken(user_id=user.id, token_hash=_token_hash(token), expires_at=expires))
    user.last_login_at = utcnow()
    return token, user, expires


async def revoke(session: AsyncSession, token: str) -> None:
    row = await session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()


async def revoke_all(session: AsyncSession, user_id: int) -> None:
    rows = await session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
    )
    for row in rows:
        row.revoked_at = utcnow()


async def principal_for(session: AsyncSession, user: User) -> Principal:
    """Build the permission view of ``user`` (role, teams and teammates)."""
    team_ids = frozenset(m.team_id for m in user.teams)
    mates: frozenset[int] = frozenset()
    if team_ids:
        mates = frozenset(
            await session.scalars(
                select(TeamMember.user_id).where(TeamMember.team_id.in_(sorted(team_ids)))
            )
        )
    role = user.role
    return Principal(
        user_id=user.id,
        username=user.username,
        role=role.name,
        scope=role.scope,
        permissions={k: list(v) for k, v in role.permissions.items()},
        masked_fields={k: list(v) for k, v in role.masked_fields.items()},
        team_ids=team_ids,
        teammate_ids=mates,
        see_unassigned=role.see_unassigned,
        see_team=role.see_team,
        language=user.language,
    )


async def authenticate(session: AsyncSession, token: str) -> Principal:
    """The principal for a bearer token; raises AuthError when missing, expired or revoked."""
    if not token:
        raise AuthError("missing token")
    row = await session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    if row is None:
        raise AuthError("unknown token")
    if row.revoked_at is not None:
        raise AuthError("token revoked")
    now = utcnow()
    if row.expires_at <= now:
        raise AuthError("token expired")
    if not row.user.is_active:
        raise AuthError("this user is deactivated")
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        row.last_used_at = now
    return await principal_for(session, row.user)
