"""Pacing: which customer goes to which agent now. Pure; property-tested.

Progressive dialling places one call per available agent, tied to that agent, so a
customer never answers to silence: the number of calls placed is never more than the
agents who are free (available on the PBX and not already holding a call, an offer or a
wrap-up of the dialer). Preview mode uses the same plan to decide whose screen gets which
customer. A callback a customer was promised by one agent goes only to that agent.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    """A call-list entry that may be dialled now, in the order it should be (callbacks and
    higher priority first, then the longest waiting)."""

    entry_id: int
    callback_agent_id: int | None = None


def free_agents(available: Sequence[int], busy: Collection[int]) -> list[int]:
    """Agents the dialer may use now: available on the PBX and not holding anything of the
    dialer's (a call being placed, an offer on screen, a fresh wrap-up), in the given order
    (the longest idle first), each once."""
    seen: set[int] = set()
    out: list[int] = []
    for agent in available:
        if agent in busy or agent in seen:
            continue
        seen.add(agent)
        out.append(agent)
    return out


def plan(agents: Sequence[int], candidates: Sequence[Candidate]) -> list[tuple[int, int]]:
    """``(agent, entry)`` pairs for free ``agents``: each agent and each entry at most once,
    so never more pairs than agents; callbacks promised by an agent only to that agent, and
    before anything else that agent could take."""
    free = list(dict.fromkeys(agents))
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    # Promised callbacks first: they are due and only their agent may make them.
    for c in candidates:
        if c.callback_agent_id is not None and c.callback_agent_id in free:
            if c.entry_id in used:
                continue
            free.remove(c.callback_agent_id)
            pairs.append((c.callback_agent_id, c.entry_id))
            used.add(c.entry_id)
    open_entries = [c for c in candidates if c.callback_agent_id is None and c.entry_id not in used]
    for agent, c in zip(free, open_entries, strict=False):
        pairs.append((agent, c.entry_id))
        used.add(c.entry_id)
    return pairs


def calls_allowed(available_agents: int, calls_in_progress: int) -> int:
    """How many more calls the progressive dialer may place: one per free agent (ratio 1),
    never negative."""
    return max(0, available_agents - calls_in_progress)
