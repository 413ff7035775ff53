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

import builtins
import contextlib
import hashlib
from pathlib import PurePath
from typing import Any

from strongroom.errors import (
    Conflict,
    LabelConflict,
    NotFound,
    SignatureRequired,
    StaleChannel,
)
from strongroom.ids import check_file_name, new_id
from strongroom.integrity import SigningKey
from strongroom.models import (
    ActorRole,
    Approval,
    AuditEvent,
    Channel,
    ChannelAction,
    ChannelMove,
    DefinitionKind,
    DefinitionVersion,
    GovernanceLevel,
    Namespace,
    Ref,
    RefKind,
    ToolManifest,
    canonical_json,
)
from strongroom.registry import (
    OBJECT_FOLDERS,
    canonical_bytes,
    check_references,
    load_definition,
    object_path,
)
from strongroom.retry import Backoff, retry_async
from strongroom.services.identity import Who, sign_act
from strongroom.services.registry._approvals import RegistryApprovals
from strongroom.services.registry._reader import ApprovalTarget, ToolIndex
from strongroom.services.registry._results import (
    MoveResult,
    PublishResult,
)

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


class _Current:
    def __repr__(self) -> str:
        return "<current>"


_CURRENT: Any = _Current()
"""`expected` default: compare-and-set from whatever the channel holds when read."""
_MOVE_ATTEMPTS = 5


def move_digest(move: ChannelMove) -> str:
    """SHA-256 of the move's canonical JSON: recorded in its audit entry, checked by verify."""
    return hashlib.sha256(canonical_json(move.model_dump(mode="json"))).hexdigest()


class RegistryService(RegistryApprovals):
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
        records = self.records
        who = await self.identity.who(
            signer, ActorRole.PUBLISHER, actor=actor, operation="registry.publish"
        )
        actor = who.name
        defn = load_definition(data, file_name=file_name)
        kind, ident, label = defn.KIND, defn.definition_id, defn.version
        body = canonical_bytes(defn)
        digest = hashlib.sha256(body).hexdigest()
        path = object_path(kind, ident, label)
        existing = await self._find(kind, ident, digest=digest)
        if existing is not None:
            return PublishResult(version=existing, created=False, object_path=path)
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
        index: ToolIndex | None = None

        async def resolve(what: RefKind, ref: Ref) -> bool:
            nonlocal index
            if what is not RefKind.TOOL:
                return await self._resolves(what, ref)
            if index is None:
                index = await self._tool_index()
            return bool(await self._tool_matches(ref, strict_channel=False, index=index))

        await check_references(defn, resolve, file_name=file_name)
        if isinstance(defn, ToolManifest):
            await self._check_tool_ownership(defn, file_name)
        if signer is None and self.policy.require_signed_publications:
            level = await self.definition_level(defn)
            if level is not None and level.rank >= GovernanceLevel.A2.rank:
                raise SignatureRequired(
                    f"{kind.value} {ident} governs execution at {level.value}: this vault's "
                    "policy wants it published signed with a registered personal key, so "
                    "that its approver can be told from its publisher by key: create one "
                    "(`strongroom keys init`), have an admin register it (`strongroom actors "
                    "add NAME --public-key FILE --role publisher`), and publish with "
                    "`--key PATH`",
                    operation="registry.publish",
                    kind=kind.value,
                    definition_id=ident,
                    level=level.value,
                    file=file_name,
                )

        await self._blobs.put_bytes(body, expected_sha256=digest)
        version = DefinitionVersion(
            kind=kind,
            definition_id=ident,
            version=label,
            digest=digest,
            size_bytes=len(body),
            publisher=actor,
            source_file=_safe_file_name(file_name),
        )
        if signer is not None:
            version = version.model_copy(
                update={"signature": sign_act("publish", version.signed_content(), signer)}
            )
        try:
            await records.insert_definition_version(
                version,
                audit=AuditEvent(
                    event="registry.version.stored",
                    actor=actor,
                    subject_type=kind.value,
                    subject_id=ident,
                    details={"version": label, "digest": digest},
                ),
            )
        except Conflict as exc:
            if exc.details.get("reason") != "digest_exists":
                raise
            won = await records.get_definition_version(kind, ident, digest=digest)
            return PublishResult(version=won, created=False, object_path=path)
        self._remember(digest, defn)
        namespace = await self._namespace(kind)
        await self._catalog.put_object(
            namespace, path, body, content_type="application/json", actor=actor
        )
        move = await self._move(
            kind,
            ident,
            Channel.DRAFT,
            digest,
            action=ChannelAction.PROMOTE,
            actor=actor,
            reason="published",
            expected=_CURRENT,
        )
        await self._audit.record(
            AuditEvent(
                event="registry.published",
                actor=actor,
                subject_type=kind.value,
                subject_id=ident,
                details={
                    "version": label,
                    "digest": digest,
                    "size_bytes": len(body),
                    "source_file": version.source_file,
                    "object_path": path,
                    "move": move.model_dump(mode="json"),
                    "move_digest": move_digest(move),
                    **who.audit(),
                },
            )
        )
        return PublishResult(version=version, created=True, object_path=path)

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

    # -- channels -----------------------------------------------------------------------------

    async def promote(
        self,
        kind: DefinitionKind | str,
        definition_id: str,
        version_or_digest: str,
        *,
        to: Channel | str,
        actor: str | None = None,
        reason: str,
        approval_id: str | None = None,
        expected: str | object | None = _CURRENT,
        signer: SigningKey | None = None,
    ) -> MoveResult:
        """Point channel ``to`` at a version (label or ``sha256:<hex>``), compare-and-set from
        the digest the channel held when read (or from ``expected`` when given: the digest
        the caller saw, or None for "unset"); `StaleChannel` if it moved meanwhile. Already
        there (and no ``expected`` given): a no-op, ``moved=False``.

        Promoting to ``production`` something that governs execution at the policy's level
        (A2 by default) needs an active promotion approval for exactly this definition,
        digest and channel, by someone other than the publisher (``approval_id`` names it,
        else one is looked up); otherwise `ApprovalRequired`. Audited as
        ``registry.promoted``. ``signer``: the operator's personal key (``operator`` role):
        the move carries their signature and ``actor`` is the key's registered name."""
        kind, channel = DefinitionKind(kind), Channel(to)
        who = await self._operator(signer, actor, channel, "registry.promote")
        selector = version_or_digest
        target = await self.version(kind, definition_id, selector)
        approval = None
        if await self._needs_approval(target, channel):
            approval = await self._approval_for(target, channel, approval_id)
        elif approval_id is not None:
            approval = await self.records.get_approval(approval_id)
        return await self._change(
            target,
            channel,
            ChannelAction.PROMOTE,
            who=who,
            reason=reason,
            approval=approval,
            expected=expected,
            signer=signer,
        )

    async def _operator(
        self, signer: SigningKey | None, actor: str | None, channel: Channel, operation: str
    ) -> Who:
        """Who moves ``channel``: under `RegistryPolicy.require_signed_production_moves` a
        move of ``production`` must be signed by an operator (`SignatureRequired`)."""
        if (
            signer is None
            and channel is Channel.PRODUCTION
            and self.policy.require_signed_production_moves
        ):
            raise SignatureRequired(
                "this vault's policy wants every move of the production channel signed with "
                "an operator's registered personal key: create one (`strongroom keys init`), "
                "have an admin register it (`strongroom actors add NAME --public-key FILE "
                "--role operator`), and pass `--key PATH`",
                operation=operation,
                channel=channel.value,
            )
        return await self.identity.who(signer, ActorRole.OPERATOR, actor=actor, operation=operation)

    async def rollback(
        self,
        kind: DefinitionKind | str,
        definition_id: str,
        *,
        channel: Channel | str,
        actor: str | None = None,
        reason: str,
        signer: SigningKey | None = None,
    ) -> MoveResult:
        """Move ``channel`` back to the version it pointed at before its last promotion
        (rollbacks undo promotions one at a time, like a stack). `Conflict` (reason
        ``nothing_to_roll_back``) when the channel has no earlier version. Audited as
        ``registry.rolled_back``. Needs no approval: the earlier version held the channel.
        ``signer``: as for `promote`."""
        kind, chan = DefinitionKind(kind), Channel(channel)
        who = await self._operator(signer, actor, chan, "registry.rollback")
        moves = [
            m
            for m in await self.records.list_channel_moves(kind, definition_id)
            if m.channel is chan
        ]
        stack: builtins.list[str] = []
        for move in moves:
            if move.action is ChannelAction.PROMOTE:
                stack.append(move.to_digest)
            else:
                while stack and stack[-1] != move.to_digest:
                    stack.pop()
                if not stack:
                    stack.append(move.to_digest)
        if len(stack) < 2:
            raise Conflict(
                f"channel {chan.value} of {kind.value} {definition_id} has no earlier version "
                "to roll back to",
                operation="registry.rollback",
                reason="nothing_to_roll_back",
                kind=kind.value,
                definition_id=definition_id,
                channel=chan.value,
            )
        target = await self.records.get_definition_version(kind, definition_id, digest=stack[-2])
        return await self._change(
            target,
            chan,
            ChannelAction.ROLLBACK,
            who=who,
            reason=reason,
            approval=None,
            expected=stack[-1],
            signer=signer,
        )

    async def _change(
        self,
        target: DefinitionVersion,
        channel: Channel,
        action: ChannelAction,
        *,
        who: Who,
        reason: str,
        approval: Approval | None,
        expected: str | object | None,
        signer: SigningKey | None = None,
    ) -> MoveResult:
        current = (await self.records.get_channels(target.kind, target.definition_id)).get(channel)
        if current is not None and current.to_digest == target.digest and expected is _CURRENT:
            return MoveResult(move=current, moved=False, version=target.version)
        move = await self._move(
            target.kind,
            target.definition_id,
            channel,
            target.digest,
            action=action,
            actor=who.name,
            reason=reason,
            approval_id=approval.approval_id if approval else None,
            expected=expected,
            attempts=1,
            signer=signer,
        )
        await self._audit.record(
            AuditEvent(
                event="registry.promoted"
                if action is ChannelAction.PROMOTE
                else "registry.rolled_back",
                actor=who.name,
                subject_type=target.kind.value,
                subject_id=target.definition_id,
                details={
                    "channel": channel.value,
                    "version": target.version,
                    "digest": target.digest,
                    "from_digest": move.from_digest,
                    "reason": reason,
                    "approval_id": move.approval_id,
                    "move": move.model_dump(mode="json"),
                    "move_digest": move_digest(move),
                    **who.audit(),
                },
            )
        )
        return MoveResult(move=move, moved=True, version=target.version)

    async def _move(
        self,
        kind: DefinitionKind,
        ident: str,
        channel: Channel,
        digest: str,
        *,
        action: ChannelAction,
        actor: str,
        reason: str,
        approval_id: str | None = None,
        expected: str | object | None,
        attempts: int = _MOVE_ATTEMPTS,
        signer: SigningKey | None = None,
    ) -> ChannelMove:
        """One compare-and-set move. ``expected`` _CURRENT: from whatever the channel holds
        now (re-read and retried, ``attempts`` runs in all, when a racing move wins)."""

        async def once() -> ChannelMove:
            if expected is _CURRENT:
                current = (await self.records.get_channels(kind, ident)).get(channel)
                from_digest = current.to_digest if current else None
            else:
                assert expected is None or isinstance(expected, str)
                from_digest = expected
            move = ChannelMove(
                move_id=new_id(),
                kind=kind,
                definition_id=ident,
                channel=channel,
                action=action,
                from_digest=from_digest,
                to_digest=digest,
                actor=actor,
                reason=reason,
                approval_id=approval_id,
            )
            if signer is not None:
                move = move.model_copy(
                    update={"signature": sign_act("move", move.signed_content(), signer)}
                )
            await self.records.move_channel(
                move,
                audit=AuditEvent(
                    event="registry.channel.moved",
                    actor=actor,
                    subject_type=kind.value,
                    subject_id=ident,
                    details={"channel": channel.value, "move_id": move.move_id},
                ),
            )
            return move

        def retryable(exc: Exception) -> bool:
            return isinstance(exc, StaleChannel) and expected is _CURRENT

        # No backoff (the zero pause only yields to the loop): the re-read sees the winner.
        policy = Backoff(attempts, base=0.0, cap=0.0, jitter="none")
        return await retry_async(once, policy, retryable=retryable)


def _safe_file_name(file_name: str) -> str | None:
    try:
        return check_file_name(PurePath(file_name).name)
    except ValueError:
        return None
