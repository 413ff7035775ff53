"""Every connection attempt of an allowlisted tool, seen and decided from outside it.

The tool's seccomp filter turns each ``connect(2)`` into a seccomp *user notification* (see
`_seccomp`); the listener descriptor is handed to the bootstrap's supervisor, which runs
`ConnectWatch.serve` while the tool lives. For each attempt it reads the destination from
the tool's memory (``/proc/<pid>/mem``), lets the kernel go on when it is the egress
relay or proxy (``SECCOMP_USER_NOTIF_FLAG_CONTINUE``), and otherwise refuses it with
``EACCES`` and records it: direct connections to any address are denied *and recorded*.

What this is and is not: inside the tool's network namespace the namespace itself is the
guarantee (nothing but the relay is reachable) and this watch adds the record. Without a
namespace (a degraded host) it also refuses connections Landlock's port rule would let
through to another address, but a tool with two threads can change the address between
the check and the kernel's own read (the documented limit of ``CONTINUE``), so there it is
a record and a speed bump, not a wall.

Standard library only (imported by the bootstrap script).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import struct

TYPE_CHECKING = False  # not typing's: importing typing costs every invocation milliseconds
if TYPE_CHECKING:
    from typing import Any

# ioctls on the listener (linux/seccomp.h): _IOWR('!', 0, struct seccomp_notif) etc.
NOTIF_RECV = 0xC0502100
NOTIF_SEND = 0xC0182101
NOTIF_ID_VALID = 0x40082102
NOTIF_ID_VALID_OLD = 0x80082102  # its number on 5.0-5.8 kernels (_IOR, later corrected)
FLAG_CONTINUE = 1
_NOTIF_SIZE = 80  # u64 id, u32 pid, u32 flags, struct seccomp_data (64)
_RESP_SIZE = 24  # u64 id, s64 val, s32 error, u32 flags

AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 10
MAX_RECORDED = 256
_MAX_SOCKADDR = 128


def _address(raw: bytes) -> tuple[int, str, int] | None:
    """(family, address, port) of a ``struct sockaddr``; None when it cannot be read."""
    import _socket as socket  # the C module: ``socket`` would import enum and selectors

    if len(raw) < 2:
        return None
    family = struct.unpack_from("=H", raw)[0]
    if family == AF_INET and len(raw) >= 8:
        return (
            family,
            socket.inet_ntop(socket.AF_INET, raw[4:8]),
            struct.unpack_from("!H", raw, 2)[0],
        )
    if family == AF_INET6 and len(raw) >= 24:
        return (
            family,
            socket.inet_ntop(socket.AF_INET6, raw[8:24]),
            struct.unpack_from("!H", raw, 2)[0],
        )
    return family, "", 0


class ConnectWatch:
    """Decide and record the tool's connect(2) calls (see the module docstring)."""

    def __init__(self, listener: int, allowed: list[tuple[str, int]], libc: Any) -> None:
        self.listener = listener
        self.allowed = {(str(host), int(port)) for host, port in allowed}
        self._libc = libc
        self.denied: list[dict[str, Any]] = []
        self.denied_count = 0
        self.allowed_count = 0

    def serve(self, pid: int) -> None:
        """Answer notifications until process ``pid`` (the tool's main process) exits.
        Attempts of processes it leaves behind then fail (ENOSYS) once the listener is
        closed."""
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        try:
            while True:
                events = dict(poller.poll())
                if self.listener in events:
                    if events[self.listener] & (select.POLLHUP | select.POLLERR):
                        return
                    self.handle()
                if pidfd in events:
                    return
        finally:
            os.close(pidfd)

    def handle(self) -> None:
        notif = ctypes.create_string_buffer(_NOTIF_SIZE)
        if self._libc.ioctl(self.listener, ctypes.c_ulong(NOTIF_RECV), notif) != 0:
            return  # ENOENT: the caller died meanwhile
        notif_id, pid = struct.unpack_from("=QI", notif.raw, 0)
        args = struct.unpack_from("=6Q", notif.raw, 16 + 16)
        destination = self._read(pid, args[1], min(int(args[2]), _MAX_SOCKADDR))
        if not self._valid(notif_id):
            return  # the memory read may be another process's: answer nothing
        if destination is not None and (
            destination[0] == AF_UNSPEC or (destination[1], destination[2]) in self.allowed
        ):
            self.allowed_count += 1
            self._answer(notif_id, 0, FLAG_CONTINUE)
            return
        self.denied_count += 1
        if len(self.denied) < MAX_RECORDED:
            family, host, port = destination if destination is not None else (-1, "", 0)
            self.denied.append(
                {"family": family, "host": host or "(unreadable address)", "port": port}
            )
        self._answer(notif_id, -errno.EACCES, 0)

    def report(self) -> dict[str, Any]:
        return {
            "denied": self.denied,
            "denied_count": self.denied_count,
            "allowed_count": self.allowed_count,
        }

    def _read(self, pid: int, address: int, length: int) -> tuple[int, str, int] | None:
        if length <= 0 or address <= 0 or address >= 1 << 63:
            return None
        try:
            fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            return _address(os.pread(fd, length, address))
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)

    def _valid(self, notif_id: int) -> bool:
        """Whether the notification is still pending (its process did not die meanwhile).
        Only ENOENT says no: a kernel that knows neither ioctl number gets an answer anyway
        (never a connect left waiting forever; a stale answer is refused by the kernel)."""
        value = ctypes.c_uint64(notif_id)
        for request in (NOTIF_ID_VALID, NOTIF_ID_VALID_OLD):
            if self._libc.ioctl(self.listener, ctypes.c_ulong(request), ctypes.byref(value)) == 0:
                return True
            if ctypes.get_errno() == errno.ENOENT:
                return False
        return True

    def _answer(self, notif_id: int, error: int, flags: int) -> None:
        response = ctypes.create_string_buffer(struct.pack("=QqiI", notif_id, 0, error, flags))
        self._libc.ioctl(self.listener, ctypes.c_ulong(NOTIF_SEND), response)  # -1: gone
