"""The egress proxy's pure parts: host-name and allowlist-pattern matching, and parsing and
rewriting HTTP request heads (no I/O here; `strongroom.sandbox.proxy` does the serving)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BadRequest",
    "Request",
    "forward_head",
    "host_allowed",
    "matches",
    "normalize_host",
    "normalize_pattern",
    "parse_request",
]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "upgrade",
        "host",
    }
)


# --- host names and patterns ---------------------------------------------------------------------


def normalize_host(host: str) -> str | None:
    """The canonical form of a host (lower case, no brackets or trailing dot), None if invalid."""
    if not host or not host.isascii():
        return None
    bracketed = host.startswith("[") and host.endswith("]")
    name = host[1:-1] if bracketed else host
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        if bracketed:
            return None
    else:
        if bracketed and address.version != 6:
            return None
        return str(address)
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 253:
        return None
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        return None  # the C resolver would read this as an address (127.1, 0x7f000001)
    return name


def _is_address(normalized: str) -> bool:
    try:
        ipaddress.ip_address(normalized)
    except ValueError:
        return False
    return True


def normalize_pattern(pattern: str) -> str | None:
    """``*.`` plus a canonical name for wildcards, else the canonical host; None if invalid."""
    if pattern.startswith("*."):
        base = normalize_host(pattern[2:])
        if base is None or _is_address(base):
            return None
        return "*." + base
    return normalize_host(pattern)


def matches(normalized_host: str, normalized_patterns: Sequence[str]) -> bool:
    is_address = _is_address(normalized_host)
    for pattern in normalized_patterns:
        if pattern.startswith("*."):
            # A valid name never starts with ".", so a suffix match leaves at least one label.
            if not is_address and normalized_host.endswith(pattern[1:]):
                return True
        elif pattern == normalized_host:
            return True
    return False


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """Whether ``host`` is allowed by the allowlist ``patterns``.

    Case-insensitive and trailing-dot-insensitive. ``*.example.com`` matches subdomains at any
    depth but not ``example.com``; IP literals (IPv6 optionally in brackets) match only the same
    address listed literally. An invalid host never matches; invalid patterns are ignored.
    """
    normalized = normalize_host(host)
    if normalized is None:
        return False
    usable = [p for p in (normalize_pattern(pattern) for pattern in patterns) if p is not None]
    return matches(normalized, usable)


# --- request parsing -----------------------------------------------------------------------------


class BadRequest(Exception):
    def __init__(self, reason: str, method: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.method = method


@dataclass(frozen=True)
class Request:
    method: str
    host: str
    port: int
    version: str
    authority: str = ""
    path: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def is_connect(self) -> bool:
        return self.method == "CONNECT"


def _split_authority(authority: str, default_port: int | None, method: str) -> tuple[str, int]:
    if not authority or "@" in authority:
        raise BadRequest("invalid authority", method)
    port_text: str | None
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise BadRequest("invalid authority", method)
        raw_host, rest = authority[: end + 1], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            raise BadRequest("invalid authority", method)
        port_text = rest[1:] if rest else None
    else:
        raw_host, sep, port_text = authority.rpartition(":")
        if not sep:
            raw_host, port_text = authority, None
        if ":" in raw_host:
            raise BadRequest("IPv6 literal must be in brackets", method)
    if not port_text:
        if default_port is None:
            raise BadRequest("missing port", method)
        port = default_port
    else:
        if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
            raise BadRequest("invalid port", method)
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise BadRequest("invalid port", method)
    host = normalize_host(raw_host)
    if host is None:
        raise BadRequest("invalid host", method)
    return host, port


def _parse_headers(lines: Sequence[bytes], method: str) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for raw in lines:
        if raw[:1] in (b" ", b"\t"):
            raise BadRequest("obsolete header folding", method)
        if b"\r" in raw or b"\0" in raw:
            raise BadRequest("invalid header", method)
        text = raw.decode("latin-1")
        name, sep, value = text.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise BadRequest("invalid header", method)
        headers.append((name, value.strip(" \t")))
    return tuple(headers)


def parse_request(lines: Sequence[bytes]) -> Request:
    try:
        request_line = lines[0].decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("non-ASCII request line") from None
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise BadRequest("malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise BadRequest("malformed request line")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadRequest("unsupported HTTP version", method)
    headers = _parse_headers(lines[1:], method)
    if method == "CONNECT":
        host, port = _split_authority(target, None, method)
        return Request(method, host, port, version)
    scheme = target[:8].lower()
    if scheme.startswith("http://"):
        rest = target[7:]
        cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        authority, path = rest[:cut], rest[cut:]
        path = path.partition("#")[0]
        if not path.startswith("/"):
            path = "/" + path
        host, port = _split_authority(authority, 80, method)
        return Request(method, host, port, version, authority, path, headers)
    if scheme == "https://":
        raise BadRequest("https:// requests must use CONNECT", method)
    raise BadRequest("unsupported request form", method)


def forward_head(request: Request) -> bytes:
    """The origin-form request head sent upstream for an absolute-form request."""
    named_by_connection: set[str] = set()
    for name, value in request.headers:
        if name.lower() in ("connection", "proxy-connection"):
            named_by_connection.update(t.strip().lower() for t in value.split(","))
    # The body's framing stays whatever the Connection header claims: it is relayed unchanged.
    drop = (_HOP_BY_HOP | named_by_connection) - {"content-length", "transfer-encoding"}
    out = [f"{request.method} {request.path} {request.version}", f"Host: {request.authority}"]
    out.extend(f"{name}: {value}" for name, value in request.headers if name.lower() not in drop)
    out.append("Connection: close")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")
