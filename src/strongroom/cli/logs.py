"""`strongroom logs ...`: read a run's hash-chained log (as stored: already redacted) and
append lines to it from scripts and shell pipelines."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.text import Text

from strongroom.cli._context import (
    JsonFlag,
    RunIdArg,
    check_limit,
    cli_state,
    parse_json_object,
    parse_seq_cursor,
    reported_errors,
)
from strongroom.cli._output import log_line, print_json, stdout_console
from strongroom.errors import ValidationError
from strongroom.models import LogEntry, LogLine, LogQuery, LogReference
from strongroom.services import parse
from strongroom.vault import Vault

__all__ = ["LogView", "app"]

app = typer.Typer(
    help="Read and append run log lines.", no_args_is_help=True, rich_markup_mode=None
)

_PAGE = 5000
_MAX_PAGE = 100_000  # LogQuery's limit
# --lines: a batch is written when it holds this many lines or is this old (seconds), so a
# slow producer still sees its lines stored promptly.
_BATCH_LINES = 500
_BATCH_SECONDS = 0.5


class LogView(BaseModel):
    """What `logs show --json` prints."""

    run_id: str
    log: LogReference
    entries: list[LogEntry]
    next_cursor: str | None = None
    """With --limit: the --cursor of the next page (null on the last)."""


async def _pages(vault: Vault, run_id: str, base: LogQuery) -> AsyncIterator[list[LogEntry]]:
    """Matching entries page by page, oldest first (a long log is never read at once)."""
    after = 0
    while True:
        page = await vault.logs.read(
            run_id, base.model_copy(update={"after_seq": after, "limit": _PAGE})
        )
        if page:
            yield page
        if len(page) < _PAGE:
            return
        after = page[-1].seq


async def _collect(vault: Vault, run_id: str, base: LogQuery, tail: int | None) -> LogView:
    log = await vault.logs.reference(run_id)  # not_found for an unknown run
    filtered = base.min_level is not None or base.event is not None or base.phase is not None
    if tail is not None and not filtered:
        return LogView(run_id=log.run_id, log=log, entries=await vault.logs.tail(run_id, tail))
    kept: deque[LogEntry] = deque(maxlen=tail)
    async for page in _pages(vault, run_id, base):
        kept.extend(page)
    return LogView(run_id=log.run_id, log=log, entries=list(kept))


async def _page(vault: Vault, run_id: str, base: LogQuery, after: int, limit: int) -> LogView:
    """One page of ``limit`` matching lines after sequence number ``after``."""
    log = await vault.logs.reference(run_id)
    page = await vault.logs.read(
        run_id, base.model_copy(update={"after_seq": after, "limit": limit + 1})
    )
    more = len(page) > limit
    page = page[:limit]
    return LogView(
        run_id=log.run_id,
        log=log,
        entries=page,
        next_cursor=str(page[-1].seq) if more and page else None,
    )


async def _stream(
    vault: Vault, run_id: str, base: LogQuery, console: Console
) -> tuple[int, LogReference]:
    """Print matching lines as pages arrive; returns (lines printed, log reference)."""
    log = await vault.logs.reference(run_id)
    printed = 0
    async for page in _pages(vault, run_id, base):
        for entry in page:
            console.print(log_line(entry), soft_wrap=True)
        printed += len(page)
    return printed, log


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: RunIdArg,
    level: Annotated[
        str | None,
        typer.Option(
            "--level", "-l", help="Minimum level: debug, info, warning, error or critical."
        ),
    ] = None,
    event: Annotated[str | None, typer.Option("--event", "-e", help="Only this event.")] = None,
    phase: Annotated[str | None, typer.Option("--phase", help="Only this phase.")] = None,
    tail: Annotated[
        int | None, typer.Option("--tail", help="Only the last N matching lines.")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", help="Lines per page (1-100000); default: every line."),
    ] = None,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Next-page cursor printed by the last page.")
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Print a run's log lines, oldest first (secrets were redacted before storage): all of
    them, a page (--limit, --cursor) or the last few (--tail)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        base = parse(
            LogQuery,
            {"min_level": level, "event": event, "phase": phase},
            operation="logs.show",
            run_id=run_id,
        )
        if tail is not None and (limit is not None or cursor is not None):
            raise ValidationError(
                "--tail shows the last lines; it does not go with --limit / --cursor",
                operation="cli.logs.show",
                reason="conflicting_options",
            )
        if tail is not None:
            check_limit(tail, option="--tail", high=_MAX_PAGE)
        after = 0 if cursor is None else parse_seq_cursor(cursor)
        console = stdout_console()
        view: LogView | None = None
        if limit is not None or cursor is not None:
            size = check_limit(limit if limit is not None else _PAGE, high=_MAX_PAGE)
            view = state.run(lambda vault: _page(vault, run_id, base, after, size))
        elif state.json or tail is not None:
            view = state.run(lambda vault: _collect(vault, run_id, base, tail))
        if view is not None:
            if state.json:
                print_json(view)
                return
            for entry in view.entries:
                console.print(log_line(entry), soft_wrap=True)
            printed, log = len(view.entries), view.log
        else:
            printed, log = state.run(lambda vault: _stream(vault, run_id, base, console))
        footer = Text(f"{printed} of {log.entry_count} lines", style="dim")
        if log.sealed:
            footer.append(f"; log sealed as artifact {log.sealed_artifact_id}", style="dim")
        if view is not None and view.next_cursor is not None:
            footer.append(f"; next page: --cursor {view.next_cursor}", style="dim")
        console.print(footer, soft_wrap=True)


async def _append_stdin_lines(vault: Vault, run_id: str, template: dict[str, Any]) -> int:
    """Append each line of stdin as one log line, in batches; returns the lines written."""
    batch: list[dict[str, Any]] = []
    written = 0
    started = time.monotonic()

    async def flush() -> None:
        nonlocal written, started
        if batch:
            await vault.logs.append_many(run_id, batch)
            written += len(batch)
            batch.clear()
        started = time.monotonic()

    while raw := await asyncio.to_thread(sys.stdin.readline):
        batch.append({**template, "message": raw.rstrip("\r\n")})
        if len(batch) >= _BATCH_LINES or time.monotonic() - started >= _BATCH_SECONDS:
            await flush()
    await flush()
    return written


@app.command("append")
def append(
    ctx: typer.Context,
    run_id: RunIdArg,
    event: Annotated[
        str, typer.Option("--event", "-e", help="Event name, e.g. phase.started or tool.output.")
    ],
    level: Annotated[str, typer.Option("--level", "-l")] = "info",
    message: Annotated[
        str, typer.Option("--message", "-m", help="Message text; - reads it from stdin.")
    ] = "",
    phase: Annotated[str | None, typer.Option("--phase")] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="JSON object, e.g. '{\"rows\": 120}'.")
    ] = None,
    lines: Annotated[
        bool,
        typer.Option("--lines", help="Append every line of stdin as its own log line."),
    ] = False,
    json_flag: JsonFlag = False,
) -> None:
    """Append a line to a run's log; prints its sequence number. Secrets are redacted."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        line: dict[str, Any] = {"event": event, "level": level, "phase": phase}
        if data is not None:
            line["data"] = parse_json_object(data, option="--data")
        if lines:
            # Validate the shared fields once, before reading anything from stdin.
            parse(LogLine, line, operation="logs.append", run_id=run_id)
            count = state.run(lambda vault: _append_stdin_lines(vault, run_id, line))
            if state.json:
                print_json({"run_id": run_id, "appended": count})
            else:
                typer.echo(str(count))
            return
        line["message"] = sys.stdin.read().rstrip("\n") if message == "-" else message
        parsed = parse(LogLine, line, operation="logs.append", run_id=run_id)
        entry = state.run(lambda vault: vault.logs.append(run_id, parsed))
        if state.json:
            print_json(entry)
        else:
            typer.echo(str(entry.seq))
