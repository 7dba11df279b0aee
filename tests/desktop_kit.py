"""Shared pieces of the browser tests: Debian's Chromium under Playwright (never a browser
Playwright downloads), screenshots kept as test artifacts, and waiting helpers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.servers import CHROMIUM_ARGS

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"


@asynccontextmanager
async def chromium(executable_path: str) -> AsyncIterator[Any]:
    """A headless Chromium (the system's) for one test."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=executable_path, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Any, base_url: str, *, locale: str = "fa-IR", **options: Any) -> Any:
    """A page in a fresh context (own storage), notifications allowed for the gateway."""
    context = await browser.new_context(
        base_url=base_url,
        locale=locale,
        timezone_id="Asia/Tehran",
        viewport={"width": 1400, "height": 900},
        **options,
    )
    await context.grant_permissions(["notifications"], origin=base_url)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # checked by tests: a page that throws is a failure
    return page


async def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
