"""Consumer-group coordination in Redis: membership, epochs/generations, leader assignment, fencing.

Protocol (eager, like Kafka's): a heartbeat (Lua, on Redis's clock) keeps each member alive and evicts
expired ones; every membership change bumps the group `epoch`. A member that sees `epoch != generation`
revokes everything, joins the epoch with its subscription, and the leader (smallest member id) runs Faust's
own PartitionAssignor once all members joined or the rebalance timeout passed, then publishes it (`sync`,
which sets `generation = epoch`). Commits and changelog writes carry the generation and are rejected once
it is stale, so a zombie cannot overwrite the new owner's work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata
from faust.assignor import PartitionAssignor
from faust.types import TP

from . import scripts
from .keys import GroupKeys, tp_field
from .producer import CONNECTION_ERRORS

if TYPE_CHECKING:
    from .consumer import Consumer

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.05


def new_member_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class RegistryCluster:
    """The slice of aiokafka's ClusterMetadata that Faust's PartitionAssignor reads."""

    def __init__(self, partitions: Mapping[str, int]) -> None:
        self._partitions = dict(partitions)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        count = self._partitions.get(topic)
        return set(range(count)) if count else None

    def topics(self) -> set[str]:
        return set(self._partitions)


def sole_owners(assignments: Mapping[str, list[TP]]) -> dict[str, str]:
    """`topic:partition` -> member for partitions held by exactly one member (shared = standby changelogs)."""
    holders: Counter[TP] = Counter(tp for tps in assignments.values() for tp in set(tps))
    return {tp_field(tp): member for member, tps in assignments.items() for tp in tps if holders[tp] == 1}


class GroupCoordinator:
    def __init__(
        self,
        consumer: Consumer,
        keys: GroupKeys,
        *,
        session_timeout: float,
        heartbeat_interval: float,
        rebalance_timeout: float,
        member_id: str | None = None,
    ) -> None:
        self.consumer = consumer
        self.app = consumer.app
        self.assignor = cast(PartitionAssignor, consumer.app.assignor)
        self.keys = keys
        self.member_id = member_id or new_member_id()
        self.session_ms = int(session_timeout * 1000)
        self.heartbeat_interval = heartbeat_interval
        self.rebalance_timeout = rebalance_timeout
        self.generation = -1
        self.assignment: set[TP] = set()
        self.subscription: set[str] = set()
        self.registered = False
        self.rebalances = 0
        self.fenced_commits = 0
        self._evicted = False
        self._assigned = False
        self._rebalancing = False
        self._rebalance_needed = asyncio.Event()
        self._stopping = False

    @property
    def client(self) -> Any:
        return self.consumer.transport.client

    # --- membership --------------------------------------------------------------------------------------

    async def _heartbeat(self, mode: int) -> list[int]:
        result = await scripts.run(self.client, "heartbeat", [self.keys.state, self.keys.members],
                                   [self.member_id, self.session_ms, mode])
        return [int(x) for x in result]

    async def set_subscription(self, topics: set[str]) -> None:
        """Record the subscription; register on first call, else announce the change (new rebalance)."""
        if topics == self.subscription and self.registered:
            return
        self.subscription = set(topics)
        await self._with_retry(lambda: self._heartbeat(2 if self.registered else 1), "subscribe")
        self.registered = True
        self._rebalance_needed.set()

    def request_rejoin(self) -> None:
        self._rebalance_needed.set()

    async def heartbeat_loop(self) -> None:
        while not self._stopping:
            try:
                status, epoch, _generation = await self._heartbeat(0)
            except CONNECTION_ERRORS as exc:
                log.warning("heartbeat failed, Redis unreachable: %r", exc)
            except Exception as exc:  # e.g. Redis OOM or LOADING: keep beating, never kill the worker
                log.error("heartbeat failed: %r", exc)
            else:
                if status < 0:
                    if not self._evicted:
                        log.warning("member %s was evicted from group (session expired); rejoining", self.member_id)
                    self._evicted = True
                    self._rebalance_needed.set()
                elif epoch != self.generation and not self._rebalancing:
                    self._rebalance_needed.set()
            await asyncio.sleep(self.heartbeat_interval)

    async def rebalance_loop(self) -> None:
        while not self._stopping:
            await self._rebalance_needed.wait()
            self._rebalance_needed.clear()
            if self._stopping:
                return
            try:
                await self._rebalance()
            except asyncio.CancelledError:
                raise
            except CONNECTION_ERRORS as exc:
                log.warning("rebalance interrupted, Redis unreachable: %r; retrying", exc)
                await asyncio.sleep(1.0)
                self._rebalance_needed.set()
            except Exception as exc:
                log.exception("rebalance failed: %r; rejoining", exc)
                self._evicted = True  # start over with a fresh registration
                await asyncio.sleep(1.0)
                self._rebalance_needed.set()

    async def leave(self) -> None:
        self._stopping = True
        self._rebalance_needed.set()
        if not self.registered:
            return
        try:
            await scripts.run(self.client, "leave", [self.keys.state, self.keys.members], [self.member_id])
        except CONNECTION_ERRORS as exc:
            log.warning("could not leave the group cleanly (%r); it will expire after the session timeout", exc)
        self.registered = False

    # --- rebalance -----------------------------------------------------------------------------------------

    async def _rebalance(self) -> None:
        epoch_raw = await self.client.hget(self.keys.state, "epoch")
        if self._assigned and not self._evicted and int(epoch_raw or 0) == self.generation:
            return  # spurious trigger: we already hold this epoch's assignment
        self._rebalancing = True
        try:
            if self.assignment and not self._evicted:
                await self._pre_revoke_commit()
            self.app.on_rebalance_start()
            revoked = set(self.assignment)
            await self.consumer.on_partitions_revoked(revoked)
            self.assignment = set()
            self._assigned = False
            self.consumer.forget_positions(revoked)
            epoch, blob = await self._join_until_assigned()
            self._apply(epoch, blob)
        finally:
            self._rebalancing = False
        self.rebalances += 1
        await self.consumer.on_partitions_assigned(set(self.assignment), self.generation)

    async def _pre_revoke_commit(self) -> None:
        # Faust drops acks of revoked partitions before the app's own commit; commit while still valid.
        try:
            await self.consumer.commit()
        except Exception as exc:
            log.warning("pre-revoke commit failed: %r", exc)

    async def _join_until_assigned(self) -> tuple[int, bytes]:
        while True:
            if self._stopping:
                raise asyncio.CancelledError()
            if self._evicted:
                await self._heartbeat(1)
                self._evicted = False
            epoch, members = await self._snapshot()
            metadata = self.assignor.metadata(set(self.subscription)).encode()
            joined = int(await scripts.run(self.client, "join",
                                           [self.keys.state, self.keys.members, self.keys.join(epoch)],
                                           [epoch, self.member_id, metadata]))
            if joined < 0:
                self._evicted = True
                continue
            if joined == 0:
                continue
            if members and self.member_id == min(members):
                await self._lead(epoch, members)
            blob = await self._await_assignment(epoch)
            if blob is not None:
                return epoch, blob

    async def _snapshot(self) -> tuple[int, list[str]]:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hget(self.keys.state, "epoch")
            pipe.zrange(self.keys.members, 0, -1)
            epoch_raw, members = await pipe.execute()
        return int(epoch_raw or 0), [m.decode() for m in members]

    async def _lead(self, epoch: int, members: list[str]) -> None:
        deadline = time.monotonic() + self.rebalance_timeout
        join_key = self.keys.join(epoch)
        while True:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hget(self.keys.state, "epoch")
                pipe.hlen(join_key)
                current, joined = await pipe.execute()
            if int(current or 0) != epoch:
                return
            if joined >= len(members):
                break
            if time.monotonic() > deadline:
                log.warning("rebalance timeout: assigning epoch %d without the %d member(s) that did not join",
                            epoch, len(members) - joined)
                break
            await asyncio.sleep(POLL_INTERVAL)
        raw = await self.client.hgetall(join_key)
        metadata = {m.decode(): ConsumerProtocolMemberMetadata.decode(blob) for m, blob in raw.items()}
        topics = {t for meta in metadata.values() for t in meta.subscription}
        registry = self.consumer.transport.registry
        partitions = {t: await registry.partitions(self.client, t) for t in sorted(topics)}
        assignments = self.assignor.assign(RegistryCluster(partitions), metadata)
        member_tps = {m: [TP(t, p) for t, p in a.partitions()] for m, a in assignments.items()}
        args: list[Any] = [epoch, self.member_id, len(assignments)]
        for member, assignment in assignments.items():
            args.extend([member, assignment.encode()])
        for field, member in sole_owners(member_tps).items():
            args.extend([field, member])
        keys = [self.keys.state, self.keys.members, self.keys.assign(epoch), self.keys.owners]
        if int(await scripts.run(self.client, "sync", keys, args)) == 1:
            log.info("group %s epoch %d assigned by leader %s to %d member(s)", self.app.conf.id, epoch,
                     self.member_id, len(assignments))

    async def _await_assignment(self, epoch: int) -> bytes | None:
        start = time.monotonic()
        takeover_at, deadline = start + 1.5 * self.rebalance_timeout, start + 3 * self.rebalance_timeout
        took_over = False
        while time.monotonic() < deadline:
            if self._stopping:
                raise asyncio.CancelledError()
            if not took_over and time.monotonic() > takeover_at:
                took_over = True
                await self._take_over_if_leader_stuck(epoch)
            current_epoch, generation = await self.client.hmget(self.keys.state, ["epoch", "generation"])
            if int(generation or -1) == epoch:
                blob = await self.client.hget(self.keys.assign(epoch), self.member_id)
                if blob is None:
                    log.warning("dropped from epoch %d (joined too late); rejoining", epoch)
                    self._evicted = True
                    return None
                return bytes(blob)
            if int(current_epoch or 0) != epoch or self._evicted:
                return None
            await asyncio.sleep(POLL_INTERVAL)
        log.warning("no assignment for epoch %d within %.1fs; rejoining", epoch, 3 * self.rebalance_timeout)
        return None

    async def _take_over_if_leader_stuck(self, epoch: int) -> None:
        """A leader that is alive but never assigns must not stall the group: the smallest joined member
        assigns instead (and the sync drops the stuck leader, which never joined)."""
        joined = sorted(m.decode() for m in await self.client.hkeys(self.keys.join(epoch)))
        if joined and joined[0] == self.member_id:
            log.warning("no assignment for epoch %d after %.1fs; assigning it from member %s", epoch,
                        1.5 * self.rebalance_timeout, self.member_id)
            await self._lead(epoch, joined)

    def _apply(self, epoch: int, blob: bytes) -> None:
        assignment = ConsumerProtocolMemberAssignment.decode(blob)
        self.assignor.on_assignment(assignment)
        self.assignment = {TP(t, p) for t, p in assignment.partitions()}
        self.generation = epoch
        self._assigned = True
        self.app.consumer_generation_id = epoch
        log.info("member %s generation %d: %d partition(s)", self.member_id, epoch, len(self.assignment))

    # --- commits -------------------------------------------------------------------------------------------

    async def commit(self, offsets: Mapping[TP, int]) -> bool:
        if self.generation < 0 or not offsets:
            return False
        args: list[Any] = [self.member_id, self.generation]
        for tp, offset in offsets.items():
            args.extend([tp_field(tp), offset])
        result = await scripts.run(self.client, "commit", [self.keys.state, self.keys.owners, self.keys.offsets],
                                   args)
        status = int(result[0])
        if status == 1:
            return True
        self.fenced_commits += 1
        detail = result[1].decode() if isinstance(result[1], bytes) else result[1]
        log.warning("commit rejected (fenced): status=%d detail=%s generation=%d; rejoining", status, detail,
                    self.generation)
        self._rebalance_needed.set()
        return False

    async def _with_retry(self, action: Callable[[], Any], what: str) -> Any:
        delay = 0.1
        while True:
            try:
                return await action()
            except CONNECTION_ERRORS as exc:
                log.warning("%s failed, Redis unreachable (%r); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
