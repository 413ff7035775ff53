"""`strongroom run`, `strongroom resume`, `strongroom cancel`: playbooks through the
orchestrator, with live progress (or a JSON event stream with ``--json``)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from strongroom._fs import read_regular_file
from strongroom.cli._context import (
    TOOL_PATH_ENV,
    CliState,
    JsonFlag,
    RunIdArg,
    cli_state,
    emit_error,
    exit_code_for,
    read_json_value,
    reported_errors,
    tool_paths,
)
from strongroom.cli._executor import (
    ExecutorOption,
    RunQueueOption,
    celery_executor,
    choose,
    configured_executor,
    remote_app,
)
from strongroom.cli._output import STEP_STYLES, print_json, stdout_console
from strongroom.cli._registry_args import KeyOption, SignFlag, personal_key
from strongroom.cli.worker import BrokerOption
from strongroom.errors import Conflict, NotFound, ValidationError, map_os_errors
from strongroom.execution import RunnerOptions
from strongroom.integrity import SigningKey
from strongroom.models import Run, RunStatus, load_json_text
from strongroom.orchestrator import Event, Orchestrator, RunResult, StepStatus
from strongroom.vault import Vault

__all__ = ["cancel", "resume", "run"]


ToolPathOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--tool-path", help=f"Folder with tool modules (repeatable; also ${TOOL_PATH_ENV})."
    ),
]
WorkdirOption = Annotated[
    Path,
    typer.Option(
        "--workdir", help="The tools' working directory; policy paths are relative to it."
    ),
]
ParallelOption = Annotated[
    int, typer.Option("--max-parallel", min=1, max=256, help="Independent steps run at once.")
]
ActorOption = Annotated[
    str, typer.Option("--actor", envvar="STRONGROOM_ACTOR", help="Who runs it (audited).")
]


def parse_inputs(values: list[str]) -> dict[str, Any]:
    """``key=value`` (the value is JSON if it parses, else a string) or ``@file.json`` (an
    object whose keys are inputs)."""
    found: dict[str, Any] = {}
    for raw in values:
        if raw.startswith("@"):
            document = read_json_value(raw, option="--input")
            if not isinstance(document, dict):
                raise ValidationError(
                    f"{raw[1:]} must hold a JSON object of inputs", operation="cli.run"
                )
            found.update(document)
            continue
        key, sep, value = raw.partition("=")
        if not sep or not key.strip():
            raise ValidationError(
                f"--input takes KEY=VALUE or @file.json, not {raw!r}",
                operation="cli.run",
                reason="bad_input",
            )
        try:
            found[key.strip()] = load_json_text(
                value, source=f"--input {key.strip()}", operation="cli.run"
            )
        except ValidationError:  # not JSON (or NaN...): the text itself
            found[key.strip()] = value
    return found


class Progress:
    """Rich live table of the steps (text mode) or one JSON object per event (--json)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.rows: dict[str, Event] = {}
        self.console = stdout_console()
        self.live: Live | None = None
        self.showing = False

    def __call__(self, event: Event) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps(event.to_dict(), default=str) + "\n")
            sys.stdout.flush()
            return
        if event.step_id is not None:
            self.rows[event.step_id] = event
        if self.live is None and self.showing and self.rows:
            self.live = Live(self.table(event), console=self.console, refresh_per_second=8)
            self.live.start()
        if self.live is not None:
            self.live.update(self.table(event))

    def table(self, last: Event | None = None) -> Table:
        table = Table("step", "tool", "status", "duration", "artifacts", box=None, pad_edge=False)
        for step_id, event in self.rows.items():
            status = event.status or ""
            duration = (
                f"{event.duration_seconds:.2f} s" if event.duration_seconds is not None else ""
            )
            table.add_row(
                step_id,
                event.tool or "",
                Text(status, style=STEP_STYLES.get(status, "")),
                duration,
                str(event.artifacts or ""),
            )
        if last is not None:
            table.caption = f"{last.completed}/{last.total} steps completed"
        return table

    @contextmanager
    def shown(self) -> Iterator[None]:
        """Draw the step table live while the block runs, from the first step event on (a
        command refused before any step prints no table)."""
        self.showing = not self.as_json
        try:
            yield
        finally:
            self.showing = False
            if self.live is not None:
                self.live.stop()
                self.live = None
                if not self.console.is_terminal:
                    self.console.line()  # the last frame ends without one off a terminal


def _options(workdir: Path, paths: list[Path] | None) -> RunnerOptions:
    return RunnerOptions(workdir=workdir.resolve(), tool_paths=tool_paths(paths))


def _lane_words(paths: list[Path] | None, workdir: Path) -> list[str]:
    """The --tool-path / --workdir words a printed `resume` needs to find the same tools."""
    words: list[str] = []
    for path in paths or []:
        words += ["--tool-path", str(path)]
    if workdir != Path("."):
        words += ["--workdir", str(workdir)]
    return words


def _report(state: CliState, result: RunResult, lane: list[str]) -> None:
    """The last word: where things are, and the exit code that says how it ended. Every
    command it prints runs as printed (same vault, same tools)."""
    run = result.run
    summary = {
        "run_id": run.run_id,
        "status": run.status.value,
        "steps": {s.step_id: s.status.value for s in result.plan.ordered()},
        "last_error": run.last_error.model_dump() if run.last_error else None,
    }
    if state.json:
        sys.stdout.write(json.dumps({"kind": "result", **summary}) + "\n")
    else:
        console = stdout_console()
        console.print(
            Text(
                f"run {run.run_id}: {run.status.value}",
                style=STEP_STYLES.get(run.status.value, "bold"),
            )
        )
        waiting = [s for s in result.plan.ordered() if s.status is StepStatus.WAITING_APPROVAL]
        for step in waiting:
            command = (step.error.details if step.error else {}).get("command")
            if isinstance(command, str):
                command = state.hint(command)
            console.print(f"  step {step.step_id} needs an approval: {command}", soft_wrap=True)
        if waiting:
            resume = shlex.join(["strongroom", "resume", run.run_id, *lane])
            console.print(f"  then: {state.hint(resume)}", soft_wrap=True)
        console.print(
            f"  details: {state.hint(f'strongroom runs show {run.run_id}')}", soft_wrap=True
        )
    if run.status is RunStatus.COMPLETED:
        return
    if run.status is RunStatus.PAUSED:
        raise typer.Exit(exit_code_for("approval_required"))
    if run.last_error is not None:
        if not state.json:
            emit_error(False, run.last_error.model_dump())
        raise typer.Exit(exit_code_for(run.last_error.code))
    raise typer.Exit(1)


async def _publish_local(vault: Vault, data: bytes, name: str, signer: SigningKey | None) -> str:
    """A playbook file: published (a draft; identical content is a no-op; signed by
    ``signer``, else by the OS user or database role), then run by its digest."""
    result = await vault.registry.publish(data, file_name=name, signer=signer)
    version = result.version
    return f"{version.definition_id}@sha256:{version.digest}"


def run(
    ctx: typer.Context,
    playbook: Annotated[
        str,
        typer.Argument(
            help="PLAYBOOK, PLAYBOOK@VERSION, PLAYBOOK@CHANNEL, or a playbook file "
            "(published as a draft first)."
        ),
    ],
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="Project config (ID[@VERSION|@CHANNEL])."),
    ] = None,
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="KEY=VALUE (JSON or text) or @file.json; repeatable."),
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Id of the new run.")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="A key naming this run (e.g. nightly-2026-12-05): the same key again resumes "
            "its unfinished run or shows its completed one, running nothing.",
        ),
    ] = None,
    max_parallel: ParallelOption = 4,
    tool_path: ToolPathOption = None,
    workdir: WorkdirOption = Path("."),
    actor: ActorOption = "local",
    key: KeyOption = None,
    sign: SignFlag = False,
    executor: ExecutorOption = None,
    broker: BrokerOption = None,
    queue: RunQueueOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Run a playbook through the sandboxed execution lane, persisting after every step.
    Exits 0 when the run completes, 10 when it paused for an approval (the approve and
    resume commands are printed), else the failing step's error code. A playbook file is
    published first, signed with --key/--sign when given (one that may run A2+ tools must
    be)."""
    state = cli_state(ctx, json_flag)
    progress = Progress(state.json)
    with reported_errors(state):
        signer = personal_key(key, sign)
        if run_id is not None and idempotency_key is not None:
            raise ValidationError(
                "give --run-id or --idempotency-key, not both",
                operation="cli.run",
                reason="conflicting_options",
            )
        values = parse_inputs(inputs or [])
        options = _options(workdir, tool_path)
        local = Path(playbook)
        data = _playbook_file(playbook)
        # the flag (or no project) decides before the vault opens; else the project config
        choice = choose(executor, queue) if executor is not None or project is None else None
        remote = None if choice is None else remote_app(choice, broker, state)

        async def work(vault: Vault) -> RunResult:
            step_executor = (
                await configured_executor(vault, queue, broker, state, project=project)
                if choice is None
                else celery_executor(vault, remote, choice)
            )
            ref = playbook
            if data is not None:
                ref = await _publish_local(vault, data, local.name, signer)
            orchestrator = Orchestrator(
                vault,
                options,
                max_parallel=max_parallel,
                actor=actor,
                on_event=progress,
                executor=step_executor,
            )
            with progress.shown():
                return await orchestrator.start(
                    ref,
                    project=project,
                    inputs=values,
                    run_id=run_id,
                    key=idempotency_key,
                    signer=signer,
                )

        result = state.run(work, create=True)
    _report(state, result, _lane_words(tool_path, workdir))


_PLAYBOOK_SUFFIXES = (".yaml", ".yml", ".json")
_MAX_PLAYBOOK_BYTES = 16 * 1024 * 1024


def _playbook_file(text: str) -> bytes | None:
    """The bytes of ``run``'s argument when it names a file; None when it is a reference.
    A name that looks like a path but is missing is `NotFound`; anything but a regular file
    (a FIFO, a device, a folder) is refused without being opened for a blocking read."""
    looks_like_path = "/" in text or os.sep in text or text.endswith(_PLAYBOOK_SUFFIXES)
    if not looks_like_path and not os.path.lexists(text):
        return None
    with map_os_errors("cli.run", backend="local", path=text):
        try:
            return read_regular_file(text, max_bytes=_MAX_PLAYBOOK_BYTES)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(
                f"no playbook file {text}", operation="cli.run", reason="no_file", path=text
            ) from None


def resume(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to continue.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Continue even if the playbook, a tool or the project config changed since "
            "the run started (audited).",
        ),
    ] = False,
    tool_path: ToolPathOption = None,
    workdir: WorkdirOption = Path("."),
    actor: ActorOption = "local",
    key: KeyOption = None,
    sign: SignFlag = False,
    executor: ExecutorOption = None,
    broker: BrokerOption = None,
    queue: RunQueueOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Continue a run from its latest snapshot: completed steps are skipped, the step that was
    in flight runs again. A failed or cancelled run continues as a new run. A forced resume
    is signed with --key/--sign (an operator's key), which the vault's policy may require."""
    state = cli_state(ctx, json_flag)
    progress = Progress(state.json)
    with reported_errors(state):
        options = _options(workdir, tool_path)
        signer = personal_key(key, sign)
        # the flag decides before the vault opens; else the config the run was planned with
        choice = None if executor is None else choose(executor, queue)
        remote = None if choice is None else remote_app(choice, broker, state)

        async def work(vault: Vault) -> RunResult:
            step_executor = (
                await configured_executor(vault, queue, broker, state, run_id=run_id)
                if choice is None
                else celery_executor(vault, remote, choice)
            )
            orchestrator = Orchestrator(
                vault,
                options,
                actor=actor,
                on_event=progress,
                executor=step_executor,
            )
            with progress.shown():
                return await orchestrator.resume(run_id, force=force, signer=signer)

        try:
            result = state.run(work)
        except Conflict as exc:
            raise _with_lane_options(exc, tool_path, workdir) from None
    _report(state, result, _lane_words(tool_path, workdir))


def _with_lane_options(exc: Conflict, paths: list[Path] | None, workdir: Path) -> Conflict:
    """A `resume` refused because the run must be started again: its command (from the
    engine) completed with this invocation's --tool-path and --workdir, so it runs as
    printed."""
    command = exc.details.get("command")
    if exc.details.get("reason") != "no_plan" or not isinstance(command, str):
        return exc
    words = _lane_words(paths, workdir)
    full = command + ("" if not words else " " + shlex.join(words))
    return Conflict(exc.message.replace(command, full), **{**exc.details, "command": full})


def cancel(
    ctx: typer.Context,
    run_id: RunIdArg,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (audited).")] = "cancelled",
    actor: ActorOption = "local",
    json_flag: JsonFlag = False,
) -> None:
    """Cancel a pending or running run (also `strongroom runs cancel`): it moves to
    cancelled and its log is sealed; an orchestrator driving it kills the running step's
    process group within a second; everything persisted so far stays."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):

        async def work(vault: Vault) -> Run:
            return await Orchestrator(vault, actor=actor).cancel(run_id, reason=reason)

        cancelled = state.run(work)
    if state.json:
        print_json(cancelled)
    else:
        stdout_console().print(f"run {cancelled.run_id} is now {cancelled.status.value}")
