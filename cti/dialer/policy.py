"""What an attempt's outcome means for a call-list entry: pure rules, time passed in.

A call ends with a result (``classify``); the result moves the entry on
(``after_call``): answered calls wait for the agent's disposition, busy / no answer /
failed calls are retried after the campaign's delay until the attempts run out, and a call
the agent's own phone never took does not count against the customer. The disposition the
agent picks then closes the entry, schedules a callback or a retry, or puts the customer on
the do-not-call list (``after_disposition``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

ANSWERED = "answered"
BUSY = "busy"
NO_ANSWER = "no_answer"
FAILED = "failed"
AGENT_NO_ANSWER = "agent_no_answer"  # the agent's phone did not take the call
SKIPPED = "skipped"  # preview: the agent skipped the customer
RESULTS = (ANSWERED, BUSY, NO_ANSWER, FAILED, AGENT_NO_ANSWER, SKIPPED)

# Q.850 causes of the customer's leg.
_BUSY_CAUSES = frozenset({17, 21})  # user busy, call rejected
_NO_ANSWER_CAUSES = frozenset({0, 16, 18, 19, 31})  # rang out / nobody picked up
# Everything else (1 unallocated number, 3 no route, 27 out of order, 28 invalid number,
# 34/38/41/42 congestion and network trouble...) is a failure.

DEFAULT_RETRY_MINUTES: Mapping[str, float] = {
    BUSY: 10,
    NO_ANSWER: 60,
    FAILED: 30,
    AGENT_NO_ANSWER: 1,
    SKIPPED: 60,
}

Outcome = Literal["final", "retry", "callback", "dnc"]


@dataclass(frozen=True)
class Disposition:
    """A campaign's disposition code: ``final`` closes the entry, ``retry`` calls again
    after the ``no_answer`` delay, ``callback`` schedules a call back at the time the agent
    gives, ``dnc`` closes it and marks the customer do-not-call."""

    code: str
    en: str
    fa: str
    outcome: Outcome = "final"
    success: bool = False  # counts as a conversion in the campaign's progress

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "en": self.en,
            "fa": self.fa,
            "outcome": self.outcome,
            "success": self.success,
        }


DEFAULT_DISPOSITIONS: tuple[Disposition, ...] = (
    Disposition("sale", "Sale", "فروش", "final", True),
    Disposition("interested", "Interested", "علاقه‌مند", "final", True),
    Disposition("callback", "Call back later", "تماس مجدد", "callback"),
    Disposition("not_interested", "Not interested", "علاقه‌ای ندارد", "final"),
    Disposition("wrong_number", "Wrong number", "شماره اشتباه", "final"),
    Disposition("no_decision", "Undecided, try again", "مردد، دوباره تماس", "retry"),
    Disposition("do_not_call", "Do not call again", "دیگر تماس نگیرید", "dnc"),
)


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 3
    retry_minutes: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RETRY_MINUTES))

    def delay(self, result: str) -> dt.timedelta:
        minutes = self.retry_minutes.get(result, DEFAULT_RETRY_MINUTES.get(result, 30))
        return dt.timedelta(minutes=float(minutes))


def classify(
    answered: bool, cause: int | None, agent_took_call: bool, cause_text: str | None = None
) -> str:
    """The result of one attempt from how the call ended.

    ``answered``: the customer was connected to the agent; ``agent_took_call``: the agent's
    own phone answered the originate (without it the customer was never dialled).
    """
    if answered:
        return ANSWERED
    if not agent_took_call:
        return AGENT_NO_ANSWER
    if cause in _BUSY_CAUSES:
        return BUSY
    if cause is None:
        # Closed without a cause of its own (the PBX link was lost meanwhile...).
        return NO_ANSWER if not cause_text else FAILED
    if cause in _NO_ANSWER_CAUSES:
        return NO_ANSWER
    return FAILED


@dataclass(frozen=True)
class Step:
    """Where an entry goes next."""

    state: str  # pending, wrapup, done, exhausted, excluded
    attempts: int
    next_attempt_at: dt.datetime | None = None
    reason: str | None = None
    set_do_not_call: bool = False
    callback: bool = False


def after_call(attempts: int, result: str, policy: Policy, now: dt.datetime) -> Step:
    """The entry's next state after an attempt ended with ``result``."""
    if result == ANSWERED:
        return Step("wrapup", attempts + 1, reason="awaiting disposition")
    if result in (AGENT_NO_ANSWER, SKIPPED):
        # Not the customer's doing: no attempt is spent.
        return Step("pending", attempts, now + policy.delay(result), reason=result)
    spent = attempts + 1
    if spent >= policy.max_attempts:
        return Step("exhausted", spent, None, reason=f"{result} x{spent}")
    return Step("pending", spent, now + policy.delay(result), reason=f"retry after {result}")


class DispositionError(ValueError):
    pass


def find_disposition(dispositions: Sequence[Disposition], code: str) -> Disposition:
    for d in dispositions:
        if d.code == code:
            return d
    known = ", ".join(d.code for d in dispositions)
    raise DispositionError(f"{code!r} is not a disposition of this campaign ({known})")


def after_disposition(
    disposition: Disposition,
    attempts: int,
    policy: Policy,
    now: dt.datetime,
    callback_at: dt.datetime | None = None,
) -> Step:
    """The entry's next state once the agent chose ``disposition`` for the answered call."""
    if disposition.outcome == "final":
        return Step("done", attempts, reason=disposition.code)
    if disposition.outcome == "dnc":
        return Step("excluded", attempts, reason="do_not_call", set_do_not_call=True)
    if disposition.outcome == "callback":
        if callback_at is None:
            raise DispositionError("a callback needs the time to call back (callback_at)")
        if callback_at <= now:
            raise DispositionError("the callback time must be in the future")
        return Step("pending", attempts, callback_at, reason="callback", callback=True)
    # retry
    if attempts >= policy.max_attempts:
        return Step("exhausted", attempts, reason=f"{disposition.code} x{attempts}")
    when = callback_at if callback_at is not None and callback_at > now else None
    return Step("pending", attempts, when or now + policy.delay(NO_ANSWER), reason="retry")


def parse_dispositions(raw: Sequence[Mapping[str, Any]]) -> tuple[Disposition, ...]:
    """The stored JSON list (validated by the API) as Dispositions; empty: the defaults."""
    if not raw:
        return DEFAULT_DISPOSITIONS
    return tuple(
        Disposition(
            code=str(d["code"]),
            en=str(d.get("en") or d["code"]),
            fa=str(d.get("fa") or d.get("en") or d["code"]),
            outcome=d.get("outcome", "final"),
            success=bool(d.get("success", False)),
        )
        for d in raw
    )
