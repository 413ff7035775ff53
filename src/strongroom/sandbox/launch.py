"""Start the bootstrap in a fresh process, talk to it, and bring the whole process group down.

`launch` is synchronous (the runner calls it in a worker thread): one selector loop watches
the child's stdout, stderr, control socket and pidfd against the wall-clock deadline. Resource
usage comes from ``wait4`` (the kernel's figures, not the child's say-so). The control
protocol on those sockets (JSON lines, read with limits) is `strongroom.sandbox._control`.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from strongroom.sandbox._cgroup import ToolCgroup
from strongroom.sandbox._control import MAX_CONTROL_LINE, Channel, read_control, send
from strongroom.sandbox.host import BOOTSTRAP

__all__ = ["HostHandler", "LaunchResult", "launch"]

HostHandler = Callable[[str, dict[str, Any]], Any]
"""``(op, params) -> result``; raise a `StrongroomError` to answer with an error."""

ConnectionHandler = Callable[[socket.socket], None]
"""Takes over one connection the tool opened to its namespace's egress relay."""

MAX_RELAYED = 4096  # connections relayed per invocation; more are closed unread

DRAIN_SECONDS = 2.0
_CANCEL_POLL = 0.2  # seconds between looks at a cancel event


@dataclass
class LaunchResult:
    """What happened to one sandboxed process."""

    message: dict[str, Any] | None = None
    confined: dict[str, Any] | None = None
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    wall_seconds: float = 0.0
    cpu_user_seconds: float = 0.0
    cpu_system_seconds: float = 0.0
    max_rss_kib: int = 0
    tool_max_rss_kib: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    output_truncated: bool = False
    leftover_processes: bool = False
    host_calls: list[dict[str, Any]] = field(default_factory=list)
    violation: str | None = None  # why the control channel was cut (the group is killed)
    cgroup: bool = False  # the tool's tree ran in a control group of its own
    cgroup_memory_exceeded: bool = False  # ...and hit its memory limit
    writes: dict[str, Any] | None = None  # the write quota's figures (from the supervisor)
    connects: dict[str, Any] | None = None  # connect(2) attempts refused (the supervisor's)

    @property
    def peak_kib(self) -> int:
        """The tool's peak RSS: from the bootstrap's supervisor when it reported (the
        runner's own ``wait4`` figure includes the runner's RSS at fork), else ``wait4``'s."""
        return self.tool_max_rss_kib if self.tool_max_rss_kib is not None else self.max_rss_kib

    def usage(self) -> dict[str, Any]:
        return {
            "wall_seconds": round(self.wall_seconds, 6),
            "cpu_user_seconds": round(self.cpu_user_seconds, 6),
            "cpu_system_seconds": round(self.cpu_system_seconds, 6),
            "cpu_seconds": round(self.cpu_user_seconds + self.cpu_system_seconds, 6),
            "peak_memory_bytes": self.peak_kib * 1024,
        }


class _Capture:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.truncated = False

    def add(self, data: bytes) -> None:
        room = self.limit - self.size
        if room <= 0:
            self.truncated = True
            return
        if len(data) > room:
            data = data[:room]
            self.truncated = True
        self.parts.append(data)
        self.size += len(data)

    def value(self) -> bytes:
        return b"".join(self.parts)


def kill_group(pgid: int) -> bool:
    """SIGKILL every process of the group; True if there was any."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def kill_uid(uid: int) -> bool:
    """SIGKILL every process running as ``uid`` (root runner, per-invocation uid): catches
    anything that left the process group on a host without seccomp. (Its twin for a runner
    that died is `_bootstrap._take_down`, which may not import this module.)"""
    found = False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                os.kill(int(entry.name), signal.SIGKILL)
                found = True
        except (OSError, ValueError):
            continue
    return found


def launch(
    plan: dict[str, Any],
    *,
    python: str,
    env: dict[str, str],
    timeout: float,
    host: HostHandler | None = None,
    output_limit: int = 8 * 1024 * 1024,
    sandbox_uid: int | None = None,
    cancel: threading.Event | None = None,
    connections: ConnectionHandler | None = None,
    message_limit: int = MAX_CONTROL_LINE,
) -> LaunchResult:
    """Run the bootstrap with ``plan``; never raises for what the tool does. Setting
    ``cancel`` kills the process group (checked at least every 0.2 s). When the plan's
    network namespace has an egress relay, every connection the tool opens to it arrives
    here (its descriptor passed over a socket of its own) and goes to ``connections``."""
    result = LaunchResult()
    # Two channels: the supervisor's (plan, layers, usage: only the bootstrap's supervisor,
    # outside the confinement, holds its other end) and the tool's (result, host calls).
    parent_sock, child_sock = socket.socketpair()
    tool_sock, tool_child = socket.socketpair()
    plan, relay_sock, relay_child = _with_relay(plan)
    group = _create_cgroup(plan)
    started = time.monotonic()
    proc = _spawn(plan, python, env, (child_sock, tool_child, relay_child), group)
    pgid = proc.pid
    out, err = _Capture(output_limit), _Capture(output_limit)
    control = Channel(parent_sock, trusted=True, limit=MAX_CONTROL_LINE)
    tool = Channel(tool_sock, trusted=False, limit=min(message_limit, MAX_CONTROL_LINE))
    assert proc.stdout is not None
    assert proc.stderr is not None
    pidfd = os.pidfd_open(proc.pid)
    selector = selectors.DefaultSelector()
    try:
        selector.register(proc.stdout, selectors.EVENT_READ, out)
        selector.register(proc.stderr, selectors.EVENT_READ, err)
        selector.register(parent_sock, selectors.EVENT_READ, control)
        selector.register(tool_sock, selectors.EVENT_READ, tool)
        selector.register(pidfd, selectors.EVENT_READ, "exit")
        if relay_sock is not None:
            selector.register(relay_sock, selectors.EVENT_READ, "relay")
        if group is not None:
            # The bootstrap forks nothing before it has its plan: no process escapes.
            result.cgroup = _join_cgroup(group, proc.pid)
        send(parent_sock, plan)
        status = _supervise(
            proc,
            selector,
            result,
            deadline=started + timeout,
            cancel=cancel,
            host=host,
            relay_sock=relay_sock,
            connections=connections,
        )
        result.wall_seconds = time.monotonic() - started
        _kill_leftovers(pgid, sandbox_uid, group, result)
        _drain(selector, result)
        if os.WIFSIGNALED(status):
            result.signal = os.WTERMSIG(status)
        else:
            result.exit_code = os.WEXITSTATUS(status)
    finally:
        selector.close()
        os.close(pidfd)
        _release(proc, (parent_sock, tool_sock, relay_sock), group)
    result.stdout, result.stderr = out.value(), err.value()
    result.output_truncated = out.truncated or err.truncated
    return result


def _with_relay(
    plan: dict[str, Any],
) -> tuple[dict[str, Any], socket.socket | None, socket.socket | None]:
    """Whether the plan's network namespace has an egress relay: if so, the socket pair its
    connections' descriptors arrive over, and a copy of the plan naming the child's end."""
    netns = plan["layers"].get("netns")
    if not (isinstance(netns, dict) and netns.get("relay_port")):
        return plan, None, None
    relay_sock, relay_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    plan = {**plan, "layers": {**plan["layers"], "netns": {**netns}}}
    plan["layers"]["netns"]["relay_fd"] = relay_child.fileno()
    return plan, relay_sock, relay_child


def _create_cgroup(plan: dict[str, Any]) -> ToolCgroup | None:
    """The control group the plan asks for, or None when it asks for none or this runner
    cannot create it (then the runner records the layer as missing)."""
    limits = plan["layers"].get("cgroup")
    if not isinstance(limits, dict):
        return None
    try:
        return ToolCgroup.create(int(limits["memory_bytes"]), int(limits["max_tasks"]))
    except OSError:
        return None  # not held: the runner records the layer as missing


def _spawn(
    plan: dict[str, Any],
    python: str,
    env: dict[str, str],
    child_ends: tuple[socket.socket, socket.socket, socket.socket | None],
    group: ToolCgroup | None,
) -> subprocess.Popen[bytes]:
    """The bootstrap, started in a session of its own with the child's ends of its sockets
    (the runner's copies of those ends are closed; the group is removed if it cannot start)."""
    child_sock, tool_child, relay_child = child_ends
    try:
        return subprocess.Popen(
            [
                python,
                "-I",
                "-B",
                str(BOOTSTRAP),
                str(child_sock.fileno()),
                str(tool_child.fileno()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=plan["cwd"],
            pass_fds=(child_sock.fileno(), tool_child.fileno())
            + ((relay_child.fileno(),) if relay_child is not None else ()),
            start_new_session=True,
        )
    except BaseException:
        if group is not None:
            group.remove()
        raise
    finally:
        child_sock.close()
        tool_child.close()
        if relay_child is not None:
            relay_child.close()


def _join_cgroup(group: ToolCgroup, pid: int) -> bool:
    """Whether the bootstrap (and so the tool's whole tree) runs in ``group``."""
    try:
        group.add(pid)
    except OSError:
        return False
    return True


def _supervise(
    proc: subprocess.Popen[bytes],
    selector: selectors.BaseSelector,
    result: LaunchResult,
    *,
    deadline: float,
    cancel: threading.Event | None,
    host: HostHandler | None,
    relay_sock: socket.socket | None,
    connections: ConnectionHandler | None,
) -> int:
    """Serve the child until it exits (output, control messages, host calls, relayed
    connections), killing its group at the deadline, on ``cancel`` or when it breaks the
    control protocol; its wait status."""
    pgid = proc.pid
    relayed = [0]
    exited = False
    status = 0
    while not exited:
        remaining = deadline - time.monotonic()
        if remaining <= 0 and not result.timed_out:
            result.timed_out = True
            kill_group(pgid)
        if cancel is not None and cancel.is_set() and not result.cancelled:
            result.cancelled = True
            kill_group(pgid)
        # with a cancel event, wake at least every _CANCEL_POLL seconds to look at it
        wait = max(min(remaining, _CANCEL_POLL) if cancel is not None else remaining, 0.05)
        events = selector.select(timeout=1.0 if result.timed_out else wait)
        for key, _ in events:
            if key.data == "exit":
                status = _reap(proc, result)
                exited = True
            elif isinstance(key.data, Channel):
                read_control(key.data, result, host, selector)
                if result.violation is not None:
                    kill_group(pgid)
            elif key.data == "relay":
                assert relay_sock is not None
                _read_relay(relay_sock, selector, connections, relayed)
            else:
                _read_pipe(selector, key)
    return status


def _reap(proc: subprocess.Popen[bytes], result: LaunchResult) -> int:
    """The exited child's wait status; its resource usage (the kernel's) goes into ``result``."""
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    result.cpu_user_seconds = rusage.ru_utime
    result.cpu_system_seconds = rusage.ru_stime
    result.max_rss_kib = rusage.ru_maxrss
    return status


def _kill_leftovers(
    pgid: int, sandbox_uid: int | None, group: ToolCgroup | None, result: LaunchResult
) -> None:
    """Whether the tool left processes behind (they die now: its process group, its uid and
    its control group), and whether its control group hit the memory limit."""
    # Anything the tool left behind (same process group: setsid is denied) dies now.
    result.leftover_processes = kill_group(pgid)
    if sandbox_uid is not None:
        result.leftover_processes = kill_uid(sandbox_uid) or result.leftover_processes
    if group is not None and result.cgroup:
        result.leftover_processes = group.kill_all() or result.leftover_processes
        result.cgroup_memory_exceeded = group.memory_exceeded()


def _release(
    proc: subprocess.Popen[bytes],
    socks: tuple[socket.socket, socket.socket, socket.socket | None],
    group: ToolCgroup | None,
) -> None:
    """Close the runner's ends of the child's sockets and pipes, kill and reap a child that
    was never reaped, and remove its control group."""
    for sock in socks:
        if sock is not None:
            sock.close()
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    if proc.returncode is None:
        kill_group(proc.pid)
        proc.wait()
    if group is not None:
        group.kill_all()
        group.remove()


def _read_pipe(selector: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
    """One chunk of the tool's stdout or stderr into its capture; EOF unregisters the pipe."""
    capture: _Capture = key.data
    chunk = os.read(key.fd, 65536)
    if chunk:
        capture.add(chunk)
    else:
        selector.unregister(key.fileobj)


def _read_relay(
    sock: socket.socket,
    selector: selectors.BaseSelector,
    connections: ConnectionHandler | None,
    relayed: list[int],
) -> None:
    """One descriptor from the relay in the tool's namespace. Whatever arrives (the tool owns
    the relay's end and may send anything) is handed on only if it is a stream socket, and
    at most `MAX_RELAYED` of them; the proxy behind ``connections`` decides the rest."""
    try:
        data, fds, _, _ = socket.recv_fds(sock, 1, 1)
    except OSError:
        data, fds = b"", []
    if not data and not fds:  # EOF (or an error): the relay is gone
        selector.unregister(sock)
        return
    for fd in fds:
        try:
            conn = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            continue
        if (
            connections is None
            or relayed[0] >= MAX_RELAYED
            or conn.type != socket.SOCK_STREAM
            or conn.family not in (socket.AF_INET, socket.AF_INET6)
        ):
            conn.close()
            continue
        relayed[0] += 1
        connections(conn)


def _drain(selector: selectors.BaseSelector, result: LaunchResult) -> None:
    """Read what is still buffered after the group is dead (bounded); host requests that
    arrive now are refused (no handler)."""
    until = time.monotonic() + DRAIN_SECONDS
    while selector.get_map() and time.monotonic() < until:
        events = selector.select(timeout=0.05)
        if not events:
            break
        for key, _ in events:
            if key.data in ("exit", "relay"):
                selector.unregister(key.fileobj)
            elif isinstance(key.data, Channel):
                read_control(key.data, result, None, selector)
            else:
                _read_pipe(selector, key)
