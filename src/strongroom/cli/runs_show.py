"""`strongroom runs show`: one run in detail (its record, labels and metrics, latest snapshot,
artifacts, log, approvals and, for a playbook run, the step timeline)."""

from __future__ import annotations

import typer
from pydantic import BaseModel, Field
from rich.table import Table
from rich.text import Text

from strongroom.cli._context import JsonFlag, RunIdArg, cli_state, reported_errors
from strongroom.cli._output import (
    STEP_STYLES,
    human_size,
    iso,
    key_values,
    print_json,
    print_lines,
    progress_text,
    stdout_console,
)
from strongroom.models import (
    ActorRole,
    Approval,
    ApprovalScope,
    ArtifactMetadata,
    LogReference,
    Run,
    RunTarget,
    SnapshotRecord,
    StepWorker,
)
from strongroom.orchestrator.state import STATE_KEY, PlanState, StepState
from strongroom.services.registry import signed_label
from strongroom.vault import Vault

__all__ = ["RunApproval", "RunDetails", "StepWorker", "show"]


class RunApproval(BaseModel):
    approval: Approval
    signed: str = Field(
        description="'unsigned', or 'NAME KEY_ID (verified)' / 'NAME KEY_ID (NOT VERIFIED)'."
    )


class RunDetails(BaseModel):
    """What `runs show --json` prints: the run record and what the vault holds for it."""

    run: Run
    latest_snapshot: SnapshotRecord | None = Field(
        description="The newest state snapshot (what a resume loads), if any."
    )
    snapshot_count: int
    artifact_count: int
    artifact_bytes: int
    log: LogReference
    steps: list[StepState] = Field(
        default_factory=list,
        description="The step timeline of a playbook run (from the latest snapshot).",
    )
    artifacts: list[ArtifactMetadata] = Field(
        default_factory=list, description="The run's artifacts, oldest first (at most 200)."
    )
    approvals: list[RunApproval] = Field(
        default_factory=list, description="Approvals of this run (what let its A2+ steps run)."
    )
    workers: list[StepWorker] = Field(
        default_factory=list,
        description="Step attempts run by workers (`--executor celery`): who, heartbeats.",
    )


async def _details(vault: Vault, run_id: str) -> RunDetails:
    run = await vault.runs.get(run_id)
    history = await vault.snapshots.history(run.run_id)
    manifest = await vault.artifacts.manifest(run.run_id)
    log = await vault.logs.reference(run.run_id)
    steps: list[StepState] = []
    if history:
        plan = (await vault.snapshots.load(run.run_id)).state.data.get(STATE_KEY)
        if isinstance(plan, dict):
            steps = PlanState.model_validate(plan).ordered()
    actors = {a.key_id: a for a in await vault.identity.actors()}
    approvals = [
        RunApproval(
            approval=a,
            signed=signed_label(
                "approve", a.signed_content(), a.signature, actors, ActorRole.APPROVER
            ),
        )
        for a in await vault.registry.approvals(ApprovalScope.RUN)
        if isinstance(a.target, RunTarget) and a.target.run_id == run.run_id
    ]
    workers = [
        StepWorker.model_validate(c)
        for c in await vault.metadata.list_step_claims(run.run_id, responses=False)
    ]
    return RunDetails(
        run=run,
        workers=workers,
        approvals=approvals,
        latest_snapshot=history[-1] if history else None,
        snapshot_count=len(history),
        artifact_count=len(manifest.artifacts),
        artifact_bytes=manifest.total_bytes,
        log=log,
        steps=steps,
        artifacts=manifest.artifacts[:200],
    )


def show(ctx: typer.Context, run_id: RunIdArg, json_flag: JsonFlag = False) -> None:
    """Show one run: record, latest snapshot, artifacts, log and last error."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        details = state.run(lambda vault: _details(vault, run_id))
        if state.json:
            print_json(details)
            return
        console = stdout_console()
        print_lines(console, key_values(_detail_rows(details)))
        if details.steps:
            console.print(_step_table(details.steps, details.workers))
        if details.artifacts:
            console.print(_artifact_table(details.artifacts, details.artifact_count))


def _step_table(steps: list[StepState], workers: list[StepWorker]) -> Table:
    held = {(w.step_id, w.attempt): w for w in workers}
    columns = ["step", "status", "tool", "started", "duration", "artifacts"]
    if workers:
        columns.append("worker")
    table = Table(
        *columns,
        "error",
        title="steps",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    for step in steps:
        duration = step.duration_seconds()
        error = f"[{step.error.code}] {step.error.message}" if step.error else ""
        table.add_row(
            step.step_id,
            Text(step.status.value, style=STEP_STYLES.get(step.status.value, "dim")),
            f"{step.tool_id}@{step.tool_version}",
            iso(step.started_at) if step.started_at else "-",
            f"{duration:.2f} s" if duration is not None else "-",
            str(len(step.artifact_ids)),
            *([_worker_cell(held.get((step.step_id, step.starts)))] if workers else []),
            error[:120],
        )
    return table


def _worker_cell(claim: StepWorker | None) -> str:
    """Who runs or ran the step's current attempt, and its last heartbeat while running."""
    if claim is None:
        return "-"
    if claim.state == "running":
        return f"{claim.worker} (beat {iso(claim.heartbeat_at)})"
    return claim.worker if claim.state == "finished" else f"{claim.worker} ({claim.state})"


def _artifact_table(artifacts: list[ArtifactMetadata], total: int) -> Table:
    title = (
        "artifacts" if total <= len(artifacts) else f"artifacts (first {len(artifacts)} of {total})"
    )
    table = Table(
        "artifact_id",
        "role",
        "step",
        "name",
        "size",
        title=title,
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    for artifact in artifacts:
        table.add_row(
            artifact.artifact_id,
            artifact.role.value,
            artifact.step or artifact.phase or "-",
            artifact.name or "-",
            human_size(artifact.size_bytes),
        )
    return table


def _detail_rows(details: RunDetails) -> list[tuple[str, str | Text]]:
    run = details.run
    status = Text(run.status.value, style="bold")
    if run.outcome is not None:
        status.append(f" ({run.outcome.value})")
    rows: list[tuple[str, str | Text]] = [
        ("run_id", run.run_id),
        ("project", run.project),
        ("status", status),
        ("purpose", run.purpose or "-"),
        ("actor", run.actor),
        ("source", run.source.value),
    ]
    if run.playbook is not None:
        digest = f" @ sha256:{run.playbook.version_digest}" if run.playbook.version_digest else ""
        rows.append(("playbook", f"{run.playbook.playbook_id}{digest}"))
    rows += [
        ("phase", run.current_phase or "-"),
        ("step", run.current_step or "-"),
        (
            "progress",
            progress_text(run.progress)
            + (f"  {run.progress.message}" if run.progress.message else ""),
        ),
        ("created_at", iso(run.created_at)),
        ("started_at", iso(run.started_at)),
        ("completed_at", iso(run.completed_at)),
        ("updated_at", iso(run.updated_at)),
    ]
    if run.parent_run_id:
        rows.append(("parent_run_id", run.parent_run_id))
    if run.previous_run_id:
        rows.append(("previous_run_id", run.previous_run_id))
    if run.labels:
        rows.append(("labels", " ".join(f"{k}={v}" for k, v in sorted(run.labels.items()))))
    if run.metrics:
        rows.append(("metrics", " ".join(f"{k}={v:g}" for k, v in sorted(run.metrics.items()))))
    if run.trace is not None:
        rows.append(("trace", f"trace_id={run.trace.trace_id} span_id={run.trace.span_id}"))
    if run.inputs or run.outputs:
        rows.append(("inputs/outputs", f"{len(run.inputs)} / {len(run.outputs)} artifacts"))
    snap = details.latest_snapshot
    rows.append(
        (
            "snapshot",
            f"revision {snap.revision} of {details.snapshot_count}, {iso(snap.created_at)}, "
            f"{human_size(snap.size_bytes)}, sha256:{snap.sha256}"
            if snap
            else "none",
        )
    )
    rows.append(("artifacts", f"{details.artifact_count} ({human_size(details.artifact_bytes)})"))
    log = details.log
    sealed = (
        f", sealed as artifact {log.sealed_artifact_id}" if log.sealed else ", open (not sealed)"
    )
    rows.append(("log", f"{log.entry_count} entries{sealed}"))
    if run.last_error is not None:
        error = Text(f"[{run.last_error.code}] ", style="red")
        error.append(run.last_error.message)
        rows.append(("last_error", error))
    else:
        rows.append(("last_error", "-"))
    for item in details.approvals:
        approval = item.approval
        state = "revoked" if approval.revoked_at else "active"
        rows.append(
            (
                "approval",
                f"{approval.approval_id} by {approval.actor} ({state}), signed: {item.signed}",
            )
        )
    return rows
