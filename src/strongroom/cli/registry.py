"""`strongroom registry ...`: publish definitions (tool manifests, playbooks, project configs,
sandbox policies), inspect and diff their versions, move channels (promote, rollback) and
record approvals (docs/registry.md). This module owns the `registry` Typer app, publish and the
reading commands (list, show, diff, history); the channel and approval commands live in
`registry_review.py` and the options and parsers they share in `_registry_args.py`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, Field
from rich.text import Text

from strongroom._fs import read_regular_file
from strongroom.cli._context import CliState, JsonFlag, cli_state, reported_errors
from strongroom.cli._output import (
    iso,
    key_values,
    plain_table,
    print_json,
    print_lines,
    print_table,
    stdout_console,
)
from strongroom.cli._registry_args import (
    ActorOption,
    KeyOption,
    KindOption,
    SignFlag,
    infer_kind,
    parse_kind,
    parse_ref,
    personal_key,
)
from strongroom.cli.registry_review import approvals, approve, promote, revoke, rollback
from strongroom.errors import NotFound, ValidationError, map_os_errors
from strongroom.integrations import mass_relay
from strongroom.models import (
    ActorRole,
    Channel,
    DefinitionKind,
    DefinitionVersion,
    Ref,
    ToolManifest,
)
from strongroom.registry import MAX_DEFINITION_BYTES, canonical_form, load_definition
from strongroom.services.registry import PublishResult, signed_label
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


_UNBOUND = (
    "no entrypoint: published, not runnable until bound "
    "(strongroom registry bind TOOL@VERSION --entrypoint package.module:function)"
)


class DefinitionView(BaseModel):
    """What `registry show --json` prints."""

    version: DefinitionVersion
    channels: dict[Channel, str] = Field(description="Channel -> version label.")
    definition: dict[str, Any] = Field(description="The canonical form of the definition.")
    unbound_tools: list[str] = Field(
        default_factory=list,
        description="Tools without an entrypoint: not runnable until bound.",
    )


class DiffView(BaseModel):
    """What `registry diff --json` prints."""

    a: DefinitionVersion
    b: DefinitionVersion
    identical: bool
    diff: str = Field(description="Unified diff of the pretty-printed canonical JSON.")


# -- publish ---------------------------------------------------------------------------------


@app.command("publish")
def publish(
    ctx: typer.Context,
    files: Annotated[
        list[Path],
        typer.Argument(help="YAML or JSON definition files (regular files, at most 4 MiB each)."),
    ],
    actor: ActorOption = None,
    key: KeyOption = None,
    sign: SignFlag = False,
    json_flag: JsonFlag = False,
) -> None:
    """Validate and publish definition files; each new version lands on the draft channel.

    All files are validated first; then they are published policies first, then tool
    manifests, playbooks and project configs (so references between them resolve).
    Identical content already published is reported as unchanged.
    """
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        signer = personal_key(key, sign, actor)
        loaded: list[tuple[DefinitionKind, Path, bytes]] = []
        for path in files:
            with map_os_errors("registry.publish", backend="local", path=str(path)):
                # A regular file only (a FIFO is refused, never blocked on), read no further
                # than a definition may be long.
                data = read_regular_file(path, max_bytes=MAX_DEFINITION_BYTES)
            # A Mass Relay document (no `kind`, recognised by its shape) is converted first,
            # keeping the original verbatim (docs/registry.md, "Mass Relay documents").
            data = mass_relay.convert(data, file_name=path.name)
            loaded.append((load_definition(data, file_name=path.name).KIND, path, data))
        loaded.sort(key=lambda item: _PUBLISH_ORDER.index(item[0]))

        async def work(vault: Vault) -> list[PublishResult]:
            return [
                await vault.registry.publish(data, file_name=path.name, signer=signer)
                for _, path, data in loaded
            ]

        results = state.run(work)
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
            for tool_id in result.unbound_tools:
                typer.echo(f"  tool {tool_id}: {_UNBOUND}")
            for ref in result.unresolved:
                typer.echo(f"  {ref}: not in the registry yet (not runnable until it is)")


# -- reading ---------------------------------------------------------------------------------


@app.command("list")
def list_definitions(
    ctx: typer.Context, kind: KindOption = None, json_flag: JsonFlag = False
) -> None:
    """List definitions: latest version, number of versions and where each channel points."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        wanted = parse_kind(kind)
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
    original: Annotated[
        bool,
        typer.Option(
            "--original",
            help="Print the document it was imported from (a Mass Relay document), field "
            "for field, as JSON.",
        ),
    ] = False,
    persistence_record: Annotated[
        bool,
        typer.Option(
            "--persistence-record",
            help="Print where the version is stored, as a Mass Relay persistence record (JSON).",
        ),
    ] = False,
    json_flag: JsonFlag = False,
) -> None:
    """Show one version of a definition and its canonical content."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        ref, wanted = parse_ref(reference), parse_kind(kind)

        async def work(vault: Vault) -> DefinitionView:
            k = await infer_kind(vault, ref.id, wanted)
            version, defn = await vault.registry.get(k, ref.id, ref.selector)
            history = await vault.registry.history(k, ref.id)
            return DefinitionView(
                version=version,
                channels=history.channels,
                definition=canonical_form(defn),
                unbound_tools=defn.unbound_tools if isinstance(defn, ToolManifest) else [],
            )

        if original and persistence_record:
            raise ValidationError(
                "--original and --persistence-record print different documents: pick one",
                operation="cli.registry",
                reason="conflicting_options",
            )
        if original:
            _print_original(state, ref, wanted)
            return
        if persistence_record:

            async def record(vault: Vault) -> dict[str, Any]:
                k = await infer_kind(vault, ref.id, wanted)
                found = await mass_relay.version_record(vault, k, ref.id, ref.selector)
                return mass_relay.from_persistence_record(found)

            typer.echo(json.dumps(state.run(record), indent=2, ensure_ascii=False))
            return
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
                    *(("unbound", f"{t}: {_UNBOUND}") for t in view.unbound_tools),
                ]
            ),
        )
        console.print(
            Text(json.dumps(view.definition, indent=2, sort_keys=True, ensure_ascii=False)),
            soft_wrap=True,
        )


def _print_original(state: CliState, ref: Ref, wanted: DefinitionKind | None) -> None:
    async def work(vault: Vault) -> dict[str, Any]:
        k = await infer_kind(vault, ref.id, wanted)
        version, defn = await vault.registry.get(k, ref.id, ref.selector)
        found = mass_relay.original_document(defn)
        if found is None:
            raise NotFound(
                f"{k.value} {ref.id} {version.version} was not imported from another "
                "system: it has no original document (its canonical form is `registry show`)",
                operation="cli.registry",
                reason="no_original",
            )
        return found

    typer.echo(json.dumps(state.run(work), indent=2, ensure_ascii=False))


@app.command("bind")
def bind(
    ctx: typer.Context,
    tool: Annotated[
        str, typer.Argument(help="TOOL@VERSION (or TOOL, TOOL@CHANNEL, TOOL@sha256:HEX).")
    ],
    entrypoint: Annotated[
        str,
        typer.Option("--entrypoint", help="package.module:function implementing it."),
    ],
    policy: Annotated[
        str | None,
        typer.Option("--policy", help="The sandbox policy it runs under (ID@VERSION)."),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option(
            "--version", help="Label of the new manifest version (default: LABEL-bound.N)."
        ),
    ] = None,
    key: KeyOption = None,
    sign: SignFlag = False,
    json_flag: JsonFlag = False,
) -> None:
    """Bind a tool to the function that implements it: publishes a new version of its
    manifest with the tool's entrypoint (and sandbox policy) set, on the draft channel."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        signer = personal_key(key, sign)
        ref = parse_ref(tool)
        if policy is not None:
            parse_ref(policy)

        async def work(vault: Vault) -> PublishResult:
            return await vault.registry.bind_tool(
                ref, entrypoint=entrypoint, policy=policy, version=version, signer=signer
            )

        result = state.run(work)
        if state.json:
            print_json(result)
            return
        v = result.version
        verb = "published" if result.created else "unchanged"
        typer.echo(
            f"{verb} {v.kind.value} {v.definition_id} {v.version} sha256:{v.digest}: "
            f"{ref.id} bound to {entrypoint}"
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
        ref_a, ref_b, wanted = parse_ref(a), parse_ref(b), parse_kind(kind)

        async def work(vault: Vault) -> DiffView:
            kind_a = await infer_kind(vault, ref_a.id, wanted)
            kind_b = await infer_kind(vault, ref_b.id, wanted)
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
        wanted = parse_kind(kind)

        async def work(vault: Vault) -> Any:
            found = await vault.registry.history(
                await infer_kind(vault, definition_id, wanted), definition_id
            )
            return found, {a.key_id: a for a in await vault.identity.actors()}

        view, actors = state.run(work)
        if state.json:
            print_json(view)
            return
        console = stdout_console()
        labels = {v.digest: v.version for v in view.versions}
        versions = plain_table(
            "VERSION", "DIGEST", "PUBLISHED (UTC)", "PUBLISHER", "SIGNED", title="versions"
        )
        for v in view.versions:
            signed = signed_label(
                "publish", v.signed_content(), v.signature, actors, ActorRole.PUBLISHER
            )
            versions.add_row(
                Text(v.version),
                f"sha256:{v.digest[:16]}…",
                iso(v.published_at),
                Text(v.publisher),
                Text(signed),
            )
        print_table(console, versions)
        moves = plain_table(
            "AT (UTC)",
            "CHANNEL",
            "ACTION",
            "FROM",
            "TO",
            "ACTOR",
            "SIGNED",
            "REASON",
            title="channel moves",
        )
        for m in view.moves:
            moves.add_row(
                iso(m.at),
                m.channel.value,
                m.action.value,
                Text(labels.get(m.from_digest, "-") if m.from_digest else "-"),
                Text(labels.get(m.to_digest, m.to_digest[:12])),
                Text(m.actor),
                Text(
                    signed_label(
                        "move", m.signed_content(), m.signature, actors, ActorRole.OPERATOR
                    )
                ),
                Text(m.reason),
            )
        print_table(console, moves, flexible="REASON")


# -- channels and approvals (registry_review.py), in the order `registry --help` lists them --

app.command("promote")(promote)
app.command("rollback")(rollback)
app.command("approve")(approve)
app.command("revoke")(revoke)
app.command("approvals")(approvals)
