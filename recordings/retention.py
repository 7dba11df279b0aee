"""How long a recording is kept (pure): the most specific rule wins.

Rules name a queue, a campaign, both, or neither (the default rule). A recording takes the
matching rule that names the most: campaign and queue, then campaign, then queue, then the
default rule, then the configured ``default_keep_days``. ``keep_days = None`` keeps forever.
A recording on hold (``keep_forever``, or a linked record carrying the hold tag) is never
deleted, whatever the rules say.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    id: int | None
    queue: str | None
    campaign_id: int | None
    keep_days: int | None

    @property
    def specificity(self) -> int:
        return (2 if self.campaign_id is not None else 0) + (1 if self.queue is not None else 0)

    def matches(self, queue: str | None, campaign_id: int | None) -> bool:
        return (self.campaign_id is None or self.campaign_id == campaign_id) and (
            self.queue is None or self.queue == queue
        )

    def describe(self) -> str:
        if self.id is None:
            return "configured default"
        scope = [f"campaign {self.campaign_id}"] if self.campaign_id is not None else []
        scope += [f"queue {self.queue}"] if self.queue is not None else []
        return f"rule {self.id} ({', '.join(scope) or 'default'})"


def effective_rule(
    rules: Iterable[Rule], queue: str | None, campaign_id: int | None, default_days: int | None
) -> Rule:
    best: Rule | None = None
    for rule in rules:
        if rule.matches(queue, campaign_id) and (
            best is None or rule.specificity > best.specificity
        ):
            best = rule
    return best if best is not None else Rule(None, None, None, default_days)


def expires_at(rule: Rule, recorded_at: dt.datetime | None) -> dt.datetime | None:
    if rule.keep_days is None or recorded_at is None:
        return None
    return recorded_at + dt.timedelta(days=rule.keep_days)


def is_expired(rule: Rule, recorded_at: dt.datetime | None, now: dt.datetime) -> bool:
    end = expires_at(rule, recorded_at)
    return end is not None and end <= now


def shortest_keep(rules: Iterable[Rule], default_days: int | None) -> int | None:
    """The fewest days any recording is kept: nothing younger can expire."""
    days = [r.keep_days for r in rules if r.keep_days is not None]
    if default_days is not None:
        days.append(default_days)
    return min(days) if days else None
