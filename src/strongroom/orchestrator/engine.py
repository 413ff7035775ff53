"""The orchestrator: walk a playbook's steps in dependency order through the governed
execution lane, persist after every transition, resume exactly where a run stopped.

    orchestrator = Orchestrator(vault, RunnerOptions(workdir=Path("project")))
    result = await orchestrator.start("data-quality-nightly@production",
                                      project="customer-data-quality", inputs={...})
    result = await orchestrator.resume(result.run.run_id)      # after a crash or an approval

Persistence: the run record and a state snapshot (`PlanState` in ``data["orchestrator"]``)
are written at run start, at every step start, completion and failure, and at run end. A
snapshot is compare-and-set on its revision, so two orchestrators can never both drive one
run: the second one's first write fails with `Conflict`. Each step's output is an artifact
(its persistence role), read back verified on resume.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strongroom.errors import (
    Conflict,
    DigestDrift,
    IntegrityError,
    StrongroomError,
    ValidationError,
)
from strongroom.execution import RunnerOptions, ToolRunner
from strongroom.ids import new_id
from strongroom.models import (
    ArtifactRole,
    DefinitionKind,
    ErrorInfo,
    PhaseEvent,
    Playbook,
    ProjectConfig,
    Run,
    RunState,
    RunStatus,
    utcnow,
)
from strongroom.models.registry import Ref
from strongroom.orchestrator.events import Event
from strongroom.orchestrator.state import STATE_KEY, PlanState, StepState, StepStatus
from strongroom.orchestrator.wiring import step_request
from strongroom.registry import execution_order

if TYPE_CHECKING:
    from strongroom.vault import Vault

__all__ = ["DigestDrift", "Orchestrator", "RunResult"]

CANCEL_POLL_SECONDS = 0.5
PROJECT_FALLBACK = "playbooks"


@dataclass
class RunResult:
    run: Run
    plan: PlanState
    revision: int

    @property
    def status(self) -> RunStatus:
        return self.run.status


class _Drive:
    """The mutable state of one drive of a run (one orchestrator process)."""

    def __init__(self, run_id: str, plan: PlanState, state: RunState, revision: int) -> None:
        self.run_id = run_id
        self.plan = plan
        self.state = state
        self.revision = revision
        self.lock = asyncio.Lock()
        self.cancel = threading.Event()
        self.outputs: dict[str, Any] = {}
        self.stop_scheduling = False


class Orchestrator:
    def __init__(
        self,
        vault: Vault,
        options: RunnerOptions | None = None,
        *,
        max_parallel: int = 4,
        actor: str = "local",
        on_event: Callable[[Event], None] | None = None,
        runner: ToolRunner | None = None,
    ) -> None:
        """``runner`` replaces the default `ToolRunner` (built from ``options``): the
        benchmark passes one that returns at once, to measure the orchestrator alone."""
        self._vault = vault
        self._runner = runner or ToolRunner(vault, options)
        self._max_parallel = max_parallel
        self._actor = actor
        self._on_event = on_event or (lambda event: None)

    # -- starting ------------------------------------------------------------------------------

    async def start(
        self,
        playbook: str,
        *,
        project: str | None = None,
        inputs: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        """Resolve the playbook (and project config), create the run, persist the plan and
        drive it. ``inputs`` override the project config's ``settings.defaults``."""
        plan, playbook_def = await self._plan(playbook, project, inputs or {})
        run = await self._vault.runs.create(
            project=plan.project_id or PROJECT_FALLBACK,
            actor=self._actor,
            purpose=playbook_def.name,
            playbook={"playbook_id": plan.playbook_id, "version_digest": plan.playbook_digest},
            progress={"steps_total": len(plan.steps), "steps_completed": 0},
            **({"run_id": run_id} if run_id else {}),
        )
        await self._vault.runs.start(run.run_id)
        state = RunState(progress=run.progress, data={STATE_KEY: plan.model_dump(mode="json")})
        drive = _Drive(run.run_id, plan, state, 0)
        await self._persist(drive)
        await self._audit("orchestrator.run_started", run.run_id, self._definitions(plan))
        self._emit(Event.run("run_started", drive))
        return await self._drive(drive, playbook_def)

    async def _plan(
        self, playbook: str, project: str | None, inputs: dict[str, Any]
    ) -> tuple[PlanState, Playbook]:
        project_fields: dict[str, Any] = {}
        defaults: dict[str, Any] = {}
        if project is not None:
            ref = Ref.parse(project)
            version, config = await self._vault.registry.get(
                DefinitionKind.PROJECT_CONFIG, ref.id, ref.selector
            )
            assert isinstance(config, ProjectConfig)
            defaults = dict(config.settings.defaults)
            project_fields = {
                "project_ref": project,
                "project_id": config.project_id,
                "project_version": version.version,
                "project_digest": version.digest,
            }
            listed = {r.id for r in config.playbooks}
            if listed and Ref.parse(playbook).id not in listed:
                raise ValidationError(
                    f"project {config.project_id} does not list playbook "
                    f"{Ref.parse(playbook).id} (it lists {', '.join(sorted(listed))})",
                    operation="orchestrator.start",
                    reason="playbook_not_in_project",
                )
        ref = Ref.parse(playbook)
        version, definition = await self._vault.registry.get(
            DefinitionKind.PLAYBOOK, ref.id, ref.selector
        )
        assert isinstance(definition, Playbook)
        steps = await self._pin_steps(definition)
        plan = PlanState(
            playbook_ref=playbook,
            playbook_id=definition.playbook_id,
            playbook_version=version.version,
            playbook_digest=version.digest,
            inputs={**defaults, **inputs},
            max_parallel=self._max_parallel,
            steps=steps,
            order=list(steps),
            **project_fields,
        )
        return plan, definition

    async def _pin_steps(self, playbook: Playbook) -> dict[str, StepState]:
        """Each step's tool resolved now and pinned by its manifest digest."""
        order = execution_order(playbook)
        steps: dict[str, StepState] = {}
        by_id = {step.step_id: step for step in playbook.steps}
        resolved: dict[str, Any] = {}
        for step_id in order:
            step = by_id[step_id]
            key = str(step.tool)
            if key not in resolved:
                resolved[key] = await self._vault.registry.resolve_tool(step.tool)
            manifest, tool = resolved[key]
            steps[step_id] = StepState(
                step_id=step_id,
                tool_id=tool.tool_id,
                tool_version=tool.version,
                manifest_digest=manifest.digest,
                tool_ref=str(step.tool),
                upstream=sorted(step.upstream()),
                output_role=step.persistence.role,
            )
        return steps

    # -- resuming ------------------------------------------------------------------------------

    async def resume(self, run_id: str, *, force: bool = False) -> RunResult:
        """Continue a run from its latest snapshot: completed steps are skipped (their
        outputs read back from verified artifacts), the step that was in flight runs again.
        A run that ended failed or cancelled continues as a new run (``previous_run_id``)."""
        run = await self._vault.runs.get(run_id)
        if run.status is RunStatus.COMPLETED:
            raise Conflict(
                f"run {run_id} already completed; nothing to resume",
                operation="orchestrator.resume",
                run_id=run_id,
                reason="completed",
            )
        snapshot = await self._vault.snapshots.load(run_id)
        raw = snapshot.state.data.get(STATE_KEY)
        if not isinstance(raw, dict):
            raise ValidationError(
                f"run {run_id} was not started by the orchestrator (its state has no plan)",
                operation="orchestrator.resume",
                run_id=run_id,
            )
        plan = PlanState.model_validate(raw)
        playbook_def, drift = await self._check_drift(plan)
        if drift and not force:
            raise DigestDrift(
                f"run {run_id} started with other definitions than the registry resolves now: "
                + "; ".join(f"{d['what']} {d['was'][:12]} -> {d['now'][:12]}" for d in drift)
                + " (resume --force runs on with the new ones; that is audited)",
                operation="orchestrator.resume",
                run_id=run_id,
                drift=drift,
            )
        if drift:
            plan = await self._repin(plan, playbook_def)
            await self._audit("orchestrator.resume_forced", run_id, {"drift": drift})
        for step in plan.steps.values():
            if step.status is not StepStatus.COMPLETED:
                step.status = StepStatus.PENDING
        state = snapshot.state
        revision = snapshot.record.revision
        if run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            run, state, revision = await self._successor(run, plan, state)
        elif run.status is RunStatus.PENDING or run.status is RunStatus.PAUSED:
            await self._vault.runs.start(run_id)
        if run.last_error is not None and run.status is not RunStatus.FAILED:
            await self._vault.runs.update(run.run_id, last_error=None)
        state.last_error = None
        drive = _Drive(run.run_id, plan, state, revision)
        await self._persist(drive)
        await self._audit(
            "orchestrator.run_resumed",
            run.run_id,
            {"from_run_id": run_id, "completed_steps": plan.completed(), "forced": bool(drift)},
        )
        self._emit(Event.run("run_resumed", drive))
        return await self._drive(drive, playbook_def)

    async def _check_drift(self, plan: PlanState) -> tuple[Playbook, list[dict[str, str]]]:
        drift: list[dict[str, str]] = []
        ref = Ref.parse(plan.playbook_ref)
        version, definition = await self._vault.registry.get(
            DefinitionKind.PLAYBOOK, ref.id, ref.selector
        )
        assert isinstance(definition, Playbook)
        if version.digest != plan.playbook_digest:
            drift.append(
                {"what": f"playbook {ref}", "was": plan.playbook_digest, "now": version.digest}
            )
            return definition, drift  # the steps may differ wholesale
        if plan.project_ref is not None and plan.project_digest is not None:
            pref = Ref.parse(plan.project_ref)
            pversion = await self._vault.registry.version(
                DefinitionKind.PROJECT_CONFIG, pref.id, pref.selector
            )
            if pversion.digest != plan.project_digest:
                drift.append(
                    {"what": f"project {pref}", "was": plan.project_digest, "now": pversion.digest}
                )
        digests: dict[str, str] = {}
        for step in plan.steps.values():
            if step.tool_ref not in digests:
                manifest, _ = await self._vault.registry.resolve_tool(step.tool_ref)
                digests[step.tool_ref] = manifest.digest
            if digests[step.tool_ref] != step.manifest_digest:
                drift.append(
                    {
                        "what": f"tool {step.tool_ref} (step {step.step_id})",
                        "was": step.manifest_digest,
                        "now": digests[step.tool_ref],
                    }
                )
        return definition, drift

    async def _repin(self, plan: PlanState, playbook: Playbook) -> PlanState:
        """--force: the current definitions, keeping what completed under the old ones."""
        fresh = await self._pin_steps(playbook)
        for step_id in list(fresh):
            old = plan.steps.get(step_id)
            if old is not None and old.done:
                fresh[step_id] = old
        version = await self._vault.registry.version(
            DefinitionKind.PLAYBOOK, playbook.playbook_id, Ref.parse(plan.playbook_ref).selector
        )
        update: dict[str, Any] = {
            "steps": fresh,
            "order": list(fresh),
            "playbook_version": version.version,
            "playbook_digest": version.digest,
        }
        if plan.project_ref is not None:
            pref = Ref.parse(plan.project_ref)
            pversion = await self._vault.registry.version(
                DefinitionKind.PROJECT_CONFIG, pref.id, pref.selector
            )
            update.update(project_version=pversion.version, project_digest=pversion.digest)
        return plan.model_copy(update=update)

    async def _successor(
        self, run: Run, plan: PlanState, state: RunState
    ) -> tuple[Run, RunState, int]:
        """A failed or cancelled run is final; its continuation is a new run that carries the
        completed steps (their artifacts stay the old run's, referenced by id)."""
        successor = await self._vault.runs.create(
            project=run.project,
            actor=self._actor,
            purpose=run.purpose,
            playbook=run.playbook.model_dump() if run.playbook else None,
            previous_run_id=run.run_id,
            progress={"steps_total": len(plan.steps), "steps_completed": plan.completed()},
        )
        await self._vault.runs.start(successor.run_id)
        fresh = RunState(
            phase_history=list(state.phase_history),
            phase_artifacts=dict(state.phase_artifacts),
            progress=successor.progress,
            data={STATE_KEY: plan.model_dump(mode="json")},
        )
        return successor, fresh, 0

    # -- cancelling ----------------------------------------------------------------------------

    async def cancel(self, run_id: str, *, reason: str = "cancelled") -> Run:
        """Mark the run cancelled. An orchestrator driving it notices within
        `CANCEL_POLL_SECONDS`, kills the running steps' process groups and writes its last
        snapshot; everything persisted so far stays."""
        run = await self._vault.runs.cancel(run_id)
        await self._audit("orchestrator.cancel_requested", run_id, {"reason": reason})
        return run

    # -- driving -------------------------------------------------------------------------------

    async def _drive(self, drive: _Drive, playbook: Playbook) -> RunResult:
        running: dict[str, asyncio.Task[None]] = {}
        by_id = {step.step_id: step for step in playbook.steps}
        watcher = asyncio.create_task(self._watch_cancel(drive))
        try:
            while True:
                if not drive.stop_scheduling and not drive.cancel.is_set():
                    for step_id in self._ready(drive.plan, running):
                        if len(running) >= drive.plan.max_parallel:
                            break
                        step = by_id[step_id]
                        running[step_id] = asyncio.create_task(self._run_step(drive, step))
                if not running:
                    break
                done, _ = await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
                for step_id in [s for s, task in running.items() if task in done]:
                    task = running.pop(step_id)
                    task.result()  # an unexpected error in the orchestrator itself propagates
        finally:
            watcher.cancel()
            for task in running.values():
                task.cancel()
        return await self._finish(drive)

    @staticmethod
    def _ready(plan: PlanState, running: dict[str, asyncio.Task[None]]) -> list[str]:
        return [
            step.step_id
            for step in plan.ordered()
            if step.status is StepStatus.PENDING
            and step.step_id not in running
            and all(plan.steps[up].done for up in step.upstream)
        ]

    async def _watch_cancel(self, drive: _Drive) -> None:
        while not drive.cancel.is_set():
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            run = await self._vault.runs.get(drive.run_id)
            if run.status is RunStatus.CANCELLED:
                drive.cancel.set()

    async def _run_step(self, drive: _Drive, step: Any) -> None:
        state = drive.plan.steps[step.step_id]
        async with drive.lock:
            state.status = StepStatus.RUNNING
            state.starts += 1
            state.request_id = new_id()
            state.started_at = utcnow()
            state.finished_at = None
            state.error = None
            drive.state.data[STATE_KEY] = drive.plan.model_dump(mode="json")
            await self._persist(drive)
            await self._log(drive, "step.started", step.step_id, f"step {step.step_id} started")
            self._emit(Event.step("step_started", drive, state))
        try:
            request = await step_request(
                step, drive.plan, lambda s: self._output(drive, s), self._check_artifact
            )
        except StrongroomError as exc:
            await self._settle(drive, step, StepStatus.FAILED, error=exc.to_info())
            return
        response = await self._runner.run(
            {
                "request_id": state.request_id,
                "run_id": drive.run_id,
                "tool_id": state.tool_id,
                "tool_version": f"sha256:{state.manifest_digest}",
                "caller": self._actor,
                "input": request,
            },
            cancel=drive.cancel,
            step=step.step_id,
            output_role=step.persistence.role,
            store_output=step.persistence.store_output,
        )
        if response.ok:
            await self._settle(
                drive,
                step,
                StepStatus.COMPLETED,
                output=response.output,
                artifact_ids=response.artifact_ids,
                needs_review=response.needs_review,
            )
            return
        assert response.error is not None
        status = {
            "approval_required": StepStatus.WAITING_APPROVAL,
            "cancelled": StepStatus.CANCELLED,
        }.get(response.error.code, StepStatus.FAILED)
        await self._settle(drive, step, status, error=response.error)

    async def _settle(
        self,
        drive: _Drive,
        step: Any,
        status: StepStatus,
        *,
        output: Any = None,
        artifact_ids: list[str] | None = None,
        needs_review: bool = False,
        error: ErrorInfo | None = None,
    ) -> None:
        state = drive.plan.steps[step.step_id]
        async with drive.lock:
            state.status = status
            state.finished_at = utcnow()
            state.error = error
            state.needs_review = needs_review
            if status is StepStatus.COMPLETED:
                ids = list(artifact_ids or [])
                state.artifact_ids = ids
                if step.persistence.store_output and ids:
                    state.output_artifact_id = ids[-1]
                    meta = await self._vault.artifacts.get(ids[-1])
                    state.output_sha256 = meta.sha256
                    state.output = None
                else:
                    state.output = output
                drive.outputs[step.step_id] = output
                drive.state.phase_artifacts[step.step_id] = ids
            elif status is not StepStatus.WAITING_APPROVAL:
                drive.stop_scheduling = True
            drive.state.phase_history.append(
                PhaseEvent(
                    phase=step.step_id,
                    status="completed" if status is StepStatus.COMPLETED else "failed",
                    revision=drive.revision + 1,
                    artifact_ids=list(artifact_ids or []),
                    error=error,
                )
            )
            completed = drive.plan.completed()
            drive.state.progress = drive.state.progress.model_copy(
                update={"steps_completed": completed, "message": f"{step.step_id} {status.value}"}
            )
            drive.state.data[STATE_KEY] = drive.plan.model_dump(mode="json")
            await self._persist(drive)
            await self._vault.runs.update(
                drive.run_id,
                current_step=step.step_id,
                progress={
                    "steps_total": len(drive.plan.steps),
                    "steps_completed": completed,
                    "message": f"{step.step_id} {status.value}",
                },
            )
            level = "info" if status is StepStatus.COMPLETED else "warning"
            message = f"step {step.step_id} {status.value}"
            if error is not None:
                message += f": {error.code}: {error.message}"
            await self._log(drive, f"step.{status.value}", step.step_id, message, level=level)
            self._emit(Event.step(f"step_{status.value}", drive, state))

    async def _output(self, drive: _Drive, step_id: str) -> Any:
        """An upstream step's output: in memory, inline in the plan, or read back from its
        artifact (verified against its sha256 on the way)."""
        if step_id in drive.outputs:
            return drive.outputs[step_id]
        state = drive.plan.steps[step_id]
        if state.output_artifact_id is None:
            value = state.output
        else:
            data = await self._vault.artifacts.get_bytes(state.output_artifact_id)
            meta = await self._vault.artifacts.get(state.output_artifact_id)
            if state.output_sha256 is not None and meta.sha256 != state.output_sha256:
                raise IntegrityError(
                    f"the output artifact of step {step_id} is not the one the run recorded",
                    operation="orchestrator.resume",
                    artifact_id=state.output_artifact_id,
                )
            value = json.loads(data)
        drive.outputs[step_id] = value
        return value

    async def _check_artifact(self, artifact_id: str, sha256: str | None) -> str:
        meta = await self._vault.artifacts.get(artifact_id)
        if sha256 is not None and meta.sha256 != sha256:
            raise IntegrityError(
                f"artifact {artifact_id} is not the pinned content",
                operation="orchestrator.wire",
                artifact_id=artifact_id,
            )
        return meta.sha256

    # -- ending --------------------------------------------------------------------------------

    async def _finish(self, drive: _Drive) -> RunResult:
        plan = drive.plan
        statuses = [step.status for step in plan.steps.values()]
        failed = next((s for s in plan.ordered() if s.status is StepStatus.FAILED), None)
        waiting = [s for s in plan.ordered() if s.status is StepStatus.WAITING_APPROVAL]
        run = await self._vault.runs.get(drive.run_id)
        drive.state.data[STATE_KEY] = plan.model_dump(mode="json")
        if run.status is RunStatus.CANCELLED or drive.cancel.is_set():
            for step in plan.steps.values():
                if step.status is StepStatus.RUNNING:
                    step.status = StepStatus.CANCELLED
            drive.state.data[STATE_KEY] = plan.model_dump(mode="json")
            await self._persist(drive)
            self._emit(Event.run("run_cancelled", drive))
        elif failed is not None:
            assert failed.error is not None
            drive.state.last_error = failed.error
            await self._persist(drive)
            await self._vault.runs.fail(drive.run_id, failed.error)
            self._emit(Event.run("run_failed", drive))
        elif waiting:
            error = self._approval_error(waiting, drive.run_id)
            drive.state.last_error = error
            await self._persist(drive)
            await self._vault.runs.update(drive.run_id, last_error=error)
            await self._vault.runs.transition(drive.run_id, RunStatus.PAUSED)
            await self._audit(
                "orchestrator.run_paused",
                drive.run_id,
                {"waiting": [s.step_id for s in waiting], "commands": error.details["commands"]},
            )
            self._emit(Event.run("run_paused", drive, error=error))
        elif all(status is StepStatus.COMPLETED for status in statuses):
            await self._persist(drive)
            outputs = [
                {"artifact_id": s.output_artifact_id, "sha256": s.output_sha256}
                for s in plan.steps.values()
                if s.output_artifact_id is not None and s.output_role is ArtifactRole.EXPORT
            ]
            if outputs:
                await self._vault.runs.update(drive.run_id, outputs=outputs)
            await self._vault.runs.complete(drive.run_id)
            await self._audit("orchestrator.run_completed", drive.run_id, {"steps": len(statuses)})
            self._emit(Event.run("run_completed", drive))
        run = await self._vault.runs.get(drive.run_id)
        return RunResult(run=run, plan=plan, revision=drive.revision)

    @staticmethod
    def _approval_error(waiting: list[StepState], run_id: str) -> ErrorInfo:
        commands = [str((s.error.details if s.error else {}).get("command", "")) for s in waiting]
        steps = ", ".join(s.step_id for s in waiting)
        listed = "; ".join(c for c in commands if c)
        return ErrorInfo(
            code="approval_required",
            message=f"paused: step(s) {steps} need an approval ({listed}, "
            f"or approve this run: strongroom registry approve --run {run_id} ...), then "
            f"`strongroom resume {run_id}`",
            details={"steps": [s.step_id for s in waiting], "commands": commands},
        )

    # -- plumbing -----------------------------------------------------------------------------

    async def _persist(self, drive: _Drive) -> None:
        record = await self._vault.snapshots.save(
            drive.run_id, drive.state, expected_revision=drive.revision
        )
        drive.revision = record.revision

    async def _log(
        self, drive: _Drive, event: str, step_id: str, message: str, *, level: str = "info"
    ) -> None:
        try:
            await self._vault.logs.append(
                drive.run_id,
                {"event": event, "level": level, "phase": step_id, "message": message},
            )
        except Conflict:
            # The run was cancelled under us (its log is sealed): stop like the watcher would.
            if (await self._vault.runs.get(drive.run_id)).status is not RunStatus.CANCELLED:
                raise
            drive.cancel.set()

    async def _audit(self, event: str, run_id: str, details: dict[str, Any]) -> None:
        await self._vault.audit.record(
            {
                "event": event,
                "actor": self._actor,
                "subject_type": "run",
                "subject_id": run_id,
                "details": details,
            }
        )

    @staticmethod
    def _definitions(plan: PlanState) -> dict[str, Any]:
        return {
            "playbook": f"{plan.playbook_id}@{plan.playbook_version}",
            "playbook_digest": plan.playbook_digest,
            "project": plan.project_id,
            "project_digest": plan.project_digest,
            "tools": {s.step_id: s.manifest_digest for s in plan.steps.values()},
        }

    def _emit(self, event: Event) -> None:
        self._on_event(event)
