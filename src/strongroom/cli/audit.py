"""`strongroom audit ...`: read the vault-wide, hash-chained audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel, Field
from rich.text import Text

from strongroom.adapters import open_witness
from strongroom.cli._context import (
    JsonFlag,
    check_limit,
    cli_state,
    parse_seq_cursor,
    reported_errors,
)
from strongroom.cli._output import audit_table, print_json, print_table, stdout_console
from strongroom.cli._registry_args import ActorOption, personal_key
from strongroom.errors import ValidationError
from strongroom.integrity import SignedTreeHead, SigningKey, load_signing_key
from strongroom.models import AUDIT_QUERY_MAX, AuditEntry, AuditQuery, MerkleCheckpoint
from strongroom.services import parse
from strongroom.services.registry import entry_signers
from strongroom.vault import Vault, signed_head

__all__ = ["AnchorView", "AuditView", "app"]

app = typer.Typer(help="Read the audit trail.", no_args_is_help=True, rich_markup_mode=None)


class AuditView(BaseModel):
    """What `audit show --json` prints."""

    entries: list[AuditEntry]
    signers: dict[int, str] = Field(
        default_factory=dict,
        description="Entry seq -> who signed the governed act it records: 'unsigned', or "
        "'NAME KEY_ID (verified)' / '(NOT VERIFIED)' (entries of other events are left out).",
    )
    head_seq: int
    latest_checkpoint: MerkleCheckpoint | None
    next_cursor: str | None = Field(description="--cursor of the next page; null on the last.")
    next_after: int | None = Field(
        description="The same as a number (older name); null when paging newest first."
    )


async def _read(vault: Vault, query: AuditQuery, limit: int) -> AuditView:
    """``limit`` entries (more than one query page holds, in several) from ``query``."""
    entries: list[AuditEntry] = []
    cursor: int | None = None
    while True:
        page = await vault.audit.query(
            query.model_copy(update={"limit": min(AUDIT_QUERY_MAX, limit - len(entries))})
        )
        entries += page.entries
        cursor = page.next_cursor
        if cursor is None or len(entries) >= limit:
            break
        update = {"after_seq": cursor} if query.after_seq is not None else {"before_seq": cursor}
        query = query.model_copy(update=update)
    head = await vault.audit.head()
    checkpoints = await vault.audit.checkpoints()
    oldest_first = query.after_seq is not None
    return AuditView(
        entries=entries,
        signers=await entry_signers(vault.registry.records, entries),
        head_seq=head.seq if head else 0,
        latest_checkpoint=checkpoints[-1] if checkpoints else None,
        next_cursor=None if cursor is None else str(cursor),
        next_after=cursor if oldest_first else None,
    )


@app.command("show")
def show(
    ctx: typer.Context,
    cursor: Annotated[
        str | None,
        typer.Option(
            "--cursor", help="Next-page cursor printed by the last page (default: from the start)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Entries per page (1-10000).")] = 50,
    event: Annotated[
        str | None,
        typer.Option(
            "--event",
            "-e",
            help="Only this event (run.created), or every event under a prefix ending in '.' "
            "(registry.).",
        ),
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Only entries by this actor (os:alice).")
    ] = None,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            help="Only entries about this run: its creation, transitions, artifacts, logs, "
            "tool executions, approvals.",
        ),
    ] = None,
    newest: Annotated[
        bool, typer.Option("--newest", help="Newest first (the cursor then pages back).")
    ] = False,
    after: Annotated[
        str | None, typer.Option("--after", hidden=True, help="Older name of --cursor.")
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Print audit entries in sequence order (who did what, when, to which subject), or
    newest first; filtered by event, actor or run."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        if cursor is not None and after is not None and cursor != after:
            raise ValidationError(
                "give --cursor or its older name --after, not both",
                operation="cli.audit.show",
                reason="conflicting_options",
            )
        given = cursor if cursor is not None else after
        start = None if given is None else parse_seq_cursor(given, option="--cursor")
        check_limit(limit, high=10000)
        # Oldest first the cursor is the entry a page starts after; newest first, before.
        paging = {"before_seq": start} if newest else {"after_seq": start or 0}
        query = parse(
            AuditQuery,
            {"event": event, "actor": actor, "run_id": run, **paging},
            operation="cli.audit.show",
            names={
                "event": "--event",
                "actor": "--actor",
                "run_id": "--run",
                "before_seq": "--cursor",
                "after_seq": "--cursor",
            },
        )
        view = state.run(lambda vault: _read(vault, query, limit))
        if state.json:
            print_json(view)
            return
        console = stdout_console()
        if view.entries:
            print_table(console, audit_table(view.entries, view.signers), flexible="DETAILS")
        else:
            filtered = event is not None or actor is not None or run is not None
            console.print(Text("No matching audit entries." if filtered else "No audit entries."))
        footer = Text(f"audit head: entry {view.head_seq}", style="dim")
        if view.latest_checkpoint is not None:
            cp = view.latest_checkpoint
            footer.append(
                f"; latest Merkle checkpoint covers {cp.tree_size} entries, root {cp.root_hash}",
                style="dim",
            )
        if view.next_cursor is not None:
            footer.append(f"; next page: --cursor {view.next_cursor}", style="dim")
        console.print(footer, soft_wrap=True)


class AnchorView(BaseModel):
    """What `audit anchor --json` prints."""

    witness: str
    head: SignedTreeHead


async def _anchor(vault: Vault, target: str, key: SigningKey) -> AnchorView:
    witness = open_witness(target)  # a bad target is refused before the checkpoint is made
    checkpoint = await vault.audit.checkpoint()
    if checkpoint is None:
        raise ValidationError(
            "the audit log is empty: nothing to anchor yet", operation="audit.anchor"
        )
    head = signed_head(checkpoint, key)
    await witness.append(head)
    return AnchorView(witness=witness.describe(), head=head)


@app.command("anchor")
def anchor(
    ctx: typer.Context,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="The witness outside the vault: a JSONL file, a directory, or s3://bucket/prefix.",
        ),
    ],
    key_path: Annotated[
        Path | None, typer.Option("--key", help="The signing key (default: strongroom keys).")
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Checkpoint the audit log now, sign its head and append it to a witness outside the
    vault; `strongroom verify --anchor` then proves the vault still extends it (no rollback,
    no truncated tail). Set STRONGROOM_ANCHOR to do this after every checkpoint."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        key = load_signing_key(key_path, required=True)
        assert key is not None
        view = state.run(lambda vault: _anchor(vault, to, key))
        if state.json:
            print_json(view)
            return
        stdout_console().print(
            Text(
                f"anchored {view.head.tree_size} entries, root {view.head.root_hash}, "
                f"signed by {view.head.key_id}, to {view.witness}"
            )
        )


@app.command("adopt")
def adopt(
    ctx: typer.Context,
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: vouch for the unbound records as they are.")
    ] = False,
    actor: ActorOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Bind every record that has no audit binding (a vault written before bindings existed)
    as it is now. Trust on first use: run `strongroom verify` first; adopt only a vault you
    trust."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        if not yes:
            raise ValidationError(
                "adopting vouches for every unbound record as it is now: check the vault with "
                "`strongroom verify` first, then run `strongroom audit adopt --yes`",
                operation="audit.adopt",
                reason="confirmation_required",
            )
        personal_key(None, False, actor)  # refuses --actor: recorded as who runs this

        async def work(vault: Vault) -> int:
            return await vault.audit.adopt_unbound(actor=await vault.identity.principal())

        count = state.run(work)
        if state.json:
            print_json({"adopted": count})
            return
        stdout_console().print(Text(f"adopted {count} unbound record(s) into the audit chain"))
