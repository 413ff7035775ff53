"""Connection I/O of the egress proxy: reading a request head, relaying bytes, answering, closing.

These are the stream-level helpers that `strongroom.sandbox.proxy` builds its connection
handler from: :func:`read_head` reads a request head (at most :data:`MAX_HEAD_BYTES`),
:func:`relay` copies bytes both ways between client and upstream while a :class:`Counter`
tallies them, :func:`respond` sends the proxy's own short plain-text answers (``400``/``403``/
``502``/``503``) and lingers so the client can read them, :func:`close_writer` closes a
connection with a bounded wait, and :func:`describe` turns a connection error into an event
reason. They hold no policy: what is allowed is decided by `strongroom.sandbox._proxy_rules`
and the proxy itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from strongroom.sandbox._proxy_rules import BadRequest

__all__ = [
    "CHUNK",
    "MAX_HEAD_BYTES",
    "Counter",
    "close_writer",
    "describe",
    "read_head",
    "relay",
    "respond",
]

MAX_HEAD_BYTES = 64 * 1024
"""The largest request head (request line plus headers) the proxy reads."""

CHUNK = 64 * 1024
"""The read size for relaying, and the stream buffer limit of upstream connections."""

_LINGER_SECONDS = 1.0
_LINGER_BYTES = 256 * 1024
_CLOSE_TIMEOUT = 2.0


async def read_head(reader: asyncio.StreamReader) -> list[bytes]:
    lines: list[bytes] = []
    total = 0
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise BadRequest("header too large") from None
        except asyncio.IncompleteReadError as exc:
            reason = "incomplete request" if exc.partial or lines else "empty request"
            raise BadRequest(reason) from None
        total += len(line)
        if total > MAX_HEAD_BYTES:
            raise BadRequest("header too large")
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if line:
            lines.append(line)
        elif lines:
            return lines
        # Empty lines before the request line are ignored (RFC 9112, section 2.2).


# --- relaying ------------------------------------------------------------------------------------


@dataclass
class Counter:
    up: int = 0
    down: int = 0

    def add_up(self, n: int) -> None:
        self.up += n

    def add_down(self, n: int) -> None:
        self.down += n


async def _pump(
    src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: Callable[[int], None]
) -> bool:
    """Copy src to dst until EOF, then half-close dst. False when a connection failed."""
    try:
        while True:
            data = await src.read(CHUNK)
            if not data:
                break
            dst.write(data)
            count(len(data))
            await dst.drain()
        if dst.can_write_eof() and not dst.is_closing():
            dst.write_eof()
    except (OSError, RuntimeError):
        return False
    return True


async def relay(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
    counter: Counter,
    *,
    end_with_response: bool,
) -> None:
    up = asyncio.create_task(_pump(client_reader, upstream_writer, counter.add_up))
    down = asyncio.create_task(_pump(upstream_reader, client_writer, counter.add_down))
    try:
        pending: set[asyncio.Task[bool]] = {up, down}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if end_with_response and down in done:
                break
            if not all(task.result() for task in done):
                break
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a connection, dropping unsent data if it does not flush in time.

    The socket itself is closed by the loop a turn after ``abort()``; the proxy's shutdown runs
    a few more turns before stopping the loop.
    """
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise


async def respond(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    status: int,
    phrase: str,
    body: str,
) -> None:
    """Send a short plain-text response and finish the connection politely.

    After the response the proxy half-closes and reads (and drops) what the client still sends
    for a moment, so that closing with unread request bytes does not reset the connection before
    the client has read the answer.
    """
    data = (body + "\n").encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(data)}\r\n"
        "Connection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError, RuntimeError, TimeoutError):
        writer.write(head.encode("ascii") + data)
        async with asyncio.timeout(_LINGER_SECONDS):
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            remaining = _LINGER_BYTES
            while remaining > 0:
                chunk = await reader.read(min(CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__
