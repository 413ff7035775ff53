"""From a sandbox policy and the host's capabilities to a concrete plan: which layers run,
with which paths, limits and environment, and which layers the policy needs but this host
cannot give (`SandboxPlan.missing`; the runner refuses unless degraded isolation is accepted).

Layers every sandboxed tool needs: ``session``, ``timeout``, ``env_scrub``, ``rlimits``,
``landlock_fs``, ``seccomp`` and, when the runner is root, ``unprivileged_uid``. An
``allowlist`` network also needs ``landlock_net`` (TCP only to the proxy) and the
``egress_proxy``. ``netns`` (network and IPC namespaces; with an allowlist, the egress
relay that makes the proxy the only way out) and ``landlock_scope`` are used whenever the
host offers them, never required, so hosts without user namespaces still run tools, with
the weaker guarantees docs/security.md lists for them. ``cgroup`` (memory and tasks of the
tool's whole process tree) likewise, where the runner may manage control groups.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strongroom.errors import SandboxViolation
from strongroom.models.registry import FilesystemMode, GovernanceLevel, NetworkMode, SandboxPolicy
from strongroom.sandbox._cgroup import cgroup_support
from strongroom.sandbox.host import HostCapabilities

__all__ = ["SandboxLimits", "SandboxPlan", "plan_sandbox"]

MIB = 1024 * 1024

#: Read (and execute) access every tool needs: the shared libraries and helper programs.
SYSTEM_READ_PATHS: tuple[str, ...] = (
    "/usr",
    "/bin",
    "/lib",
    "/lib64",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
)
#: What an allowlisted network needs besides: certificates to check TLS through the proxy.
TLS_READ_PATHS: tuple[str, ...] = ("/etc/ssl", "/etc/ca-certificates", "/etc/pki")
SYSTEM_WRITE_PATHS: tuple[str, ...] = ("/dev/null",)

REQUIRED_LAYERS: tuple[str, ...] = (
    "session",
    "timeout",
    "env_scrub",
    "rlimits",
    "landlock_fs",
    "seccomp",
)


@dataclass(frozen=True)
class SandboxLimits:
    """Limits the policy does not set (runner-wide defaults)."""

    max_file_bytes: int = 1024 * MIB
    max_open_files: int = 256
    max_processes: int = 64
    uid_base: int = 1_850_000_000
    uid_range: int = 250_000_000


@dataclass
class SandboxPlan:
    """What the bootstrap is told to enforce, and what the audit records about it."""

    layers: dict[str, Any]
    enforced: list[str]
    missing: list[str]
    skipped: dict[str, str]
    read_paths: list[str]
    write_paths: list[str]
    env: dict[str, str]
    timeout_seconds: float
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "enforced": self.enforced,
            "missing": self.missing,
            "skipped": self.skipped,
            "read_paths": self.read_paths,
            "write_paths": self.write_paths,
            "env": sorted(self.env),
            "timeout_seconds": self.timeout_seconds,
            "rlimits": self.layers.get("rlimits"),
            "notes": self.notes,
        }


def _resolve(paths: Iterable[str], workdir: Path) -> list[str]:
    out: list[str] = []
    for raw in paths:
        path = Path(raw)
        path = path if path.is_absolute() else workdir / path
        out.append(os.path.realpath(path))
    return out


def _unique(paths: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(paths))


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def _within(path: str, folders: Sequence[str]) -> bool:
    return any(path != folder and _overlaps(path, folder) for folder in folders)


def _stageable(writes: Sequence[str]) -> list[str]:
    """The write paths the quota stages through an overlay: existing folders, outermost
    only (an overlay on a folder covers what is under it)."""
    folders = [p for p in _unique(writes) if os.path.isdir(p) and not os.path.islink(p)]
    return [p for p in folders if not any(p.startswith(q.rstrip("/") + "/") for q in folders)]


def _check_protected(paths: Sequence[str], protected: Sequence[Path], policy_id: str) -> None:
    guarded = [os.path.realpath(p) for p in protected]
    for path in paths:
        for vault_path in guarded:
            if _overlaps(path, vault_path):
                raise SandboxViolation(
                    f"the sandbox (policy {policy_id}, tool paths and runtime) would let the "
                    f"tool reach the vault's own files ({path} overlaps {vault_path}); keep the "
                    "vault outside every path a tool may read or write",
                    operation="sandbox.plan",
                    reason="policy_reaches_vault",
                    path=path,
                )


def _count_processes(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += 1
            except OSError:
                continue
    return count


@dataclass
class _Choice:
    """Which layers the plan enforces, which the policy needs but this host lacks, and why
    each other layer is skipped."""

    enforced: list[str]
    missing: list[str]
    skipped: dict[str, str]
    cgroup_version: str | None = None
    #: The write paths the quota stages through an overlay (see `_stageable`).
    staged: list[str] = field(default_factory=list)


def plan_sandbox(
    policy: SandboxPolicy,
    caps: HostCapabilities,
    *,
    level: GovernanceLevel,
    workdir: Path,
    scratch: Path,
    tool_paths: Sequence[Path] = (),
    protected: Sequence[Path] = (),
    timeout_seconds: float,
    proxy_port: int | None = None,
    disabled: frozenset[str] = frozenset(),
    limits: SandboxLimits | None = None,
    environ: dict[str, str] | None = None,
    staging: Path | None = None,
) -> SandboxPlan:
    """The plan for running one tool under ``policy`` on this host. ``staging``: a fresh
    folder holding ``scratch``, where the write quota's tmpfs is mounted."""
    limits = limits or SandboxLimits()
    environ = dict(os.environ) if environ is None else environ
    notes: list[str] = []
    allowlist = policy.network.mode is NetworkMode.ALLOWLIST
    policy_reads, policy_writes = _policy_paths(policy, level, workdir, notes)
    runtime = [*caps.prefixes, *caps.python_path, *(str(p) for p in tool_paths)]
    reads = _unique(
        [*runtime, *SYSTEM_READ_PATHS, *(TLS_READ_PATHS if allowlist else ()), *policy_reads]
    )
    writes = _unique([str(scratch), *SYSTEM_WRITE_PATHS, *policy_writes])
    _check_protected([*reads, *writes], protected, policy.sandbox_id)

    choice = _choose_layers(
        caps,
        disabled,
        allowlist=allowlist,
        scratch=scratch,
        staging=staging,
        policy_writes=policy_writes,
    )
    layers = _layer_settings(
        policy,
        caps,
        limits,
        choice,
        timeout_seconds=timeout_seconds,
        allowlist=allowlist,
        proxy_port=proxy_port,
        reads=reads,
        writes=writes,
        staging=staging,
        policy_writes=policy_writes,
        notes=notes,
    )
    return SandboxPlan(
        layers=layers,
        enforced=choice.enforced,
        missing=choice.missing,
        skipped=choice.skipped,
        read_paths=reads,
        write_paths=writes,
        env=_environment(policy, environ, scratch, allowlist=allowlist, proxy_port=proxy_port),
        timeout_seconds=timeout_seconds,
        notes=notes,
    )


def _policy_paths(
    policy: SandboxPolicy, level: GovernanceLevel, workdir: Path, notes: list[str]
) -> tuple[list[str], list[str]]:
    """The paths the policy lets a tool read and write, resolved (under A0, its write paths
    are readable only)."""
    fs = policy.filesystem
    requested_reads = list(fs.read_paths) if fs.mode is not FilesystemMode.DENY_ALL else []
    requested_writes = list(fs.write_paths) if fs.mode is FilesystemMode.READ_WRITE else []
    if level is GovernanceLevel.A0 and requested_writes:
        notes.append("governance A0 is read-only: write_paths are readable, not writable")
        requested_reads += requested_writes
        requested_writes = []
    return _resolve(requested_reads, workdir), _resolve(requested_writes, workdir)


def _choose_layers(
    caps: HostCapabilities,
    disabled: frozenset[str],
    *,
    allowlist: bool,
    scratch: Path,
    staging: Path | None,
    policy_writes: Sequence[str],
) -> _Choice:
    """Which layers run: the required ones this host gives (the others are missing), then the
    optional ones, the control group and the write quota wherever they can be used."""
    available = caps.available()
    required = list(REQUIRED_LAYERS)
    if caps.root:
        required.append("unprivileged_uid")
    if allowlist:
        required += ["landlock_net", "egress_proxy"]
    optional = (
        ["netns", "landlock_scope"] if allowlist else ["netns", "landlock_net", "landlock_scope"]
    )

    def usable(layer: str) -> bool:
        return available.get(layer, False) and layer not in disabled

    choice = _Choice(
        enforced=[layer for layer in required if usable(layer)],
        missing=[layer for layer in required if not usable(layer)],
        skipped={},
    )
    for layer in optional:
        if layer in disabled:
            choice.skipped[layer] = "disabled by the runner"
        elif not available.get(layer, False):
            choice.skipped[layer] = "not available on this host"
        else:
            choice.enforced.append(layer)
    _choose_cgroup(choice, disabled)
    choice.staged = _stageable(policy_writes)
    _choose_write_quota(choice, available, disabled, scratch=scratch, staging=staging)
    if allowlist and "netns" in choice.skipped:
        choice.skipped["netns"] += (
            ": without a network namespace, egress is pinned to the proxy's port number only "
            "(Landlock cannot pin an address), so any address listening on that port is reachable"
        )
    return choice


def _choose_cgroup(choice: _Choice, disabled: frozenset[str]) -> None:
    """Whether the tool's whole process tree gets a control group (and of which version)."""
    if "cgroup" in disabled:
        choice.skipped["cgroup"] = "disabled by the runner"
    elif (support := cgroup_support()) is None:
        choice.skipped["cgroup"] = (
            "control groups are not writable by this runner: memory is capped per process "
            "(RLIMIT_AS) and processes per uid (RLIMIT_NPROC) only"
        )
    else:
        choice.enforced.append("cgroup")
        choice.cgroup_version = support


def _choose_write_quota(
    choice: _Choice,
    available: dict[str, bool],
    disabled: frozenset[str],
    *,
    scratch: Path,
    staging: Path | None,
) -> None:
    """Whether the total a tool writes is capped (by a tmpfs in ``staging``), or why not."""
    if "write_quota" in disabled:
        choice.skipped["write_quota"] = "disabled by the runner"
    elif staging is None or scratch.parent != staging:
        choice.skipped["write_quota"] = "the runner gave no staging folder"
    elif not available.get("write_quota", False):
        choice.skipped["write_quota"] = (
            "no private mount namespace on this host: only each file's size is capped "
            "(RLIMIT_FSIZE), not what a tool writes in total"
        )
    elif clash := [p for p in choice.staged if _overlaps(p, os.path.realpath(staging))]:
        choice.skipped["write_quota"] = (
            f"write path {clash[0]} holds the runner's staging folder: the total written is "
            "not capped (keep write paths out of the temporary folder)"
        )
    else:
        choice.enforced.append("write_quota")


def _layer_settings(
    policy: SandboxPolicy,
    caps: HostCapabilities,
    limits: SandboxLimits,
    choice: _Choice,
    *,
    timeout_seconds: float,
    allowlist: bool,
    proxy_port: int | None,
    reads: list[str],
    writes: list[str],
    staging: Path | None,
    policy_writes: Sequence[str],
    notes: list[str],
) -> dict[str, Any]:
    """What the bootstrap is told for each enforced layer, in the order it is told."""
    enforced = choice.enforced
    layers: dict[str, Any] = {}
    if "rlimits" in enforced:
        layers["rlimits"] = _rlimits(policy, caps, limits, timeout_seconds)
    if "cgroup" in enforced:
        # The whole tree: the tool, its children, the supervisor and the relay's threads.
        layers["cgroup"] = {
            "memory_bytes": policy.resources.memory_mb * MIB,
            "max_tasks": limits.max_processes + 64,
            "version": choice.cgroup_version,
        }
    if "write_quota" in enforced:
        assert staging is not None
        layers["write_quota"] = {
            "base": os.path.realpath(staging),
            "bytes": policy.resources.max_write_mb * MIB,
            "files": policy.resources.max_files,
            "write_paths": choice.staged,
        }
        staged = choice.staged
        unstaged = [p for p in policy_writes if p not in staged and not _within(p, staged)]
        if unstaged:
            notes.append(
                "write paths that are not folders are capped per file only: " + ", ".join(unstaged)
            )
    if "unprivileged_uid" in enforced:
        # A fresh uid per invocation: RLIMIT_NPROC counts per uid, and processes of an
        # earlier invocation may not be reaped yet.
        uid = limits.uid_base + secrets.randbelow(limits.uid_range)
        layers["drop_uid"] = {"uid": uid, "gid": uid}
    if "netns" in enforced:
        # With an allowlist, the tool's namespace gets a relay at the proxy's port: the only
        # way out, and it leads to the proxy alone.
        layers["netns"] = {"relay_port": proxy_port} if allowlist and proxy_port else True
    if "landlock_fs" in enforced:
        layers["landlock"] = {
            "read_paths": reads,
            "write_paths": writes,
            "connect_tcp": [proxy_port] if allowlist and proxy_port else [],
        }
    if "seccomp" in enforced:
        layers["seccomp"] = _seccomp(
            allowlist=allowlist, proxy_port=proxy_port, netns="netns" in enforced
        )
    return layers


def _rlimits(
    policy: SandboxPolicy, caps: HostCapabilities, limits: SandboxLimits, timeout_seconds: float
) -> dict[str, int]:
    """The resource limits of each of the tool's processes."""
    cpu_seconds = max(1, math.ceil(policy.resources.cpu_cores * timeout_seconds)) + 1
    nproc = limits.max_processes
    if not caps.root:  # counted per real uid: leave room for what this user already runs
        nproc += _count_processes(os.getuid())
    return {
        "cpu": cpu_seconds,
        "as": policy.resources.memory_mb * MIB,
        "fsize": limits.max_file_bytes,
        "nofile": limits.max_open_files,
        "nproc": nproc,
        "core": 0,
    }


def _seccomp(*, allowlist: bool, proxy_port: int | None, netns: bool) -> dict[str, Any]:
    """What the seccomp filter refuses, and which connect(2) targets its supervisor lets by."""
    # Without an IPC namespace of its own, SysV IPC would be the host's: refuse it.
    settings: dict[str, Any] = {"allow_inet_stream": allowlist, "deny_ipc": not netns}
    if allowlist and proxy_port:
        # Every connect(2) seen by the supervisor: to the relay (or, without a network
        # namespace, the proxy on the host's loopback) it goes on; anything else is
        # refused and recorded.
        relay = [["127.0.0.1", proxy_port]]
        if netns:
            relay.append(["::1", proxy_port])
        settings["connect_to"] = relay
    return settings


def _environment(
    policy: SandboxPolicy,
    environ: dict[str, str],
    scratch: Path,
    *,
    allowlist: bool,
    proxy_port: int | None,
) -> dict[str, str]:
    """The tool's environment: the variables the policy lets through, a fixed PATH, its
    scratch folder as HOME and TMPDIR and, with an allowlist, the proxy."""
    env = {name: environ[name] for name in policy.environment.allowlist if name in environ}
    env.setdefault("LANG", "C.UTF-8")
    env.update(
        {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(scratch), "TMPDIR": str(scratch)}
    )
    if allowlist and proxy_port:
        url = f"http://127.0.0.1:{proxy_port}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            env[name] = env[name.lower()] = url
        env["NO_PROXY"] = env["no_proxy"] = ""
    return env
