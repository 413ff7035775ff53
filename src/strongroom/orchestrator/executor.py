"""Where one step executes: the seam between the driver, which decides and records, and the
place a step's tool runs.

The driver owns a run's snapshot chain and records every step's end; an executor only runs
one attempt of one step and answers with the runner's response. `LocalExecutor` runs it here,
through this process's `ToolRunner` (today's behaviour). A step is named by a `StepJob`: ids
and digests only, which is all a message to a remote worker may carry (payloads stay in the
vault, secrets stay on the machines).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from strongroom.models import ErrorInfo, RunnerResponse, RunnerStatus, utcnow

if TYPE_CHECKING:
    from strongroom.execution import ToolRunner
    from strongroom.models.registry import Step

__all__ = ["WORKER_LOST", "LocalExecutor", "StepExecutor", "StepJob", "failure_response"]

WORKER_LOST: Final = "worker_lost"
"""The error code of an attempt whose worker stopped answering: the driver starts a new
attempt, within the tool's ``max_retries``."""


@dataclass(frozen=True)
class StepJob:
    """One attempt of one step, by ids and digests: ``attempt`` is the step's start count
    (`StepState.starts`) and ``request_id`` the id its execution is audited under."""

    run_id: str
    step_id: str
    attempt: int
    request_id: str
    tool_id: str
    manifest_digest: str
    caller: str

    def runner_request(self, wired_input: dict[str, Any]) -> dict[str, Any]:
        """The `RunnerRequest` this job runs, given its wired input."""
        return {
            "request_id": self.request_id,
            "run_id": self.run_id,
            "tool_id": self.tool_id,
            "tool_version": f"sha256:{self.manifest_digest}",
            "caller": self.caller,
            "input": wired_input,
        }


class StepExecutor(Protocol):
    """Runs one step attempt and answers how it ended (never raises for a tool's failure:
    that is a response with an error)."""

    async def execute(
        self,
        job: StepJob,
        *,
        step: Step,
        wire: Callable[[], Awaitable[dict[str, Any]]],
        cancel: threading.Event,
    ) -> RunnerResponse:
        """``wire()`` builds the step's input from the run's inputs and upstream outputs (an
        executor that runs the step elsewhere may build it there instead); ``cancel`` set
        means the run was cancelled: the attempt is killed and answers ``cancelled``."""
        ...


class LocalExecutor:
    """Runs the step in this process's execution lane (its sandbox, its tool path)."""

    def __init__(self, runner: ToolRunner) -> None:
        self.runner = runner

    async def execute(
        self,
        job: StepJob,
        *,
        step: Step,
        wire: Callable[[], Awaitable[dict[str, Any]]],
        cancel: threading.Event,
    ) -> RunnerResponse:
        return await self.runner.run(
            job.runner_request(await wire()),
            cancel=cancel,
            step=job.step_id,
            output_role=step.persistence.role,
            store_output=step.persistence.store_output,
        )


def failure_response(job: StepJob, code: str, message: str, **details: Any) -> RunnerResponse:
    """The answer of an attempt that ended without its tool answering."""
    now = utcnow()
    return RunnerResponse(
        request_id=job.request_id,
        run_id=job.run_id,
        tool_id=job.tool_id,
        tool_version=f"sha256:{job.manifest_digest}",
        status=RunnerStatus.FAILURE,
        started_at=now,
        finished_at=now,
        error=ErrorInfo(code=code, message=message, details=details),
    )
