"""The agent desktop (``/app``) and the supervisor wallboard (``/wallboard``) as static files.

No build step: the browser loads plain JavaScript modules from ``screenpop/web/``. Assets are
served under ``/assets/<content hash>/...`` with a one-year immutable cache; the pages name
the current hash, and relative module imports inherit it, so a new release is picked up on
the next page load and never mixes old and new files. The pages themselves are never cached.
Everything is served by the gateway (offline call centres: no CDN).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from tamas import __version__

WEB_DIR = Path(__file__).resolve().parent / "web"

CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
TEXT_TYPES = {".js", ".css", ".html", ".svg", ".json"}

# Only our own files; the websocket is same-origin ('self' covers ws:/wss: in CSP 3).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
IMMUTABLE = "public, max-age=31536000, immutable"

PAGES = {
    "/app": "app.html",
    "/wallboard": "wallboard.html",
    "/reports": "reports.html",
    "/campaigns": "campaigns.html",
}


@dataclass(frozen=True)
class AssetBundle:
    """The files under ``root`` and one hash over all of them (the cache-busting version)."""

    root: Path
    version: str
    etags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path = WEB_DIR) -> AssetBundle:
        root = root.resolve()
        total = hashlib.sha256()
        etags: dict[str, str] = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            etags[rel] = f'"{digest[:20]}"'
            total.update(f"{rel}\0{digest}\n".encode())
        return cls(root, total.hexdigest()[:12], etags)

    @property
    def prefix(self) -> str:
        return f"/assets/{self.version}"

    def resolve(self, rel: str) -> Path | None:
        """The file for a URL path inside the bundle, or None (missing, or outside it)."""
        if rel not in self.etags:
            return None  # only files that existed at start-up: no traversal, no surprises
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path


ASSETS = web.AppKey("screenpop_assets", AssetBundle)


def content_type(path: Path) -> str:
    ctype = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    return f"{ctype}; charset=utf-8" if path.suffix in TEXT_TYPES else ctype


def render_page(bundle: AssetBundle, name: str, now_ms: int) -> str:
    """A page template with the asset prefix, version and server clock filled in."""
    template = (bundle.root / name).read_text(encoding="utf-8")
    return (
        template.replace("{{assets}}", bundle.prefix)
        .replace("{{version}}", __version__)
        .replace("{{server_time_ms}}", str(now_ms))
    )


async def page(request: web.Request) -> web.Response:
    bundle = request.app[ASSETS]
    name = PAGES[request.path.rstrip("/") or "/"]
    html = render_page(bundle, name, int(time.time() * 1000))
    return web.Response(
        text=html,
        content_type="text/html",
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )


async def asset(request: web.Request) -> web.StreamResponse:
    bundle = request.app[ASSETS]
    rel = request.match_info["path"]
    path = bundle.resolve(rel)
    if path is None or rel in PAGES.values():
        raise web.HTTPNotFound(text="no such asset")
    etag = bundle.etags[rel]
    # An old page asking with an old version gets today's file, but must not keep it.
    cache = IMMUTABLE if request.match_info["version"] == bundle.version else "no-cache"
    headers = {
        "Cache-Control": cache,
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
        "Content-Type": content_type(path),
    }
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=path.read_bytes(), headers=headers)


def setup_pages(app: web.Application, root: Path = WEB_DIR) -> None:
    """Serve the desktop, the wallboard and their assets on ``app``."""
    app[ASSETS] = AssetBundle.load(root)
    for path in PAGES:
        app.router.add_get(path, page)
        app.router.add_get(path + "/", page)
    app.router.add_get("/assets/{version}/{path:.+}", asset)
