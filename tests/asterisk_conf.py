"""A reader for Asterisk's configuration file format, for the tests of asterisk-config/.

Enough of Asterisk's own parser (main/config.c) to check the shipped files: ``;`` comments
(``\\;`` is a literal semicolon, ``;-- --;`` a block comment), ``[name]`` sections with
``(!)`` (template), ``(tpl1,tpl2)`` (inherit options) and ``(+)`` (append to an existing
section), ``key = value`` and ``key => value`` lines, ``#include`` / ``#tryinclude``.
Several sections may share a name (pjsip.conf: endpoint and aor ``1001``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_HEADER = re.compile(r"^\[([^\]]+)\](?:\(([^)]*)\))?\s*$")
_OPTION = re.compile(r"^([^=]+?)\s*=>?\s*(.*)$")


@dataclass
class Section:
    name: str
    own: list[tuple[str, str]] = field(default_factory=list)
    templates: tuple[str, ...] = ()
    is_template: bool = False
    file: ConfFile | None = field(default=None, repr=False)

    @property
    def options(self) -> list[tuple[str, str]]:
        """Inherited options first (templates in order), then this section's own."""
        out: list[tuple[str, str]] = []
        for name in self.templates:
            assert self.file is not None
            out.extend(self.file.template(name).options)
        return out + self.own

    def get(self, key: str, default: str | None = None) -> str | None:
        values = self.getall(key)
        return values[-1] if values else default

    def getall(self, key: str) -> list[str]:
        return [v for k, v in self.options if k == key]

    @property
    def type(self) -> str | None:
        return self.get("type")


@dataclass
class ConfFile:
    path: Path
    sections: list[Section] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)

    def named(self, name: str) -> list[Section]:
        return [s for s in self.sections if s.name == name and not s.is_template]

    def section(self, name: str, type: str | None = None) -> Section:
        found = [s for s in self.named(name) if type is None or s.type == type]
        if len(found) != 1:
            raise KeyError(f"{self.path.name}: {len(found)} sections [{name}] type={type}")
        return found[0]

    def template(self, name: str) -> Section:
        found = [s for s in self.sections if s.name == name]
        if not found:
            raise KeyError(f"{self.path.name}: no template [{name}]")
        return found[-1]

    def of_type(self, type: str) -> list[Section]:
        return [s for s in self.sections if not s.is_template and s.type == type]


def strip_comments(text: str) -> list[str]:
    out = []
    in_block = False
    for raw in text.splitlines():
        line = raw
        if in_block:
            end = line.find("--;")
            if end < 0:
                continue
            line = line[end + 3 :]
            in_block = False
        start = line.find(";--")
        if start >= 0 and "--;" not in line[start + 3 :]:
            line, in_block = line[:start], True
        line = re.sub(r";--.*?--;", "", line)
        m = re.search(r"(?<!\\);", line)
        if m:
            line = line[: m.start()]
        out.append(line.replace("\\;", ";").rstrip())
    return out


def parse(text: str, path: Path) -> ConfFile:
    conf = ConfFile(path)
    current: Section | None = None
    for line in strip_comments(text):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            directive, _, arg = stripped.partition(" ")
            if directive in ("#include", "#tryinclude"):
                conf.includes.append(arg.strip().strip('"'))
            continue
        header = _HEADER.match(stripped)
        if header:
            name, flags = header.group(1).strip(), header.group(2)
            parts = [p.strip() for p in flags.split(",")] if flags else []
            if "+" in parts:
                current = conf.named(name)[-1]  # KeyError-free: IndexError if missing
                continue
            current = Section(
                name,
                templates=tuple(p for p in parts if p and p != "!"),
                is_template="!" in parts,
                file=conf,
            )
            conf.sections.append(current)
            continue
        option = _OPTION.match(stripped)
        if option is None or current is None:
            raise ValueError(f"{path.name}: cannot parse line {line!r}")
        current.own.append((option.group(1).strip(), option.group(2).strip()))
    return conf


def parse_file(path: Path) -> ConfFile:
    return parse(path.read_text(encoding="utf-8"), path)
