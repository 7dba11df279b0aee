"""CRM test fixtures: a freshly migrated database per test, on SQLite and on PostgreSQL.

Migrations run once per backend into a template; each test gets a copy (a file copy on
SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL), so tests are isolated and quick.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crm.auth import principal_for
from crm.db import Database
from crm.migrate import upgrade
from crm.models import User
from crm.permissions import Principal
from crm.schemas import PipelineIn, StageIn, UserIn
from crm.services.pipelines import create_pipeline
from crm.services.users import create_user
from tests.servers import PostgresServer

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> Iterator[str]:
    name = "tamas_template_" + uuid.uuid4().hex[:8]
    postgres_server.create_database(name)
    upgrade(postgres_server.url_for(name))
    yield name
    postgres_server.drop_database(name)


def _fresh_postgres(request: pytest.FixtureRequest) -> tuple[str, Any]:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    template = request.getfixturevalue("postgres_template")
    name = "t_" + uuid.uuid4().hex[:12]
    server.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return server.url_for(name), lambda: server.drop_database(name)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a migrated, empty CRM database (each backend in turn)."""
    if request.param == "sqlite":
        path = tmp_path / "tamas.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url, cleanup = _fresh_postgres(request)
    try:
        yield url
    finally:
        cleanup()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    try:
        yield database
    finally:
        await database.dispose()


@dataclass
class Actor:
    user: User
    principal: Principal
    password: str


async def make_actor(
    db: Database,
    username: str,
    role: str = "agent",
    team_ids: list[int] | None = None,
    devices: list[str] | None = None,
    extension: str | None = None,
) -> Actor:
    password = "secret-" + username
    async with db.session() as s:
        user = await create_user(
            s,
            None,
            UserIn(
                username=username,
                password=password,
                role=role,
                full_name=username.title(),
                team_ids=team_ids or [],
                extension=extension,
                devices=[{"interface": d} for d in devices or []],
            ),
        )
        principal = await principal_for(s, user)
    return Actor(user, principal, password)


async def make_pipeline(db: Database, name: str = "Sales") -> int:
    async with db.session() as s:
        pipe = await create_pipeline(
            s,
            None,
            PipelineIn(
                name=name,
                stages=[
                    StageIn(name="Qualify", probability=10),
                    StageIn(name="Proposal", probability=50),
                    StageIn(name="Won", probability=100, is_won=True),
                    StageIn(name="Lost", probability=0, is_lost=True),
                ],
            ),
        )
        return pipe.id


class Api:
    """A running gateway app on a random loopback port, with helpers to log in."""

    def __init__(self, client: Any, db: Database) -> None:
        self.client = client
        self.db = db

    async def login(self, username: str, password: str) -> dict[str, str]:
        resp = await self.client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert resp.status == 200, await resp.text()
        token = (await resp.json())["token"]
        return {"Authorization": f"Bearer {token}"}

    async def actor(self, username: str, role: str = "agent", **kw: Any) -> dict[str, str]:
        actor = await make_actor(self.db, username, role, **kw)
        return await self.login(username, actor.password)

    async def call(
        self, method: str, path: str, headers: dict[str, str], expect: int = 200, **kw: Any
    ) -> Any:
        resp = await self.client.request(method, path, headers=headers, **kw)
        text = await resp.text()
        assert resp.status == expect, f"{method} {path}: {resp.status} {text}"
        return await resp.json() if text and resp.content_type == "application/json" else text


@pytest.fixture
async def api(db: Database, tmp_path: Path) -> AsyncIterator[Api]:
    from aiohttp.test_utils import TestClient, TestServer

    from tamas.app import create_app
    from tamas.config import Settings

    settings = Settings(data_dir=tmp_path / "data", database_url=db.url, simulate_pbx=False)
    app = create_app(settings, db)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Api(client, db)
    finally:
        await client.close()
