"""The handler thread pool: grows so that no handler waits behind another, answers on the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from portico.integrations.handler_threads import HandlerThreads


async def test_blocked_handlers_never_delay_others():
    pool = HandlerThreads(max_threads=16)
    loop = asyncio.get_running_loop()
    release = threading.Event()
    started = threading.Semaphore(0)

    def blocked(i: int) -> int:
        started.release()
        release.wait(10)
        return i

    futures = [pool.submit(loop, blocked, i) for i in range(8)]
    # Every one of the 8 starts while the others are still blocked: each got a thread of its own.
    for _ in range(8):
        assert await asyncio.to_thread(started.acquire, True, 10)
    release.set()
    assert await asyncio.gather(*futures) == list(range(8))
    pool.shutdown()


async def test_errors_and_event_loops():
    pool = HandlerThreads(max_threads=2)
    loop = asyncio.get_running_loop()

    def fails() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await pool.submit(loop, fails)
    # A handler thread has an event loop of its own, as a Lambda runtime's main thread does.
    thread_loop = await pool.submit(loop, asyncio.get_event_loop)
    assert thread_loop is not loop
    assert await pool.submit(loop, sum, [1, 2, 3]) == 6
    pool.shutdown()
