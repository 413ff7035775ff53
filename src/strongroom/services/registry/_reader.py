"""Reading the registry: versions, parsed definitions, listings, history, diffs, tool
resolution and governance levels (the base of `RegistryService`)."""

from __future__ import annotations

import builtins
import difflib
import hashlib
import json
from collections import OrderedDict

from strongroom.errors import (
    IntegrityError,
    NotFound,
    StrongroomError,
    UnknownReference,
)
from strongroom.models import (
    Channel,
    ChannelMove,
    Definition,
    DefinitionKind,
    DefinitionVersion,
    GovernanceLevel,
    Playbook,
    PromotionTarget,
    Ref,
    RunTarget,
    SandboxPolicy,
    ToolDefinition,
    ToolManifest,
    ToolVersionTarget,
)
from strongroom.ports import BlobStore, MetadataStore, RegistryRecords
from strongroom.registry import (
    canonical_form,
    load_definition,
)
from strongroom.services._arguments import checked_arguments, enum_value, parse_ref
from strongroom.services.audit import AuditService
from strongroom.services.catalog import CatalogService
from strongroom.services.identity import IdentityService
from strongroom.services.registry._results import (
    DefinitionSummary,
    RegistryHistory,
    RegistryPolicy,
)

__all__ = ["ApprovalTarget", "RegistryReader", "ToolIndex"]

ApprovalTarget = ToolVersionTarget | PromotionTarget | RunTarget

_CACHE_SIZE = 512
ToolIndex = dict[str, list[tuple[DefinitionVersion, ToolDefinition]]]


@checked_arguments
class RegistryReader:
    """The read side of `RegistryService` (and the state both halves share)."""

    def __init__(
        self,
        metadata: MetadataStore,
        blobs: BlobStore,
        audit: AuditService,
        catalog: CatalogService,
        *,
        policy: RegistryPolicy | None = None,
    ) -> None:
        self._metadata = metadata
        self._blobs = blobs
        self._audit = audit
        self._catalog = catalog
        self.policy = policy or RegistryPolicy()
        self._parsed: OrderedDict[str, Definition] = OrderedDict()

    @property
    def records(self) -> RegistryRecords:
        if not isinstance(self._metadata, RegistryRecords):
            raise StrongroomError(
                f"the {self._metadata.backend} metadata store has no registry records",
                operation="registry",
                backend=self._metadata.backend,
            )
        return self._metadata

    @property
    def identity(self) -> IdentityService:
        """The registered actors and their keys (who signs governed acts)."""
        return IdentityService(self.records)

    # -- reading ----------------------------------------------------------------------------

    async def _find(
        self,
        kind: DefinitionKind,
        ident: str,
        *,
        version: str | None = None,
        digest: str | None = None,
    ) -> DefinitionVersion | None:
        try:
            return await self.records.get_definition_version(
                kind, ident, version=version, digest=digest
            )
        except NotFound:
            return None

    def _remember(self, digest: str, defn: Definition) -> None:
        self._parsed[digest] = defn
        self._parsed.move_to_end(digest)
        while len(self._parsed) > _CACHE_SIZE:
            self._parsed.popitem(last=False)

    async def load(self, version: DefinitionVersion) -> Definition:
        """The parsed definition of a version, read from its blob with its digest checked."""
        cached = self._parsed.get(version.digest)
        if cached is not None:
            return cached
        body = await self._blobs.get_bytes(version.digest)
        if hashlib.sha256(body).hexdigest() != version.digest:
            raise IntegrityError(
                f"the blob of {version.kind.value} {version.definition_id} "
                f"{version.version} does not match its digest",
                operation="registry.load",
                digest=version.digest,
            )
        defn = load_definition(body, file_name=f"{version.definition_id}.json")
        self._remember(version.digest, defn)
        return defn

    async def version(
        self, kind: DefinitionKind | str, definition_id: str, selector: str | None = None
    ) -> DefinitionVersion:
        """The version a selector names: a version label, a channel name, ``sha256:<hex>``,
        or None (the ``production`` channel if set, else the latest version). `NotFound`."""
        kind = enum_value(DefinitionKind, kind, name="kind", operation="registry.get")
        records = self.records
        if selector is None:
            channels = await records.get_channels(kind, definition_id)
            if Channel.PRODUCTION in channels:
                digest = channels[Channel.PRODUCTION].to_digest
                return await records.get_definition_version(kind, definition_id, digest=digest)
            versions = await records.list_definition_versions(kind, definition_id)
            if not versions:
                raise NotFound(
                    f"no {kind.value} {definition_id} in the registry",
                    operation="registry.get",
                    kind=kind.value,
                    definition_id=definition_id,
                )
            return versions[-1]
        if selector in {c.value for c in Channel}:
            channels = await records.get_channels(kind, definition_id)
            move = channels.get(Channel(selector))
            if move is None:
                raise NotFound(
                    f"channel {selector} of {kind.value} {definition_id} is not set",
                    operation="registry.get",
                    kind=kind.value,
                    definition_id=definition_id,
                    channel=selector,
                )
            return await records.get_definition_version(kind, definition_id, digest=move.to_digest)
        if selector.startswith("sha256:"):
            return await records.get_definition_version(
                kind, definition_id, digest=selector.removeprefix("sha256:")
            )
        return await records.get_definition_version(kind, definition_id, version=selector)

    async def get(
        self, kind: DefinitionKind | str, definition_id: str, selector: str | None = None
    ) -> tuple[DefinitionVersion, Definition]:
        """The version (see `version` for ``selector``) and its parsed definition."""
        version = await self.version(kind, definition_id, selector)
        return version, await self.load(version)

    async def kinds_of(self, definition_id: str) -> builtins.list[DefinitionKind]:
        """The kinds that have a definition with this id (to infer a kind from an id)."""
        return [
            v.kind
            for v in await self.records.list_definitions()
            if v.definition_id == definition_id
        ]

    async def list(
        self, kind: DefinitionKind | str | None = None
    ) -> builtins.list[DefinitionSummary]:
        """Every definition (of one kind): latest version, version count, channels."""
        records = self.records
        out: builtins.list[DefinitionSummary] = []
        for latest in await records.list_definitions(
            enum_value(DefinitionKind, kind, name="kind", operation="registry.list")
            if kind is not None
            else None
        ):
            versions = await records.list_definition_versions(latest.kind, latest.definition_id)
            channels = await records.get_channels(latest.kind, latest.definition_id)
            out.append(
                DefinitionSummary(
                    kind=latest.kind,
                    definition_id=latest.definition_id,
                    latest=latest,
                    version_count=len(versions),
                    channels=_channel_labels(channels, versions),
                )
            )
        return out

    async def history(self, kind: DefinitionKind | str, definition_id: str) -> RegistryHistory:
        """Every version and every channel move of one definition, oldest first."""
        kind = enum_value(DefinitionKind, kind, name="kind", operation="registry.get")
        records = self.records
        versions = await records.list_definition_versions(kind, definition_id)
        if not versions:
            raise NotFound(
                f"no {kind.value} {definition_id} in the registry",
                operation="registry.history",
                kind=kind.value,
                definition_id=definition_id,
            )
        moves = await records.list_channel_moves(kind, definition_id)
        channels = await records.get_channels(kind, definition_id)
        return RegistryHistory(
            kind=kind,
            definition_id=definition_id,
            versions=versions,
            moves=moves,
            channels=_channel_labels(channels, versions),
        )

    async def diff(
        self,
        a: tuple[DefinitionKind | str, str, str | None],
        b: tuple[DefinitionKind | str, str, str | None],
    ) -> str:
        """Unified diff of two versions' canonical JSON, pretty-printed (sorted keys, indent
        2); each side is ``(kind, id, selector)``. Empty when they are identical."""
        version_a, defn_a = await self.get(*a)
        version_b, defn_b = await self.get(*b)
        return "".join(
            difflib.unified_diff(
                _pretty(defn_a),
                _pretty(defn_b),
                fromfile=_label(version_a),
                tofile=_label(version_b),
            )
        )

    # -- resolution ---------------------------------------------------------------------------

    async def _tool_index(self) -> ToolIndex:
        """tool_id -> every (manifest version, tool) defining it, oldest manifest first."""
        index: ToolIndex = {}
        records = self.records
        for latest in await records.list_definitions(DefinitionKind.TOOL_MANIFEST):
            for version in await records.list_definition_versions(
                DefinitionKind.TOOL_MANIFEST, latest.definition_id
            ):
                manifest = await self.load(version)
                assert isinstance(manifest, ToolManifest)
                for tool in manifest.tools:
                    index.setdefault(tool.tool_id, []).append((version, tool))
        return index

    async def _tool_matches(
        self, ref: Ref, *, strict_channel: bool = True, index: ToolIndex | None = None
    ) -> builtins.list[tuple[DefinitionVersion, ToolDefinition]]:
        found = (index if index is not None else await self._tool_index()).get(ref.id, [])
        if ref.version is not None:
            return [(v, t) for v, t in found if t.version == ref.version]
        if ref.digest is not None:
            return [(v, t) for v, t in found if v.digest == ref.digest]
        if ref.channel is not None and strict_channel and found:
            manifest_id = found[0][0].definition_id
            channels = await self.records.get_channels(DefinitionKind.TOOL_MANIFEST, manifest_id)
            move = channels.get(ref.channel)
            return [(v, t) for v, t in found if move is not None and v.digest == move.to_digest]
        return found

    async def resolve_tool(self, ref: Ref | str) -> tuple[DefinitionVersion, ToolDefinition]:
        """The manifest version and tool definition a tool reference means now:
        ``@VERSION`` the newest manifest version defining the tool at that version,
        ``@sha256:`` that manifest version, ``@CHANNEL`` what the owning manifest's channel
        points at, bare: like ``@production`` if set, else the newest definition.
        `UnknownReference` if nothing matches."""
        ref = ref if isinstance(ref, Ref) else parse_ref(ref, operation="registry.resolve_tool")
        if ref.selector is None:
            matches = await self._tool_matches(Ref(ref.id, channel=Channel.PRODUCTION))
            matches = matches or await self._tool_matches(ref)
        else:
            matches = await self._tool_matches(ref)
        if not matches:
            raise UnknownReference(
                f"no tool {ref} in the registry",
                operation="registry.resolve",
                references=[str(ref)],
            )
        return matches[-1]

    # -- governance ---------------------------------------------------------------------------

    async def governance_level(self, version: DefinitionVersion) -> GovernanceLevel | None:
        """The highest level at which a version governs execution (None: it does not):
        a manifest's highest tool level, the highest level of the tools a playbook may run
        (a channel or bare reference counts every published version of the tool), and
        `RegistryPolicy.production_approval_level` (or A2) for a sandbox policy."""
        return await self.definition_level(await self.load(version))

    async def definition_level(self, defn: Definition) -> GovernanceLevel | None:
        """`governance_level` of a definition (published or about to be)."""
        if isinstance(defn, ToolManifest):
            return defn.max_governance_level
        if isinstance(defn, SandboxPolicy):
            return self.policy.production_approval_level or GovernanceLevel.A2
        if isinstance(defn, Playbook):
            index = await self._tool_index()
            levels = [
                tool.governance.level
                for step in defn.steps
                for _, tool in await self._tool_matches(
                    step.tool, strict_channel=False, index=index
                )
            ]
            return max(levels, key=lambda lv: lv.rank) if levels else None
        return None

    async def _needs_approval(self, version: DefinitionVersion, channel: Channel) -> bool:
        threshold = self.policy.production_approval_level
        if channel is not Channel.PRODUCTION or threshold is None:
            return False
        level = await self.governance_level(version)
        return level is not None and level.rank >= threshold.rank


def _channel_labels(
    channels: dict[Channel, ChannelMove], versions: list[DefinitionVersion]
) -> dict[Channel, str]:
    labels = {v.digest: v.version for v in versions}
    return {
        channel: labels.get(move.to_digest, f"sha256:{move.to_digest}")
        for channel, move in sorted(channels.items(), key=lambda kv: list(Channel).index(kv[0]))
    }


def _pretty(defn: Definition) -> list[str]:
    text = json.dumps(canonical_form(defn), indent=2, sort_keys=True, ensure_ascii=False)
    return [line + "\n" for line in text.splitlines()]


def _label(version: DefinitionVersion) -> str:
    return f"{version.kind.value}/{version.definition_id}@{version.version}"
