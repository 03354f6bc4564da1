"""`update(state, record, ctx) -> (state', breakdown)`: the incremental trust score, O(1) per record.

The state only moves forward: a record no newer than the last one applied (by slot, then observed_at)
leaves the state untouched and still gets a breakdown, so replays and late records are harmless.
Per-epoch vote performance is committed only for finished epochs (their epochCredits are final), each
epoch once, so re-observing an epoch never double counts.
"""

from __future__ import annotations

import math

from stream_app.records import ClusterContext, RecordError, ValidatorRecord
from stream_app.scoring import components as comp
from stream_app.scoring import config as names
from stream_app.scoring import rugs
from stream_app.scoring.breakdown import CommissionEvent, Component, Measurement, Penalty, ScoreBreakdown
from stream_app.scoring.config import DEFAULT_CONFIG, ScoringConfig
from stream_app.scoring.state import ValidatorState


def update(
    state: ValidatorState | None,
    record: ValidatorRecord,
    ctx: ClusterContext,
    config: ScoringConfig = DEFAULT_CONFIG,
) -> tuple[ValidatorState, ScoreBreakdown]:
    """Fold one record into the validator's state and explain its score. Never mutates `state`."""
    validate(record, ctx)
    current = state if state is not None else ValidatorState()
    applied = is_newer(current, record)
    events: list[CommissionEvent] = []
    if applied:
        current = current.copy()
        fold_vote_epochs(current, record, ctx, config)
        fold_availability(current, record, config)
        fold_block_production(current, record, config)
        events = fold_commission(current, record, config)
        current.last_slot = record.slot
        current.last_observed_at = record.observed_at
        current.last_run_id = record.run_id
    return current, explain(current, record, ctx, config, tuple(events), applied)


def validate(record: ValidatorRecord, ctx: ClusterContext) -> None:
    problems = []
    if not 0 <= record.commission <= 100:
        problems.append(f"commission {record.commission} outside 0..100")
    if record.activated_stake < 0:
        problems.append(f"negative activated_stake {record.activated_stake}")
    if record.applied_commission is not None and not 0 <= record.applied_commission <= 100:
        problems.append(f"applied_commission {record.applied_commission} outside 0..100")
    if (record.leader_slots is None) != (record.blocks_produced is None):
        problems.append("leader_slots and blocks_produced must be both set or both absent")
    elif (
        record.leader_slots is not None
        and record.blocks_produced is not None
        and not (0 <= record.blocks_produced <= record.leader_slots)
    ):
        problems.append(f"blocks_produced {record.blocks_produced} not in 0..{record.leader_slots}")
    if ctx.slots_in_epoch <= 0:
        problems.append(f"cluster context slots_in_epoch {ctx.slots_in_epoch} must be positive")
    if problems:
        raise RecordError(f"cannot score {record.vote_pubkey}: " + "; ".join(problems))


def is_newer(state: ValidatorState, record: ValidatorRecord) -> bool:
    return (record.slot, record.observed_at) > (state.last_slot, state.last_observed_at)


# --- folding a record into the state (in place, on a copy) ------------------------------------------


def _commit_vote_epoch(state: ValidatorState, epoch: int, ratio: float, config: ScoringConfig) -> None:
    x = comp.vote_subscore(ratio, config)
    if state.vote_n == 0:
        state.vote_ewma = x
    else:
        state.vote_ewma += comp.ewma_alpha(config.vote_half_life_epochs) * (x - state.vote_ewma)
    state.vote_n += 1
    state.vote_epoch = epoch
    state.vote_last_ratio = ratio
    if ratio > 0:
        state.credited_epochs += 1


def fold_vote_epochs(
    state: ValidatorState, record: ValidatorRecord, ctx: ClusterContext, config: ScoringConfig
) -> None:
    """Commit finished epochs newer than the last committed one; gaps between entries earned zero."""
    finished = sorted((e, c - p) for e, c, p in record.epoch_credits if e < record.epoch)
    newest_reference = max((int(e) for e in ctx.reference_credits), default=-1)
    previous: int | None = None
    for epoch, earned in finished:
        if epoch > state.vote_epoch:
            if epoch > newest_reference:
                return  # wait for a context that knows this epoch; later epochs must not jump ahead
            if previous is not None:
                _commit_gap(state, max(previous, state.vote_epoch) + 1, epoch, config)
            reference = ctx.reference_credits.get(str(epoch))
            if reference and reference > 0:
                _commit_vote_epoch(state, epoch, max(0, earned) / reference, config)
            else:  # older than the context's window: it can never be compared, skip it for good
                state.vote_epoch = epoch
        previous = epoch
    if previous is not None:
        # No entry after `previous` although epochs finished since: the account earned nothing in them.
        _commit_gap(state, max(previous, state.vote_epoch) + 1, record.epoch, config)


def _commit_gap(state: ValidatorState, start: int, stop: int, config: ScoringConfig) -> None:
    first = max(start, stop - config.max_gap_epochs)
    for epoch in range(first, stop):
        _commit_vote_epoch(state, epoch, 0.0, config)


def fold_availability(state: ValidatorState, record: ValidatorRecord, config: ScoringConfig) -> None:
    """The status seen at a poll is taken to have held since the previous poll."""
    if state.last_slot < 0:
        elapsed = config.first_poll_seconds
    else:
        elapsed = max(0.0, record.observed_at - state.last_observed_at)
    keep = math.exp(-elapsed / config.availability_tau_seconds)
    state.avail_up = state.avail_up * keep + (1.0 - keep) * (0.0 if record.delinquent else 1.0)
    state.avail_seen = state.avail_seen * keep + (1.0 - keep)
    if record.delinquent:
        if state.delinquent_since is None:
            state.delinquent_since = record.epoch
    else:
        state.delinquent_since = None


def fold_block_production(state: ValidatorState, record: ValidatorRecord, config: ScoringConfig) -> None:
    """getBlockProduction is cumulative within an epoch: keep the latest; fold finished epochs."""
    if record.leader_slots is None or record.blocks_produced is None:
        return
    if state.block_epoch >= 0 and record.epoch > state.block_epoch:
        per_epoch = 2.0 ** (-1.0 / config.skip_half_life_epochs)
        decay_old = per_epoch ** (record.epoch - state.block_epoch)
        decay_last = per_epoch ** (record.epoch - state.block_epoch - 1)
        state.leader_sum = state.leader_sum * decay_old + state.epoch_leader_slots * decay_last
        state.skipped_sum = state.skipped_sum * decay_old + state.epoch_skipped * decay_last
    if record.epoch >= state.block_epoch:
        state.block_epoch = record.epoch
        state.epoch_leader_slots = record.leader_slots
        state.epoch_skipped = record.leader_slots - record.blocks_produced
        state.block_known = True


def fold_commission(state: ValidatorState, record: ValidatorRecord, config: ScoringConfig) -> list[CommissionEvent]:
    events = []
    previous = state.commission
    rugs.observe_commission(state.commission_epochs, record.epoch, record.commission)
    if record.applied_commission is not None and record.applied_commission_epoch is not None:
        rugs.record_applied(state.commission_epochs, record.applied_commission_epoch, record.applied_commission)
    flagged = {epoch for epoch, _ in state.rugs}
    found = rugs.find_rugs(state.commission_epochs, record.epoch, flagged, config)
    for rug in found:
        state.rugs.append([rug.epoch, rug.increase_pp])
        events.append(CommissionEvent(record.vote_pubkey, rug.epoch, "rug", rug.baseline, rug.raised_to, rug.applied))
    kind = rugs.classify_change(previous, record.commission, config) if previous is not None else None
    if kind is not None and not (kind == "decrease" and found):  # a rug's revert is reported as the rug
        applied = state.commission_epochs[record.epoch][rugs.APPLIED]
        events.append(CommissionEvent(record.vote_pubkey, record.epoch, kind, previous, record.commission, applied))
    state.commission = record.commission
    keep = max(config.commission_window_epochs, config.rug_revert_epochs + 2)
    rugs.prune(state.commission_epochs, record.epoch, keep)
    horizon = record.epoch - config.repeat_rug_window_epochs
    state.rugs = sorted(r for r in state.rugs if r[0] > horizon)
    if state.repeat_offender_since is None and len(state.rugs) >= config.repeat_rug_count:
        state.repeat_offender_since = record.epoch
    return events


# --- explaining the score ---------------------------------------------------------------------------


def measure(
    state: ValidatorState, record: ValidatorRecord, ctx: ClusterContext, config: ScoringConfig
) -> list[Measurement]:
    return [
        comp.vote_performance(state, record, ctx, config),
        comp.availability(state, ctx, config),
        comp.block_production(state, ctx, config),
        comp.commission(state, record, config),
        comp.stake_concentration(record, ctx),
        comp.infrastructure_concentration(record, ctx, config),
        comp.software_version(record, ctx, config),
        comp.transparency(record, config),
        comp.track_record(state, record, ctx, config),
    ]


def effective_weights(measurements: list[Measurement], config: ScoringConfig) -> dict[str, float]:
    """Unknown infrastructure weight goes to stake concentration; other unknown weight is spread."""
    weight = config.weights.get
    weights = {m.name: weight(m.name, 0.0) for m in measurements}
    known = {m.name for m in measurements if m.known}
    if names.INFRA_CONCENTRATION not in known:
        weights[names.STAKE_CONCENTRATION] = weights.get(names.STAKE_CONCENTRATION, 0.0) + weights.get(
            names.INFRA_CONCENTRATION, 0.0
        )
        weights[names.INFRA_CONCENTRATION] = 0.0
    if len(known) < len(weights):
        for name in weights:
            if name not in known:
                weights[name] = 0.0
    return weights


def penalties(
    state: ValidatorState, record: ValidatorRecord, ctx: ClusterContext, config: ScoringConfig
) -> list[Penalty]:
    found = []
    if record.commission >= 100:
        found.append(
            Penalty(
                "private", "commission is 100%: private validator, delegators earn nothing", 1.0, record.epoch, None
            )
        )
    if record.delinquent:
        since = state.delinquent_since if state.delinquent_since is not None else record.epoch
        found.append(
            Penalty(
                "delinquent",
                "last vote is 128 or more slots behind the cluster tip",
                config.delinquent_factor,
                since,
                None,
            )
        )
    if comp.withdrawer_is_identity(record):
        found.append(
            Penalty(
                "withdrawer_is_identity",
                "vote account withdraw authority is the hot identity key",
                config.withdrawer_identity_factor,
                record.epoch,
                None,
            )
        )
    for epoch, increase in state.rugs:
        factor = rugs.rug_factor(increase, record.epoch - epoch, config)
        expires = rugs.rug_expiry_epoch(epoch, increase, config)
        if record.epoch < expires:
            found.append(
                Penalty(
                    "rug",
                    f"commission raised {increase} pp for epoch {epoch} rewards, then reverted",
                    factor,
                    epoch,
                    expires,
                )
            )
    if state.repeat_offender_since is not None:
        found.append(
            Penalty(
                "repeat_rugger",
                f"{config.repeat_rug_count}+ commission rugs within {config.repeat_rug_window_epochs} epochs",
                0.0,
                state.repeat_offender_since,
                None,
                cap=config.repeat_rug_cap,
            )
        )
    if comp.in_superminority(record, ctx):
        found.append(
            Penalty(
                "superminority",
                "in the superminority: stake already concentrated (marker, scored in stake_concentration)",
                0.0,
                record.epoch,
                None,
            )
        )
    return found


def explain(
    state: ValidatorState,
    record: ValidatorRecord,
    ctx: ClusterContext,
    config: ScoringConfig,
    events: tuple[CommissionEvent, ...],
    applied: bool,
) -> ScoreBreakdown:
    measurements = measure(state, record, ctx, config)
    weights = effective_weights(measurements, config)
    total = sum(weights.values())
    if total > 0:
        parts = tuple([Component(m, weights[m.name] / total, 100.0 * weights[m.name] / total * m.score)
                       for m in measurements])
    else:
        parts = tuple([Component(m, 0.0, 0.0) for m in measurements])
    base = sum([p.contribution for p in parts])
    found = penalties(state, record, ctx, config)
    score = base
    for penalty in found:
        score *= 1.0 - penalty.factor
    for penalty in found:
        if penalty.cap is not None:
            score = min(score, penalty.cap)
    confidence = sum([weights[m.name] * m.certainty for m in measurements if m.known])
    uptime = comp.availability_fraction(state)
    return ScoreBreakdown(
        vote_pubkey=record.vote_pubkey,
        epoch=record.epoch,
        score=min(100.0, max(0.0, score)),
        base_score=min(100.0, max(0.0, base)),
        confidence=min(1.0, max(0.0, confidence)),
        components=parts,
        penalties=tuple(found),
        events=events,
        superminority=comp.in_superminority(record, ctx),
        uptime=100.0 * (uptime if uptime is not None else 0.0 if record.delinquent else 1.0),
        scoring_version=config.version,
        applied=applied,
    )
