"""`strongroom export` and `strongroom import`: copy a whole vault, verified and resumable, to
another vault (any backend pair) or to a directory bundle, and back.

A bundle is named ``bundle:PATH`` (always), or by the plain path of a directory that already
holds one; any other value is a vault URL, read exactly like ``--vault``. So
``--to bundle:/backups/b1`` writes a bundle and ``--to /data/vault2`` an embedded vault.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from strongroom.adapters import safe_url
from strongroom.bundle import RECORD_KINDS
from strongroom.cli._context import EXIT_PROBLEMS, CliState, JsonFlag, cli_state, reported_errors
from strongroom.cli._output import human_size, key_values, print_json, print_lines, stdout_console
from strongroom.cli._progress import StageProgress
from strongroom.errors import ValidationError
from strongroom.transfer import (
    TransferReport,
    open_target_vault,
    parse_endpoint,
    transfer,
)
from strongroom.vault import Vault

__all__ = ["export_command", "import_command"]

_LABELS = {
    "check": "Comparing with the target",
    "blobs": "Copying blobs",
    **{kind.name: f"Copying {kind.name.replace('_', ' ')}" for kind in RECORD_KINDS},
    "verify:blobs": "Verifying: re-hashing blobs",
    "verify:references": "Verifying: blob references",
    "verify:logs": "Verifying: run log chains",
    "verify:audit": "Verifying: audit chain",
}


class _TransferProgress(StageProgress):
    """`transfer`'s stages as progress bars; the blob bar's label also shows the bytes copied
    so far (the ``blob_bytes`` pseudo-stage)."""

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if stage == "blob_bytes":
            self.describe("blobs", f"{_LABELS['blobs']} ({human_size(done)})")
            return
        super().__call__(stage, done, total)


def _same_place(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return safe_url(a) == safe_url(b)
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _check_distinct(source: str | Path, target: str | Path) -> None:
    if isinstance(source, Path) != isinstance(target, Path):
        return
    if _same_place(str(source), str(target)):
        raise ValidationError(
            "the source and the target are the same place",
            operation="transfer",
            reason="same_source_and_target",
        )


def _run(
    state: CliState,
    source: str | Path,
    source_blobs: str | None,
    target: str | Path,
    target_blobs: str | None,
    *,
    verify: bool,
) -> TransferReport:
    """Open both ends (a source vault must exist; a target vault is created if missing; neither
    gets default catalog entries written into it), transfer with a progress bar, close both
    ends."""
    _check_distinct(source, target)
    stages = _TransferProgress(_LABELS, label_width=40, hidden=state.json)

    async def with_target(src: Vault | Path) -> TransferReport:
        if isinstance(target, Path):
            return await transfer(src, target, progress=stages, verify=verify)
        async with await open_target_vault(target, blobs_url=target_blobs) as dst:
            return await transfer(src, dst, progress=stages, verify=verify)

    async def main() -> TransferReport:
        if isinstance(source, Path):
            return await with_target(source)
        # The source is only read: no default catalog entries written into it either.
        async with await Vault.open(
            source, blobs_url=source_blobs, create=False, bootstrap=False
        ) as src:
            return await with_target(src)

    with stages:
        report = asyncio.run(main())
        stages.finish()
    return report


def _print_report(state: CliState, verb: str, report: TransferReport) -> None:
    if state.json:
        print_json({**report.model_dump(mode="json"), "ok": report.ok})
        return
    console = stdout_console()

    def where(end: dict[str, str]) -> str:
        if end.get("kind") == "bundle":
            return f"bundle {end.get('path', '')}"
        backends = f"{end.get('metadata_backend')} + {end.get('blob_backend')}"
        return f"vault {end.get('url', '')} ({backends})"

    console.print(Text(f"{verb} {where(report.source)} -> {where(report.target)}"), soft_wrap=True)
    copied = sum(report.records.values())
    skipped = sum(report.records_skipped.values())
    updated = sum(report.records_updated.values())
    per_kind = ", ".join(
        f"{name.replace('_', ' ')} {count}" for name, count in report.records.items() if count
    )
    rows: list[tuple[str, str | Text]] = [
        (
            "records",
            f"{copied} copied, {updated} updated, {skipped} already there"
            + (f" ({per_kind})" if per_kind else ""),
        ),
        (
            "blobs",
            f"{report.blobs.copied} copied ({human_size(report.blobs.bytes)}), "
            f"{report.blobs.skipped} already there",
        ),
    ]
    if report.verify is None:
        rows.append(("verify", "skipped (--no-verify)"))
    else:
        checked = report.verify.checked
        summary = ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in checked.items())
        rows.append(
            (
                "verify",
                Text(f"target intact ({summary})", style="green")
                if report.verify.ok
                else Text(f"{len(report.verify.problems)} problem(s) in the target", style="red"),
            )
        )
    print_lines(console, key_values(rows))
    for problem in [*report.problems, *(report.verify.problems if report.verify else [])]:
        line = Text("  ")
        line.append(problem.code, style="red")
        line.append(f" {problem.kind} {problem.subject}: {problem.message}")
        console.print(line, soft_wrap=True)


NoVerify = Annotated[
    bool,
    typer.Option(
        "--no-verify",
        help="Skip verifying the target after the copy (blobs are still "
        "checked against their SHA-256 on read and on write).",
    ),
]


def export_command(
    ctx: typer.Context,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="URL_OR_DIR",
            help="Where to copy the vault (--vault) to: bundle:DIR for a directory bundle "
            "(or the path of a directory already holding one), else a vault URL like "
            "--vault's (a directory = embedded vault, created if missing).",
        ),
    ],
    to_blobs: Annotated[
        str | None,
        typer.Option(
            "--to-blobs", help="Blob store of the target vault, if not its own (like --blobs)."
        ),
    ] = None,
    no_verify: NoVerify = False,
    json_flag: JsonFlag = False,
) -> None:
    """Copy every record and blob of the vault to another vault or a bundle directory.

    Resumable: run the same command again after an interruption. Exit 0 when the copy is
    complete and verified, 1 when a source blob was missing/damaged or the target does not
    verify, 4 (conflict) when the target holds different records under the same ids.
    """
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        target = parse_endpoint(to)
        report = _run(
            state, state.vault_url, state.blobs_url, target, to_blobs, verify=not no_verify
        )
        _print_report(state, "Exported", report)
    if not report.ok:
        raise typer.Exit(EXIT_PROBLEMS)


def import_command(
    ctx: typer.Context,
    from_: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="URL_OR_DIR",
            help="What to copy into the vault (--vault): a bundle (bundle:DIR, or the path "
            "of a bundle directory) or another vault's URL.",
        ),
    ],
    from_blobs: Annotated[
        str | None,
        typer.Option(
            "--from-blobs", help="Blob store of the source vault, if not its own (like --blobs)."
        ),
    ] = None,
    no_verify: NoVerify = False,
    json_flag: JsonFlag = False,
) -> None:
    """Copy every record and blob of a bundle (or another vault) into the vault.

    The vault is created if missing and must be empty or hold an earlier copy of the same
    source. Resumable; exit codes as for `export`.
    """
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        source = parse_endpoint(from_)
        report = _run(
            state, source, from_blobs, state.vault_url, state.blobs_url, verify=not no_verify
        )
        _print_report(state, "Imported", report)
    if not report.ok:
        raise typer.Exit(EXIT_PROBLEMS)
