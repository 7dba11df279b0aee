"""Automation rules: data that admins edit, run on record events and on schedules, every
run written to the audit log (docs/automation.md).

``rules`` (kinds and their validated configs), ``decisions`` (pure: inactivity, caps, round
robin, stage entry/exit, reminders due), ``runner`` (runs one rule in one transaction),
``service`` (bus events and the scheduler), ``returns`` (lead returns a supervisor
approves), ``manage`` and ``api`` (REST), ``mailer`` (template e-mails through e-mail campaigns).
:func:`setup_automation` wires it into the gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from crm.automation.api import AUTOMATION, automation_routes
from crm.automation.mailer import CampaignLauncher, campaign_launcher
from crm.automation.runner import Pusher, Runner
from crm.automation.service import AutomationService
from crm.db import Database
from crm.services import changes

__all__ = ["AUTOMATION", "AutomationService", "Runner", "setup_automation"]


def setup_automation(
    app: web.Application,
    db: Database,
    settings: Any,
    bus: Any,
    pusher: Pusher | None,
    launcher: CampaignLauncher | None = None,
) -> AutomationService:
    """REST routes, and (when enabled) record changes of this database onto the event bus,
    the rules subscribed to them, and the scheduler."""
    conf = settings.automation
    runner = Runner(db, pusher=pusher, launcher=launcher)
    service = AutomationService(db, runner, tick_seconds=conf.tick_seconds)
    app[AUTOMATION] = service
    app.add_routes(automation_routes())

    def forward(event: Any) -> None:
        bus.publish(event)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if runner.launcher is None:
            runner.launcher = campaign_launcher(app)
        if conf.enabled:
            from tamas.bus import local_only

            changes.add_listener(forward, db.engine.sync_engine)

            async def handle(event: Any) -> None:
                await service.handle(event)

            bus.subscribe("automation", local_only(handle), "record.", "user.")
            service.start()
        yield
        changes.remove_listener(forward)
        await service.stop()

    app.cleanup_ctx.append(lifecycle)
    return service
