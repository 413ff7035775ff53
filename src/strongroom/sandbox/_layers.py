"""The confinement steps the sandboxed child applies to itself before the tool runs, in the
order `_bootstrap.confine` calls them: network and IPC namespaces (and, with an allowlist,
the egress relay in them), rlimits, and the drop from root to the plan's unprivileged uid.
Landlock and seccomp have modules of their own (`_landlock`, `_seccomp`).

Standard library only (imported by the bootstrap script).
"""

from __future__ import annotations

import ctypes
import os
import resource

TYPE_CHECKING = False  # not typing's: importing typing costs every invocation milliseconds
if TYPE_CHECKING:
    from typing import Any

_libc: Any = None


def libc() -> Any:
    """The C library (loaded once), with ``errno`` kept for `check`."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def check(result: int, what: str) -> int:
    """``result`` of a C call, or OSError with its errno when it is negative."""
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ = "16sh22x"  # struct ifreq: the name, then ifr_flags in its 24-byte union

PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def enter_network_namespace(as_root: bool) -> None:
    """New, empty network and IPC namespaces. Root can create them directly; anyone else
    needs a user namespace first (mapping their own uid, so nothing is gained)."""
    if as_root:
        check(libc().unshare(CLONE_NEWNET | CLONE_NEWIPC), "unshare(CLONE_NEWNET|CLONE_NEWIPC)")
        return
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC
    check(libc().unshare(flags), "unshare(CLONE_NEWUSER|CLONE_NEWNET|CLONE_NEWIPC)")
    with open("/proc/self/setgroups", "w") as handle:
        handle.write("deny")
    with open("/proc/self/uid_map", "w") as handle:
        handle.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as handle:
        handle.write(f"{gid} {gid} 1")


# Sockets here are the C module's (``_socket``): ``import socket`` would bring ``enum`` and
# ``selectors`` into every allowlisted invocation's start-up (milliseconds).


def _loopback_up() -> None:
    import _socket
    import fcntl
    import struct

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        request = struct.pack(_IFREQ, b"lo", 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | IFF_UP))
    finally:
        sock.close()


def open_relay(port: int) -> list[Any]:
    """In the tool's fresh network namespace: bring the loopback up and listen at the
    proxy's port on 127.0.0.1 (and ::1 when the namespace has IPv6). Done before Landlock,
    which would refuse the bind."""
    import _socket

    _loopback_up()
    listeners = []
    for family, address in ((_socket.AF_INET, "127.0.0.1"), (_socket.AF_INET6, "::1")):
        try:
            listener = _socket.socket(family, _socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            if family == _socket.AF_INET6:
                listener.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
            listener.bind((address, port))
            listener.listen(64)
        except OSError:
            listener.close()
            if family == _socket.AF_INET:
                raise
            continue
        listeners.append(listener)
    return listeners


def send_fd(sock: Any, data: bytes, fd: int) -> int:
    """Send ``data`` with descriptor ``fd`` attached (``SCM_RIGHTS``); the bytes sent."""
    import _socket
    import struct

    rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", fd))]
    return int(sock.sendmsg([data], rights))


def start_relay(listeners: list[Any], relay_fd: int) -> None:
    """Pass every accepted connection's descriptor to the runner's proxy. Started only once
    this thread is confined: threads inherit Landlock and seccomp from their creator, and a
    thread started earlier would run whatever the tool patches into the code it calls,
    unconfined. The tool can stop its relay (and so lose its own network), nothing more:
    the proxy decides every connection."""
    import _socket
    import _thread  # not threading: it would import functools and collections

    out = _socket.socket(fileno=relay_fd)

    def serve(listener: Any) -> None:
        while True:
            try:
                conn, _ = listener._accept()
            except OSError:
                return
            try:
                send_fd(out, b"c", conn)
            except OSError:
                return
            finally:
                os.close(conn)

    for listener in listeners:
        _thread.start_new_thread(serve, (listener,))


RLIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "core": resource.RLIMIT_CORE,
}


def apply_rlimits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        resource.setrlimit(RLIMITS[name], (value, value))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _capset(caps: int) -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = data[0].inheritable = caps & 0xFFFFFFFF
    data[1].effective = data[1].permitted = data[1].inheritable = caps >> 32
    check(libc().capset(ctypes.byref(header), data), "capset")


def drop_privileges(uid: int, gid: int) -> None:
    """Root -> ``uid``/``gid`` with no supplementary groups, keeping only the two DAC
    capabilities (also as ambient capabilities, so a helper program the tool starts can read
    the runtime too). Every other capability leaves the bounding set."""
    c = libc()
    keep = (1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH)
    with open("/proc/sys/kernel/cap_last_cap") as handle:
        last_cap = int(handle.read())
    for cap in range(last_cap + 1):
        if not keep & (1 << cap):
            check(c.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    check(c.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "PR_SET_KEEPCAPS")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _capset(keep)
    check(c.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient")
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        check(c.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0), "raise ambient")
    check(c.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0), "PR_SET_KEEPCAPS")
