"""Record changes as events, delivered once the transaction that made them has committed.

The services note what they changed (``note(session, RecordChanged(...))``); listeners (the
automation rules, through the gateway's event bus) hear of it only after the commit, so a
rolled-back change never triggers anything and nothing acts on data not yet visible to
other sessions. Listeners are called synchronously from the commit and must not block:
they hand the event on (``EventBus.publish``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

log = logging.getLogger("tamas.changes")

_KEY = "tamas_changes"
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


@dataclass(frozen=True, slots=True)
class RecordChanged:
    """A CRM record was created or updated; ``changes`` is the audit diff
    (``{field: [old, new]}``), so a stage change reads ``changes["stage_id"]``."""

    type: ClassVar[str] = "record.changed"
    entity: str
    entity_id: int
    action: str  # create, update
    changes: Mapping[str, Any] = field(default_factory=_empty)
    user_id: int | None = None
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "entity": self.entity,
            "entity_id": self.entity_id,
            "action": self.action,
            "changes": dict(self.changes),
            "user_id": self.user_id,
            "at": self.at,
        }


@dataclass(frozen=True, slots=True)
class UserDeactivated:
    """An admin deactivated a user (their records may need another owner)."""

    type: ClassVar[str] = "user.deactivated"
    user_id: int
    by_user_id: int | None = None
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "user_id": self.user_id,
            "by_user_id": self.by_user_id,
            "at": self.at,
        }


Listener = Callable[[Any], None]
# (engine the listener cares about, or None for every engine; the listener)
_listeners: list[tuple[Any, Listener]] = []


def add_listener(listener: Listener, engine: Any = None) -> None:
    """Call ``listener(event)`` after each commit that noted events; ``engine`` (a sync
    Engine) limits it to sessions bound to that database."""
    _listeners.append((engine, listener))


def remove_listener(listener: Listener) -> None:
    _listeners[:] = [(e, fn) for e, fn in _listeners if fn is not listener]


def note(session: AsyncSession | Session, change: Any) -> None:
    """Remember ``change`` for delivery after this session's transaction commits."""
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    sync.info.setdefault(_KEY, []).append(change)


@event.listens_for(Session, "after_commit")
def _deliver(session: Session) -> None:
    pending = session.info.pop(_KEY, None)
    if not pending or not _listeners:
        return
    try:
        bind: Any = session.bind if session.bind is not None else session.get_bind()
    except Exception:  # an unbound session: only listeners for every engine hear it
        bind = None
    engine = getattr(bind, "engine", bind)
    for change in pending:
        for wanted, listener in list(_listeners):
            if wanted is not None and wanted is not engine:
                continue
            try:
                listener(change)
            except Exception:
                log.exception("change listener failed", extra={"event_type": change.type})


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_KEY, None)
