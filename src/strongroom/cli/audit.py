"""`strongroom audit ...`: read the vault-wide, hash-chained audit trail."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import BaseModel
from rich.text import Text

from strongroom.cli._context import JsonFlag, cli_state, reported_errors
from strongroom.cli._output import audit_table, print_json, print_table, stdout_console
from strongroom.errors import ValidationError
from strongroom.models import AuditEntry, MerkleCheckpoint
from strongroom.vault import Vault

__all__ = ["AuditView", "app"]

app = typer.Typer(help="Read the audit trail.", no_args_is_help=True, rich_markup_mode=None)


class AuditView(BaseModel):
    """What `audit show --json` prints."""

    entries: list[AuditEntry]
    head_seq: int
    latest_checkpoint: MerkleCheckpoint | None
    next_after: int | None


async def _read(vault: Vault, after: int, limit: int) -> AuditView:
    entries = await vault.audit.entries(after_seq=after, limit=limit)
    head = await vault.audit.head()
    checkpoints = await vault.audit.checkpoints()
    head_seq = head.seq if head else 0
    last = entries[-1].seq if entries else after
    return AuditView(
        entries=entries,
        head_seq=head_seq,
        latest_checkpoint=checkpoints[-1] if checkpoints else None,
        next_after=last if last < head_seq else None,
    )


@app.command("show")
def show(
    ctx: typer.Context,
    after: Annotated[
        int, typer.Option("--after", help="Show entries after this sequence number.")
    ] = 0,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Entries to show (1-10000).")] = 50,
    json_flag: JsonFlag = False,
) -> None:
    """Print audit entries in sequence order (who did what, when, to which subject)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        if after < 0 or not 1 <= limit <= 10000:
            raise ValidationError(
                "--after must be >= 0 and --limit between 1 and 10000",
                operation="audit.show",
                after=after,
                limit=limit,
            )
        view = state.run(lambda vault: _read(vault, after, limit))
        if state.json:
            print_json(view)
            return
        console = stdout_console()
        if view.entries:
            print_table(console, audit_table(view.entries), flexible="DETAILS")
        else:
            console.print(Text("No audit entries."))
        footer = Text(f"audit head: entry {view.head_seq}", style="dim")
        if view.latest_checkpoint is not None:
            cp = view.latest_checkpoint
            footer.append(
                f"; latest Merkle checkpoint covers {cp.tree_size} entries, root {cp.root_hash}",
                style="dim",
            )
        if view.next_after is not None:
            footer.append(f"; next page: --after {view.next_after}", style="dim")
        console.print(footer, soft_wrap=True)
