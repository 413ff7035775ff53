"""`strongroom registry ...` commands that govern where definitions are used rather than what
they contain: moving channels (promote, rollback) and recording, revoking and listing approvals
(docs/registry.md). The functions here are plain Typer command callbacks; `registry.py` registers
them on the `registry` app, after publish and the reading commands."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from strongroom.cli._context import JsonFlag, cli_state, parse_timestamp, reported_errors
from strongroom.cli._output import iso, plain_table, print_json, print_table, stdout_console
from strongroom.cli._registry_args import (
    ActorOption,
    KeyOption,
    KindOption,
    ReasonOption,
    SignFlag,
    infer_kind,
    parse_channel,
    parse_kind,
    parse_ref,
    personal_key,
)
from strongroom.errors import ValidationError
from strongroom.models import Actor, ActorRole, Approval, ApprovalScope, ChannelMove
from strongroom.services.registry import MoveResult, signed_label
from strongroom.vault import Vault

__all__ = ["approvals", "approve", "promote", "revoke", "rollback"]


# -- channels --------------------------------------------------------------------------------


def _print_move(result: MoveResult, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    m: ChannelMove = result.move
    if not result.moved:
        typer.echo(
            f"{m.channel.value} of {m.kind.value} {m.definition_id} already at {result.version}"
        )
        return
    typer.echo(
        f"{m.channel.value} of {m.kind.value} {m.definition_id} -> {result.version} "
        f"({m.action.value}, move {m.move_id})"
    )


def promote(
    ctx: typer.Context,
    definition_id: Annotated[str, typer.Argument(help="Definition id.")],
    version: Annotated[str, typer.Argument(help="Version label or sha256:HEX.")],
    to: Annotated[str, typer.Option("--to", help="draft, staging or production.")],
    reason: ReasonOption,
    approval: Annotated[
        str | None, typer.Option("--approval", help="Approval id to rely on (else looked up).")
    ] = None,
    kind: KindOption = None,
    actor: ActorOption = None,
    key: KeyOption = None,
    sign: SignFlag = False,
    json_flag: JsonFlag = False,
) -> None:
    """Point a channel at a version (compare-and-set). Production of anything governing
    execution at A2 or above needs an approval by someone other than the publisher."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        channel, wanted = parse_channel(to, "--to"), parse_kind(kind)
        signer = personal_key(key, sign, actor)

        async def work(vault: Vault) -> MoveResult:
            k = await infer_kind(vault, definition_id, wanted)
            return await vault.registry.promote(
                k,
                definition_id,
                version,
                to=channel,
                reason=reason,
                approval_id=approval,
                signer=signer,
            )

        _print_move(state.run(work), state.json)


def rollback(
    ctx: typer.Context,
    definition_id: Annotated[str, typer.Argument(help="Definition id.")],
    channel: Annotated[str, typer.Option("--channel", "-c", help="draft, staging or production.")],
    reason: ReasonOption,
    kind: KindOption = None,
    actor: ActorOption = None,
    key: KeyOption = None,
    sign: SignFlag = False,
    json_flag: JsonFlag = False,
) -> None:
    """Move a channel back to the version it held before its last promotion."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        chan, wanted = parse_channel(channel, "--channel"), parse_kind(kind)
        signer = personal_key(key, sign, actor)

        async def work(vault: Vault) -> MoveResult:
            k = await infer_kind(vault, definition_id, wanted)
            return await vault.registry.rollback(
                k, definition_id, channel=chan, reason=reason, signer=signer
            )

        _print_move(state.run(work), state.json)


# -- approvals -------------------------------------------------------------------------------


def approve(
    ctx: typer.Context,
    reason: ReasonOption,
    tool: Annotated[
        str | None, typer.Option("--tool", help="Approve executing TOOL_ID@VERSION.")
    ] = None,
    promotion: Annotated[
        str | None,
        typer.Option("--promotion", help="Approve promoting ID@VERSION (with --channel)."),
    ] = None,
    channel: Annotated[
        str, typer.Option("--channel", "-c", help="The channel of a --promotion.")
    ] = "production",
    run: Annotated[str | None, typer.Option("--run", help="Approve one run (its id).")] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="ISO-8601 date/time the approval lapses.")
    ] = None,
    kind: KindOption = None,
    actor: ActorOption = None,
    key: KeyOption = None,
    sign: SignFlag = False,
    json_flag: JsonFlag = False,
) -> None:
    """Record an approval of a tool version, a promotion or a run (never your own
    publication: self-approval is refused, by key when both acts are signed)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        signer = personal_key(key, sign, actor)
        if sum(x is not None for x in (tool, promotion, run)) != 1:
            raise ValidationError(
                "give exactly one of --tool ID@VERSION, --promotion ID@VERSION or --run RUN_ID",
                operation="cli.registry.approve",
                reason="one_target",
            )
        expires_at = parse_timestamp(expires, option="--expires") if expires else None
        wanted = parse_kind(kind)
        chan = parse_channel(channel, "--channel")

        async def work(vault: Vault) -> Approval:
            target: dict[str, Any]
            if tool is not None:
                ref = parse_ref(tool)
                if ref.version is None:
                    raise ValidationError(
                        "--tool takes TOOL_ID@VERSION", operation="cli.registry.approve"
                    )
                target = {"scope": "tool_version", "tool_id": ref.id, "version": ref.version}
            elif promotion is not None:
                ref = parse_ref(promotion)
                k = await infer_kind(vault, ref.id, wanted)
                version = await vault.registry.version(k, ref.id, ref.selector)
                target = {
                    "scope": "promotion",
                    "kind": k.value,
                    "definition_id": ref.id,
                    "digest": version.digest,
                    "channel": chan.value,
                }
            else:
                target = {"scope": "run", "run_id": run}
            return await vault.registry.approve(
                target, reason=reason, expires_at=expires_at, signer=signer
            )

        approval = state.run(work)
        if state.json:
            print_json(approval)
        else:
            typer.echo(approval.approval_id)


def revoke(
    ctx: typer.Context,
    approval_id: Annotated[str, typer.Argument(help="Approval id (as printed by approve).")],
    reason: ReasonOption,
    actor: ActorOption = None,
    key: KeyOption = None,
    sign: SignFlag = False,
    json_flag: JsonFlag = False,
) -> None:
    """Revoke an approval (signed with --key/--sign: by that key's registered name)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        signer = personal_key(key, sign, actor)
        revoked = state.run(
            lambda vault: vault.registry.revoke(approval_id, reason=reason, signer=signer)
        )
        if state.json:
            print_json(revoked)
        else:
            typer.echo(f"approval {revoked.approval_id} revoked")


def approvals(
    ctx: typer.Context,
    scope: Annotated[
        str | None, typer.Option("--scope", help="tool_version, promotion or run.")
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """List approvals (revoked and expired ones included), oldest first."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        if scope is not None and scope not in {s.value for s in ApprovalScope}:
            raise ValidationError(
                f"--scope must be tool_version, promotion or run, got {scope!r}",
                operation="cli.registry.approvals",
            )

        async def work(vault: Vault) -> tuple[list[Approval], dict[str, Actor]]:
            found = await vault.registry.approvals(scope)
            return found, {a.key_id: a for a in await vault.identity.actors()}

        items, actors = state.run(work)
        if state.json:
            print_json(items)
            return
        console = stdout_console()
        if not items:
            console.print(Text("No approvals."))
            return
        table = plain_table(
            "APPROVAL ID", "SCOPE", "TARGET", "BY", "SIGNED", "CREATED (UTC)", "STATUS", "REASON"
        )
        for a in items:
            t = a.target
            target = (
                f"{t.tool_id}@{t.version}"
                if t.scope == "tool_version"
                else f"{t.definition_id}@sha256:{t.digest[:12]}…→{t.channel.value}"
                if t.scope == "promotion"
                else t.run_id
            )
            status = "revoked" if a.revoked_at else "active" if a.is_active() else "expired"
            table.add_row(
                Text(a.approval_id),
                a.scope.value,
                Text(target),
                Text(a.actor),
                Text(
                    signed_label(
                        "approve", a.signed_content(), a.signature, actors, ActorRole.APPROVER
                    )
                ),
                iso(a.created_at),
                status,
                Text(a.reason),
            )
        print_table(console, table, flexible="REASON")
