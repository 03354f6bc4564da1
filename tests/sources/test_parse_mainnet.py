"""The parsers on every real mainnet response in shared/data: counts and values as recorded."""

from __future__ import annotations

import copy

import orjson
import pytest

from stream_app.records import U64_MAX, RecordError
from stream_app.sources.parse import (
    infos_by_identity,
    parse_cluster_nodes,
    parse_epoch_credits,
    parse_epoch_info,
    parse_jito_validators,
    parse_validator_infos,
    parse_vote_accounts,
)
from tests.conftest import SHARED_DATA
from tests.sources.conftest import (
    CONFIG_2021,
    E45_VOTES,
    E752_VOTES,
    EPOCH_INFO_2020,
    JITO_2025,
    NODES_2020,
    rpc_result,
)


def test_e752_vote_accounts_counts_and_stake() -> None:
    votes = parse_vote_accounts(rpc_result(E752_VOTES))
    assert votes.failures == []
    assert len(votes.current) == 1325
    assert len(votes.delinquent) == 26
    total = sum(a.activated_stake for a in votes.accounts)
    assert round(total / 1e9 / 1e6, 2) == 379.05  # README: 379.05 M SOL active
    assert all(len(a.epoch_credits) <= 5 for a in votes.accounts)
    # delinquency as agave defines it: no current account is 128+ slots behind the newest vote
    tip = max(a.last_vote for a in votes.current)
    assert all(a.last_vote > tip - 128 for a in votes.current)


def test_e752_first_account_values() -> None:
    raw = rpc_result(E752_VOTES)["current"][0]
    account = parse_vote_accounts(rpc_result(E752_VOTES)).accounts[0]
    assert account.vote_pubkey == raw["votePubkey"] == "6D9w8FRw5EFr5qtZEphPpughN3W8zc8p6zMXg4PFuaXL"
    assert account.node_pubkey == raw["nodePubkey"]
    assert account.activated_stake == 23489100127652
    assert account.epoch_credits[-1] == (752, 362072660, 358984678)
    assert account.last_vote == 325058116 and account.root_slot == 325058085
    assert not account.delinquent


def test_e45_full_history_and_gaps() -> None:
    votes = parse_vote_accounts(rpc_result(E45_VOTES))
    assert votes.failures == []
    assert (len(votes.current), len(votes.delinquent)) == (92, 6)
    assert max(len(a.epoch_credits) for a in votes.accounts) == 46
    gapped = {a.vote_pubkey: a for a in votes.accounts
              if any(b[0] - x[0] > 1 for x, b in zip(a.epoch_credits, a.epoch_credits[1:], strict=False))}
    assert len(gapped) == 3
    epochs = [e for e, _, _ in gapped["DEU9FLyWEMihJzWat5RzgftPRy9nrQhspSQHGh12wCxC"].epoch_credits]
    assert 29 not in epochs and 31 not in epochs and epochs[-1] == 45


def test_cluster_nodes_2020() -> None:
    nodes, failures = parse_cluster_nodes(rpc_result(NODES_2020))
    assert failures == []
    assert len(nodes) == 113
    node = nodes["ba1cUvbuGe7k2Um2YKmRnR7ZAy3sK9mQKJkMCGVhcov"]
    assert node.gossip_ip == "104.198.102.145" and node.version == "1.1.19 e651209f"


def test_epoch_info_2020() -> None:
    info = parse_epoch_info(rpc_result(EPOCH_INFO_2020))
    assert (info.epoch, info.slot_index, info.slots_in_epoch, info.absolute_slot) == (45, 124656, 432000, 19564656)
    assert info.first_slot == 19564656 - 124656


def test_config_dump_has_899_validator_infos() -> None:
    raw = rpc_result(CONFIG_2021)
    infos, failures = parse_validator_infos(raw)
    assert len(raw) == 904
    assert len(infos) == 899
    assert failures == []
    first = infos[0]
    assert first.identity == "2mamQVprQeke8cjMFEc4wcVcKMz9Z84P6VqYrQcgHCee"
    assert first.name == "davetheiguana" and first.keybase_username == "davetheiguana"
    assert len(infos_by_identity(infos)) == len({i.identity for i in infos})


def test_alpenglow_sentinel_is_filtered_on_a_real_entry() -> None:
    raw = copy.deepcopy(rpc_result(E752_VOTES)["current"][0]["epochCredits"])
    expected = parse_epoch_credits(raw)
    raw.insert(3, [U64_MAX, U64_MAX, U64_MAX])
    assert parse_epoch_credits(raw) == expected


def test_a_broken_entry_in_real_data_costs_only_that_validator() -> None:
    raw = copy.deepcopy(rpc_result(E752_VOTES))
    raw["current"][10]["commission"] = "5"
    raw["delinquent"][0]["epochCredits"][0][1] = -1
    votes = parse_vote_accounts(raw)
    assert len(votes.accounts) == 1351 - 2
    assert {f.key for f in votes.failures} == {raw["current"][10]["votePubkey"], raw["delinquent"][0]["votePubkey"]}
    assert all("commission" in f.reason or "epochCredits" in f.reason for f in votes.failures)


def test_shape_errors_are_clear() -> None:
    with pytest.raises(RecordError, match="missing field 'delinquent'"):
        parse_vote_accounts({"current": []})
    with pytest.raises(RecordError, match="expected an object"):
        parse_epoch_info([1, 2])


def test_jito_validator_list_2025() -> None:
    doc = orjson.loads((SHARED_DATA / JITO_2025).read_bytes())
    validators, failures = parse_jito_validators(doc)
    assert failures == [] and len(validators) == 909
    first = validators["F5xevmQHWX6ivnvsDRHUDtz98h5Wf9snpLhdErCp3i9t"]
    assert (first.mev_commission_bps, first.running_jito, first.active_stake) == (500, True, 259067030598712)
    doc["validators"][1]["mev_commission_bps"] = 10_001  # more than 100 %
    validators, failures = parse_jito_validators(doc)
    assert len(validators) == 908 and failures[0].key == "CogentC52e7kktFfWHwsqSmr8LiS1yAtfqhHcftCPcBJ"
