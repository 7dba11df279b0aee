"""The ``tamas`` command: serve the gateway and administer its database.

Every failure the operator can fix (bad setting, missing file, wrong user) is one line on
stderr and exit code 2; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from tamas import __version__
from tamas.config import ConfigError, Settings, load_settings

log = logging.getLogger("tamas.cli")


class CliError(Exception):
    """An operator-fixable problem; printed as one line."""


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


async def _principal(settings: Settings, username: str | None) -> Any:
    from sqlalchemy import select

    from crm.auth import principal_for
    from crm.db import Database
    from crm.models import Role, User

    db = Database(settings.db_url)
    try:
        async with db.session() as s:
            stmt = select(User).where(User.is_active.is_(True))
            if username:
                stmt = stmt.where(User.username == username)
            else:
                stmt = stmt.join(Role).where(Role.name == "admin").order_by(User.id)
            user = (await s.scalars(stmt.limit(1))).first()
            if user is None:
                raise CliError(
                    f"no active user {username!r}"
                    if username
                    else "no admin user yet: create one with `tamas user add NAME --role admin`"
                )
            return await principal_for(s, user)
    finally:
        await db.dispose()


# -- commands ------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> None:
    from tamas.serve import run

    settings = _settings(args)
    if args.host:
        settings.http_host = args.host
    if args.port is not None:
        settings.http_port = args.port
    if args.upgrade:
        from crm.migrate import upgrade

        upgrade(settings.db_url)
    run(settings)


def cmd_db_upgrade(args: argparse.Namespace) -> None:
    from crm.migrate import upgrade

    settings = _settings(args)
    upgrade(settings.db_url, args.revision)
    print(f"database at {settings.db_url.split('@')[-1]} is at revision {args.revision}")


def cmd_user_add(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from crm.db import Database
    from crm.errors import CrmError
    from crm.schemas import UserIn
    from crm.services.users import create_user

    settings = _settings(args)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif args.password:
        password = args.password
    else:
        password = getpass.getpass(f"password for {args.username}: ")
    try:
        data = UserIn(
            username=args.username,
            password=password,
            role=args.role,
            full_name=args.full_name or "",
            email=args.email,
            extension=args.extension,
            language=args.language,
            devices=[{"interface": d} for d in args.device],
        )
    except ValidationError as exc:
        from crm.api.base import pydantic_errors

        raise CliError(
            "; ".join(f"{e['field']}: {e['reason']}" for e in pydantic_errors(exc))
        ) from None

    async def go() -> int:
        db = Database(settings.db_url)
        try:
            async with db.session() as s:
                user = await create_user(s, None, data)
                return user.id
        except CrmError as exc:
            raise CliError(str(exc)) from None
        finally:
            await db.dispose()

    uid = asyncio.run(go())
    print(f"user {args.username} ({args.role}) created with id {uid}")


def _progress(label: str) -> Callable[[int, int], None]:
    """A one-line progress bar on stderr (only when it is a terminal)."""
    tty = sys.stderr.isatty()

    def show(done: int, total: int) -> None:
        if not tty:
            return
        pct = done / total if total else 1.0
        bar = "#" * int(pct * 30)
        sys.stderr.write(f"\r{label} [{bar:<30}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _mapping(pairs: list[str]) -> dict[str, str] | None:
    out = {}
    for pair in pairs:
        header, sep, field = pair.rpartition("=")
        if not sep or not header or not field:
            raise CliError(f"--map takes HEADER=field, got {pair!r}")
        out[header] = field
    return out or None


def cmd_import(args: argparse.Namespace) -> None:
    from crm.db import Database
    from crm.errors import CrmError
    from crm.importer import import_csv, revert_import
    from crm.permissions import PermissionDenied

    settings = _settings(args)

    async def go() -> None:
        p = await _principal(settings, args.as_user)
        db = Database(settings.db_url)
        try:
            if args.revert is not None:
                await revert_import(db, p, args.revert)
                print(f"import {args.revert} reverted")
                return
            if not args.entity or not args.file:
                raise CliError("name what to import: tamas import contacts FILE.csv")
            path = Path(args.file)
            if not await asyncio.to_thread(path.is_file):
                raise CliError(f"{path} does not exist")
            report = Path(args.report) if args.report else path.with_suffix(".rejected.csv")
            result = await import_csv(
                db,
                p,
                args.entity.rstrip("s"),
                path,
                mapping=_mapping(args.map),
                on_duplicate=args.on_duplicate,
                region=settings.phone_region,
                report_path=report,
                progress=_progress("importing"),
            )
            print(result.summary())
        except (CrmError, PermissionDenied) as exc:
            raise CliError(str(exc)) from None
        finally:
            await db.dispose()

    asyncio.run(go())


def cmd_export(args: argparse.Namespace) -> None:
    from crm.db import Database
    from crm.errors import CrmError
    from crm.exporter import export_csv
    from crm.permissions import PermissionDenied

    settings = _settings(args)
    params = dict(_filter(f) for f in args.filter)

    async def go() -> int:
        p = await _principal(settings, args.as_user)
        db = Database(settings.db_url)
        try:
            out = Path(args.output) if args.output else sys.stdout
            return await export_csv(db, p, args.entity.rstrip("s"), out, params)
        except (CrmError, PermissionDenied) as exc:
            raise CliError(str(exc)) from None
        finally:
            await db.dispose()

    n = asyncio.run(go())
    print(f"exported {n} {args.entity}", file=sys.stderr)


def _filter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CliError(f"--filter takes FIELD=VALUE, got {text!r}")
    return key, value


def cmd_demo_data(args: argparse.Namespace) -> None:
    from crm.demo import load_demo_data

    settings = _settings(args)
    created = asyncio.run(load_demo_data(settings, args.if_empty, args.admin_password))
    print(created)


def cmd_backup(args: argparse.Namespace) -> None:
    from crm.backup import BackupError, backup

    settings = _settings(args)
    dests = [Path(d) for d in args.dest] or [settings.data_dir / "backups"]
    include = [settings.recordings_path] if settings.recordings_path.exists() else []
    try:
        path = asyncio.run(
            backup(
                settings.db_url,
                dests,
                settings.ensure_secret(),
                include=include,
                with_files=args.with_recordings,
                keep=args.keep,
            )
        )
    except BackupError as exc:
        raise CliError(str(exc)) from None
    print(f"backup written: {path}")


def cmd_restore(args: argparse.Namespace) -> None:
    from crm.backup import BackupError, restore

    settings = _settings(args)
    try:
        result = asyncio.run(
            restore(
                Path(args.file),
                settings.ensure_secret(),
                settings.db_url,
                force=args.force,
                files_dest=settings.recordings_path.parent,
            )
        )
    except BackupError as exc:
        raise CliError(str(exc)) from None
    print(result.summary())


def cmd_route_test(args: argparse.Namespace) -> None:
    """Dry run of the call routing: which rule would decide, and why; no call is made."""
    import datetime as dt
    import json

    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError

    from crm.db import Database
    from crm.models import User
    from cti.routing.service import RoutingService, format_dry_run

    settings = _settings(args)
    try:
        at = dt.datetime.fromisoformat(args.at) if args.at else None
    except ValueError:
        raise CliError(
            f"--at takes a date and time like 2026-11-21T10:30, got {args.at!r}"
        ) from None

    async def go() -> dict[str, Any]:
        db = Database(settings.db_url)
        service = RoutingService(
            db,
            region=settings.phone_region,
            timezone=settings.timezone,
            default_queue=settings.agi_default_queue,
            deadline_ms=settings.agi_deadline_ms,
            store_decisions=False,
        )
        try:
            available: list[int] = []
            async with db.session() as s:
                for who in args.available:
                    uid = (
                        int(who)
                        if who.isdigit()
                        else await s.scalar(select(User.id).where(User.username == who))
                    )
                    if uid is None:
                        raise CliError(f"--available: no user {who!r}")
                    available.append(uid)
            when = at.replace(tzinfo=service.tz) if at and at.tzinfo is None else at
            return await service.dry_run(args.number, args.did, when, available)
        except DBAPIError as exc:
            raise CliError(
                f"cannot read the routing rules ({exc.orig}): run `tamas db upgrade`"
            ) from None
        finally:
            await service.stop()
            await db.dispose()

    result = asyncio.run(go())
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=1, default=str))
    else:
        print(format_dry_run(result))


# -- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tamas",
        description="Tamas (تماس): CTI gateway with a CRM core for call centers running "
        "Asterisk. Settings come from --config FILE (TOML) and TAMAS_* environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"tamas {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (or TAMAS_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "serve",
        help="run the gateway (HTTP API, AMI links, FastAGI)",
        description="Run the gateway: REST API and web UI, the AMI link to each configured "
        "PBX (a clearly labelled simulated PBX when none is configured), FastAGI routing.",
    )
    p.add_argument("--host", help="HTTP bind address (TAMAS_HTTP_HOST)")
    p.add_argument("--port", type=int, help="HTTP port (TAMAS_HTTP_PORT)")
    p.add_argument("--upgrade", action="store_true", help="apply database migrations first")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("db", help="database maintenance", description="Database maintenance.")
    dbsub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dbsub.add_parser(
        "upgrade",
        help="apply migrations",
        description="Create or migrate the database to the newest schema (alembic).",
    )
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    up.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("user", help="manage users", description="Manage users.")
    usub = p.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = usub.add_parser(
        "add",
        help="create a user",
        description="Create a user. Devices are Asterisk interfaces (PJSIP/1001); the "
        "extension is not assumed to be the device.",
    )
    add.add_argument("username")
    add.add_argument("--role", default="agent", help="agent, supervisor or admin")
    add.add_argument("--full-name")
    add.add_argument("--email")
    add.add_argument("--extension")
    add.add_argument("--language", default="fa", choices=["fa", "en"])
    add.add_argument("--device", action="append", default=[], help="Asterisk interface, repeatable")
    add.add_argument("--password", help="the password (prompted when omitted)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(func=cmd_user_add)

    p = sub.add_parser(
        "import",
        help="import contacts, leads or accounts from CSV",
        description="Import a CSV file (UTF-8, with or without BOM). Bad rows are listed "
        "with the reason in a report file; good rows land. An import can be reverted.",
    )
    p.add_argument("entity", nargs="?", choices=["contacts", "leads", "accounts"])
    p.add_argument("file", nargs="?")
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="HEADER=FIELD",
        help="map a CSV column to a field (phones.mobile, tags, custom.KEY...)",
    )
    p.add_argument(
        "--on-duplicate",
        choices=["skip", "update"],
        default="skip",
        help="what to do with rows matching an existing record by phone or e-mail",
    )
    p.add_argument("--report", help="where to write rejected rows (default FILE.rejected.csv)")
    p.add_argument(
        "--as",
        dest="as_user",
        metavar="USERNAME",
        help="act as this user (default: the first admin)",
    )
    p.add_argument("--revert", type=int, metavar="BATCH", help="undo import BATCH instead")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "export",
        help="export records to CSV",
        description="Export records to CSV (UTF-8 with BOM). Needs the export permission; "
        "every export is written to the audit log.",
    )
    p.add_argument(
        "entity",
        choices=["contacts", "leads", "accounts", "deals", "cases", "activities", "campaigns"],
    )
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="same filters as the API (status=new, tag=vip, q=...)",
    )
    p.add_argument(
        "--as",
        dest="as_user",
        metavar="USERNAME",
        help="act as this user (default: the first admin)",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "demo-data",
        help="load demonstration users, customers and deals",
        description="Load demo users (admin, supervisor, agents with PJSIP devices), teams, "
        "a pipeline and Persian/English customers, deals, cases and activities.",
    )
    p.add_argument("--if-empty", action="store_true", help="do nothing when users exist")
    p.add_argument(
        "--admin-password",
        default=None,
        help="password of the demo admin (default: printed random one)",
    )
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser(
        "backup",
        help="consistent online backup, compressed and encrypted",
        description="Write a consistent online backup of the database and the recordings "
        "index, compressed and encrypted with the secret key, to one or more directories.",
    )
    p.add_argument(
        "--dest",
        action="append",
        default=[],
        metavar="DIR",
        help="target directory, repeatable (default DATA_DIR/backups)",
    )
    p.add_argument("--keep", type=int, help="keep only the newest N backups in each target")
    p.add_argument(
        "--with-recordings",
        action="store_true",
        help="include the recording files themselves, not only their index",
    )
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser(
        "restore",
        help="restore a backup",
        description="Verify a backup completely, then restore it into the configured "
        "database. Refuses a non-empty database unless --force.",
    )
    p.add_argument("file")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty database")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser(
        "route",
        help="call routing: dry run of the rules",
        description="Call routing (FastAGI). `route test` shows which rule would route a "
        "call and why, without a call; agents count as logged out unless --available.",
    )
    rsub = p.add_subparsers(dest="route_command", required=True, metavar="ACTION")
    rt = rsub.add_parser(
        "test",
        help="which rule would route a call from NUMBER, and why",
        description="Dry run: look the caller up, evaluate the routing rules in order and "
        "print why each one did or did not decide, and the channel variables the dialplan "
        "would get. Nothing is dialled or stored.",
    )
    rt.add_argument("number", help="caller number in any form (0912..., +98912..., ۰۹۱۲...)")
    rt.add_argument("--did", default="", help="the number dialled (DID)")
    rt.add_argument("--at", help="local date and time of the call (default: now)")
    rt.add_argument(
        "--available",
        action="append",
        default=[],
        metavar="USER",
        help="treat this agent (username or id) as available, repeatable",
    )
    rt.add_argument("--json", action="store_true", help="print the full result as JSON")
    rt.set_defaults(func=cmd_route_test)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings_level = "INFO"
        try:
            settings_level = _settings(args).log_level
        except ConfigError:
            pass
        from tamas.logging import setup_logging

        setup_logging(settings_level)
        func: Callable[[argparse.Namespace], Coroutine[Any, Any, None] | None] = args.func
        func(args)
    except ConfigError as exc:
        print(f"tamas: configuration error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"tamas: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
