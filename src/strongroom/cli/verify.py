"""`strongroom verify`: re-hash every blob, check every record's blob, replay every log chain
and the audit chain with its Merkle checkpoints (and anchored heads), check every record
against its audit binding; exit 1 when anything is wrong."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from strongroom._fs import read_regular_file
from strongroom.adapters import open_witness
from strongroom.cli._context import EXIT_PROBLEMS, JsonFlag, cli_state, reported_errors
from strongroom.cli._output import print_json, stdout_console, verify_summary
from strongroom.cli._progress import StageProgress
from strongroom.errors import ValidationError
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


async def _verify(
    vault: Vault,
    anchor: str | None,
    trusted: set[str] | None,
    progress: StageProgress,
) -> VerifyReport:
    heads = await open_witness(anchor).read() if anchor else []
    return await vault.verify(on_progress=progress, anchors=heads, trusted_keys=trusted)


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
    json_flag: JsonFlag = False,
) -> None:
    """Check the whole vault for tampering and loss; exit 0 when intact, 1 when not."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        trusted = _trusted(trusted_key or [])
        stages = StageProgress(_STAGES, label_width=28, hidden=state.json)
        with stages:
            report = state.run(
                lambda vault: _verify(vault, anchor, trusted, stages), bootstrap=False
            )
            stages.finish()
        if state.json:
            print_json({**report.model_dump(mode="json"), "ok": report.ok})
        else:
            console = stdout_console()
            for line in verify_summary(report):
                console.print(line, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(EXIT_PROBLEMS)
