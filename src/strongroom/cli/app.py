"""The root `strongroom` command: global options (--vault, --json), the command tree, and the
last line of defence that keeps raw tracebacks and non-JSON usage errors away from users."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from typer.core import TyperGroup

from strongroom import __version__
from strongroom.adapters import MemoryMetadataStore, SqliteMetadataStore
from strongroom.cli import (
    actors,
    artifacts,
    audit,
    keys,
    logs,
    orchestrate,
    registry,
    retention,
    runs,
    tools,
    transfer,
)
from strongroom.cli._context import (
    EXIT_INTERNAL,
    EXIT_PROBLEMS,
    CliState,
    JsonFlag,
    cli_state,
    default_vault_url,
    emit_error,
    reconfigure_output,
    reported_errors,
)
from strongroom.cli._output import key_values, print_json, print_lines, stdout_console
from strongroom.cli.demo import demo
from strongroom.cli.serve import serve
from strongroom.cli.verify import verify
from strongroom.cli.worker import worker
from strongroom.secrets import safe_url
from strongroom.vault import Vault

__all__ = ["VaultInfo", "app", "main"]


def _wants_json(argv: Sequence[str]) -> bool:
    options = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in options


class _RootGroup(TyperGroup):
    """Typer's usage errors become JSON when --json is on the command line; anything that
    escapes a command is reported as ``error[internal]`` (exit 70), never as a traceback."""

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
        add_global_options(self)
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


def add_global_options(group: TyperGroup, options: dict[str, Any] | None = None) -> None:
    """Give every command and group under ``group`` the root's --vault, --blobs and --json
    (``strongroom runs list --vault /data/v`` = ``strongroom --vault /data/v runs list``);
    a command's own --json is kept (it folds into the same state through `cli_state`)."""
    if options is None:  # built once per CLI call, shared by every command and group
        options = _global_options()
    for command in group.commands.values():
        if getattr(command, "_strongroom_globals", False):
            continue
        taken = {opt for param in command.params for opt in getattr(param, "opts", ())}
        command.params.extend(p for name, p in options.items() if name not in taken)
        command._strongroom_globals = True  # type: ignore[attr-defined]
        if isinstance(command, TyperGroup):
            add_global_options(command, options)


class VaultInfo(BaseModel):
    """What `init --json` prints."""

    url: str
    created: bool
    metadata_backend: str
    metadata_location: str
    blob_backend: str
    blob_location: str
    runs: int


async def _describe(vault: Vault) -> VaultInfo:
    probe = vault.blobs.locate("0" * 64)
    metadata = vault.metadata
    # An SQL store knows whether its open created the schema; a memory vault is always new.
    created = bool(getattr(metadata, "schema_created", isinstance(metadata, MemoryMetadataStore)))
    page = await vault.runs.list(limit=1, count_limit=None)  # `runs N`: exact
    return VaultInfo(
        url=vault.url,
        created=created,
        metadata_backend=metadata.backend,
        metadata_location=str(metadata.path)
        if isinstance(metadata, SqliteMetadataStore)
        else "in memory"
        if isinstance(metadata, MemoryMetadataStore)
        else vault.url,
        blob_backend=vault.blobs.backend,
        blob_location=probe.uri.removesuffix(probe.path),
        runs=page.total,
    )


@app.command("init")
def init(ctx: typer.Context, json_flag: JsonFlag = False) -> None:
    """Create the vault (or open an existing one) and say where it is."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        info = state.run(_describe, create=True)
        if state.json:
            print_json(info)
            return
        console = stdout_console()
        verb = "Created" if info.created else "Opened existing"
        console.print(f"{verb} vault {info.url}", soft_wrap=True, markup=False)
        print_lines(
            console,
            key_values(
                [
                    ("metadata", f"{info.metadata_backend}  {info.metadata_location}"),
                    ("blobs", f"{info.blob_backend}  {info.blob_location}"),
                    ("runs", str(info.runs)),
                ]
            ),
        )
        if info.metadata_backend == "memory":
            console.print(
                "memory:// vaults vanish when the command ends; use a directory to keep data.",
                markup=False,
            )


app.add_typer(runs.app, name="runs")
app.add_typer(artifacts.app, name="artifacts")
app.add_typer(logs.app, name="logs")
app.add_typer(audit.app, name="audit")
app.add_typer(keys.app, name="keys")
app.add_typer(actors.app, name="actors")
app.add_typer(registry.app, name="registry")
app.add_typer(tools.app, name="tools")
app.add_typer(retention.holds_app, name="holds")
app.add_typer(retention.gc_app, name="gc")
app.command("run")(orchestrate.run)
app.command("resume")(orchestrate.resume)
app.command("cancel")(orchestrate.cancel)
app.add_typer(tools.sandbox_app, name="sandbox")
app.command("verify")(verify)
app.command("demo")(demo)
app.command("export")(transfer.export_command)
app.command("import")(transfer.import_command)
app.command("serve")(serve)
app.command("worker")(worker)


def main() -> None:
    """Console-script entry point (`strongroom`)."""
    app()
