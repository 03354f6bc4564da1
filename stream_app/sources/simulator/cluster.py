"""A deterministic model of a Solana cluster, evolving slot by slot. Pure: no I/O, no wall clock.

Starts from the real epoch-752 snapshot (1,325 current + 26 delinquent vote accounts) and, for larger
clusters, adds synthetic validators drawn from the same statistics. Everything that happens is a function
of (seed, validator count, slot):

- slots advance when the caller says so (`advance_to`); epochs of 432,000 slots roll over;
- each validator earns up to 16 credits per slot times its performance for the epoch (most near-perfect,
  a tail of poor voters), nothing while it is down; credits lag the tip by 32 slots (rooting);
- outages: a few validators go down each epoch (delinquent once `lastVote` is 128 slots behind) and come
  back after a while; some of the initially delinquent ones never do;
- commission changes: rare honest ones (raises only in the first half of an epoch), and boundary rugs
  (raise in the first half, hold through the boundary, lower right after), visible in getInflationReward;
- new validators join at epoch starts; versions upgrade now and then.

The RPC answers are built here as JSON-ready dicts/lists shaped like mainnet's; the server only routes.
"""

from __future__ import annotations

import hashlib
import random
from array import array
from dataclasses import dataclass, field
from typing import Any

from solders.pubkey import Pubkey

from stream_app.records import U64_MAX
from stream_app.sources.parse import (
    CONFIG_PROGRAM_ID,
    STAKE_PROGRAM_ID,
    VALIDATOR_INFO_KEY,
    VOTE_PROGRAM_ID,
)
from stream_app.sources.simulator.seed_data import Seed, SeedInfo, load_seed

SLOTS_PER_EPOCH = 432_000
CREDITS_PER_SLOT = 16
ROOT_LAG = 32
DELINQUENT_DISTANCE = 128
HISTORY = 5  # getVoteAccounts returns at most the last 5 epochCredits entries
REWARD_EPOCHS_KEPT = 16
VERSIONS = ("2.1.14", "2.1.13", "2.0.24", "0.403.20113", "1.18.26")
VERSION_WEIGHTS = (55, 20, 10, 12, 3)
STAKE_RENT_RESERVE = 2_282_880


def derive_pubkey(seed: int, kind: str, index: int) -> str:
    """A deterministic, valid pubkey for simulated accounts."""
    return str(Pubkey(hashlib.sha256(f"sol-stake-sim:{seed}:{kind}:{index}".encode()).digest()))


@dataclass(slots=True)
class SimValidator:
    index: int
    vote: str
    identity: str
    withdrawer: str
    stake: int  # active stake, lamports
    activating: int  # stake that becomes active at the next epoch
    commission: int  # in force at the start of the current epoch
    base_perf: float  # typical fraction of max credits
    base_skip: float  # typical skip rate
    version: str
    gossip_ip: str
    history: list[tuple[int, int, int]]  # finished epochs with credits, at most HISTORY - 1
    total_credits: int  # cumulative at the start of the current epoch
    lag: int  # usual distance of lastVote from the tip, slots
    down_from: int = U64_MAX  # absolute slot where the current/next outage starts
    down_until: int = U64_MAX  # first slot it votes again (U64_MAX: never)
    perf: float = 1.0  # this epoch
    skip: float = 0.0  # this epoch
    changes: list[tuple[int, int]] = field(default_factory=list)  # (slot index, new commission) this epoch
    info: SeedInfo | None = None
    info_account: str = ""

    def commission_at(self, slot_index: int) -> int:
        value = self.commission
        for at, new in self.changes:
            if at <= slot_index:
                value = new
        return value


@dataclass(slots=True)
class SimStakeAccount:
    pubkey: str
    staker: str
    withdrawer: str
    lamports: int
    vote: str | None
    stake: int
    activation_epoch: int
    deactivation_epoch: int = U64_MAX


class SimCluster:
    """The whole simulated cluster. Call `advance_to(slot)` (never backwards), then ask it RPC questions."""

    def __init__(self, seed: int = 752, validators: int | None = None, *, base: Seed | None = None) -> None:
        self.seed = seed
        base = base or load_seed()
        self.epoch = base.epoch
        self.slot = base.tip_slot
        self.validators: list[SimValidator] = []
        self._by_vote: dict[str, SimValidator] = {}
        self._pending_reverts: dict[int, int] = {}  # validator index -> commission to restore next epoch
        # epoch -> per validator index: commission applied (-1 = no reward) and reward to the vote account
        self.applied_commission: dict[int, array[int]] = {}
        self.vote_rewards: dict[int, array[int]] = {}
        self.stake_accounts: list[SimStakeAccount] = []
        self.rugs: list[tuple[int, str, int, int]] = []  # (epoch, vote, from, to): ground truth for tests
        count = len(base.vote_accounts) if validators is None else validators
        if count < 1:
            raise ValueError("a cluster needs at least one validator")
        self._build(base, count)
        self._plan_epoch(first=True)
        self._seed_history_rewards()
        self._make_demo_wallets()

    # ------------------------------------------------------------------------------------------ building

    def _rng(self, *parts: object) -> random.Random:
        return random.Random(":".join(str(p) for p in (self.seed, *parts)))

    @property
    def epoch_start(self) -> int:
        return self.epoch * SLOTS_PER_EPOCH

    @property
    def slot_index(self) -> int:
        return self.slot - self.epoch_start

    def _build(self, base: Seed, count: int) -> None:
        rng = self._rng("build")
        infos = {i.identity: i for i in base.infos}
        spare_infos = list(base.infos)
        real = list(base.vote_accounts)
        for index in range(count):
            if index < len(real):
                src = real[index]
                vote, identity, stake = src.vote_pubkey, src.node_pubkey, src.activated_stake
                commission, credits = src.commission, list(src.epoch_credits)
                last_vote, delinquent = src.last_vote, src.delinquent
            else:
                src = real[rng.randrange(len(real))]
                vote, identity = derive_pubkey(self.seed, "vote", index), derive_pubkey(self.seed, "identity", index)
                stake, commission = src.activated_stake, src.commission
                shift = rng.randrange(0, 40) * 100_000
                credits = [(e, max(0, c - shift), max(0, p - shift)) for e, c, p in src.epoch_credits]
                last_vote, delinquent = self.slot - rng.randrange(0, 3), rng.random() < 0.02
                if delinquent:
                    last_vote = self.slot - rng.randrange(200, 900_000)
            finished = [e for e in credits if e[0] < self.epoch]
            total = credits[-1][1] if credits and credits[-1][0] < self.epoch else (credits[-1][2] if credits else 0)
            perf = self._perf_from_history(finished, rng)
            v = SimValidator(
                index=index, vote=vote, identity=identity,
                withdrawer=identity if rng.random() < 0.05 else derive_pubkey(self.seed, "withdrawer", index),
                stake=stake, activating=0, commission=commission, base_perf=perf,
                base_skip=self._draw_skip(rng), version=rng.choices(VERSIONS, VERSION_WEIGHTS)[0],
                gossip_ip=self._ip(index), history=finished[-(HISTORY - 1):], total_credits=total,
                lag=rng.choice((0, 0, 1, 1, 2, 3)),
            )
            if delinquent:
                v.down_from = last_vote + 1
                v.down_until = (self.epoch_start + SLOTS_PER_EPOCH * rng.randint(1, 3) + rng.randrange(SLOTS_PER_EPOCH)
                                if rng.random() < 0.5 else U64_MAX)
            info = infos.get(identity)
            if info is None and rng.random() < 0.7:
                donor = spare_infos[index % len(spare_infos)]
                info = SeedInfo(identity, donor.name, donor.website, donor.details, donor.icon_url,
                                donor.keybase_username)
            if info is not None:
                v.info = info
                v.info_account = derive_pubkey(self.seed, "info", index)
            self.validators.append(v)
            self._by_vote[vote] = v

    @staticmethod
    def _perf_from_history(finished: list[tuple[int, int, int]], rng: random.Random) -> float:
        if finished and finished[-1][0] >= 703:  # TVC era: credits comparable to 16 per slot
            ratio = (finished[-1][1] - finished[-1][2]) / (CREDITS_PER_SLOT * SLOTS_PER_EPOCH)
            if 0.3 < ratio <= 1.0:
                return ratio
        roll = rng.random()
        if roll < 0.90:
            return rng.uniform(0.985, 0.9985)
        if roll < 0.98:
            return rng.uniform(0.93, 0.985)
        return rng.uniform(0.5, 0.93)

    @staticmethod
    def _draw_skip(rng: random.Random) -> float:
        roll = rng.random()
        if roll < 0.85:
            return rng.uniform(0.0, 0.03)
        if roll < 0.95:
            return rng.uniform(0.03, 0.15)
        return rng.uniform(0.15, 0.6)

    def _ip(self, index: int) -> str:
        h = hashlib.sha256(f"{self.seed}:ip:{index}".encode()).digest()
        return f"{(h[0] % 190) + 23}.{h[1]}.{h[2]}.{(h[3] % 250) + 2}"

    def _seed_history_rewards(self) -> None:
        """Rewards for the epochs before the snapshot, at the commission seen then (no rug on record)."""
        for entry_epoch in range(self.epoch - 3, self.epoch):
            applied = array("b", [-1]) * len(self.validators)
            rewards = array("q", [0]) * len(self.validators)
            for v in self.validators:
                earned = next((c - p for e, c, p in v.history if e == entry_epoch), 0)
                if earned > 0:
                    applied[v.index] = v.commission
                    rewards[v.index] = self._vote_reward(v, earned, v.commission)
            self.applied_commission[entry_epoch] = applied
            self.vote_rewards[entry_epoch] = rewards

    @staticmethod
    def _vote_reward(v: SimValidator, earned: int, commission: int) -> int:
        total = v.stake * 0.0004 * earned / (CREDITS_PER_SLOT * SLOTS_PER_EPOCH)  # ~7 % a year
        return int(total * commission / 100)

    def _make_demo_wallets(self) -> None:
        rng = self._rng("wallets")
        for w in range(3):
            wallet = derive_pubkey(self.seed, "wallet", w)
            for k in range(w + 1):
                target = self.validators[rng.randrange(len(self.validators))]
                amount = rng.randrange(1, 5_000) * 1_000_000_000
                account = SimStakeAccount(
                    pubkey=derive_pubkey(self.seed, f"stake-{w}", k), staker=wallet,
                    withdrawer=wallet if k != 1 else derive_pubkey(self.seed, "custodian", w),
                    lamports=amount + STAKE_RENT_RESERVE, vote=target.vote, stake=amount,
                    activation_epoch=self.epoch - rng.randint(1, 200),
                )
                if k == 2:
                    account.deactivation_epoch = self.epoch
                self.stake_accounts.append(account)
            # one undelegated (initialized) account per wallet
            self.stake_accounts.append(SimStakeAccount(
                pubkey=derive_pubkey(self.seed, f"stake-{w}", 99), staker=wallet, withdrawer=wallet,
                lamports=STAKE_RENT_RESERVE + 1_000_000, vote=None, stake=0, activation_epoch=U64_MAX,
            ))

    def demo_wallets(self) -> list[str]:
        return [derive_pubkey(self.seed, "wallet", w) for w in range(3)]

    def add_stake_account(self, staker: str, withdrawer: str, vote: str | None, lamports: int) -> str:
        """Add a stake account (e.g. for a test wallet); delegated and active when `vote` is given."""
        address = derive_pubkey(self.seed, "extra-stake", len(self.stake_accounts))
        self.stake_accounts.append(SimStakeAccount(
            pubkey=address, staker=str(Pubkey.from_string(staker)), withdrawer=str(Pubkey.from_string(withdrawer)),
            lamports=lamports + STAKE_RENT_RESERVE, vote=vote, stake=lamports if vote else 0,
            activation_epoch=self.epoch - 1 if vote else U64_MAX,
        ))
        return address

    # ------------------------------------------------------------------------------------------ time

    def advance_to(self, slot: int) -> None:
        """Move the tip forward to `slot`, rolling over every epoch boundary crossed on the way."""
        if slot < self.slot:
            return  # time never goes backwards; a lagging node is a fault, not a model state
        while slot >= self.epoch_start + SLOTS_PER_EPOCH:
            self._finish_epoch()
            self.epoch += 1
            self.slot = self.epoch_start
            self._plan_epoch(first=False)
        self.slot = slot

    def _finish_epoch(self) -> None:
        applied = array("b", [-1]) * len(self.validators)
        rewards = array("q", [0]) * len(self.validators)
        for v in self.validators:
            earned = self._earned(v, SLOTS_PER_EPOCH, rooted=False)
            final = v.commission_at(SLOTS_PER_EPOCH)
            if earned > 0:
                v.history.append((self.epoch, v.total_credits + earned, v.total_credits))
                del v.history[:-(HISTORY - 1)]
                v.total_credits += earned
                applied[v.index] = final
                rewards[v.index] = self._vote_reward(v, earned, final)
            v.commission = final
            v.stake += v.activating
            v.activating = 0
        self.applied_commission[self.epoch] = applied
        self.vote_rewards[self.epoch] = rewards
        for old in [e for e in self.applied_commission if e <= self.epoch - REWARD_EPOCHS_KEPT]:
            del self.applied_commission[old], self.vote_rewards[old]

    def _plan_epoch(self, *, first: bool) -> None:
        """Draw this epoch's performance, outages, commission changes, rugs, upgrades and newcomers."""
        rng = self._rng("epoch", self.epoch)
        start = self.epoch_start
        half = SLOTS_PER_EPOCH // 2
        reverts, self._pending_reverts = self._pending_reverts, {}
        if not first:
            for _ in range(rng.randint(0, max(1, len(self.validators) // 400))):
                self._join(rng)
        for v in self.validators:
            v.perf = min(1.0, max(0.0, v.base_perf + rng.gauss(0.0, 0.002)))
            v.skip = min(1.0, max(0.0, v.base_skip + rng.gauss(0.0, 0.005)))
            v.changes = []
            if v.index in reverts:  # the second half of a rug: lower right after the boundary
                v.changes.append((rng.randrange(50, 3_000), reverts[v.index]))
            elif not first and (v.down_from == U64_MAX or v.down_until <= start) and rng.random() < 0.01:
                begin = start + rng.randrange(SLOTS_PER_EPOCH)
                v.down_from, v.down_until = begin, begin + rng.randrange(150, 60_000)
            if first or v.changes:
                pass  # the snapshot's epoch is half over; a reverting account changes nothing else
            elif v.commission <= 10 and v.stake > 0 and rng.random() < 0.004:
                rugged = rng.choice((50, 80, 100))
                v.changes.append((rng.randrange(int(0.30 * SLOTS_PER_EPOCH), half - 1), rugged))
                self._pending_reverts[v.index] = v.commission
                self.rugs.append((self.epoch, v.vote, v.commission, rugged))
            elif rng.random() < 0.004:
                new = rng.choice((0, 5, 7, 8, 10))
                at = rng.randrange(half - 1) if new > v.commission else rng.randrange(SLOTS_PER_EPOCH)
                if new != v.commission:
                    v.changes.append((at, new))
            if not first and rng.random() < 0.01:
                v.version = VERSIONS[0] if not v.version.startswith("0.") else v.version

    def _join(self, rng: random.Random) -> None:
        index = len(self.validators)
        identity = derive_pubkey(self.seed, "identity", index)
        v = SimValidator(
            index=index, vote=derive_pubkey(self.seed, "vote", index), identity=identity,
            withdrawer=derive_pubkey(self.seed, "withdrawer", index), stake=0,
            activating=rng.randrange(1_000, 200_000) * 1_000_000_000, commission=rng.choice((0, 5, 5, 10)),
            base_perf=self._perf_from_history([], rng), base_skip=self._draw_skip(rng),
            version=VERSIONS[0], gossip_ip=self._ip(index), history=[], total_credits=0,
            lag=rng.choice((0, 1, 2)),
        )
        self.validators.append(v)
        self._by_vote[v.vote] = v
        for table in (self.applied_commission, self.vote_rewards):
            for values in table.values():
                values.append(-1 if table is self.applied_commission else 0)

    # ------------------------------------------------------------------------------------------ state at the tip

    def _down_overlap(self, v: SimValidator, begin: int, end: int) -> int:
        lo, hi = max(begin, v.down_from), min(end, v.down_until)
        return max(0, hi - lo)

    def _earned(self, v: SimValidator, slot_index: int, *, rooted: bool = True) -> int:
        """Credits earned this epoch up to `slot_index` (rooted: lagging the tip by ROOT_LAG)."""
        upto = max(0, slot_index - ROOT_LAG) if rooted else slot_index
        begin = self.epoch_start
        voting = upto - self._down_overlap(v, begin, begin + upto)
        return int(CREDITS_PER_SLOT * v.perf * voting)

    def last_vote(self, v: SimValidator, slot: int | None = None) -> int:
        tip = self.slot if slot is None else slot
        if v.down_from <= tip < v.down_until:
            return v.down_from - 1
        return max(0, tip - v.lag)

    def is_delinquent(self, v: SimValidator) -> bool:
        return self.slot - self.last_vote(v) >= DELINQUENT_DISTANCE

    def epoch_credits(self, v: SimValidator) -> list[list[int]]:
        out = [list(e) for e in v.history]
        earned = self._earned(v, self.slot_index)
        if earned > 0:
            out.append([self.epoch, v.total_credits + earned, v.total_credits])
        return out[-HISTORY:]

    # ------------------------------------------------------------------------------------------ RPC answers

    def rpc_vote_accounts(self, slot_lag: int = 0) -> dict[str, Any]:
        current: list[dict[str, Any]] = []
        delinquent: list[dict[str, Any]] = []
        slot_index, tip = self.slot_index, self.slot
        for v in self.validators:
            true_last = self.last_vote(v)
            last = max(0, true_last - slot_lag)
            entry = {
                "activatedStake": v.stake,
                "commission": v.commission_at(slot_index),
                "epochCredits": self.epoch_credits(v),
                "epochVoteAccount": v.stake > 0,
                "lastVote": last,
                "nodePubkey": v.identity,
                "rootSlot": max(0, last - 31),
                "votePubkey": v.vote,
            }
            (delinquent if tip - true_last >= DELINQUENT_DISTANCE else current).append(entry)
        return {"current": current, "delinquent": delinquent}

    def rpc_epoch_info(self, slot_lag: int = 0) -> dict[str, Any]:
        slot = max(0, self.slot - slot_lag)
        return {
            "absoluteSlot": slot,
            "blockHeight": slot - slot // 9,  # some slots are skipped
            "epoch": slot // SLOTS_PER_EPOCH,
            "slotIndex": slot % SLOTS_PER_EPOCH,
            "slotsInEpoch": SLOTS_PER_EPOCH,
            "transactionCount": 340_000_000_000 + slot * 3_000,
        }

    def rpc_cluster_nodes(self) -> list[dict[str, Any]]:
        nodes = []
        for v in self.validators:
            if v.down_from <= self.slot < v.down_until and v.down_until == U64_MAX:
                continue  # gone for good: not in gossip
            nodes.append({
                "featureSet": 1_725_507_508 if not v.version.startswith("0.") else 3_294_648_128,
                "gossip": f"{v.gossip_ip}:8001", "pubkey": v.identity, "rpc": None, "shredVersion": 50093,
                "tpu": f"{v.gossip_ip}:8004", "tpuQuic": f"{v.gossip_ip}:8010", "version": v.version,
            })
        for k in range(max(1, len(self.validators) // 10)):  # RPC and other non-voting nodes
            ip = self._ip(10_000_000 + k)
            nodes.append({
                "featureSet": 1_725_507_508, "gossip": f"{ip}:8001", "pubkey": derive_pubkey(self.seed, "rpc", k),
                "rpc": f"{ip}:8899", "shredVersion": 50093, "tpu": f"{ip}:8004", "version": VERSIONS[0],
            })
        return nodes

    def rpc_block_production(self, identity: str | None = None) -> dict[str, Any]:
        slot_index = self.slot_index
        total_stake = sum(v.stake for v in self.validators) or 1
        by_identity: dict[str, list[int]] = {}
        start = self.epoch_start
        for v in self.validators:
            if v.stake == 0 or (identity is not None and v.identity != identity):
                continue
            leader = (int(slot_index * v.stake / total_stake) // 4) * 4
            if leader == 0:
                continue
            down_fraction = self._down_overlap(v, start, self.slot) / max(1, slot_index)
            produced = int(leader * (1.0 - v.skip) * (1.0 - down_fraction))
            by_identity[v.identity] = [leader, produced]
        return {
            "context": {"apiVersion": "2.1.14", "slot": self.slot},
            "value": {"byIdentity": by_identity, "range": {"firstSlot": start, "lastSlot": self.slot}},
        }

    def rpc_config_accounts(self) -> list[dict[str, Any]]:
        out = []
        for v in self.validators:
            if v.info is None:
                continue
            config = {key: value for key, value in (
                ("name", v.info.name), ("website", v.info.website), ("details", v.info.details),
                ("iconUrl", v.info.icon_url), ("keybaseUsername", v.info.keybase_username)) if value is not None}
            out.append({
                "account": {
                    "data": {"parsed": {"info": {"configData": config, "keys": [
                        {"pubkey": VALIDATOR_INFO_KEY, "signer": False},
                        {"pubkey": v.identity, "signer": True}]}, "type": "validatorInfo"},
                        "program": "config", "space": 643},
                    "executable": False, "lamports": 5_366_400, "owner": CONFIG_PROGRAM_ID, "rentEpoch": U64_MAX,
                    "space": 643,
                },
                "pubkey": v.info_account,
            })
        return out

    def rpc_vote_account_data(self, address: str) -> dict[str, Any] | None:
        v = self._by_vote.get(address)
        if v is None:
            return None
        last = self.last_vote(v)
        return {
            "data": {"parsed": {"info": {
                "authorizedVoters": [{"authorizedVoter": v.identity, "epoch": self.epoch}],
                "authorizedWithdrawer": v.withdrawer,
                "commission": v.commission_at(self.slot_index),
                "epochCredits": [{"credits": str(c), "epoch": e, "previousCredits": str(p)}
                                 for e, c, p in self.epoch_credits(v)],
                "lastTimestamp": {"slot": last, "timestamp": 1_741_300_000 + self.slot // 3},
                "nodePubkey": v.identity, "priorVoters": [], "rootSlot": max(0, last - 31),
                "votes": [],
            }, "type": "vote"}, "program": "vote", "space": 3762},
            "executable": False, "lamports": 27_074_400 + v.total_credits, "owner": VOTE_PROGRAM_ID,
            "rentEpoch": U64_MAX, "space": 3762,
        }

    def rpc_inflation_reward(self, addresses: list[str], epoch: int) -> list[dict[str, Any] | None]:
        """Rewards for a finished epoch; raises ValueError for an epoch not finished or long gone."""
        if epoch >= self.epoch:
            raise ValueError(f"epoch {epoch} has not finished (current epoch {self.epoch})")
        applied = self.applied_commission.get(epoch)
        rewards = self.vote_rewards.get(epoch)
        if applied is None or rewards is None:
            raise ValueError(f"rewards for epoch {epoch} are not available")
        out: list[dict[str, Any] | None] = []
        for address in addresses:
            v = self._by_vote.get(address)
            if v is None or v.index >= len(applied) or applied[v.index] < 0:
                out.append(None)
                continue
            effective = (epoch + 1) * SLOTS_PER_EPOCH + 1
            out.append({"amount": rewards[v.index], "commission": applied[v.index], "effectiveSlot": effective,
                        "epoch": epoch, "postBalance": 27_074_400 + v.total_credits + rewards[v.index]})
        return out

    def rpc_stake_accounts(self, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Stake-program getProgramAccounts: memcmp at 12 (staker) / 44 (withdrawer), dataSize 200."""
        matches = list(self.stake_accounts)
        for f in filters:
            if "dataSize" in f:
                if f["dataSize"] != 200:
                    return []
            elif "memcmp" in f:
                offset, wanted = f["memcmp"].get("offset"), f["memcmp"].get("bytes")
                if offset == 12:
                    matches = [s for s in matches if s.staker == wanted]
                elif offset == 44:
                    matches = [s for s in matches if s.withdrawer == wanted]
                else:
                    return []
        return [self._stake_json(s) for s in matches]

    def _stake_json(self, s: SimStakeAccount) -> dict[str, Any]:
        meta = {"authorized": {"staker": s.staker, "withdrawer": s.withdrawer},
                "lockup": {"custodian": "11111111111111111111111111111111", "epoch": 0, "unixTimestamp": 0},
                "rentExemptReserve": str(STAKE_RENT_RESERVE)}
        if s.vote is None:
            parsed: dict[str, Any] = {"info": {"meta": meta}, "type": "initialized"}
        else:
            parsed = {"info": {"meta": meta, "stake": {"creditsObserved": 0, "delegation": {
                "activationEpoch": str(s.activation_epoch), "deactivationEpoch": str(s.deactivation_epoch),
                "stake": str(s.stake), "voter": s.vote, "warmupCooldownRate": 0.25}}}, "type": "delegated"}
        return {"account": {"data": {"parsed": parsed, "program": "stake", "space": 200}, "executable": False,
                            "lamports": s.lamports, "owner": STAKE_PROGRAM_ID, "rentEpoch": U64_MAX, "space": 200},
                "pubkey": s.pubkey}
