"""Everything the CLI prints: JSON documents for machines, Rich tables and key/value views for
people. User data is always rendered as plain `Text`, never as Rich markup: a log message
holding ``[REDACTED]`` must print as it is stored."""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from rich import box
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from strongroom.cli._context import encodable
from strongroom.models import (
    ArtifactMetadata,
    AuditEntry,
    LogEntry,
    Progress,
    Run,
    VerifyReport,
)
from strongroom.secrets import safe_url
from strongroom.vault import DEFAULT_VAULT_URL

__all__ = [
    "artifacts_table",
    "audit_table",
    "command_hint",
    "human_size",
    "iso",
    "key_values",
    "log_line",
    "plain_table",
    "print_json",
    "print_lines",
    "print_table",
    "progress_text",
    "runs_table",
    "stdout_console",
    "to_jsonable",
    "verify_summary",
]

# Width used when stdout is not a terminal: piped output is never truncated, so ids and
# digests survive copy-paste and grep.
_PIPE_WIDTH = 240

_STATUS_STYLES = {
    "pending": "yellow",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}
STEP_STYLES = {  # a playbook step's status (run statuses: `status_text`)
    "pending": "dim",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "waiting_approval": "yellow",
    "cancelled": "magenta",
}
_LEVEL_STYLES = {
    "debug": "dim",
    "info": "",
    "warning": "yellow",
    "error": "red",
    "critical": "bold red",
}


def stdout_console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=_PIPE_WIDTH)
    return console


# -- JSON -----------------------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def print_json(value: Any) -> None:
    """One JSON document on stdout (plain text: no colour codes, safe to pipe into jq)."""
    sys.stdout.write(encodable(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)) + "\n")
    sys.stdout.flush()


# -- small formatters -----------------------------------------------------------------------------


def iso(value: datetime | None) -> str:
    """ISO-8601 UTC to the second, ``Z``-suffixed; ``-`` when absent."""
    if value is None:
        return "-"
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def progress_text(progress: Progress) -> str:
    if progress.steps_total is None:
        return str(progress.steps_completed) if progress.steps_completed else "-"
    return f"{progress.steps_completed}/{progress.steps_total}"


def _status(value: str) -> Text:
    return Text(value, style=_STATUS_STYLES.get(value, ""))


def _compact(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


# -- layout ---------------------------------------------------------------------------------------


def print_table(console: Console, table: Table, *, flexible: str | None = None) -> None:
    """Print ``table``; on a narrow terminal only the ``flexible`` column is shortened.

    Rich would otherwise shrink every column and cut ids, which users copy-paste. When even
    that is not enough the table is printed wider than the terminal rather than cropped.
    """
    wide = console.options.update_width(1_000_000)
    natural = Measurement.get(console, wide, table).maximum
    if natural > console.width and flexible is not None:
        column = next((c for c in table.columns if c.header == flexible), None)
        if column is not None:
            own = max(
                [Measurement.get(console, wide, cell).maximum for cell in column.cells]
                + [len(flexible)]
            )
            shortened = max(8, own - (natural - console.width))
            column.max_width = shortened
            natural -= own - shortened
    if natural <= console.width:
        console.print(table)
        return
    # Console.print clamps its width argument to the console's, so widen the console itself.
    width = console.width
    console.width = natural
    try:
        console.print(table, crop=False)
    finally:
        console.width = width


def key_values(rows: Iterable[tuple[str, str | Text]]) -> list[Text]:
    """Aligned ``key  value`` lines (plain lines, no padding after the value: pipe-friendly)."""
    pairs = list(rows)
    width = max((len(key) for key, _ in pairs), default=0) + 2
    lines = []
    for key, value in pairs:
        line = Text(key.ljust(width), style="bold")
        line.append_text(value if isinstance(value, Text) else Text(value))
        lines.append(line)
    return lines


def print_lines(console: Console, lines: Iterable[Text]) -> None:
    for line in lines:
        console.print(line, soft_wrap=True)


def plain_table(*headers: str, title: str | None = None) -> Table:
    """The one table style of the CLI: a header rule, no borders, no wrapping."""
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
        title=title,
        title_justify="left",
        title_style="bold",
    )
    for header in headers:
        table.add_column(header, no_wrap=True, overflow="ellipsis")
    return table


# -- records --------------------------------------------------------------------------------------


def runs_table(runs: Sequence[Run]) -> Table:
    table = plain_table(
        "RUN ID", "STATUS", "PROJECT", "PHASE", "PROGRESS", "CREATED (UTC)", "PURPOSE"
    )
    for run in runs:
        table.add_row(
            Text(run.run_id),
            _status(run.status.value),
            Text(run.project),
            Text(run.current_phase or "-"),
            Text(progress_text(run.progress), justify="right"),
            Text(iso(run.created_at)),
            Text(" ".join(run.purpose.split())),
        )
    return table


def artifacts_table(items: Sequence[ArtifactMetadata], *, show_run: bool = True) -> Table:
    headers = ["ARTIFACT ID"]
    if show_run:
        headers.append("RUN ID")
    headers += ["ROLE", "PHASE", "FORMAT", "SIZE", "SHA256", "NAME"]
    table = plain_table(*headers)
    for item in items:
        row: list[RenderableType] = [Text(item.artifact_id)]
        if show_run:
            row.append(Text(item.run_id))
        row += [
            Text(item.role.value),
            Text(item.phase or "-"),
            Text(item.format.value),
            Text(human_size(item.size_bytes), justify="right"),
            Text(f"{item.sha256[:12]}…"),
            Text(item.name or item.label or "-"),
        ]
        table.add_row(*row)
    return table


def log_line(entry: LogEntry) -> Text:
    line = Text()
    line.append(f"{entry.seq:>5} ", style="dim")
    line.append(f"{iso(entry.timestamp)} ")
    line.append(f"{entry.level.value.upper():<8}", style=_LEVEL_STYLES.get(entry.level.value, ""))
    line.append(f" {entry.phase or '-':<10} ", style="cyan")
    line.append(entry.event, style="bold")
    if entry.message:
        line.append(f"  {entry.message}")
    if entry.data:
        line.append(f"  {_compact(entry.data)}", style="dim")
    return line


def audit_table(entries: Sequence[AuditEntry], signers: Mapping[int, str] | None = None) -> Table:
    """The audit entries; ``signers`` (entry seq -> label) adds a SIGNED column."""
    columns = ["SEQ", "TIME (UTC)", "EVENT", "ACTOR", "SUBJECT", "DETAILS"]
    if signers is not None:
        columns.insert(4, "SIGNED")
    table = plain_table(*columns)
    for entry in entries:
        cells = [
            Text(str(entry.seq), justify="right"),
            Text(iso(entry.timestamp)),
            Text(entry.event),
            Text(entry.actor),
            Text(f"{entry.subject_type}:{entry.subject_id}"),
            Text(_compact(entry.details), style="dim"),
        ]
        if signers is not None:
            label = signers.get(entry.seq, "-")
            cells.insert(4, Text(label, style="red" if "NOT VERIFIED" in label else ""))
        table.add_row(*cells)
    return table


_CHECKED_LABELS = {
    "blobs": "blobs re-hashed",
    "references": "blob references checked",
    "unreferenced_blobs": "unreferenced blobs",
    "log_chains": "run log chains replayed",
    "log_entries": "log entries",
    "audit_entries": "audit entries",
    "audit_checkpoints": "audit Merkle checkpoints",
}


def verify_summary(report: VerifyReport) -> list[Text]:
    lines = [Text("Checked:", style="bold")]
    for key, count in report.checked.items():
        lines.append(Text(f"  {count:>8}  {_CHECKED_LABELS.get(key, key.replace('_', ' '))}"))
    for warning in report.warnings:
        line = Text("  ")
        line.append("warning", style="yellow")
        line.append(f" {warning.message}")
        lines.append(line)
    if report.ok:
        lines.append(Text("Vault intact: no problems found.", style="bold green"))
        return lines
    noun = "problem" if len(report.problems) == 1 else "problems"
    lines.append(Text(f"{len(report.problems)} {noun} found:", style="bold red"))
    for problem in report.problems:
        line = Text("  ")
        line.append(f"{problem.code}", style="red")
        line.append(f" {problem.kind} {problem.subject}: {problem.message}")
        lines.append(line)
    return lines


def command_hint(
    *args: str | None, vault_url: str | None = None, blobs_url: str | None = None
) -> str:
    """A strongroom command line to print as a hint, runnable as printed: each argument
    shell-quoted (None ones dropped), with ``--vault`` / ``--blobs`` when the command ran
    against a vault other than the default one, unless its URL holds a secret (a password is
    never printed; the environment that named it still names it)."""
    words = ["strongroom"]
    for option, url in (("--vault", vault_url), ("--blobs", blobs_url)):
        if url and url != DEFAULT_VAULT_URL and safe_url(url) == url:
            words += [option, url]
    words += [arg for arg in args if arg is not None]
    return shlex.join(words)
