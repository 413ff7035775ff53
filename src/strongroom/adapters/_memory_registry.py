"""The registry records port in memory: the `RegistryRecords` half of `MemoryMetadataStore`."""

from __future__ import annotations

import asyncio
from datetime import datetime

from strongroom.adapters._memory_audit import MemoryAuditRecords
from strongroom.models import (
    Actor,
    ActSignature,
    Approval,
    ApprovalScope,
    AuditEvent,
    Channel,
    ChannelMove,
    DefinitionKind,
    DefinitionVersion,
    bind,
)
from strongroom.ports.registry import (
    actor_exists,
    actor_not_found,
    actor_revoked_before,
    already_revoked,
    approval_exists,
    approval_not_found,
    digest_exists,
    label_taken,
    not_first_actor,
    require_one_selector,
    stale_channel,
    version_not_found,
)

__all__ = ["MemoryRegistryRecords"]

_Key = tuple[DefinitionKind, str]


class MemoryRegistryRecords(MemoryAuditRecords):
    def __init__(self) -> None:
        MemoryAuditRecords.__init__(self)
        self._registry_lock = asyncio.Lock()
        self._versions: dict[_Key, list[DefinitionVersion]] = {}
        self._moves: dict[_Key, list[ChannelMove]] = {}
        self._approvals: dict[str, Approval] = {}
        self._actors: dict[str, Actor] = {}

    async def insert_definition_version(
        self, version: DefinitionVersion, *, audit: AuditEvent | None = None
    ) -> None:
        async with self._registry_lock:
            self._refuse_reclaimed([version.digest], "publish", audit)
            versions = self._versions.setdefault((version.kind, version.definition_id), [])
            for existing in versions:
                if existing.version == version.version:
                    raise label_taken(version, existing.digest)
                if existing.digest == version.digest:
                    raise digest_exists(version, existing.version)
            versions.append(version.model_copy(deep=True))
            entries = self._bind(audit, [bind(version)])
        await self._audit_appended(entries)

    async def get_definition_version(
        self,
        kind: DefinitionKind,
        definition_id: str,
        *,
        version: str | None = None,
        digest: str | None = None,
    ) -> DefinitionVersion:
        require_one_selector(version, digest)
        for candidate in self._versions.get((kind, definition_id), []):
            if candidate.version == version or candidate.digest == digest:
                return candidate.model_copy(deep=True)
        raise version_not_found(kind, definition_id, version or f"sha256:{digest}")

    async def list_definition_versions(
        self, kind: DefinitionKind, definition_id: str
    ) -> list[DefinitionVersion]:
        return [v.model_copy(deep=True) for v in self._versions.get((kind, definition_id), [])]

    async def list_definitions(self, kind: DefinitionKind | None = None) -> list[DefinitionVersion]:
        return [
            versions[-1].model_copy(deep=True)
            for key, versions in sorted(self._versions.items())
            if versions and (kind is None or key[0] == kind)
        ]

    async def get_channels(
        self, kind: DefinitionKind, definition_id: str
    ) -> dict[Channel, ChannelMove]:
        current: dict[Channel, ChannelMove] = {}
        for move in self._moves.get((kind, definition_id), []):
            current[move.channel] = move.model_copy(deep=True)
        return current

    async def move_channel(self, move: ChannelMove, *, audit: AuditEvent | None = None) -> None:
        async with self._registry_lock:
            key = (move.kind, move.definition_id)
            if not any(v.digest == move.to_digest for v in self._versions.get(key, [])):
                raise version_not_found(move.kind, move.definition_id, f"sha256:{move.to_digest}")
            history = self._moves.setdefault(key, [])
            current = next((m for m in reversed(history) if m.channel == move.channel), None)
            current_digest = current.to_digest if current else None
            if current_digest != move.from_digest:
                raise stale_channel(move, current_digest)
            history.append(move.model_copy(deep=True))
            entries = self._bind(audit, [bind(move)])
        await self._audit_appended(entries)

    async def list_channel_moves(
        self, kind: DefinitionKind, definition_id: str
    ) -> list[ChannelMove]:
        return [m.model_copy(deep=True) for m in self._moves.get((kind, definition_id), [])]

    async def insert_approval(self, approval: Approval, *, audit: AuditEvent | None = None) -> None:
        async with self._registry_lock:
            if approval.approval_id in self._approvals:
                raise approval_exists(approval.approval_id)
            self._approvals[approval.approval_id] = approval.model_copy(deep=True)
            entries = self._bind(audit, [bind(approval)])
        await self._audit_appended(entries)

    async def get_approval(self, approval_id: str) -> Approval:
        approval = self._approvals.get(approval_id)
        if approval is None:
            raise approval_not_found(approval_id)
        return approval.model_copy(deep=True)

    async def list_approvals(self, scope: ApprovalScope | None = None) -> list[Approval]:
        return [
            a.model_copy(deep=True)
            for a in self._approvals.values()
            if scope is None or a.scope == scope
        ]

    async def revoke_approval(
        self,
        approval_id: str,
        *,
        at: datetime,
        by: str,
        reason: str,
        audit: AuditEvent | None = None,
        signature: ActSignature | None = None,
    ) -> Approval:
        async with self._registry_lock:
            approval = await self.get_approval(approval_id)
            if approval.revoked_at is not None:
                raise already_revoked(approval_id)
            revoked = approval.model_copy(
                update={
                    "revoked_at": at,
                    "revoked_by": by,
                    "revoke_reason": reason,
                    "revoke_signature": signature,
                }
            )
            self._approvals[approval_id] = revoked
            entries = self._bind(audit, [bind(revoked)])
        await self._audit_appended(entries)
        return revoked.model_copy(deep=True)

    async def insert_actor(self, actor: Actor, *, audit: AuditEvent | None = None) -> None:
        async with self._registry_lock:
            if actor.added_by is None and self._actors:
                raise not_first_actor(actor.key_id)
            if actor.key_id in self._actors:
                raise actor_exists(actor.key_id)
            self._actors[actor.key_id] = actor.model_copy(deep=True)
            entries = self._bind(audit, [bind(actor)])
        await self._audit_appended(entries)

    async def get_actor(self, key_id: str) -> Actor:
        actor = self._actors.get(key_id)
        if actor is None:
            raise actor_not_found(key_id)
        return actor.model_copy(deep=True)

    async def list_actors(self) -> list[Actor]:
        ordered = sorted(self._actors.values(), key=lambda a: (a.added_at, a.key_id))
        return [a.model_copy(deep=True) for a in ordered]

    async def revoke_actor(
        self,
        key_id: str,
        *,
        at: datetime,
        by: str | None,
        reason: str,
        signature: ActSignature | None,
        audit: AuditEvent | None = None,
    ) -> Actor:
        async with self._registry_lock:
            actor = await self.get_actor(key_id)
            if actor.revoked_at is not None:
                raise actor_revoked_before(key_id)
            revoked = actor.model_copy(
                update={
                    "revoked_at": at,
                    "revoked_by": by,
                    "revoke_reason": reason,
                    "revoke_signature": signature,
                }
            )
            self._actors[key_id] = revoked
            entries = self._bind(audit, [bind(revoked)])
        await self._audit_appended(entries)
        return revoked.model_copy(deep=True)
