"""`strongroom verify`: re-hash every blob, check every record's blob, replay every log chain
and the audit chain with its Merkle checkpoints; exit 1 when anything is wrong."""

from __future__ import annotations

import typer

from strongroom.cli._context import EXIT_PROBLEMS, JsonFlag, cli_state, reported_errors
from strongroom.cli._output import print_json, stdout_console, verify_summary
from strongroom.cli._progress import StageProgress

__all__ = ["verify"]

_STAGES = {
    "blobs": "Re-hashing blobs",
    "references": "Checking blob references",
    "logs": "Replaying run log chains",
    "audit": "Replaying the audit chain",
}


def verify(ctx: typer.Context, json_flag: JsonFlag = False) -> None:
    """Check the whole vault for tampering and loss; exit 0 when intact, 1 when not."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        stages = StageProgress(_STAGES, label_width=28, hidden=state.json)
        with stages:
            report = state.run(lambda vault: vault.verify(on_progress=stages))
            stages.finish()
        if state.json:
            print_json({**report.model_dump(mode="json"), "ok": report.ok})
        else:
            console = stdout_console()
            for line in verify_summary(report):
                console.print(line, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(EXIT_PROBLEMS)
