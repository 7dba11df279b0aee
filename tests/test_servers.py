"""The real-server fixtures in tests/servers.py start working servers."""

from __future__ import annotations

from email.message import EmailMessage
from urllib.parse import quote

import aiosmtplib
import asyncpg
import pytest
import redis.asyncio as redis_asyncio
from sqlalchemy.engine import make_url

from tests.servers import (
    ARTIFACTS_DIR,
    CHROMIUM_ARGS,
    PostgresServer,
    RedisServer,
    SmtpServer,
)


@pytest.mark.postgres
async def test_postgres_server_answers_a_query(postgres_server: PostgresServer) -> None:
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("select current_database()") == "tamas"
        assert await conn.fetchval("show server_encoding") == "UTF8"
    finally:
        await conn.close()
    url = make_url(postgres_server.url)
    assert url.drivername == "postgresql+asyncpg"
    assert url.host == "127.0.0.1"


@pytest.mark.postgres
async def test_postgres_creates_and_drops_empty_databases(
    postgres_server: PostgresServer,
) -> None:
    name = postgres_server.unique_name("servers")
    url = postgres_server.create_database(name)
    assert make_url(url).database == name
    conn = await asyncpg.connect(postgres_server.dsn_for(name))
    try:
        tables = await conn.fetchval(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        )
        assert tables == 0
    finally:
        await conn.close()

    postgres_server.drop_database(name)
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        exists = await conn.fetchval("select count(*) from pg_database where datname = $1", name)
        assert exists == 0
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_postgres_drop_database_disconnects_open_sessions(
    postgres_server: PostgresServer,
) -> None:
    name = postgres_server.unique_name("busy")
    postgres_server.create_database(name)
    conn = await asyncpg.connect(postgres_server.dsn_for(name))
    try:
        postgres_server.drop_database(name)
    finally:
        await conn.close(timeout=2)


@pytest.mark.postgres
async def test_postgres_has_pg_trgm_for_persian_trigram_search(postgres_database: str) -> None:
    url = make_url(postgres_database).set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        await conn.execute("create extension if not exists pg_trgm")
        await conn.execute("create table people (name text)")
        await conn.execute("create index people_name_trgm on people using gin (name gin_trgm_ops)")
        await conn.executemany(
            "insert into people values ($1)", [("محمد رضایی",), ("Sara Karimi",)]
        )
        # Persian letters count as word characters (cluster locale is C.UTF-8, not C).
        assert await conn.fetchval("select array_length(show_trgm('رضایی'), 1)") > 0
        similar = await conn.fetch(
            "select name from people where name % $1 order by similarity(name, $1) desc",
            "رضائی محمد",
        )
        assert [r["name"] for r in similar] == ["محمد رضایی"]
    finally:
        await conn.close()


@pytest.mark.redis
async def test_redis_server_answers_ping_and_stores_values(redis_server: RedisServer) -> None:
    assert redis_server.url.startswith("redis://127.0.0.1:")
    client = redis_asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        assert await client.ping() is True
        await client.set("tamas:test", "سلام")
        assert await client.get("tamas:test") == "سلام"
        await client.delete("tamas:test")
    finally:
        await client.aclose()


async def test_smtp_server_records_sent_mail(smtp_server: SmtpServer) -> None:
    smtp_server.clear()
    message = EmailMessage()
    message["From"] = "crm@tamas.test"
    message["To"] = "agent@tamas.test"
    message["Subject"] = "تماس از دست رفته"
    message.set_content("Missed call from +989121234567")

    await aiosmtplib.send(message, hostname=smtp_server.host, port=smtp_server.port)

    [mail] = await smtp_server.wait_for(1)
    assert mail.mail_from == "crm@tamas.test"
    assert mail.rcpt_tos == ["agent@tamas.test"]
    assert mail.message["Subject"] == "تماس از دست رفته"
    assert "+989121234567" in mail.message.get_content()
    smtp_server.clear()
    assert smtp_server.messages == []


@pytest.mark.browser
async def test_chromium_renders_a_page_to_a_screenshot(chromium_path: str) -> None:
    from playwright.async_api import async_playwright

    html = (
        "<html dir='rtl'><body style='font-family: sans-serif'>"
        "<h1 id='title'>تماس ورودی</h1><p>Tamas screen-pop</p></body></html>"
    )
    out = ARTIFACTS_DIR / "screenshots" / "test_servers_chromium.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 480, "height": 200})
            await page.goto("data:text/html;charset=utf-8," + quote(html))
            assert await page.text_content("#title") == "تماس ورودی"
            await page.screenshot(path=str(out))
        finally:
            await browser.close()
    assert out.read_bytes().startswith(b"\x89PNG")
