"""`strongroom runs ...`: create runs, search the run index, inspect one run, and move runs
through the state machine (pending → running → completed | failed | cancelled)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from strongroom.cli import orchestrate, retention
from strongroom.cli._context import (
    JsonFlag,
    RunIdArg,
    cli_state,
    parse_timestamp,
    reported_errors,
)
from strongroom.cli._output import (
    print_json,
    print_table,
    runs_table,
    stdout_console,
)
from strongroom.cli.runs_show import RunDetails, show
from strongroom.errors import ErrorInfo, ValidationError
from strongroom.models import (
    RunPage,
    RunQuery,
    RunStatus,
)
from strongroom.models.runs import DEFAULT_COUNT_LIMIT
from strongroom.services import parse, parse_labels, parse_where

__all__ = ["RunDetails", "app"]

app = typer.Typer(
    help="Create, list, inspect and change runs.", no_args_is_help=True, rich_markup_mode=None
)

LabelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--label",
        help="A label KEY=VALUE (repeat the option for several; -l is --level).",
    ),
]

# Totals above this are shown as "10,000+" unless --exact-total is given.
COUNT_LIMIT = DEFAULT_COUNT_LIMIT

ActorOption = Annotated[
    str | None,
    typer.Option("--actor", help="Who does this (recorded in the audit trail). [default: local]"),
]


@app.command("create")
def create(
    ctx: typer.Context,
    project: Annotated[
        str, typer.Option("--project", "-p", help="Project name (letters, digits, . _ -).")
    ],
    purpose: Annotated[str, typer.Option("--purpose", help="What the run is for.")] = "",
    label: LabelOption = None,
    actor: ActorOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Create a pending run and print its id (RUN=$(strongroom runs create -p docs))."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        fields: dict[str, Any] = {"project": project, "purpose": purpose}
        if label:
            fields["labels"] = parse_labels(label)
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
    previous: Annotated[
        str | None,
        typer.Option("--previous", help="Runs whose previous run is this one (its successors)."),
    ] = None,
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
    label: LabelOption = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            "-w",
            help="A metric condition, e.g. 'metrics.cost < 2' (< <= > >= == !=; repeat for "
            "several). Runs without the metric do not match.",
        ),
    ] = None,
    sort: Annotated[
        str,
        typer.Option(
            "--sort",
            help="created_at, updated_at or metrics.KEY (runs without KEY are left out).",
        ),
    ] = "created_at",
    ascending: Annotated[
        bool, typer.Option("--asc", help="Oldest (or smallest) first; default: newest first.")
    ] = False,
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
        labels = parse_labels(label)
        conditions = parse_where(where)
        query = parse(
            RunQuery,
            {
                "status": statuses or None,
                "project": project,
                "playbook_id": playbook,
                "actor": actor,
                "previous_run_id": previous,
                "created_after": since and parse_timestamp(since, option="--since"),
                "created_before": until
                and parse_timestamp(until, option="--until", end_of_day=True),
                "purpose_contains": search,
                "labels": labels or None,
                "where": conditions or None,
                "sort": sort,
                "descending": not ascending,
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


@app.command("label")
def label_run(
    ctx: typer.Context,
    run_id: RunIdArg,
    labels: Annotated[
        list[str] | None, typer.Argument(help="Labels to set, KEY=VALUE.", show_default=False)
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="A label key to remove (repeatable).")
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Set labels on a run (KEY=VALUE ...) and remove others (--remove KEY)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        change: dict[str, str | None] = dict(parse_labels(labels, option="LABEL"))
        for key in remove or []:
            change[key] = None
        if not change:
            raise ValidationError(
                "give labels to set (KEY=VALUE) or --remove KEY",
                operation="cli.runs.label",
                reason="nothing_to_do",
            )
        run = state.run(lambda vault: vault.runs.set_labels(run_id, change))
        if state.json:
            print_json(run)
            return
        shown = " ".join(f"{k}={v}" for k, v in sorted(run.labels.items())) or "(none)"
        typer.echo(f"run {run.run_id} labels: {shown}")


@app.command("metric")
def metric_run(
    ctx: typer.Context,
    run_id: RunIdArg,
    key: Annotated[str, typer.Argument(help="Metric name (e.g. cost, tokens, qa.score).")],
    value: Annotated[str, typer.Argument(help="A finite number.")],
    step: Annotated[
        int | None, typer.Option("--step", help="Position in the series (e.g. epoch).")
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Record a metric value on a run (its log keeps the series; the run the latest value)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        try:
            number = float(value)
        except ValueError:
            raise ValidationError(
                f"metric value {value!r} is not a number",
                operation="runs.log_metric",
                field="value",
                reason="not_a_number",
            ) from None
        run = state.run(lambda vault: vault.runs.log_metric(run_id, key, number, step=step))
        if state.json:
            print_json(run)
            return
        typer.echo(f"run {run.run_id} {key} = {run.metrics[key]:g}")


app.command("show")(show)


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
app.command("delete")(retention.delete_run)
