"""Structured logs: context as JSON keys, secrets masked, console mode readable."""

from __future__ import annotations

import io
import logging

import orjson
from hypothesis import given
from hypothesis import strategies as st

from stream_app.logs import configure_logging, redact
from stream_app.settings import Settings


def _capture(fmt: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    configure_logging(Settings.from_env({"LOG_FORMAT": fmt}), stream=out)
    return logging.getLogger("test.logs"), out


def test_json_lines_carry_the_seed_context() -> None:
    log, out = _capture("json")
    log.info("batch done", extra={"run_id": "r1", "batch": 14, "total_batches": 23, "progress": "650/1102",
                                   "success_rate": "94.5%", "validator": "Vote111"})
    entry = orjson.loads(out.getvalue().strip().splitlines()[-1])
    assert entry["msg"] == "batch done" and entry["level"] == "info"
    assert (entry["run_id"], entry["batch"], entry["total_batches"]) == ("r1", 14, 23)
    assert entry["progress"] == "650/1102" and entry["validator"] == "Vote111"
    assert entry["time"].endswith("Z")


def test_secrets_never_reach_the_log() -> None:
    log, out = _capture("json")
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    log.warning("auth failed for Bearer %s via postgresql://u:hunter2@db/x", jwt, extra={"header": f"Bearer {jwt}"})
    text = out.getvalue()
    assert jwt not in text and "hunter2" not in text
    assert "***" in text


def test_console_format_is_one_readable_line() -> None:
    log, out = _capture("console")
    log.info("fetched", extra={"run_id": "r9"})
    line = out.getvalue().strip().splitlines()[-1]
    assert "INFO" in line and "fetched" in line and "run_id=r9" in line


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=10, max_size=60))
def test_bearer_values_are_always_masked(token: str) -> None:
    assert token not in redact(f"Authorization: Bearer {token}")
