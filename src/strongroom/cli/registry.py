"""`strongroom registry ...`: publish definitions (tool manifests, playbooks, project configs,
sandbox policies), inspect and diff their versions, move channels (promote, rollback) and
record approvals (docs/registry.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, Field
from rich.text import Text

from strongroom.cli._context import JsonFlag, cli_state, parse_timestamp, reported_errors
from strongroom.cli._output import (
    iso,
    key_values,
    plain_table,
    print_json,
    print_lines,
    print_table,
    stdout_console,
)
from strongroom.errors import NotFound, ValidationError, map_os_errors
from strongroom.models import (
    Approval,
    ApprovalScope,
    Channel,
    ChannelMove,
    DefinitionKind,
    DefinitionVersion,
    Ref,
)
from strongroom.registry import canonical_form, load_definition
from strongroom.services.registry import MoveResult, PublishResult
from strongroom.vault import Vault

__all__ = ["DefinitionView", "DiffView", "app"]

app = typer.Typer(
    help="Publish, inspect, promote and approve versioned definitions.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

# Publishing several files: the ones others refer to first.
_PUBLISH_ORDER = (
    DefinitionKind.SANDBOX_POLICY,
    DefinitionKind.TOOL_MANIFEST,
    DefinitionKind.PLAYBOOK,
    DefinitionKind.PROJECT_CONFIG,
)

ActorOption = Annotated[
    str,
    typer.Option(
        "--actor", envvar="STRONGROOM_ACTOR", help="Who does this (recorded in the audit trail)."
    ),
]
KindOption = Annotated[
    str | None,
    typer.Option(
        "--kind",
        "-k",
        help="tool_manifest, playbook, project_config or sandbox_policy (needed only when "
        "the id exists in several kinds).",
    ),
]
ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="Why (recorded).")]


class DefinitionView(BaseModel):
    """What `registry show --json` prints."""

    version: DefinitionVersion
    channels: dict[Channel, str] = Field(description="Channel -> version label.")
    definition: dict[str, Any] = Field(description="The canonical form of the definition.")


class DiffView(BaseModel):
    """What `registry diff --json` prints."""

    a: DefinitionVersion
    b: DefinitionVersion
    identical: bool
    diff: str = Field(description="Unified diff of the pretty-printed canonical JSON.")


def _kind(value: str | None) -> DefinitionKind | None:
    if value is None:
        return None
    try:
        return DefinitionKind(value)
    except ValueError:
        raise ValidationError(
            f"--kind must be one of {', '.join(k.value for k in DefinitionKind)}, got {value!r}",
            operation="cli.registry",
            reason="bad_kind",
        ) from None


def _ref(text: str) -> Ref:
    try:
        return Ref.parse(text)
    except ValueError as exc:
        raise ValidationError(str(exc), operation="cli.registry", reason="bad_reference") from None


async def _infer_kind(vault: Vault, ident: str, kind: DefinitionKind | None) -> DefinitionKind:
    if kind is not None:
        return kind
    kinds = await vault.registry.kinds_of(ident)
    if not kinds:
        raise NotFound(
            f"no definition {ident} in the registry", operation="cli.registry", definition_id=ident
        )
    if len(kinds) > 1:
        raise ValidationError(
            f"{ident} names a {' and a '.join(k.value for k in kinds)}: say which with --kind",
            operation="cli.registry",
            reason="ambiguous_id",
            kinds=[k.value for k in kinds],
        )
    return kinds[0]


# -- publish ---------------------------------------------------------------------------------


@app.command("publish")
def publish(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="YAML or JSON definition files.")],
    actor: ActorOption = "local",
    json_flag: JsonFlag = False,
) -> None:
    """Validate and publish definition files; each new version lands on the draft channel.

    All files are validated first; then they are published policies first, then tool
    manifests, playbooks and project configs (so references between them resolve).
    Identical content already published is reported as unchanged.
    """
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        loaded: list[tuple[DefinitionKind, Path, bytes]] = []
        for path in files:
            with map_os_errors("registry.publish", backend="local", path=str(path)):
                data = path.read_bytes()
            loaded.append((load_definition(data, file_name=path.name).KIND, path, data))
        loaded.sort(key=lambda item: _PUBLISH_ORDER.index(item[0]))

        async def work(vault: Vault) -> list[PublishResult]:
            return [
                await vault.registry.publish(data, file_name=path.name, actor=actor)
                for _, path, data in loaded
            ]

        results = state.run(work, create=True)
        if state.json:
            print_json(results)
            return
        for result in results:
            v = result.version
            verb = "published" if result.created else "unchanged"
            tail = " (draft)" if result.created else " (already published)"
            typer.echo(
                f"{verb} {v.kind.value} {v.definition_id} {v.version} sha256:{v.digest}{tail}"
            )


# -- reading ---------------------------------------------------------------------------------


@app.command("list")
def list_definitions(
    ctx: typer.Context, kind: KindOption = None, json_flag: JsonFlag = False
) -> None:
    """List definitions: latest version, number of versions and where each channel points."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        wanted = _kind(kind)
        items = state.run(lambda vault: vault.registry.list(wanted))
        if state.json:
            print_json(items)
            return
        console = stdout_console()
        if not items:
            console.print(Text("No definitions."))
            return
        table = plain_table(
            "KIND", "ID", "LATEST", "VERSIONS", "DRAFT", "STAGING", "PRODUCTION", "PUBLISHED (UTC)"
        )
        for item in items:
            table.add_row(
                item.kind.value,
                Text(item.definition_id),
                Text(item.latest.version),
                str(item.version_count),
                *(Text(item.channels.get(c, "-")) for c in Channel),
                iso(item.latest.published_at),
            )
        print_table(console, table, flexible="ID")


@app.command("show")
def show(
    ctx: typer.Context,
    reference: Annotated[
        str,
        typer.Argument(
            help="ID, ID@VERSION, ID@CHANNEL or ID@sha256:HEX (default: production, else latest)."
        ),
    ],
    kind: KindOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Show one version of a definition and its canonical content."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        ref, wanted = _ref(reference), _kind(kind)

        async def work(vault: Vault) -> DefinitionView:
            k = await _infer_kind(vault, ref.id, wanted)
            version, defn = await vault.registry.get(k, ref.id, ref.selector)
            history = await vault.registry.history(k, ref.id)
            return DefinitionView(
                version=version, channels=history.channels, definition=canonical_form(defn)
            )

        view = state.run(work)
        if state.json:
            print_json(view)
            return
        v = view.version
        on = [c.value for c, label in view.channels.items() if label == v.version]
        console = stdout_console()
        print_lines(
            console,
            key_values(
                [
                    ("kind", v.kind.value),
                    ("id", v.definition_id),
                    ("version", v.version),
                    ("digest", f"sha256:{v.digest}"),
                    ("size", f"{v.size_bytes} B"),
                    ("published", f"{iso(v.published_at)} by {v.publisher}"),
                    ("source_file", v.source_file or "-"),
                    ("channels", ", ".join(on) or "-"),
                ]
            ),
        )
        console.print(
            Text(json.dumps(view.definition, indent=2, sort_keys=True, ensure_ascii=False)),
            soft_wrap=True,
        )


@app.command("diff")
def diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="ID@VERSION (or @CHANNEL, @sha256:HEX).")],
    b: Annotated[str, typer.Argument(help="ID@VERSION (or @CHANNEL, @sha256:HEX).")],
    kind: KindOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Unified diff of two versions' canonical JSON (empty output: identical)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        ref_a, ref_b, wanted = _ref(a), _ref(b), _kind(kind)

        async def work(vault: Vault) -> DiffView:
            kind_a = await _infer_kind(vault, ref_a.id, wanted)
            kind_b = await _infer_kind(vault, ref_b.id, wanted)
            side_a = (kind_a, ref_a.id, ref_a.selector)
            side_b = (kind_b, ref_b.id, ref_b.selector)
            text = await vault.registry.diff(side_a, side_b)
            return DiffView(
                a=await vault.registry.version(*side_a),
                b=await vault.registry.version(*side_b),
                identical=not text,
                diff=text,
            )

        view = state.run(work)
        if state.json:
            print_json(view)
        elif view.diff:
            typer.echo(view.diff, nl=False)


@app.command("history")
def history(
    ctx: typer.Context,
    definition_id: Annotated[str, typer.Argument(help="Definition id.")],
    kind: KindOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Every version and every channel move of a definition, oldest first."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        wanted = _kind(kind)

        async def work(vault: Vault) -> Any:
            return await vault.registry.history(
                await _infer_kind(vault, definition_id, wanted), definition_id
            )

        view = state.run(work)
        if state.json:
            print_json(view)
            return
        console = stdout_console()
        labels = {v.digest: v.version for v in view.versions}
        versions = plain_table(
            "VERSION", "DIGEST", "PUBLISHED (UTC)", "PUBLISHER", title="versions"
        )
        for v in view.versions:
            versions.add_row(
                Text(v.version), f"sha256:{v.digest[:16]}…", iso(v.published_at), Text(v.publisher)
            )
        print_table(console, versions)
        moves = plain_table(
            "AT (UTC)", "CHANNEL", "ACTION", "FROM", "TO", "ACTOR", "REASON", title="channel moves"
        )
        for m in view.moves:
            moves.add_row(
                iso(m.at),
                m.channel.value,
                m.action.value,
                Text(labels.get(m.from_digest, "-") if m.from_digest else "-"),
                Text(labels.get(m.to_digest, m.to_digest[:12])),
                Text(m.actor),
                Text(m.reason),
            )
        print_table(console, moves, flexible="REASON")


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


@app.command("promote")
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
    actor: ActorOption = "local",
    json_flag: JsonFlag = False,
) -> None:
    """Point a channel at a version (compare-and-set). Production of anything governing
    execution at A2 or above needs an approval by someone other than the publisher."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        channel, wanted = _channel(to, "--to"), _kind(kind)

        async def work(vault: Vault) -> MoveResult:
            k = await _infer_kind(vault, definition_id, wanted)
            return await vault.registry.promote(
                k,
                definition_id,
                version,
                to=channel,
                actor=actor,
                reason=reason,
                approval_id=approval,
            )

        _print_move(state.run(work), state.json)


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    definition_id: Annotated[str, typer.Argument(help="Definition id.")],
    channel: Annotated[str, typer.Option("--channel", "-c", help="draft, staging or production.")],
    reason: ReasonOption,
    kind: KindOption = None,
    actor: ActorOption = "local",
    json_flag: JsonFlag = False,
) -> None:
    """Move a channel back to the version it held before its last promotion."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        chan, wanted = _channel(channel, "--channel"), _kind(kind)

        async def work(vault: Vault) -> MoveResult:
            k = await _infer_kind(vault, definition_id, wanted)
            return await vault.registry.rollback(
                k, definition_id, channel=chan, actor=actor, reason=reason
            )

        _print_move(state.run(work), state.json)


def _channel(value: str, option: str) -> Channel:
    try:
        return Channel(value)
    except ValueError:
        raise ValidationError(
            f"{option} must be draft, staging or production, got {value!r}",
            operation="cli.registry",
            reason="bad_channel",
        ) from None


# -- approvals -------------------------------------------------------------------------------


@app.command("approve")
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
    actor: ActorOption = "local",
    json_flag: JsonFlag = False,
) -> None:
    """Record an approval of a tool version, a promotion or a run (never your own
    publication: self-approval is refused)."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        if sum(x is not None for x in (tool, promotion, run)) != 1:
            raise ValidationError(
                "give exactly one of --tool ID@VERSION, --promotion ID@VERSION or --run RUN_ID",
                operation="cli.registry.approve",
                reason="one_target",
            )
        expires_at = parse_timestamp(expires, option="--expires") if expires else None
        wanted = _kind(kind)
        chan = _channel(channel, "--channel")

        async def work(vault: Vault) -> Approval:
            target: dict[str, Any]
            if tool is not None:
                ref = _ref(tool)
                if ref.version is None:
                    raise ValidationError(
                        "--tool takes TOOL_ID@VERSION", operation="cli.registry.approve"
                    )
                target = {"scope": "tool_version", "tool_id": ref.id, "version": ref.version}
            elif promotion is not None:
                ref = _ref(promotion)
                k = await _infer_kind(vault, ref.id, wanted)
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
                target, actor=actor, reason=reason, expires_at=expires_at
            )

        approval = state.run(work)
        if state.json:
            print_json(approval)
        else:
            typer.echo(approval.approval_id)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    approval_id: Annotated[str, typer.Argument(help="Approval id (as printed by approve).")],
    reason: ReasonOption,
    actor: ActorOption = "local",
    json_flag: JsonFlag = False,
) -> None:
    """Revoke an approval."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        revoked = state.run(
            lambda vault: vault.registry.revoke(approval_id, actor=actor, reason=reason)
        )
        if state.json:
            print_json(revoked)
        else:
            typer.echo(f"approval {revoked.approval_id} revoked")


@app.command("approvals")
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
        items = state.run(lambda vault: vault.registry.approvals(scope))
        if state.json:
            print_json(items)
            return
        console = stdout_console()
        if not items:
            console.print(Text("No approvals."))
            return
        table = plain_table(
            "APPROVAL ID", "SCOPE", "TARGET", "BY", "CREATED (UTC)", "STATUS", "REASON"
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
                iso(a.created_at),
                status,
                Text(a.reason),
            )
        print_table(console, table, flexible="REASON")
