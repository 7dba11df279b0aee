"""The PBX link lease against a real Redis: one holder at a time, renewal keeps it, a dead
holder's lease runs out and a standby takes over, a holder that cannot renew gives up."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from tamas.cluster.lease import LeaseKeeper, RedisLease, instance_of, make_token
from tests.waiting import eventually

pytestmark = pytest.mark.redis

TTL = 0.6  # seconds; short so expiry happens within the test


@pytest.fixture
async def redis(redis_server):
    client = Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def key() -> str:
    return f"test:lease:{uuid.uuid4().hex}"


def test_a_token_names_its_instance_and_differs_per_process_life():
    a, b = make_token("gw-a"), make_token("gw-a")
    assert instance_of(a) == instance_of(b) == "gw-a"
    assert a != b
    assert instance_of(make_token("host:1/x")) == "host:1/x"
    assert instance_of(None) is None


async def test_only_one_instance_acquires_and_the_other_sees_who_holds_it(redis, key):
    a = RedisLease(redis, key, make_token("gw-a"), TTL)
    b = RedisLease(redis, key, make_token("gw-b"), TTL)
    assert await a.acquire()
    assert not await b.acquire()
    assert a.valid() and not b.valid()
    assert await b.holder() == a.token
    assert instance_of(await b.holder()) == "gw-a"


async def test_renewing_keeps_the_lease_past_its_ttl(redis, key):
    a = RedisLease(redis, key, make_token("gw-a"), TTL)
    b = RedisLease(redis, key, make_token("gw-b"), TTL)
    assert await a.acquire()
    for _ in range(4):  # 4 x TTL/2 = twice the TTL
        await asyncio.sleep(TTL / 2)
        assert await a.renew()
        assert not await b.acquire()
    assert await redis.pttl(key) > 0


async def test_a_lease_nobody_renews_expires_and_another_instance_takes_it(redis, key):
    a = RedisLease(redis, key, make_token("gw-a"), TTL)
    b = RedisLease(redis, key, make_token("gw-b"), TTL)
    assert await a.acquire()
    await asyncio.sleep(TTL * 1.5)  # gw-a died: no renewal
    assert not a.valid()  # its own clock says so too
    assert await b.acquire()
    assert not await a.renew()  # the old holder cannot extend the new holder's lease
    assert await b.holder() == b.token


async def test_only_the_holder_can_renew_or_release(redis, key):
    a = RedisLease(redis, key, make_token("gw-a"), TTL)
    b = RedisLease(redis, key, make_token("gw-b"), TTL)
    assert await a.acquire()
    assert not await b.renew()
    assert not await b.release()
    assert await b.holder() == a.token
    assert await a.release()
    assert await a.holder() is None
    assert await b.acquire()


class Recorder:
    def __init__(self) -> None:
        self.log: list[str] = []

    def keeper(self, lease: RedisLease, name: str) -> LeaseKeeper:
        async def acquired() -> None:
            self.log.append(f"{name} acquired")

        async def lost() -> None:
            self.log.append(f"{name} lost")

        return LeaseKeeper(lease, acquired, lost, name=name)


async def test_keepers_hold_one_at_a_time_and_a_clean_stop_hands_over(redis, key):
    rec = Recorder()
    a = rec.keeper(RedisLease(redis, key, make_token("gw-a"), TTL), "a")
    b = rec.keeper(RedisLease(redis, key, make_token("gw-b"), TTL), "b")
    a.start()
    await eventually(lambda: a.held)
    b.start()
    await asyncio.sleep(TTL * 2)  # several rounds: a renews, b keeps trying
    assert a.held and not b.held
    assert rec.log == ["a acquired"]
    assert instance_of(b.holder) == "gw-a"
    await a.stop()  # on_lost first, then the lease is released
    assert rec.log[-1] == "a lost"
    await eventually(lambda: b.held, TTL * 3)
    assert rec.log == ["a acquired", "a lost", "b acquired"]
    await b.stop()


async def test_a_dead_holder_is_replaced_once_its_lease_runs_out(redis, key):
    rec = Recorder()
    a = rec.keeper(RedisLease(redis, key, make_token("gw-a"), TTL), "a")
    b = rec.keeper(RedisLease(redis, key, make_token("gw-b"), TTL), "b")
    a.start()
    await eventually(lambda: a.held)
    b.start()
    assert a._task is not None
    a._task.cancel()  # the process died: no on_lost, no release
    await eventually(lambda: b.held, TTL * 4)
    assert rec.log == ["a acquired", "b acquired"]
    assert await redis.get(key) == b.lease.token.encode()
    await b.stop()


async def test_a_holder_that_cannot_reach_redis_gives_the_link_up_within_its_ttl(
    redis, redis_server, key
):
    rec = Recorder()
    lease = RedisLease(redis, key, make_token("gw-a"), TTL)
    a = rec.keeper(lease, "a")
    await a.step()
    assert a.held
    # Redis out of reach from gw-a (a port nobody listens on).
    unreachable = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    lease.redis = unreachable
    a.start()
    await eventually(lambda: not a.held, TTL * 4)
    assert rec.log == ["a acquired", "a lost"]
    assert a.errors >= 1 and a.last_error
    await a.stop()
    await unreachable.aclose()


async def test_a_holder_whose_lease_was_taken_gives_the_link_up(redis, key):
    rec = Recorder()
    a = rec.keeper(RedisLease(redis, key, make_token("gw-a"), TTL), "a")
    await a.step()
    assert a.held
    await redis.set(key, make_token("gw-b"), px=10_000)  # e.g. gw-a was frozen past its TTL
    await a.step()
    assert not a.held
    assert rec.log == ["a acquired", "a lost"]
    assert instance_of((await redis.get(key)).decode()) == "gw-b"
