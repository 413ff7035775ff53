"""`RegistryService`: publish, resolve, promote, roll back, approve and revoke definitions.

Storage: a version's content is its canonical bytes in the blob store (addressed by their
sha256, the version's digest); the records about it (versions, channel pointers and their
history, approvals) go through the `RegistryRecords` port; a copy of each version is also a
catalog object at ``<folder>/<id>/<version>.json`` (`strongroom.registry.object_path`) in
the namespace named like the folder (``tools``, ``playbooks``, ``projects``, ``policies``;
created on first use). Every change is audited (``registry.published``, ``.promoted``,
``.rolled_back``, ``.approved``, ``.revoked``); the audit entry of each channel move carries
the move's canonical digest, which is how `verify` detects a tampered history row.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import PurePath

from strongroom.errors import (
    Conflict,
    LabelConflict,
    NotFound,
    SignatureRequired,
    ValidationError,
)
from strongroom.ids import check_file_name
from strongroom.integrity import SigningKey
from strongroom.models import (
    ActorRole,
    AuditEvent,
    Channel,
    ChannelAction,
    Definition,
    DefinitionKind,
    DefinitionVersion,
    GovernanceLevel,
    Namespace,
    Ref,
    RefKind,
    ToolManifest,
)
from strongroom.registry import (
    OBJECT_FOLDERS,
    canonical_bytes,
    canonical_form,
    check_references,
    definition_from_data,
    load_definition,
    object_path,
)
from strongroom.services._arguments import checked_arguments
from strongroom.services._reclaim import write_despite_gc
from strongroom.services.identity import Who, sign_act
from strongroom.services.registry._channels import CURRENT, RegistryChannels, move_digest
from strongroom.services.registry._reader import ApprovalTarget, ToolIndex
from strongroom.services.registry._results import PublishResult

__all__ = ["ApprovalTarget", "RegistryService", "move_digest"]


_REF_KINDS: dict[RefKind, DefinitionKind] = {
    RefKind.PLAYBOOK: DefinitionKind.PLAYBOOK,
    RefKind.SANDBOX_POLICY: DefinitionKind.SANDBOX_POLICY,
}
_FOLDER_PURPOSE: dict[DefinitionKind, str] = {
    DefinitionKind.TOOL_MANIFEST: "Tool manifests",
    DefinitionKind.PLAYBOOK: "Playbook definitions",
    DefinitionKind.PROJECT_CONFIG: "Project configs",
    DefinitionKind.SANDBOX_POLICY: "Sandbox policies",
}


@checked_arguments
class RegistryService(RegistryChannels):
    """The registry of versioned definitions (see the module docstring and docs/registry.md).

    Reference resolution (publish-time checks and `resolve`):

    - ``tool_id@VERSION``: some published version of the manifest that owns ``tool_id``
      defines the tool at that version;
    - ``tool_id@sha256:HEX``: the manifest version with that digest defines the tool;
    - ``tool_id@CHANNEL`` and bare ``tool_id``: some published manifest defines the tool.
      At publish time a channel reference only needs the tool to exist (channels move; they
      are resolved when used: `resolve` follows the owning manifest's channel, and a bare id
      resolves like ``@production``, else the latest version);
    - references to playbooks and sandbox policies work the same on their own versions and
      channels (``id@VERSION`` is that label, ``id@sha256:`` that digest).

    One manifest owns each ``tool_id``: publishing a manifest that defines a tool another
    manifest already defines is a `Conflict` (reason ``tool_owned_elsewhere``).
    """

    # -- publish ----------------------------------------------------------------------------

    async def publish(
        self,
        data: bytes,
        *,
        file_name: str,
        actor: str | None = None,
        signer: SigningKey | None = None,
    ) -> PublishResult:
        """Validate, canonicalise and store one definition file (YAML or JSON).

        Identical content already published: returns that version with ``created=False``
        and writes nothing. Otherwise stores the blob, the version record, a catalog object
        and an audit event ``registry.published``; the new version is put on the ``draft``
        channel (a ``promote`` move, reason ``published``). Every refusal happens before
        anything is written (`SerializationError`, `ValidationError` with
        ``details.errors``, `InvalidContract`, `DependencyCycle`, `UnknownReference`,
        `LabelConflict`, `Conflict` for a tool owned by another manifest).

        ``signer``: the publisher's personal key (registered with the ``publisher`` role,
        `UnknownSigner` otherwise): the version then carries the publisher's signature and
        ``actor`` is the key's registered name, whatever was passed.
        """
        who = await self.identity.who(
            signer, ActorRole.PUBLISHER, actor=actor, operation="registry.publish"
        )
        defn = load_definition(data, file_name=file_name)
        body = canonical_bytes(defn)
        digest = hashlib.sha256(body).hexdigest()
        path = object_path(defn.KIND, defn.definition_id, defn.version)
        unbound = defn.unbound_tools if isinstance(defn, ToolManifest) else []
        existing = await self._published_as(defn, digest, file_name)
        if existing is not None:
            return PublishResult(
                version=existing, created=False, object_path=path, unbound_tools=unbound
            )
        unresolved = await self._check_publishable(defn, file_name, signer)
        version, created = await self._store_version(defn, body, digest, file_name, who, signer)
        if created:
            await self._file_version(defn, version, body, path, who, unresolved=unresolved)
        return PublishResult(
            version=version,
            created=created,
            object_path=path,
            unresolved=unresolved,
            unbound_tools=unbound,
        )

    async def bind_tool(
        self,
        tool: Ref | str,
        *,
        entrypoint: str,
        policy: Ref | str | None = None,
        version: str | None = None,
        actor: str | None = None,
        signer: SigningKey | None = None,
    ) -> PublishResult:
        """Bind a tool to the function that implements it: publish a new version of the
        manifest that defines ``tool`` (a tool reference, as `resolve_tool` reads it) with
        the tool's ``entrypoint`` set (and, with ``policy``, its ``policy_refs`` set to that
        one sandbox policy); everything else, ``extensions`` included, is unchanged.

        ``version``: the new manifest version's label (default: the manifest's label
        followed by ``-bound.N``, the first N free). Published like any version (on
        ``draft``, audited, signed with ``signer``); `ValidationError` for a malformed
        entrypoint or policy reference, `UnknownReference` for an unknown tool or policy.
        """
        manifest_version, current = await self.resolve_tool(tool)
        defn = await self.load(manifest_version)
        assert isinstance(defn, ToolManifest)
        updates: dict[str, object] = {"entrypoint": entrypoint}
        if policy is not None:
            try:
                policy_ref = policy if isinstance(policy, Ref) else Ref.parse(policy)
            except ValueError as exc:
                raise ValidationError(
                    str(exc), operation="registry.bind", reason="bad_reference"
                ) from None
            # NotFound now, rather than a tool that cannot start later.
            await self.version(DefinitionKind.SANDBOX_POLICY, policy_ref.id, policy_ref.selector)
            updates["policy_refs"] = [str(policy_ref)]
        tools = [
            {**t.model_dump(mode="json"), **updates} if t.tool_id == current.tool_id else t
            for t in defn.tools
        ]
        label = version or await self._bound_label(defn)
        data = {**canonical_form(defn), "tools": tools, "version": label}
        bound = definition_from_data(data, file_name=f"{defn.manifest_id}.json")
        return await self.publish(
            canonical_bytes(bound),
            file_name=f"{defn.manifest_id}.json",
            actor=actor,
            signer=signer,
        )

    async def _bound_label(self, defn: ToolManifest) -> str:
        base = defn.version.split("-bound.")[0]
        taken = {
            v.version
            for v in await self.records.list_definition_versions(
                DefinitionKind.TOOL_MANIFEST, defn.manifest_id
            )
        }
        n = 1
        while f"{base}-bound.{n}" in taken:
            n += 1
        return f"{base}-bound.{n}"

    async def _published_as(
        self, defn: Definition, digest: str, file_name: str
    ) -> DefinitionVersion | None:
        """The version already holding exactly this content (None: there is none yet);
        `LabelConflict` when the definition's version label holds other content."""
        kind, ident, label = defn.KIND, defn.definition_id, defn.version
        existing = await self._find(kind, ident, digest=digest)
        if existing is not None:
            return existing
        taken = await self._find(kind, ident, version=label)
        if taken is not None:
            raise LabelConflict(
                f"{kind.value} {ident} already has a version {label} with other content",
                operation="publish",
                kind=kind.value,
                definition_id=ident,
                version=label,
                existing_digest=taken.digest,
                file=file_name,
            )
        return None

    async def _check_publishable(
        self, defn: Definition, file_name: str, signer: SigningKey | None
    ) -> list[str]:
        """Whether ``defn`` may be published: its references resolve, a manifest's tools are
        its own, and it is signed when the policy wants its governance level signed. An
        imported definition (``extensions`` keep another system's original) may name what
        is not in the registry yet: those references are returned (it is not runnable
        until they resolve)."""
        index: ToolIndex | None = None
        unresolved: list[str] = []

        async def resolve(what: RefKind, ref: Ref) -> bool:
            nonlocal index
            if what is not RefKind.TOOL:
                found = await self._resolves(what, ref)
            else:
                if index is None:
                    index = await self._tool_index()
                found = bool(await self._tool_matches(ref, strict_channel=False, index=index))
            if not found and defn.imported:
                unresolved.append(f"{what.value}:{ref}")
                return True
            return found

        await check_references(defn, resolve, file_name=file_name)
        if isinstance(defn, ToolManifest):
            await self._check_tool_ownership(defn, file_name)
        if signer is None and self.policy.require_signed_publications:
            kind, ident = defn.KIND, defn.definition_id
            level = await self.definition_level(defn)
            if level is not None and level.rank >= GovernanceLevel.A2.rank:
                raise SignatureRequired(
                    f"{kind.value} {ident} governs execution at {level.value}: this vault's "
                    "policy wants it published signed with a registered personal key, so "
                    "that its approver can be told from its publisher by key: create one "
                    "(`strongroom keys init`), have an admin register it (`strongroom actors "
                    "add NAME --public-key FILE --role publisher --key ADMIN_KEY`, FILE being "
                    "the .pub file keys init wrote), and publish with `--key PATH`",
                    operation="registry.publish",
                    kind=kind.value,
                    definition_id=ident,
                    level=level.value,
                    file=file_name,
                )
        return unresolved

    async def _store_version(
        self,
        defn: Definition,
        body: bytes,
        digest: str,
        file_name: str,
        who: Who,
        signer: SigningKey | None,
    ) -> tuple[DefinitionVersion, bool]:
        """The stored version (its blob and record, signed by ``signer`` when given), and
        whether this call created it: False when a racing publish of the same content won."""
        kind, ident, label = defn.KIND, defn.definition_id, defn.version
        await self._blobs.put_bytes(body, expected_sha256=digest)
        version = DefinitionVersion(
            kind=kind,
            definition_id=ident,
            version=label,
            digest=digest,
            size_bytes=len(body),
            publisher=who.name,
            source_file=_safe_file_name(file_name),
        )
        if signer is not None:
            version = version.model_copy(
                update={"signature": sign_act("publish", version.signed_content(), signer)}
            )
        stored = AuditEvent(
            event="registry.version.stored",
            actor=who.name,
            subject_type=kind.value,
            subject_id=ident,
            details={"version": label, "digest": digest},
        )
        try:
            await write_despite_gc(
                self._metadata,
                self._blobs,
                lambda: self._blobs.put_bytes(body, expected_sha256=digest),
                lambda: self.records.insert_definition_version(version, audit=stored),
            )
        except Conflict as exc:
            if exc.details.get("reason") != "digest_exists":
                raise
            return await self.records.get_definition_version(kind, ident, digest=digest), False
        return version, True

    async def _file_version(
        self,
        defn: Definition,
        version: DefinitionVersion,
        body: bytes,
        path: str,
        who: Who,
        *,
        unresolved: list[str] | None = None,
    ) -> None:
        """What follows a new version's record: its catalog copy at ``path``, its move to the
        ``draft`` channel and the ``registry.published`` audit event."""
        kind, ident, digest = defn.KIND, defn.definition_id, version.digest
        self._remember(digest, defn)
        namespace = await self._namespace(kind)
        await self._catalog.put_object(
            namespace, path, body, content_type="application/json", actor=who.name
        )
        move = await self._move(
            kind,
            ident,
            Channel.DRAFT,
            digest,
            action=ChannelAction.PROMOTE,
            actor=who.name,
            reason="published",
            expected=CURRENT,
        )
        await self._audit.record(
            AuditEvent(
                event="registry.published",
                actor=who.name,
                subject_type=kind.value,
                subject_id=ident,
                details={
                    "version": defn.version,
                    "digest": digest,
                    "size_bytes": len(body),
                    "source_file": version.source_file,
                    "object_path": path,
                    "move": move.model_dump(mode="json"),
                    "move_digest": move_digest(move),
                    **who.audit(),
                    **({"unresolved_references": unresolved} if unresolved else {}),
                },
            )
        )

    async def _namespace(self, kind: DefinitionKind) -> str:
        namespace_id = OBJECT_FOLDERS[kind]
        try:
            await self._catalog.namespace(namespace_id)
        except NotFound:
            provider = "default"
            providers = await self._catalog.providers()
            if providers and all(p.provider_id != "default" for p in providers):
                provider = providers[0].provider_id
            with contextlib.suppress(Conflict):  # created meanwhile
                await self._catalog.put_namespace(
                    Namespace(
                        namespace_id=namespace_id,
                        provider_id=provider,
                        name=namespace_id,
                        purpose=_FOLDER_PURPOSE[kind],
                        default_prefix=f"{namespace_id}/",
                    )
                )
        return namespace_id

    async def _check_tool_ownership(self, manifest: ToolManifest, file_name: str) -> None:
        index = await self._tool_index()
        for t, tool in enumerate(manifest.tools):
            owners = {v.definition_id for v, _ in index.get(tool.tool_id, [])}
            others = sorted(owners - {manifest.manifest_id})
            if others:
                raise Conflict(
                    f"tool {tool.tool_id} is defined by manifest {others[0]}; a tool belongs "
                    "to one manifest",
                    operation="publish",
                    reason="tool_owned_elsewhere",
                    file=file_name,
                    tool_id=tool.tool_id,
                    owner=others[0],
                    errors=[{"path": f"tools[{t}].tool_id", "message": "owned elsewhere"}],
                )

    async def _resolves(self, what: RefKind, ref: Ref) -> bool:
        """Publish-time check of a playbook or sandbox-policy reference."""
        kind = _REF_KINDS[what]
        if ref.version is not None:
            return await self._find(kind, ref.id, version=ref.version) is not None
        if ref.digest is not None:
            return await self._find(kind, ref.id, digest=ref.digest) is not None
        return bool(await self.records.list_definition_versions(kind, ref.id))


def _safe_file_name(file_name: str) -> str | None:
    try:
        return check_file_name(PurePath(file_name).name)
    except ValueError:
        return None
