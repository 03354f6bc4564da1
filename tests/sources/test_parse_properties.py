"""Hypothesis properties of the parsers on generated RPC answers: what parses is exactly what was sent, and
any one corrupted entry fails alone, with a reason, without changing any other entry."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from stream_app.records import U64_MAX, RecordError
from stream_app.sources.parse import (
    STAKE_PROGRAM_ID,
    VALIDATOR_INFO_KEY,
    integer,
    parse_block_production,
    parse_epoch_credits,
    parse_inflation_rewards,
    parse_stake_account,
    parse_validator_info,
    parse_vote_accounts,
    stake_state,
)
from stream_app.sources.simulator.faults import corrupt

pubkeys = st.binary(min_size=32, max_size=32).map(lambda b: str(Pubkey(b)))


@st.composite
def epoch_credits(draw: st.DrawFn) -> list[list[int]]:
    start_epoch = draw(st.integers(0, 900))
    steps = draw(st.lists(st.integers(1, 3), max_size=8))  # gaps allowed
    earned = draw(st.lists(st.integers(0, 6_912_000), min_size=len(steps) + 1, max_size=len(steps) + 1))
    total = draw(st.integers(0, 10**9))
    epoch, out = start_epoch, []
    for i, amount in enumerate(earned):
        out.append([epoch, total + amount, total])
        total += amount
        if i < len(steps):
            epoch += steps[i]
    return out


@st.composite
def vote_entry(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "activatedStake": draw(st.integers(0, 2**63)),
        "commission": draw(st.integers(0, 100)),
        "epochCredits": draw(epoch_credits()),
        "epochVoteAccount": draw(st.booleans()),
        "lastVote": draw(st.integers(0, 2**40)),
        "nodePubkey": draw(pubkeys),
        "rootSlot": draw(st.one_of(st.none(), st.integers(0, 2**40))),
        "votePubkey": draw(pubkeys),
    }


vote_answers = st.builds(
    lambda c, d: {"current": c, "delinquent": d},
    st.lists(vote_entry(), max_size=12, unique_by=lambda e: e["votePubkey"]),
    st.lists(vote_entry(), max_size=4, unique_by=lambda e: e["votePubkey"]),
).filter(lambda a: len({e["votePubkey"] for e in a["current"] + a["delinquent"]})
         == len(a["current"]) + len(a["delinquent"]))

WRONG_VALUES: st.SearchStrategy[Any] = st.sampled_from([None, "12", 1.5, True, -1, [], {}, "not-a-key", 2**64])


@settings(max_examples=50)
@given(vote_answers)
def test_valid_vote_accounts_parse_to_exactly_what_was_sent(answer: dict[str, Any]) -> None:
    votes = parse_vote_accounts(answer)
    assert votes.failures == []
    sent = [(e, False) for e in answer["current"]] + [(e, True) for e in answer["delinquent"]]
    assert len(votes.accounts) == len(sent)
    for account, (entry, delinquent) in zip(votes.accounts, sent, strict=True):
        assert account.vote_pubkey == entry["votePubkey"]
        assert account.node_pubkey == entry["nodePubkey"]
        assert account.commission == entry["commission"]
        assert account.activated_stake == entry["activatedStake"]
        assert [list(e) for e in account.epoch_credits] == entry["epochCredits"]
        assert account.last_vote == entry["lastVote"] and account.root_slot == entry["rootSlot"]
        assert account.delinquent is delinquent


FIELDS = ["activatedStake", "commission", "epochCredits", "lastVote", "nodePubkey", "votePubkey"]


@settings(max_examples=60)
@given(vote_answers.filter(lambda a: a["current"]), st.data())
def test_one_corrupted_entry_fails_alone(answer: dict[str, Any], data: st.DataObject) -> None:
    victim = data.draw(st.integers(0, len(answer["current"]) - 1))
    name = data.draw(st.sampled_from(FIELDS))
    wrong = data.draw(WRONG_VALUES)
    if name == "epochCredits" and wrong == []:
        wrong = {}  # an empty history is valid
    entry = answer["current"][victim]
    if wrong is None and name != "votePubkey":
        del entry[name]
    else:
        entry[name] = wrong
    votes = parse_vote_accounts(answer)
    assert len(votes.failures) == 1
    assert len(votes.accounts) == len(answer["current"]) + len(answer["delinquent"]) - 1
    assert all(a.vote_pubkey != entry.get("votePubkey") or name == "votePubkey" for a in votes.accounts)
    assert votes.failures[0].reason


@given(epoch_credits(), st.data())
def test_sentinel_entries_are_removed_wherever_they_are(credits: list[list[int]], data: st.DataObject) -> None:
    expected = parse_epoch_credits(credits)
    at = data.draw(st.integers(0, len(credits)))
    credits.insert(at, [U64_MAX, U64_MAX, U64_MAX])
    assert parse_epoch_credits(credits) == expected


@given(epoch_credits().filter(lambda c: len(c) >= 2), st.data())
def test_out_of_order_or_decreasing_credits_are_rejected(credits: list[list[int]], data: st.DataObject) -> None:
    broken = [list(e) for e in credits]
    if data.draw(st.booleans()):
        broken[0], broken[1] = broken[1], broken[0]
    else:
        broken[-1][1] = broken[-1][2] - 1
        if broken[-1][1] < 0:
            broken[-1][2], broken[-1][1] = 5, 4
    try:
        parse_epoch_credits(broken)
    except RecordError:
        return
    raise AssertionError(f"accepted {broken}")


@given(st.one_of(st.booleans(), st.floats(allow_nan=True), st.text(max_size=5), st.none(),
                 st.integers(max_value=-1), st.integers(min_value=2**64)))
def test_integer_rejects_everything_but_u64(value: Any) -> None:
    try:
        integer(value, "x")
    except RecordError as exc:
        assert "x:" in str(exc)
        return
    raise AssertionError(f"accepted {value!r}")


@given(st.lists(st.tuples(pubkeys, st.integers(0, 5000), st.integers(0, 5000)), max_size=20,
                unique_by=lambda t: t[0]))
def test_block_production_keeps_good_rows_and_rejects_impossible_ones(rows: list[tuple[str, int, int]]) -> None:
    answer = {"context": {"slot": 10}, "value": {"byIdentity": {k: [a, b] for k, a, b in rows},
                                                 "range": {"firstSlot": 0, "lastSlot": 10}}}
    production, failures = parse_block_production(answer)
    assert set(production.by_identity) == {k for k, a, b in rows if b <= a}
    assert {f.key for f in failures} == {k for k, a, b in rows if b > a}


@given(st.lists(st.one_of(st.none(), st.tuples(st.integers(0, 10**12), st.integers(0, 100))), max_size=20),
       st.integers(0, 1000))
def test_inflation_rewards_align_with_addresses(rewards: list[tuple[int, int] | None], epoch: int) -> None:
    addresses = [str(Pubkey(bytes([i + 1] * 32))) for i in range(len(rewards))]
    answer = [None if r is None else {"amount": r[0], "commission": r[1], "effectiveSlot": 5, "epoch": epoch,
                                      "postBalance": r[0] + 1} for r in rewards]
    parsed, failures = parse_inflation_rewards(answer, addresses, epoch)
    assert failures == []
    assert {a: p.commission for a, p in parsed.items()} == {
        a: r[1] for a, r in zip(addresses, rewards, strict=True) if r is not None}
    try:
        parse_inflation_rewards([*answer, None], addresses, epoch)
    except RecordError:
        return
    raise AssertionError("a misaligned answer was accepted")


@given(pubkeys, pubkeys, pubkeys, st.integers(1, 10**15), st.integers(0, 900), st.integers(0, 900),
       st.one_of(st.none(), st.integers(0, 900)))
def test_stake_account_roundtrip(address: str, staker: str, vote: str, lamports: int, activation: int,
                                 epoch: int, deactivation: int | None) -> None:
    delegation = {"voter": vote, "stake": str(lamports), "activationEpoch": str(activation),
                  "deactivationEpoch": str(U64_MAX if deactivation is None else deactivation)}
    info = {"meta": {"authorized": {"staker": staker, "withdrawer": staker}}, "stake": {"delegation": delegation}}
    raw = {"pubkey": address, "account": {"owner": STAKE_PROGRAM_ID, "lamports": lamports,
                                          "data": {"parsed": {"type": "delegated", "info": info}}}}
    account = parse_stake_account(raw, epoch)
    assert (account.stake_pubkey, account.staker, account.vote_account) == (address, staker, vote)
    assert account.delegated_stake == lamports and account.deactivation_epoch == deactivation
    assert account.state == stake_state(activation, deactivation, epoch)


@given(pubkeys, pubkeys, st.text(max_size=40))
def test_validator_info_links_by_identity(address: str, identity: str, name: str) -> None:
    raw = {"pubkey": address, "account": {"data": {"parsed": {"type": "validatorInfo", "info": {
        "configData": {"name": name}, "keys": [{"pubkey": VALIDATOR_INFO_KEY, "signer": False},
                                               {"pubkey": identity, "signer": True}]}}}}}
    info = parse_validator_info(raw)
    assert info is not None and info.identity == identity and info.name == name


@settings(max_examples=30)
@given(vote_answers, st.sampled_from(["wrong_types", "missing_fields"]), st.integers(1, 5))
def test_simulator_corruption_is_always_caught(answer: dict[str, Any], kind: str, every: int) -> None:
    n = len(answer["current"]) + len(answer["delinquent"])
    votes = parse_vote_accounts(corrupt("getVoteAccounts", answer, kind, every))
    assert len(votes.failures) == math.ceil(n / every)
    assert len(votes.accounts) == n - len(votes.failures)
