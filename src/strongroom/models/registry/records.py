"""What the registry stores about definitions: published versions, channel moves, approvals
(and their targets) and persistence records."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from strongroom.ids import ActorName, Digest, EntityId, FileName, SafeName
from strongroom.models._base import Record, Text, UtcDatetime, utcnow
from strongroom.models.identity import ActSignature
from strongroom.models.registry._common import (
    ApprovalScope,
    Channel,
    ChannelAction,
    DefinitionKind,
    PersistenceSubject,
    VersionLabel,
)


def _absent(value: object) -> bool:
    """Left out of a record's JSON when None, so records written before signatures existed
    keep their digest."""
    return value is None


class DefinitionVersion(Record):
    """One immutable published version: addressed by ``digest`` (sha256 of the canonical
    bytes), labelled by ``version`` (unique per definition)."""

    kind: DefinitionKind
    definition_id: SafeName
    version: VersionLabel
    digest: Digest
    size_bytes: int = Field(ge=0)
    published_at: UtcDatetime = Field(default_factory=utcnow)
    publisher: ActorName
    source_file: FileName | None = None
    signature: ActSignature | None = Field(
        default=None,
        exclude_if=_absent,
        description="The publisher's signature over the publication (None: unsigned, the "
        "publisher is who the system saw: the OS user or the database role).",
    )

    def signed_content(self) -> dict[str, Any]:
        """What the publisher signs: the version as published."""
        return self.model_dump(mode="json", exclude={"signature"})


class ChannelMove(Record):
    """One move of a channel pointer (the channel history is the list of these)."""

    move_id: EntityId
    kind: DefinitionKind
    definition_id: SafeName
    channel: Channel
    action: ChannelAction
    from_digest: Digest | None = Field(default=None, description="None: the channel was empty.")
    to_digest: Digest
    actor: ActorName
    reason: Annotated[Text, Field(min_length=1, max_length=1000)]
    approval_id: EntityId | None = Field(default=None, description="The approval it relied on.")
    at: UtcDatetime = Field(default_factory=utcnow)
    signature: ActSignature | None = Field(
        default=None,
        exclude_if=_absent,
        description="The operator's signature over the move (None: unsigned).",
    )

    def signed_content(self) -> dict[str, Any]:
        """What the operator signs: the move as made."""
        return self.model_dump(mode="json", exclude={"signature"})


class ToolVersionTarget(Record):
    """Approves executing ``tool_id@version`` (optionally only as defined in one manifest
    version, ``digest``)."""

    scope: Literal["tool_version"]
    tool_id: SafeName
    version: VersionLabel
    digest: Digest | None = None


class PromotionTarget(Record):
    """Approves moving ``channel`` of a definition to the version with ``digest``."""

    scope: Literal["promotion"]
    kind: DefinitionKind
    definition_id: SafeName
    digest: Digest
    channel: Channel


class RunTarget(Record):
    """Approves one run (optionally only one tool's execution within it)."""

    scope: Literal["run"]
    run_id: EntityId
    tool_id: SafeName | None = None


class Approval(Record):
    approval_id: EntityId
    target: Annotated[ToolVersionTarget | PromotionTarget | RunTarget, Field(discriminator="scope")]
    actor: ActorName
    reason: Annotated[Text, Field(min_length=1, max_length=1000)]
    created_at: UtcDatetime = Field(default_factory=utcnow)
    expires_at: UtcDatetime | None = None
    revoked_at: UtcDatetime | None = None
    revoked_by: ActorName | None = None
    revoke_reason: Annotated[Text, Field(max_length=1000)] | None = None
    signature: ActSignature | None = Field(
        default=None,
        exclude_if=_absent,
        description="The approver's signature over the approval (None: unsigned, the actor "
        "is who the system saw: the OS user or the database role).",
    )

    revoke_signature: ActSignature | None = Field(
        default=None,
        exclude_if=_absent,
        description="The revoker's signature over the revocation (None: unsigned).",
    )

    def signed_content(self) -> dict[str, Any]:
        """What the approver signs: the approval as made (not its later revocation)."""
        return self.model_dump(
            mode="json",
            exclude={
                "signature",
                "revoked_at",
                "revoked_by",
                "revoke_reason",
                "revoke_signature",
            },
        )

    def revocation_content(self) -> dict[str, Any]:
        """What the revoker signs: which approval, when, by whom, why."""
        return {
            "approval_id": self.approval_id,
            "revoked_at": None
            if self.revoked_at is None
            else self.revoked_at.isoformat(timespec="microseconds"),
            "revoked_by": self.revoked_by,
            "revoke_reason": self.revoke_reason,
        }

    @property
    def scope(self) -> ApprovalScope:
        return ApprovalScope(self.target.scope)

    def is_active(self, at: datetime | None = None) -> bool:
        """Not revoked and not expired at ``at`` (default: now)."""
        moment = utcnow() if at is None else at
        if self.revoked_at is not None and self.revoked_at <= moment:
            return False
        return self.expires_at is None or moment < self.expires_at


class StorageLocation(Record):
    provider_id: SafeName
    namespace_id: SafeName
    object_path: str = Field(max_length=1024, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/@:=-]*$")
    checksum: Digest
    size_bytes: int = Field(ge=0)
    content_type: str = Field(max_length=255)


class PersistenceRecord(Record):
    """Where a run, playbook or project config (or other definition) version is stored."""

    subject: PersistenceSubject
    subject_id: SafeName = Field(description="run_id, playbook_id, project_id...")
    stored_at: UtcDatetime = Field(default_factory=utcnow)
    format: Literal["json"] = "json"
    version: Annotated[str, Field(min_length=1, max_length=64)]
    storage: StorageLocation
