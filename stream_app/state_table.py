"""The scoring-state table as the agent reads and writes it: Faust's Table, in fewer steps per record.

`table[key] = value` builds a FutureMessage for the changelog (header, key and value preparation, sensor
calls, two callbacks) before our producer queues it. With the in-memory store and our producer the same
effect takes two steps: the changelog record is queued on the partition of the record being scored (as
the table's `partition_for_key` picks it) and the value lands in the store's dict. Reads go to that dict
too. Anything else (another store or producer, records still in Faust's buffer that must stay ahead, a
transaction) goes through the table as before.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from faust.stores.memory import Store as MemoryStore


class StateTable:
    def __init__(self, table: Any) -> None:
        self.table = table
        self._changelog: str | None = None

    def _store(self) -> MutableMapping[Any, Any] | None:
        store = self.table.data
        return store.data if type(store) is MemoryStore else None

    def get(self, key: bytes) -> bytes | None:
        store = self._store()
        return store.get(key) if store is not None else self.table.get(key)

    def set(self, key: bytes, value: bytes, event: Any) -> None:
        """`table[key] = value` while `event` (a record of the table's source topic) is being processed."""
        table = self.table
        store = self._store()
        send_now = getattr(table.app.producer, "send_now", None)
        if store is not None and send_now is not None and not table.use_partitioner:
            message = event.message
            table._verify_source_topic_partitions(message.topic)  # as `partition_for_key` does (memoised)
            if self._changelog is None:
                self._changelog = table.changelog_topic.get_topic_name()
            if send_now(self._changelog, key, value, message.partition) is not None:
                store[key] = value
                return
        table[key] = value  # the changelog partition comes from faust.current_event(): see score_batch
