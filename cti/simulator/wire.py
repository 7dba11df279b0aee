"""Wire helpers: AMI messages as ordered ``(key, value)`` lists, framed like Asterisk does.

Field order follows Asterisk's own ``astman_send_response_full`` and list helpers (checked
against the recorded traces) so that a client that only works against real Asterisk byte
layouts also works against the simulator.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Pairs = list[tuple[str, str]]


def frame(pairs: Iterable[tuple[str, str]]) -> bytes:
    """``Key: Value\\r\\n`` lines and the terminating blank line."""
    return ("".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n").encode("utf-8")


def response(
    action_id: str | None,
    message: str | None = None,
    *,
    status: str = "Success",
    event_list: str | None = None,
    extra: Sequence[tuple[str, str]] = (),
) -> Pairs:
    """``Response``, ``ActionID`` (only if the action had one), ``EventList``, ``Message``."""
    pairs: Pairs = [("Response", status)]
    if action_id:
        pairs.append(("ActionID", action_id))
    if event_list:
        pairs.append(("EventList", event_list))
    if message is not None:
        pairs.append(("Message", message))
    pairs.extend(extra)
    return pairs


def error(action_id: str | None, message: str) -> Pairs:
    return response(action_id, message, status="Error")


def list_start(action_id: str | None, message: str) -> Pairs:
    """First message of an event list (``astman_send_listack``)."""
    return response(action_id, message, event_list="start")


def list_complete(
    event: str, action_id: str | None, count: int, extra: Sequence[tuple[str, str]] = ()
) -> Pairs:
    """Last message of an event list (``astman_send_list_complete``)."""
    pairs: Pairs = [("Event", event)]
    if action_id:
        pairs.append(("ActionID", action_id))
    pairs += [("EventList", "Complete"), ("ListItems", str(count))]
    pairs.extend(extra)
    return pairs


def event(name: str, privilege: str | None, *blocks: Sequence[tuple[str, str]]) -> Pairs:
    """An unsolicited event: ``Event``, ``Privilege``, then the blocks in order."""
    pairs: Pairs = [("Event", name)]
    if privilege:
        pairs.append(("Privilege", privilege))
    for block in blocks:
        pairs.extend(block)
    return pairs


def with_action_id(pairs: Pairs, action_id: str | None, *, first: bool = False) -> Pairs:
    """List items carry the ActionID either right after ``Event`` or at the end."""
    if not action_id:
        return pairs
    if first:
        return [pairs[0], ("ActionID", action_id), *pairs[1:]]
    return [*pairs, ("ActionID", action_id)]
