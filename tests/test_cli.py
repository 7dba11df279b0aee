"""The tamas command as an operator uses it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SUBCOMMANDS = [
    [],
    ["serve"],
    ["db"],
    ["db", "upgrade"],
    ["user"],
    ["user", "add"],
    ["import"],
    ["export"],
    ["demo-data"],
    ["backup"],
    ["restore"],
]


def tamas(*args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tamas.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=stdin,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("cmd", SUBCOMMANDS, ids=lambda c: " ".join(c) or "tamas")
def test_every_command_explains_itself(cmd):
    proc = tamas(*cmd, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: tamas" in proc.stdout and len(proc.stdout.splitlines()) > 4


def test_fresh_database_upgrade_user_add_and_demo_data(tmp_path):
    env = {"TAMAS_DATA_DIR": str(tmp_path)}
    assert tamas("db", "upgrade", env=env).returncode == 0
    proc = tamas(
        "user",
        "add",
        "sara",
        "--role",
        "supervisor",
        "--device",
        "PJSIP/1001",
        "--extension",
        "1001",
        "--password-stdin",
        env=env,
        stdin="long-password\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert "user sara (supervisor) created" in proc.stdout
    dup = tamas("user", "add", "sara", "--password", "long-password", env=env)
    assert dup.returncode == 2 and dup.stderr.strip() == "tamas: username 'sara' is taken"
    short = tamas("user", "add", "reza", "--password", "short", env=env)
    assert short.returncode == 2 and "password" in short.stderr
    demo = tamas("demo-data", "--if-empty", env=env)
    assert "skipped" in demo.stdout


def test_serve_refuses_an_unmigrated_database(tmp_path):
    proc = tamas("serve", "--port", "0", env={"TAMAS_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 2
    assert "run `tamas db upgrade`" in proc.stderr
