"""Two (or more) real ``tamas serve`` processes on loopback sharing a PostgreSQL database and
a Redis, linked to a SIMULATED PBX that runs in the test's own event loop.

Each gateway is a subprocess, so "killing an instance" is a real SIGKILL: no shutdown code
runs, its lease is not released, its sockets just vanish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tamas.cluster.forward import SERVED_BY
from tests.servers import ARTIFACTS_DIR, HOST, free_port, log_tail

SECRET_KEY = "cluster-test-secret-key-shared-by-all-instances-0123456789"


@dataclass(frozen=True)
class Answer:
    """An API answer: status, JSON body, and the instance that carried the request out when
    it was forwarded to the PBX link's holder (``X-Tamas-Served-By``; None: served here)."""

    status: int
    body: Any
    served_by: str | None


@dataclass
class GatewayProcess:
    name: str
    config: dict[str, Any]
    workdir: Path
    port: int = field(default_factory=free_port)
    agi_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> None:
        cfg = {
            **self.config,
            "instance_id": self.name,
            "http_port": self.port,
            "agi_port": self.agi_port,
        }
        path = self.workdir / f"{self.name}.toml"
        path.write_text(to_toml(cfg), encoding="utf-8")
        # Only this test's settings: a stray TAMAS_* variable would change the instance.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAMAS_")}
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tamas.cli", "--config", str(path), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        finally:
            log.close()

    async def wait_serving(self, limit: float = 60.0) -> None:
        """Until ``/healthz`` answers (the process is up; not necessarily ready)."""
        deadline = time.monotonic() + limit
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(self.failure("exited during start-up"))
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise AssertionError(self.failure(f"not serving after {limit:g} s"))
                await asyncio.sleep(0.1)

    def failure(self, what: str) -> str:
        code = self.proc.poll() if self.proc else None
        return f"gateway {self.name} {what} (exit {code}); log:\n{log_tail(self.log_path, 30)}"

    def kill(self) -> None:
        """SIGKILL: the instance dies without any shutdown code running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    async def stop(self, limit: float = 15.0) -> None:
        """SIGTERM, then wait without blocking the event loop (the simulated PBX in it must
        go on answering the gateway's last AMI actions). A gateway that has not shut down
        within ``limit`` seconds is killed and the test fails: a shutdown hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + limit
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(self.failure(f"still running {limit:g} s after SIGTERM"))
            await asyncio.sleep(0.05)

    def save_log(self) -> None:
        with contextlib.suppress(OSError):
            dest = ARTIFACTS_DIR / "cluster" / self.log_path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(self.log_path.read_bytes())

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}{path}") as resp:
            return resp.status, await resp.text()

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        status, body = await self.get("/readyz")
        return status, json.loads(body)

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """``/metrics`` parsed with Prometheus's own parser: (sample name, labels) -> value."""
        status, body = await self.get("/metrics")
        assert status == 200, body
        out = {}
        for family in text_string_to_metric_families(body):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    async def login(self, username: str) -> str:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.url}/api/v1/auth/login",
                json={"username": username, "password": f"secret-{username}"},
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()
            token: str = (await resp.json())["token"]
            return token

    async def api(self, method: str, path: str, token: str, body: Any = None) -> Answer:
        """One API request with a user's token."""
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                method,
                f"{self.url}{path}",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            ) as resp,
        ):
            return Answer(resp.status, await resp.json(), resp.headers.get(SERVED_BY))


def to_toml(values: dict[str, Any]) -> str:
    """The few TOML shapes a gateway config needs (scalars, and [[ami]] tables)."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return json.dumps(str(v))

    lines = []
    tables = []
    for key, value in values.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {scalar(value)}")
    for key, rows in tables:
        for row in rows:
            lines.append(f"\n[[{key}]]")
            lines.extend(f"{k} = {scalar(v)}" for k, v in row.items())
    return "\n".join(lines) + "\n"
