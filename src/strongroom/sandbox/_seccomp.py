"""seccomp-bpf: a hand-built classic BPF filter cutting the kernel surface a tool can reach.

Landlock confines *what* a process may touch; this filter removes syscalls that would let it
escape or widen a sandbox, or reach rarely-hardened kernel code. Installed with
``install(allow_inet_stream=...)``, irreversible, inherited by every child. The filter:

1. Kills the process (SECCOMP_RET_KILL_PROCESS) when ``seccomp_data.arch`` is not the native
   audit arch, so a foreign calling convention (e.g. ``int 0x80`` i386 syscalls on x86_64)
   cannot bypass the number checks. On x86_64, x32-ABI syscalls (nr >= 0x40000000, same
   arch value) get EPERM: nothing legitimate in the sandbox uses x32, and refusing with an
   errno keeps a probe from killing the tool.
2. Returns EPERM for the syscalls in `DENIED` (debugging/peeking at other processes,
   namespaces and mounts, kernel keyrings, eBPF, perf, userfaultfd, io_uring (which bypasses
   seccomp for its queued operations), module/kexec loading, session/process-group changes
   that would detach from the supervisor's kill, swap, reboot, syslog).
3. Returns ENOSYS for clone3: its flags live in a struct BPF cannot read, and on ENOSYS glibc
   falls back to clone(2), whose flags are in a register.
4. clone(2) with any namespace flag (NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
   NEWNET) gets EPERM. CLONE_NEWTIME (0x80) is not in the mask: in clone(2) that bit belongs
   to CSIGNAL (the exit signal), clone(2) never accepts NEWTIME, and unshare/setns are denied.
   The kernel only uses the low 32 bits of clone's flags, so only those are checked.
5. socket(2): with ``allow_inet_stream`` only AF_INET/AF_INET6 with ``type & 0xF ==
   SOCK_STREAM`` and protocol 0 or IPPROTO_TCP (TCP; Landlock then limits ports; MPTCP and
   SCTP stream sockets are outside Landlock's TCP rules), and no send call with
   MSG_FASTOPEN (a connection opened without connect(2)), without it every socket() gets EPERM
   (no UNIX, netlink, packet, raw or UDP sockets). socketpair(2) is allowed for AF_UNIX only
   (anonymous, connected pairs: pipes for subprocess plumbing, no way out).
6. connect(2), when asked (``notify_connect``, network allowlists): a seccomp user
   notification, so the supervisor outside sees every connection attempt, records it and
   refuses any that does not go to the egress proxy (`_connects.py`).
7. Everything else is allowed.

Installation uses seccomp(2) with SECCOMP_FILTER_FLAG_TSYNC so every thread of the process is
filtered; on kernels without seccomp(2) (< 3.17) it falls back to prctl(PR_SET_SECCOMP), which
filters the calling thread only. PR_SET_NO_NEW_PRIVS is set first, as the kernel requires.

Standard library only and no package imports: the sandbox child imports this file as a
top-level module (``python -I _bootstrap.py``), the parent as ``strongroom.sandbox._seccomp``.
Supported: x86_64 and aarch64 (64-bit processes); anything else reports unsupported.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys

__all__ = ["DENIED", "build_filter", "install", "supported"]

# Classic BPF opcodes (linux/bpf_common.h).
_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_ALU_AND_K = 0x04 | 0x50 | 0x00  # BPF_ALU | BPF_AND | BPF_K
_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x05 | 0x40 | 0x00  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K
_BPF_MAXINSNS = 4096

# Return actions (linux/seccomp.h).
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
RET_USER_NOTIF = 0x7FC00000

# seccomp(2) flags.
_FLAG_TSYNC = 1
_FLAG_NEW_LISTENER = 1 << 3
_FLAG_TSYNC_ESRCH = 1 << 4

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6].
_OFF_NR = 0
_OFF_ARCH = 4
_LOW_WORD = 0 if sys.byteorder == "little" else 4


def _arg_low(i: int) -> int:
    """Offset of the low 32 bits of syscall argument ``i``."""
    return 16 + 8 * i + _LOW_WORD


_X32_SYSCALL_BIT = 0x40000000
_AF_UNIX = 1
_AF_INET = 2
_AF_INET6 = 10
_SOCK_STREAM = 1
_SOCK_TYPE_MASK = 0xF
_IPPROTO_TCP = 6
_MSG_FASTOPEN = 0x20000000
_CLONE_NS_MASK = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)

# Per-arch data: audit arch and syscall numbers (x86_64: arch/x86/entry/syscalls/syscall_64.tbl,
# aarch64: include/uapi/asm-generic/unistd.h). Numbers >= 424 are shared by every arch.
_ARCHES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (
        0xC000003E,
        {
            "ptrace": 101,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "kcmp": 312,
            "pidfd_getfd": 438,
            "unshare": 272,
            "setns": 308,
            "mount": 165,
            "umount2": 166,
            "pivot_root": 155,
            "chroot": 161,
            "open_by_handle_at": 304,
            "name_to_handle_at": 303,
            "bpf": 321,
            "perf_event_open": 298,
            "userfaultfd": 323,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "keyctl": 250,
            "add_key": 248,
            "request_key": 249,
            "setsid": 112,
            "setpgid": 109,
            "kexec_load": 246,
            "kexec_file_load": 320,
            "init_module": 175,
            "finit_module": 313,
            "delete_module": 176,
            "fsopen": 430,
            "fsmount": 432,
            "fspick": 433,
            "move_mount": 429,
            "open_tree": 428,
            "open_tree_attr": 467,
            "mount_setattr": 442,
            "acct": 163,
            "swapon": 167,
            "swapoff": 168,
            "reboot": 169,
            "syslog": 103,
            # Handled specially (not in DENIED's EPERM list).
            "clone3": 435,
            "clone": 56,
            "socket": 41,
            "connect": 42,
            "sendto": 44,
            "sendmsg": 46,
            "sendmmsg": 307,
            "socketpair": 53,
            "seccomp": 317,
        },
    ),
    "aarch64": (
        0xC00000B7,
        {
            "ptrace": 117,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "kcmp": 272,
            "pidfd_getfd": 438,
            "unshare": 97,
            "setns": 268,
            "mount": 40,
            "umount2": 39,
            "pivot_root": 41,
            "chroot": 51,
            "open_by_handle_at": 265,
            "name_to_handle_at": 264,
            "bpf": 280,
            "perf_event_open": 241,
            "userfaultfd": 282,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "keyctl": 219,
            "add_key": 217,
            "request_key": 218,
            "setsid": 157,
            "setpgid": 154,
            "kexec_load": 104,
            "kexec_file_load": 294,
            "init_module": 105,
            "finit_module": 273,
            "delete_module": 106,
            "fsopen": 430,
            "fsmount": 432,
            "fspick": 433,
            "move_mount": 429,
            "open_tree": 428,
            "open_tree_attr": 467,
            "mount_setattr": 442,
            "acct": 89,
            "swapon": 224,
            "swapoff": 225,
            "reboot": 142,
            "syslog": 116,
            "clone3": 435,
            "clone": 220,
            "socket": 198,
            "connect": 203,
            "sendto": 206,
            "sendmsg": 211,
            "sendmmsg": 269,
            "socketpair": 199,
            "seccomp": 277,
        },
    ),
}

_SPECIAL = frozenset(
    {
        "clone3",
        "clone",
        "socket",
        "socketpair",
        "connect",
        "sendto",
        "sendmsg",
        "sendmmsg",
        "seccomp",
    }
)

# SysV IPC and POSIX message queues: refused (EPERM) only when the tool has no IPC namespace
# of its own (a host without user namespaces), where they would be the host's.
_IPC: dict[str, dict[str, int]] = {
    "x86_64": {
        "shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67, "semget": 64, "semop": 65,
        "semctl": 66, "semtimedop": 220, "msgget": 68, "msgsnd": 69, "msgrcv": 70,
        "msgctl": 71, "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242,
        "mq_timedreceive": 243, "mq_notify": 244, "mq_getsetattr": 245,
    },
    "aarch64": {
        "shmget": 194, "shmat": 196, "shmctl": 195, "shmdt": 197, "semget": 190, "semop": 193,
        "semctl": 191, "semtimedop": 192, "msgget": 186, "msgsnd": 189, "msgrcv": 188,
        "msgctl": 187, "mq_open": 180, "mq_unlink": 181, "mq_timedsend": 182,
        "mq_timedreceive": 183, "mq_notify": 184, "mq_getsetattr": 185,
    },
}  # fmt: skip
IPC_DENIED: tuple[str, ...] = tuple(_IPC["x86_64"])

# Syscalls refused with EPERM unconditionally (both tables list the same names), plus clone3
# (ENOSYS). clone/socket/socketpair are refused depending on their arguments (see above).
DENIED: tuple[str, ...] = (
    *(name for name in _ARCHES["x86_64"][1] if name not in _SPECIAL),
    "clone3",
)


def _machine() -> str:
    return os.uname().machine if hasattr(os, "uname") else "unknown"


def _native_arch() -> str | None:
    if sys.platform != "linux" or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None  # not Linux, or a 32-bit process (its syscall table differs)
    machine = _machine()
    return machine if machine in _ARCHES else None


def supported() -> tuple[bool, str]:
    """(True, arch) when this process can install the filter, else (False, reason)."""
    arch = _native_arch()
    if arch is None:
        bits = ctypes.sizeof(ctypes.c_void_p) * 8
        return False, f"seccomp filter not implemented for {sys.platform}/{_machine()}/{bits}-bit"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(21, 0, 0, 0, 0) < 0:  # PR_GET_SECCOMP
        return False, f"kernel lacks seccomp: {os.strerror(ctypes.get_errno())}"
    return True, arch


class _Asm:
    """A tiny assembler: jump targets are labels, resolved into relative offsets."""

    def __init__(self) -> None:
        self.code: list[tuple[int, str | int, str | int, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def stmt(self, op: int, k: int) -> None:
        self.code.append((op, 0, 0, k))

    def jump(self, op: int, k: int, jt: str | int, jf: str | int) -> None:
        """``jt``/``jf``: a label, or 0 for the next instruction."""
        self.code.append((op, jt, jf, k))

    def assemble(self) -> bytes:
        out = bytearray()
        for i, (op, jt, jf, k) in enumerate(self.code):
            offsets = []
            for target in (jt, jf):
                off = target if isinstance(target, int) else self.labels[target] - i - 1
                if not 0 <= off <= 255:
                    raise ValueError(f"BPF jump out of range at {i}: {off}")
                offsets.append(off)
            # struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }
            out += struct.pack("=HBBI", op, offsets[0], offsets[1], k)
        if len(self.code) > _BPF_MAXINSNS:
            raise ValueError("BPF program too long")
        return bytes(out)


def _build(
    arch: str, *, allow_inet_stream: bool, deny_ipc: bool = False, notify_connect: bool = False
) -> bytes:
    audit_arch, nrs = _ARCHES[arch]
    a = _Asm()
    a.stmt(_LD_W_ABS, _OFF_ARCH)
    a.jump(_JEQ_K, audit_arch, 0, "kill")
    a.stmt(_LD_W_ABS, _OFF_NR)
    if arch == "x86_64":
        a.jump(_JGE_K, _X32_SYSCALL_BIT, "eperm", 0)
    for name in DENIED:
        if name != "clone3":
            a.jump(_JEQ_K, nrs[name], "eperm", 0)
    if deny_ipc:
        for number in _IPC[arch].values():
            a.jump(_JEQ_K, number, "eperm", 0)
    a.jump(_JEQ_K, nrs["clone3"], "enosys", 0)
    a.jump(_JEQ_K, nrs["clone"], "clone", 0)
    a.jump(_JEQ_K, nrs["socket"], "socket" if allow_inet_stream else "eperm", 0)
    a.jump(_JEQ_K, nrs["socketpair"], "socketpair", 0)
    if notify_connect:
        a.jump(_JEQ_K, nrs["connect"], "notify", 0)
    if allow_inet_stream:
        # TCP Fast Open connects from a send call, without connect(2): past the connect
        # watch, and past Landlock's TCP rule. The flag is refused.
        a.jump(_JEQ_K, nrs["sendto"], "flags3", 0)
        a.jump(_JEQ_K, nrs["sendmmsg"], "flags3", 0)
        a.jump(_JEQ_K, nrs["sendmsg"], "flags2", 0)
    a.stmt(_RET_K, RET_ALLOW)

    if allow_inet_stream:
        a.label("flags3")
        a.stmt(_LD_W_ABS, _arg_low(3))
        a.jump(_JSET_K, _MSG_FASTOPEN, "eperm", "allow")
        a.label("flags2")
        a.stmt(_LD_W_ABS, _arg_low(2))
        a.jump(_JSET_K, _MSG_FASTOPEN, "eperm", "allow")

    if notify_connect:
        a.label("notify")
        a.stmt(_RET_K, RET_USER_NOTIF)

    a.label("clone")
    a.stmt(_LD_W_ABS, _arg_low(0))
    a.jump(_JSET_K, _CLONE_NS_MASK, "eperm", "allow")

    if allow_inet_stream:
        a.label("socket")
        a.stmt(_LD_W_ABS, _arg_low(0))  # domain
        a.jump(_JEQ_K, _AF_INET, "socket_type", 0)
        a.jump(_JEQ_K, _AF_INET6, "socket_type", "eperm")
        a.label("socket_type")
        a.stmt(_LD_W_ABS, _arg_low(1))  # type, possibly | SOCK_NONBLOCK | SOCK_CLOEXEC
        a.stmt(_ALU_AND_K, _SOCK_TYPE_MASK)
        a.jump(_JEQ_K, _SOCK_STREAM, "socket_protocol", "eperm")
        a.label("socket_protocol")  # TCP itself: not MPTCP or SCTP, which Landlock ignores
        a.stmt(_LD_W_ABS, _arg_low(2))
        a.jump(_JEQ_K, 0, "allow", 0)
        a.jump(_JEQ_K, _IPPROTO_TCP, "allow", "eperm")

    a.label("socketpair")
    a.stmt(_LD_W_ABS, _arg_low(0))
    a.jump(_JEQ_K, _AF_UNIX, "allow", "eperm")

    a.label("allow")
    a.stmt(_RET_K, RET_ALLOW)
    a.label("eperm")
    a.stmt(_RET_K, RET_ERRNO | errno.EPERM)
    a.label("enosys")
    a.stmt(_RET_K, RET_ERRNO | errno.ENOSYS)
    a.label("kill")
    a.stmt(_RET_K, RET_KILL_PROCESS)
    return a.assemble()


def build_filter(*, allow_inet_stream: bool) -> bytes:
    """The filter for this machine's arch as a raw ``struct sock_filter`` array."""
    arch = _native_arch()
    if arch is None:
        raise OSError(errno.ENOSYS, supported()[1])
    return _build(arch, allow_inet_stream=allow_inet_stream)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(
    *, allow_inet_stream: bool, deny_ipc: bool = False, notify_connect: bool = False
) -> int | None:
    """Install the filter on every thread of this process (irreversible). OSError on failure.
    ``deny_ipc``: refuse SysV IPC and POSIX message queues too (no IPC namespace).
    ``notify_connect``: every connect(2) waits for a decision on the listener descriptor
    returned (seccomp user notification; the caller hands it to its supervisor and closes
    its own copy, or every connect fails with ENOSYS once no one holds it)."""
    ok, reason = supported()
    if not ok:
        raise OSError(errno.ENOSYS, reason)
    arch = reason
    prog_bytes = _build(
        arch, allow_inet_stream=allow_inet_stream, deny_ipc=deny_ipc, notify_connect=notify_connect
    )
    buf = ctypes.create_string_buffer(prog_bytes, len(prog_bytes))
    prog = _SockFprog(len(prog_bytes) // 8, ctypes.cast(buf, ctypes.c_void_p).value)
    prog_ptr = ctypes.cast(ctypes.pointer(prog), ctypes.c_void_p).value

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(err)}")

    # seccomp(SECCOMP_SET_MODE_FILTER, TSYNC [| NEW_LISTENER | TSYNC_ESRCH], &prog)
    flags = _FLAG_TSYNC
    if notify_connect:  # the listener is the return value: TSYNC failures become ESRCH
        flags |= _FLAG_NEW_LISTENER | _FLAG_TSYNC_ESRCH
    ret = int(
        libc.syscall(
            ctypes.c_long(_ARCHES[arch][1]["seccomp"]),
            ctypes.c_long(1),
            ctypes.c_long(flags),
            ctypes.c_void_p(prog_ptr),
        )
    )
    if notify_connect:
        if ret < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"seccomp(NEW_LISTENER) failed: {os.strerror(err)}")
        return ret
    if ret == 0:
        return None
    if ret > 0:  # TSYNC: the id of a thread that could not be synchronised
        raise OSError(errno.EBUSY, f"seccomp TSYNC failed: thread {ret} cannot be filtered")
    err = ctypes.get_errno()
    if err != errno.ENOSYS:
        raise OSError(err, f"seccomp(SECCOMP_SET_MODE_FILTER) failed: {os.strerror(err)}")
    # Kernel < 3.17: no seccomp(2), filter this thread only.
    if libc.prctl(22, 2, ctypes.c_void_p(prog_ptr), 0, 0) != 0:  # PR_SET_SECCOMP, MODE_FILTER
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_SECCOMP) failed: {os.strerror(err)}")
    return None
