"""`strongroom artifacts ...`: store a file (or stdin) as an immutable artifact of a run, fetch
its verified bytes back, list and describe artifacts."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from strongroom.cli._context import JsonFlag, cli_state, parse_json_object, reported_errors
from strongroom.cli._output import (
    artifacts_table,
    human_size,
    iso,
    key_values,
    print_json,
    print_lines,
    print_table,
    stdout_console,
)
from strongroom.errors import Conflict, NotFound, ValidationError
from strongroom.models import ArtifactFormat, ArtifactMetadata, ArtifactQuery
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
_EXTENSIONS = {
    ArtifactFormat.JSON: ".json",
    ArtifactFormat.JSONL: ".jsonl",
    ArtifactFormat.CSV: ".csv",
    ArtifactFormat.TXT: ".txt",
    ArtifactFormat.BINARY: ".bin",
}


async def _stdin_chunks() -> AsyncIterator[bytes]:
    stream = sys.stdin.buffer
    while chunk := await asyncio.to_thread(stream.read, _STDIN_CHUNK):
        yield chunk


@app.command("put")
def put(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run the artifact belongs to.")],
    file: Annotated[str, typer.Argument(help="File to store, or - to read stdin.")],
    role: Annotated[
        str,
        typer.Option(
            "--role",
            "-r",
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
        str | None, typer.Option("--metadata", help="Free-form JSON object to attach.")
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Store FILE as an artifact of RUN_ID; prints `<artifact_id> sha256:<hex>`."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        from_stdin = file == "-"
        path = Path(file)
        if not from_stdin:
            if not path.exists():
                raise NotFound(f"file {file} does not exist", operation="artifacts.put", path=file)
            if not path.is_file():
                raise ValidationError(
                    f"{file} is not a regular file", operation="artifacts.put", path=file
                )
        spec: dict[str, Any] = {
            "role": role,
            "phase": phase,
            "step": step,
            "label": label,
            "format": format_,
            "tags": tag or [],
            "description": description,
            "name": name if name is not None or from_stdin else path.name,
            "metadata": parse_json_object(metadata, option="--metadata") if metadata else {},
        }
        spec = {k: v for k, v in spec.items() if v is not None}
        # Checked before the vault is opened: a typo in --role or --format touches nothing.
        parse(ArtifactInput, spec, operation="artifacts.put", run_id=run_id)

        async def store(vault: Vault) -> ArtifactMetadata:
            if from_stdin:
                return await vault.artifacts.put_stream(run_id, _stdin_chunks(), **spec)
            return await vault.artifacts.put_file(run_id, path, **spec)

        artifact = state.run(store)
        if state.json:
            print_json(artifact)
        else:
            typer.echo(f"{artifact.artifact_id} {artifact.checksum}")


async def _download(
    vault: Vault, artifact_id: str, output: str | None
) -> tuple[ArtifactMetadata, Path]:
    meta = await vault.artifacts.get(artifact_id)
    default_name = meta.name or f"{meta.artifact_id}{_EXTENSIONS[meta.format]}"
    if output is None:
        dest = Path(default_name)
        if await asyncio.to_thread(dest.exists):
            raise Conflict(
                f"{dest} already exists; pass --output {dest} to replace it or choose another path",
                operation="artifacts.get",
                artifact_id=meta.artifact_id,
                path=str(dest),
                reason="exists",
            )
    else:
        dest = Path(output)
        if await asyncio.to_thread(dest.is_dir):
            dest = dest / default_name
    await vault.artifacts.get_file(meta.artifact_id, dest)
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
            help="File or directory to write to, or - for stdout. Default: the artifact's "
            "name in the current directory (an existing file is never replaced).",
        ),
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Fetch an artifact's bytes, verified against its SHA-256 before any byte is written."""
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
        meta, dest = state.run(lambda vault: _download(vault, artifact_id, output))
        if state.json:
            print_json({"artifact": meta, "path": str(dest.absolute())})
        else:
            typer.echo(f"wrote {dest} ({meta.size_bytes} bytes, {meta.checksum}, verified)")


@app.command("list")
def list_artifacts(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Option("--run", help="Only this run's artifacts.")] = None,
    role: Annotated[str | None, typer.Option("--role", "-r")] = None,
    phase: Annotated[str | None, typer.Option("--phase")] = None,
    tag: Annotated[str | None, typer.Option("--tag", "-t")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Artifacts per page.")] = 100,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Next-page cursor printed by the last page.")
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """List artifacts, oldest first."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
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
            footer.append("; next page: --cursor ", style="dim")
            footer.append(next_cursor)
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
