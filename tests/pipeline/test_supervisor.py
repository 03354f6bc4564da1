"""The Procfile supervisor with small real child processes (no pipeline): order, output, stop, crash."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.procfile import ProcfileError, parse_procfile
from stream_app.settings import Settings
from stream_app.supervisor import parse_scale, supervise

names = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
commands = st.from_regex(r"[a-z][a-z0-9 ._=-]{0,30}[a-z0-9]", fullmatch=True)


@given(st.dictionaries(names, commands, max_size=6))
def test_procfile_round_trip(processes: dict[str, str]) -> None:
    text = "# comment\n\n" + "\n".join(f"{name}: {command}" for name, command in processes.items())
    parsed = parse_procfile(text)
    assert list(parsed) == list(processes)
    assert {n: p.command for n, p in parsed.items()} == processes


def test_procfile_errors_name_the_line() -> None:
    with pytest.raises(ProcfileError, match="line 2"):
        parse_procfile("web: x\nthis is not a process\n")
    with pytest.raises(ProcfileError, match="twice"):
        parse_procfile("web: a\nweb: b\n")
    with pytest.raises(ProcfileError, match="line 1"):
        parse_procfile("web: echo 'unclosed\n")


def test_python_is_this_interpreter_and_scale_parses() -> None:
    proc = parse_procfile("worker: python -m stream_app.worker --x 'a b'")["worker"]
    assert proc.argv("/venv/bin/python") == ["/venv/bin/python", "-m", "stream_app.worker", "--x", "a b"]
    assert parse_scale(["worker=3", "web=0"]) == {"worker": 3, "web": 0}
    with pytest.raises(ValueError):
        parse_scale(["worker"])


def _settings(settings: Settings) -> Settings:
    # Configured RPC answers nothing and fallback is off: the supervisor warns and starts the children anyway.
    return settings.with_overrides(solana_rpc_urls=("http://127.0.0.1:9/",), simulator_fallback=False,
                                   rpc_timeout=0.5)


PY = sys.executable


@pytest.mark.timeout(60)
async def test_release_failure_starts_nothing(settings: Settings, tmp_path: Path) -> None:
    marker = tmp_path / "worker-started"
    procfile = (f"release: {PY} -c 'import sys; print(\"migrating\"); sys.exit(3)'\n"
                f"worker: {PY} -c 'open(\"{marker}\", \"w\")'\n")
    out = io.StringIO()
    code = await supervise(_settings(settings), procfile_text=procfile, scale={}, out=out, grace=5)
    assert code == 3
    assert "release    | migrating" in out.getvalue() and "release failed with status 3" in out.getvalue()
    assert not marker.exists()


@pytest.mark.timeout(60)
async def test_a_crashing_child_stops_the_others_gracefully(settings: Settings, tmp_path: Path) -> None:
    stopped = tmp_path / "stopped"
    survivor = (f"import signal, sys, time; "
                f"signal.signal(signal.SIGTERM, lambda *a: (open('{stopped}', 'w').write('term'), sys.exit(0))); "
                f"print('up', flush=True); time.sleep(60)")
    procfile = (f"release: {PY} -c 'print(1)'\n"
                f'worker: {PY} -c "{survivor}"\n'
                f"web: {PY} -c 'import time; time.sleep(1.5); print(\"boom\"); raise SystemExit(7)'\n")
    out = io.StringIO()
    code = await supervise(_settings(settings), procfile_text=procfile, scale={"worker": 2}, out=out, grace=5)
    text = out.getvalue()
    assert code == 1, text
    assert "web.1 exited on its own with status 7" in text and "a process died; stopping everything" in text
    assert "worker.1   | up" in text and "worker.2   | up" in text
    assert "stopped worker.1 (status 0)" in text and "stopped worker.2 (status 0)" in text
    assert stopped.read_text() == "term"
    assert "WARNING: Solana RPC unreachable" in text
