"""`strongroom runs ...`: create runs, search the run index, inspect one run, and move runs
through the state machine (pending → running → completed | failed | cancelled)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import BaseModel, Field
from rich.table import Table
from rich.text import Text

from strongroom.cli import orchestrate
from strongroom.cli._context import (
    JsonFlag,
    RunIdArg,
    cli_state,
    parse_timestamp,
    reported_errors,
)
from strongroom.cli._output import (
    STEP_STYLES,
    human_size,
    iso,
    key_values,
    print_json,
    print_lines,
    print_table,
    progress_text,
    runs_table,
    stdout_console,
)
from strongroom.errors import ErrorInfo
from strongroom.models import (
    ActorRole,
    Approval,
    ApprovalScope,
    ArtifactMetadata,
    LogReference,
    Run,
    RunPage,
    RunQuery,
    RunStatus,
    RunTarget,
    SnapshotRecord,
)
from strongroom.models.runs import DEFAULT_COUNT_LIMIT
from strongroom.orchestrator.state import STATE_KEY, PlanState, StepState
from strongroom.services import parse
from strongroom.services.registry import signed_label
from strongroom.vault import Vault

__all__ = ["RunDetails", "app"]

app = typer.Typer(
    help="Create, list, inspect and change runs.", no_args_is_help=True, rich_markup_mode=None
)

# Totals above this are shown as "10,000+" unless --exact-total is given.
COUNT_LIMIT = DEFAULT_COUNT_LIMIT

ActorOption = Annotated[
    str | None,
    typer.Option("--actor", help="Who does this (recorded in the audit trail). [default: local]"),
]


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


@app.command("create")
def create(
    ctx: typer.Context,
    project: Annotated[
        str, typer.Option("--project", "-p", help="Project name (letters, digits, . _ -).")
    ],
    purpose: Annotated[str, typer.Option("--purpose", help="What the run is for.")] = "",
    actor: ActorOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Create a pending run and print its id (RUN=$(strongroom runs create -p docs))."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        fields: dict[str, Any] = {"project": project, "purpose": purpose}
        if actor is not None:
            fields["actor"] = actor
        run = state.run(lambda vault: vault.runs.create(**fields), create=True)
        if state.json:
            print_json(run)
        else:
            typer.echo(run.run_id)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            "-s",
            help="pending, running, completed, failed or cancelled. Repeat the option (or "
            "separate with commas) to match any of several.",
        ),
    ] = None,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    playbook: Annotated[str | None, typer.Option("--playbook", help="Playbook id.")] = None,
    actor: Annotated[str | None, typer.Option("--actor")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Created at or after this ISO-8601 date/time (UTC)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="Created before this ISO-8601 date/time; a bare date includes that whole day.",
        ),
    ] = None,
    search: Annotated[
        str | None, typer.Option("--search", help="Case-insensitive text in the purpose.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Runs per page (1-1000).")] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Next-page cursor printed by the last page.")
    ] = None,
    exact_total: Annotated[
        bool,
        typer.Option(
            "--exact-total",
            help=f"Count every matching run; by default the count stops at {COUNT_LIMIT:,} "
            f"and more are shown as {COUNT_LIMIT:,}+ (counting a large group or a text search "
            "exactly reads every match).",
        ),
    ] = False,
    json_flag: JsonFlag = False,
) -> None:
    """List runs, newest first, with filters and keyset pagination."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        statuses = [s.strip() for value in status or [] for s in value.split(",") if s.strip()]
        query = parse(
            RunQuery,
            {
                "status": statuses or None,
                "project": project,
                "playbook_id": playbook,
                "actor": actor,
                "created_after": since and parse_timestamp(since, option="--since"),
                "created_before": until
                and parse_timestamp(until, option="--until", end_of_day=True),
                "purpose_contains": search,
                "limit": limit,
                "cursor": cursor,
                "count_limit": None if exact_total else COUNT_LIMIT,
            },
            operation="runs.list",
        )
        page = state.run(lambda vault: vault.runs.list(query))
        if state.json:
            print_json(page)
            return
        console = stdout_console()
        if not page.items:
            console.print(Text("No runs match." if page.total == 0 else "No more runs."))
        else:
            print_table(console, runs_table(page.items), flexible="PURPOSE")
        footer = Text(matches_text(page), style="dim")
        if page.items:
            footer.append(f"; showing {len(page.items)}", style="dim")
        if page.next_cursor:
            footer.append("; next page: --cursor ", style="dim")
            footer.append(page.next_cursor)
        console.print(footer, soft_wrap=True)


def matches_text(page: RunPage) -> str:
    """``3 runs match``, ``1 run matches``, or ``10,000+ runs match`` (a capped count)."""
    if not page.total_is_exact:
        return f"{page.total:,}+ runs match (--exact-total counts them all)"
    return f"{page.total:,} run{' matches' if page.total == 1 else 's match'}"


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
    return RunDetails(
        run=run,
        approvals=approvals,
        latest_snapshot=history[-1] if history else None,
        snapshot_count=len(history),
        artifact_count=len(manifest.artifacts),
        artifact_bytes=manifest.total_bytes,
        log=log,
        steps=steps,
        artifacts=manifest.artifacts[:200],
    )


@app.command("show")
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
            console.print(_step_table(details.steps))
        if details.artifacts:
            console.print(_artifact_table(details.artifacts, details.artifact_count))


def _step_table(steps: list[StepState]) -> Table:
    table = Table(
        "step",
        "status",
        "tool",
        "started",
        "duration",
        "artifacts",
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
            error[:120],
        )
    return table


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


# -- state transitions ---------------------------------------------------------------------------


def _transition(
    ctx: typer.Context,
    run_id: str,
    target: RunStatus,
    json_flag: bool,
    **kw: Any,
) -> None:
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        kw = {k: v for k, v in kw.items() if v is not None}
        kw.setdefault("actor", "local")
        run = state.run(lambda vault: vault.runs.transition(run_id, target, **kw))
        if state.json:
            print_json(run)
            return
        line = f"run {run.run_id} is now {run.status.value}"
        if run.outcome is not None:
            line += f" ({run.outcome.value})"
        typer.echo(line)


@app.command("start")
def start(
    ctx: typer.Context, run_id: RunIdArg, actor: ActorOption = None, json_flag: JsonFlag = False
) -> None:
    """Move a pending run to running."""
    _transition(ctx, run_id, RunStatus.RUNNING, json_flag, actor=actor)


@app.command("complete")
def complete(
    ctx: typer.Context,
    run_id: RunIdArg,
    outcome: Annotated[
        str | None,
        typer.Option("--outcome", help="success (default) or partial (some steps failed)."),
    ] = None,
    actor: ActorOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Move a running run to completed; this seals its log."""
    _transition(ctx, run_id, RunStatus.COMPLETED, json_flag, outcome=outcome, actor=actor)


@app.command("fail")
def fail(
    ctx: typer.Context,
    run_id: RunIdArg,
    code: Annotated[str, typer.Option("--code", help="Machine error code.")] = "error",
    message: Annotated[
        str, typer.Option("--message", "-m", help="What went wrong.")
    ] = "marked as failed from the command line",
    actor: ActorOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Move a pending or running run to failed, recording the error; this seals its log."""
    error = ErrorInfo(code=code, message=message, details={"operation": "cli.runs.fail"})
    _transition(ctx, run_id, RunStatus.FAILED, json_flag, error=error, actor=actor)


# One cancel: `strongroom runs cancel` is `strongroom cancel` (same options, same audit).
app.command("cancel")(orchestrate.cancel)
