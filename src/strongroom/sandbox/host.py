"""What this host can enforce: probed once per process, in a child, by the same bootstrap
that later confines tools (so the answer is about the very interpreter the tools run in).

`probe_host()` is what ``strongroom sandbox check`` prints and what `plan_sandbox` plans
against. Layers can be switched off with ``STRONGROOM_SANDBOX_DISABLE=netns,landlock_net``
(comma separated) to mimic a host without them, e.g. without user namespaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from strongroom.errors import SandboxUnavailable
from strongroom.sandbox._cgroup import cgroup_support

__all__ = [
    "BOOTSTRAP",
    "DISABLE_ENV",
    "LAYERS",
    "HostCapabilities",
    "disabled_layers",
    "probe_host",
]

BOOTSTRAP = Path(__file__).with_name("_bootstrap.py")
DISABLE_ENV = "STRONGROOM_SANDBOX_DISABLE"

#: Every layer the runner knows, with what it enforces (stable names: they are audited).
LAYERS: dict[str, str] = {
    "session": "own session and process group; the whole group is killed at the end",
    "timeout": "wall-clock limit; on expiry the whole process group is SIGKILLed",
    "env_scrub": "environment reduced to the policy's allowlist",
    "rlimits": "CPU seconds, address space, file size, open files, processes, no core dumps",
    "unprivileged_uid": "root drops to a fresh unprivileged uid (so the process limit holds)",
    "landlock_fs": "file system deny-by-default: runtime + read_paths read, write_paths write",
    "landlock_net": "TCP connect only to the egress proxy, no TCP bind",
    "landlock_scope": "no signals or abstract UNIX sockets outside the sandbox",
    "seccomp": "no UDP/raw/UNIX sockets (no sockets at all for deny-all), no ptrace, "
    "no namespaces, no setsid, no mounts, no io_uring, no bpf",
    "netns": "own network and IPC namespaces: no route out (deny-all) or only the relay to "
    "the egress proxy (allowlist); SysV IPC of the tool's own",
    "egress_proxy": "allowlisted hosts only, through the runner's proxy",
    "cgroup": "memory and tasks capped for the tool's whole process tree",
    "write_quota": "bytes and files written per invocation capped (scratch and write paths "
    "staged on a size-limited tmpfs in a mount namespace, copied out after)",
}


def disabled_layers() -> frozenset[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    names = frozenset(part.strip() for part in raw.split(",") if part.strip())
    unknown = names - set(LAYERS)
    if unknown:
        raise SandboxUnavailable(
            f"{DISABLE_ENV} names unknown layers: {', '.join(sorted(unknown))}",
            operation="sandbox.probe",
            reason="unknown_layer",
            known=sorted(LAYERS),
        )
    return names


@dataclass(frozen=True)
class HostCapabilities:
    """The isolation layers this host can enforce, and the facts they were derived from."""

    platform: str
    euid: int
    landlock_abi: int
    seccomp: bool
    netns: bool
    python: str
    python_path: tuple[str, ...]
    prefixes: tuple[str, ...]
    notes: dict[str, str] = field(default_factory=dict)
    mountns: bool = False  # a private mount namespace with tmpfs and overlay mounts
    cgroup: bool = False  # this runner may create control groups (memory, pids)

    @property
    def linux(self) -> bool:
        return self.platform.startswith("linux")

    @property
    def root(self) -> bool:
        return self.euid == 0

    def available(self) -> dict[str, bool]:
        """Layer name -> whether this host can enforce it."""
        linux = self.linux
        return {
            "session": True,
            "timeout": True,
            "env_scrub": True,
            "rlimits": linux,
            "unprivileged_uid": linux and self.root,
            "landlock_fs": self.landlock_abi >= 1,
            "landlock_net": self.landlock_abi >= 4,
            "landlock_scope": self.landlock_abi >= 6,
            "seccomp": self.seccomp,
            "netns": self.netns,
            "egress_proxy": True,
            "cgroup": self.cgroup,
            "write_quota": self.mountns,
        }

    def to_dict(self) -> dict[str, object]:
        return {
            "platform": self.platform,
            "euid": self.euid,
            "landlock_abi": self.landlock_abi,
            "seccomp": self.seccomp,
            "netns": self.netns,
            "mountns": self.mountns,
            "cgroup": self.cgroup,
            "python": self.python,
            "layers": self.available(),
            "notes": self.notes,
        }


@cache
def probe_host(python: str = sys.executable) -> HostCapabilities:
    """Run the bootstrap's probe in a child of ``python`` (cached per interpreter)."""
    if not sys.platform.startswith("linux"):
        return HostCapabilities(
            platform=sys.platform,
            euid=os.geteuid(),
            landlock_abi=0,
            seccomp=False,
            netns=False,
            python=python,
            python_path=tuple(p for p in sys.path if p and os.path.isabs(p)),
            prefixes=tuple(sorted({sys.prefix, sys.base_prefix})),
            notes={"platform": "only a process group, a timeout and a clean environment here"},
        )
    try:
        done = subprocess.run(
            [python, "-I", str(BOOTSTRAP), "--probe"],
            capture_output=True,
            timeout=60,
            check=False,
            env={"PATH": "/usr/bin:/bin"},
        )
        found = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise SandboxUnavailable(
            f"could not probe the sandbox with {python}: {exc}",
            operation="sandbox.probe",
            reason="probe_failed",
        ) from exc
    notes: dict[str, str] = {}
    if "landlock_error" in found:
        notes["landlock"] = str(found["landlock_error"])
    if not found.get("seccomp"):
        notes["seccomp"] = str(found.get("seccomp_reason", ""))
    return HostCapabilities(
        platform=str(found.get("platform", sys.platform)),
        euid=int(found.get("euid", os.geteuid())),
        landlock_abi=int(found.get("landlock_abi", 0)),
        seccomp=bool(found.get("seccomp")),
        netns=bool(found.get("netns")),
        mountns=bool(found.get("mountns")),
        cgroup=cgroup_support() is not None,
        python=python,
        python_path=tuple(str(p) for p in found.get("python_path", [])),
        prefixes=tuple(str(p) for p in found.get("prefixes", [])),
        notes=notes,
    )
