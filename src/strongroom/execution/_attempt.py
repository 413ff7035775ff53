"""Parts of one attempt of `ToolRunner` that need none of its state: the egress proxy of an
allowlist policy, what the bootstrap is told, and the details of the attempt's
``execution.end`` audit event. (What the attempt came to, and which layers held, stay in
`strongroom.execution.runner`: its steps are called by the names they have there.)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strongroom.errors import ValidationError
from strongroom.execution.outcome import Outcome
from strongroom.sandbox.launch import LaunchResult
from strongroom.sandbox.plan import SandboxPlan

if TYPE_CHECKING:
    from strongroom.execution.runner import _Invocation
    from strongroom.sandbox.proxy import EgressProxy

__all__ = ["bootstrap_plan", "end_details", "start_proxy"]


def start_proxy(inv: _Invocation) -> EgressProxy:
    """The egress proxy of the invocation's allowlist, started (`ValidationError` when the
    allowlist is unusable)."""
    # Imported here: only allowlist policies need it, and every CLI command imports this
    # module.
    from strongroom.sandbox.proxy import EgressProxy

    network = inv.policy.network
    try:
        proxy = EgressProxy(network.allow_hosts, network.allow_ports)
    except ValueError as exc:
        raise ValidationError(
            f"policy {inv.policy_ref} has an unusable network allowlist: {exc}",
            operation="runner.sandbox",
            reason="bad_allowlist",
        ) from None
    proxy.start()
    return proxy


def bootstrap_plan(inv: _Invocation, plan: SandboxPlan, workdir: Path) -> dict[str, Any]:
    """What the bootstrap is told: the tool to call with which input, where, and the layers
    to confine it with."""
    return {
        "entrypoint": inv.tool.entrypoint,
        "input": inv.request.input,
        "cwd": str(workdir.resolve()),
        "sys_path": inv.import_path,
        "layers": plan.layers,
        "runner_pid": os.getpid(),
    }


def end_details(
    attempt: int,
    outcome: Outcome,
    plan: SandboxPlan,
    result: LaunchResult,
    *,
    enforced: list[str],
    denied: list[dict[str, Any]],
    dropped_lines: int,
) -> dict[str, Any]:
    """What the attempt's ``execution.end`` audit event records about it."""
    payload = outcome.payload
    return {
        "attempt": attempt,
        "status": "success" if outcome.ok else "failure",
        "error_code": outcome.code,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "layers_enforced": enforced,
        "layers_missing": plan.missing,
        "usage": result.usage(),
        "output_sha256": hashlib.sha256(payload).hexdigest() if payload else None,
        "leftover_processes_killed": result.leftover_processes,
        "host_calls": result.host_calls,
        "denied_connections": denied,
        "output_truncated": result.output_truncated,
        "writes": result.writes,
        "log_lines_dropped": dropped_lines,
        "violation": outcome.details if outcome.code == "sandbox_violation" else None,
    }
