"""Opening a pipeline run again by id (`PipelineRun.open` with ``run_id``): the refusals
(another project, an orchestrator's run, a completed run) and the two ways on: continue the
run in place (its process died) or, for a failed or cancelled run, a new run that carries
its completed phases."""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.errors import Conflict, ErrorInfo
from strongroom.models import (
    ALLOWED_TRANSITIONS,
    LogLevel,
    PhaseEvent,
    Progress,
    Run,
    RunState,
    RunStatus,
)
from strongroom.pipeline._common import completed_in_order

if TYPE_CHECKING:
    from strongroom.pipeline._run import PipelineRun
    from strongroom.vault import Vault

__all__ = ["reopen"]


async def reopen(
    cls: type[PipelineRun],
    vault: Vault,
    *,
    run_id: str,
    project: str,
    purpose: str,
    actor: str,
    steps_total: int | None,
    new_run_id: str | None = None,
) -> PipelineRun:
    """``new_run_id``: the id of the run that replaces a failed or cancelled one (an
    idempotency key's next attempt); default a new one."""
    old = await vault.runs.get(run_id)
    if old.project != project:
        raise Conflict(
            f"run {old.run_id} belongs to project {old.project!r}, not {project!r}",
            operation="pipeline.open",
            run_id=old.run_id,
            reason="project_mismatch",
        )
    if old.playbook is not None:
        raise Conflict(
            f"run {old.run_id} runs playbook {old.playbook.playbook_id!r}: it belongs to "
            "strongroom's orchestrator (resume it with `strongroom resume`)",
            operation="pipeline.open",
            run_id=old.run_id,
            reason="playbook_run",
        )
    if old.status is RunStatus.COMPLETED:
        await vault.logs.seal(old.run_id, actor=actor)  # idempotent; repairs a cut seal
        raise Conflict(
            f"run {old.run_id} is completed and cannot be resumed: its outputs are "
            "final (start a new run to recompute them)",
            operation="pipeline.open",
            run_id=old.run_id,
            reason="run_completed",
        )
    revision = await vault.snapshots.latest_revision(old.run_id)
    state = (await vault.snapshots.load(old.run_id)).state if revision else RunState()
    if old.status is RunStatus.RUNNING or RunStatus.RUNNING in ALLOWED_TRANSITIONS[old.status]:
        # running (its process died), or not yet/no longer running but allowed back
        # (pending; paused where the state machine has it): continue in place
        return await _continue(cls, vault, old, state, revision, actor, steps_total)
    await vault.logs.seal(old.run_id, actor=actor)  # idempotent; repairs a cut seal
    return await _replace(cls, vault, old, state, purpose, actor, steps_total, new_run_id)


async def _continue(
    cls: type[PipelineRun],
    vault: Vault,
    record: Run,
    state: RunState,
    revision: int,
    actor: str,
    steps_total: int | None,
) -> PipelineRun:
    if record.status is not RunStatus.RUNNING:
        record = await vault.runs.start(record.run_id, expected_version=record.version, actor=actor)
    if steps_total is not None:
        state.progress = state.progress.model_copy(update={"steps_total": steps_total})
    run = cls(vault, record, state, revision, actor=actor, resumed=True)
    await run.log(
        "pipeline.resumed",
        f"resumed in place at snapshot revision {revision}",
        revision=revision,
        completed_phases=run.completed_phases,
    )
    interrupted = run._interrupted_phases()
    for name in interrupted:
        error = ErrorInfo(
            code="interrupted",
            message=f"phase {name!r} started but its process stopped before it ended",
            details={"phase": name},
        )
        state.phase_history.append(PhaseEvent(phase=name, status="failed", error=error))
        await run.log("phase.interrupted", error.message, level=LogLevel.WARNING, phase=name)
    if interrupted:
        await run._save()
    return run


async def _replace(
    cls: type[PipelineRun],
    vault: Vault,
    old: Run,
    old_state: RunState,
    purpose: str,
    actor: str,
    steps_total: int | None,
    new_run_id: str | None,
) -> PipelineRun:
    carried = {
        name: list(old_state.phase_artifacts[name]) for name in completed_in_order(old_state)
    }
    progress = Progress(
        steps_total=steps_total if steps_total is not None else old_state.progress.steps_total,
        steps_completed=len(carried),
    )
    record = await vault.runs.create(
        project=old.project,
        actor=actor,
        purpose=purpose or old.purpose,
        progress=progress,
        previous_run_id=old.run_id,
        **({"run_id": new_run_id} if new_run_id is not None else {}),
    )
    state = RunState(
        phase_history=[
            PhaseEvent(phase=name, status="skipped", revision=1, artifact_ids=ids)
            for name, ids in carried.items()
        ],
        phase_revisions=dict.fromkeys(carried, 1),
        phase_artifacts=carried,
        progress=progress,
        data=dict(old_state.data),
    )
    run = cls(vault, record, state, 0, actor=actor, resumed=True)
    await run._save()  # revision 1: the carried-over phases are durable before any work
    run.record = await vault.runs.start(record.run_id, expected_version=record.version, actor=actor)
    await run.log(
        "pipeline.resumed",
        f"new run replacing {old.status.value} run {old.run_id}",
        previous_run_id=old.run_id,
        carried_phases=list(carried),
    )
    return run
