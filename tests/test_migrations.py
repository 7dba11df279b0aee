"""Migrations build the whole schema from nothing and match the models exactly."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from crm.db import create_engine
from crm.migrate import downgrade, head_revision, include_object, upgrade
from crm.models import Base


def _diff(url: str) -> list:
    async def go() -> list:
        engine = create_engine(url)
        async with engine.connect() as conn:

            def compare(sync_conn):
                ctx = MigrationContext.configure(
                    sync_conn, opts={"compare_type": True, "include_object": include_object}
                )
                return compare_metadata(ctx, Base.metadata)

            diff = await conn.run_sync(compare)
        await engine.dispose()
        return diff

    return asyncio.run(go())


def _tables(url: str) -> set[str]:
    async def go() -> set[str]:
        engine = create_engine(url)
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            if engine.dialect.name == "sqlite":
                assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
                assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        await engine.dispose()
        return names

    return asyncio.run(go())


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/m.db"
        return
    server = request.getfixturevalue("postgres_server")
    name = server.unique_name("mig")
    yield server.create_database(name)
    server.drop_database(name)


def test_upgrade_from_empty_creates_every_model_table_and_matches_the_models(empty_url):
    upgrade(empty_url)
    tables = _tables(empty_url)
    assert set(Base.metadata.tables) <= tables
    assert _diff(empty_url) == []


def test_downgrade_to_nothing_and_up_again(empty_url):
    upgrade(empty_url)
    downgrade(empty_url, "base")
    assert _tables(empty_url) <= {"alembic_version"}
    upgrade(empty_url)
    assert set(Base.metadata.tables) <= _tables(empty_url)
    assert head_revision() == "0008"
