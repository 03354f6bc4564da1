"""docker-compose.yml, Dockerfile and Procfile agree (Docker cannot run here: structure is checked by parsing)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from stream_app.procfile import parse_procfile
from stream_app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_runs_the_procfile_processes_in_order_with_health_gates() -> None:
    services = _compose()["services"]
    procfile = parse_procfile((ROOT / "Procfile").read_text())
    assert set(services) == {"postgres", "redis", "migrate", "worker", "web"}
    for service, process in (("migrate", "release"), ("worker", "worker"), ("web", "web")):
        assert services[service]["command"] == shlex.split(procfile[process].command)
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for service in ("worker", "web"):
        assert services[service]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
    for service in ("postgres", "redis", "worker", "web"):
        assert services[service]["healthcheck"]["test"], service
    assert services["migrate"]["restart"] == "no"
    assert services["worker"]["stop_grace_period"] == "30s"
    assert services["web"]["ports"] == ["3007:3007"]


def test_redis_is_durable_and_never_evicts() -> None:
    command = _compose()["services"]["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes" and options["--maxmemory-policy"] == "noeviction"


def test_app_environment_is_a_valid_production_configuration() -> None:
    services = _compose()["services"]
    for service in ("migrate", "worker", "web"):
        env = {k: str(v) for k, v in services[service]["environment"].items()}
        assert env["SOLSTAKE_PROFILE"] == "production" and env["SIMULATOR_FALLBACK"] == "false"
        assert "@postgres:5432/" in env["DATABASE_URL"] and env["REDIS_URL"].startswith("redis://redis:")
        env["JWT_SECRET"] = "x" * 40  # interpolated by compose from the operator's shell
        env["SOLANA_RPC_URL"] = "https://api.mainnet-beta.solana.com"
        settings = Settings.from_env(env)
        assert settings.production and settings.effective_fetch_interval == 6 * 3600
    assert str(services["web"]["environment"]["PORT"]) == "3007"


def test_dockerfile_builds_tartiflette_and_installs_the_project() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "cmake" in text and "g++" in text
    assert "requirements.lock" in text
    assert "--no-deps ." in text  # registers the redis:// Faust transport entry point
    for folder in ("stream_app", "http_app", "migrations"):
        assert f"COPY {folder} {folder}" in text
