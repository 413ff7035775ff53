"""The control protocol between `strongroom.sandbox.launch` and the bootstrap: JSON lines on
two sockets, read with limits.

:class:`Channel` is one socket and what is buffered from it: the supervisor's (trusted: the
layers it confined the tool with, write and connect figures, usage) or the tool's (its
result or error, host requests). :func:`read_control` takes what arrived into the launch's
`LaunchResult` and answers host requests. A line longer than the channel's limit, a line
that is not a JSON object of at most :data:`MAX_CONTROL_DEPTH` levels, or a message type
the tool may not send cuts the channel: the invocation is a sandbox violation and the
launch kills the process group. :func:`send` writes one message.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
from typing import TYPE_CHECKING, Any

from strongroom.errors import StrongroomError

if TYPE_CHECKING:
    from strongroom.sandbox.launch import HostHandler, LaunchResult

__all__ = ["MAX_CONTROL_DEPTH", "MAX_CONTROL_LINE", "Channel", "read_control", "send"]

MIB = 1024 * 1024
MAX_CONTROL_LINE = 256 * MIB
MAX_CONTROL_DEPTH = 256  # nesting of arrays and objects in one control message

_TOOL_MESSAGES = frozenset({"host", "result", "error"})


class Channel:
    """One of the child's JSON-lines sockets and what is buffered from it. ``trusted``: the
    supervisor's (layers, usage); otherwise the tool's (result, error, host requests),
    where anything else is a protocol violation."""

    def __init__(self, sock: socket.socket, *, trusted: bool, limit: int) -> None:
        self.sock = sock
        self.trusted = trusted
        self.limit = limit  # bytes of one message
        self.buffer = bytearray()


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"
    with contextlib.suppress(OSError):  # the child is gone; its exit status says why
        sock.sendall(data)


def read_control(
    channel: Channel,
    result: LaunchResult,
    host: HostHandler | None,
    selector: selectors.BaseSelector,
) -> None:
    """Take what arrived on ``channel``: each whole line is one message, recorded in
    ``result`` (host requests are answered through ``host``); at EOF the channel is
    unregistered."""
    sock, buffer = channel.sock, channel.buffer
    try:
        chunk = sock.recv(1024 * 1024)
    except OSError:
        chunk = b""
    if not chunk:
        selector.unregister(sock)
        return
    buffer.extend(chunk)
    while result.violation is None:
        message = _next_message(channel, result, selector)
        if message is None:
            break
        if channel.trusted:
            _take_supervisor_message(message, result)
        else:
            _take_tool_message(message, sock, result, host, selector)


def _next_message(
    channel: Channel, result: LaunchResult, selector: selectors.BaseSelector
) -> dict[str, Any] | None:
    """The next whole message buffered from ``channel``; None when no line is complete yet,
    or when the line is too long or not a JSON object of at most `MAX_CONTROL_DEPTH` levels
    (then the channel is cut)."""
    sock, buffer = channel.sock, channel.buffer
    end = buffer.find(b"\n")
    if (end if end >= 0 else len(buffer)) > channel.limit:
        buffer.clear()
        _cut(
            result,
            selector,
            sock,
            f"is larger than the policy's {channel.limit // MIB} MiB "
            "(write large results to a file under a write path)",
            reason="response_too_large",
        )
        return None
    if end < 0:
        return None
    line = bytes(buffer[:end])
    del buffer[: end + 1]
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nested past Python's limit
        message = None
    if not isinstance(message, dict) or _too_deep(message, MAX_CONTROL_DEPTH):
        _cut(result, selector, sock, f"is not a JSON object of at most {MAX_CONTROL_DEPTH} levels")
        return None
    return message


def _take_supervisor_message(message: dict[str, Any], result: LaunchResult) -> None:
    """Which of the supervisor's figures a message carries (the layers it confined the tool
    with, writes, refused connects, peak memory); anything else is ignored."""
    kind = message.get("type")
    if kind == "confined":
        layers = message.get("layers")
        result.confined = layers if isinstance(layers, dict) else {}
    elif kind == "writes" and isinstance(message.get("writes"), dict):
        result.writes = message["writes"]
    elif kind == "connects" and isinstance(message.get("connects"), dict):
        result.connects = message["connects"]
    elif kind == "usage" and isinstance(message.get("max_rss_kib"), int):
        result.tool_max_rss_kib = message["max_rss_kib"]


def _take_tool_message(
    message: dict[str, Any],
    sock: socket.socket,
    result: LaunchResult,
    host: HostHandler | None,
    selector: selectors.BaseSelector,
) -> None:
    """Whether the tool may send this message: a host request is answered, its first result
    or error is the invocation's answer, any other type cuts the channel."""
    kind = message.get("type")
    if kind not in _TOOL_MESSAGES:
        _cut(result, selector, sock, f"has a type the tool may not send: {str(kind)[:40]!r}")
        return
    if kind == "host":
        reply = _answer(host, message)
        result.host_calls.append(
            {"op": message.get("op"), "ok": "error" not in reply, "error": reply.get("error")}
        )
        send(sock, reply)
    elif result.message is None:
        result.message = message


def _answer(handler: HostHandler | None, message: dict[str, Any]) -> dict[str, Any]:
    reply: dict[str, Any] = {"type": "host_result", "id": message.get("id")}
    op, params = message.get("op"), message.get("params")
    if handler is None:
        reply["error"] = {"code": "permission_denied", "message": "no host services for this tool"}
    elif not isinstance(op, str) or not isinstance(params, dict):
        reply["error"] = {"code": "validation_error", "message": "malformed host request"}
    else:
        try:
            reply["result"] = handler(op, params)
        except StrongroomError as exc:
            reply["error"] = {"code": exc.code, "message": exc.message}
    return reply


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` deep (iteratively)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _cut(
    result: LaunchResult,
    selector: selectors.BaseSelector,
    sock: socket.socket,
    why: str,
    *,
    reason: str = "bad_control_message",
) -> None:
    """The tool broke the control protocol: what it sent is not trusted any further, the
    invocation ends as a sandbox violation and the caller kills the process group."""
    result.violation = f"a control message {why}"
    result.message = {
        "type": "error",
        "code": "sandbox_violation",
        "message": f"the tool broke the control protocol: {result.violation}",
        "details": {"reason": reason},
    }
    with contextlib.suppress(KeyError, ValueError):
        selector.unregister(sock)
