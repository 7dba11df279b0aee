"""Asterisk's manager.conf ``eventfilter`` semantics, to check the filters we ship.

Implements the advanced form ``eventfilter(action(),name(),header(),method()) = expr`` and
the legacy regex form (``!`` to exclude): with any include filter only included events
pass; exclude filters then remove events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cti.ami_message import AmiMessage

_CRITERION = re.compile(r"(\w+)\(([^)]*)\)")


@dataclass(frozen=True)
class Filter:
    include: bool
    name: str | None
    header: str | None
    method: str
    expr: str

    def matches(self, msg: AmiMessage) -> bool:
        if self.name is not None and msg.event != self.name:
            return False
        if self.header is not None:
            if self.header not in msg:
                return False
            value = msg[self.header]
        else:
            value = "".join(f"{k}: {v}\r\n" for k, v in msg.pairs)
        if self.method == "none" or not self.expr:
            return True
        if self.method == "regex":
            return re.search(self.expr, value) is not None
        if self.method == "exact":
            return value == self.expr
        if self.method == "starts_with":
            return value.startswith(self.expr)
        if self.method == "ends_with":
            return value.endswith(self.expr)
        if self.method == "contains":
            return self.expr in value
        raise ValueError(f"unknown method {self.method}")


def parse_filters(conf: Path, user: str) -> list[Filter]:
    filters: list[Filter] = []
    section = None
    for raw in conf.read_text(encoding="utf-8").splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section != user or not line.startswith("eventfilter"):
            continue
        key, _, expr = line.partition("=")
        key, expr = key.strip(), expr.strip()
        if key == "eventfilter":  # legacy: regex over the whole event, ! to exclude
            include = not expr.startswith("!")
            filters.append(Filter(include, None, None, "regex", expr.lstrip("!")))
            continue
        crit = dict(_CRITERION.findall(key[len("eventfilter") :]))
        filters.append(
            Filter(
                crit.get("action", "include") == "include",
                crit.get("name"),
                crit.get("header"),
                crit.get("method", "none" if not expr else "regex"),
                expr,
            )
        )
    return filters


def allowed(filters: list[Filter], msg: AmiMessage) -> bool:
    if msg.event is None or msg.action_id is not None:
        return True  # responses and the items of list actions are never filtered
    includes = [f for f in filters if f.include]
    excludes = [f for f in filters if not f.include]
    ok = any(f.matches(msg) for f in includes) if includes else True
    return ok and not any(f.matches(msg) for f in excludes)
