"""Worker processes and a private Redis for the multi-process tests (so signals never disturb others)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class WorkerPool:
    """Spawns `python -m tests.transport.count_app` workers writing logs and dumps into `out`."""

    broker: str
    out: Path
    app_id: str = "count"
    session_timeout: float = 3.0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ, COUNT_BROKER=self.broker, COUNT_DIR=str(self.out), COUNT_APP_ID=self.app_id,
                   COUNT_SESSION_TIMEOUT=str(self.session_timeout), COUNT_LOGLEVEL="INFO",
                   PYTHONPATH=str(ROOT))
        n = len(self.procs)
        log = open(self.out / f"worker{n}.out", "wb")  # noqa: SIM115 - handed to the child process
        proc = subprocess.Popen([sys.executable, "-m", "tests.transport.count_app"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def dump(self, proc: subprocess.Popen[bytes]) -> dict[str, Any] | None:
        path = self.out / f"dump.{proc.pid}.json"
        try:
            return dict(json.loads(path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def processed(self) -> list[tuple[int, int, str, int]]:
        """Every `partition offset key seq` line any worker logged."""
        rows = []
        for path in self.out.glob("log.*"):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 4:
                    rows.append((int(parts[0]), int(parts[1]), parts[2], int(parts[3])))
        return rows

    def stop_all(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def output(self) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-4000:]
                         for p in sorted(self.out.glob("worker*.out")))


def duplicates(rows: list[tuple[int, int, str, int]]) -> int:
    seen = Counter(seq for _, _, _, seq in rows)
    return sum(n - 1 for n in seen.values())
