"""Typed 12-factor settings shared by the worker, the web app and the CLI.

Every setting is an environment variable with a typed default. `Settings.from_env()` parses them all and
raises `SettingsError` listing *every* bad value at once, so a misconfigured deploy fails with one clear
message instead of a traceback. `.env.example` documents each variable; a test keeps the two in sync.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PROFILES = ("development", "production")


class SettingsError(ValueError):
    """One or more environment variables hold values we cannot use."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected one of true/false/1/0/yes/no/on/off")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError("must be zero or a positive number")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("must be a TCP port between 1 and 65535")
    return value


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        raw = raw.strip()
        parts = urlsplit(raw)
        if parts.scheme not in schemes:
            raise ValueError(f"scheme must be one of {', '.join(schemes)}; got {parts.scheme or 'none'!r}")
        if not (parts.netloc or parts.query):
            raise ValueError("has no host")
        return raw

    return parse


def _url_list(*schemes: str) -> Callable[[str], tuple[str, ...]]:
    one = _url(*schemes)

    def parse(raw: str) -> tuple[str, ...]:
        urls = tuple(one(u) for u in raw.replace(";", ",").split(",") if u.strip())
        if not urls:
            raise ValueError("needs at least one URL")
        return urls

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _text(raw: str) -> str:
    return raw


def _env(name: str, parser: Callable[[str], Any], doc: str, secret: bool = False) -> Any:
    return field(metadata={"env": name, "parse": parser, "doc": doc, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """All configuration. Field defaults apply when the variable is unset or empty."""

    # Deployment
    profile: str = _env("SOLSTAKE_PROFILE", _choice(*PROFILES), "development or production")
    data_dir: str = _env("SOLSTAKE_DATA_DIR", _text, "where embedded servers keep their data")
    log_format: str = _env("LOG_FORMAT", _choice("auto", "json", "console"), "auto = json in production")
    log_level: str = _env("LOG_LEVEL", _choice("debug", "info", "warning", "error"), "log level")
    # Backing services (unset in development = embedded servers)
    database_url: str | None = _env("DATABASE_URL", _url("postgres", "postgresql"), "PostgreSQL URL", True)
    redis_url: str | None = _env("REDIS_URL", _url("redis", "rediss", "unix"), "Redis URL", True)
    redis_prefix: str = _env("REDIS_PREFIX", _text, "prefix of every Redis key we write")
    stream_broker: str | None = _env("STREAM_BROKER", _url("redis", "rediss", "kafka"), "Faust broker URL")
    db_pool_min: int = _env("DB_POOL_MIN", _positive_int, "asyncpg pool minimum size")
    db_pool_max: int = _env("DB_POOL_MAX", _positive_int, "asyncpg pool maximum size")
    db_command_timeout: float = _env("DB_COMMAND_TIMEOUT", _positive_float, "seconds per SQL statement")
    # Solana
    solana_rpc_urls: tuple[str, ...] = _env("SOLANA_RPC_URL", _url_list("http", "https"), "RPC URL(s)")
    rpc_timeout: float = _env("RPC_TIMEOUT", _positive_float, "seconds per RPC request")
    rpc_max_retries: int = _env("RPC_MAX_RETRIES", _non_negative_int, "retries per RPC request")
    rpc_max_response_bytes: int = _env("RPC_MAX_RESPONSE_BYTES", _positive_int, "largest RPC body accepted")
    simulator_fallback: bool = _env("SIMULATOR_FALLBACK", _bool, "use the RPC simulator if RPC is down (dev)")
    simulator_port: int = _env("SIMULATOR_PORT", _port, "port of the built-in RPC simulator")
    simulator_seed: int = _env("SIMULATOR_SEED", _non_negative_int, "simulator random seed")
    simulator_epoch_seconds: float = _env("SIMULATOR_EPOCH_SECONDS", _positive_float, "simulated epoch length")
    # Pipeline
    fetch_interval: float | None = _env("FETCH_INTERVAL", _positive_float, "seconds between fetch cycles")
    run_timeout: float = _env("RUN_TIMEOUT", _positive_float, "seconds before an unfinished run is partial")
    stream_partitions: int = _env("STREAM_PARTITIONS", _positive_int, "partitions of validator-records")
    stream_retention: float | None = _env("STREAM_RETENTION", _positive_float,
                                          "seconds records stay on the pipeline topics")
    worker_metrics_port: int = _env("WORKER_METRICS_PORT", _port, "Prometheus port of each worker")
    # Web
    port: int = _env("PORT", _port, "HTTP port of the web process")
    host: str = _env("HOST", _text, "bind address of the web process")
    jwt_secret: str | None = _env("JWT_SECRET", _text, "HS256 secret, >= 32 bytes", True)
    jwt_expiry: float = _env("JWT_EXPIRY", _positive_float, "access-token lifetime, seconds")
    jwt_issuer: str = _env("JWT_ISSUER", _text, "iss claim")
    jwt_audience: str = _env("JWT_AUDIENCE", _text, "aud claim")
    cache_ttl: float = _env("CACHE_TTL", _positive_float, "GraphQL cache TTL, seconds")
    rate_limit: int = _env("RATE_LIMIT", _positive_int, "requests per window per client")
    rate_window: float = _env("RATE_WINDOW", _positive_float, "rate-limit window, seconds")
    trusted_proxy_hops: int = _env("TRUSTED_PROXY_HOPS", _non_negative_int, "proxies in front of web")
    # Access control (tokens, Sign-In With Solana, rate-limit tiers)
    jwt_previous_secrets: tuple[str, ...] = _env("JWT_PREVIOUS_SECRETS", _csv,
                                                 "retired JWT secrets still accepted (rotation)", True)
    jwt_refresh_expiry: float = _env("JWT_REFRESH_EXPIRY", _positive_float, "refresh-token lifetime, seconds")
    jwt_leeway: float = _env("JWT_LEEWAY", _non_negative_float, "clock skew allowed on exp/iat, seconds")
    rate_limit_authenticated: int | None = _env("RATE_LIMIT_AUTHENTICATED", _positive_int,
                                                "requests per window per signed-in client (default RATE_LIMIT)")
    rate_limit_signin: int = _env("RATE_LIMIT_SIGNIN", _positive_int, "sign-in requests per window per IP")
    rate_window_signin: float = _env("RATE_WINDOW_SIGNIN", _positive_float, "sign-in rate window, seconds")
    siws_domain: str = _env("SIWS_DOMAIN", _text, "host[:port] wallets show in the sign-in message")
    siws_uri: str | None = _env("SIWS_URI", _url("http", "https"), "URI in the sign-in message")
    siws_chain_id: str = _env("SIWS_CHAIN_ID", _choice("mainnet", "testnet", "devnet", "localnet"),
                              "chain in the sign-in message")
    siws_nonce_ttl: float = _env("SIWS_NONCE_TTL", _positive_float, "seconds a sign-in challenge stays valid")
    cors_origins: tuple[str, ...] = _env("CORS_ORIGINS", _csv, "allowed CORS origins, comma separated")
    graphiql: bool | None = _env("GRAPHIQL", _bool, "serve GraphiQL (default: on in development)")
    ws_max_sockets_per_client: int = _env("WS_MAX_SOCKETS_PER_CLIENT", _positive_int,
                                          "open GraphQL WebSockets per client IP")
    # Observability
    metrics_token: str | None = _env("METRICS_TOKEN", _text, "bearer token /metrics requires (unset = open)", True)
    health_timeout: float = _env("HEALTH_TIMEOUT", _positive_float, "seconds each /health dependency check may take")

    @property
    def production(self) -> bool:
        return self.profile == "production"

    @property
    def effective_fetch_interval(self) -> float:
        if self.fetch_interval is not None:
            return self.fetch_interval
        return 6 * 3600.0 if self.production else 30.0

    @property
    def effective_stream_retention(self) -> float:
        """Long enough for a stopped worker to catch up on the last runs, short enough for Redis memory."""
        if self.stream_retention is not None:
            return self.stream_retention
        return max(2 * self.run_timeout, 2 * self.effective_fetch_interval)

    @property
    def embedded_dir(self) -> Path:
        return Path(self.data_dir).resolve()

    @classmethod
    def env_fields(cls) -> list[tuple[str, str, str, bool]]:
        """(field name, env var, doc, secret) for every setting."""
        return [
            (f.name, f.metadata["env"], f.metadata["doc"], f.metadata["secret"])
            for f in fields(cls)
            if "env" in f.metadata
        ]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in fields(cls):
            if "env" not in f.metadata:
                continue
            name = f.metadata["env"]
            raw = env.get(name, "")
            if raw.strip() == "":
                values[f.name] = _DEFAULTS[f.name]
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                values[f.name] = _DEFAULTS[f.name]  # keep going so every problem is reported at once
                shown = "<hidden>" if f.metadata["secret"] else repr(raw)
                problems.append(f"{name}={shown}: {exc}")
        settings = cls(**values)
        problems.extend(settings._cross_checks())
        if problems:
            raise SettingsError(problems)
        return settings

    def _cross_checks(self) -> list[str]:
        problems = []
        if self.db_pool_min > self.db_pool_max:
            problems.append(f"DB_POOL_MIN={self.db_pool_min} is larger than DB_POOL_MAX={self.db_pool_max}")
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < 32:
            problems.append("JWT_SECRET is shorter than 32 bytes (RFC 7518 §3.2); use e.g. `openssl rand -hex 32`")
        if any(len(old.encode()) < 32 for old in self.jwt_previous_secrets):
            problems.append("JWT_PREVIOUS_SECRETS holds a secret shorter than 32 bytes")
        if self.production:
            for name, value in (("DATABASE_URL", self.database_url), ("REDIS_URL", self.redis_url),
                                ("JWT_SECRET", self.jwt_secret)):
                if value is None:
                    problems.append(f"{name} is required when SOLSTAKE_PROFILE=production")
            if self.simulator_fallback:
                problems.append("SIMULATOR_FALLBACK cannot be on when SOLSTAKE_PROFILE=production")
        return problems

    def with_overrides(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self) if "env" in f.metadata}
        values.update(changes)
        return Settings(**values)

    def redacted(self) -> dict[str, Any]:
        """Settings safe to log: secrets hidden, passwords stripped from URLs."""
        out: dict[str, Any] = {}
        for name, _env_name, _doc, secret in self.env_fields():
            value = getattr(self, name)
            if secret and value is not None:
                value = _redact_url(value) if "url" in name else "<hidden>"
            out[name] = value
        return out


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


_DEFAULTS: dict[str, Any] = {
    "profile": "development",
    "data_dir": ".solstake",
    "log_format": "auto",
    "log_level": "info",
    "database_url": None,
    "redis_url": None,
    "redis_prefix": "solstake",
    "stream_broker": None,
    "db_pool_min": 1,
    "db_pool_max": 10,
    "db_command_timeout": 30.0,
    "solana_rpc_urls": ("https://api.mainnet-beta.solana.com",),
    "rpc_timeout": 20.0,
    "rpc_max_retries": 4,
    "rpc_max_response_bytes": 256 * 1024 * 1024,
    "simulator_fallback": True,
    "simulator_port": 8899,
    "simulator_seed": 752,
    "simulator_epoch_seconds": 600.0,
    "fetch_interval": None,
    "run_timeout": 300.0,
    "stream_partitions": 4,
    "stream_retention": None,
    "worker_metrics_port": 9108,
    "port": 3007,
    "host": "0.0.0.0",
    "jwt_secret": None,
    "jwt_expiry": 24 * 3600.0,
    "jwt_issuer": "sol-stake",
    "jwt_audience": "sol-stake-api",
    "cache_ttl": 300.0,
    "rate_limit": 100,
    "rate_window": 900.0,
    "trusted_proxy_hops": 0,
    "jwt_previous_secrets": (),
    "jwt_refresh_expiry": 30 * 24 * 3600.0,
    "jwt_leeway": 30.0,
    "rate_limit_authenticated": None,
    "rate_limit_signin": 10,
    "rate_window_signin": 900.0,
    "siws_domain": "localhost:3007",
    "siws_uri": None,
    "siws_chain_id": "mainnet",
    "siws_nonce_ttl": 300.0,
    "cors_origins": (),
    "graphiql": None,
    "ws_max_sockets_per_client": 100,
    "metrics_token": None,
    "health_timeout": 1.0,
}


def load_or_exit() -> Settings:
    """For process entry points: parse settings or print the problems and exit with status 2."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        import sys

        print(f"sol-stake: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
