"""Logging for every process: JSON lines in production, readable console lines in development.

Context travels as `extra=` fields on the standard `logging` calls (`run_id`, `batch`, `total_batches`,
`progress`, `success_rate`, `validator`, `request_id`, ...) and lands as top-level JSON keys, the shape the
seed shows. Secrets never reach a log line: bearer tokens, JWTs and URL passwords are masked by the formatter.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

from stream_app.settings import Settings

# Attributes every LogRecord has; anything else was passed through `extra=` and is context.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}

_SECRET_PATTERNS = (
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "***jwt***"),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1***@"),
    (re.compile(r"(?i)((?:secret|password|token)\s*[=:]\s*)\S+"), r"\1***"),
)


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "level": record.levelname.lower(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in _context(record).items():
            entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        context = _context(record)
        if context:
            line += "  " + " ".join(f"{k}={redact(str(v))}" for k, v in context.items())
        return line


def configure_logging(settings: Settings, stream: Any = None) -> None:
    """Install one handler on the root logger; call once at process start."""
    use_json = settings.log_format == "json" or (settings.log_format == "auto" and settings.production)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else ConsoleFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # Chatty libraries stay at warning unless we debug.
    if settings.log_level != "debug":
        for name in ("aiohttp.access", "faust", "mode", "aiokafka"):
            logging.getLogger(name).setLevel(logging.WARNING)
