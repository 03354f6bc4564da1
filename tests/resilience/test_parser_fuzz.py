"""Property-based fuzzing of the RPC parsers with malformed JSON: any JSON value at all (nested objects built
from the field names the parsers read, so the fuzz reaches deep into them, plus wrong types, huge and
negative numbers, NUL bytes) given to every top-level parser. A parser either returns values it validated,
or raises RecordError naming the problem; never any other exception. A valid answer with one value
replaced anywhere gives the same two outcomes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.records import RecordError
from stream_app.sources import parse

FIELDS = ["absoluteSlot", "account", "activatedStake", "activationEpoch", "amount", "authorized",
          "authorizedWithdrawer", "blockHeight", "byIdentity", "commission", "configData", "current", "data",
          "deactivationEpoch", "delegation", "delinquent", "details", "effectiveSlot", "epoch", "epochCredits",
          "epochVoteAccount", "firstSlot", "gossip", "iconUrl", "info", "keys", "lamports", "lastSlot", "lastVote",
          "meta", "mev_commission_bps", "name", "nodePubkey", "owner", "parsed", "postBalance", "pubkey", "range",
          "rootSlot", "running_jito", "slotIndex", "slotsInEpoch", "stake", "staker", "transactionCount", "type",
          "value", "validators", "version", "votePubkey", "vote_account", "voter", "website", "withdrawer",
          "signer", "active_stake"]
PUBKEY = "Vote111111111111111111111111111111111111111"

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.text(max_size=20), st.sampled_from([PUBKEY, "", "\x00", "1" * 44, "-1", "1e400", "nan"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), children, max_size=6),
    ),
    max_leaves=40,
)

PARSERS: dict[str, Callable[[Any], object]] = {
    "epoch_info": parse.parse_epoch_info,
    "epoch_credits": parse.parse_epoch_credits,
    "vote_accounts": parse.parse_vote_accounts,
    "vote_account": lambda v: parse.parse_vote_account(v, False),
    "cluster_nodes": parse.parse_cluster_nodes,
    "block_production": parse.parse_block_production,
    "validator_infos": parse.parse_validator_infos,
    "vote_withdrawers": lambda v: parse.parse_vote_withdrawers(v, [PUBKEY]),
    "inflation_rewards": lambda v: parse.parse_inflation_rewards(v, [PUBKEY], 752),
    "stake_accounts": lambda v: parse.parse_stake_accounts(v, 752),
    "jito_validators": parse.parse_jito_validators,
}

fuzz = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(PARSERS))
@fuzz
@given(value=json_values)
def test_any_json_is_parsed_or_refused_with_a_record_error(name: str, value: Any) -> None:
    try:
        PARSERS[name](value)
    except RecordError as exc:
        assert str(exc)  # refused, with a reason


def _replace_somewhere(doc: Any, path: list[int], new: Any) -> Any:
    """`doc` with one nested value (chosen by `path` indices) replaced by `new`."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return new
    if isinstance(doc, dict):
        key = sorted(doc)[path[0] % len(doc)]
        return {**doc, key: _replace_somewhere(doc[key], path[1:], new)}
    i = path[0] % len(doc)
    return [*doc[:i], _replace_somewhere(doc[i], path[1:], new), *doc[i + 1:]]


VALID_VOTES = {
    "current": [{"votePubkey": PUBKEY, "nodePubkey": "Node111111111111111111111111111111111111111",
                 "activatedStake": 10**12, "commission": 5, "epochVoteAccount": True,
                 "epochCredits": [[751, 6_000_000, 100], [752, 6_100_000, 6_000_000]], "lastVote": 324_864_000,
                 "rootSlot": 324_863_968}],
    "delinquent": [],
}


@fuzz
@given(path=st.lists(st.integers(0, 10), max_size=5), new=json_values)
def test_a_valid_vote_answer_with_one_value_replaced_never_crashes_the_parser(path: list[int], new: Any) -> None:
    try:
        result = parse.parse_vote_accounts(_replace_somewhere(VALID_VOTES, path, new))
    except RecordError:
        return
    for account in [*result.current, *result.delinquent]:  # whatever was accepted is well-typed
        assert isinstance(account.activated_stake, int) and 0 <= account.activated_stake < 2**64
        assert isinstance(account.commission, int) and 0 <= account.commission <= 100
