"""The egress proxy of the sandbox's network allowlist.

In ``allowlist`` mode the confined tool may open TCP connections only to this proxy (Landlock
and seccomp enforce that elsewhere) and is pointed at it through ``HTTP_PROXY``/``HTTPS_PROXY``/
``ALL_PROXY`` (and their lower-case spellings). The proxy runs inside the trusted runner, decides
per connection whether the requested ``host:port`` is allowed, and records every decision as a
:class:`ProxyEvent` for the audit trail.

Two request forms are served, standard library only:

* ``CONNECT host:port HTTP/1.1`` (HTTPS and any other TCP protocol): when allowed, the proxy
  opens the upstream connection itself, answers ``200 Connection Established`` and relays bytes
  both ways. A half-close is passed on (the other direction keeps flowing) and the tunnel ends
  when both directions have ended or either side fails.
* Absolute-form plain HTTP (``GET http://host:port/path HTTP/1.1``): the request line is
  rewritten to origin-form, hop-by-hop headers are dropped, ``Host`` is set from the URI and
  ``Connection: close`` is forced; the rest of the client stream (the body, whatever its
  framing) is relayed unchanged and the response is relayed back until the origin closes. **One
  request per client connection**: a client that wants a second request opens a new connection
  (HTTP clients do this on their own when the connection closes).

Anything else (origin-form requests, ``https://`` URIs outside CONNECT, malformed request lines
or headers, a head over 64 KiB, a head that does not arrive within 30 s) gets ``400`` and a
denied event. Connections beyond ``max_connections`` get ``503`` before their request is read.

Policy
------
Ports: an empty ``allow_ports`` means 80 and 443 only; otherwise exactly the listed ports.

Hosts are compared case-insensitively and without a trailing dot. ``*.example.com`` matches any
subdomain at any depth (``a.example.com``, ``a.b.example.com``) but not ``example.com`` itself.
An IP literal (IPv4, or IPv6 in brackets in a request) is allowed only when that same address is
listed; wildcards never match addresses. Names whose last label is numeric (``127.1``,
``0x7f000001``, ``2130706433``), which the C resolver would read as addresses, are rejected as
invalid, so an address cannot be smuggled in as a "name". Non-ASCII names are rejected: tools
must send the IDNA (``xn--``) form, and the allowlist must list that form.

DNS rebinding
-------------
The allowlist is about *names*: the name the tool asked for is checked before any resolution,
and the proxy then resolves it itself and connects to the result. Nothing the tool resolves is
trusted, and there is no check-then-use gap between a checked address and a connected one
because no address is checked. The flip side is that whoever controls DNS for an allowed name
(for a wildcard: any name under it) decides where the connection lands, including loopback,
link-local metadata endpoints or the runner's LAN. Listing a name therefore trusts its DNS
owner; no filtering of the resolved addresses is done here.

Events
------
One event per client connection. ``allowed`` is the policy decision: a connection that the
policy allowed but whose upstream could not be reached is ``allowed=True`` with a reason
starting ``upstream`` (and the client got ``502``). ``at`` is the time of the decision; the event
is appended when the connection ends, so ``bytes_up`` (client to upstream: the rewritten request
head plus everything relayed after it; for CONNECT, what followed the CONNECT head) and
``bytes_down`` (upstream to client, not counting the proxy's own status line) are final. A tunnel
still open is therefore not yet in :meth:`EgressProxy.events`; :meth:`EgressProxy.close` ends
open tunnels and records them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

from strongroom.sandbox._proxy_io import (
    CHUNK,
    MAX_HEAD_BYTES,
    Counter,
    close_writer,
    describe,
    read_head,
    relay,
    respond,
)
from strongroom.sandbox._proxy_rules import (
    BadRequest,
    forward_head,
    host_allowed,
    matches,
    normalize_pattern,
    parse_request,
)

__all__ = ["EgressProxy", "ProxyEvent", "host_allowed"]

_log = logging.getLogger(__name__)

_HEAD_TIMEOUT = 30.0
_DEFAULT_PORTS = frozenset({80, 443})

_REASON_ALLOWED = "allowed"
_REASON_HOST = "host not in allowlist"
_REASON_PORT = "port not allowed"
_REASON_BUSY = "too many connections"


@dataclass(frozen=True)
class ProxyEvent:
    """One decision of the egress proxy, as recorded for the audit trail."""

    host: str
    port: int
    allowed: bool
    reason: str
    method: str
    bytes_up: int
    bytes_down: int
    at: float

    def to_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "port": self.port,
            "allowed": self.allowed,
            "reason": self.reason,
            "method": self.method,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "at": self.at,
        }


# --- the proxy -----------------------------------------------------------------------------------


@dataclass
class _Runtime:
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    server: asyncio.Server | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    active: int = 0
    closing: bool = False


class EgressProxy:
    """An allowlisting HTTP forward proxy on its own event loop in a daemon thread.

    ``allow_hosts`` are names, ``*.`` wildcards or IP literals (see :func:`host_allowed`);
    ``allow_ports`` empty means 80 and 443. ``deny-all`` mode needs no proxy at all, but an
    empty ``allow_hosts`` denies (and records) everything.
    """

    def __init__(
        self,
        allow_hosts: Sequence[str],
        allow_ports: Sequence[int] = (),
        *,
        bind_host: str = "127.0.0.1",
        connect_timeout: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        if isinstance(allow_hosts, str):
            raise TypeError("allow_hosts must be a sequence of strings, not a string")
        patterns: list[str] = []
        for pattern in allow_hosts:
            normalized = normalize_pattern(pattern) if isinstance(pattern, str) else None
            if normalized is None:
                raise ValueError(f"invalid allow_hosts entry: {pattern!r}")
            patterns.append(normalized)
        ports: set[int] = set()
        for port in allow_ports:
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise ValueError(f"invalid allow_ports entry: {port!r}")
            ports.add(port)
        if not connect_timeout > 0:
            raise ValueError("connect_timeout must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._patterns = tuple(patterns)
        self._ports = frozenset(ports) or _DEFAULT_PORTS
        self._bind_host = bind_host
        self._connect_timeout = connect_timeout
        self._max_connections = max_connections
        self._lock = threading.Lock()
        self._events: list[ProxyEvent] = []
        self._state = "new"
        self._runtime: _Runtime | None = None
        self._port = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> int:
        """Start serving on an ephemeral port of ``bind_host``; returns the port."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"EgressProxy cannot start: it is {self._state}")
            self._state = "starting"
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._run_loop, args=(loop,), name="strongroom-egress-proxy", daemon=True
        )
        runtime = _Runtime(loop, thread)
        thread.start()
        try:
            future = asyncio.run_coroutine_threadsafe(self._start_server(runtime), loop)
            self._port = future.result(timeout=30)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            with self._lock:
                self._state = "closed"
            raise
        with self._lock:
            self._runtime = runtime
            self._state = "running"
        return self._port

    def close(self) -> None:
        """Stop accepting, end every open connection (recording it), and join the thread.

        Idempotent; a proxy that was never started just becomes closed.
        """
        with self._lock:
            runtime = self._runtime
            if self._state == "starting":
                raise RuntimeError("EgressProxy is starting")
            self._state = "closed"
            self._runtime = None
        if runtime is None:
            return
        if threading.current_thread() is runtime.thread:
            raise RuntimeError("EgressProxy.close() cannot be called from the proxy's own thread")
        future = asyncio.run_coroutine_threadsafe(self._shutdown(runtime), runtime.loop)
        try:
            future.result(timeout=60)
        except Exception:
            _log.exception("egress proxy: shutdown failed")
        runtime.loop.call_soon_threadsafe(runtime.loop.stop)
        runtime.thread.join()

    def __enter__(self) -> EgressProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("EgressProxy has not been started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self._bind_host}]" if ":" in self._bind_host else self._bind_host
        return f"http://{host}:{self.port}"

    def adopt(self, sock: socket.socket) -> None:
        """Serve ``sock``, a client connection accepted elsewhere (the relay inside a tool's
        network namespace), exactly as one accepted here; the proxy owns and closes it. A
        proxy that is not running closes it at once."""
        with self._lock:
            runtime = self._runtime if self._state == "running" else None
        if runtime is None:
            sock.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(self._adopt(runtime, sock), runtime.loop)
        except RuntimeError:  # the loop stopped meanwhile
            sock.close()

    def events(self) -> list[ProxyEvent]:
        """A copy of the events recorded so far (thread-safe)."""
        with self._lock:
            return list(self._events)

    # --- event loop side ---------------------------------------------------------------------

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _start_server(self, runtime: _Runtime) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # Python 3.11's stream callback calls task.exception() on the handler task, which
            # raises (and logs an error) when the task ended cancelled: never let it.
            with contextlib.suppress(asyncio.CancelledError):
                await self._handle(runtime, reader, writer)

        server = await asyncio.start_server(
            handle, self._bind_host, 0, limit=MAX_HEAD_BYTES, reuse_address=True
        )
        runtime.server = server
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def _adopt(self, runtime: _Runtime, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_HEAD_BYTES, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            sock.setblocking(False)
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
        except (OSError, ValueError):  # not a stream socket, or already closed
            sock.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        with contextlib.suppress(asyncio.CancelledError):
            await self._handle(runtime, reader, writer)

    async def _shutdown(self, runtime: _Runtime) -> None:
        runtime.closing = True
        if runtime.server is not None:
            runtime.server.close()
        # Connections accepted (or adopted) just before the close reach their handler a few
        # loop turns later; keep draining until the set has stayed empty for several turns.
        # (Turns, not a sleep: a timed wait here cost every allowlisted invocation 30 ms.)
        quiet = 0
        while quiet < 8:
            tasks = [task for task in runtime.tasks if not task.done()]
            if tasks:
                quiet = 0
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            else:
                quiet += 1
                await asyncio.sleep(0)
        if runtime.server is not None:
            await runtime.server.wait_closed()
        await asyncio.get_running_loop().shutdown_default_executor()

    def _record(self, event: ProxyEvent) -> None:
        with self._lock:
            self._events.append(event)

    def _decide(self, host: str, port: int) -> str:
        if not matches(host, self._patterns):
            return _REASON_HOST
        if port not in self._ports:
            return _REASON_PORT
        return _REASON_ALLOWED

    async def _handle(
        self, runtime: _Runtime, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            runtime.tasks.add(task)
            task.add_done_callback(runtime.tasks.discard)
        try:
            if runtime.closing:
                return
            if runtime.active >= self._max_connections:
                self._record(ProxyEvent("", 0, False, _REASON_BUSY, "", 0, 0, time.time()))
                await respond(reader, writer, 503, "Service Unavailable", _REASON_BUSY)
                return
            runtime.active += 1
            try:
                await self._serve(reader, writer)
            finally:
                runtime.active -= 1
        except asyncio.CancelledError:
            pass  # the proxy is closing; the event (if any) was recorded by _serve
        except Exception:
            _log.exception("egress proxy: unexpected error in connection handler")
        finally:
            try:
                await close_writer(writer)
            except Exception:
                _log.exception("egress proxy: closing a client connection failed")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_HEAD_TIMEOUT):
                lines = await read_head(reader)
            request = parse_request(lines)
        except (BadRequest, TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, BadRequest) else "request head timed out"
            method = exc.method if isinstance(exc, BadRequest) else ""
            self._record(ProxyEvent("", 0, False, reason, method, 0, 0, time.time()))
            await respond(reader, writer, 400, "Bad Request", f"bad request: {reason}")
            return

        at = time.time()
        target = f"{request.host}:{request.port}"
        decision = self._decide(request.host, request.port)
        if decision != _REASON_ALLOWED:
            self._record(
                ProxyEvent(request.host, request.port, False, decision, request.method, 0, 0, at)
            )
            await respond(reader, writer, 403, "Forbidden", f"{target} denied: {decision}")
            return

        counter = Counter()
        outcome = _REASON_ALLOWED
        try:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    upstream_reader, upstream_writer = await asyncio.open_connection(
                        request.host, request.port, limit=CHUNK
                    )
            except TimeoutError:
                outcome = "upstream connect timed out"
            except OSError as exc:
                outcome = f"upstream connect failed: {describe(exc)}"
            if outcome != _REASON_ALLOWED:
                await respond(reader, writer, 502, "Bad Gateway", f"{target}: {outcome}")
                return
            try:
                if request.is_connect:
                    writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    await writer.drain()
                else:
                    head = forward_head(request)
                    upstream_writer.write(head)
                    counter.add_up(len(head))
                await relay(
                    reader,
                    writer,
                    upstream_reader,
                    upstream_writer,
                    counter,
                    end_with_response=not request.is_connect,
                )
            finally:
                await close_writer(upstream_writer)
        finally:
            self._record(
                ProxyEvent(
                    request.host,
                    request.port,
                    True,
                    outcome,
                    request.method,
                    counter.up,
                    counter.down,
                    at,
                )
            )
