"""Commission tracking per epoch and detection of rugs, hikes and other commission changes (pure).

A rug: the commission applied for epoch E (getInflationReward, or the last polled value of E when the
reward is not known yet) is >= `rug_min_increase_pp` above the baseline (the lower of the last value of
E-1 and the lowest value seen in E), and within `rug_revert_epochs` epochs it falls back by at least half
of the increase. A raise that is not reverted is a hike: no penalty, but the commission component uses
the worst value of its window, and an event is raised when it is first seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stream_app.scoring.config import ScoringConfig
from stream_app.scoring.state import APPLIED, FIRST, LAST, MAX, MIN, CommissionEpoch

EVENT_KINDS = ("rug", "hike", "decrease", "change")


@dataclass(frozen=True, slots=True)
class RugFinding:
    epoch: int  # the epoch whose rewards were paid at the raised commission
    baseline: int
    raised_to: int
    applied: int | None

    @property
    def increase_pp(self) -> int:
        return self.raised_to - self.baseline


def observe_commission(epochs: dict[int, CommissionEpoch], epoch: int, commission: int) -> None:
    """Fold one polled commission into the epoch's [first, last, min, max, applied] (in place)."""
    entry = epochs.get(epoch)
    if entry is None:
        epochs[epoch] = [commission, commission, commission, commission, None]
        return
    low, high = entry[MIN], entry[MAX]
    entry[LAST] = commission
    entry[MIN] = commission if low is None else min(low, commission)
    entry[MAX] = commission if high is None else max(high, commission)
    if entry[FIRST] is None:
        entry[FIRST] = commission


def record_applied(epochs: dict[int, CommissionEpoch], epoch: int, applied: int) -> None:
    """Store the commission getInflationReward says was applied for `epoch` (in place)."""
    entry = epochs.setdefault(epoch, [None, None, None, None, None])
    entry[APPLIED] = applied


def prune(epochs: dict[int, CommissionEpoch], current_epoch: int, keep: int) -> None:
    for epoch in [e for e in epochs if e <= current_epoch - keep]:
        del epochs[epoch]


def window_worst(epochs: dict[int, CommissionEpoch], current_epoch: int, window: int) -> int | None:
    """Highest commission polled or applied over the last `window` epochs (current included)."""
    values = [
        v
        for e, entry in epochs.items()
        if current_epoch - window < e <= current_epoch
        for v in (entry[MAX], entry[APPLIED])
        if v is not None
    ]
    return max(values) if values else None


def effective(entry: CommissionEpoch) -> int | None:
    return entry[APPLIED] if entry[APPLIED] is not None else entry[LAST]


def find_rugs(
    epochs: dict[int, CommissionEpoch],
    current_epoch: int,
    flagged: set[int],
    config: ScoringConfig,
) -> list[RugFinding]:
    """Finished epochs, not flagged yet, whose raised commission was reverted within the window."""
    findings = []
    for epoch in sorted(epochs):
        if epoch >= current_epoch or epoch in flagged:
            continue
        if epoch < current_epoch - config.rug_revert_epochs - 1:
            continue
        entry = epochs[epoch]
        paid = effective(entry)
        if paid is None:
            continue
        before = epochs.get(epoch - 1)
        candidates = [entry[MIN]] + ([before[LAST]] if before else [])
        known = [c for c in candidates if c is not None]
        if not known:
            continue
        baseline = min(known)
        increase = paid - baseline
        if increase < config.rug_min_increase_pp:
            continue
        after = [
            epochs[e][MIN]
            for e in range(epoch + 1, epoch + config.rug_revert_epochs + 1)
            if e in epochs and epochs[e][MIN] is not None
        ]
        if after and min(v for v in after if v is not None) <= paid - increase / 2:
            findings.append(RugFinding(epoch, baseline, paid, entry[APPLIED]))
    return findings


def classify_change(old: int, new: int, config: ScoringConfig) -> str | None:
    """The event kind for a polled change of commission, or None when it did not change."""
    if new == old:
        return None
    if new < old:
        return "decrease"
    return "hike" if new - old >= config.rug_min_increase_pp else "change"


def rug_initial_factor(increase_pp: int, config: ScoringConfig) -> float:
    return min(config.rug_max, config.rug_base + config.rug_slope * increase_pp / 100)


def rug_factor(increase_pp: int, epochs_since: int, config: ScoringConfig) -> float:
    """The rug penalty after `epochs_since` epochs of exponential decay."""
    decay = 2.0 ** (-max(0, epochs_since) / config.rug_half_life_epochs)
    return rug_initial_factor(increase_pp, config) * decay


def rug_expiry_epoch(rug_epoch: int, increase_pp: int, config: ScoringConfig) -> int:
    """First epoch at which the decayed penalty is below `rug_expiry_factor` (and is dropped)."""
    start = rug_initial_factor(increase_pp, config)
    if start <= config.rug_expiry_factor:
        return rug_epoch
    epochs = config.rug_half_life_epochs * math.log2(start / config.rug_expiry_factor)
    return rug_epoch + math.floor(epochs) + 1
