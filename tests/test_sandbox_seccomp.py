"""The seccomp-bpf filter: its bytes, checked by a small BPF interpreter for both arches, and its
effect in real child processes (no mocks).

Enforcement tests run ``python -I`` with the sandbox directory on ``sys.path`` (as the sandbox
child does), call ``_seccomp.install`` and print a JSON map of action -> "ok" or the errno
name. A control run without the filter shows each refusal comes from the filter. They skip
when seccomp filters are unsupported here, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.sandbox import _seccomp

SANDBOX_DIR = Path(_seccomp.__file__).resolve().parent

ALLOW = _seccomp.RET_ALLOW
EPERM = _seccomp.RET_ERRNO | errno.EPERM
ENOSYS = _seccomp.RET_ERRNO | errno.ENOSYS
KILL = _seccomp.RET_KILL_PROCESS

AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 1, 2, 10, 16, 17
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW = 1, 2, 3
SOCK_NONBLOCK, SOCK_CLOEXEC = 0o4000, 0o2000000
CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS = 0x10000000, 0x40000000, 0x00020000
# What glibc passes for fork() and pthread_create().
FORK_FLAGS = 0x01200011  # CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD
THREAD_FLAGS = 0x003D0F00


# --- a classic-BPF interpreter for the opcodes the filter uses -------------------------------


def _run_bpf(prog: bytes, arch: int, nr: int, args: tuple[int, ...] = ()) -> int:
    """Evaluate ``prog`` on a little-endian struct seccomp_data; return the action."""
    full_args = (*args, *(0,) * (6 - len(args)))
    data = struct.pack("<iIQ6Q", nr, arch, 0, *full_args)
    insns: list[tuple[int, int, int, int]] = [
        struct.unpack_from("=HBBI", prog, off) for off in range(0, len(prog), 8)
    ]
    acc, pc = 0, 0
    for _ in range(len(insns)):  # classic BPF only jumps forward
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            acc = int(struct.unpack_from("<I", data, k)[0])
        elif code == 0x54:  # and #k
            acc &= k
        elif code in (0x15, 0x35, 0x45):  # jeq / jge / jset #k
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if taken else jf
        elif code == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("fell off the end of the program")


ARCH_CASES = [
    pytest.param("x86_64", 0xC000003E, id="x86_64"),
    pytest.param("aarch64", 0xC00000B7, id="aarch64"),
]


def _nr(arch: str, name: str) -> int:
    return _seccomp._ARCHES[arch][1][name]


def test_denied_names_exist_on_both_arches() -> None:
    tables = [set(table) for _, table in _seccomp._ARCHES.values()]
    assert tables[0] == tables[1]
    assert set(_seccomp.DENIED) <= tables[0]
    for name in ("ptrace", "unshare", "setns", "mount", "bpf", "io_uring_setup", "setsid"):
        assert name in _seccomp.DENIED
    assert "clone3" in _seccomp.DENIED  # ENOSYS
    assert "clone" not in _seccomp.DENIED  # argument-dependent
    assert "socket" not in _seccomp.DENIED


@pytest.mark.parametrize(("arch", "audit_arch"), ARCH_CASES)
@pytest.mark.parametrize("allow_inet", [False, True])
def test_filter_shape_is_deterministic(arch: str, audit_arch: int, *, allow_inet: bool) -> None:
    prog = _seccomp._build(arch, allow_inet_stream=allow_inet)
    assert prog == _seccomp._build(arch, allow_inet_stream=allow_inet)
    assert len(prog) % 8 == 0
    insns = [struct.unpack_from("=HBBI", prog, off) for off in range(0, len(prog), 8)]
    # The x86_64 x32 check and, with TCP allowed, 16 instructions (socket domain, type and
    # protocol; the MSG_FASTOPEN checks of sendto, sendmsg, sendmmsg) are the variable parts.
    base = 3 + len(_seccomp.DENIED) - 1 + 4 + 1 + 2 + 2 + 4
    expected = base + (arch == "x86_64") + (16 if allow_inet else 0)
    assert len(insns) == expected
    assert insns[0] == (0x20, 0, 0, 4)  # ld seccomp_data.arch
    assert insns[1] == (0x15, 0, len(insns) - 3, audit_arch)  # jeq arch, else -> kill
    assert insns[2] == (0x20, 0, 0, 0)  # ld seccomp_data.nr
    assert insns[-4:] == [
        (0x06, 0, 0, ALLOW),
        (0x06, 0, 0, EPERM),
        (0x06, 0, 0, ENOSYS),
        (0x06, 0, 0, KILL),
    ]
    for pc, (code, jt, jf, _k) in enumerate(insns):
        if code & 0x07 == 0x05:  # every jump lands inside the program
            assert pc + 1 + max(jt, jf) < len(insns)


def test_native_build_filter_matches_arch_table() -> None:
    ok, arch = _seccomp.supported()
    if not ok:
        with pytest.raises(OSError, match="not implemented"):
            _seccomp.build_filter(allow_inet_stream=False)
        return
    assert _seccomp.build_filter(allow_inet_stream=True) == _seccomp._build(
        arch, allow_inet_stream=True
    )


@pytest.mark.parametrize(("arch", "audit_arch"), ARCH_CASES)
def test_filter_semantics(arch: str, audit_arch: int) -> None:
    strict = _seccomp._build(arch, allow_inet_stream=False)
    inet = _seccomp._build(arch, allow_inet_stream=True)

    def run(prog: bytes, name: str, *args: int) -> int:
        return _run_bpf(prog, audit_arch, _nr(arch, name), args)

    # Foreign arch -> kill, whatever the syscall.
    assert _run_bpf(strict, 0x40000003, 0) == KILL  # AUDIT_ARCH_I386
    assert _run_bpf(strict, audit_arch ^ 0x1, _nr(arch, "ptrace")) == KILL
    # Unconditional denials.
    for name in _seccomp.DENIED:
        want = ENOSYS if name == "clone3" else EPERM
        assert run(strict, name) == want, name
        assert run(inet, name) == want, name
    # Ordinary syscalls pass (read=0/63, getpid=39/172).
    ordinary = {"x86_64": (0, 39, 1), "aarch64": (63, 172, 64)}[arch]
    for nr in ordinary:
        assert _run_bpf(strict, audit_arch, nr) == ALLOW
    if arch == "x86_64":
        assert _run_bpf(strict, audit_arch, 0x40000000 + 39) == EPERM  # x32 getpid
    # clone: namespace flags refused, fork/thread flags fine; high 32 bits ignored.
    assert run(strict, "clone", FORK_FLAGS) == ALLOW
    assert run(strict, "clone", THREAD_FLAGS) == ALLOW
    assert run(strict, "clone", 0x80 | 17) == ALLOW  # CSIGNAL bits, not CLONE_NEWTIME
    for flag in (CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS):
        assert run(strict, "clone", FORK_FLAGS | flag) == EPERM
    # socket without allow_inet_stream: everything refused.
    for domain, type_ in ((AF_INET, SOCK_STREAM), (AF_UNIX, SOCK_STREAM), (AF_INET6, 1)):
        assert run(strict, "socket", domain, type_) == EPERM
    # socket with allow_inet_stream: TCP over v4/v6 only, flags in `type` tolerated.
    assert run(inet, "socket", AF_INET, SOCK_STREAM) == ALLOW
    assert run(inet, "socket", AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK) == ALLOW
    for domain, type_ in (
        (AF_INET, SOCK_DGRAM),
        (AF_INET, SOCK_RAW),
        (AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC),
        (AF_UNIX, SOCK_STREAM),
        (AF_NETLINK, SOCK_RAW),
        (AF_PACKET, SOCK_RAW),
        (AF_INET | (1 << 32), SOCK_STREAM),  # only the int the kernel sees counts
    ):
        expected = ALLOW if domain == AF_INET | (1 << 32) else EPERM
        assert run(inet, "socket", domain, type_) == expected, (domain, type_)
    # socketpair: AF_UNIX only.
    for prog in (strict, inet):
        assert run(prog, "socketpair", AF_UNIX, SOCK_STREAM) == ALLOW
        assert run(prog, "socketpair", AF_INET, SOCK_STREAM) == EPERM


# --- enforcement in real processes ---------------------------------------------------------

PRELUDE = """
import ctypes, errno, json, os, socket, subprocess, sys, threading
sys.path.insert(0, {sandbox_dir!r})
import _seccomp
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
results = {{}}

def attempt(name, fn):
    try:
        value = fn()
    except OSError as exc:
        results[name] = errno.errorcode.get(exc.errno, str(exc.errno))
    else:
        results[name] = value if isinstance(value, (str, int)) else "ok"

def check(ret):
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return "ok"

def new_socket(family, type_):
    socket.socket(family, type_).close()

def socketpair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.sendall(b"ping")
    got = b.recv(4).decode()
    a.close()
    b.close()
    return got

def fork_exit_code():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

def thread_runs():
    out = []
    t = threading.Thread(target=lambda: out.append("ran"))
    t.start()
    t.join()
    return out[0]

"""

# Actions attempted with and without the filter. The ptrace request is one that fails with
# ESRCH unfiltered (the sibling is not our tracee) so the EPERM can only come from the filter.
ACTIONS = """
attempt("socket_inet_dgram", lambda: new_socket(socket.AF_INET, socket.SOCK_DGRAM))
attempt("socket_unix", lambda: new_socket(socket.AF_UNIX, socket.SOCK_STREAM))
attempt("socket_inet_stream", lambda: new_socket(socket.AF_INET, socket.SOCK_STREAM))
attempt("socket_inet_stream_cloexec",
        lambda: new_socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC))
attempt("socket_netlink", lambda: new_socket(socket.AF_NETLINK, socket.SOCK_RAW))
attempt("socketpair_unix", socketpair)
attempt("unshare_user", lambda: check(libc.unshare(0x10000000)))
attempt("ptrace_peek_sibling", lambda: check(libc.ptrace(2, SIBLING, None, None)))
attempt("setsid", lambda: os.setsid() or "ok")
attempt("fork", fork_exit_code)
attempt("subprocess_true", lambda: subprocess.run(["/bin/true"], check=True).returncode)
attempt("thread", thread_runs)
"""


def _require_seccomp() -> None:
    ok, reason = _seccomp.supported()
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"seccomp unsupported but CI=true requires these tests to run: {reason}")
        pytest.skip(f"seccomp filter unsupported here: {reason}")


def _run(code: str, sibling: int) -> dict[str, object]:
    script = PRELUDE.format(sandbox_dir=str(SANDBOX_DIR)) + f"SIBLING = {sibling}\n"
    script += textwrap.dedent(code) + "\nprint(json.dumps(results))\n"
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


@pytest.fixture
def sibling() -> Iterator[int]:
    """A process that is neither the child's parent nor its descendant, to ptrace."""
    proc = subprocess.Popen([sys.executable, "-I", "-c", "import time; time.sleep(60)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_control_run_without_filter(sibling: int) -> None:
    _require_seccomp()
    r = _run(ACTIONS, sibling)
    for action in (
        "socket_inet_dgram",
        "socket_unix",
        "socket_inet_stream",
        "socket_inet_stream_cloexec",
        "socket_netlink",
    ):
        assert r[action] == "ok", (action, r[action])
    assert r["ptrace_peek_sibling"] == "ESRCH"
    assert r["setsid"] == "ok"
    assert r["socketpair_unix"] == "ping"


def test_strict_filter_blocks_escape_hatches(sibling: int) -> None:
    _require_seccomp()
    code = """
    go = threading.Event()

    def early_thread():  # started before install: TSYNC must filter it too
        go.wait(10)
        attempt("socket_from_early_thread", lambda: new_socket(socket.AF_INET, socket.SOCK_DGRAM))

    early = threading.Thread(target=early_thread)
    early.start()
    _seccomp.install(allow_inet_stream=False)
    go.set()
    early.join()
    attempt("ptrace_attach_sibling", lambda: check(libc.ptrace(16, SIBLING, None, None)))
    attempt("setns", lambda: check(libc.setns(0, 0)))
    attempt("mount", lambda: check(libc.mount(b"none", b"/mnt", b"tmpfs", 0, None)))
    attempt("clone3", lambda: check(libc.syscall(435, None, 0)))
    if os.uname().machine == "x86_64":
        attempt("x32_getpid", lambda: check(libc.syscall(0x40000000 + 39)))
    """
    r = _run(textwrap.dedent(code) + ACTIONS, sibling)
    for action in (
        "socket_from_early_thread",
        "socket_inet_dgram",
        "socket_unix",
        "socket_inet_stream",
        "socket_inet_stream_cloexec",
        "socket_netlink",
        "unshare_user",
        "ptrace_attach_sibling",
        "ptrace_peek_sibling",
        "setsid",
        "setns",
        "mount",
    ):
        assert r[action] == "EPERM", (action, r[action])
    assert r["clone3"] == "ENOSYS"
    if os.uname().machine == "x86_64":
        assert r["x32_getpid"] == "EPERM"
    # Still working: AF_UNIX socketpair, fork, subprocess (clone3 -> clone fallback), threads.
    assert r["socketpair_unix"] == "ping"
    assert r["fork"] == 7
    assert r["subprocess_true"] == 0
    assert r["thread"] == "ran"


def test_inet_stream_filter_allows_tcp_only(sibling: int) -> None:
    _require_seccomp()
    code = """
    _seccomp.install(allow_inet_stream=True)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def tcp_roundtrip():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as c:
            c.connect(listener.getsockname())
            conn, _ = listener.accept()
            c.sendall(b"tcp")
            got = conn.recv(3).decode()
            conn.close()
            return got

    attempt("tcp_roundtrip", tcp_roundtrip)
    attempt("socket_inet6_stream", lambda: new_socket(socket.AF_INET6, socket.SOCK_STREAM))
    """
    r = _run(textwrap.dedent(code) + ACTIONS, sibling)
    assert r["tcp_roundtrip"] == "tcp"
    assert r["socket_inet_stream"] == "ok"
    assert r["socket_inet_stream_cloexec"] == "ok"
    # EAFNOSUPPORT on hosts without IPv6 is fine; the filter must not be what refuses it.
    assert r["socket_inet6_stream"] in ("ok", "EAFNOSUPPORT")
    for action in ("socket_inet_dgram", "socket_unix", "socket_netlink", "unshare_user"):
        assert r[action] == "EPERM", (action, r[action])
    assert r["socketpair_unix"] == "ping"
    assert r["fork"] == 7
    assert r["subprocess_true"] == 0
    assert r["thread"] == "ran"
