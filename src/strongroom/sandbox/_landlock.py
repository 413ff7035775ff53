"""Landlock: unprivileged, deny-by-default filesystem, TCP and IPC-scope confinement.

`restrict_self` confines the *calling thread* (and every process it later forks or execs) with a
Landlock domain. It cannot be undone, so the sandbox child calls it once, early, before it
starts any thread and before it runs the tool.

What is enforced:

* Filesystem: the ruleset *handles* every filesystem right the running kernel's ABI knows
  (ABI 1: 13 rights; ABI 2 adds REFER, i.e. renames/links across directories; ABI 3 adds
  TRUNCATE; ABI 5 adds IOCTL_DEV). A handled right is denied everywhere except beneath the
  paths a rule grants it on, so whatever is not granted is denied -- including to root.
  ``read_paths`` get read + execute (and directory listing); ``write_paths`` get every handled
  right on the tree (or, for a regular file or a device such as ``/dev/null``, the rights that
  apply to a file). Landlock checks the resolved object, so symlinks and ``..`` cannot escape.
* TCP (ABI >= 4): bind(2) and connect(2) on TCP sockets are denied except to the listed ports.
  Other protocols (UDP, UNIX sockets...) are out of Landlock's reach: seccomp handles sockets.
* Scopes (ABI >= 6, ``scope=True``): no signals to processes outside the domain and no
  connections to abstract UNIX sockets created outside it.

PR_SET_NO_NEW_PRIVS is set first (Landlock requires it without CAP_SYS_ADMIN, and it stops a
setuid binary from regaining privileges). Rules are only added for paths that exist (and
that this uid can reach); the others are reported in ``skipped_paths``. Each path is opened
with O_PATH, so device files such as ``/dev/null`` work as rules without being opened for I/O.
Landlock restricts the calling thread only: call it before any thread is started.

Standard library only and no package imports: the sandbox child imports this file as a
top-level module (``python -I _bootstrap.py``), the parent as ``strongroom.sandbox._landlock``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct

TYPE_CHECKING = False  # not typing's: importing typing costs every invocation milliseconds
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["abi_version", "restrict_self"]

# Syscall numbers: identical on x86_64 and aarch64 (and every arch using the generic table).
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446

_PR_SET_NO_NEW_PRIVS = 38
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2

# Filesystem access rights (include/uapi/linux/landlock.h).
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5

NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

_FS_V1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
# The only rights the kernel accepts in a rule whose object is not a directory.
_FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
_FS_READ_DIR_RIGHTS = FS_READ_FILE | FS_READ_DIR | FS_EXECUTE
_FS_READ_FILE_RIGHTS = FS_READ_FILE | FS_EXECUTE


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _syscall(nr: int, *args: int | None) -> int:
    """Raw syscall(2) (pointers as integers); returns the result or raises OSError."""
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    c_args = [ctypes.c_long(a or 0) for a in args]
    ret = int(libc.syscall(ctypes.c_long(nr), *c_args))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _fs_rights(abi: int) -> int:
    rights = _FS_V1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def abi_version() -> int:
    """The Landlock ABI the kernel offers, or 0 when Landlock is unsupported or disabled."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return 0
    try:
        return _syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    except OSError:
        # ENOSYS: kernel built without Landlock; EOPNOTSUPP: not enabled at boot (lsm=).
        # Anything else (e.g. a seccomp filter refusing the call) also means "cannot use it".
        return 0


def _add_rule(ruleset_fd: int, rule_type: int, attr: bytes) -> None:
    buf = ctypes.create_string_buffer(attr, len(attr))
    ptr = ctypes.cast(buf, ctypes.c_void_p).value
    _syscall(_SYS_ADD_RULE, ruleset_fd, rule_type, ptr, 0)


def _add_path_rule(ruleset_fd: int, path: str, dir_rights: int, file_rights: int) -> bool:
    """Grant rights beneath ``path``; False when it cannot be opened (nothing granted)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        # Missing, or not even traversable by this uid: granting nothing fails closed.
        return False
    try:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        access = dir_rights if is_dir else file_rights
        if access:
            # struct landlock_path_beneath_attr is packed: u64 allowed_access, s32 parent_fd.
            try:
                _add_rule(ruleset_fd, _RULE_PATH_BENEATH, struct.pack("=Qi", access, fd))
            except OSError as exc:
                raise OSError(exc.errno, f"landlock_add_rule({path!r}): {exc.strerror}") from None
    finally:
        os.close(fd)
    return True


def _ports(values: Sequence[int], what: str) -> set[int]:
    ports = set()
    for port in values:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"{what}: invalid TCP port {port!r}")
        ports.add(port)
    return ports


def restrict_self(
    *,
    read_paths: Sequence[str],
    write_paths: Sequence[str],
    connect_tcp: Sequence[int] = (),
    bind_tcp: Sequence[int] = (),
    scope: bool = True,
) -> dict[str, object]:
    """Confine the calling thread and its future children; see the module docstring.

    Returns ``{"abi", "fs", "net", "scoped", "skipped_paths"}``. Raises OSError when Landlock
    is unavailable or a syscall fails (the process is then *not* confined, unless the failure
    was in the final landlock_restrict_self, which is all-or-nothing).
    """
    connect_ports = _ports(connect_tcp, "connect_tcp")
    bind_ports = _ports(bind_tcp, "bind_tcp")
    abi = abi_version()
    if abi < 1:
        raise OSError(errno.EOPNOTSUPP, "Landlock is unavailable (kernel lacks it or disabled)")

    handled_fs = _fs_rights(abi)
    handled_net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 and scope else 0
    # struct landlock_ruleset_attr grew with the ABI; pass the size this kernel knows.
    attr_size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    attr = struct.pack("=QQQ", handled_fs, handled_net, scoped)[:attr_size]
    attr_buf = ctypes.create_string_buffer(attr, attr_size)

    try:
        ruleset_fd = _syscall(
            _SYS_CREATE_RULESET, ctypes.cast(attr_buf, ctypes.c_void_p).value, attr_size, 0
        )
    except OSError as exc:
        raise OSError(exc.errno, f"landlock_create_ruleset failed: {exc.strerror}") from None

    skipped: list[str] = []
    try:
        read_dir = _FS_READ_DIR_RIGHTS & handled_fs
        read_file = _FS_READ_FILE_RIGHTS & handled_fs
        for path in read_paths:
            if not _add_path_rule(ruleset_fd, path, read_dir, read_file):
                skipped.append(path)
        for path in write_paths:
            if not _add_path_rule(ruleset_fd, path, handled_fs, _FS_FILE_RIGHTS & handled_fs):
                skipped.append(path)

        if handled_net:
            for port in sorted(connect_ports | bind_ports):
                access = (NET_CONNECT_TCP if port in connect_ports else 0) | (
                    NET_BIND_TCP if port in bind_ports else 0
                )
                # struct landlock_net_port_attr: u64 allowed_access, u64 port.
                try:
                    _add_rule(ruleset_fd, _RULE_NET_PORT, struct.pack("=QQ", access, port))
                except OSError as exc:
                    raise OSError(
                        exc.errno, f"landlock_add_rule(tcp port {port}): {exc.strerror}"
                    ) from None

        libc = _libc()
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(err)}")
        try:
            _syscall(_SYS_RESTRICT_SELF, ruleset_fd, 0)
        except OSError as exc:
            raise OSError(exc.errno, f"landlock_restrict_self failed: {exc.strerror}") from None
    finally:
        os.close(ruleset_fd)

    return {
        "abi": abi,
        "fs": True,
        "net": bool(handled_net),
        "scoped": bool(scoped),
        "skipped_paths": skipped,
    }
