"""Where users are connected, across gateway instances (screenpop/presence.py), without
sockets: what an instance announces, when, and what it believes of the others."""

from __future__ import annotations

import asyncio
from typing import Any

from cti import event_codec
from screenpop.presence import Presence, UserPush, UsersOnline


def heard_from(instance: str, *users: int) -> UsersOnline:
    return UsersOnline(users, 0.0, origin=instance)


def test_a_user_announced_by_another_instance_is_reachable_until_its_announcements_stop():
    p = Presence("gw-a", lambda e: None, lambda: [], ttl=30)
    p.heard(heard_from("gw-b", 7, 9), now=100.0)
    assert p.elsewhere(7, now=101.0) and p.elsewhere(9, now=129.0)
    assert not p.elsewhere(8, now=101.0)
    assert not p.elsewhere(7, now=131.0)  # gw-b was killed: forgotten after the TTL
    assert p.remote == {}


def test_a_push_names_the_instances_with_the_users_sockets_and_only_they_take_it():
    sent: list[Any] = []
    p = Presence("gw-a", sent.append, lambda: [])
    p.heard(heard_from("gw-c", 7), now=1.0)
    p.heard(heard_from("gw-b", 7, 8), now=1.0)
    assert p.elsewhere(7, now=2.0) == ("gw-b", "gw-c") and p.elsewhere(8, now=2.0) == ("gw-b",)
    p.forward(7, {"type": "reminder"}, p.elsewhere(7, now=2.0))
    [push] = sent
    assert push.to == ("gw-b", "gw-c") and not p.for_me(push)  # our own
    at_b = Presence("gw-b", sent.append, lambda: [])
    at_d = Presence("gw-d", sent.append, lambda: [])
    arrived = UserPush(7, {"type": "reminder"}, 1.0, ("gw-b", "gw-c"), origin="gw-a")
    assert at_b.for_me(arrived) and not at_d.for_me(arrived)


def test_an_empty_announcement_forgets_the_instance_and_our_own_are_ignored():
    p = Presence("gw-a", lambda e: None, lambda: [])
    p.heard(heard_from("gw-b", 7), now=1.0)
    p.heard(heard_from("gw-c", 7), now=1.0)
    p.heard(heard_from("gw-b"), now=2.0)  # gw-b shuts down
    assert p.elsewhere(7, now=3.0)  # still on gw-c
    p.heard(UsersOnline((5,), 0.0), now=3.0)  # no origin: published here
    assert not p.elsewhere(5, now=3.0)


async def test_a_burst_of_connects_is_one_announcement_and_leaving_announces_nobody():
    sent: list[Any] = []
    users = [3, 1]
    p = Presence("gw-a", sent.append, lambda: users, every=60, settle=0.05)
    p.start()
    await asyncio.sleep(0.01)
    assert sent == [UsersOnline((1, 3), sent[0].at)]  # on start
    users.extend([2, 2])
    for _ in range(50):
        p.changed()
    await asyncio.sleep(0.15)
    assert len(sent) == 2 and sent[1].users == (1, 2, 3)
    await p.leave()
    await p.leave()  # once only
    assert len(sent) == 3 and sent[2].users == ()
    p.changed()  # after leaving: nothing more
    await asyncio.sleep(0.1)
    assert len(sent) == 3


def test_both_events_cross_instances_through_the_event_codec():
    online = UsersOnline((1, 2), 12.5)
    push = UserPush(2, {"type": "reminder", "record": {"id": 1}}, 13.0, ("gw-b",))
    for event in (online, push):
        back = event_codec.decode_json(event_codec.encode_json(event), origin="gw-a")
        assert back == event and back.origin == "gw-a"
