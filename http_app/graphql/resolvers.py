"""Query and mutation resolvers. Parents are dicts keyed by field names; children load in batches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from tartiflette import Resolver, Subscription

from http_app.graphql import data
from http_app.graphql.authz import principal_of, require, require_admin, require_signed_in
from http_app.graphql.errors import FORBIDDEN, ApiError
from http_app.graphql.loaders import BatchLoader, Loaders
from http_app.principal import ADMIN_SYSTEM, READ_SCORES, READ_USERS, WRITE_STAKES

DEFAULT_PAGE = 20
MAX_PAGE = 100

Ctx = dict[str, Any]
Args = dict[str, Any]


def _page_size(value: int | None, name: str, default: int | None = DEFAULT_PAGE) -> int | None:
    if value is None:
        return default
    if not 1 <= value <= MAX_PAGE:
        raise ApiError(f"`{name}` must be between 1 and {MAX_PAGE}")
    return value


def _loaders(ctx: Ctx) -> Loaders:
    loaders: Loaders = ctx["loaders"]
    return loaders


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# ---- Query -----------------------------------------------------------------------------------------

async def q_validators(parent: Any, args: Args, ctx: Ctx, info: Any) -> list[dict[str, Any]]:
    query = data.ValidatorQuery.from_args(args, ("ID", False))
    rows = await data.validators(ctx["pool"], query)
    _loaders(ctx).note("validator", [row["_pk"] for row in rows])
    return rows


async def q_validators_connection(parent: Any, args: Args, ctx: Ctx, info: Any) -> dict[str, Any]:
    query = data.ValidatorQuery.from_args(args, ("SCORE", True))
    first = _page_size(args.get("first"), "first")
    assert first is not None
    after = query.decode_cursor(args["after"]) if args.get("after") else None
    rows = await data.validators(ctx["pool"], query, first + 1, after)
    has_next = len(rows) > first
    rows = rows[:first]
    _loaders(ctx).note("validator", [row["_pk"] for row in rows])
    edges = [{"cursor": query.cursor_of(row), "node": row} for row in rows]
    return {
        "edges": edges,
        "nodes": rows,
        "pageInfo": {"hasNextPage": has_next, "endCursor": edges[-1]["cursor"] if edges else None},
        "_query": query,
    }


async def connection_total(parent: dict[str, Any], args: Args, ctx: Ctx, info: Any) -> int:
    return await data.count_validators(ctx["pool"], parent["_query"])


async def q_validator(parent: Any, args: Args, ctx: Ctx, info: Any) -> dict[str, Any] | None:
    row = await data.validator_by_vote(ctx["pool"], args["voteAccount"])
    if row is not None:
        _loaders(ctx).note("validator", [row["_pk"]])
    return row


async def q_recommended(parent: Any, args: Args, ctx: Ctx, info: Any) -> list[dict[str, Any]]:
    limit = _page_size(args.get("limit"), "limit")
    assert limit is not None
    max_commission = args.get("maxCommission")
    rug_free = args.get("rugFreeEpochs")
    if max_commission is None or not 0 <= max_commission <= 100:
        raise ApiError("`maxCommission` must be between 0 and 100")
    if rug_free is None or not 0 <= rug_free <= 10_000:
        raise ApiError("`rugFreeEpochs` must be between 0 and 10000")
    picks = await data.recommended(ctx["pool"], limit, max_commission, rug_free)
    _loaders(ctx).note("validator", [pick["validator"]["_pk"] for pick in picks])
    return picks


async def q_commission_events(parent: Any, args: Args, ctx: Ctx, info: Any) -> list[dict[str, Any]]:
    first = _page_size(args.get("first"), "first")
    assert first is not None
    rows = await data.commission_events(ctx["pool"], args.get("voteAccount"), args.get("kind"), first)
    _loaders(ctx).note("validator_ref", [row["_validator_pk"] for row in rows])
    return rows


async def q_scoring_runs(parent: Any, args: Args, ctx: Ctx, info: Any) -> list[dict[str, Any]]:
    require(ctx, READ_SCORES)
    rows = await data.scoring_runs(ctx["pool"], _page_size(args.get("first"), "first"))
    _loaders(ctx).note("run", [row["id"] for row in rows])
    return rows


async def q_users(parent: Any, args: Args, ctx: Ctx, info: Any) -> list[dict[str, Any]]:
    require(ctx, READ_USERS)
    rows = await data.users(ctx["pool"])
    _loaders(ctx).note("user", [row["_pk"] for row in rows])
    return rows


async def q_my_stake_accounts(parent: Any, args: Args, ctx: Ctx, info: Any) -> list[dict[str, Any]]:
    principal = require_signed_in(ctx)
    user_pk = int(principal.user_id) if principal.user_id and principal.user_id.isdigit() else None
    rows = await data.stakes_of_wallet(ctx["pool"], user_pk, principal.wallet_pubkey)
    _loaders(ctx).note("validator_ref", [r["_validator_pk"] for r in rows if r["_validator_pk"] is not None])
    return rows


async def q_system_stats(parent: Any, args: Args, ctx: Ctx, info: Any) -> dict[str, Any]:
    require_admin(ctx)
    return await data.system_stats(ctx["pool"])


async def q_cache_status(parent: Any, args: Args, ctx: Ctx, info: Any) -> dict[str, Any]:
    require(ctx, ADMIN_SYSTEM)
    status: dict[str, Any] = await ctx["cache"].status()
    return status


# ---- Mutation ----------------------------------------------------------------------------------------

async def _audited_cache_action(ctx: Ctx, action: str, run: Callable[[], Awaitable[int]], what: str
                                ) -> dict[str, Any]:
    principal = require(ctx, ADMIN_SYSTEM)
    deleted = await run()
    await data.audit(ctx["pool"], action, principal.user_id,
                     {"deleted": deleted, "via": "graphql", "requestId": ctx.get("request_id")})
    return {"success": True, "message": f"{what}: {deleted} keys removed", "timestamp": _now()}


async def m_clear_cache(parent: Any, args: Args, ctx: Ctx, info: Any) -> dict[str, Any]:
    return await _audited_cache_action(ctx, "cache.clear", ctx["cache"].clear, "Cache cleared")


async def m_invalidate_validator_cache(parent: Any, args: Args, ctx: Ctx, info: Any) -> dict[str, Any]:
    return await _audited_cache_action(
        ctx, "cache.invalidate_validators", ctx["cache"].invalidate, "Validator cache invalidated"
    )


async def m_refresh_my_stake_accounts(parent: Any, args: Args, ctx: Ctx, info: Any) -> list[dict[str, Any]]:
    """Re-read the signed-in wallet's Stake-program accounts from chain (access control's refresher)."""
    from http_app.stakes import StakeAccessError, refresh_stake_accounts

    principal = require(ctx, WRITE_STAKES)
    try:
        await refresh_stake_accounts(ctx["app"], principal)
    except StakeAccessError as exc:
        raise ApiError(str(exc), FORBIDDEN) from None
    return await q_my_stake_accounts(parent, args, ctx, info)


# ---- Object fields -----------------------------------------------------------------------------------

async def _load(ctx: Ctx, loader: BatchLoader[Any, Any], key: Any, child_kind: str, child_key: str) -> Any:
    """Load `key`; when that ran a new batch, note the children's keys of the whole batch at once."""
    before = loader.batches
    value = await loader.load(key)
    if loader.batches != before:
        rows = [r for v in loader.loaded_since(before) for r in (v if isinstance(v, list) else [v])]
        _loaders(ctx).note(child_kind, {r[child_key] for r in rows if r.get(child_key) is not None})
    return value


async def validator_latest_score(parent: dict[str, Any], args: Args, ctx: Ctx, info: Any) -> Any:
    pool = ctx["pool"]
    loader = _loaders(ctx).get("latest", "validator", lambda pks: data.latest_scores(pool, pks), lambda: None)
    return await _load(ctx, loader, parent["_pk"], "validator_ref", "_validator_pk")


async def validator_trust_scores(parent: dict[str, Any], args: Args, ctx: Ctx, info: Any) -> Any:
    pool = ctx["pool"]
    last = _page_size(args.get("last"), "last", default=None)
    loader = _loaders(ctx).get(("history", last), "validator",
                               lambda pks: data.score_history(pool, pks, last), list)
    return await _load(ctx, loader, parent["_pk"], "validator_ref", "_validator_pk")


async def validator_commission_events(parent: dict[str, Any], args: Args, ctx: Ctx, info: Any) -> Any:
    pool = ctx["pool"]
    loader = _loaders(ctx).get("commission", "validator", lambda pks: data.commission_events_of(pool, pks), list)
    return await _load(ctx, loader, parent["_pk"], "validator_ref", "_validator_pk")


async def validator_ref(parent: dict[str, Any], args: Args, ctx: Ctx, info: Any) -> Any:
    """`validator` of a trust score, commission event or stake account (by its validator key)."""
    pk = parent.get("_validator_pk")
    if pk is None:
        return parent.get("validator")
    pool = ctx["pool"]
    loader = _loaders(ctx).get("validator_by_pk", "validator_ref", lambda pks: data.validators_by_pk(pool, pks),
                               lambda: None)
    return await _load(ctx, loader, pk, "validator", "_pk")


async def run_trust_scores(parent: dict[str, Any], args: Args, ctx: Ctx, info: Any) -> Any:
    pool = ctx["pool"]
    loader = _loaders(ctx).get("run_scores", "run", lambda ids: data.scores_of_runs(pool, ids), list)
    return await _load(ctx, loader, parent["id"], "validator_ref", "_validator_pk")


async def user_stake_accounts(parent: dict[str, Any], args: Args, ctx: Ctx, info: Any) -> Any:
    pool = ctx["pool"]
    loader = _loaders(ctx).get("user_stakes", "user", lambda pks: data.stakes_of_users(pool, pks), list)
    return await _load(ctx, loader, parent["_pk"], "validator_ref", "_validator_pk")


RESOLVERS: dict[str, Callable[..., Awaitable[Any]]] = {
    "Query.validators": q_validators,
    "Query.validatorsConnection": q_validators_connection,
    "Query.validator": q_validator,
    "Query.recommendedValidators": q_recommended,
    "Query.commissionEvents": q_commission_events,
    "Query.scoringRuns": q_scoring_runs,
    "Query.users": q_users,
    "Query.myStakeAccounts": q_my_stake_accounts,
    "Query.systemStats": q_system_stats,
    "Query.cacheStatus": q_cache_status,
    "Mutation.clearCache": m_clear_cache,
    "Mutation.invalidateValidatorCache": m_invalidate_validator_cache,
    "Mutation.refreshMyStakeAccounts": m_refresh_my_stake_accounts,
    "ValidatorConnection.totalCount": connection_total,
    "Validator.latestTrustScore": validator_latest_score,
    "Validator.trustScores": validator_trust_scores,
    "Validator.commissionEvents": validator_commission_events,
    "TrustScore.validator": validator_ref,
    "CommissionEvent.validator": validator_ref,
    "StakeAccount.validator": validator_ref,
    "CommissionChange.validator": validator_ref,
    "ScoringRun.trustScores": run_trust_scores,
    "User.stakeAccounts": user_stake_accounts,
}

_registered: set[str] = set()


def register_resolvers(schema_name: str) -> None:
    """Bind every resolver and subscription to the engine named `schema_name` (once per name)."""
    if schema_name in _registered:
        return
    from http_app.graphql.subscriptions import SUBSCRIPTIONS

    for field, fn in RESOLVERS.items():
        Resolver(field, schema_name=schema_name)(fn)
    for field, (generator, resolver) in SUBSCRIPTIONS.items():
        Subscription(field, schema_name=schema_name)(generator)
        Resolver(field, schema_name=schema_name)(resolver)
    _registered.add(schema_name)


__all__ = ["RESOLVERS", "principal_of", "register_resolvers"]
