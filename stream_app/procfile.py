"""Parse a Procfile (`name: command` per line) into ordered process definitions. Pure, no I/O."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+?)\s*$")


class ProcfileError(ValueError):
    """The Procfile cannot be used; the message names the line."""


@dataclass(frozen=True)
class ProcessType:
    name: str
    command: str

    def argv(self, python: str) -> list[str]:
        """The command as argv, with a leading `python` replaced by this interpreter (the venv's)."""
        args = shlex.split(self.command)
        if args and args[0] in ("python", "python3"):
            args[0] = python
        return args


def parse_procfile(text: str) -> dict[str, ProcessType]:
    processes: dict[str, ProcessType] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ProcfileError(f"Procfile line {number}: expected `name: command`, got {raw!r}")
        name, command = match[1], match[2]
        if name in processes:
            raise ProcfileError(f"Procfile line {number}: process type {name!r} is defined twice")
        try:
            shlex.split(command)
        except ValueError as exc:
            raise ProcfileError(f"Procfile line {number}: {exc}") from None
        processes[name] = ProcessType(name, command)
    return processes
