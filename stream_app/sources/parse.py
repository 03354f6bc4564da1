"""Pure parsers: Solana JSON-RPC results (already decoded JSON) → typed values. No I/O.

Every field is checked. A response whose overall shape is wrong raises `RecordError`; a single bad entry in a
list (one vote account, one cluster node ...) becomes a `ParseFailure` for that entry while the others parse,
so one malformed validator can never sink, or silently skew, a whole run. Pubkeys are validated with solders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard, TypeVar

from solders.pubkey import Pubkey

from stream_app.records import U64_MAX, RecordError

VALIDATOR_INFO_KEY = "Va1idator1nfo111111111111111111111111111111"
VOTE_PROGRAM_ID = "Vote111111111111111111111111111111111111111"
STAKE_PROGRAM_ID = "Stake11111111111111111111111111111111111111"
CONFIG_PROGRAM_ID = "Config1111111111111111111111111111111111111"
MAX_COMMISSION = 100

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ParseFailure:
    """One list entry that could not be used, with the key we could still read (if any) and why."""

    what: str  # "vote_account", "cluster_node", ...
    key: str | None  # vote pubkey / identity when readable
    reason: str


# --------------------------------------------------------------------------------------------- primitives


def pubkey(value: Any, what: str) -> str:
    """A base58 pubkey string, validated by solders (32 bytes), returned in canonical form."""
    if not isinstance(value, str):
        raise RecordError(f"{what}: expected a base58 pubkey string, got {type(value).__name__}")
    try:
        Pubkey.from_string(value)
    except ValueError as exc:
        raise RecordError(f"{what}: invalid pubkey {value[:60]!r}: {exc}") from None
    return value  # base58 of 32 bytes has one spelling: what decoded is already canonical


def integer(value: Any, what: str, *, minimum: int = 0, maximum: int = U64_MAX) -> int:
    """A JSON integer in range. Booleans and floats are rejected (JSON `true` is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"{what}: expected an integer, got {type(value).__name__} {_short(value)}")
    if not minimum <= value <= maximum:
        raise RecordError(f"{what}: {value} is outside {minimum}..{maximum}")
    return value


def u64_string(value: Any, what: str) -> int:
    """jsonParsed account data encodes u64 as decimal strings; accept those (and plain integers)."""
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        return integer(int(value), what)
    return integer(value, what)


def optional_str(value: Any, what: str, *, max_len: int = 4096) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(f"{what}: expected a string, got {type(value).__name__}")
    return value[:max_len]


def obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(f"{what}: expected an object, got {type(value).__name__} {_short(value)}")
    return value


def array(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise RecordError(f"{what}: expected an array, got {type(value).__name__} {_short(value)}")
    return value


def require(mapping: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in mapping:
        raise RecordError(f"{what}: missing field {key!r}")
    return mapping[key]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _each(
    items: Iterable[Any], what: str, parse_one: Callable[[Any], T], key_of: Callable[[Any], str | None]
) -> tuple[list[T], list[ParseFailure]]:
    good: list[T] = []
    bad: list[ParseFailure] = []
    for item in items:
        try:
            good.append(parse_one(item))
        except RecordError as exc:
            bad.append(ParseFailure(what, key_of(item), str(exc)))
    return good, bad


def _key_field(name: str) -> Callable[[Any], str | None]:
    def key_of(item: Any) -> str | None:
        value = item.get(name) if isinstance(item, dict) else None
        return value[:64] if isinstance(value, str) else None

    return key_of


# --------------------------------------------------------------------------------------------- epochs


@dataclass(frozen=True, slots=True)
class EpochInfo:
    epoch: int
    slot_index: int
    slots_in_epoch: int
    absolute_slot: int
    block_height: int | None = None
    transaction_count: int | None = None

    @property
    def first_slot(self) -> int:
        return self.absolute_slot - self.slot_index


def parse_epoch_info(result: Any) -> EpochInfo:
    data = obj(result, "getEpochInfo")
    info = EpochInfo(
        epoch=integer(require(data, "epoch", "getEpochInfo"), "getEpochInfo.epoch"),
        slot_index=integer(require(data, "slotIndex", "getEpochInfo"), "getEpochInfo.slotIndex"),
        slots_in_epoch=integer(require(data, "slotsInEpoch", "getEpochInfo"), "getEpochInfo.slotsInEpoch",
                               minimum=1),
        absolute_slot=integer(require(data, "absoluteSlot", "getEpochInfo"), "getEpochInfo.absoluteSlot"),
        block_height=None if data.get("blockHeight") is None
        else integer(data["blockHeight"], "getEpochInfo.blockHeight"),
        transaction_count=None if data.get("transactionCount") is None
        else integer(data["transactionCount"], "getEpochInfo.transactionCount"),
    )
    if info.slot_index >= info.slots_in_epoch:
        raise RecordError(f"getEpochInfo: slotIndex {info.slot_index} >= slotsInEpoch {info.slots_in_epoch}")
    if info.slot_index > info.absolute_slot:
        raise RecordError("getEpochInfo: slotIndex is larger than absoluteSlot")
    return info


def parse_epoch_credits(raw: Any, what: str = "epochCredits") -> tuple[tuple[int, int, int], ...]:
    """`[[epoch, credits, previousCredits], ...]` → tuples, Alpenglow u64::MAX sentinel entries removed.

    Checks what a reader would otherwise get silently wrong: credits never below previousCredits, epochs
    strictly increasing (gaps allowed: epochs without credits have no entry).
    """
    entries = array(raw, what)
    out: list[tuple[int, int, int]] = []
    for i, entry in enumerate(entries):
        # fast path for the common, well-formed entry (type(...) is int also rejects booleans)
        if type(entry) is list and len(entry) == 3:
            epoch, credits, previous = entry
            if (type(epoch) is int and type(credits) is int and type(previous) is int
                    and 0 <= previous <= credits < U64_MAX and 0 <= epoch < U64_MAX
                    and (not out or epoch > out[-1][0])):
                out.append((epoch, credits, previous))
                continue
        row = array(entry, f"{what}[{i}]")
        if len(row) != 3:
            raise RecordError(f"{what}[{i}]: expected [epoch, credits, previousCredits], got {len(row)} items")
        epoch, credits, previous = (integer(v, f"{what}[{i}]") for v in row)
        if U64_MAX in (epoch, credits, previous):
            continue  # Alpenglow separator between pre- and post-Alpenglow credits
        if credits < previous:
            raise RecordError(f"{what}[{i}]: credits {credits} < previousCredits {previous} in epoch {epoch}")
        if out and epoch <= out[-1][0]:
            raise RecordError(f"{what}[{i}]: epoch {epoch} does not follow epoch {out[-1][0]}")
        out.append((epoch, credits, previous))
    return tuple(out)


# --------------------------------------------------------------------------------------------- vote accounts


@dataclass(frozen=True, slots=True)
class VoteAccount:
    vote_pubkey: str
    node_pubkey: str
    commission: int
    activated_stake: int
    epoch_credits: tuple[tuple[int, int, int], ...]
    last_vote: int
    root_slot: int | None
    epoch_vote_account: bool
    delinquent: bool


@dataclass(frozen=True, slots=True)
class VoteAccounts:
    accounts: list[VoteAccount]
    failures: list[ParseFailure] = field(default_factory=list)

    @property
    def current(self) -> list[VoteAccount]:
        return [a for a in self.accounts if not a.delinquent]

    @property
    def delinquent(self) -> list[VoteAccount]:
        return [a for a in self.accounts if a.delinquent]


def _u64(value: Any) -> TypeGuard[int]:
    return type(value) is int and 0 <= value <= U64_MAX  # type() is int: booleans are not counts


def parse_vote_account(item: Any, delinquent: bool) -> VoteAccount:
    """One getVoteAccounts entry. Well-formed entries take a fast path; anything else gets the checks below,
    which name the first problem."""
    if type(item) is dict:
        vote, node = item.get("votePubkey"), item.get("nodePubkey")
        commission, stake = item.get("commission"), item.get("activatedStake")
        last, root = item.get("lastVote"), item.get("rootSlot")
        epoch_vote = item.get("epochVoteAccount", True)
        if (type(vote) is str and type(node) is str and type(commission) is int and 0 <= commission <= MAX_COMMISSION
                and _u64(stake) and _u64(last) and (root is None or _u64(root)) and type(epoch_vote) is bool
                and "epochCredits" in item):
            try:
                Pubkey.from_string(vote)
                Pubkey.from_string(node)
            except ValueError:
                pass  # the slow path reports which one
            else:
                return VoteAccount(vote, node, commission, stake,
                                   parse_epoch_credits(item["epochCredits"], f"vote account {vote}: epochCredits"),
                                   last, root, epoch_vote, delinquent)
    data = obj(item, "vote account")
    vote = pubkey(require(data, "votePubkey", "vote account"), "votePubkey")
    where = f"vote account {vote}"
    root = data.get("rootSlot")
    epoch_vote = data.get("epochVoteAccount", True)
    if not isinstance(epoch_vote, bool):
        raise RecordError(f"{where}: epochVoteAccount must be a boolean")
    return VoteAccount(
        vote_pubkey=vote,
        node_pubkey=pubkey(require(data, "nodePubkey", where), f"{where}: nodePubkey"),
        commission=integer(require(data, "commission", where), f"{where}: commission", maximum=MAX_COMMISSION),
        activated_stake=integer(require(data, "activatedStake", where), f"{where}: activatedStake"),
        epoch_credits=parse_epoch_credits(require(data, "epochCredits", where), f"{where}: epochCredits"),
        last_vote=integer(require(data, "lastVote", where), f"{where}: lastVote"),
        root_slot=None if root is None else integer(root, f"{where}: rootSlot"),
        epoch_vote_account=epoch_vote,
        delinquent=delinquent,
    )


def _vote_parser(delinquent: bool) -> Callable[[Any], VoteAccount]:
    return lambda item: parse_vote_account(item, delinquent)


def parse_vote_accounts(result: Any) -> VoteAccounts:
    """getVoteAccounts → every vote account (current and delinquent), bad entries as failures.

    A vote pubkey listed twice is a failure for the second occurrence, not a double count.
    """
    data = obj(result, "getVoteAccounts")
    accounts: list[VoteAccount] = []
    failures: list[ParseFailure] = []
    seen: set[str] = set()
    for section, delinquent in (("current", False), ("delinquent", True)):
        entries = array(require(data, section, "getVoteAccounts"), f"getVoteAccounts.{section}")
        good, bad = _each(entries, "vote_account", _vote_parser(delinquent), _key_field("votePubkey"))
        failures.extend(bad)
        for account in good:
            if account.vote_pubkey in seen:
                failures.append(ParseFailure("vote_account", account.vote_pubkey, "listed more than once"))
                continue
            seen.add(account.vote_pubkey)
            accounts.append(account)
    return VoteAccounts(accounts, failures)


# --------------------------------------------------------------------------------------------- cluster nodes


@dataclass(frozen=True, slots=True)
class ClusterNode:
    identity: str
    gossip_ip: str | None
    version: str | None


def _host_of(address: str | None) -> str | None:
    if address is None:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise RecordError(f"gossip: expected host:port, got {address[:60]!r}")
    return host.strip("[]")


def parse_cluster_node(item: Any) -> ClusterNode:
    data = obj(item, "cluster node")
    identity = pubkey(require(data, "pubkey", "cluster node"), "cluster node pubkey")
    where = f"cluster node {identity}"
    return ClusterNode(
        identity=identity,
        gossip_ip=_host_of(optional_str(data.get("gossip"), f"{where}: gossip", max_len=80)),
        version=optional_str(data.get("version"), f"{where}: version", max_len=64),
    )


def parse_cluster_nodes(result: Any) -> tuple[dict[str, ClusterNode], list[ParseFailure]]:
    good, bad = _each(array(result, "getClusterNodes"), "cluster_node", parse_cluster_node, _key_field("pubkey"))
    return {node.identity: node for node in good}, bad


# --------------------------------------------------------------------------------------------- block production


@dataclass(frozen=True, slots=True)
class BlockProduction:
    by_identity: dict[str, tuple[int, int]]  # identity -> (leader slots, blocks produced)
    first_slot: int
    last_slot: int


def parse_block_production(result: Any) -> tuple[BlockProduction, list[ParseFailure]]:
    data = obj(result, "getBlockProduction")
    value = obj(require(data, "value", "getBlockProduction"), "getBlockProduction.value")
    by_identity_raw = obj(require(value, "byIdentity", "getBlockProduction.value"), "byIdentity")
    span = obj(require(value, "range", "getBlockProduction.value"), "getBlockProduction.range")
    first = integer(require(span, "firstSlot", "range"), "range.firstSlot")
    last = integer(require(span, "lastSlot", "range"), "range.lastSlot")
    if last < first:
        raise RecordError(f"getBlockProduction: lastSlot {last} < firstSlot {first}")
    by_identity: dict[str, tuple[int, int]] = {}
    failures: list[ParseFailure] = []
    for key, pair in by_identity_raw.items():
        try:
            identity = pubkey(key, "byIdentity key")
            row = array(pair, f"byIdentity {identity}")
            if len(row) != 2:
                raise RecordError(f"byIdentity {identity}: expected [leaderSlots, blocksProduced]")
            leader = integer(row[0], f"byIdentity {identity}: leaderSlots")
            produced = integer(row[1], f"byIdentity {identity}: blocksProduced")
            if produced > leader:
                raise RecordError(f"byIdentity {identity}: {produced} blocks produced in {leader} leader slots")
            by_identity[identity] = (leader, produced)
        except RecordError as exc:
            failures.append(ParseFailure("block_production", key[:64], str(exc)))
    return BlockProduction(by_identity, first, last), failures


# --------------------------------------------------------------------------------------------- validator info


@dataclass(frozen=True, slots=True)
class ValidatorInfo:
    info_account: str
    identity: str
    name: str | None
    website: str | None
    details: str | None
    icon_url: str | None
    keybase_username: str | None


def parse_validator_info(item: Any) -> ValidatorInfo | None:
    """One Config-program account (jsonParsed). None when it is another kind of config account."""
    data = obj(item, "config account")
    address = pubkey(require(data, "pubkey", "config account"), "config account pubkey")
    where = f"config account {address}"
    account = obj(require(data, "account", where), f"{where}: account")
    parsed_data = account.get("data")
    if not isinstance(parsed_data, dict) or not isinstance(parsed_data.get("parsed"), dict):
        return None  # not jsonParsed-able (e.g. base64): not validator-info as far as we can tell
    parsed = parsed_data["parsed"]
    if parsed.get("type") != "validatorInfo":
        return None
    info = obj(require(parsed, "info", where), f"{where}: info")
    keys = array(require(info, "keys", where), f"{where}: keys")
    if len(keys) < 2:
        raise RecordError(f"{where}: validator-info needs 2 keys, got {len(keys)}")
    first = obj(keys[0], f"{where}: keys[0]")
    if first.get("pubkey") != VALIDATOR_INFO_KEY:
        raise RecordError(f"{where}: keys[0] is not the validator-info marker")
    identity = pubkey(require(obj(keys[1], f"{where}: keys[1]"), "pubkey", where), f"{where}: keys[1]")
    config = obj(require(info, "configData", where), f"{where}: configData")
    return ValidatorInfo(
        info_account=address,
        identity=identity,
        name=optional_str(config.get("name"), f"{where}: name", max_len=256),
        website=optional_str(config.get("website"), f"{where}: website", max_len=512),
        details=optional_str(config.get("details"), f"{where}: details", max_len=2048),
        icon_url=optional_str(config.get("iconUrl"), f"{where}: iconUrl", max_len=512),
        keybase_username=optional_str(config.get("keybaseUsername"), f"{where}: keybaseUsername", max_len=128),
    )


def parse_validator_infos(result: Any) -> tuple[list[ValidatorInfo], list[ParseFailure]]:
    """getProgramAccounts(Config, jsonParsed) → every validator-info entry (other config accounts skipped)."""
    good, bad = _each(array(result, "getProgramAccounts(Config)"), "validator_info", parse_validator_info,
                      _key_field("pubkey"))
    return [info for info in good if info is not None], bad


def infos_by_identity(infos: Iterable[ValidatorInfo]) -> dict[str, ValidatorInfo]:
    """One entry per identity; when an identity published several, the later account in the list wins."""
    return {info.identity: info for info in infos}


# --------------------------------------------------------------------------------------------- vote account data


def parse_vote_withdrawers(result: Any, addresses: list[str]) -> tuple[dict[str, str], list[ParseFailure]]:
    """getMultipleAccounts(vote accounts, jsonParsed) → {vote pubkey: authorized withdrawer}."""
    data = obj(result, "getMultipleAccounts")
    values = array(require(data, "value", "getMultipleAccounts"), "getMultipleAccounts.value")
    if len(values) != len(addresses):
        raise RecordError(f"getMultipleAccounts: asked for {len(addresses)} accounts, got {len(values)}")
    out: dict[str, str] = {}
    failures: list[ParseFailure] = []
    for address, value in zip(addresses, values, strict=True):
        if value is None:
            failures.append(ParseFailure("vote_withdrawer", address, "vote account not found"))
            continue
        try:
            account = obj(value, f"vote account {address}")
            if account.get("owner") != VOTE_PROGRAM_ID:
                raise RecordError(f"vote account {address}: owner is not the Vote program")
            parsed = obj(obj(require(account, "data", address), "data").get("parsed"), f"{address}: parsed")
            info = obj(require(parsed, "info", address), f"{address}: info")
            out[address] = pubkey(require(info, "authorizedWithdrawer", address), f"{address}: authorizedWithdrawer")
        except RecordError as exc:
            failures.append(ParseFailure("vote_withdrawer", address, str(exc)))
    return out, failures


# --------------------------------------------------------------------------------------------- inflation reward


@dataclass(frozen=True, slots=True)
class InflationReward:
    epoch: int
    effective_slot: int
    amount: int  # lamports
    post_balance: int
    commission: int | None  # percent applied for the epoch (vote accounts only)


def parse_inflation_rewards(
    result: Any, addresses: list[str], epoch: int
) -> tuple[dict[str, InflationReward], list[ParseFailure]]:
    """getInflationReward(addresses, epoch) → {address: reward}; null entries (no reward) are simply absent."""
    values = array(result, "getInflationReward")
    if len(values) != len(addresses):
        raise RecordError(f"getInflationReward: asked for {len(addresses)} addresses, got {len(values)}")
    out: dict[str, InflationReward] = {}
    failures: list[ParseFailure] = []
    for address, value in zip(addresses, values, strict=True):
        if value is None:
            continue
        try:
            data = obj(value, f"reward {address}")
            reward_epoch = integer(require(data, "epoch", address), f"reward {address}: epoch")
            if reward_epoch != epoch:
                raise RecordError(f"reward {address}: for epoch {reward_epoch}, asked for {epoch}")
            commission = data.get("commission")
            out[address] = InflationReward(
                epoch=reward_epoch,
                effective_slot=integer(require(data, "effectiveSlot", address), f"reward {address}: effectiveSlot"),
                amount=integer(require(data, "amount", address), f"reward {address}: amount"),
                post_balance=integer(require(data, "postBalance", address), f"reward {address}: postBalance"),
                commission=None if commission is None
                else integer(commission, f"reward {address}: commission", maximum=MAX_COMMISSION),
            )
        except RecordError as exc:
            failures.append(ParseFailure("inflation_reward", address, str(exc)))
    return out, failures


# --------------------------------------------------------------------------------------------- stake accounts

STAKE_STATES = ("activating", "active", "deactivating", "inactive")


@dataclass(frozen=True, slots=True)
class StakeAccount:
    stake_pubkey: str
    staker: str
    withdrawer: str
    lamports: int
    vote_account: str | None  # delegation target
    delegated_stake: int  # lamports delegated (0 when not delegated)
    activation_epoch: int | None
    deactivation_epoch: int | None  # None while never deactivated (u64::MAX on chain)
    state: str  # one of STAKE_STATES, relative to the epoch given to the parser


def stake_state(activation: int | None, deactivation: int | None, epoch: int) -> str:
    """Coarse lifecycle state at `epoch` (warm-up/cool-down fractions are not modelled: one epoch each)."""
    if activation is None:
        return "inactive"
    if deactivation is not None:
        return "deactivating" if deactivation >= epoch else "inactive"
    return "activating" if activation >= epoch else "active"


def parse_stake_account(item: Any, epoch: int) -> StakeAccount:
    data = obj(item, "stake account")
    address = pubkey(require(data, "pubkey", "stake account"), "stake account pubkey")
    where = f"stake account {address}"
    account = obj(require(data, "account", where), f"{where}: account")
    if account.get("owner") != STAKE_PROGRAM_ID:
        raise RecordError(f"{where}: owner is not the Stake program")
    lamports = integer(require(account, "lamports", where), f"{where}: lamports")
    parsed = obj(obj(require(account, "data", where), f"{where}: data").get("parsed"), f"{where}: parsed")
    kind = parsed.get("type")
    if kind not in ("initialized", "delegated"):
        raise RecordError(f"{where}: unexpected stake account type {_short(kind)}")
    info = obj(require(parsed, "info", where), f"{where}: info")
    meta = obj(require(info, "meta", where), f"{where}: meta")
    authorized = obj(require(meta, "authorized", where), f"{where}: authorized")
    vote: str | None = None
    delegated = 0
    activation: int | None = None
    deactivation: int | None = None
    if kind == "delegated":
        stake = obj(require(info, "stake", where), f"{where}: stake")
        delegation = obj(require(stake, "delegation", where), f"{where}: delegation")
        vote = pubkey(require(delegation, "voter", where), f"{where}: voter")
        delegated = u64_string(require(delegation, "stake", where), f"{where}: stake")
        activation = u64_string(require(delegation, "activationEpoch", where), f"{where}: activationEpoch")
        raw_deactivation = u64_string(require(delegation, "deactivationEpoch", where), f"{where}: deactivationEpoch")
        deactivation = None if raw_deactivation == U64_MAX else raw_deactivation
        if delegated > lamports:
            raise RecordError(f"{where}: delegated {delegated} exceeds balance {lamports}")
    return StakeAccount(
        stake_pubkey=address,
        staker=pubkey(require(authorized, "staker", where), f"{where}: staker"),
        withdrawer=pubkey(require(authorized, "withdrawer", where), f"{where}: withdrawer"),
        lamports=lamports,
        vote_account=vote,
        delegated_stake=delegated,
        activation_epoch=activation,
        deactivation_epoch=deactivation,
        state=stake_state(activation, deactivation, epoch),
    )


def parse_stake_accounts(result: Any, epoch: int) -> tuple[list[StakeAccount], list[ParseFailure]]:
    return _each(array(result, "getProgramAccounts(Stake)"), "stake_account",
                 lambda item: parse_stake_account(item, epoch), _key_field("pubkey"))


# --------------------------------------------------------------------------------------------- Jito (not RPC)


@dataclass(frozen=True, slots=True)
class JitoValidator:
    vote_pubkey: str
    mev_commission_bps: int
    running_jito: bool
    active_stake: int


def parse_jito_validators(doc: Any) -> tuple[dict[str, JitoValidator], list[ParseFailure]]:
    """Jito's public validator list (`{"validators": [...]}`) → MEV commission per vote account.

    Optional data for `fetch_cluster_snapshot(mev_commission_bps=...)`; not fetched by the RPC source itself.
    """
    entries = array(require(obj(doc, "jito validators"), "validators", "jito validators"), "jito validators")

    def one(item: Any) -> JitoValidator:
        data = obj(item, "jito validator")
        vote = pubkey(require(data, "vote_account", "jito validator"), "vote_account")
        running = require(data, "running_jito", vote)
        if not isinstance(running, bool):
            raise RecordError(f"jito validator {vote}: running_jito must be a boolean")
        return JitoValidator(
            vote_pubkey=vote,
            mev_commission_bps=integer(require(data, "mev_commission_bps", vote), f"{vote}: mev_commission_bps",
                                       maximum=10_000),
            running_jito=running,
            active_stake=integer(require(data, "active_stake", vote), f"{vote}: active_stake"),
        )

    good, bad = _each(entries, "jito_validator", one, _key_field("vote_account"))
    return {v.vote_pubkey: v for v in good}, bad
