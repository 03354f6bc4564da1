"""Subscription sources: snapshot first, then one message per live event, each with its version.

With `context["snapshot_only"]` a source ends after its snapshot (or at once when there is none); with
`context["changes_only"]` it skips the snapshot. The shared-subscription layer (fanout.py) computes each
socket's snapshot the first way and renders the changes once for all sockets the second way.

`version` is the live-stream entry id (strictly increasing); a reconnecting client drops anything it
has already seen. Per-event data is fetched once per process and shared by all subscribers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from http_app.graphql import data
from http_app.graphql.errors import SERVICE_UNAVAILABLE, ApiError
from http_app.graphql.live_hub import LiveHub, Subscriber
from http_app.graphql.loaders import Loaders

Ctx = dict[str, Any]
FINISHED = frozenset({"completed", "partial", "failed"})
MAX_WATCHED = 1_000


def _hub(ctx: Ctx) -> LiveHub:
    hub: LiveHub = ctx["hub"]
    return hub


def _registered(ctx: Ctx) -> None:
    """Tell a shared stream it now receives every later event (fanout.py waits for this)."""
    ready = ctx.get("on_subscribed")
    if ready is not None:
        ready.set()


def _votes(args: dict[str, Any]) -> list[str] | None:
    votes = args.get("voteAccounts")
    if votes is not None and len(votes) > MAX_WATCHED:
        raise ApiError(f"at most {MAX_WATCHED} voteAccounts per subscription")
    return votes


async def _next(sub: Subscriber) -> tuple[str, dict[str, Any]]:
    if sub.overflowed:
        raise ApiError("subscriber fell too far behind; reconnect to get a fresh snapshot", SERVICE_UNAVAILABLE)
    return await sub.queue.get()


def _fresh(ctx: Ctx, payload: dict[str, Any]) -> dict[str, Any]:
    ctx["loaders"] = Loaders()  # each message resolves against current data, not the last one's
    return payload


def _score_item(row: dict[str, Any]) -> dict[str, Any]:
    return {"voteAccount": row["voteAccount"], "score": row["latestScore"], "runId": row["_run_id"],
            "epoch": row["_epoch"], "validator": row}


async def _scores(pool: Any, votes: list[str] | None) -> list[dict[str, Any]]:
    rows = await data.validators_by_vote(pool, votes)
    for row in rows:
        row["_run_id"] = None
        row["_epoch"] = None
    return rows


async def trust_scores_updated(parent: Any, args: dict[str, Any], ctx: Ctx, info: Any
                               ) -> AsyncIterator[dict[str, Any]]:
    hub, pool = _hub(ctx), ctx["pool"]
    votes = _votes(args)
    watched = set(votes) if votes is not None else None
    sub = hub.subscribe()
    _registered(ctx)
    try:
        version = hub.version
        if not ctx.get("changes_only"):
            rows = await _scores(pool, votes)
            yield _fresh(ctx, {"version": version, "snapshot": True, "runId": None, "epoch": None,
                               "scores": [_score_item(r) for r in rows]})
        while not ctx.get("snapshot_only"):
            version, event = await _next(sub)
            if event.get("type") != "scores":
                continue
            changed = [v for v in event.get("validators") or () if isinstance(v, str)]
            if watched is not None:
                changed = [v for v in changed if v in watched]
            if not changed:
                continue
            announced = [v for v in event.get("validators") or () if isinstance(v, str)]
            every = await hub.memo(("scores", version), _by_vote(pool, announced))
            items = []
            for vote in changed:
                row = every.get(vote)
                if row is not None:
                    items.append({"voteAccount": vote, "score": row["latestScore"], "runId": event.get("run_id"),
                                  "epoch": event.get("epoch"), "validator": row})
            yield _fresh(ctx, {"version": version, "snapshot": False, "runId": event.get("run_id"),
                               "epoch": event.get("epoch"), "scores": items})
    finally:
        hub.unsubscribe(sub)


def _by_vote(pool: Any, votes: list[str]) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def run() -> dict[str, Any]:
        return {row["voteAccount"]: row for row in await data.validators_by_vote(pool, votes)}

    return run


async def scoring_run_completed(parent: Any, args: dict[str, Any], ctx: Ctx, info: Any
                                ) -> AsyncIterator[dict[str, Any]]:
    hub, pool = _hub(ctx), ctx["pool"]
    sub = hub.subscribe()
    _registered(ctx)
    try:
        version = hub.version
        latest = None if ctx.get("changes_only") else await data.latest_run(pool)
        if latest is not None:
            ctx["loaders"] = Loaders()
            ctx["loaders"].note("run", [latest["id"]])
            yield {"version": version, "snapshot": True, "run": latest}
        while not ctx.get("snapshot_only"):
            version, event = await _next(sub)
            if event.get("type") != "run" or event.get("status") not in FINISHED:
                continue
            run_id = str(event.get("run_id"))
            run = await hub.memo(("run", version), lambda run_id=run_id: data.scoring_run(pool, run_id))  # type: ignore[misc]
            ctx["loaders"] = Loaders()
            if run is not None:
                ctx["loaders"].note("run", [run["id"]])
            yield {"version": version, "snapshot": False, "run": run}
    finally:
        hub.unsubscribe(sub)


async def commission_changed(parent: Any, args: dict[str, Any], ctx: Ctx, info: Any
                             ) -> AsyncIterator[dict[str, Any]]:
    hub, pool = _hub(ctx), ctx["pool"]
    votes = _votes(args)
    watched = set(votes) if votes is not None else None
    sub = hub.subscribe()
    _registered(ctx)
    try:
        version = hub.version
        recent = [] if ctx.get("changes_only") else await data.commission_events(
            pool, votes[0] if votes and len(votes) == 1 else None, None, 20)
        recent = [e for e in recent if watched is None or e["voteAccount"] in watched]
        if recent:
            e = recent[0]
            yield _fresh(ctx, {"version": version, "snapshot": True, "voteAccount": e["voteAccount"],
                               "epoch": e["epoch"], "kind": e["kind"], "isRug": e["isRug"],
                               "oldCommission": e["oldCommission"], "newCommission": e["newCommission"],
                               "_validator_pk": e["_validator_pk"]})
        while not ctx.get("snapshot_only"):
            version, event = await _next(sub)
            vote = event.get("vote_pubkey")
            if event.get("type") != "commission" or not isinstance(vote, str):
                continue
            if watched is not None and vote not in watched:
                continue
            row = await hub.memo(("validator", version), lambda vote=vote: data.validator_by_vote(pool, vote))  # type: ignore[misc]
            yield _fresh(ctx, {"version": version, "snapshot": False, "voteAccount": vote,
                               "epoch": event.get("epoch"), "kind": event.get("kind"),
                               "isRug": event.get("kind") == "rug",
                               "oldCommission": event.get("old_commission"),
                               "newCommission": event.get("new_commission"), "validator": row})
    finally:
        hub.unsubscribe(sub)


async def passthrough(parent: Any, args: dict[str, Any], ctx: Ctx, info: Any) -> Any:
    return parent


SUBSCRIPTIONS: dict[str, tuple[Callable[..., AsyncIterator[dict[str, Any]]], Callable[..., Awaitable[Any]]]] = {
    "Subscription.trustScoresUpdated": (trust_scores_updated, passthrough),
    "Subscription.scoringRunCompleted": (scoring_run_completed, passthrough),
    "Subscription.commissionChanged": (commission_changed, passthrough),
}
