"""Weights, thresholds and the model version: every tunable number of the trust score lives here.

`SCORING_VERSION` is stored with every score. Change it whenever a default below changes meaning, so
historical scores stay interpretable next to new ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCORING_VERSION = "trust-v1.0"

# Component names: stable, they are the `name` keys clients see in the breakdown.
VOTE = "vote_performance"
AVAILABILITY = "availability"
BLOCK_PRODUCTION = "block_production"
COMMISSION = "commission"
STAKE_CONCENTRATION = "stake_concentration"
INFRA_CONCENTRATION = "infrastructure_concentration"
SOFTWARE = "software_version"
TRANSPARENCY = "transparency"
TRACK_RECORD = "track_record"

COMPONENTS = (
    VOTE,
    AVAILABILITY,
    BLOCK_PRODUCTION,
    COMMISSION,
    STAKE_CONCENTRATION,
    INFRA_CONCENTRATION,
    SOFTWARE,
    TRANSPARENCY,
    TRACK_RECORD,
)

DEFAULT_WEIGHTS: dict[str, float] = {
    VOTE: 0.30,
    AVAILABILITY: 0.15,
    BLOCK_PRODUCTION: 0.10,
    COMMISSION: 0.15,
    STAKE_CONCENTRATION: 0.07,
    INFRA_CONCENTRATION: 0.05,
    SOFTWARE: 0.05,
    TRANSPARENCY: 0.05,
    TRACK_RECORD: 0.08,
}

# Prior sub-scores used for smoothing when the cluster context does not provide one.
DEFAULT_PRIORS: dict[str, float] = {
    VOTE: 0.9,
    AVAILABILITY: 0.95,
}


class ConfigError(ValueError):
    """A scoring configuration value is out of range."""


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    priors: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PRIORS))
    version: str = SCORING_VERSION
    # Bayesian smoothing: a component with n epochs of evidence is (n*s + kappa*prior) / (n + kappa).
    kappa_epochs: float = 3.0

    # Vote performance: ratio r = credits / reference credits; sub-score clamp((r - floor) / span).
    vote_floor: float = 0.90
    vote_span: float = 0.095
    vote_half_life_epochs: float = 8.0
    max_gap_epochs: int = 10  # missing epochCredits entries inside the window count as zero credits

    # Availability: time-decayed share of polls not delinquent; sub-score clamp((U - floor) / (1 - floor)).
    availability_tau_seconds: float = 30 * 86_400.0
    availability_floor: float = 0.97
    first_poll_seconds: float = 3_600.0  # weight given to the very first observation
    slot_seconds: float = 0.4

    # Block production: smoothed skip = (skipped + k*c) / (leader + k), c = cluster skip rate.
    skip_prior_slots: float = 20.0
    skip_span: float = 0.10  # skip this far above the cluster scores 0
    skip_half_life_epochs: float = 8.0
    default_cluster_skip: float = 0.05

    # Commission: worst of polled and applied commission over a window, capped at commission_cap_pct.
    commission_cap_pct: float = 10.0
    commission_window_epochs: int = 10
    mev_cap_bps: float = 1_000.0
    mev_share: float = 0.25  # share of the commission component given to MEV commission when known

    # Decentralisation.
    infra_share_cap: float = 0.10  # an IP prefix holding this share of stake scores 0
    infra_prefix_bits: int = 16  # gossip IP prefix used as a proxy for hosting provider / data center
    infra_min_share_in_context: float = 0.001

    # Software: 1 at or above the 66%-of-stake version of the family, this when same major.minor, else 0.
    software_same_minor_score: float = 0.5
    software_stake_share: float = 0.66

    # Transparency and key hygiene.
    info_share: float = 0.6
    withdrawer_share: float = 0.4

    # Track record: min(1, ln(1 + A) / ln(1 + saturation)).
    age_saturation_epochs: float = 50.0

    # Penalties (multiplicative factors p: score *= 1 - p).
    delinquent_factor: float = 0.5
    withdrawer_identity_factor: float = 0.10
    rug_min_increase_pp: int = 2
    rug_revert_epochs: int = 2
    rug_base: float = 0.3
    rug_slope: float = 2.0  # per unit of increase (fraction): 5 pp -> +0.10
    rug_max: float = 0.8
    rug_half_life_epochs: float = 10.0
    rug_expiry_factor: float = 0.01  # a decayed rug penalty below this is dropped
    repeat_rug_count: int = 2
    repeat_rug_window_epochs: int = 100
    repeat_rug_cap: float = 20.0

    def __post_init__(self) -> None:
        problems = [f"unknown component weight {name!r}" for name in self.weights if name not in COMPONENTS]
        problems += [f"weight {n}={w} is negative" for n, w in self.weights.items() if w < 0]
        if abs(sum(self.weights.values()) - 1.0) > 1e-9:
            problems.append(f"weights sum to {sum(self.weights.values())}, expected 1")
        if self.kappa_epochs <= 0:
            problems.append("kappa_epochs must be positive")
        if not (self.vote_span > 0 and self.vote_floor < 1):
            problems.append("vote_floor must be < 1 and vote_span positive")
        if not 0 <= self.availability_floor < 1:
            problems.append("availability_floor must be in [0, 1)")
        if not 0 <= self.mev_share <= 1 or not 0 <= self.info_share <= 1:
            problems.append("mev_share and info_share must be in [0, 1]")
        if abs(self.info_share + self.withdrawer_share - 1.0) > 1e-9:
            problems.append("info_share + withdrawer_share must be 1")
        if not 0 < self.infra_prefix_bits <= 32:
            problems.append("infra_prefix_bits must be in 1..32")
        if problems:
            raise ConfigError("; ".join(problems))

    def weight(self, name: str) -> float:
        return self.weights.get(name, 0.0)

    def prior(self, name: str, cluster_priors: dict[str, float]) -> float:
        value = cluster_priors.get(name, self.priors.get(name, 1.0))
        return min(1.0, max(0.0, float(value)))


DEFAULT_CONFIG = ScoringConfig()
