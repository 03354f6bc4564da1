"""One pure function per score component: evidence in, `Measurement` (raw, reference, sub-score) out.

Sub-scores are continuous in [0, 1]. Components with history are smoothed toward the cluster prior:
s_hat = (n*s + kappa*prior) / (n + kappa), so a validator with little evidence sits near the cluster.
"""

from __future__ import annotations

import functools
import math

from stream_app.records import ClusterContext, ValidatorRecord
from stream_app.scoring import config as names
from stream_app.scoring.breakdown import Measurement
from stream_app.scoring.config import ScoringConfig
from stream_app.scoring.rugs import window_worst
from stream_app.scoring.state import ValidatorState

INFO_FIELDS = ("name", "website", "details", "icon_url")
TVC_MAX_CREDITS_PER_SLOT = 16  # timely vote credits (SIMD-0033): at most 16 credits per voted slot


def clamp01(value: float) -> float:
    return 0.0 if value <= 0 else 1.0 if value >= 1 else value


def smooth(score: float, n: float, prior: float, kappa: float) -> float:
    """Bayesian shrinkage of a sub-score with n units of evidence toward the prior."""
    return (n * score + kappa * prior) / (n + kappa)


def certainty(n: float, kappa: float) -> float:
    return n / (n + kappa)


def ewma_alpha(half_life: float) -> float:
    return 1.0 - 2.0 ** (-1.0 / half_life)


# --- vote performance -------------------------------------------------------------------------------


def vote_subscore(ratio: float, config: ScoringConfig) -> float:
    """Credits ratio against the cluster reference -> [0, 1]; 0 below the floor, 1 at floor + span."""
    return clamp01((ratio - config.vote_floor) / config.vote_span)


def current_epoch_ratio(record: ValidatorRecord, ctx: ClusterContext) -> float | None:
    """Credits earned so far this epoch against the cluster's reference so far (None if no reference)."""
    reference = ctx.reference_credits.get(str(record.epoch))
    if not reference or reference <= 0:
        return None
    earned = sum(c - p for e, c, p in record.epoch_credits if e == record.epoch)
    return max(0, earned) / reference


def vote_performance(
    state: ValidatorState, record: ValidatorRecord, ctx: ClusterContext, config: ScoringConfig
) -> Measurement:
    prior = config.prior(names.VOTE, ctx.priors)
    progress = clamp01(ctx.slot_index / ctx.slots_in_epoch) if ctx.slots_in_epoch > 0 else 0.0
    ratio_now = current_epoch_ratio(record, ctx)
    n = float(state.vote_n)
    score = state.vote_ewma
    if ratio_now is not None and progress > 0:
        x_now = vote_subscore(ratio_now, config)
        if state.vote_n == 0:
            score = x_now
        else:  # a partial EWMA step, weighted by how much of the epoch has passed; never committed
            score = state.vote_ewma + ewma_alpha(config.vote_half_life_epochs) * progress * (x_now - score)
        n += progress
    raw = state.vote_last_ratio if state.vote_last_ratio is not None else ratio_now
    ref_epoch = str(state.vote_epoch) if state.vote_epoch >= 0 else str(record.epoch)
    return Measurement(
        name=names.VOTE,
        raw=None if raw is None else round(raw, 6),
        reference=ctx.reference_credits.get(ref_epoch),
        score=smooth(score, n, prior, config.kappa_epochs) if n > 0 else prior,
        n=n,
        certainty=certainty(n, config.kappa_epochs),
        details={
            "ewma": round(state.vote_ewma, 6),
            "current_epoch_ratio": None if ratio_now is None else round(ratio_now, 6),
            "prior": round(prior, 6),
            # Absolute TVC view of the last finished epoch: share of the 16-credits-per-slot maximum.
            "tvc_share": tvc_share(record, state.vote_epoch, ctx.slots_in_epoch),
        },
    )


def tvc_share(record: ValidatorRecord, epoch: int, slots_in_epoch: int) -> float | None:
    earned = [c - p for e, c, p in record.epoch_credits if e == epoch]
    if not earned or slots_in_epoch <= 0:
        return None
    return round(max(0, earned[0]) / (TVC_MAX_CREDITS_PER_SLOT * slots_in_epoch), 6)


# --- availability -----------------------------------------------------------------------------------


def availability_fraction(state: ValidatorState) -> float | None:
    return state.avail_up / state.avail_seen if state.avail_seen > 0 else None


def availability(state: ValidatorState, ctx: ClusterContext, config: ScoringConfig) -> Measurement:
    prior = config.prior(names.AVAILABILITY, ctx.priors)
    uptime = availability_fraction(state)
    if uptime is None:
        return Measurement(names.AVAILABILITY, None, config.availability_floor, prior, 0.0, certainty=0.0)
    epoch_seconds = max(1.0, ctx.slots_in_epoch * config.slot_seconds)
    n = state.avail_seen * config.availability_tau_seconds / epoch_seconds  # observed time, in epochs
    raw_score = clamp01((uptime - config.availability_floor) / (1.0 - config.availability_floor))
    return Measurement(
        name=names.AVAILABILITY,
        raw=round(uptime, 6),
        reference=config.availability_floor,
        score=smooth(raw_score, n, prior, config.kappa_epochs),
        n=n,
        certainty=certainty(n, config.kappa_epochs),
        details={"prior": round(prior, 6)},
    )


# --- block production -------------------------------------------------------------------------------


def smoothed_skip_rate(leader: float, skipped: float, cluster_skip: float, prior_slots: float) -> float:
    return (skipped + prior_slots * cluster_skip) / (leader + prior_slots)


def block_production(state: ValidatorState, ctx: ClusterContext, config: ScoringConfig) -> Measurement:
    cluster = ctx.cluster_skip_rate if ctx.cluster_skip_rate is not None else config.default_cluster_skip
    if not state.block_known:
        return Measurement(names.BLOCK_PRODUCTION, None, round(cluster, 6), 0.0, 0.0, known=False, certainty=0)
    leader = state.leader_sum + state.epoch_leader_slots
    skipped = state.skipped_sum + state.epoch_skipped
    skip = smoothed_skip_rate(leader, skipped, cluster, config.skip_prior_slots)
    return Measurement(
        name=names.BLOCK_PRODUCTION,
        raw=round(skip, 6),
        reference=round(cluster, 6),
        score=clamp01(1.0 - max(0.0, skip - cluster) / config.skip_span),
        n=leader,
        certainty=certainty(leader, config.skip_prior_slots),
        details={"leader_slots": round(leader, 3), "skipped_slots": round(skipped, 3)},
    )


# --- commission -------------------------------------------------------------------------------------


def commission_subscore(commission_pct: float, mev_bps: float | None, config: ScoringConfig) -> float:
    inflation = 1.0 - min(max(commission_pct, 0.0), config.commission_cap_pct) / config.commission_cap_pct
    if mev_bps is None:
        return inflation
    mev = 1.0 - min(max(mev_bps, 0.0), config.mev_cap_bps) / config.mev_cap_bps
    return (1.0 - config.mev_share) * inflation + config.mev_share * mev


def commission(state: ValidatorState, record: ValidatorRecord, config: ScoringConfig) -> Measurement:
    worst = window_worst(state.commission_epochs, record.epoch, config.commission_window_epochs)
    used = max(record.commission, worst) if worst is not None else record.commission
    return Measurement(
        name=names.COMMISSION,
        raw=used,
        reference=config.commission_cap_pct,
        score=commission_subscore(used, record.mev_commission_bps, config),
        n=float(len(state.commission_epochs)),
        details={
            "current": record.commission,
            "window_epochs": config.commission_window_epochs,
            "mev_commission_bps": record.mev_commission_bps,
        },
    )


# --- decentralisation -------------------------------------------------------------------------------


def in_superminority(record: ValidatorRecord, ctx: ClusterContext) -> bool:
    return ctx.superminority_min_stake > 0 and record.activated_stake >= ctx.superminority_min_stake


def stake_concentration(record: ValidatorRecord, ctx: ClusterContext) -> Measurement:
    member = in_superminority(record, ctx)
    threshold = ctx.superminority_min_stake
    # Members score 0; below the threshold the score falls linearly as stake approaches it.
    score = 0.0 if member else 1.0 if threshold <= 0 else clamp01(1.0 - record.activated_stake / threshold)
    share = record.activated_stake / ctx.total_active_stake if ctx.total_active_stake > 0 else 0.0
    return Measurement(
        name=names.STAKE_CONCENTRATION,
        raw=record.activated_stake,
        reference=threshold,
        score=score,
        n=1.0,
        details={"superminority": member, "stake_share": round(share, 8)},
    )


@functools.lru_cache(maxsize=8192)
def ip_prefix(ip: str | None, bits: int) -> str | None:
    """ "a.b.0.0/16" for an IPv4 gossip address, with or without ":port" (None when absent or not IPv4)."""
    if not ip:
        return None
    host = ip.rsplit(":", 1)[0] if ip.count(":") == 1 else ip
    octets = host.split(".")
    if len(octets) != 4 or not all(o.isdigit() and len(o) <= 3 for o in octets):
        return None
    value = 0
    for octet in octets:
        number = int(octet)
        if number > 255:
            return None
        value = value << 8 | number
    network = value & (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
    return ".".join(str(network >> shift & 0xFF) for shift in (24, 16, 8, 0)) + f"/{bits}"


def infrastructure_concentration(record: ValidatorRecord, ctx: ClusterContext, config: ScoringConfig) -> Measurement:
    prefix = ip_prefix(record.gossip_ip, config.infra_prefix_bits)
    if prefix is None or not ctx.infra_stake_share:
        return Measurement(names.INFRA_CONCENTRATION, None, config.infra_share_cap, 0.0, 0.0, known=False)
    share = ctx.infra_stake_share.get(prefix, 0.0)  # prefixes below the context's floor are negligible
    return Measurement(
        name=names.INFRA_CONCENTRATION,
        raw=round(share, 6),
        reference=config.infra_share_cap,
        score=clamp01(1.0 - share / config.infra_share_cap),
        n=1.0,
        details={"prefix": prefix},
    )


# --- software version -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def parse_version(version: str | None) -> tuple[int, ...] | None:
    """(major, minor, patch) of "2.1.14" or "0.403.20113"; None for an absent or unparseable version."""
    if not version:
        return None
    parts = []
    for piece in version.strip().split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece else ""
        if not digits or not piece[0].isdigit():
            break
        parts.append(int(digits))
    return tuple(parts) if parts else None


def client_family(version: str | None) -> str | None:
    """Firedancer/Frankendancer report 0.x versions; Agave and Jito-Solana report >= 1.x."""
    parsed = parse_version(version)
    if parsed is None:
        return None
    return "firedancer" if parsed[0] == 0 else "agave"


def software_version(record: ValidatorRecord, ctx: ClusterContext, config: ScoringConfig) -> Measurement:
    family = client_family(record.version)
    mine = parse_version(record.version)
    target = ctx.consensus_versions.get(family) if family else None
    wanted = parse_version(target)
    if mine is None or wanted is None:
        return Measurement(names.SOFTWARE, record.version, target, 0.0, 0.0, known=False)
    if mine >= wanted:
        score = 1.0
    elif mine[:2] == wanted[:2]:
        score = config.software_same_minor_score
    else:
        score = 0.0
    return Measurement(names.SOFTWARE, record.version, target, score, 1.0, details={"family": family})


# --- transparency and key hygiene -------------------------------------------------------------------


def withdrawer_is_identity(record: ValidatorRecord) -> bool:
    return record.authorized_withdrawer is not None and record.authorized_withdrawer == record.identity_pubkey


def transparency(record: ValidatorRecord, config: ScoringConfig) -> Measurement:
    published = [f for f in INFO_FIELDS if (getattr(record, f) or "").strip()]
    if not published and record.authorized_withdrawer is None:
        # Nothing fetched from the Config program nor the vote account: unknown, not "bad".
        return Measurement(names.TRANSPARENCY, None, len(INFO_FIELDS), 0.0, 0.0, known=False)
    hygiene = 0.0 if withdrawer_is_identity(record) or record.authorized_withdrawer is None else 1.0
    info = len(published) / len(INFO_FIELDS)
    return Measurement(
        name=names.TRANSPARENCY,
        raw=len(published),
        reference=len(INFO_FIELDS),
        score=config.info_share * info + config.withdrawer_share * hygiene,
        n=1.0,
        details={
            "published": published,
            "withdrawer_is_identity": withdrawer_is_identity(record),
            "withdrawer_known": record.authorized_withdrawer is not None,
        },
    )


# --- track record -----------------------------------------------------------------------------------


def lifetime_epochs(record: ValidatorRecord, ctx: ClusterContext) -> float:
    """Lifetime credits expressed in reference epochs: a lower bound on age beyond the RPC's 5 entries.

    Pre-TVC epochs earned about 1/16 of today's credits, so this undercounts old validators; it only
    ever raises the age counted from observed epochs, never replaces it.
    """
    finished = [(e, c) for e, c, _ in record.epoch_credits if e < record.epoch]
    if not finished:
        return 0.0
    epoch, lifetime = max(finished)
    reference = ctx.reference_credits.get(str(epoch))
    return lifetime / reference if reference and reference > 0 else 0.0


def age_subscore(age_epochs: float, config: ScoringConfig) -> float:
    return clamp01(math.log1p(max(0.0, age_epochs)) / math.log1p(config.age_saturation_epochs))


def track_record(
    state: ValidatorState, record: ValidatorRecord, ctx: ClusterContext, config: ScoringConfig
) -> Measurement:
    age = max(float(state.credited_epochs), lifetime_epochs(record, ctx))
    return Measurement(
        name=names.TRACK_RECORD,
        raw=round(age, 3),
        reference=config.age_saturation_epochs,
        score=age_subscore(age, config),
        n=1.0,
        details={"credited_epochs_observed": state.credited_epochs},
    )
