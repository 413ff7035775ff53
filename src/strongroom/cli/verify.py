"""`strongroom verify`: re-hash every blob, check every record's blob, replay every log chain
and the audit chain with its Merkle checkpoints (and anchored heads), check every record
against its audit binding; exit 1 when anything is wrong. The outcome is then recorded in the
audit chain (a ``vault.verified`` entry) unless ``--no-record``; a record that cannot be
written is a warning on stderr, never a different verdict."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from strongroom._fs import read_regular_file
from strongroom.adapters import open_witness
from strongroom.cli._context import (
    EXIT_PROBLEMS,
    JsonFlag,
    cli_state,
    encodable,
    reported_errors,
)
from strongroom.cli._output import print_json, stdout_console, verify_summary
from strongroom.cli._progress import StageProgress
from strongroom.errors import StrongroomError, ValidationError
from strongroom.models import VerifyReport
from strongroom.vault import Vault

__all__ = ["verify"]

_STAGES = {
    "blobs": "Re-hashing blobs",
    "references": "Checking blob references",
    "records": "Checking record copies",
    "logs": "Replaying run log chains",
    "audit": "Replaying the audit chain",
    "bindings": "Checking records vs chain",
    "registry": "Checking the registry",
}


def _trusted(values: list[str]) -> set[str] | None:
    """Public keys given as hex or as a ``.pub`` file holding the hex."""
    if not values:
        return None
    keys: set[str] = set()
    for value in values:
        text = value.strip().lower()
        if not _HEX_KEY.fullmatch(text):
            try:
                raw = read_regular_file(Path(value), max_bytes=4096)
            except OSError:  # missing, not a regular file (never blocked on), too large
                raise ValidationError(
                    f"--trusted-key {value[:80]!r} is neither a 64-hex-digit public key nor "
                    "a public key file",
                    operation="verify",
                    reason="bad_trusted_key",
                ) from None
            text = raw.decode("utf-8", errors="replace").strip().lower()
            if not _HEX_KEY.fullmatch(text):
                raise ValidationError(
                    f"{value[:80]} does not hold a public key (64 hex digits)",
                    operation="verify",
                    reason="bad_trusted_key",
                )
        keys.add(text)
    return keys


_HEX_KEY = re.compile(r"[0-9a-f]{64}")


@dataclass
class _Verified:
    report: VerifyReport
    recorded_seq: int | None = None  # the vault.verified entry
    not_recorded: StrongroomError | None = None  # why it is not there
    # What failed after the record was written (a checkpoint, an anchor it triggered).
    after_record: list[StrongroomError] = field(default_factory=list)


async def _verify(
    vault: Vault,
    anchor: str | None,
    trusted: set[str] | None,
    progress: StageProgress,
    record: bool,
) -> _Verified:
    heads = await open_witness(anchor).read() if anchor else []
    report = await vault.verify(on_progress=progress, anchors=heads, trusted_keys=trusted)
    done = _Verified(report)
    if record:
        before = len(vault.audit.errors)
        try:
            principal = await vault.identity.principal()
            done.recorded_seq = (await vault.audit.record_verify(report, actor=principal)).seq
        except StrongroomError as exc:  # a read-only role or file: the report stands
            done.not_recorded = exc
        done.after_record = vault.audit.errors[before:]
    return done


def _warn(text: str) -> None:
    line = Text("warning", style="bold yellow")
    line.append(f": {encodable(' '.join(text.split()))}")
    Console(stderr=True, soft_wrap=True, highlight=False).print(line)


def verify(
    ctx: typer.Context,
    anchor: Annotated[
        str | None,
        typer.Option(
            "--anchor",
            help="A witness the vault's heads were anchored to (file, directory, s3://...): "
            "prove the audit log extends every head in it (no rollback, no truncation).",
        ),
    ] = None,
    trusted_key: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-key",
            help="A public key (hex, or a .pub file) whose signatures count; repeatable "
            "(default: the local signing key's).",
        ),
    ] = None,
    record: Annotated[
        bool,
        typer.Option(
            "--record/--no-record",
            help="Record the outcome in the audit chain (a vault.verified entry by your OS "
            "user or database role); --no-record writes nothing.",
        ),
    ] = True,
    json_flag: JsonFlag = False,
) -> None:
    """Check the whole vault for tampering and loss; exit 0 when intact, 1 when not. The
    outcome is recorded in the audit chain (--no-record: not)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        trusted = _trusted(trusted_key or [])
        stages = StageProgress(_STAGES, label_width=28, hidden=state.json)
        with stages:
            done = state.run(
                lambda vault: _verify(vault, anchor, trusted, stages, record), bootstrap=False
            )
            stages.finish()
        report = done.report
        if done.not_recorded is not None:
            exc = done.not_recorded
            _warn(f"the outcome was not recorded in the audit chain ({exc.code}: {exc.message})")
        for exc in done.after_record:
            _warn(f"after recording the outcome: {exc.code}: {exc.message}")
        if state.json:
            print_json(
                {
                    **report.model_dump(mode="json"),
                    "ok": report.ok,
                    "recorded_seq": done.recorded_seq,
                }
            )
        else:
            console = stdout_console()
            for line in verify_summary(report):
                console.print(line, soft_wrap=True)
            if done.recorded_seq is not None:
                console.print(
                    Text(f"recorded as audit entry {done.recorded_seq}", style="dim"),
                    soft_wrap=True,
                )
    if not report.ok:
        raise typer.Exit(EXIT_PROBLEMS)
