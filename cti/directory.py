"""Which CRM user a ringing device belongs to: the bridge between Asterisk and the CRM.

The call-state machine asks ``agent_for_device("PJSIP/1001")`` synchronously on its hot path,
so the mapping lives in memory and is refreshed from the ``devices`` table in the background.
Agent ids are ``"user:<id>"``; a device nobody owns stays unmapped (the machine then falls
back to the queue member interface).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select

from crm.db import Database
from crm.models import Device, User
from tamas.tasks import cancel_and_wait

log = logging.getLogger("tamas.cti")

AGENT_PREFIX = "user:"


def agent_id(user_id: int) -> str:
    return f"{AGENT_PREFIX}{user_id}"


def user_id_of(agent: str | None) -> int | None:
    """The CRM user id behind an agent id, or None for an unmapped interface."""
    if agent and agent.startswith(AGENT_PREFIX):
        try:
            return int(agent[len(AGENT_PREFIX) :])
        except ValueError:
            return None
    return None


class DeviceDirectory:
    """device interface → agent id, plus each user's devices for originating calls."""

    def __init__(self, db: Database, refresh_seconds: float = 30.0) -> None:
        self.db = db
        self.refresh_seconds = refresh_seconds
        self._agents: dict[str, str] = {}
        self._devices: dict[int, list[str]] = {}
        self._task: asyncio.Task[None] | None = None

    def agent_for_device(self, device: str) -> str | None:
        return self._agents.get(device) or self._agents.get(device.lower())

    def devices_of(self, user_id: int) -> list[str]:
        return list(self._devices.get(user_id, ()))

    async def refresh(self) -> None:
        async with self.db.session() as s:
            rows = (
                await s.execute(
                    select(Device.interface, Device.user_id)
                    .join(User, User.id == Device.user_id)
                    .where(User.is_active.is_(True))
                    .order_by(Device.id)
                )
            ).all()
        agents: dict[str, str] = {}
        devices: dict[int, list[str]] = {}
        for interface, uid in rows:
            agents[interface] = agent_id(uid)
            agents.setdefault(interface.lower(), agent_id(uid))
            devices.setdefault(uid, []).append(interface)
        self._agents, self._devices = agents, devices

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="device-directory")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except Exception:
                log.exception("device directory refresh failed")

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
