"""Driver options read from the broker URL: `redis://host:6379/0?prefix=faust&fetch_count=1000`.

Pure parsing, no I/O. Unknown query options are an error, so a typo fails at start instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit


class TransportURLError(ValueError):
    """The broker URL cannot be used by the Redis transport."""


@dataclass(frozen=True)
class TransportOptions:
    #: Every key the driver writes starts with `<prefix>:`.
    prefix: str = "faust"
    #: Records asked per partition in one XREAD.
    fetch_count: int = 2000
    #: Upper bound of one XREAD BLOCK, in milliseconds (Faust asks for 1 s).
    block_ms: int = 1000
    #: Records sent in one pipelined round trip by the producer.
    batch_size: int = 2000
    #: Milliseconds the producer waits for more records before sending a small batch (0 = none).
    linger_ms: float = 5.0
    #: Redis socket timeout in seconds; must stay well above `block_ms` (redis-py defaults to 5 s).
    socket_timeout: float = 30.0
    #: Approximate MAXLEN applied on every produce to non-changelog topics (0 = unbounded).
    maxlen: int = 0
    #: Time retention in milliseconds applied by the janitor to non-changelog topics (0 = keep).
    retention_ms: int = 0
    #: Seconds between janitor passes (retention and changelog compaction), 0 disables it.
    janitor_interval: float = 30.0
    #: Changelog entries kept uncompacted at the head of each partition.
    compact_keep_tail: int = 1000
    #: Reject changelog writes from a member whose group generation is stale (zombie fencing).
    fence_changelogs: bool = True
    #: Apply changelog batches to their table during recovery in bulk (`recovery.py`) instead of per event.
    lean_recovery: bool = True
    #: Put a consumed record on its stream's queue synchronously when the Conductor would not wait (`delivery.py`).
    lean_delivery: bool = True


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _non_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        value = kind(raw)
        if value < 0:
            raise ValueError("must not be negative")
        return value

    return parse


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        value = kind(raw)
        if not value > 0:
            raise ValueError("must be positive")
        return value

    return parse


def _prefix(raw: str) -> str:
    if not raw or any(c in raw for c in "{}* \t\r\n"):
        raise ValueError("must be non-empty without braces, '*' or whitespace")
    return raw


_PARSERS: Mapping[str, Callable[[str], Any]] = {
    "prefix": _prefix,
    "fetch_count": _positive(int),
    "block_ms": _positive(int),
    "batch_size": _positive(int),
    "linger_ms": _non_negative(float),
    "socket_timeout": _positive(float),
    "maxlen": _non_negative(int),
    "retention_ms": _non_negative(int),
    "janitor_interval": _non_negative(float),
    "compact_keep_tail": _non_negative(int),
    "fence_changelogs": _bool,
    "lean_recovery": _bool,
    "lean_delivery": _bool,
}
assert set(_PARSERS) == {f.name for f in fields(TransportOptions)}


def parse_broker_url(url: str) -> tuple[str, TransportOptions]:
    """Split a broker URL into the plain Redis URL (for redis-py) and the driver's options."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise TransportURLError(f"not a Redis URL: {url!r}")
    options = TransportOptions()
    problems: list[str] = []
    passthrough: list[str] = []
    for name, raw in parse_qsl(parts.query, keep_blank_values=True):
        parser = _PARSERS.get(name)
        if parser is None:
            if name in ("db", "password", "username"):  # redis-py's own query options
                passthrough.append(f"{name}={raw}")
                continue
            problems.append(f"unknown option {name!r}")
            continue
        try:
            options = replace(options, **{name: parser(raw)})
        except ValueError as exc:
            problems.append(f"{name}={raw!r}: {exc}")
    if options.socket_timeout * 1000 <= options.block_ms:
        problems.append(f"socket_timeout={options.socket_timeout}s must exceed block_ms={options.block_ms}ms")
    if problems:
        raise TransportURLError(f"bad Redis broker URL {url!r}: " + "; ".join(problems))
    plain = urlunsplit(parts._replace(query="&".join(passthrough)))
    return plain, options
