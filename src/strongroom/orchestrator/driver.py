"""Driving one run of a plan: schedule the ready steps, run each through the execution lane,
persist every transition, end the run. One `Driver` per orchestrator process and run; the
decisions before it (what to run, whether a resume may go on) are `Orchestrator`'s."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strongroom.errors import Conflict, StrongroomError
from strongroom.ids import new_id
from strongroom.models import (
    ArtifactRole,
    ErrorInfo,
    PhaseEvent,
    Playbook,
    Run,
    RunnerResponse,
    RunState,
    RunStatus,
    utcnow,
)
from strongroom.models.registry import Step
from strongroom.orchestrator.events import Event
from strongroom.orchestrator.executor import WORKER_LOST, StepExecutor, StepJob
from strongroom.orchestrator.state import STATE_KEY, PlanState, StepState, StepStatus
from strongroom.orchestrator.wiring import UpstreamOutputs, step_request

if TYPE_CHECKING:
    from strongroom.vault import Vault

__all__ = ["CANCEL_POLL_SECONDS", "Driver", "RunResult", "audit"]

CANCEL_POLL_SECONDS = 0.5


@dataclass
class RunResult:
    run: Run
    plan: PlanState
    revision: int

    @property
    def status(self) -> RunStatus:
        return self.run.status


async def audit(vault: Vault, actor: str, event: str, run_id: str, details: dict[str, Any]) -> None:
    await vault.audit.record(
        {
            "event": event,
            "actor": actor,
            "subject_type": "run",
            "subject_id": run_id,
            "details": details,
        }
    )


class Driver:
    """The mutable state of one drive of a run, and the loop that drives it."""

    def __init__(
        self,
        vault: Vault,
        executor: StepExecutor,
        playbook: Playbook,
        *,
        run_id: str,
        plan: PlanState,
        state: RunState,
        revision: int,
        actor: str,
        on_event: Callable[[Event], None],
    ) -> None:
        self._vault = vault
        self._executor = executor
        self._actor = actor
        self._on_event = on_event
        self.playbook = playbook
        self.run_id = run_id
        self.plan = plan
        self.state = state
        self.revision = revision
        self.lock = asyncio.Lock()
        self.cancel = threading.Event()
        self.outputs: dict[str, Any] = {}
        self._upstream = UpstreamOutputs(vault, plan, self.outputs)
        self.running: dict[str, asyncio.Task[None]] = {}
        self._before_start: dict[str, StepState] = {}  # marked to start, not yet launched
        self._steps = {step.step_id: step for step in playbook.steps}
        self.stop_scheduling = False
        self._run: Run | None = None
        # The plan as JSON, kept in the state and updated one step at a time: dumping the
        # whole plan at every transition would make a run's cost grow with its square.
        self._plan_json: dict[str, Any] = plan.model_dump(mode="json")
        self.state.data[STATE_KEY] = self._plan_json
        self._dirty = True

    def _sync(self, step_id: str | None = None) -> None:
        if step_id is None:
            self._plan_json = self.plan.model_dump(mode="json")
        else:
            self._plan_json["steps"][step_id] = self.plan.steps[step_id].model_dump(mode="json")
        self.state.data[STATE_KEY] = self._plan_json
        self._dirty = True

    async def run(self) -> RunResult:
        """Start the ready steps (up to ``max_parallel`` at once), then wait: each step that
        settles starts the steps it made ready, in the same transition. Ends the run when no
        step is left running."""
        watcher = asyncio.create_task(self._watch_cancel())
        try:
            async with self.lock:
                started = self._start_ready()
                if started:
                    await self.persist()
                self._launch(started)
            while self.running:
                done, _ = await asyncio.wait(
                    list(self.running.values()), return_when=asyncio.FIRST_COMPLETED
                )
                for step_id in [s for s, task in self.running.items() if task in done]:
                    task = self.running.pop(step_id)
                    task.result()  # an unexpected error in the orchestrator itself propagates
        finally:
            watcher.cancel()
            for task in self.running.values():
                task.cancel()
        return await self._finish()

    def _start_ready(self) -> list[Step]:
        """Mark the steps that may start now RUNNING (in the plan only): every upstream step
        done, within ``max_parallel``, unless the run stops scheduling. The caller persists
        that before it launches them, so a step never runs without a snapshot saying so."""
        if self.stop_scheduling or self.cancel.is_set():
            return []
        plan = self.plan
        slots = plan.max_parallel - sum(
            1 for state in plan.steps.values() if state.status is StepStatus.RUNNING
        )
        started: list[Step] = []
        for state in plan.ordered():
            if len(started) >= slots:
                break
            if state.status is not StepStatus.PENDING:
                continue
            if not all(plan.steps[up].done for up in state.upstream):
                continue
            self._before_start[state.step_id] = state.model_copy()
            state.status = StepStatus.RUNNING
            state.starts += 1
            state.request_id = new_id()
            state.started_at = utcnow()
            state.finished_at = None
            state.error = None
            self._sync(state.step_id)
            started.append(self._steps[state.step_id])
        return started

    def _unstart(self, steps: list[Step]) -> None:
        """Take back `_start_ready`'s marks when the transition that carried them was not
        stored: those steps never started."""
        for step in steps:
            self.plan.steps[step.step_id] = self._before_start.pop(step.step_id)
            self._sync(step.step_id)

    def _launch(self, steps: list[Step]) -> None:
        """Run the steps `_start_ready` marked, once their start is persisted."""
        for step in steps:
            self._before_start.pop(step.step_id, None)
            self.running[step.step_id] = asyncio.create_task(self._run_step(step))
            self.emit(Event.step("step_started", self, self.plan.steps[step.step_id]))

    async def _watch_cancel(self) -> None:
        while not self.cancel.is_set():
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            run = await self._vault.runs.get(self.run_id)
            if run.status is RunStatus.CANCELLED:
                self.cancel.set()

    def job(self, state: StepState) -> StepJob:
        """The attempt of a step that `_start_ready` marked RUNNING, by ids and digests."""
        assert state.request_id is not None
        return StepJob(
            run_id=self.run_id,
            step_id=state.step_id,
            attempt=state.starts,
            request_id=state.request_id,
            tool_id=state.tool_id,
            manifest_digest=state.manifest_digest,
            caller=self._actor,
        )

    async def _run_step(self, step: Step) -> None:
        async def wire() -> dict[str, Any]:
            return await step_request(
                step, self.plan, self._upstream.load, self._upstream.check_artifact
            )

        while True:
            job = self.job(self.plan.steps[step.step_id])
            try:
                response = await self._executor.execute(
                    job, step=step, wire=wire, cancel=self.cancel
                )
            except StrongroomError as exc:  # the input could not be wired (or sent)
                await self._settle(step, job, StepStatus.FAILED, error=exc.to_info())
                return
            lost = response.error is not None and response.error.code == WORKER_LOST
            if not (lost and await self._retry(step, job, response)):
                break
        if response.ok:
            await self._settle(
                step,
                job,
                StepStatus.COMPLETED,
                output=response.output,
                artifact_ids=response.artifact_ids,
                output_sha256=response.output_sha256,
                needs_review=response.needs_review,
            )
            return
        assert response.error is not None
        status = {
            "approval_required": StepStatus.WAITING_APPROVAL,
            "cancelled": StepStatus.CANCELLED,
        }.get(response.error.code, StepStatus.FAILED)
        await self._settle(step, job, status, error=response.error)

    async def _retry(self, step: Step, job: StepJob, response: RunnerResponse) -> bool:
        """A new attempt of a step whose worker was lost, if the tool's ``max_retries``
        allows one: persisted (a snapshot with the new attempt and request id) and audited
        before it is sent. False: no retry left, or the run was cancelled meanwhile."""
        state = self.plan.steps[step.step_id]
        try:
            _, tool = await self._vault.registry.resolve_tool(
                f"{state.tool_id}@sha256:{state.manifest_digest}"
            )
        except StrongroomError:  # the tool cannot be read back: no retry, the step fails
            return False
        allowed = 1 + tool.constraints.max_retries
        async with self.lock:
            if state.status is not StepStatus.RUNNING or state.request_id != job.request_id:
                return False
            if job.attempt >= allowed or self.cancel.is_set():
                return False
            before = state.model_copy()
            state.starts += 1
            state.request_id = new_id()
            state.started_at = utcnow()
            self._sync(step.step_id)
            error = response.error
            stored = await self._commit(
                snapshot=True,
                log_lines=[
                    {
                        "level": "warning",
                        "event": "step.retried",
                        "phase": step.step_id,
                        "message": f"step {step.step_id}: attempt {state.starts} of {allowed} "
                        f"after {error.message if error else WORKER_LOST}",
                    }
                ],
            )
            if not stored:
                self.plan.steps[step.step_id] = before
                self._sync(step.step_id)
                return False
        await audit(
            self._vault,
            self._actor,
            "orchestrator.step_retried",
            self.run_id,
            {
                "step": step.step_id,
                "attempt": state.starts,
                "of": allowed,
                "request_id": state.request_id,
                "previous_request_id": job.request_id,
                "reason": WORKER_LOST,
                "worker": (error.details if error else {}).get("worker"),
            },
        )
        return True

    async def _settle(
        self,
        step: Step,
        job: StepJob,
        status: StepStatus,
        *,
        output: Any = None,
        artifact_ids: list[str] | None = None,
        output_sha256: str | None = None,
        needs_review: bool = False,
        error: ErrorInfo | None = None,
    ) -> None:
        """Record how a step ended and start the steps it made ready, in one transition:
        stored, they are launched; not stored (the run was cancelled meanwhile), they are
        taken back. Any end but completion or waiting for an approval stops scheduling.

        Only the attempt the plan is running is recorded: an answer for another attempt (a
        late or repeated delivery) is audited as ignored and changes nothing, so a step's end
        is recorded once."""
        state = self.plan.steps[step.step_id]
        async with self.lock:
            if state.status is not StepStatus.RUNNING or state.request_id != job.request_id:
                await audit(
                    self._vault,
                    self._actor,
                    "orchestrator.result_ignored",
                    self.run_id,
                    {
                        "step": step.step_id,
                        "attempt": job.attempt,
                        "request_id": job.request_id,
                        "answer": status.value,
                        "step_status": state.status.value,
                        "current_request_id": state.request_id,
                    },
                )
                return
            state.status = status
            state.finished_at = utcnow()
            state.error = error
            state.needs_review = needs_review
            if status is StepStatus.COMPLETED:
                self._keep_output(step, state, output, artifact_ids, output_sha256)
            elif status is not StepStatus.WAITING_APPROVAL:
                self.stop_scheduling = True
            self._note_phase(step, status, artifact_ids, error)
            self._sync(step.step_id)
            # The steps this one made ready start in the same transition: one snapshot says
            # "a completed, b running" (a chain costs one snapshot per step, not two).
            started = self._start_ready()
            lines = _step_log_lines(step, state, status, error)
            # One transaction: the snapshot, the run's progress and the two log lines. With
            # ``snapshot: false`` and no step starting, the completion rides in the next
            # snapshot instead; a crash before it runs the step again, like any in flight.
            stored = await self._commit(
                snapshot=bool(started)
                or step.persistence.snapshot
                or status is not StepStatus.COMPLETED,
                run_changes={"current_step": step.step_id, "progress": self.state.progress},
                log_lines=lines,
            )
            self.emit(Event.step(f"step_{status.value}", self, state))
            if stored and not self.cancel.is_set():
                self._launch(started)
            elif not stored:
                self._unstart(started)
            # (stored, then cancelled: their start is persisted; `_finish` cancels them)

    def _keep_output(
        self,
        step: Step,
        state: StepState,
        output: Any,
        artifact_ids: list[str] | None,
        output_sha256: str | None,
    ) -> None:
        """Where a completed step's output is kept: by its artifact when it was stored, else
        inline in the plan; in memory either way, for the steps downstream."""
        ids = list(artifact_ids or [])
        state.artifact_ids = ids
        if step.persistence.store_output and ids and output_sha256 is not None:
            state.output_artifact_id = ids[-1]
            state.output_sha256 = output_sha256
            state.output = None
        else:
            state.output = output
        self.outputs[step.step_id] = output
        self.state.phase_artifacts[step.step_id] = ids

    def _note_phase(
        self,
        step: Step,
        status: StepStatus,
        artifact_ids: list[str] | None,
        error: ErrorInfo | None,
    ) -> None:
        """The run state's record of the step's end: its phase event (in the next revision)
        and the run's progress."""
        self.state.phase_history.append(
            PhaseEvent(
                phase=step.step_id,
                status="completed" if status is StepStatus.COMPLETED else "failed",
                revision=self.revision + 1,
                artifact_ids=list(artifact_ids or []),
                error=error,
            )
        )
        self.state.progress = self.state.progress.model_copy(
            update={
                "steps_total": len(self.plan.steps),
                "steps_completed": self.plan.completed(),
                "message": f"{step.step_id} {status.value}",
            }
        )

    # -- ending --------------------------------------------------------------------------------

    async def _finish(self) -> RunResult:
        plan = self.plan
        statuses = [step.status for step in plan.steps.values()]
        failed = next((s for s in plan.ordered() if s.status is StepStatus.FAILED), None)
        waiting = [s for s in plan.ordered() if s.status is StepStatus.WAITING_APPROVAL]
        run = await self._vault.runs.get(self.run_id)
        if run.status is RunStatus.CANCELLED or self.cancel.is_set():
            for step in plan.steps.values():
                if step.status is StepStatus.RUNNING:
                    step.status = StepStatus.CANCELLED
            self._sync()
            await self.persist()
            self.emit(Event.run("run_cancelled", self))
        elif failed is not None:
            assert failed.error is not None
            self.state.last_error = failed.error
            await self.persist()
            run = await self._vault.runs.fail(self.run_id, failed.error)
            self.emit(Event.run("run_failed", self))
        elif waiting:
            error = self._approval_error(waiting, self.run_id)
            self.state.last_error = error
            await self.persist()
            run = await self._vault.runs.transition(self.run_id, RunStatus.PAUSED, error=error)
            await audit(
                self._vault,
                self._actor,
                "orchestrator.run_paused",
                self.run_id,
                {"waiting": [s.step_id for s in waiting], "commands": error.details["commands"]},
            )
            self.emit(Event.run("run_paused", self, error=error))
        elif all(status is StepStatus.COMPLETED for status in statuses):
            if self._dirty:  # else the last step's snapshot is already the final state
                await self.persist()
            outputs = [
                {"artifact_id": s.output_artifact_id, "sha256": s.output_sha256}
                for s in plan.steps.values()
                if s.output_artifact_id is not None and s.output_role is ArtifactRole.EXPORT
            ]
            if outputs:
                await self._vault.runs.update(self.run_id, outputs=outputs)
            run = await self._vault.runs.complete(self.run_id)
            await audit(
                self._vault,
                self._actor,
                "orchestrator.run_completed",
                self.run_id,
                {"steps": len(statuses)},
            )
            self.emit(Event.run("run_completed", self))
        return RunResult(run=run, plan=plan, revision=self.revision)

    @staticmethod
    def _approval_error(waiting: list[StepState], run_id: str) -> ErrorInfo:
        commands = [str((s.error.details if s.error else {}).get("command", "")) for s in waiting]
        steps = ", ".join(s.step_id for s in waiting)
        listed = "; ".join(c for c in commands if c)
        return ErrorInfo(
            code="approval_required",
            message=f"paused: step(s) {steps} need an approval ({listed}, or approve this "
            f'run: strongroom registry approve --run {run_id} --reason "..." --sign), then '
            f"`strongroom resume {run_id}`",
            details={"steps": [s.step_id for s in waiting], "commands": commands},
        )

    # -- plumbing -----------------------------------------------------------------------------

    async def persist(self) -> None:
        """Save the state as the run's next snapshot (never refused for a sealed log: it
        appends no lines)."""
        await self._commit(snapshot=True)

    async def _commit(
        self,
        *,
        snapshot: bool,
        run_changes: dict[str, Any] | None = None,
        log_lines: list[dict[str, Any]] | None = None,
    ) -> bool:
        """One transaction of the state (when ``snapshot``), run record changes and log
        lines; False when the run turned out cancelled (nothing was stored). This driver owns
        the run's snapshot chain, so the revision is not read first (the unique revision key
        refuses a second writer), and the run is updated from the copy the last update
        returned (re-read only if someone changed it meanwhile)."""
        try:
            done = await self._vault.transitions.record(
                self.run_id,
                state=self.state if snapshot else None,
                expected_revision=self.revision if snapshot else None,
                current=self._run,
                run_changes=run_changes,
                log_lines=log_lines or (),
            )
        except Conflict as exc:
            if exc.details.get("reason") != "sealed":
                raise
            # The run was cancelled under us (its log is sealed): nothing of this transition
            # was written; stop like the watcher would (`_finish` saves the state).
            if (await self._vault.runs.get(self.run_id)).status is not RunStatus.CANCELLED:
                raise
            self.cancel.set()
            return False
        if done.snapshot is not None:
            self.revision = done.snapshot.revision
            self._dirty = False
        if done.run is not None:
            self._run = done.run
        return True

    def emit(self, event: Event) -> None:
        self._on_event(event)


def _step_log_lines(
    step: Step, state: StepState, status: StepStatus, error: ErrorInfo | None
) -> list[dict[str, Any]]:
    """The step's two log lines, written together when it ends: that it started (with its
    own timestamp; the start itself is in the step-start snapshot) and how it ended."""
    level = "info" if status is StepStatus.COMPLETED else "warning"
    message = f"step {step.step_id} {status.value}"
    if error is not None:
        message += f": {error.code}: {error.message}"
    return [
        {
            "event": "step.started",
            "phase": step.step_id,
            "message": f"step {step.step_id} started",
            "timestamp": state.started_at or utcnow(),
        },
        {
            "event": f"step.{status.value}",
            "level": level,
            "phase": step.step_id,
            "message": message,
        },
    ]
