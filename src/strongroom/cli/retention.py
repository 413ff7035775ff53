"""`strongroom holds ...`, `strongroom gc plan|apply` and `strongroom runs delete`: retention
(docs/retention.md). Every deletion is by the actor given with --actor, else this process's
principal (OS user or database role), and leaves a tombstone in the audit chain."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from strongroom._fs import read_regular_file
from strongroom.cli._context import JsonFlag, RunIdArg, cli_state, reported_errors
from strongroom.cli._output import key_values, print_json, print_lines, stdout_console
from strongroom.cli._progress import StageProgress
from strongroom.errors import NotFound, SerializationError, ValidationError, map_os_errors
from strongroom.models import (
    GcPlan,
    GcResult,
    HoldQuery,
    RetentionPolicy,
    RunDeletion,
)
from strongroom.registry.parse import parse_document
from strongroom.services import DEFAULT_GRACE_SECONDS, parse
from strongroom.vault import Vault

__all__ = ["delete_run", "gc_app", "holds_app"]

holds_app = typer.Typer(
    help="Legal and operational holds: a held run is never deleted.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
gc_app = typer.Typer(
    help="Garbage collection: plan what retention lets go, read it, then apply it.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_MAX_PLAN_BYTES = 512 * 1024 * 1024  # a plan or policy file larger than this is refused
_SHOWN = 20  # items per kind the human output lists

ActorOption = Annotated[
    str | None,
    typer.Option("--actor", help="Who does this (audited). [default: your OS user / DB role]"),
]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (one line, recorded in the audit trail).")
]


async def _actor(vault: Vault, actor: str | None) -> str:
    return actor if actor is not None else await vault.identity.principal()


# -- runs delete --------------------------------------------------------------------------------


def delete_run(
    ctx: typer.Context,
    run_id: RunIdArg,
    reason: ReasonOption,
    actor: ActorOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Delete an ended run for good: its records go under a tombstone in the audit chain (verify
    accepts exactly that gap), then the blobs nothing else uses. A held run is refused."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):

        async def work(vault: Vault) -> RunDeletion:
            who = await _actor(vault, actor)
            return await vault.retention.delete_run(run_id, reason=reason, actor=who)

        done = state.run(work)
        if state.json:
            print_json(done.model_dump(mode="json"))
            return
        records = ", ".join(f"{n} {kind}" for kind, n in done.records.items())
        print_lines(
            stdout_console(),
            [
                Text(f"deleted run {done.run_id} ({records})", style="bold"),
                *key_values(
                    [
                        ("reason", done.reason),
                        ("tombstone", f"manifest sha256:{done.manifest_sha256}"),
                        ("blobs", f"{done.blob_count} used (shared ones stay)"),
                    ]
                ),
            ],
        )


# -- holds --------------------------------------------------------------------------------------


@holds_app.command("add")
def holds_add(
    ctx: typer.Context,
    reason: ReasonOption,
    run_id: Annotated[str | None, typer.Argument(help="The run to hold.")] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="Hold every run of this project instead.")
    ] = None,
    actor: ActorOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Hold a run (or with --project every run of a project): no path deletes it until the
    hold is released. Audited."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        if (run_id is None) == (project is None):
            raise ValidationError(
                "name a RUN or --project (one of them)",
                operation="cli.holds.add",
                reason="conflicting_options",
            )

        async def work(vault: Vault) -> Any:
            who = await _actor(vault, actor)
            return await vault.retention.add_hold(
                run_id=run_id, project=project, reason=reason, actor=who
            )

        hold = state.run(work)
        if state.json:
            print_json(hold.model_dump(mode="json"))
        else:
            typer.echo(hold.hold_id)


@holds_app.command("list")
def holds_list(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Option("--run", help="Only holds of this run.")] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="Only holds of this project.")
    ] = None,
    include_released: Annotated[bool, typer.Option("--all", help="Released holds too.")] = False,
    json_flag: JsonFlag = False,
) -> None:
    """Active holds, newest first (--all: released ones too)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        query = parse(
            HoldQuery,
            {"run_id": run_id, "project": project, "include_released": include_released},
            operation="cli.holds.list",
        )
        holds = state.run(lambda vault: vault.retention.list_holds(query))
        if state.json:
            print_json([h.model_dump(mode="json") for h in holds])
            return
        console = stdout_console()
        if not holds:
            console.print("no holds")
            return
        table = Table("hold", "scope", "by", "since", "reason", "released")
        for hold in holds:
            released = (
                "" if hold.active else f"{hold.released_at:%Y-%m-%d %H:%M} {hold.released_by}"
            )
            table.add_row(
                hold.hold_id,
                hold.scope,
                hold.actor,
                f"{hold.created_at:%Y-%m-%d %H:%M}",
                Text(hold.reason),
                released,
            )
        console.print(table)


@holds_app.command("release")
def holds_release(
    ctx: typer.Context,
    hold_id: Annotated[str, typer.Argument(help="The hold (holds list shows them).")],
    reason: ReasonOption,
    actor: ActorOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Release a hold (audited); its runs can be deleted again."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):

        async def work(vault: Vault) -> Any:
            who = await _actor(vault, actor)
            return await vault.retention.release_hold(hold_id, reason=reason, actor=who)

        hold = state.run(work)
        if state.json:
            print_json(hold.model_dump(mode="json"))
        else:
            typer.echo(f"released {hold.hold_id} ({hold.scope})")


# -- gc -----------------------------------------------------------------------------------------


def _read_file(path: Path, operation: str, what: str) -> bytes:
    """A regular file of at most `_MAX_PLAN_BYTES` (a FIFO or device is refused unopened)."""
    with map_os_errors(operation, backend="local", path=str(path)):
        try:
            return read_regular_file(path, max_bytes=_MAX_PLAN_BYTES)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(
                f"no {what} at {path}", operation=operation, reason="no_file", path=str(path)
            ) from None


def _load_policy(path: Path | None) -> RetentionPolicy | None:
    if path is None:
        return None
    data = parse_document(_read_file(path, "gc.plan", "policy file"), file_name=path.name)
    return parse(RetentionPolicy, data, operation="gc.plan", file=path.name)


def _load_plan(path: Path) -> GcPlan:
    raw = _read_file(path, "gc.apply", "plan file")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise SerializationError(
            f"{path} is not a JSON plan (write one with `strongroom gc plan --out FILE`)",
            operation="gc.apply",
            reason="bad_json",
        ) from None
    return parse(GcPlan, data, operation="gc.apply", file=path.name)


_PLAN_STAGES = {"runs": "ended runs read", "blobs": "blobs listed"}
_APPLY_STAGES = {"items": "items applied", "blobs": "unused blobs reclaimed"}


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _check_out(out: Path) -> None:
    """--out may name a new file or replace a regular one, never a link, FIFO or device."""
    try:
        info = os.lstat(out)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ValidationError(
            f"cannot write the plan to {out}: {exc.strerror}", operation="gc.plan", reason="io"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise ValidationError(
            f"{out} exists and is not a regular file: give --out a new path or a plan file",
            operation="gc.plan",
            reason="not_a_regular_file",
        )


def _write_plan(plan: GcPlan, out: Path) -> None:
    text = plan.model_dump_json(indent=1)
    temp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "x", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, out)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise ValidationError(
            f"cannot write the plan to {out}: {exc.strerror}", operation="gc.plan", reason="io"
        ) from None


@gc_app.command("plan")
def gc_plan(
    ctx: typer.Context,
    policy_file: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Retention rules (YAML or JSON RetentionPolicy); default: the retention "
            "rules of the registry's project configs.",
        ),
    ] = None,
    grace: Annotated[
        int,
        typer.Option(
            "--grace",
            help="Seconds: blobs and staging files younger than this stay.",
            min=0,
        ),
    ] = DEFAULT_GRACE_SECONDS,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the plan here (for `gc apply`).")
    ] = None,
    actor: ActorOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """List exactly what would be deleted and the bytes freed: runs the policy lets go (held
    ones never), catalog objects past their namespace's retention, blobs nothing uses, staging
    files writers left. Deletes nothing."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        policy = _load_policy(policy_file)
        if out is not None:
            _check_out(out)  # before any work: a bad --out is refused up front
        stages = StageProgress(_PLAN_STAGES, label_width=20, hidden=state.json)

        async def work(vault: Vault) -> GcPlan:
            who = await _actor(vault, actor)
            return await vault.retention.plan(
                policy, actor=who, grace_seconds=grace, on_progress=stages
            )

        with stages:
            plan = state.run(work)
            stages.finish()
        if out is not None:
            _write_plan(plan, out)
        if state.json:
            print_json(plan.model_dump(mode="json"))
            return
        console = stdout_console()
        totals = ", ".join(f"{n} {kind}(s)" for kind, n in plan.totals.items() if n)
        console.print(
            Text(f"plan {plan.plan_id}: {totals or 'nothing to delete'}", style="bold"),
            soft_wrap=True,
        )
        table = Table("kind", "id", "bytes", "why")
        shown: dict[str, int] = {}
        for item in plan.items:
            shown[item.kind] = shown.get(item.kind, 0) + 1
            if shown[item.kind] <= _SHOWN:
                table.add_row(item.kind, item.id, _size(item.bytes), Text(item.reason))
        if plan.items:
            console.print(table)
        for kind, n in shown.items():
            if n > _SHOWN:
                console.print(f"... and {n - _SHOWN} more {kind}(s) (--json lists all)")
        lines = [("bytes freed", _size(plan.bytes))]
        if plan.kept_held:
            lines.append(("kept by holds", f"{plan.kept_held} run(s)"))
        print_lines(console, key_values(lines))
        if out is not None:
            console.print(f"written to {out}: apply it with `strongroom gc apply {out}`")
        elif plan.items:
            console.print("save it with --out FILE, read it, then `strongroom gc apply FILE`")


@gc_app.command("apply")
def gc_apply(
    ctx: typer.Context,
    plan_file: Annotated[Path, typer.Argument(help="A plan written by `gc plan --out`.")],
    actor: ActorOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Delete exactly the plan's items, each re-checked: one held, changed or in use again
    since the plan is refused (listed), never deleted. Safe to re-run after a kill."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        plan = _load_plan(plan_file)
        stages = StageProgress(_APPLY_STAGES, label_width=24, hidden=state.json)

        async def work(vault: Vault) -> GcResult:
            who = await _actor(vault, actor)
            return await vault.retention.apply(plan, actor=who, on_progress=stages)

        with stages:
            result = state.run(work)
            stages.finish()
        if state.json:
            print_json(result.model_dump(mode="json"))
            return
        console = stdout_console()
        deleted = ", ".join(f"{n} {kind}(s)" for kind, n in result.deleted.items() if n)
        console.print(
            Text(f"applied {result.plan_id}: deleted {deleted or 'nothing'}", style="bold"),
            soft_wrap=True,
        )
        rows = [("bytes freed", _size(result.bytes))]
        if result.gone:
            rows.append(("already gone", str(result.gone)))
        print_lines(console, key_values(rows))
        for refused in result.refused:
            console.print(
                Text(f"  refused {refused['kind']} {refused['id']}: {refused['message']}"),
                soft_wrap=True,
            )
