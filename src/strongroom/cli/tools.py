"""`strongroom tools run` (one tool through the governed execution lane) and
`strongroom sandbox check` (which isolation layers this host can enforce)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from strongroom._fs import read_regular_file
from strongroom.cli._context import (
    TOOL_PATH_ENV,
    CliState,
    JsonFlag,
    cli_state,
    emit_error,
    exit_code_for,
    read_json_value,
    reported_errors,
    tool_paths,
)
from strongroom.cli._output import key_values, print_json, print_lines, stdout_console
from strongroom.cli._registry_args import parse_ref
from strongroom.errors import ValidationError, map_os_errors
from strongroom.execution import RunnerOptions, ToolRunner
from strongroom.ids import new_id
from strongroom.integrations.mass_relay import PythonRunnerResponse, run_request
from strongroom.models import RunnerResponse
from strongroom.registry import MAX_DEFINITION_BYTES, parse_document
from strongroom.sandbox.host import LAYERS, disabled_layers, probe_host
from strongroom.vault import Vault

__all__ = ["app", "sandbox_app"]

app = typer.Typer(
    help="Run registry tools through the governed execution lane.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
sandbox_app = typer.Typer(
    help="Inspect the sandbox of the execution lane.", no_args_is_help=True, rich_markup_mode=None
)


@app.command("run")
def run(
    ctx: typer.Context,
    tool: Annotated[
        str | None,
        typer.Argument(
            help="TOOL, TOOL@VERSION, TOOL@CHANNEL or TOOL@sha256:DIGEST (not with --request)."
        ),
    ] = None,
    request_file: Annotated[
        Path | None,
        typer.Option(
            "--request",
            help="A runner request file (Mass Relay's PythonRunnerRequest: request_id, run_id, "
            "tool_id, tool_version, requested_at, caller, input, governance, trace, "
            "timeout_seconds); prints the response in its PythonRunnerResponse shape.",
        ),
    ] = None,
    input_: Annotated[
        str, typer.Option("--input", "-i", help="The tool's input: JSON, or @file.json.")
    ] = "{}",
    run_id: Annotated[
        str | None,
        typer.Option("--run", help="Log on this run (default: a new run of project 'tools')."),
    ] = None,
    allow_degraded: Annotated[
        bool,
        typer.Option(
            "--allow-degraded",
            help="Run even if this host cannot enforce every layer the policy needs "
            "(recorded in the audit trail).",
        ),
    ] = False,
    tool_path: Annotated[
        list[Path] | None,
        typer.Option(
            "--tool-path",
            help=f"Folder with tool modules (repeatable; also ${TOOL_PATH_ENV}).",
        ),
    ] = None,
    workdir: Annotated[
        Path,
        typer.Option("--workdir", help="Where the policy's relative paths point (default: .)."),
    ] = Path("."),
    governance: Annotated[
        str | None,
        typer.Option("--governance", help="Ask for a stricter level than the tool's (A0-A3)."),
    ] = None,
    timeout: Annotated[
        int | None, typer.Option("--timeout", help="Seconds; lower than the tool's own.")
    ] = None,
    actor: Annotated[
        str,
        typer.Option("--actor", envvar="STRONGROOM_ACTOR", help="Who runs it (audited)."),
    ] = "local",
    json_flag: JsonFlag = False,
) -> None:
    """Run one tool in the sandbox its policy asks for, and print its response. A failed
    run exits with the error's code (approval_required 10, sandbox_violation 11, timeout 12,
    sandbox_unavailable 13, other tool failures 14)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        options = RunnerOptions(
            workdir=workdir.resolve(),
            tool_paths=tool_paths(tool_path),
            allow_degraded=allow_degraded,
        )
        if request_file is not None or tool is None:
            _run_request(state, request_file, tool, options)
            return
        ref = parse_ref(tool)
        payload = read_json_value(input_, option="--input")
        selector = ref.selector
        request = {
            "request_id": new_id(),
            "run_id": run_id,
            "tool_id": ref.id,
            "tool_version": selector,
            "caller": actor,
            "input": payload,
            "governance": governance,
            "timeout_seconds": timeout,
        }

        async def work(vault: Vault) -> RunnerResponse:
            return await ToolRunner(vault, options).run(request)

        response = state.run(work)
    _report(state, response)


def _run_request(
    state: CliState, path: Path | None, tool: str | None, options: RunnerOptions
) -> None:
    """`tools run --request FILE`: the file's request through the lane; the response printed
    in Mass Relay's shape (with --json, both: ``{"response": ..., "strongroom": ...}``)."""
    if path is None or tool is not None:
        raise ValidationError(
            "give a TOOL (with --input) or --request FILE, not both and not neither",
            operation="cli.tools",
            reason="tool_or_request",
        )
    with map_os_errors("tools.run", backend="local", path=str(path)):
        data = read_regular_file(path, max_bytes=MAX_DEFINITION_BYTES)
    document = parse_document(data, file_name=path.name)

    async def work(vault: Vault) -> tuple[RunnerResponse, PythonRunnerResponse]:
        return await run_request(ToolRunner(vault, options), document)

    response, relay = state.run(work)
    if state.json:
        print_json({"response": relay.document(), "strongroom": response.model_dump(mode="json")})
    else:
        typer.echo(json.dumps(relay.document(), indent=2, ensure_ascii=False))
    if not response.ok:
        assert response.error is not None
        if not state.json:
            emit_error(False, response.error.model_dump())
        raise typer.Exit(exit_code_for(response.error.code))


def _report(state: CliState, response: RunnerResponse) -> None:
    """What is printed of the response (JSON, or a summary and the error), and the exit
    code that says how the run ended."""
    if state.json:
        print_json(response)
    else:
        _print_response(response)
    if not response.ok:
        assert response.error is not None
        if not state.json:
            emit_error(False, response.error.model_dump())
        raise typer.Exit(exit_code_for(response.error.code))


def _print_response(response: RunnerResponse) -> None:
    console = stdout_console()
    status = Text(response.status.value, style="green" if response.ok else "red")
    rows: list[tuple[str, str | Text]] = [
        ("tool", f"{response.tool_id}@{response.tool_version}"),
        ("status", status),
        ("run", response.run_id or "-"),
        ("attempts", str(response.attempts)),
        ("layers", ", ".join(response.layers) or "-"),
    ]
    if response.degraded:
        rows.append(("isolation", Text("DEGRADED (accepted)", style="yellow")))
    if response.needs_review:
        rows.append(("review", Text("output is a draft: needs human review", style="yellow")))
    if response.usage:
        usage = response.usage
        rows.append(
            (
                "usage",
                f"{usage.get('wall_seconds', 0):.3f} s wall, {usage.get('cpu_seconds', 0):.3f} s "
                f"CPU, {usage.get('peak_memory_bytes', 0) // 1048576} MiB peak",
            )
        )
    if response.artifact_ids:
        rows.append(("artifacts", ", ".join(response.artifact_ids)))
    print_lines(console, key_values(rows))
    if response.ok:
        console.print_json(json.dumps(response.output, ensure_ascii=False))


@sandbox_app.command("check")
def check(ctx: typer.Context, json_flag: JsonFlag = False) -> None:
    """Print which isolation layers this host can enforce (probed in a child process)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        caps = probe_host()
        disabled = disabled_layers()
    available = caps.available()
    if state.json:
        print_json({**caps.to_dict(), "disabled": sorted(disabled)})
        return
    console = stdout_console()
    table = Table("layer", "status", "what it enforces", box=None, pad_edge=False)
    for layer, description in LAYERS.items():
        if layer in disabled:
            mark = Text("disabled", style="yellow")
        elif available[layer]:
            mark = Text("yes", style="green")
        elif layer == "unprivileged_uid" and not caps.root:
            mark = Text("n/a (not root)", style="dim")
        else:
            mark = Text("no", style="red")
        table.add_row(layer, mark, description)
    console.print(table)
    facts = f"Landlock ABI {caps.landlock_abi}, euid {caps.euid}, python {caps.python}"
    console.print(Text(facts, style="dim"))
    for name, note in caps.notes.items():
        console.print(Text(f"{name}: {note}", style="dim"))
