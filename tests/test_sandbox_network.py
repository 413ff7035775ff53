"""An allowlisted network: the tool reaches listed hosts through the runner's egress proxy;
a host not on the list is refused by the proxy, a direct connection around the proxy by
Landlock, UDP by seccomp. Every refusal is in the audit record."""

from __future__ import annotations

import errno
import http.server
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from _lane import Lane, manifest, open_lane, policy, require_sandbox, tool
from strongroom.sandbox.host import probe_host
from strongroom.sandbox.proxy import EgressProxy


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def web() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


async def _open_web_lane(root: Path, web: int, disabled: frozenset[str] = frozenset()) -> Lane:
    lane = await open_lane(root, disabled=disabled)
    net_policy = policy(
        sandbox_id="web-policy",
        network={"mode": "allowlist", "allow_hosts": ["127.0.0.1"], "allow_ports": [web]},
    )
    tools = [
        tool(name, entry, level="A0", policy_refs=["web-policy@1.0.0"])
        for name, entry in (
            ("http_get", "lane_tools:http_get"),
            ("tcp_connect", "probe_tools:tcp_connect"),
            ("udp_send", "probe_tools:udp_send"),
            ("resolve_dns", "probe_tools:resolve_dns"),
            ("dial_proxy_port", "probe_tools:dial_proxy_port"),
            ("tcp_tricks", "probe_tools:tcp_tricks"),
        )
    ]
    await lane.publish(net_policy, manifest(tools))
    return lane


@pytest.fixture
async def lane(tmp_path: Path, web: int) -> AsyncIterator[Lane]:
    require_sandbox()
    if not probe_host().available()["landlock_net"]:
        pytest.skip("Landlock ABI 4 (TCP rules) is needed to pin connections to the proxy")
    lane = await _open_web_lane(tmp_path, web)
    try:
        yield lane
    finally:
        await lane.vault.close()


async def test_listed_host_is_reachable_through_the_proxy(lane: Lane, web: int) -> None:
    response = await lane.run("http_get", {"url": f"http://127.0.0.1:{web}/ok"})
    assert response.ok, response.error
    assert response.output == {"status": 200, "body": "hello from /ok"}
    assert "egress_proxy" in response.layers
    assert "landlock_net" in response.layers
    end = await lane.end_record(response)
    assert end["denied_connections"] == []


async def test_unlisted_host_is_refused_and_audited(lane: Lane, web: int) -> None:
    response = await lane.run("http_get", {"url": f"http://localhost:{web}/secret"})
    assert response.error is not None
    assert response.error.code == "sandbox_violation"
    end = await lane.end_record(response)
    assert end["error_code"] == "sandbox_violation"
    [denied] = end["denied_connections"]
    assert denied["host"] == "localhost"
    assert denied["allowed"] is False


async def test_unlisted_port_is_refused(lane: Lane, web: int) -> None:
    other = socket.create_server(("127.0.0.1", 0))
    try:
        port = other.getsockname()[1]
        response = await lane.run("http_get", {"url": f"http://127.0.0.1:{port}/"})
    finally:
        other.close()
    assert response.error is not None
    assert response.error.code == "sandbox_violation"
    end = await lane.end_record(response)
    assert end["denied_connections"][0]["port"] == port


async def test_direct_connection_around_the_proxy_is_blocked(lane: Lane, web: int) -> None:
    """Around the proxy to a listening service (the test's web server, by address and
    port): refused before the kernel tries it, and the attempt is in the audit record."""
    response = await lane.run("tcp_connect", {"port": web})
    assert response.error is not None
    assert response.error.code == "sandbox_violation"
    end = await lane.end_record(response)
    assert {"host": "127.0.0.1", "port": web} in [
        {"host": d["host"], "port": d["port"]} for d in end["denied_connections"]
    ]


async def test_fast_open_and_mptcp_are_refused(lane: Lane, web: int) -> None:
    """TCP Fast Open connects from sendto(2), not connect(2), and MPTCP sockets are outside
    Landlock's TCP rules: seccomp refuses both."""
    response = await lane.run("tcp_tricks", {"address": "127.0.0.1", "port": web})
    assert response.ok, response.error
    assert response.output == {"fastopen": "EPERM", "mptcp": "EPERM"}


async def test_udp_and_dns_stay_blocked(lane: Lane) -> None:
    udp = await lane.run("udp_send", {"port": 53})
    assert udp.error is not None
    assert udp.error.code == "sandbox_violation"
    dns = await lane.run("resolve_dns", {"host": "example.com"})
    assert dns.error is not None
    assert dns.error.code == "sandbox_violation"


def _host_address() -> str | None:
    """This host's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


class _Trap:
    """Services listening at the proxy's own port on every other address of this host: what
    a tool dialling that port around the proxy would reach."""

    def __init__(self) -> None:
        self.servers: list[socket.socket] = []
        self.addresses: list[str] = []
        self.reached: list[str] = []
        self.threads: list[threading.Thread] = []
        self.refused: dict[str, OSError] = {}

    def open(self, port: int) -> None:
        candidates = [
            ("127.0.0.2", socket.AF_INET),
            ("127.1.2.3", socket.AF_INET),
            ("::1", socket.AF_INET6),
        ]
        if (address := _host_address()) is not None:
            candidates.append((address, socket.AF_INET))
        for address, family in candidates:
            try:
                server = socket.create_server((address, port), family=family)
            except OSError as exc:
                self.refused[address] = exc  # no IPv6 here, or no such address on this host
                continue
            self.servers.append(server)
            self.addresses.append(address)
            thread = threading.Thread(target=self._serve, args=(server, address), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, server: socket.socket, address: str) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                self.reached.append(address)
                conn.sendall(b"pwned")

    def close(self) -> None:
        for server in self.servers:
            server.close()
        for thread in self.threads:
            thread.join(timeout=5)


async def test_dialling_the_proxy_port_at_other_addresses_never_leaves_the_namespace(
    lane: Lane, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not probe_host().available()["netns"]:
        pytest.skip("needs network namespaces (the degraded path is documented, not private)")
    trap = _Trap()
    start = EgressProxy.start

    def start_and_trap(proxy: EgressProxy) -> int:
        port = start(proxy)
        trap.open(port)
        return port

    monkeypatch.setattr(EgressProxy, "start", start_and_trap)
    host = _host_address()
    addresses = ["127.0.0.1", "127.0.0.2", "127.1.2.3", "::1", "::2", "10.255.255.1"]
    try:
        response = await lane.run(
            "dial_proxy_port",
            {
                "addresses": addresses + ([host] if host else []),
                "target": "http://unlisted.example/",
            },
        )
    finally:
        trap.close()
    assert response.ok, response.error
    found = response.output["found"]
    # Some hosts (gVisor-style sandboxes, IPv6 off, no default route) have no other address
    # to listen on; then the supervisor's EACCES for each address below is the whole proof.
    # A trap refused for any other reason (the port taken everywhere) is a broken test.
    unavailable = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)
    assert trap.addresses or all(e.errno in unavailable for e in trap.refused.values()), (
        trap.refused
    )
    assert trap.reached == []
    assert not any("pwned" in outcome for outcome in found.values()), found
    # The namespace's loopback leads to the proxy, which refuses the unlisted host; every
    # other address is refused by the supervisor, which sees each connect(2), and recorded.
    assert found["127.0.0.1"].startswith("answered: HTTP/1.1 403"), found
    direct = {address for address in found if address not in ("127.0.0.1", "::1")}
    for address in direct:
        assert found[address] == "EACCES", (address, found)
    end = await lane.end_record(response)
    assert "netns" in end["layers_enforced"]
    assert {d["host"] for d in end["denied_connections"]} == {"unlisted.example"} | direct
    port = response.output["port"]
    for record in end["denied_connections"]:
        if record["host"] in direct:
            assert record["port"] == port
            assert record["method"] == "connect"


async def test_without_namespaces_a_dial_of_the_proxy_port_elsewhere_is_refused(
    tmp_path: Path, web: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a host without user namespaces Landlock pins the proxy's port, not its address;
    the supervisor's connect watch refuses the other addresses and records them (a best
    effort there: docs/security.md)."""
    require_sandbox()
    lane = await _open_web_lane(tmp_path, web, disabled=frozenset({"netns"}))
    trap = _Trap()
    start = EgressProxy.start

    trap_port: list[int] = []

    def start_and_trap(proxy: EgressProxy) -> int:
        port = start(proxy)
        if not trap_port:  # the first invocation's port: the second dials it from outside
            trap.open(port)
            trap_port.append(port)
        return port

    monkeypatch.setattr(EgressProxy, "start", start_and_trap)
    try:
        response = await lane.run(
            "dial_proxy_port",
            {"addresses": ["127.0.0.2", "127.0.0.1"], "target": "http://unlisted.example/"},
        )
        end = await lane.end_record(response)
        tricks = await lane.run("tcp_tricks", {"address": "127.0.0.2", "port": trap_port[0]})
    finally:
        trap.close()
        await lane.vault.close()
    assert response.ok, response.error
    assert "127.0.0.2" in trap.addresses, "no trap on 127.0.0.2"
    assert trap.reached == []
    assert response.output["found"]["127.0.0.2"] == "EACCES"
    assert response.output["found"]["127.0.0.1"].startswith("answered: HTTP/1.1 403")
    assert "netns" not in end["layers_enforced"]
    assert {d["host"] for d in end["denied_connections"]} == {"unlisted.example", "127.0.0.2"}
    # A trap on another port than this invocation's proxy: Landlock alone would refuse it;
    # what matters is that neither trick reaches it or gets a socket.
    assert tricks.output == {"fastopen": "EPERM", "mptcp": "EPERM"}
    assert trap.reached == []
