"""The registry records port in memory: the `RegistryRecords` half of `MemoryMetadataStore`."""

from __future__ import annotations

import asyncio
from datetime import datetime

from strongroom.errors import Conflict, LabelConflict, NotFound, StaleChannel, ValidationError
from strongroom.models import (
    Approval,
    ApprovalScope,
    Channel,
    ChannelMove,
    DefinitionKind,
    DefinitionVersion,
)
from strongroom.ports.registry import RegistryRecords

__all__ = ["MemoryRegistryRecords"]

_Key = tuple[DefinitionKind, str]


def _not_found_version(kind: DefinitionKind, definition_id: str, what: str) -> NotFound:
    return NotFound(
        f"{kind.value} {definition_id} has no version {what}",
        operation="get_definition_version",
        kind=kind.value,
        definition_id=definition_id,
        version=what,
    )


class MemoryRegistryRecords(RegistryRecords):
    def __init__(self) -> None:
        self._registry_lock = asyncio.Lock()
        self._versions: dict[_Key, list[DefinitionVersion]] = {}
        self._moves: dict[_Key, list[ChannelMove]] = {}
        self._approvals: dict[str, Approval] = {}

    async def insert_definition_version(self, version: DefinitionVersion) -> None:
        async with self._registry_lock:
            versions = self._versions.setdefault((version.kind, version.definition_id), [])
            for existing in versions:
                if existing.version == version.version:
                    raise LabelConflict(
                        f"{version.kind.value} {version.definition_id} already has a version "
                        f"{version.version} with other content",
                        operation="publish",
                        kind=version.kind.value,
                        definition_id=version.definition_id,
                        version=version.version,
                        existing_digest=existing.digest,
                    )
                if existing.digest == version.digest:
                    raise Conflict(
                        f"{version.kind.value} {version.definition_id} already has this content "
                        f"as version {existing.version}",
                        operation="publish",
                        reason="digest_exists",
                        definition_id=version.definition_id,
                        version=existing.version,
                    )
            versions.append(version.model_copy(deep=True))

    async def get_definition_version(
        self,
        kind: DefinitionKind,
        definition_id: str,
        *,
        version: str | None = None,
        digest: str | None = None,
    ) -> DefinitionVersion:
        if (version is None) == (digest is None):
            raise ValidationError(
                "get_definition_version needs exactly one of version and digest",
                operation="get_definition_version",
            )
        for candidate in self._versions.get((kind, definition_id), []):
            if candidate.version == version or candidate.digest == digest:
                return candidate.model_copy(deep=True)
        raise _not_found_version(kind, definition_id, version or f"sha256:{digest}")

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

    async def move_channel(self, move: ChannelMove) -> None:
        async with self._registry_lock:
            key = (move.kind, move.definition_id)
            if not any(v.digest == move.to_digest for v in self._versions.get(key, [])):
                raise _not_found_version(move.kind, move.definition_id, f"sha256:{move.to_digest}")
            history = self._moves.setdefault(key, [])
            current = next((m for m in reversed(history) if m.channel == move.channel), None)
            current_digest = current.to_digest if current else None
            if current_digest != move.from_digest:
                raise StaleChannel(
                    f"channel {move.channel.value} of {move.kind.value} {move.definition_id} "
                    "moved since it was read",
                    operation="move_channel",
                    channel=move.channel.value,
                    definition_id=move.definition_id,
                    expected_digest=move.from_digest,
                    current_digest=current_digest,
                )
            history.append(move.model_copy(deep=True))

    async def list_channel_moves(
        self, kind: DefinitionKind, definition_id: str
    ) -> list[ChannelMove]:
        return [m.model_copy(deep=True) for m in self._moves.get((kind, definition_id), [])]

    async def insert_approval(self, approval: Approval) -> None:
        async with self._registry_lock:
            if approval.approval_id in self._approvals:
                raise Conflict(
                    f"approval {approval.approval_id} exists",
                    operation="insert_approval",
                    approval_id=approval.approval_id,
                )
            self._approvals[approval.approval_id] = approval.model_copy(deep=True)

    async def get_approval(self, approval_id: str) -> Approval:
        approval = self._approvals.get(approval_id)
        if approval is None:
            raise NotFound(
                f"approval {approval_id} not found",
                operation="get_approval",
                approval_id=approval_id,
            )
        return approval.model_copy(deep=True)

    async def list_approvals(self, scope: ApprovalScope | None = None) -> list[Approval]:
        return [
            a.model_copy(deep=True)
            for a in self._approvals.values()
            if scope is None or a.scope == scope
        ]

    async def revoke_approval(
        self, approval_id: str, *, at: datetime, by: str, reason: str
    ) -> Approval:
        async with self._registry_lock:
            approval = await self.get_approval(approval_id)
            if approval.revoked_at is not None:
                raise Conflict(
                    f"approval {approval_id} was already revoked",
                    operation="revoke_approval",
                    approval_id=approval_id,
                    reason="already_revoked",
                )
            revoked = approval.model_copy(
                update={"revoked_at": at, "revoked_by": by, "revoke_reason": reason}
            )
            self._approvals[approval_id] = revoked
            return revoked.model_copy(deep=True)
