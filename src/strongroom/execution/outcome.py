"""Turning what happened to a sandboxed process into a result: success with output, or one of
the lane's failure codes, and whether a retry may help."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

from strongroom.sandbox.launch import LaunchResult

__all__ = [
    "RETRYABLE",
    "Outcome",
    "account_connects",
    "account_writes",
    "classify",
    "refused_connects",
]

#: Failures a second attempt may cure (a hung or crashed handler); the others are decided by
#: the tool, its input or the policy, and would fail the same way again.
RETRYABLE = frozenset({"timeout", "handler_exception"})

_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGKILL}


@dataclass
class Outcome:
    ok: bool
    output: Any = None
    code: str | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    traceback: str | None = None
    payload: bytes | None = None  # the output as stored (see payloads.encode_payload)

    @property
    def retryable(self) -> bool:
        return not self.ok and self.code in RETRYABLE

    def error(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


def classify(result: LaunchResult, *, timeout: float, memory_bytes: int | None) -> Outcome:
    """The outcome of one attempt, from the runner's own observations first (timeout, signal,
    peak memory) and the child's message second."""
    peak = result.peak_kib * 1024
    if result.cancelled:
        return Outcome(
            ok=False,
            code="cancelled",
            message="the run was cancelled; the tool's process group was killed",
        )
    if result.timed_out:
        return Outcome(
            ok=False,
            code="timeout",
            message=f"the tool did not finish within {timeout:g} s; its process group was killed",
            details={"timeout_seconds": timeout, "limit": "wall_clock"},
        )
    if result.signal == signal.SIGXCPU:
        return Outcome(
            ok=False,
            code="timeout",
            message="the tool used up its CPU-time budget",
            details={"limit": "cpu_time", "cpu_seconds": result.usage()["cpu_seconds"]},
        )
    message = result.message
    if message is not None and message.get("type") == "result":
        return Outcome(ok=True, output=message.get("output"))
    if message is not None and message.get("type") == "error":
        details = message.get("details")
        return Outcome(
            ok=False,
            code=str(message.get("code") or "handler_exception"),
            message=str(message.get("message") or ""),
            details=details if isinstance(details, dict) else {},
            traceback=message.get("traceback")
            if isinstance(message.get("traceback"), str)
            else None,
        )
    near_limit = memory_bytes is not None and peak >= 0.9 * memory_bytes
    if result.signal is not None and result.cgroup_memory_exceeded:
        return Outcome(
            ok=False,
            code="memory_exceeded",
            message="the tool's processes together reached the policy's memory limit",
            details={"signal": _signal_name(result.signal), "limit": "control_group"},
        )
    if result.signal in _CRASH_SIGNALS and near_limit:
        return Outcome(
            ok=False,
            code="memory_exceeded",
            message=f"the tool was killed near its memory limit (peak {peak // 1048576} MiB)",
            details={"signal": signal.Signals(result.signal).name, "peak_memory_bytes": peak},
        )
    if result.signal is not None:
        name = _signal_name(result.signal)
        return Outcome(
            ok=False,
            code="handler_exception",
            message=f"the tool's process died from {name} before returning a result",
            details={"signal": name},
        )
    return Outcome(
        ok=False,
        code="handler_exception",
        message=f"the tool's process exited with status {result.exit_code} "
        "before returning a result",
        details={"exit_code": result.exit_code},
    )


def account_writes(
    outcome: Outcome, writes: dict[str, Any] | None, *, staged: bool = False
) -> Outcome:
    """The write quota's say on an outcome: a tool that failed after filling its quota
    failed because of it (``sandbox_violation``, reason ``write_quota_exceeded``); writes
    that could not be copied out to the write paths fail the invocation whatever the tool
    returned (``sandbox_unavailable``: the sandbox could not deliver what it wrote), and so
    does an answer from a tool whose process was then killed (its writes were discarded)
    or, when the plan ``staged`` writes, no report on them at all."""
    if outcome.ok and (writes.get("discarded") if writes else staged):
        return Outcome(
            ok=False,
            code="sandbox_unavailable",
            message="the tool answered, but its process did not exit by itself (killed, or "
            "its supervisor died): what it wrote to its write paths was not copied out",
            details={"reason": "writes_discarded", "writes": writes},
        )
    if not writes:
        return outcome
    copied = writes.get("copied_out")
    problem = writes.get("error") or (copied.get("error") if isinstance(copied, dict) else None)
    if problem:
        return Outcome(
            ok=False,
            code="sandbox_unavailable",
            message=f"the tool's writes could not be copied out to its write paths: {problem}",
            details={"reason": "copy_out_failed", "writes": writes},
        )
    if writes.get("full") and not outcome.ok and outcome.code == "handler_exception":
        limits = (
            f"{writes.get('bytes_limit', 0) // 1048576} MiB / {writes.get('files_limit')} files"
        )
        return Outcome(
            ok=False,
            code="sandbox_violation",
            message=f"the tool reached its write quota ({limits}; the policy's "
            f"max_write_mb / max_files) and then failed: {outcome.message}",
            details={"reason": "write_quota_exceeded", "writes": writes, **outcome.details},
            traceback=outcome.traceback,
        )
    return outcome


def account_connects(
    outcome: Outcome, connects: dict[str, Any] | None, *, watched: bool
) -> Outcome:
    """A connect watch that was in place but never reported (its supervisor was killed)
    leaves the record of refused connections incomplete: the invocation fails."""
    if not watched or connects is not None or not outcome.ok:
        return outcome
    return Outcome(
        ok=False,
        code="sandbox_violation",
        message="the record of the tool's connection attempts is missing (the sandbox's "
        "supervisor did not report)",
        details={"reason": "connect_record_missing"},
    )


def refused_connects(connects: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The supervisor's record of connections the tool tried around the egress proxy, in
    the shape of the proxy's own denied-connection records."""
    if not connects or not isinstance(connects.get("denied"), list):
        return []
    refused = []
    for entry in connects["denied"][:256]:
        if not isinstance(entry, dict):
            continue
        refused.append(
            {
                "host": str(entry.get("host", ""))[:100],
                "port": entry.get("port") if isinstance(entry.get("port"), int) else 0,
                "allowed": False,
                "reason": "direct connection around the egress proxy: refused",
                "method": "connect",
                "bytes_up": 0,
                "bytes_down": 0,
            }
        )
    return refused


def _signal_name(number: int) -> str:
    return signal.Signals(number).name if number in signal.valid_signals() else str(number)
