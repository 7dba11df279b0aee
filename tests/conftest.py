from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher

import crm.auth

try:
    from playwright.async_api import expect
except ImportError:  # pragma: no cover - playwright is a dev dependency
    pass
else:
    # Browser assertions wait for the page; on a loaded 2-core CI machine with parallel
    # workers, 5 s is not always enough for a PBX round trip to show.
    expect.set_options(timeout=15_000)

pytest_plugins = ["tests.servers", "tests.crm_fixtures", "tests.hangs"]


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashing() -> Iterator[None]:
    """The production argon2 cost (~0.3 s of CPU per hash) is the point in production and
    pure waste in tests, which create hundreds of users: same algorithm, minimal cost.
    Gateways the tests start as subprocesses keep the real cost (and rehash on login)."""
    original = crm.auth._hasher
    crm.auth._hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    yield
    crm.auth._hasher = original
