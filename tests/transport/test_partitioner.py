"""Our murmur2 partitioner against aiokafka's (the Java client's algorithm), plus worked examples."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as kafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from stream_app.transport.partitioner import murmur2, partition_for_key


@given(st.binary(max_size=200))
def test_murmur2_equals_kafka(data: bytes) -> None:
    assert murmur2(data) & 0x7FFFFFFF == kafka_murmur2(data) & 0x7FFFFFFF
    assert murmur2(data) == kafka_murmur2(data) & 0xFFFFFFFF


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=512))
def test_partition_equals_kafka_default_partitioner(key: bytes, partitions: int) -> None:
    all_partitions = list(range(partitions))
    assert partition_for_key(key, partitions) == DefaultPartitioner()(key, all_partitions, all_partitions)


@pytest.mark.parametrize(
    ("key", "partitions"),
    [(b"", 4), (b"a", 4), (b"abc", 3), (b"validator-7Np41oeYqPefeNQEHSv1UDhYrehxin3NStELsSKCT4K2", 8)],
)
def test_worked_examples_match_kafka(key: bytes, partitions: int) -> None:
    expected = (kafka_murmur2(key) & 0x7FFFFFFF) % partitions
    assert partition_for_key(key, partitions) == expected


def test_zero_partitions_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one partition"):
        partition_for_key(b"k", 0)
