#!/usr/bin/env bash
# Idempotent developer/CI setup for Tamas.
#
#   1. Debian packages the tests and `tamas serve` need (only the missing ones; root only).
#   2. A virtualenv in .venv (created with python3 when missing or broken).
#   3. `pip install -e '.[dev]'`, only when pyproject.toml changed since the last install
#      (a stamp file in .venv records it).
#
# Quick when everything is present (no apt-get, no pip). Safe to run with no stdin.
# Environment:
#   TAMAS_SKIP_APT=1   never touch apt, even as root
#   PYTHON=python3.11  interpreter used to create .venv (default: python3)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"
VENV="$REPO_ROOT/.venv"
STAMP="$VENV/.tamas-setup-stamp"
PYTHON="${PYTHON:-python3}"

# Playwright (the Python package) must never fetch a browser of its own: tests drive
# Debian's /usr/bin/chromium through executable_path.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export DEBIAN_FRONTEND=noninteractive

log() { printf '==> setup: %s\n' "$*"; }
warn() { printf '==> setup: WARNING: %s\n' "$*" >&2; }
die() { printf '==> setup: ERROR: %s\n' "$*" >&2; exit 1; }

# --- 1. Debian packages -------------------------------------------------------------------
# postgresql/-contrib: real PostgreSQL for tests (initdb/pg_ctl/postgres, pg_trgm extension)
# redis-server:        real Redis for tests and multi-instance deployments
# chromium:            headless browser for Playwright tests (/usr/bin/chromium)
# fonts-*:             so screenshots render Latin and Persian/Arabic text (DejaVu has Arabic)
# ffmpeg:              pydub's converter for call recordings
# make:                the Makefile drives run/test/lint/bench
APT_PACKAGES=(
    postgresql
    postgresql-contrib
    redis-server
    chromium
    fonts-liberation
    fonts-dejavu-core
    ffmpeg
    make
)

# python3 -m venv needs ensurepip; Debian's own python3 ships it in python3-venv.
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [[ "$(command -v "$PYTHON" || true)" == /usr/bin/* ]]; then
        APT_PACKAGES+=(python3-venv)
    fi
fi

missing_packages() {
    local installed
    # Unknown packages make dpkg-query complain on stderr and exit 1: both are expected here.
    installed="$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${APT_PACKAGES[@]}" \
        2>/dev/null | awk '$2 == "ii" { print $1 }' || true)"
    local pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        if ! grep -qxF "$pkg" <<<"$installed"; then
            printf '%s\n' "$pkg"
        fi
    done
}

if ! command -v dpkg-query >/dev/null 2>&1; then
    warn "not a Debian system (no dpkg-query): skipping system packages;" \
        "install PostgreSQL, Redis, Chromium and ffmpeg yourself"
else
    mapfile -t MISSING < <(missing_packages)
    if ((${#MISSING[@]} == 0)); then
        log "system packages present: ${APT_PACKAGES[*]}"
    elif [[ "${TAMAS_SKIP_APT:-}" == 1 ]]; then
        warn "TAMAS_SKIP_APT=1: not installing missing packages: ${MISSING[*]}"
    elif [[ "$(id -u)" != 0 ]]; then
        warn "not root: skipping apt-get; missing packages: ${MISSING[*]}" \
            "(tests needing them are skipped outside CI)"
    else
        log "installing missing system packages: ${MISSING[*]}"
        APT_OPTS=(-y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
        log "apt-get update"
        apt-get "${APT_OPTS[@]}" update </dev/null
        log "apt-get install ${MISSING[*]}"
        apt-get "${APT_OPTS[@]}" install --no-install-recommends "${MISSING[@]}" </dev/null
        mapfile -t STILL_MISSING < <(missing_packages)
        if ((${#STILL_MISSING[@]} > 0)); then
            die "apt-get did not install: ${STILL_MISSING[*]}"
        fi
        log "system packages installed"
    fi
fi

# --- 2. virtualenv -------------------------------------------------------------------------
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "virtualenv present: $VENV ($("$VENV/bin/python" -V 2>&1))"
else
    if [[ -e "$VENV" ]]; then
        log "virtualenv at $VENV is broken: recreating it"
        rm -rf "$VENV"
    fi
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
    log "creating virtualenv $VENV with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV"
    log "upgrading pip in the virtualenv"
    "$VENV/bin/python" -m pip install -q --upgrade pip </dev/null
fi

# --- 3. project + dev dependencies ---------------------------------------------------------
want_stamp="$(sha256sum pyproject.toml | cut -d' ' -f1) $REPO_ROOT"
have_stamp="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want_stamp" == "$have_stamp" && -x "$VENV/bin/tamas" ]]; then
    log "python dependencies up to date (pyproject.toml unchanged since last install)"
else
    log "pip install -e '.[dev]' (pyproject.toml changed or first install)"
    rm -f "$STAMP"
    "$VENV/bin/python" -m pip install -q -e '.[dev]' </dev/null
    printf '%s\n' "$want_stamp" >"$STAMP"
    log "python dependencies installed"
fi

log "done"
