"""`build_cluster_context`: the per-run cluster references, computed once from the run's records (pure).

O(V log V) per run (a few sorts); scoring each validator against it is then O(1).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from stream_app.records import ClusterContext, ValidatorRecord
from stream_app.scoring import components as comp
from stream_app.scoring import config as names
from stream_app.scoring.config import DEFAULT_CONFIG, ScoringConfig

REFERENCE_EPOCHS = 5  # getVoteAccounts returns at most the last 5 epochCredits entries


def weighted_median(pairs: Iterable[tuple[float, float]]) -> float | None:
    """Lower weighted median of (value, weight) pairs; weights <= 0 are ignored."""
    items = sorted((v, w) for v, w in pairs if w > 0)
    total = sum(w for _, w in items)
    if total <= 0:
        return None
    running = 0.0
    for value, weight in items:
        running += weight
        if running >= total / 2:
            return value
    return items[-1][0]


def median(values: Sequence[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def superminority_min_stake(stakes: Iterable[int]) -> int:
    """Stake of the smallest validator in the superminority: the fewest largest validators holding > 1/3."""
    ordered = sorted((s for s in stakes if s > 0), reverse=True)
    total = sum(ordered)
    running = 0
    for stake in ordered:
        running += stake
        if 3 * running > total:
            return stake
    return 0


def reference_credits(records: Sequence[ValidatorRecord], epoch: int) -> dict[str, int]:
    """Stake-weighted median credits per epoch among accounts that earned credits in it.

    For the epoch in progress only non-delinquent voters count, so a wave of outages does not drag the
    reference (and with it everyone's ratio) down.
    """
    per_epoch: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for record in records:
        for e, credits, previous in record.epoch_credits:
            earned = credits - previous
            if earned <= 0 or not epoch - REFERENCE_EPOCHS < e <= epoch:
                continue
            if e == epoch and record.delinquent:
                continue
            per_epoch[e].append((earned, record.activated_stake))
    result = {}
    for e, pairs in per_epoch.items():
        value = weighted_median(pairs)
        if value is not None and value > 0:
            result[str(e)] = int(value)
    return result


def cluster_skip_rate(records: Sequence[ValidatorRecord]) -> float | None:
    """Stake-weighted skip rate of validators that had leader slots this epoch."""
    weighted = total = 0.0
    for r in records:
        if r.leader_slots and r.blocks_produced is not None and r.activated_stake > 0:
            weighted += r.activated_stake * (r.leader_slots - r.blocks_produced) / r.leader_slots
            total += r.activated_stake
    return weighted / total if total > 0 else None


def consensus_versions(records: Sequence[ValidatorRecord], share: float) -> dict[str, str]:
    """Per client family, the highest version such that validators at or above it hold >= `share` of stake."""
    by_family: dict[str, dict[tuple[int, ...], tuple[str, int]]] = defaultdict(dict)
    family_stake: dict[str, int] = defaultdict(int)
    for r in records:
        family, parsed = comp.client_family(r.version), comp.parse_version(r.version)
        if family is None or parsed is None or r.activated_stake <= 0 or r.version is None:
            continue
        label, stake = by_family[family].get(parsed, (r.version, 0))
        by_family[family][parsed] = (label, stake + r.activated_stake)
        family_stake[family] += r.activated_stake
    result = {}
    for family, versions in by_family.items():
        running = 0
        for parsed in sorted(versions, reverse=True):
            label, stake = versions[parsed]
            running += stake
            if running >= share * family_stake[family]:
                result[family] = ".".join(str(p) for p in parsed) if parsed else label
                break
    return result


def infra_stake_share(records: Sequence[ValidatorRecord], config: ScoringConfig) -> dict[str, float]:
    stake: dict[str, int] = defaultdict(int)
    total = 0
    for r in records:
        total += max(0, r.activated_stake)
        prefix = comp.ip_prefix(r.gossip_ip, config.infra_prefix_bits)
        if prefix is not None:
            stake[prefix] += max(0, r.activated_stake)
    if total <= 0:
        return {}
    return {
        prefix: round(s / total, 6)
        for prefix, s in sorted(stake.items())
        if s / total >= config.infra_min_share_in_context
    }


def cluster_priors(
    records: Sequence[ValidatorRecord], references: dict[str, int], epoch: int, config: ScoringConfig
) -> dict[str, float]:
    """Median sub-scores of the cluster: what a validator with no history is assumed to look like."""
    priors: dict[str, float] = {}
    finished = [int(e) for e in references if int(e) < epoch]
    if finished:
        last = max(finished)
        reference = references[str(last)]
        earned = {r.vote_pubkey: 0 for r in records}
        for r in records:
            for e, c, p in r.epoch_credits:
                if e == last:
                    earned[r.vote_pubkey] = max(0, c - p)
        value = median([comp.vote_subscore(x / reference, config) for x in earned.values()])
        if value is not None:
            priors[names.VOTE] = round(value, 6)
    if records:
        # Median instantaneous sub-score: 1 while most accounts are voting, so a single poll decides nothing.
        floor = config.availability_floor
        up = median([0.0 if r.delinquent else 1.0 for r in records])
        if up is not None:
            priors[names.AVAILABILITY] = round(comp.clamp01((up - floor) / (1 - floor)), 6)
    return priors


def build_cluster_context(
    run_id: str,
    epoch: int,
    slot: int,
    slot_index: int,
    slots_in_epoch: int,
    records: Sequence[ValidatorRecord],
    observed_at: float = 0.0,
    config: ScoringConfig = DEFAULT_CONFIG,
) -> ClusterContext:
    """The cluster references for one run; the result does not depend on the order of `records`."""
    # A canonical order makes float sums bit-identical however the run's records arrived.
    records = sorted(records, key=lambda r: r.vote_pubkey)
    references = reference_credits(records, epoch)
    return ClusterContext(
        run_id=run_id,
        epoch=epoch,
        slot=slot,
        slot_index=slot_index,
        slots_in_epoch=slots_in_epoch,
        total_active_stake=sum(max(0, r.activated_stake) for r in records),
        validator_count=len(records),
        superminority_min_stake=superminority_min_stake(r.activated_stake for r in records),
        reference_credits=references,
        cluster_skip_rate=cluster_skip_rate(records),
        consensus_versions=consensus_versions(records, config.software_stake_share),
        observed_at=observed_at,
        priors=cluster_priors(records, references, epoch, config),
        infra_stake_share=infra_stake_share(records, config),
    )
