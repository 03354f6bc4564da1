"""Settings: typed defaults, every bad value reported at once, .env.example in sync."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
GOOD_SECRET = "s" * 32


def test_defaults_are_development_with_seed_intervals() -> None:
    s = Settings.from_env({})
    assert s.profile == "development"
    assert s.port == 3007
    assert s.effective_fetch_interval == 30.0
    assert s.cache_ttl == 300.0
    assert (s.rate_limit, s.rate_window) == (100, 900.0)
    assert s.database_url is None and s.redis_url is None


def test_production_profile_switches_interval_and_requires_urls() -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"SOLSTAKE_PROFILE": "production"})
    text = str(err.value)
    for name in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "SIMULATOR_FALLBACK"):
        assert name in text
    s = Settings.from_env({
        "SOLSTAKE_PROFILE": "production", "DATABASE_URL": "postgresql://u:p@db/x", "REDIS_URL": "redis://r:6379/0",
        "JWT_SECRET": GOOD_SECRET, "SIMULATOR_FALLBACK": "false",
    })
    assert s.production and s.effective_fetch_interval == 6 * 3600


def test_every_bad_value_is_reported_together_without_leaking_secrets() -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({
            "PORT": "http", "RATE_LIMIT": "-3", "DATABASE_URL": "mysql://x/y", "JWT_SECRET": "tiny-s3cret",
            "SIMULATOR_FALLBACK": "maybe", "SOLANA_RPC_URL": "ftp://nope", "DB_POOL_MIN": "20",
        })
    problems = err.value.problems
    joined = "\n".join(problems)
    for name in ("PORT", "RATE_LIMIT", "DATABASE_URL", "JWT_SECRET", "SIMULATOR_FALLBACK", "SOLANA_RPC_URL",
                 "DB_POOL_MIN"):
        assert name in joined
    assert "tiny-s3cret" not in joined  # secrets never echoed
    assert "mysql://x/y" not in joined


def test_rpc_url_list_and_redaction() -> None:
    s = Settings.from_env({
        "SOLANA_RPC_URL": "https://a.example, https://b.example",
        "DATABASE_URL": "postgresql://user:hunter2@db:5432/x",
    })
    assert s.solana_rpc_urls == ("https://a.example", "https://b.example")
    assert "hunter2" not in str(s.redacted())


@given(st.integers())
def test_port_accepts_exactly_the_tcp_range(port: int) -> None:
    if 0 < port < 65536:
        assert Settings.from_env({"PORT": str(port)}).port == port
    else:
        with pytest.raises(SettingsError):
            Settings.from_env({"PORT": str(port)})


def test_env_example_documents_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z_]+)=", text, flags=re.M))
    declared = {env for _name, env, _doc, _secret in Settings.env_fields()}
    assert declared == documented


def test_bad_value_is_a_clear_startup_error_not_a_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "migrate"],
        env={"PATH": "/usr/bin:/bin", "PORT": "abc", "JWT_SECRET": "short"},
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "PORT='abc'" in proc.stderr and "JWT_SECRET" in proc.stderr
    assert "Traceback" not in proc.stderr
