"""`strongroom artifacts ...`: store a file (or stdin) as an immutable artifact of a run, fetch
its verified bytes back, list and describe artifacts."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from strongroom._fs import open_regular_file, output_path
from strongroom.cli._context import CliState, JsonFlag, cli_state, reported_errors
from strongroom.cli._output import (
    artifacts_table,
    command_hint,
    human_size,
    iso,
    key_values,
    print_json,
    print_lines,
    print_table,
    stdout_console,
)
from strongroom.cli._progress import ByteProgress
from strongroom.errors import Conflict, NotFound, ValidationError, map_os_errors
from strongroom.models import (
    MAX_JSON_DEPTH,
    ArtifactFormat,
    ArtifactMetadata,
    ArtifactQuery,
    load_json_text,
)
from strongroom.services import ArtifactInput, parse
from strongroom.vault import Vault

__all__ = ["app"]

app = typer.Typer(
    help="Store, fetch and list immutable, content-addressed artifacts.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ArtifactIdArg = Annotated[str, typer.Argument(help="Artifact id (as printed by `artifacts put`).")]

_STDIN_CHUNK = 1024 * 1024
_LIST_LIMIT = 100
_EXTENSIONS = {
    ArtifactFormat.JSON: ".json",
    ArtifactFormat.JSONL: ".jsonl",
    ArtifactFormat.CSV: ".csv",
    ArtifactFormat.TXT: ".txt",
    ArtifactFormat.BINARY: ".bin",
}


def _stdin_chunks(progress: ByteProgress) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        stream = sys.stdin.buffer
        done = 0
        while chunk := await asyncio.to_thread(stream.read, _STDIN_CHUNK):
            done += len(chunk)
            progress(done)
            yield chunk

    return chunks()


def _input_size(file: str) -> int:
    """The size of the regular file ``file``: `NotFound` when it is missing, `ValidationError`
    (``not_a_regular_file``) for a FIFO, device, socket or directory (never blocked on)."""
    with map_os_errors("artifacts.put", backend="local", path=file):
        try:
            handle = open_regular_file(file)
        except FileNotFoundError:
            raise NotFound(
                f"file {file} does not exist", operation="artifacts.put", path=file
            ) from None
        with handle:
            return os.fstat(handle.fileno()).st_size


def _metadata(text: str) -> dict[str, Any]:
    value = load_json_text(text, source="--metadata", operation="artifacts.put")
    if not isinstance(value, dict):
        raise ValidationError(
            f"--metadata must be a JSON object, got {type(value).__name__}",
            operation="artifacts.put",
            reason="not_an_object",
            field="--metadata",
        )
    return value


#: ArtifactInput's fields as `artifacts put` spells them.
_PUT_OPTIONS = {
    "role": "--role",
    "phase": "--phase",
    "step": "--step",
    "label": "--label",
    "format": "--format",
    "tags": "--tag",
    "description": "--description",
    "name": "--name",
    "metadata": "--metadata",
}


@app.command("put")
def put(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run the artifact belongs to.")],
    file: Annotated[
        str,
        typer.Argument(
            help="Regular file to store, or - to read stdin (a FIFO, device or directory is "
            "refused)."
        ),
    ],
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="phase_output, logs, export, run_state, report or custom.",
        ),
    ],
    phase: Annotated[str | None, typer.Option("--phase", help="Phase that produced it.")] = None,
    step: Annotated[str | None, typer.Option("--step", help="Step that produced it.")] = None,
    label: Annotated[
        str | None, typer.Option("--label", help="Target language or another label.")
    ] = None,
    format_: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="json, jsonl, csv, txt or binary (default: from the file extension). "
            "json and jsonl payloads are checked to parse.",
        ),
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag (repeatable).")] = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Name to record (default: the file's name).")
    ] = None,
    metadata: Annotated[
        str | None,
        typer.Option(
            "--metadata",
            help="Free-form JSON object to attach (no NaN or Infinity; at most "
            f"{MAX_JSON_DEPTH} levels deep).",
        ),
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Store FILE as an artifact of RUN_ID; prints `<artifact_id> sha256:<hex>`. A progress
    bar shows on stderr while a large file is stored (not with --json or when stderr is not
    a terminal)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        from_stdin = file == "-"
        path = Path(file)
        size = None if from_stdin else _input_size(file)
        spec: dict[str, Any] = {
            "role": role,
            "phase": phase,
            "step": step,
            "label": label,
            "format": format_,
            "tags": tag or [],
            "description": description,
            "name": name if name is not None or from_stdin else path.name,
            "metadata": _metadata(metadata) if metadata else {},
        }
        spec = {k: v for k, v in spec.items() if v is not None}
        # Checked before the vault is opened: a typo in --role or --format touches nothing.
        parse(ArtifactInput, spec, operation="artifacts.put", names=_PUT_OPTIONS, run_id=run_id)
        shown = spec.get("name") or ("stdin" if from_stdin else path.name)

        with ByteProgress(f"Storing {shown}", total=size, hidden=state.json) as bar:

            async def store(vault: Vault) -> ArtifactMetadata:
                if from_stdin:
                    return await vault.artifacts.put_stream(run_id, _stdin_chunks(bar), **spec)
                return await vault.artifacts.put_file(run_id, path, progress=bar, **spec)

            artifact = state.run(store)
        if state.json:
            print_json(artifact)
        else:
            typer.echo(f"{artifact.artifact_id} {artifact.checksum}")


async def _download(
    vault: Vault, artifact_id: str, output: str | None, state: CliState
) -> tuple[ArtifactMetadata, Path]:
    meta = await vault.artifacts.get(artifact_id)
    default_name = meta.name or f"{meta.artifact_id}{_EXTENSIONS[meta.format]}"
    with map_os_errors("artifacts.get", backend="local", path=output or default_name):
        if output is None:
            dest = Path(default_name)
            if await asyncio.to_thread(os.path.lexists, dest):
                again = command_hint(
                    "artifacts",
                    "get",
                    meta.artifact_id,
                    "--output",
                    str(dest),
                    vault_url=state.vault_url,
                    blobs_url=state.blobs_url,
                )
                raise Conflict(
                    f"{dest} already exists: to replace it, run {again} (or choose another "
                    "path with --output)",
                    operation="artifacts.get",
                    artifact_id=meta.artifact_id,
                    path=str(dest),
                    reason="exists",
                )
        else:
            dest = await asyncio.to_thread(output_path, output, default_name)
    with ByteProgress(f"Fetching {dest.name}", total=meta.size_bytes, hidden=state.json) as bar:
        await vault.artifacts.get_file(meta.artifact_id, dest, progress=bar)
    return meta, dest


@app.command("get")
def get(
    ctx: typer.Context,
    artifact_id: ArtifactIdArg,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write: a file; a directory (an existing one, or any path ending "
            "in /, created if missing), to hold the artifact under its recorded name; or - "
            "for stdout. Only a regular file is ever replaced: a device, FIFO, socket or "
            "directory in the way is refused. Default: the artifact's recorded name in the "
            "current directory (an existing file is never replaced).",
        ),
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Fetch an artifact's bytes, verified against its SHA-256 before any byte is written
    (a progress bar shows on stderr for a large one, unless --json or stderr is not a
    terminal)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        if output == "-":
            # Staged through a temporary file: the digest is only known at the end of the
            # stream, and nothing unverified may reach the reader of stdout.
            with tempfile.TemporaryDirectory(prefix="strongroom-") as tmp:
                staged = Path(tmp) / "artifact"
                state.run(lambda vault: vault.artifacts.get_file(artifact_id, staged))
                sys.stdout.flush()
                with staged.open("rb") as source:
                    shutil.copyfileobj(source, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            return
        meta, dest = state.run(lambda vault: _download(vault, artifact_id, output, state))
        if state.json:
            print_json({"artifact": meta, "path": str(dest.absolute())})
        else:
            typer.echo(f"wrote {dest} ({meta.size_bytes} bytes, {meta.checksum}, verified)")


#: ArtifactQuery's fields as `artifacts list` spells them.
_LIST_OPTIONS = {
    "run_id": "RUN",
    "role": "--role",
    "phase": "--phase",
    "tag": "--tag",
    "limit": "--limit",
    "after_id": "--cursor",
}


@app.command("list")
def list_artifacts(
    ctx: typer.Context,
    run_arg: Annotated[
        str | None,
        typer.Argument(metavar="[RUN]", help="Only this run's artifacts.", show_default=False),
    ] = None,
    run_option: Annotated[
        str | None, typer.Option("--run", hidden=True, help="Old spelling of RUN.")
    ] = None,
    role: Annotated[str | None, typer.Option("--role")] = None,
    phase: Annotated[str | None, typer.Option("--phase")] = None,
    tag: Annotated[str | None, typer.Option("--tag", "-t")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Artifacts per page.")] = _LIST_LIMIT,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Next-page cursor printed by the last page.")
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """List artifacts (of RUN, or of every run), oldest first."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        if run_arg is not None and run_option is not None and run_arg != run_option:
            raise ValidationError(
                f"two different runs given: {run_arg} and --run {run_option} (give the run "
                "once, as RUN)",
                operation="artifacts.list",
                reason="conflicting_run",
            )
        run = run_arg if run_arg is not None else run_option
        query = parse(
            ArtifactQuery,
            {
                "run_id": run,
                "role": role,
                "phase": phase,
                "tag": tag,
                "limit": limit,
                "after_id": cursor,
            },
            operation="artifacts.list",
            names=_LIST_OPTIONS,
        )

        async def fetch(vault: Vault) -> list[ArtifactMetadata]:
            if run is not None:
                await vault.runs.get(run)  # an unknown run is not_found, not an empty list
            return await vault.artifacts.list(query)

        items = state.run(fetch)
        next_cursor = items[-1].artifact_id if len(items) == query.limit else None
        if state.json:
            print_json({"items": items, "next_cursor": next_cursor})
            return
        console = stdout_console()
        if items:
            print_table(console, artifacts_table(items, show_run=run is None), flexible="NAME")
        else:
            console.print(Text("No artifacts match."))
        footer = Text(
            f"{len(items)} artifact{'s' if len(items) != 1 else ''}, "
            f"{human_size(sum(a.size_bytes for a in items))}",
            style="dim",
        )
        if next_cursor:
            footer.append("; next page: ", style="dim")
            footer.append(
                command_hint(
                    "artifacts",
                    "list",
                    run,
                    *(("--role", role) if role else ()),
                    *(("--phase", phase) if phase else ()),
                    *(("--tag", tag) if tag else ()),
                    *(("--limit", str(limit)) if limit != _LIST_LIMIT else ()),
                    "--cursor",
                    next_cursor,
                    vault_url=state.vault_url,
                    blobs_url=state.blobs_url,
                )
            )
        console.print(footer, soft_wrap=True)


@app.command("show")
def show(ctx: typer.Context, artifact_id: ArtifactIdArg, json_flag: JsonFlag = False) -> None:
    """Show one artifact's metadata: checksum, size, location, tags."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        meta = state.run(lambda vault: vault.artifacts.get(artifact_id))
        if state.json:
            print_json(meta)
            return
        rows: list[tuple[str, str | Text]] = [
            ("artifact_id", meta.artifact_id),
            ("run_id", meta.run_id),
            ("role", meta.role.value),
            ("phase", meta.phase or "-"),
            ("step", meta.step or "-"),
            ("label", meta.label or "-"),
            ("name", meta.name or "-"),
            ("format", f"{meta.format.value} ({meta.media_type})"),
            ("size", f"{meta.size_bytes} bytes ({human_size(meta.size_bytes)})"),
            ("checksum", meta.checksum),
            ("created_at", iso(meta.created_at)),
            ("namespace", meta.namespace),
            ("location", meta.location.uri),
            ("tags", ", ".join(meta.tags) or "-"),
            ("description", meta.description or "-"),
        ]
        if meta.metadata:
            rows.append(("metadata", json.dumps(meta.metadata, ensure_ascii=False)))
        print_lines(stdout_console(), key_values(rows))
