"""The escape-probe suite: hostile tools (tests/sandbox_tools/probe_tools.py) try every way
out the issue lists. Each must be blocked or capped, the side effect must not happen, and the
invocation's audit record must say what was denied. The whole suite runs twice: with every
layer this host has, and with the namespace layer off (a host without user namespaces),
where Landlock + seccomp + rlimits must hold on their own."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import secrets
import signal
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from _lane import Lane, manifest, open_lane, policy, require_sandbox, tool

PROBES = [
    "read_secret",
    "write_outside",
    "write_via_symlink",
    "write_dotdot",
    "tcp_connect",
    "udp_send",
    "resolve_dns",
    "fork_bomb",
    "allocate",
    "spin",
    "leave_child",
    "dump_environment",
    "read_parent_environ",
    "ptrace_sibling",
    "new_user_namespace",
    "write_vault",
    "signal_runner",
    "keep_sysv_segment",
    "hostile_control",
    "deep_scratch",
    "big_response",
    "allocate_in_children",
    "write_volume",
    "many_files",
    "sparse_files",
    "hard_links",
    "answer_then_die",
]

#: The escape lane's write quota: small, so probes far beyond it stay quick.
WRITE_MIB = 64
WRITE_FILES = 12_000  # deep_scratch's 5,000 levels take 10,001

RUNNER_SECRET = "runner-secret-9f3c1e"


@pytest.fixture(params=["all-layers", "no-namespaces"])
async def lane(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Lane]:
    require_sandbox()
    disabled: frozenset[str] = frozenset()
    if request.param == "no-namespaces":
        # A host without user namespaces: no network namespace and, unless root, no mount
        # namespace for the write quota either.
        disabled = frozenset({"netns"} if os.geteuid() == 0 else {"netns", "write_quota"})
    lane = await open_lane(tmp_path, disabled=disabled)
    tools = [tool(name, f"probe_tools:{name}", timeout=20) for name in PROBES]
    tools[PROBES.index("spin")]["constraints"]["timeout_seconds"] = 2
    resources = {
        "cpu_cores": 1,
        "memory_mb": 256,
        "timeout_seconds": 30,
        "max_write_mb": WRITE_MIB,
        "max_files": WRITE_FILES,
    }
    await lane.publish(policy(resources=resources), manifest(tools))
    (tmp_path / "secret.txt").write_text("top secret: s3cr3t-v4lue")
    try:
        yield lane
    finally:
        await lane.vault.close()


@pytest.fixture
def listener() -> Iterator[int]:
    """A local TCP service that answers anyone who reaches it."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    reached: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                reached.append(conn.recv(100))
                conn.sendall(b"pwned")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    server.close()
    thread.join(timeout=5)
    assert not reached, "a sandboxed tool reached the local service"


@pytest.fixture
def udp_sink() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    yield sock
    try:
        data = sock.recv(100)
    except TimeoutError:
        data = b""
    sock.close()
    assert data == b"", "a sandboxed tool sent a UDP datagram"


def _alive(pid: int) -> bool:
    """Running (a zombie, killed and waiting for init to reap it, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _denied(details: dict[str, object], code: str = "sandbox_violation") -> None:
    assert details["status"] == "failure"
    assert details["error_code"] == code, details


async def test_read_secret_outside_read_paths(lane: Lane) -> None:
    response = await lane.run("read_secret", {"path": str(lane.root / "secret.txt")})
    assert response.error is not None
    assert response.error.code == "sandbox_violation"
    end = await lane.end_record(response)
    _denied(end)
    assert end["violation"]["path"] == str(lane.root / "secret.txt")
    assert "s3cr3t" not in response.model_dump_json()
    # reading inside read_paths works under the same policy
    (lane.workdir / "in" / "ok.txt").write_text("fine")
    allowed = await lane.run("read_secret", {"path": "in/ok.txt"})
    assert allowed.ok
    assert allowed.output == {"leaked": "fine"}


async def test_write_outside_write_paths(lane: Lane) -> None:
    target = lane.root / "escaped.txt"
    for path in (str(target), str(lane.workdir / "in" / "x.txt")):
        response = await lane.run("write_outside", {"path": path})
        _denied(await lane.end_record(response))
    assert not target.exists()
    assert not (lane.workdir / "in" / "x.txt").exists()
    ok = await lane.run("write_outside", {"path": "out/fine.txt"})
    assert ok.ok
    assert (lane.workdir / "out" / "fine.txt").read_text() == "escaped"


async def test_write_through_symlink(lane: Lane) -> None:
    target = lane.root / "secret.txt"
    response = await lane.run("write_via_symlink", {"write_dir": "out", "target": str(target)})
    _denied(await lane.end_record(response))
    assert target.read_text() == "top secret: s3cr3t-v4lue"


async def test_write_through_dotdot(lane: Lane) -> None:
    response = await lane.run("write_dotdot", {"write_dir": "out", "name": "escaped.txt"})
    _denied(await lane.end_record(response))
    assert not (lane.workdir / "escaped.txt").exists()


async def test_tcp_to_local_service(lane: Lane, listener: int) -> None:
    response = await lane.run("tcp_connect", {"port": listener})
    end = await lane.end_record(response)
    _denied(end)
    assert "seccomp" in end["layers_enforced"]


async def test_udp(lane: Lane, udp_sink: socket.socket) -> None:
    response = await lane.run("udp_send", {"port": udp_sink.getsockname()[1]})
    _denied(await lane.end_record(response))


async def test_dns_resolution_fails(lane: Lane) -> None:
    response = await lane.run("resolve_dns", {"host": "example.com"})
    assert response.error is not None
    assert response.error.code == "sandbox_violation"
    end = await lane.end_record(response)
    _denied(end)
    assert end["violation"]["reason"] == "dns_blocked"


async def test_fork_bomb_is_capped(lane: Lane) -> None:
    response = await lane.run("fork_bomb", {"max": 5000})
    assert response.ok, response.error
    assert response.output["stopped_by"] == "EAGAIN"
    end = await lane.end_record(response)
    start = next(e for e in await lane.audit(response.request_id) if e.event == "execution.start")
    nproc = start.details["sandbox"]["rlimits"]["nproc"]
    assert 0 < response.output["forked"] < nproc
    assert end["leftover_processes_killed"] is True


async def test_allocating_4_gib_is_capped(lane: Lane) -> None:
    response = await lane.run("allocate", {"bytes": 4 << 30})
    assert response.error is not None
    assert response.error.code == "memory_exceeded"
    end = await lane.end_record(response)
    assert end["error_code"] == "memory_exceeded"
    assert end["usage"]["peak_memory_bytes"] < 256 * 1024 * 1024


async def test_spinning_forever_times_out(lane: Lane) -> None:
    response = await lane.run("spin")
    assert response.error is not None
    assert response.error.code == "timeout"
    end = await lane.end_record(response)
    assert end["error_code"] == "timeout"
    assert 1.5 < end["usage"]["wall_seconds"] < 15


async def test_children_left_behind_are_killed(lane: Lane) -> None:
    response = await lane.run("leave_child")
    assert response.ok, response.error
    pids = [pid for pid in response.output["pids"] if pid]
    assert pids
    assert not [pid for pid in pids if _alive(pid)]
    end = await lane.end_record(response)
    assert end["leftover_processes_killed"] is True


async def test_runner_environment_is_not_visible(
    lane: Lane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_TOKEN", RUNNER_SECRET)
    monkeypatch.setenv("LANE_VISIBLE", "allowed")
    response = await lane.run("dump_environment")
    assert response.ok
    environ = response.output["environ"]
    assert "RUNNER_TOKEN" not in environ
    assert RUNNER_SECRET not in str(environ)
    assert environ["LANE_VISIBLE"] == "allowed"
    leak = await lane.run("read_parent_environ", {"pid": os.getpid()})
    _denied(await lane.end_record(leak))
    assert RUNNER_SECRET not in leak.model_dump_json()


async def test_ptrace_of_a_sibling(lane: Lane) -> None:
    sibling = subprocess.Popen(["/bin/sleep", "60"])  # noqa: ASYNC220 - returns at once
    try:
        response = await lane.run("ptrace_sibling", {"pid": sibling.pid})
        _denied(await lane.end_record(response))
        assert sibling.poll() is None
    finally:
        sibling.send_signal(signal.SIGKILL)
        sibling.wait()


async def test_new_user_namespace(lane: Lane) -> None:
    response = await lane.run("new_user_namespace")
    end = await lane.end_record(response)
    _denied(end)
    assert "unshare" in str(end["violation"])


async def test_vault_files_are_out_of_reach(lane: Lane) -> None:
    database = lane.root / "vault" / "vault.db"
    before = database.read_bytes()
    response = await lane.run("write_vault", {"path": str(database)})
    _denied(await lane.end_record(response))
    # A blob over the inline threshold, so the vault holds a blob file (small ones are rows
    # of vault.db, covered above).
    run = await lane.vault.runs.create(project="escape", actor="tester")
    await lane.vault.artifacts.put_bytes(run.run_id, b"L" * 100_000, name="large.bin")
    blobs = next(p for p in (lane.root / "vault" / "blobs").rglob("*") if p.is_file())
    response = await lane.run("write_vault", {"path": str(blobs)})
    _denied(await lane.end_record(response))
    assert database.read_bytes()[: len(before)] == before
    report = await lane.vault.verify()
    assert report.ok, report


async def test_signals_to_the_runner(lane: Lane) -> None:
    response = await lane.run("signal_runner", {"pid": os.getpid()})
    assert not response.ok
    end = await lane.end_record(response)
    assert end["error_code"] == "sandbox_violation"


async def test_policy_that_reaches_the_vault_is_refused(lane: Lane) -> None:
    await lane.publish(
        policy(
            sandbox_id="too-wide",
            filesystem={"mode": "read-only", "read_paths": [str(lane.root)]},
        ),
        manifest(
            [tool("wide_reader", "probe_tools:read_secret", policy_refs=["too-wide@1.0.0"])],
            manifest_id="wide-tools",
        ),
    )
    response = await lane.run("wide_reader", {"path": str(lane.root / "secret.txt")})
    assert response.error is not None
    assert response.error.code == "sandbox_violation"
    assert response.error.details["reason"] == "policy_reaches_vault"
    refused = [e for e in await lane.audit(response.request_id) if e.event == "execution.refused"]
    assert refused
    assert refused[0].details["error_code"] == "sandbox_violation"


_IPC_PRIVATE, _IPC_CREAT, _IPC_RMID = 0, 0o1000, 0


def _sysv_segments() -> dict[int, int]:
    """key -> shmid of every SysV shared-memory segment of this host's IPC namespace."""
    lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return {int(line.split()[0]): int(line.split()[1]) for line in lines}


async def test_sysv_ipc_is_private_to_the_tool(lane: Lane) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    victim = libc.shmget(_IPC_PRIVATE, 4096, _IPC_CREAT | 0o600)
    assert victim >= 0, os.strerror(ctypes.get_errno())
    key = secrets.randbelow(1 << 30) + 1
    try:
        address = libc.shmat(victim, None, 0)
        ctypes.memmove(address, b"runner-secret-16", 16)
        libc.shmdt(ctypes.c_void_p(address))
        response = await lane.run("keep_sysv_segment", {"key": key, "victim": victim})
        assert response.ok, response.error
        assert response.output["victim_read"] is None
        if lane.namespaces:
            assert response.output["shmid"] >= 0  # the tool has SysV IPC, of its own
            assert key not in _sysv_segments()  # and nothing of it outlives the tool
            end = await lane.end_record(response)
            assert "netns" in end["layers_enforced"]
        else:  # no IPC namespace (a host without user namespaces): seccomp refuses SysV IPC
            assert response.output["shmid"] == -1
            assert response.output["errno"] == errno.EPERM
        assert key not in _sysv_segments()
    finally:
        libc.shmctl(victim, _IPC_RMID, None)
        if (left := _sysv_segments().get(key)) is not None:
            libc.shmctl(left, _IPC_RMID, None)


@pytest.mark.parametrize(
    "shape",
    ["deep_array", "deep_object", "not_an_object", "not_json", "forged_usage", "forged_layers"],
)
async def test_hostile_control_messages_end_the_invocation_not_the_runner(
    lane: Lane, shape: str
) -> None:
    response = await lane.run("hostile_control", {"shape": shape})
    assert response.error is not None, response.output
    assert response.error.code == "sandbox_violation"
    assert response.error.details["reason"] == "bad_control_message"
    end = await lane.end_record(response)
    _denied(end)
    # What the runner records came from the supervisor and the kernel, not the tool.
    assert "forged" not in end["layers_enforced"]
    assert end["usage"]["peak_memory_bytes"] > 1024 * 1024
    # The runner is unharmed: the next invocation runs.
    again = await lane.run("dump_environment")
    assert again.ok, again.error


async def test_a_deep_tree_left_in_scratch_is_removed(lane: Lane) -> None:
    response = await lane.run("deep_scratch", {"depth": 5000})
    assert response.ok, response.error
    assert not await asyncio.to_thread(os.path.lexists, response.output["scratch"])
    end = await lane.end_record(response)
    assert end["status"] == "success"


async def test_the_tool_does_not_hold_the_control_socket(lane: Lane) -> None:
    response = await lane.run("hostile_control", {"shape": "nothing"})
    assert response.ok, response.error
    assert response.output["control"] == "EBADF"


async def test_a_response_beyond_the_policy_cap_is_refused(lane: Lane) -> None:
    response = await lane.run("big_response", {"mib": 64})
    assert response.error is not None
    assert response.error.code == "sandbox_violation"
    assert response.error.details["reason"] == "response_too_large"
    assert response.output is None
    end = await lane.end_record(response)
    _denied(end)
    # Within the cap (16 MiB by default) a large answer is fine.
    ok = await lane.run("big_response", {"mib": 4})
    assert ok.ok, ok.error


def _tree_size(root: Path) -> tuple[int, int]:
    """Bytes and entries under ``root`` (links not followed)."""
    size = count = 0
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            count += 1
            size += os.lstat(os.path.join(folder, name)).st_size if name in files else 0
    return size, count


async def _quota_enforced(lane: Lane, response_id: str) -> bool:
    """Whether the invocation ran under the write quota; when not (a host without user
    namespaces, non-root), its plan must say so."""
    start = [e for e in await lane.audit(response_id) if e.event == "execution.start"][-1]
    sandbox = start.details["sandbox"]
    if "write_quota" in sandbox["enforced"]:
        return True
    # With every layer on, a host with user namespaces (CI's) must stage writes.
    assert not (lane.namespaces and os.environ.get("CI") == "true"), sandbox["skipped"]
    assert "mount namespace" in sandbox["skipped"]["write_quota"] or (
        "disabled" in sandbox["skipped"]["write_quota"]
    )
    return False


@pytest.mark.parametrize("where", ["out", "scratch"])
async def test_writing_gigabytes_stops_at_the_write_quota(lane: Lane, where: str) -> None:
    """2 GiB in 16 MiB files (each under the per-file cap): the tool gets ENOSPC at the
    policy's max_write_mb, the invocation fails as a write-quota violation, and no more than
    the quota reaches the host's disk."""
    out = lane.workdir / "out"
    small = await lane.run("write_volume", {"where": where, "mib": 16})
    assert small.ok, small.error
    if not await _quota_enforced(lane, small.request_id):
        return  # degraded: per-file cap only (docs/security.md), nothing more to probe here
    # Copied out to the write path; the scratch folder is discarded.
    assert _tree_size(out)[0] == (16 * 1024 * 1024 if where == "out" else 0)
    response = await lane.run("write_volume", {"where": where, "mib": 2048})
    assert response.error is not None, response.output
    assert response.error.code == "sandbox_violation", response.error
    assert response.error.details["reason"] == "write_quota_exceeded"
    end = await lane.end_record(response)
    _denied(end)
    assert end["writes"]["full"] is True
    assert end["writes"]["bytes"] <= WRITE_MIB * 1024 * 1024
    size, _ = await asyncio.to_thread(_tree_size, out)
    assert size <= (WRITE_MIB + 16) * 1024 * 1024  # the quota, plus the earlier 16 MiB
    start = [e for e in await lane.audit(response.request_id) if e.event == "execution.start"]
    scratch = Path(start[-1].details["sandbox"]["write_paths"][0])
    assert not scratch.parent.exists()  # the staging folder is gone


async def test_a_million_files_stop_at_the_file_quota(lane: Lane) -> None:
    out = lane.workdir / "out"
    response = await lane.run("many_files", {"where": "out", "count": 1_000_000})
    if not await _quota_enforced(lane, response.request_id):
        return
    assert response.error is not None, response.output
    assert response.error.code == "sandbox_violation", response.error
    assert response.error.details["reason"] == "write_quota_exceeded"
    end = await lane.end_record(response)
    assert end["writes"]["full"] is True
    assert end["writes"]["files"] <= WRITE_FILES
    _, count = await asyncio.to_thread(_tree_size, out)
    assert 1_000 < count <= WRITE_FILES  # what fit was copied out, nothing beyond


async def test_sparse_files_cost_the_disk_no_more_than_the_quota(lane: Lane) -> None:
    """Forty 1 GiB files, each one written byte in a hole: within the quota on the tool's
    tmpfs, and copied out as sparse files (40 GiB of zeros otherwise)."""
    out = lane.workdir / "out"
    response = await lane.run("sparse_files", {"count": 40, "mib": 1024})
    assert response.ok, response.error
    files = sorted(out.glob("sparse-*.bin"))
    assert len(files) == 40
    allocated = sum(f.stat().st_blocks * 512 for f in files)
    assert allocated <= WRITE_MIB * 1024 * 1024
    probe = files[0]
    assert probe.stat().st_size == 1024 * 1024 * 1024
    with probe.open("rb") as handle:
        handle.seek(512 * 1024 * 1024)
        assert handle.read(1) == b"x"


async def test_hard_links_cost_the_disk_no_more_than_the_quota(lane: Lane) -> None:
    """One 8 MiB file and 1,000 hard links to it (names cost the quota nothing): the
    copy-out writes at most the quota, then fails the invocation rather than write 8 GB."""
    out = lane.workdir / "out"
    response = await lane.run("hard_links", {"mib": 8, "links": 1000})
    if not await _quota_enforced(lane, response.request_id):
        return
    assert response.error is not None, response.output
    assert response.error.code == "sandbox_unavailable"
    assert response.error.details["reason"] == "copy_out_failed"
    allocated = sum(f.stat().st_blocks * 512 for f in out.glob("linked-*.bin"))
    assert allocated <= WRITE_MIB * 1024 * 1024


async def test_an_answer_from_a_tool_killed_before_exiting_is_not_a_success(lane: Lane) -> None:
    """The tool sends a success itself, then kills its own process: its writes were never
    copied out, so the invocation must not report success over stale write paths."""
    response = await lane.run("answer_then_die")
    if not await _quota_enforced(lane, response.request_id):
        return
    assert response.error is not None, response.output
    assert response.error.code == "sandbox_unavailable"
    assert response.error.details["reason"] == "writes_discarded"
    assert not (lane.workdir / "out" / "answered.txt").exists()


async def test_memory_is_capped_for_the_whole_process_tree(lane: Lane) -> None:
    """Four children of 200 MiB each stay under the per-process cap (the policy's 256 MiB
    of address space) but not under it together: the tool's control group stops them."""
    from strongroom.sandbox._cgroup import cgroup_support

    if cgroup_support() is None:
        pytest.skip("control groups are not writable here (a non-root runner): RLIMIT_AS only")
    response = await lane.run("allocate_in_children", {"children": 4, "mib": 200})
    assert response.error is not None, response.output
    assert response.error.code == "memory_exceeded"
    end = await lane.end_record(response)
    assert "cgroup" in end["layers_enforced"]
    within = await lane.run("allocate_in_children", {"children": 2, "mib": 50})
    assert within.ok, within.error
