"""Settings from TOML and TAMAS_* variables; bad settings are one clear line."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tamas.config import ConfigError, load_settings


def test_defaults_use_sqlite_under_the_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("TAMAS_DATA_DIR", str(tmp_path))
    s = load_settings()
    assert s.db_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/tamas.db"
    assert s.phone_region == "IR" and s.http_port == 8080


def test_environment_overrides_the_toml_file(tmp_path, monkeypatch):
    cfg = tmp_path / "tamas.toml"
    cfg.write_text(
        'http_port = 9000\nphone_region = "IR"\n'
        '[[ami]]\nname = "pbx1"\nhost = "10.0.0.5"\nusername = "gw"\nsecret = "s"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("TAMAS_HTTP_PORT", "9100")
    s = load_settings(cfg)
    assert s.http_port == 9100
    assert s.ami[0].name == "pbx1" and s.ami[0].port == 5038


def test_postgres_url_is_given_the_async_driver(monkeypatch):
    monkeypatch.setenv("TAMAS_DATABASE_URL", "postgresql://u:p@db/tamas")
    assert load_settings().db_url == "postgresql+asyncpg://u:p@db/tamas"


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("TAMAS_HTTP_PORT", "eighty", "http_port (TAMAS_HTTP_PORT)"),
        ("TAMAS_TIMEZONE", "Mars/Olympus", "unknown timezone"),
        ("TAMAS_DATABASE_URL", "mysql://x", "must be a sqlite:/// or postgresql:// URL"),
        ("TAMAS_PHONE_REGION", "iran", "phone_region"),
        ("TAMAS_HTTP_POTR", "1", "unknown setting TAMAS_HTTP_POTR"),
        ("TAMAS_ADVERTISE_URL", "10.0.0.7:8080", "advertise_url (TAMAS_ADVERTISE_URL)"),
        ("TAMAS_HTTP_PORT", "0", "set advertise_url (TAMAS_ADVERTISE_URL) or a fixed http_port"),
    ],
)
def test_bad_setting_is_a_one_line_error_naming_it(monkeypatch, env, value, expected):
    if value == "0":  # any free port is fine alone, not when other instances must reach it
        monkeypatch.setenv("TAMAS_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_the_address_other_instances_use_defaults_to_where_the_api_listens(monkeypatch):
    monkeypatch.setenv("TAMAS_HTTP_HOST", "10.0.0.7")
    monkeypatch.setenv("TAMAS_HTTP_PORT", "8081")
    assert load_settings().instance_url == "http://10.0.0.7:8081"
    # Bound to every interface: the others dial the host name, not 0.0.0.0.
    monkeypatch.setenv("TAMAS_HTTP_HOST", "0.0.0.0")
    assert load_settings().instance_url == f"http://{socket.gethostname()}:8081"
    monkeypatch.setenv("TAMAS_HTTP_HOST", "fd00::7")
    assert load_settings().instance_url == "http://[fd00::7]:8081"
    monkeypatch.setenv("TAMAS_ADVERTISE_URL", "https://gw-a.internal:8443/")
    assert load_settings().instance_url == "https://gw-a.internal:8443"


def test_missing_or_broken_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("http_port = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)


def test_cli_prints_config_errors_without_a_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tamas.cli", "db", "upgrade"],
        env={"TAMAS_HTTP_PORT": "x", "TAMAS_DATA_DIR": str(tmp_path), "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("tamas: configuration error: http_port")
    assert "Traceback" not in proc.stderr
