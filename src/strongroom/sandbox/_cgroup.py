"""Memory and process limits on a tool's whole process tree, where the host lets the runner
manage control groups (root on cgroup v1, as here, or a writable cgroup v2 hierarchy).

``RLIMIT_AS`` caps each process; a tool that forks could still use ``memory_mb`` in every
child. A control group counts the whole tree: its memory (``memory.limit_in_bytes`` /
``memory.max``) and its number of tasks (``pids.max``). The runner creates one group per
invocation, moves the bootstrap into it before the bootstrap has forked anything (it waits
for its plan first), and afterwards kills whatever is still in it, reads whether the memory
limit was hit, and removes it. Standard library only.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import time
from pathlib import Path

__all__ = ["ToolCgroup", "cgroup_support"]

ROOT = Path("/sys/fs/cgroup")
_PREFIX = "strongroom-"


def _v1(controller: str) -> Path:
    return ROOT / controller


@functools.cache
def _v2_root() -> Path | None:
    for candidate in (ROOT, ROOT / "unified"):
        controllers = candidate / "cgroup.controllers"
        subtree = candidate / "cgroup.subtree_control"
        try:
            enabled = subtree.read_text().split()
            if {"memory", "pids"} <= set(controllers.read_text().split()) and {
                "memory",
                "pids",
            } <= set(enabled):
                return candidate
        except OSError:
            continue
    return None


@functools.cache
def cgroup_support() -> str | None:
    """``"v1"``, ``"v2"`` or None: whether (and how) this process can limit a tool's tree
    (looked up once per process: the runner plans every invocation with it)."""
    if all(
        os.access(_v1(c), os.W_OK) and (_v1(c) / "cgroup.procs").exists()
        for c in ("memory", "pids")
    ):
        return "v1"
    root = _v2_root()
    if root is not None and os.access(root, os.W_OK):
        return "v2"
    return None


class ToolCgroup:
    """The control group(s) of one invocation."""

    def __init__(self, kind: str, dirs: list[Path]) -> None:
        self.kind = kind
        self.dirs = dirs

    @classmethod
    def create(cls, memory_bytes: int, max_tasks: int) -> ToolCgroup:
        """OSError when the host refuses (or offers no control groups)."""
        name = _PREFIX + secrets.token_hex(8)
        kind = cgroup_support()
        if kind == "v1":
            memory, pids = _v1("memory") / name, _v1("pids") / name
            group = cls(kind, [memory, pids])
            memory.mkdir()
            try:
                pids.mkdir()
                (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
                with contextlib.suppress(OSError):  # no swap accounting on this host
                    (memory / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
                (pids / "pids.max").write_text(str(max_tasks))
            except OSError:
                group.remove()
                raise
            return group
        root = _v2_root()
        if kind == "v2" and root is not None:
            path = root / name
            group = cls(kind, [path])
            path.mkdir()
            try:
                (path / "memory.max").write_text(str(memory_bytes))
                with contextlib.suppress(OSError):
                    (path / "memory.swap.max").write_text("0")
                (path / "pids.max").write_text(str(max_tasks))
            except OSError:
                group.remove()
                raise
            return group
        raise OSError("control groups are not available to this process")

    def add(self, pid: int) -> None:
        for path in self.dirs:
            (path / "cgroup.procs").write_text(str(pid))

    def memory_exceeded(self) -> bool:
        """Whether the tree hit its memory limit (the kernel then OOM-kills in it)."""
        try:
            # Counts of the OOM killer's kills in the group: hitting the limit alone (the
            # kernel then reclaims page cache) is not running out of memory.
            name = "memory.oom_control" if self.kind == "v1" else "memory.events"
            fields = (self.dirs[0] / name).read_text().split()
            counts = dict(zip(fields[::2], fields[1::2], strict=False))
            if "oom_kill" in counts:
                return int(counts["oom_kill"]) > 0
            return int((self.dirs[0] / "memory.failcnt").read_text()) > 0
        except (OSError, ValueError):
            return False

    def kill_all(self) -> bool:
        """SIGKILL every process still in the group (wherever it tried to go) and wait,
        up to 30 s, until the group is empty; True if there was any."""
        found = False
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            pids = self._pids()
            if not pids:
                return found
            found = True
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
        return found

    def _pids(self) -> list[int]:
        out: set[int] = set()
        for path in self.dirs:
            with contextlib.suppress(OSError):
                out.update(int(p) for p in (path / "cgroup.procs").read_text().split())
        return sorted(out)

    def remove(self) -> None:
        """Remove the group(s) once empty (a dying process may take a moment to leave)."""
        for path in self.dirs:
            for _ in range(200):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
