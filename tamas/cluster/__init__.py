"""Several gateway instances behind a load balancer (TAMAS_REDIS_URL set).

``redis_bus`` shares the domain events of every instance over a Redis stream, so an agent
connected to any instance sees every call; ``lease`` makes exactly one instance hold the
AMI link of each PBX at a time, and hands it over within seconds when that instance dies.
Without Redis none of this runs and one instance works alone, as it always did.
"""

from __future__ import annotations

from typing import Any


def redis_client(url: str) -> Any:
    """A ``redis.asyncio.Redis`` for the cluster (connects lazily: a Redis that is down at
    start makes the instance wait on standby, it does not stop it)."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    # One quick retry for a dropped connection; longer outages are the callers' business
    # (the lease keeper and the bus retry on their own schedule, never blocking for long).
    return Redis.from_url(
        url,
        socket_connect_timeout=2.0,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
    )


def text(value: Any) -> str:
    """A Redis reply as text (the client returns bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)
