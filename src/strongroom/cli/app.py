"""The root `strongroom` command: global options (--vault, --json), the command tree, and the
last line of defence that keeps raw tracebacks and non-JSON usage errors away from users."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from strongroom import __version__
from strongroom.cli._state import (
    EXIT_INTERNAL,
    EXIT_PROBLEMS,
    CliState,
    default_vault_url,
    emit_error,
    reconfigure_output,
)

__all__ = ["COMMANDS", "app", "main"]


def _wants_json(argv: Sequence[str]) -> bool:
    options = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in options


# -- the command tree, each command's module imported only when that command is used ------------


@dataclass(frozen=True)
class LazyCommand:
    """Where a top-level command lives: ``module.attribute`` is a Typer app (a command group)
    or a command function. ``summary`` is the first paragraph of its help, what the root's
    ``--help`` lists without importing the module (a test keeps the two equal)."""

    module: str
    attribute: str
    summary: str


COMMANDS: dict[str, LazyCommand] = {
    "init": LazyCommand(
        "strongroom.cli.init",
        "init",
        "Create the vault (or open an existing one) and say where it is.",
    ),
    "run": LazyCommand(
        "strongroom.cli.orchestrate",
        "run",
        "Run a playbook through the sandboxed execution lane, persisting after every step. "
        "Exits 0 when the run completes, 10 when it paused for an approval (the approve and "
        "resume commands are printed), else the failing step's error code. A playbook file is "
        "published first, signed with --key/--sign when given (one that may run A2+ tools "
        "must be).",
    ),
    "resume": LazyCommand(
        "strongroom.cli.orchestrate",
        "resume",
        "Continue a run from its latest snapshot: completed steps are skipped, the step that "
        "was in flight runs again. A failed or cancelled run continues as a new run. A forced "
        "resume is signed with --key/--sign (an operator's key), which the vault's policy may "
        "require.",
    ),
    "cancel": LazyCommand(
        "strongroom.cli.orchestrate",
        "cancel",
        "Cancel a pending or running run (also `strongroom runs cancel`): it moves to cancelled "
        "and its log is sealed; an orchestrator driving it kills the running step's process "
        "group within a second; everything persisted so far stays.",
    ),
    "verify": LazyCommand(
        "strongroom.cli.verify",
        "verify",
        "Check the whole vault for tampering and loss; exit 0 when intact, 1 when not. The "
        "outcome is recorded in the audit chain (--no-record: not).",
    ),
    "demo": LazyCommand(
        "strongroom.cli.demo",
        "demo",
        "Record a sample document-translation run, publish the example registry definitions, "
        "run the main job through the governed lane, verify the vault and say what was stored.",
    ),
    "export": LazyCommand(
        "strongroom.cli.transfer",
        "export_command",
        "Copy every record and blob of the vault to another vault or a bundle directory.",
    ),
    "import": LazyCommand(
        "strongroom.cli.transfer",
        "import_command",
        "Copy every record and blob of a bundle (or another vault) into the vault.",
    ),
    "serve": LazyCommand(
        "strongroom.cli.serve",
        "serve",
        "Serve the Control Room: a read-only web UI and JSON API (/api/v1) over the vault.",
    ),
    "worker": LazyCommand(
        "strongroom.cli.worker",
        "worker",
        "Run steps sent to QUEUE on the broker, until stopped (SIGTERM or Ctrl-C: the steps "
        "running finish first; a SIGKILL hands them back to the broker).",
    ),
    "runs": LazyCommand("strongroom.cli.runs", "app", "Create, list, inspect and change runs."),
    "artifacts": LazyCommand(
        "strongroom.cli.artifacts",
        "app",
        "Store, fetch and list immutable, content-addressed artifacts.",
    ),
    "logs": LazyCommand("strongroom.cli.logs", "app", "Read and append run log lines."),
    "audit": LazyCommand("strongroom.cli.audit", "app", "Read the audit trail."),
    "keys": LazyCommand(
        "strongroom.cli.keys",
        "app",
        "Your Ed25519 key (kept outside the vault): signs audit checkpoints and, once "
        "registered (strongroom actors add), your governed acts.",
    ),
    "actors": LazyCommand(
        "strongroom.cli.actors",
        "app",
        "People and their keys: who may sign publications, approvals and other governed acts.",
    ),
    "registry": LazyCommand(
        "strongroom.cli.registry",
        "app",
        "Publish, inspect, promote and approve versioned definitions.",
    ),
    "tools": LazyCommand(
        "strongroom.cli.tools",
        "app",
        "Run registry tools through the governed execution lane.",
    ),
    "holds": LazyCommand(
        "strongroom.cli.retention",
        "holds_app",
        "Legal and operational holds: a held run is never deleted.",
    ),
    "gc": LazyCommand(
        "strongroom.cli.retention",
        "gc_app",
        "Garbage collection: plan what retention lets go, read it, then apply it.",
    ),
    "sandbox": LazyCommand(
        "strongroom.cli.tools", "sandbox_app", "Inspect the sandbox of the execution lane."
    ),
}
"""Every top-level command, in the order ``strongroom --help`` lists them. A command's module
(and what it imports: the vault, SQLAlchemy, the orchestrator...) is imported when the command
runs, so ``strongroom --help`` and a command that needs little start at once."""


def _holder_callback() -> None:
    """Makes the holder below a group, so its one command keeps the name given."""


def load_command(name: str) -> Any:
    """The click command of ``COMMANDS[name]``, built by Typer as ``app.add_typer`` /
    ``app.command`` would have built it on the root."""
    spec = COMMANDS[name]
    target = getattr(importlib.import_module(spec.module), spec.attribute)
    holder = typer.Typer(rich_markup_mode=None, add_completion=False)
    holder.callback()(_holder_callback)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    return typer.main.get_group(holder).commands[name]


class _LazyCommands(MutableMapping[str, Any]):
    """The root group's commands: names are known up front, a command is built on first
    access (``group.commands[name]`` / ``.get(name)``); ``loaded`` peeks without loading."""

    def __init__(self, eager: MutableMapping[str, Any]) -> None:
        self._loaded: dict[str, Any] = dict(eager)
        self._order = [*COMMANDS, *(name for name in eager if name not in COMMANDS)]
        self.on_load: Callable[[Any], None] | None = None

    def loaded(self, name: str) -> Any | None:
        return self._loaded.get(name)

    def __getitem__(self, name: str) -> Any:
        command = self._loaded.get(name)
        if command is not None:
            return command
        if name not in COMMANDS:
            raise KeyError(name)
        command = load_command(name)
        if self.on_load is not None:
            self.on_load(command)
        self._loaded[name] = command
        return command

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command
        if name not in self._order:
            self._order.append(name)

    def __delitem__(self, name: str) -> None:
        if name not in self._order:
            raise KeyError(name)
        self._order.remove(name)
        self._loaded.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._order

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)


class _RootGroup(TyperGroup):
    """Typer's usage errors become JSON when --json is on the command line; anything that
    escapes a command is reported as ``error[internal]`` (exit 70), never as a traceback.
    Its commands are `COMMANDS`, each imported when used."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LazyCommands(self.commands)
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # names only: TyperGroup's reads (and so loads) every one

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        commands = self.commands
        if self._listing and isinstance(commands, _LazyCommands) and cmd_name in COMMANDS:
            loaded = commands.loaded(cmd_name)
            # --help lists every command: a summary stands in for one not imported.
            return loaded or TyperCommand(cmd_name, help=COMMANDS[cmd_name].summary)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self._listing = False

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        as_json = _wants_json(argv)
        options = _global_options()
        commands = self.commands
        assert isinstance(commands, _LazyCommands)
        for name in commands:  # those already loaded; the rest get them as they load
            if (command := commands.loaded(name)) is not None:
                add_global_options(command, options)
        commands.on_load = lambda command: add_global_options(command, options)
        reconfigure_output()
        try:
            if not (standalone_mode and as_json):
                return super().main(
                    argv, prog_name, complete_var, standalone_mode, windows_expand_args, **extra
                )
            try:
                result = super().main(
                    argv, prog_name, complete_var, False, windows_expand_args, **extra
                )
            except typer.TyperException as exc:
                emit_error(True, {"code": "usage_error", "message": exc.format_message()})
                sys.exit(exc.exit_code)
            except typer.Abort:
                emit_error(True, {"code": "aborted", "message": "aborted"})
                sys.exit(EXIT_PROBLEMS)
            # Without standalone mode an Exit comes back as its code; success returns None.
            sys.exit(result if isinstance(result, int) else 0)
        except Exception as exc:
            emit_error(
                as_json,
                {"code": "internal", "message": f"{type(exc).__name__}: {exc}", "details": {}},
            )
            sys.exit(EXIT_INTERNAL)


app = typer.Typer(
    name="strongroom",
    cls=_RootGroup,
    help="strongroom: durable, auditable memory for AI-agent and data pipelines.\n\n"
    "Runs with state snapshots, content-addressed artifacts, hash-chained logs, an audit "
    "trail, and `verify` to prove none of it was changed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"strongroom {__version__}")
        raise typer.Exit()


_VAULT_HELP = (
    "Vault to use: a directory (SQLite + local blobs), postgresql://user@host/db (needs "
    "--blobs) or memory:// (gone when the command ends). Default: the nearest .strongroom "
    "in this directory or a parent; `init`, `run` and `runs create` create ./.strongroom "
    "when there is none."
)
_BLOBS_HELP = (
    "Blob store, if not the vault directory's own: s3://bucket/prefix (credentials from the "
    "AWS_* environment), a directory, or memory://."
)
_JSON_HELP = "Print one JSON document on stdout (errors too) instead of text."


@app.callback()
def root(
    ctx: typer.Context,
    vault: Annotated[
        str | None, typer.Option("--vault", envvar="STRONGROOM_URL", help=_VAULT_HELP)
    ] = None,
    blobs: Annotated[
        str | None, typer.Option("--blobs", envvar="STRONGROOM_BLOBS_URL", help=_BLOBS_HELP)
    ] = None,
    json_flag: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    if vault:
        url, named = vault, True
    else:
        url, _ = default_vault_url()
        named = False
    typed: list[str] = []
    for name, value in (("vault", vault), ("blobs", blobs)):
        source = ctx.get_parameter_source(name)
        if value and source is not None and source.name == "COMMANDLINE":
            from strongroom.secrets import safe_url

            typed += [f"--{name}", safe_url(value)]
    ctx.obj = CliState(
        vault_url=url,
        json=json_flag,
        blobs_url=blobs or None,
        vault_named=named,
        typed=tuple(typed),
    )


# -- the global options, accepted after the command name too ------------------------------------


def _set_global(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """A global option given after the command name: it overrides what the root saw."""
    if ctx.resilient_parsing or value is None or value is False:
        return value
    state = ctx.find_object(CliState) or CliState()
    if param.name in ("vault", "blobs"):
        flag = f"--{param.name}"
        typed = list(state.typed)
        if flag in typed:  # given before the command too: this one wins
            del typed[typed.index(flag) : typed.index(flag) + 2]
        from strongroom.secrets import safe_url

        typed += [flag, safe_url(str(value))]
        if param.name == "vault":
            state = replace(state, vault_url=str(value), vault_named=True, typed=tuple(typed))
        else:
            state = replace(state, blobs_url=str(value) or None, typed=tuple(typed))
    else:
        state = replace(state, json=True)
    ctx.obj = state
    return value


_globals = typer.Typer(add_completion=False)


@_globals.command()
def _global_options_source(
    vault: Annotated[
        str | None,
        typer.Option(
            "--vault",
            metavar="URL",
            callback=_set_global,
            help="The vault (as --vault before the command name).",
        ),
    ] = None,
    blobs: Annotated[
        str | None,
        typer.Option(
            "--blobs",
            metavar="URL",
            callback=_set_global,
            help="The blob store (as --blobs before the command name).",
        ),
    ] = None,
    json_flag: Annotated[bool, typer.Option("--json", callback=_set_global, help=_JSON_HELP)] = (
        False
    ),
) -> None:
    """Never run: Typer builds the global options' parameters from this signature."""


def _global_options() -> dict[str, Any]:
    """The --vault, --blobs and --json parameters a command gets (built once per call of the
    CLI, with Typer's own parameter classes; they pass nothing to the command)."""
    params = {}
    for param in typer.main.get_command(_globals).params:
        param.expose_value = False
        params[param.opts[0]] = param
    return params


def add_global_options(command: Any, options: dict[str, Any]) -> None:
    """Give ``command`` and every command and group under it the root's --vault, --blobs and
    --json (``strongroom runs list --vault /data/v`` = ``strongroom --vault /data/v runs
    list``); a command's own --json is kept (it folds into the same state through
    `cli_state`). ``options`` are built once per CLI call (`_global_options`)."""
    if getattr(command, "_strongroom_globals", False):
        return
    taken = {opt for param in command.params for opt in getattr(param, "opts", ())}
    command.params.extend(p for name, p in options.items() if name not in taken)
    command._strongroom_globals = True
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            add_global_options(sub, options)


def main() -> None:
    """Console-script entry point (`strongroom`)."""
    app()
