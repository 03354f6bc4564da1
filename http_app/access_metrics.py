"""Prometheus counters of the access-control layer (bounded labels only: policy names and reason codes)."""

from __future__ import annotations

from prometheus_client import Counter

RATE_LIMIT_REJECTIONS = Counter(
    "solstake_ratelimit_rejections_total", "Requests refused with 429", ["policy"]
)
RATE_LIMIT_UNAVAILABLE = Counter(
    "solstake_ratelimit_unavailable_total",
    "Requests the limiter could not check because Redis failed (outcome: fail_open or fail_closed)",
    ["policy", "outcome"],
)
AUTH_FAILURES = Counter("solstake_auth_failures_total", "Rejected tokens and sign-ins", ["reason"])
REVOCATION_UNCHECKED = Counter(
    "solstake_auth_revocation_unchecked_total", "Tokens accepted without a deny-list check (Redis down)"
)
SIGN_INS = Counter("solstake_auth_sign_ins_total", "Successful wallet sign-ins", ["first"])
