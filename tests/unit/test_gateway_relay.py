"""The relay's backlog between reading the provider and writing to the agent
(porter/gateway/relay.py): in order, coalesced when the writer lags, bounded, and it carries
the reader's end or failure."""

from __future__ import annotations

import asyncio

import pytest

from porter.gateway.relay import Backlog


async def test_chunks_that_piled_up_go_out_together_in_order() -> None:
    backlog = Backlog(limit=1024)
    for chunk in (b"a", b"bc", b"def"):
        await backlog.put(chunk)
    assert await backlog.take() == b"abcdef"
    await backlog.put(b"g")
    backlog.end()
    assert await backlog.take() == b"g"
    assert await backlog.take() is None


async def test_a_writer_waits_for_the_next_chunk_and_gets_it_alone() -> None:
    backlog = Backlog()
    taking = asyncio.ensure_future(backlog.take())
    await asyncio.sleep(0)
    assert not taking.done()
    await backlog.put(b"first")
    assert await taking == b"first"


async def test_the_reader_stops_when_the_backlog_is_full() -> None:
    backlog = Backlog(limit=10)
    await backlog.put(b"x" * 6)
    await backlog.put(b"y" * 6)  # over the limit now: the next put waits
    blocked = asyncio.ensure_future(backlog.put(b"z"))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    assert await backlog.take() == b"x" * 6 + b"y" * 6
    await asyncio.wait_for(blocked, 1)
    assert await backlog.take() == b"z"


async def test_a_chunk_larger_than_the_limit_still_passes() -> None:
    backlog = Backlog(limit=4)
    await asyncio.wait_for(backlog.put(b"x" * 100), 1)
    assert await backlog.take() == b"x" * 100


async def test_the_readers_failure_reaches_the_writer_after_what_was_read() -> None:
    backlog = Backlog()
    await backlog.put(b"partial")
    backlog.end(ConnectionResetError("cut"))
    assert await backlog.take() == b"partial"
    with pytest.raises(ConnectionResetError):
        await backlog.take()
