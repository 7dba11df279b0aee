"""Automation in the gateway: rules run on record events (from the bus) and on schedules.

Events: ``record.changed`` (crm/services/changes.py, noted by the record service after its
transaction commits) runs the stage-action and lead-assignment rules; ``user.deactivated``
the reassignment rules. Schedules: every ``tick_seconds`` the enabled scheduled rules whose
``every_minutes`` have passed since their last run are claimed (a conditional update of
``last_run_at``, so with several gateways each run happens once) and run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from crm.automation.rules import SCHEDULED, TRIGGERS, every_minutes
from crm.automation.runner import Runner
from crm.db import Database
from crm.models import AutomationRule, utcnow
from crm.services.changes import RecordChanged, UserDeactivated
from tamas.tasks import cancel_and_wait

log = logging.getLogger("tamas.automation")

EVENT_KINDS: dict[type, tuple[str, ...]] = {
    RecordChanged: tuple(
        k for k, t in TRIGGERS.items() if "event" in t and k != "user_deactivated"
    ),
    UserDeactivated: ("user_deactivated",),
}


class AutomationService:
    def __init__(
        self,
        db: Database,
        runner: Runner,
        *,
        tick_seconds: float = 30.0,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.db = db
        self.runner = runner
        self.tick_seconds = tick_seconds
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    # -- events ---------------------------------------------------------------------------

    async def handle(self, event: Any) -> list[dict[str, Any]]:
        """Bus subscriber: run the enabled rules the event concerns, oldest rule first."""
        kinds = EVENT_KINDS.get(type(event))
        if not kinds:
            return []
        async with self.db.session() as s:
            ids = list(
                await s.scalars(
                    select(AutomationRule.id)
                    .where(AutomationRule.enabled.is_(True), AutomationRule.kind.in_(kinds))
                    .order_by(AutomationRule.id)
                )
            )
        out = []
        for rule_id in ids:
            result = await self.runner.run(rule_id, "event", event)
            if result["status"] != "not_applicable":
                out.append(result)
        return out

    # -- schedules ----------------------------------------------------------------------------

    async def tick(self, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Run every scheduled rule that is due (each claimed first)."""
        now = now or self.clock()
        async with self.db.session() as s:
            rules = list(
                await s.execute(
                    select(
                        AutomationRule.id,
                        AutomationRule.kind,
                        AutomationRule.config,
                        AutomationRule.last_run_at,
                    )
                    .where(AutomationRule.enabled.is_(True), AutomationRule.kind.in_(SCHEDULED))
                    .order_by(AutomationRule.id)
                )
            )
        out = []
        for rule_id, kind, config, last in rules:
            every = every_minutes(kind, config or {}) or 60
            if last is not None and last + dt.timedelta(minutes=every) > now:
                continue
            if not await self._claim(rule_id, last, now):
                continue  # another gateway took it
            out.append(await self.runner.run(rule_id, "schedule", None, now))
        return out

    async def _claim(self, rule_id: int, last: dt.datetime | None, now: dt.datetime) -> bool:
        async with self.db.session() as s:
            cond = (
                AutomationRule.last_run_at.is_(None)
                if last is None
                else AutomationRule.last_run_at == last
            )
            res = await s.execute(
                update(AutomationRule)
                .where(AutomationRule.id == rule_id, cond)
                .values(last_run_at=now)
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(res, "rowcount", 0))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="automation")

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
        self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("automation schedule tick failed")
