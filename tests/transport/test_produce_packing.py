"""The producer's own RESP packing of `produce` EVALSHAs is byte-for-byte what redis-py's pipeline sends."""

from __future__ import annotations

import asyncio

from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection

from stream_app.transport import scripts
from stream_app.transport.producer import Outgoing, pack_produce

_blob = st.binary(max_size=300)
_field_lists = st.lists(
    st.tuples(st.integers(0, 2**53), st.integers(0, 7), _blob, _blob, _blob,
              st.sampled_from(["bytes", "str"])),
    min_size=1, max_size=20)


@given(fields=_field_lists, maxlen=st.integers(0, 10**9), fence=st.text(max_size=20),
       keys=st.lists(st.one_of(st.text(max_size=30), st.binary(max_size=30)), min_size=3, max_size=3))
def test_pack_produce_matches_redis_py(fields: list[tuple[int, int, bytes, bytes, bytes, str]], maxlen: int,
                                       fence: str, keys: list[str | bytes]) -> None:
    loop = asyncio.new_event_loop()
    try:
        items = []
        for ts, flags, key, value, headers, kind in fields:
            # a str value takes the generic path (the agent only sends bytes; Faust callers may not)
            record = [ts, flags, key, value.decode("latin-1") if kind == "str" else value, headers]
            items.append(Outgoing(TP("t", 0), record, ts / 1000, fence, loop.create_future()))
        args: list[object] = [maxlen, fence]
        for item in items:
            args.extend(item.fields)
        expected = b"".join(Connection().pack_command(*scripts.evalsha_args("produce", keys, args)))
        assert pack_produce(list(keys), maxlen, fence, items) == expected
    finally:
        loop.close()
