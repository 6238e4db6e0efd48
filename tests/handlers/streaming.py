"""Streaming Lambda handlers (`responseTransferMode: STREAM`) for tests/test_streaming.py.

The server runs them in its own process, so the tests steer them through files: a handler that
must wait for the test waits for a file to appear (the test creates it), and what a handler
observes (its generator closed) it writes to a file the test waits for. The directory comes in
the `x-dir` request header."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

METADATA = {
    "statusCode": 200,
    "headers": {"Content-Type": "text/plain", "X-Streamed": "yes"},
    "cookies": ["a=1", "b=2"],
}


def _dir(event: dict[str, Any]) -> Path:
    return Path(event["headers"]["x-dir"])


def _wait_for(path: Path) -> None:
    """Until the test creates `path` (a minute at most: a test that failed leaves no handler behind)."""
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.005)


async def _await_file(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


def gated(event, context) -> Iterator[Any]:
    """Metadata, a first chunk, then the rest once the test says so."""
    folder = _dir(event)
    yield METADATA
    yield "first chunk\n"
    _wait_for(folder / "release")
    yield b"second chunk\n"
    (folder / "finished").write_text("yes")


async def async_gated(event, context) -> AsyncIterator[Any]:
    """`gated` as an async generator."""
    folder = _dir(event)
    yield METADATA
    yield "first chunk\n"
    await _await_file(folder / "release")
    yield b"second chunk\n"
    (folder / "finished").write_text("yes")


async def returns_async_generator(event, context):
    """An `async def` handler that returns a generator: it streams too."""
    await asyncio.sleep(0)

    def body() -> Iterator[Any]:
        yield {"statusCode": 202}
        yield "from a returned generator"

    return body()


def endless(event, context) -> Iterator[Any]:
    """Ticks until it is closed; says so in the file `closed`."""
    folder = _dir(event)
    yield {"statusCode": 200, "headers": {"content-type": "text/event-stream"}}
    yield "data: first\n\n"
    _wait_for(folder / "release")
    ticks = 0
    try:
        while True:
            ticks += 1
            yield f"data: {ticks}\n\n"
            time.sleep(0.001)
    except GeneratorExit:
        (folder / "closed").write_text(f"GeneratorExit after {ticks} ticks")
        raise


def fails_midway(event, context) -> Iterator[Any]:
    yield METADATA
    yield "part of the body\n"
    raise RuntimeError("the stream broke on purpose")


def fails_first(event, context) -> Iterator[Any]:
    raise RuntimeError("failed before its metadata")
    yield METADATA  # a generator all the same


def no_metadata(event, context) -> Iterator[Any]:
    yield "a body without metadata"


def bad_chunk(event, context) -> Iterator[Any]:
    yield METADATA
    yield {"not": "bytes"}


def big(event, context) -> Iterator[Any]:
    """`n` bytes (query string), in chunks of 64 KiB; how many it has produced so far goes into
    the file `produced`."""
    size = int(event["queryStringParameters"]["n"])
    produced = _dir(event) / "produced"
    yield {"statusCode": 200, "headers": {"content-type": "application/octet-stream"}}
    chunk = bytes(range(256)) * 256
    sent = 0
    while sent < size:
        part = chunk[: size - sent]
        sent += len(part)
        yield part
        produced.write_text(str(sent))


def invocation(event, context):
    """Not a generator: a buffered answer, whatever the transfer mode (its body names the call)."""
    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": context.aws_request_id}


def streamed_invocation(event, context) -> Iterator[Any]:
    yield {"statusCode": 200}
    yield context.aws_request_id
