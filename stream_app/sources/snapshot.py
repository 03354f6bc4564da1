"""One fetch of the whole cluster → `ClusterSnapshot` (the ValidatorRecords of one run + cluster-wide numbers).

    state = SourceState()                       # keep it between runs (the fetcher owns one)
    async with RpcClient.from_settings(settings) as rpc:
        snap = await fetch_cluster_snapshot(rpc, state=state)
    snap.header(trigger="timer")                # RunHeader for the stream
    snap.records                                # list[ValidatorRecord], one per usable vote account
    snap.failures                               # list[ParseFailure]: vote accounts that could not be used

Calls: getEpochInfo, then concurrently getVoteAccounts, getClusterNodes, getBlockProduction, validator-info
(Config program, jsonParsed; refreshed every `info_ttl` seconds, cached in `state`), the authorized withdrawer
of each vote account (getMultipleAccounts jsonParsed, batches of 100; refreshed every `info_ttl`), and, when
the rewards of the previous epoch are not yet known, getInflationReward for every vote account (batches of
100): the commission actually applied becomes `applied_commission` / `applied_commission_epoch` on every
record of the epoch (the rug signal; kept in `state` so each run of the epoch carries it).

Failure policy — nothing silently wrong: getEpochInfo, getVoteAccounts, getClusterNodes and
getBlockProduction are required (an RpcError / RecordError propagates and no run is produced). A lagging
node (slot behind what this state already saw, or vote accounts stale against the epoch info) is retried on
the other URLs and ends in `RpcStale`. Validator-info and withdrawers fall back to the cached copy when a
refresh fails (and are None, never guessed, when there is none: see `snapshot.missing`). Inflation rewards
may legitimately not be ready yet (paid over the first blocks of an epoch: fewer than 90 % of the accounts
that earned credits have one); that, or failing to get them, is noted in `snapshot.warnings` and retried next
run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from stream_app.records import RecordError, RunHeader, ValidatorRecord
from stream_app.sources.parse import (
    CONFIG_PROGRAM_ID,
    BlockProduction,
    ClusterNode,
    EpochInfo,
    ParseFailure,
    ValidatorInfo,
    VoteAccount,
    infos_by_identity,
    parse_block_production,
    parse_cluster_nodes,
    parse_epoch_info,
    parse_inflation_rewards,
    parse_validator_infos,
    parse_vote_accounts,
    parse_vote_withdrawers,
)
from stream_app.sources.rpc import RpcClient, RpcError, StaleAnswer, gather_all

T = TypeVar("T")
BATCH = 100  # getMultipleAccounts' limit; also used for getInflationReward
DEFAULT_MAX_SLOT_LAG = 150  # a node more than this many slots behind what we saw is lagging
REWARDS_READY_FRACTION = 0.9  # fewer rewards than this share of the expected ones: not paid out yet


@dataclass
class SourceState:
    """What the fetcher remembers between runs (in memory; losing it costs only extra RPC calls)."""

    highest_slot: int = 0
    last_epoch: int | None = None
    infos: dict[str, ValidatorInfo] | None = None
    infos_at: float = 0.0
    withdrawers: dict[str, str] = field(default_factory=dict)
    withdrawers_at: float = 0.0
    applied_epoch: int | None = None  # epoch whose rewards are in `applied`
    applied: dict[str, int] = field(default_factory=dict)  # vote pubkey -> commission applied


@dataclass(frozen=True)
class ClusterSnapshot:
    run_id: str
    source: str  # the RPC URL that answered getVoteAccounts
    observed_at: float
    epoch_info: EpochInfo
    records: list[ValidatorRecord]
    failures: list[ParseFailure]
    total_active_stake: int
    current_count: int
    delinquent_count: int
    block_production_range: tuple[int, int]
    rollover_from: int | None  # previous epoch seen by this state, when this run is the first of a new epoch
    missing: tuple[str, ...] = ()  # optional sources with no data at all this run ("validator_info", ...)
    warnings: tuple[str, ...] = ()

    @property
    def epoch(self) -> int:
        return self.epoch_info.epoch

    @property
    def slot(self) -> int:
        return self.epoch_info.absolute_slot

    def header(self, *, trigger: str = "timer", source: str | None = None) -> RunHeader:
        return RunHeader(
            run_id=self.run_id, epoch=self.epoch, slot=self.slot, expected_count=len(self.records),
            started_at=self.observed_at, source=source or self.source, trigger=trigger,
            slot_index=self.epoch_info.slot_index, slots_in_epoch=self.epoch_info.slots_in_epoch,
        )


def _not_behind(highest: int, max_lag: int) -> Callable[[Any], None]:
    def check(result: Any) -> None:
        slot = result.get("absoluteSlot") if isinstance(result, dict) else None
        if isinstance(slot, int) and slot + max_lag < highest:
            raise StaleAnswer(f"slot {slot} is {highest - slot} slots behind the {highest} already seen")

    return check


def _votes_fresh(tip: int, max_lag: int) -> Callable[[Any], None]:
    def check(result: Any) -> None:
        current = result.get("current") if isinstance(result, dict) else None
        if not isinstance(current, list) or not current:
            return  # shape problems are the parser's to report
        newest = max((e.get("lastVote", 0) for e in current if isinstance(e, dict)
                      and isinstance(e.get("lastVote"), int)), default=0)
        if newest and newest + max_lag < tip:
            raise StaleAnswer(f"newest lastVote {newest} is {tip - newest} slots behind slot {tip}")

    return check


def _batches(items: list[str], size: int = BATCH) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


async def _fetch_infos(rpc: RpcClient) -> dict[str, ValidatorInfo]:
    result = await rpc.call("getProgramAccounts", [CONFIG_PROGRAM_ID, {"encoding": "jsonParsed"}])
    infos, _bad = parse_validator_infos(result)  # a malformed info entry only loses that entry
    return infos_by_identity(infos)


async def _per_batch(rpc: RpcClient, method: str, votes: list[str], params: Callable[[list[str]], list[Any]],
                     parse: Callable[[Any, list[str]], T]) -> list[T]:
    """One call per batch of 100, `rpc.concurrency` in flight, each answer parsed as soon as it arrives."""
    limit = asyncio.Semaphore(rpc.concurrency)

    async def one(batch: list[str]) -> T:
        async with limit:
            return parse(await rpc.call(method, params(batch)), batch)

    return await gather_all(*(one(b) for b in _batches(votes)))


async def _fetch_withdrawers(rpc: RpcClient, votes: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for found, _bad in await _per_batch(rpc, "getMultipleAccounts", votes, lambda b: [b, {"encoding": "jsonParsed"}],
                                        parse_vote_withdrawers):
        out.update(found)
    return out


class RewardsNotReady(Exception):
    """Too few of the accounts that earned credits have a reward yet (rewards are paid over the first blocks)."""


async def _fetch_applied(rpc: RpcClient, votes: list[str], epoch: int, expected: int) -> dict[str, int]:
    out: dict[str, int] = {}
    answers = await _per_batch(rpc, "getInflationReward", votes, lambda b: [b, {"epoch": epoch}],
                               lambda result, batch: parse_inflation_rewards(result, batch, epoch))
    for rewards, _bad in answers:
        out.update({vote: r.commission for vote, r in rewards.items() if r.commission is not None})
    if len(out) < REWARDS_READY_FRACTION * expected:
        raise RewardsNotReady(f"{len(out)} rewards for {expected} vote accounts that earned credits in epoch {epoch}")
    return out


async def fetch_cluster_snapshot(
    rpc: RpcClient,
    *,
    state: SourceState | None = None,
    run_id: str | None = None,
    info_ttl: float = 3600.0,
    max_slot_lag: int = DEFAULT_MAX_SLOT_LAG,
    fetch_rewards: bool = True,
    mev_commission_bps: Mapping[str, int] | None = None,
    now: Callable[[], float] = time.time,
) -> ClusterSnapshot:
    """Everything scoring needs, for every vote account, in one consistent pass. See the module docstring.

    `mev_commission_bps` (vote pubkey → bps, e.g. from `parse_jito_validators`) fills the optional MEV field.
    """
    state = state if state is not None else SourceState()
    run_id = run_id or str(uuid.uuid4())
    observed_at = now()
    epoch_info = parse_epoch_info(
        await rpc.call("getEpochInfo", [{"commitment": "finalized"}], check=_not_behind(state.highest_slot,
                                                                                         max_slot_lag)))
    state.highest_slot = max(state.highest_slot, epoch_info.absolute_slot)

    # Each answer is parsed as soon as it arrives, so at most one decoded JSON tree (several times the size of
    # its parsed form) is alive at a time.
    votes_task = _parsed(parse_vote_accounts, rpc.call(
        "getVoteAccounts", [{"commitment": "finalized"}], check=_votes_fresh(epoch_info.absolute_slot, max_slot_lag)))
    nodes_task = _parsed(parse_cluster_nodes, rpc.call("getClusterNodes"))
    production_task = _parsed(parse_block_production, rpc.call("getBlockProduction", [{"commitment": "finalized"}]))
    refresh_infos = state.infos is None or observed_at - state.infos_at >= info_ttl
    infos_task = _fetch_infos(rpc) if refresh_infos else None
    votes, (nodes, _node_failures), (production, production_failures), infos_result = await gather_all(
        votes_task, nodes_task, production_task, _optional(infos_task))
    source = rpc.url
    unreadable = {f.key for f in production_failures if f.key}
    for key in unreadable:  # an unreadable entry is unknown, not "no leader slots"
        production.by_identity.pop(key, None)
    warnings: list[str] = []
    if isinstance(infos_result, BaseException):
        warnings.append(f"validator-info refresh failed, using the cached copy: {infos_result}")
    elif infos_result is not None:
        state.infos, state.infos_at = infos_result, observed_at

    vote_keys = [a.vote_pubkey for a in votes.accounts]
    unknown = [v for v in vote_keys if v not in state.withdrawers]
    stale_withdrawers = observed_at - state.withdrawers_at >= info_ttl
    try:
        if stale_withdrawers or unknown:
            fetched = await _fetch_withdrawers(rpc, vote_keys if stale_withdrawers else unknown)
            if stale_withdrawers:
                state.withdrawers, state.withdrawers_at = fetched, observed_at
            else:
                state.withdrawers.update(fetched)
    except (RpcError, RecordError) as exc:
        warnings.append(f"withdrawer refresh failed, using the cached copy: {exc}")

    rollover_from = state.last_epoch if state.last_epoch is not None and state.last_epoch < epoch_info.epoch else None
    finished = epoch_info.epoch - 1
    if fetch_rewards and finished >= 0 and state.applied_epoch != finished:
        expected = sum(1 for a in votes.accounts if any(e == finished and c > p for e, c, p in a.epoch_credits))
        try:
            state.applied = await _fetch_applied(rpc, vote_keys, finished, expected)
            state.applied_epoch = finished
        except (RpcError, RecordError, RewardsNotReady) as exc:
            warnings.append(f"inflation rewards for epoch {finished} not available yet: {exc}")
    state.last_epoch = epoch_info.epoch

    missing = tuple(name for name, have in (("validator_info", state.infos is not None),
                                            ("withdrawers", bool(state.withdrawers))) if not have)
    records = [
        _record(a, run_id, epoch_info, observed_at, nodes, production, unreadable, state) for a in votes.accounts
    ]
    if mev_commission_bps:
        records = [replace(r, mev_commission_bps=mev_commission_bps[r.vote_pubkey])
                   if r.vote_pubkey in mev_commission_bps else r for r in records]
    return ClusterSnapshot(
        run_id=run_id, source=source, observed_at=observed_at, epoch_info=epoch_info, records=records,
        failures=votes.failures, total_active_stake=sum(a.activated_stake for a in votes.accounts),
        current_count=sum(1 for a in votes.accounts if not a.delinquent),
        delinquent_count=sum(1 for a in votes.accounts if a.delinquent),
        block_production_range=(production.first_slot, production.last_slot), rollover_from=rollover_from,
        missing=missing, warnings=tuple(warnings),
    )


async def _parsed(parse: Callable[[Any], T], call: Awaitable[Any]) -> T:
    return parse(await call)


async def _optional(task: Any) -> Any:
    """Await an optional fetch; its failure is returned (not raised) so required calls are not cancelled."""
    if task is None:
        return None
    try:
        return await task
    except (RpcError, RecordError) as exc:
        return exc


def _record(
    account: VoteAccount, run_id: str, info: EpochInfo, observed_at: float, nodes: dict[str, ClusterNode],
    production: BlockProduction, unreadable: set[str], state: SourceState,
) -> ValidatorRecord:
    node = nodes.get(account.node_pubkey)
    produced = production.by_identity.get(account.node_pubkey)
    vinfo = state.infos.get(account.node_pubkey) if state.infos is not None else None
    applied = state.applied.get(account.vote_pubkey) if state.applied_epoch is not None else None
    # No leader slot this epoch is a real zero, not unknown: the range covers the whole epoch so far.
    leader: int | None
    blocks: int | None
    if account.node_pubkey in unreadable:
        leader = blocks = None
    else:
        leader, blocks = produced if produced is not None else (0, 0)
    return ValidatorRecord(
        run_id=run_id, vote_pubkey=account.vote_pubkey, identity_pubkey=account.node_pubkey, epoch=info.epoch,
        slot=info.absolute_slot, observed_at=observed_at, commission=account.commission,
        activated_stake=account.activated_stake, epoch_credits=account.epoch_credits,
        last_vote=account.last_vote, root_slot=account.root_slot, delinquent=account.delinquent,
        epoch_vote_account=account.epoch_vote_account,
        version=node.version if node else None, gossip_ip=node.gossip_ip if node else None,
        leader_slots=leader, blocks_produced=blocks,
        name=vinfo.name if vinfo else None, website=vinfo.website if vinfo else None,
        details=vinfo.details if vinfo else None, icon_url=vinfo.icon_url if vinfo else None,
        keybase_username=vinfo.keybase_username if vinfo else None,
        authorized_withdrawer=state.withdrawers.get(account.vote_pubkey),
        applied_commission=applied,
        applied_commission_epoch=state.applied_epoch if applied is not None else None,
    )
