"""The sandbox's egress proxy, over real loopback sockets (no mocks, no outside network)."""

from __future__ import annotations

import http.server
import json
import socket
import socketserver
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.sandbox.proxy import EgressProxy, ProxyEvent, host_allowed

TIMEOUT = 5.0


# --- servers -------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._reply(f"hello {self.path}".encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        report = {
            "path": self.path,
            "body": body.decode(),
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }
        self._reply(json.dumps(report).encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        while data := sock.recv(65536):
            sock.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = False


def _serve(server: socketserver.TCPServer) -> Iterator[int]:
    """Serve on a thread for the duration of a fixture; yield the port."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = False
    yield from _serve(server)


@pytest.fixture
def echo_port() -> Iterator[int]:
    yield from _serve(_EchoServer(("127.0.0.1", 0), _Echo))


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib would bypass the proxy for hosts in NO_PROXY; the tests want it used."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


# --- helpers -------------------------------------------------------------------------------------


def _opener(proxy: EgressProxy) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}))


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _raw(proxy: EgressProxy, request: bytes) -> bytes:
    """Send raw bytes to the proxy, half-close, and read its whole answer."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        return _read_all(sock)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _wait_events(
    proxy: EgressProxy, count: int, where: Callable[[ProxyEvent], bool] = lambda e: True
) -> list[ProxyEvent]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        events = [e for e in proxy.events() if where(e)]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.01)


def _tunnel(proxy: EgressProxy, target: str) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    return sock, _read_head(sock)


# --- host_allowed --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("a.example.com", True),
        ("A.B.Example.com", True),
        ("a.example.com.", True),
        ("example.com", False),
        ("badexample.com", False),
        ("a.example.org", False),
        ("example.com.evil.net", False),
    ],
)
def test_wildcard_matches_subdomains_only(host: str, expected: bool) -> None:
    assert host_allowed(host, ["*.example.com"]) is expected


def test_exact_names_and_ip_literals() -> None:
    assert host_allowed("Example.COM", ["example.com"])
    assert host_allowed("example.com", ["EXAMPLE.com."])
    assert not host_allowed("www.example.com", ["example.com"])
    assert host_allowed("127.0.0.1", ["127.0.0.1"])
    assert host_allowed("::1", ["[::1]"])
    assert host_allowed("[0:0::1]", ["::1"])
    assert not host_allowed("127.0.0.2", ["127.0.0.1"])
    assert not host_allowed("::ffff:127.0.0.1", ["127.0.0.1"])
    # Wildcards never match addresses; numeric "names" the resolver would read as addresses
    # are invalid and never match.
    assert not host_allowed("1.2.3.4", ["*.3.4"])
    assert not host_allowed("127.1", ["127.1"])
    assert not host_allowed("0x7f000001", ["0x7f000001"])
    assert not host_allowed("", ["example.com"])
    assert not host_allowed("bad host", ["bad host"])
    assert not host_allowed("example.com", [])


_label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_alpha_label = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
_names = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(_label, min_size=0, max_size=4),
    _alpha_label,
)


def _random_case(draw_bits: list[bool], text: str) -> str:
    return "".join(c.upper() if draw_bits[i % len(draw_bits)] else c for i, c in enumerate(text))


@given(_names, st.lists(st.booleans(), min_size=1, max_size=8))
def test_exact_name_matches_itself_in_any_case(name: str, bits: list[bool]) -> None:
    assert host_allowed(_random_case(bits, name), [name])
    assert host_allowed(name, [_random_case(bits, name)])


@given(_names, st.lists(_label, min_size=1, max_size=3))
def test_wildcard_matches_subdomains_never_the_bare_domain(domain: str, prefix: list[str]) -> None:
    pattern = f"*.{domain}"
    assert not host_allowed(domain, [pattern])
    assert host_allowed(".".join([*prefix, domain]), [pattern])
    # Gluing a label onto the domain without a dot is a different domain.
    assert not host_allowed(prefix[0] + domain, [pattern])


@given(st.text(max_size=30), st.lists(st.text(max_size=20), max_size=4))
def test_host_allowed_never_raises(host: str, patterns: list[str]) -> None:
    assert host_allowed(host, patterns) in (True, False)


def test_constructor_rejects_bad_policy() -> None:
    with pytest.raises(ValueError, match="allow_hosts"):
        EgressProxy(["exa mple.com"])
    with pytest.raises(ValueError, match="allow_hosts"):
        EgressProxy(["*.1.2.3.4"])
    with pytest.raises(ValueError, match="allow_ports"):
        EgressProxy(["example.com"], [0])
    with pytest.raises(TypeError):
        EgressProxy("example.com")


def test_event_to_dict() -> None:
    event = ProxyEvent("h", 1, True, "allowed", "GET", 2, 3, 4.0)
    assert event.to_dict() == {
        "host": "h",
        "port": 1,
        "allowed": True,
        "reason": "allowed",
        "method": "GET",
        "bytes_up": 2,
        "bytes_down": 3,
        "at": 4.0,
    }


# --- plain HTTP ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_proxy_env")
@pytest.mark.parametrize("allowed_host", ["127.0.0.1", "localhost"])
def test_plain_http_to_allowed_host(http_port: int, allowed_host: str) -> None:
    with EgressProxy([allowed_host], [http_port]) as proxy:
        url = f"http://{allowed_host}:{http_port}/some/path?q=1"
        with _opener(proxy).open(url, timeout=TIMEOUT) as response:
            assert response.status == 200
            assert response.read() == b"hello /some/path?q=1"
        (event,) = _wait_events(proxy, 1)
    assert event.allowed
    assert (event.host, event.port, event.method, event.reason) == (
        allowed_host,
        http_port,
        "GET",
        "allowed",
    )
    assert event.bytes_up > 0
    assert event.bytes_down > len(b"hello /some/path?q=1")


@pytest.mark.usefixtures("no_proxy_env")
def test_plain_http_to_unlisted_host_is_refused(http_port: int) -> None:
    with EgressProxy(["127.0.0.1"], [http_port]) as proxy:
        opener = _opener(proxy)
        with pytest.raises(urllib.error.HTTPError) as caught:
            opener.open(f"http://localhost:{http_port}/", timeout=TIMEOUT)
        with caught.value as error:
            assert error.code == 403
            body = error.read().decode()
        # Denied before any resolution: this name does not exist and is never looked up.
        with pytest.raises(urllib.error.HTTPError) as caught:
            opener.open("http://blocked.invalid/", timeout=TIMEOUT)
        with caught.value as error:
            assert error.code == 403
        events = proxy.events()
    assert "localhost" in body
    assert "host not in allowlist" in body
    assert [(e.host, e.port, e.allowed, e.reason, e.bytes_up, e.bytes_down) for e in events] == [
        ("localhost", http_port, False, "host not in allowlist", 0, 0),
        ("blocked.invalid", 80, False, "host not in allowlist", 0, 0),
    ]


def test_plain_http_rewrites_the_request(http_port: int) -> None:
    body = b"payload=1"
    request = (
        f"POST http://LocalHost:{http_port}/echo HTTP/1.1\r\n"
        "Host: somewhere-else.example\r\n"
        "Proxy-Connection: keep-alive\r\n"
        "Proxy-Authorization: Basic c2VjcmV0\r\n"
        "Connection: keep-alive, X-Hop\r\n"
        "Keep-Alive: 300\r\n"
        "X-Hop: 1\r\n"
        "X-Kept: yes\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with EgressProxy(["localhost"], [http_port]) as proxy:
        answer = _raw(proxy, request)
        (event,) = _wait_events(proxy, 1)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
    report = json.loads(payload)
    assert report["path"] == "/echo"
    assert report["body"] == "payload=1"
    headers = report["headers"]
    assert headers["host"] == f"LocalHost:{http_port}"
    assert headers["connection"] == "close"
    assert headers["x-kept"] == "yes"
    for dropped in ("proxy-connection", "proxy-authorization", "keep-alive", "x-hop"):
        assert dropped not in headers
    assert (event.method, event.host, event.allowed) == ("POST", "localhost", True)
    assert event.bytes_down == len(answer)


# --- CONNECT -------------------------------------------------------------------------------------


def test_connect_tunnels_bytes_and_counts_them(echo_port: int) -> None:
    payload = b"ping through the tunnel" * 100
    with EgressProxy(["127.0.0.1"], [echo_port]) as proxy:
        sock, head = _tunnel(proxy, f"127.0.0.1:{echo_port}")
        with sock:
            assert head == b"HTTP/1.1 200 Connection Established\r\n\r\n"
            sock.sendall(payload)
            assert _recv_exactly(sock, len(payload)) == payload
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(1) == b""  # the half-close reached the echo server and came back
        (event,) = _wait_events(proxy, 1)
    assert event.allowed
    assert (event.host, event.port, event.method, event.reason) == (
        "127.0.0.1",
        echo_port,
        "CONNECT",
        "allowed",
    )
    assert (event.bytes_up, event.bytes_down) == (len(payload), len(payload))


def test_connect_to_port_not_allowed_is_refused(echo_port: int) -> None:
    with EgressProxy(["127.0.0.1"]) as proxy:  # default ports: 80 and 443 only
        answer = _raw(proxy, f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\n\r\n".encode())
        events = proxy.events()
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert f"127.0.0.1:{echo_port}".encode() in answer
    assert b"port not allowed" in answer
    assert [e.to_dict() | {"at": 0} for e in events] == [
        {
            "host": "127.0.0.1",
            "port": echo_port,
            "allowed": False,
            "reason": "port not allowed",
            "method": "CONNECT",
            "bytes_up": 0,
            "bytes_down": 0,
            "at": 0,
        }
    ]


def test_connect_to_unlisted_ip_literals_is_refused(echo_port: int) -> None:
    with EgressProxy(["localhost"], [echo_port]) as proxy:
        v4 = _raw(proxy, f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\n\r\n".encode())
        v6 = _raw(proxy, f"CONNECT [::1]:{echo_port} HTTP/1.1\r\n\r\n".encode())
        events = proxy.events()
    assert v4.startswith(b"HTTP/1.1 403")
    assert v6.startswith(b"HTTP/1.1 403")
    assert [(e.host, e.reason) for e in events] == [
        ("127.0.0.1", "host not in allowlist"),
        ("::1", "host not in allowlist"),
    ]


def test_connect_upstream_failure_is_502() -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with EgressProxy(["127.0.0.1"], [closed_port]) as proxy:
        answer = _raw(proxy, f"CONNECT 127.0.0.1:{closed_port} HTTP/1.1\r\n\r\n".encode())
        (event,) = _wait_events(proxy, 1)
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"upstream connect failed" in answer
    assert event.allowed
    assert event.reason.startswith("upstream connect failed")


def test_parallel_tunnels(echo_port: int) -> None:
    with EgressProxy(["localhost"], [echo_port]) as proxy:

        def one(i: int) -> bytes:
            sock, head = _tunnel(proxy, f"localhost:{echo_port}")
            with sock:
                assert head.startswith(b"HTTP/1.1 200")
                message = f"tunnel {i} ".encode() * 50
                sock.sendall(message)
                echoed = _recv_exactly(sock, len(message))
                assert echoed == message
                return echoed

        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(one, range(20)))
        events = _wait_events(proxy, 20)
    assert len(results) == 20
    assert len(events) == 20
    assert all(e.allowed and e.reason == "allowed" for e in events)
    assert sorted(e.bytes_up for e in events) == sorted(len(r) for r in results)
    assert [e.bytes_up for e in events] == [e.bytes_down for e in events]


def test_connections_beyond_the_limit_get_503(echo_port: int) -> None:
    with EgressProxy(["127.0.0.1"], [echo_port], max_connections=2) as proxy:
        first, head1 = _tunnel(proxy, f"127.0.0.1:{echo_port}")
        second, head2 = _tunnel(proxy, f"127.0.0.1:{echo_port}")
        with first, second:
            assert head1.startswith(b"HTTP/1.1 200")
            assert head2.startswith(b"HTTP/1.1 200")
            answer = _raw(proxy, f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 503")
            busy = proxy.events()
        # Once those end, there is room again.
        _wait_events(proxy, 3)
        third, head3 = _tunnel(proxy, f"127.0.0.1:{echo_port}")
        with third:
            assert head3.startswith(b"HTTP/1.1 200")
    assert [(e.allowed, e.reason) for e in busy] == [(False, "too many connections")]


# --- malformed requests, lifecycle ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (b"garbage\r\n\r\n", "malformed request line"),
        (b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n", "unsupported request form"),
        (b"GET https://example.com/ HTTP/1.1\r\n\r\n", "https:// requests must use CONNECT"),
        (b"CONNECT example.com HTTP/1.1\r\n\r\n", "missing port"),
        (b"CONNECT ::1:443 HTTP/1.1\r\n\r\n", "IPv6 literal must be in brackets"),
        (b"CONNECT example.com:99999 HTTP/1.1\r\n\r\n", "invalid port"),
        (b"GET http://user@example.com/ HTTP/1.1\r\n\r\n", "invalid authority"),
        (b"GET http://ex ample.com/ HTTP/1.1\r\n\r\n", "malformed request line"),
        (b"GET http://127.1/ HTTP/1.1\r\n\r\n", "invalid host"),
        (b"GET http://example.com/ HTTP/2.0\r\n\r\n", "unsupported HTTP version"),
        (b"GET http://example.com/ HTTP/1.1\r\nno colon\r\n\r\n", "invalid header"),
        (b"GET http://example.com/ HTTP/1.1\r\n", "incomplete request"),
        (b"GET http://example.com/ HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", None),
    ],
)
def test_malformed_requests_get_400(request_bytes: bytes, reason: str | None) -> None:
    with EgressProxy(["example.com"]) as proxy:
        answer = _raw(proxy, request_bytes)
        (event,) = _wait_events(proxy, 1)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert not event.allowed
    assert event.reason == (reason or "header too large")
    assert (event.bytes_up, event.bytes_down) == (0, 0)


def test_many_headers_over_the_limit_get_400() -> None:
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(1000))
    with EgressProxy(["example.com"]) as proxy:
        answer = _raw(proxy, b"GET http://example.com/ HTTP/1.1\r\n" + headers + b"\r\n")
        (event,) = _wait_events(proxy, 1)
    assert answer.startswith(b"HTTP/1.1 400")
    assert event.reason == "header too large"


def test_close_is_idempotent_and_frees_the_port(echo_port: int) -> None:
    proxy = EgressProxy(["127.0.0.1"], [echo_port])
    proxy.close()  # never started: a no-op
    proxy = EgressProxy(["127.0.0.1"], [echo_port])
    port = proxy.start()
    assert proxy.port == port
    assert proxy.url == f"http://127.0.0.1:{port}"
    # An open tunnel is ended (and recorded) by close().
    sock, head = _tunnel(proxy, f"127.0.0.1:{echo_port}")
    with sock:
        assert head.startswith(b"HTTP/1.1 200")
        sock.sendall(b"abc")
        assert _recv_exactly(sock, 3) == b"abc"
        proxy.close()
        assert sock.recv(1) == b""
    proxy.close()
    (event,) = proxy.events()
    assert (event.reason, event.bytes_up, event.bytes_down) == ("allowed", 3, 3)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
    with pytest.raises(RuntimeError):
        proxy.start()
