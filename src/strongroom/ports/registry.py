"""The registry's records port: published definition versions, channel pointers with their
history, and approvals.

A definition's *content* is a blob (its canonical bytes, addressed by ``digest``); these are
the records about it. Conditional writes are made atomic by the backend, never
check-then-set in the caller:

- ``insert_definition_version`` relies on two unique keys per definition: its label
  (``version``) and its ``digest``. Re-publishing identical content is the caller's no-op
  (it looks the digest up first); a racing publisher of the same label collides.
- ``move_channel`` is compare-and-set on the channel pointer: it applies only if the channel
  points at ``move.from_digest`` (None: unset), and appends the move to the history in the
  same transaction.
- ``revoke_approval`` applies only to an approval not yet revoked.

Every record store implements this port next to `MetadataStore` (memory, SQL).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

from strongroom.models import (
    Approval,
    ApprovalScope,
    Channel,
    ChannelMove,
    DefinitionKind,
    DefinitionVersion,
)

__all__ = ["RegistryRecords"]


class RegistryRecords(ABC):
    @abstractmethod
    async def insert_definition_version(self, version: DefinitionVersion) -> None:
        """Store a published version. `LabelConflict` if the definition already has this
        label, `Conflict` (reason ``digest_exists``) if it already has this digest."""

    @abstractmethod
    async def get_definition_version(
        self,
        kind: DefinitionKind,
        definition_id: str,
        *,
        version: str | None = None,
        digest: str | None = None,
    ) -> DefinitionVersion:
        """The version with this label or this digest (exactly one of them); `NotFound`."""

    @abstractmethod
    async def list_definition_versions(
        self, kind: DefinitionKind, definition_id: str
    ) -> list[DefinitionVersion]:
        """Every version of one definition, oldest first (empty if it has none)."""

    @abstractmethod
    async def list_definitions(self, kind: DefinitionKind | None = None) -> list[DefinitionVersion]:
        """The latest published version of every definition (of one kind), by (kind, id)."""

    @abstractmethod
    async def get_channels(
        self, kind: DefinitionKind, definition_id: str
    ) -> dict[Channel, ChannelMove]:
        """Each set channel of a definition with the move that set it (its current digest is
        ``move.to_digest``)."""

    @abstractmethod
    async def move_channel(self, move: ChannelMove) -> None:
        """Point ``move.channel`` at ``move.to_digest`` and append ``move`` to the history,
        atomically, only if the channel now points at ``move.from_digest`` (None: unset);
        otherwise `StaleChannel` naming the current digest. `NotFound` if ``to_digest`` is
        not a published version of the definition."""

    @abstractmethod
    async def list_channel_moves(
        self, kind: DefinitionKind, definition_id: str
    ) -> list[ChannelMove]:
        """The definition's channel history (every channel), oldest first."""

    @abstractmethod
    async def insert_approval(self, approval: Approval) -> None:
        """`Conflict` if the approval id exists."""

    @abstractmethod
    async def get_approval(self, approval_id: str) -> Approval: ...

    @abstractmethod
    async def list_approvals(self, scope: ApprovalScope | None = None) -> list[Approval]:
        """Approvals (of one scope), oldest first, revoked ones included."""

    @abstractmethod
    async def revoke_approval(
        self, approval_id: str, *, at: datetime, by: str, reason: str
    ) -> Approval:
        """Mark the approval revoked and return it; `NotFound`, or `Conflict` (reason
        ``already_revoked``) if it was revoked before."""
