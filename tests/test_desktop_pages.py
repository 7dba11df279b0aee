"""The desktop and wallboard pages and their assets: served by the gateway itself (no CDN),
never cached as pages, cached for good as versioned assets, and nothing outside the bundle."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from screenpop.pages import WEB_DIR, AssetBundle, setup_pages


@pytest.fixture
async def pages():
    app = web.Application()
    setup_pages(app)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@pytest.mark.parametrize("path", ["/app", "/wallboard", "/app/"])
async def test_pages_name_the_current_asset_version_and_are_never_cached(pages, path):
    resp = await pages.get(path)
    assert resp.status == 200
    html = await resp.text()
    version = AssetBundle.load().version
    assert f"/assets/{version}/css/app.css" in html
    assert "{{" not in html  # every placeholder filled
    assert resp.headers["Cache-Control"] == "no-cache"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert re.search(r'name="tamas-server-time" content="\d{13}"', html)
    assert '<html lang="fa" dir="rtl">' in html


async def test_pages_load_only_local_files(pages):
    for path in ("/app", "/wallboard"):
        html = await (await pages.get(path)).text()
        for url in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert url.startswith("/assets/"), url
    for js in (WEB_DIR / "js").glob("*.js"):
        text = js.read_text(encoding="utf-8")
        for spec in re.findall(r"""from\s+'([^']+)'""", text):
            assert spec.startswith("./"), f"{js.name} imports {spec}"
        assert "http://" not in text and "https://" not in text, js.name


async def test_versioned_assets_are_immutable_with_an_etag(pages):
    bundle = AssetBundle.load()
    resp = await pages.get(f"/assets/{bundle.version}/js/desktop.js")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/javascript")
    assert "immutable" in resp.headers["Cache-Control"]
    etag = resp.headers["ETag"]
    again = await pages.get(
        f"/assets/{bundle.version}/js/desktop.js", headers={"If-None-Match": etag}
    )
    assert again.status == 304
    css = await pages.get(f"/assets/{bundle.version}/css/app.css")
    assert css.headers["Content-Type"].startswith("text/css")


async def test_an_asset_asked_with_an_old_version_is_served_but_not_kept(pages):
    resp = await pages.get("/assets/000000000000/js/i18n.js")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    [
        "js/nope.js",
        "../pages.py",
        "..%2Fpages.py",
        "js/../../pages.py",
        "app.html",  # pages only through their route (placeholders filled)
    ],
)
async def test_nothing_outside_the_bundle_is_served(pages, path):
    version = AssetBundle.load().version
    resp = await pages.get(f"/assets/{version}/{path}")
    assert resp.status == 404


def test_the_version_changes_when_a_file_changes(tmp_path: Path):
    (tmp_path / "a.js").write_text("export const a = 1;\n")
    before = AssetBundle.load(tmp_path).version
    (tmp_path / "a.js").write_text("export const a = 2;\n")
    assert AssetBundle.load(tmp_path).version != before


async def test_the_index_page_links_the_desktop_and_the_wallboard(api):
    html = await (await api.client.get("/")).text()
    assert 'href="/app"' in html and 'href="/wallboard"' in html
