"""Explainable, incremental validator trust scoring (pure Python, no I/O). See README.md."""

from stream_app.scoring.breakdown import CommissionEvent, Component, Measurement, Penalty, ScoreBreakdown
from stream_app.scoring.config import DEFAULT_CONFIG, SCORING_VERSION, ConfigError, ScoringConfig
from stream_app.scoring.context import build_cluster_context
from stream_app.scoring.model import update
from stream_app.scoring.state import ValidatorState, state_from_dict, state_to_dict

__all__ = [
    "DEFAULT_CONFIG",
    "SCORING_VERSION",
    "CommissionEvent",
    "Component",
    "ConfigError",
    "Measurement",
    "Penalty",
    "ScoreBreakdown",
    "ScoringConfig",
    "ValidatorState",
    "build_cluster_context",
    "state_from_dict",
    "state_to_dict",
    "update",
]
