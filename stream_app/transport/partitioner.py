"""Kafka's default partitioner (murmur2), so a key lands on the partition Kafka would choose.

Pure functions only. `partition_for_key` mirrors the Java client's `Utils.toPositive(murmur2(key)) % n`.
"""

from __future__ import annotations

import struct

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS = struct.Struct("<I")


def murmur2(data: bytes) -> int:
    """32-bit murmur2 of `data` as an unsigned int, bit-identical to Kafka's Java implementation."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    body = length - (length & 3)
    for start in range(0, body, 4):
        (k,) = _WORDS.unpack_from(data, start)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail == 3:
        h ^= data[body + 2] << 16
    if tail >= 2:
        h ^= data[body + 1] << 8
    if tail >= 1:
        h ^= data[body]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's DefaultPartitioner picks for a non-null key."""
    if partitions <= 0:
        raise ValueError(f"a topic needs at least one partition, got {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
