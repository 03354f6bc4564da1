"""The Redis key layout, in one place. Pure; see README.md for what each key holds.

Hash tags (`{...}`) keep a partition's stream and counter, and a group's keys, in one Cluster slot,
because the Lua scripts touch them together.
"""

from __future__ import annotations

from dataclasses import dataclass

from faust.types import TP


def tp_field(tp: TP) -> str:
    """`topic:partition`, the field name used in offset and owner hashes."""
    return f"{tp.topic}:{tp.partition}"


def parse_tp_field(field: str | bytes) -> TP:
    text = field.decode() if isinstance(field, bytes) else field
    topic, _, partition = text.rpartition(":")
    return TP(topic, int(partition))


@dataclass(frozen=True)
class GroupKeys:
    base: str

    @property
    def state(self) -> str:
        return f"{self.base}:state"

    @property
    def members(self) -> str:
        return f"{self.base}:members"

    @property
    def owners(self) -> str:
        return f"{self.base}:owners"

    @property
    def offsets(self) -> str:
        return f"{self.base}:offsets"

    def join(self, epoch: int) -> str:
        return f"{self.base}:join:{epoch}"

    def assign(self, epoch: int) -> str:
        return f"{self.base}:assign:{epoch}"


@dataclass(frozen=True)
class KeySpace:
    prefix: str

    def stream(self, topic: str, partition: int) -> str:
        return f"{self.prefix}:s:{{{topic}:{partition}}}"

    def counter(self, topic: str, partition: int) -> str:
        return f"{self.prefix}:n:{{{topic}:{partition}}}"

    def checkpoints(self, topic: str, partition: int) -> str:
        """Retention checkpoints: ZSET of highwater scored by server time (ms)."""
        return f"{self.prefix}:c:{{{topic}:{partition}}}"

    @property
    def topics(self) -> str:
        return f"{self.prefix}:topics"

    def topic_config(self, topic: str) -> str:
        return f"{self.prefix}:topic:{{{topic}}}"

    def group(self, group_id: str) -> GroupKeys:
        return GroupKeys(f"{self.prefix}:g:{{{group_id}}}")
