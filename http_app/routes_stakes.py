"""REST view of a wallet's stakes (GraphQL has `myStakeAccounts` / `refreshMyStakeAccounts` for the basics).

    GET  /stakes[?userId=N]   each stake account + its validator's current score, recent rug, better picks
                              (own accounts; another user's need read:users)
    POST /stakes/refresh      re-read the signed-in wallet's Stake-program accounts from chain (write:stakes),
                              then answer like GET /stakes, with a "refresh" summary
"""

from __future__ import annotations

from dataclasses import asdict

import asyncpg
from aiohttp import web
from redis.exceptions import RedisError

from http_app.auth import PRINCIPAL
from http_app.keys import DB_POOL
from http_app.principal import ANONYMOUS, Principal
from http_app.stakes import StakeAccessError, refresh_stake_accounts, stake_overview
from stream_app.records import RecordError
from stream_app.sources.rpc import RpcError


def _principal(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL, ANONYMOUS)
    return principal if isinstance(principal, Principal) else ANONYMOUS


def _error(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status)


def _refused(principal: Principal, exc: StakeAccessError) -> web.Response:
    if principal.anonymous:
        return _error(401, "Unauthorized", str(exc))
    return _error(403, "Forbidden", str(exc))


async def get_stakes(request: web.Request) -> web.Response:
    principal = _principal(request)
    raw = request.query.get("userId")
    if raw is not None and not raw.isdigit():
        return _error(400, "Bad Request", "userId must be a number")
    try:
        accounts = await stake_overview(request.app[DB_POOL], principal, user_id=int(raw) if raw else None)
    except StakeAccessError as exc:
        return _refused(principal, exc)
    return web.json_response({"stakeAccounts": accounts})


async def post_refresh(request: web.Request) -> web.Response:
    principal = _principal(request)
    try:
        summary = await refresh_stake_accounts(request.app, principal)
        accounts = await stake_overview(request.app[DB_POOL], principal)
    except StakeAccessError as exc:
        return _refused(principal, exc)
    except (RpcError, RecordError, OSError, TimeoutError) as exc:
        return _error(502, "Bad Gateway", f"the Solana RPC could not be read: {type(exc).__name__}")
    except (asyncpg.PostgresError, RedisError):
        return _error(503, "Service Unavailable", "stake accounts cannot be stored right now")
    return web.json_response({"refresh": asdict(summary), "stakeAccounts": accounts})


def setup_stake_routes(app: web.Application) -> None:
    app.router.add_get("/stakes", get_stakes)
    app.router.add_post("/stakes/refresh", post_refresh)
