"""Users, their devices and teams: admin-only writes, passwords hashed, audited."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm import audit, auth
from crm.errors import Conflict, NotFound, ValidationFailed
from crm.models import Device, Role, Team, TeamMember, User
from crm.permissions import Principal
from crm.schemas import DeviceIn, TeamIn, UserIn
from crm.services import changes as changes_bus
from crm.services.changes import UserDeactivated


def present_user(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "full_name": user.full_name,
        "email": user.email,
        "role": user.role.name,
        "extension": user.extension,
        "language": user.language,
        "skills": list(user.skills),
        "is_active": user.is_active,
        "devices": [
            {"id": d.id, "interface": d.interface, "label": d.label, "kind": d.kind}
            for d in user.devices
        ],
        "team_ids": sorted(m.team_id for m in user.teams),
        "last_login_at": audit.jsonable(user.last_login_at),
        "created_at": audit.jsonable(user.created_at),
    }


async def _role(session: AsyncSession, name: str) -> Role:
    role = await session.scalar(select(Role).where(Role.name == name))
    if role is None:
        raise ValidationFailed.one("role", f"no role {name!r}")
    return role


async def _check_devices(
    session: AsyncSession, devices: list[DeviceIn], user_id: int | None
) -> None:
    names = [d.interface for d in devices]
    if len(set(names)) != len(names):
        raise ValidationFailed.one("devices", "the same interface is listed twice")
    if not names:
        return
    taken = await session.scalars(
        select(Device).where(Device.interface.in_(names), Device.user_id != (user_id or -1))
    )
    clash = [d.interface for d in taken]
    if clash:
        raise Conflict(f"device {', '.join(clash)} belongs to another user", interfaces=clash)


async def create_user(session: AsyncSession, p: Principal | None, data: UserIn) -> User:
    """Create a user (``p`` None: the command line, which runs as the operator)."""
    if p is not None:
        p.require("user", "create")
    if await session.scalar(select(User.id).where(User.username == data.username)):
        raise Conflict(f"username {data.username!r} is taken")
    role = await _role(session, data.role)
    await _check_devices(session, data.devices, None)
    user = User(
        username=data.username,
        full_name=data.full_name,
        email=data.email,
        password_hash=auth.hash_password(data.password),
        role_id=role.id,
        extension=data.extension,
        language=data.language,
        skills=data.skills,
        is_active=data.is_active,
    )
    user.role = role
    user.devices = [Device(interface=d.interface, label=d.label, kind=d.kind) for d in data.devices]
    user.teams = [TeamMember(team_id=t) for t in await _teams(session, data.team_ids)]
    session.add(user)
    await session.flush()
    after = present_user(user)
    audit.record(
        session, p.user_id if p else None, "create", "user", user.id, audit.diff({}, after)
    )
    return user


async def _teams(session: AsyncSession, ids: list[int]) -> list[int]:
    if not ids:
        return []
    found = set(await session.scalars(select(Team.id).where(Team.id.in_(ids))))
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationFailed.one("team_ids", f"no team {missing[0]}")
    return sorted(found)


async def get_user(session: AsyncSession, uid: int) -> User:
    user = await session.get(User, uid)
    if user is None:
        raise NotFound(f"no user {uid}")
    return user


async def update_user(
    session: AsyncSession, p: Principal, uid: int, fields: dict[str, Any]
) -> User:
    p.require("user", "edit")
    user = await get_user(session, uid)
    before = present_user(user)
    if "username" in fields and fields["username"] != user.username:
        if await session.scalar(select(User.id).where(User.username == fields["username"])):
            raise Conflict(f"username {fields['username']!r} is taken")
        user.username = fields["username"]
    for key in ("full_name", "email", "extension", "language", "skills"):
        if key in fields:
            setattr(user, key, fields[key])
    if fields.get("role"):
        user.role = await _role(session, fields["role"])
        user.role_id = user.role.id
    if fields.get("password"):
        user.password_hash = auth.hash_password(fields["password"])
        await auth.revoke_all(session, user.id)
    if "devices" in fields and fields["devices"] is not None:
        devices = [DeviceIn.model_validate(d) for d in fields["devices"]]
        await _check_devices(session, devices, user.id)
        user.devices = [Device(interface=d.interface, label=d.label, kind=d.kind) for d in devices]
    if "team_ids" in fields and fields["team_ids"] is not None:
        user.teams = [
            TeamMember(team_id=t, user_id=user.id)
            for t in await _teams(session, fields["team_ids"])
        ]
    if "is_active" in fields and fields["is_active"] is not None:
        if not fields["is_active"] and user.id == p.user_id:
            raise ValidationFailed.one("is_active", "you cannot deactivate yourself")
        was_active = user.is_active
        user.is_active = fields["is_active"]
        if not user.is_active:
            await auth.revoke_all(session, user.id)
            if was_active:  # automation reassigns their records once this commits
                changes_bus.note(session, UserDeactivated(user.id, p.user_id))
    await session.flush()
    await session.refresh(user, ["devices", "teams"])
    changes = audit.diff(before, present_user(user))
    if fields.get("password"):
        changes["password"] = ["***", "***"]
    if changes:
        audit.record(session, p.user_id, "update", "user", user.id, changes)
    return user


async def count_users(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count(User.id))) or 0)


async def create_team(session: AsyncSession, p: Principal | None, data: TeamIn) -> Team:
    if p is not None:
        p.require("team", "create")
    if await session.scalar(select(Team.id).where(Team.name == data.name)):
        raise Conflict(f"team {data.name!r} exists")
    team = Team(name=data.name, queue=data.queue)
    session.add(team)
    await session.flush()
    audit.record(
        session,
        p.user_id if p else None,
        "create",
        "team",
        team.id,
        audit.diff({}, {"name": team.name, "queue": team.queue}),
    )
    return team


async def user_for_device(session: AsyncSession, interface: str) -> User | None:
    """The user whose phone is ``interface`` (how the CTI engine maps a ringing device)."""
    dev = await session.scalar(select(Device).where(Device.interface == interface))
    return dev.user if dev else None
