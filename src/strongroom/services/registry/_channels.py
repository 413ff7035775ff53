"""Channel moves: promote, roll back, and the compare-and-set move each change of a channel
goes through, publish's move to ``draft`` included (part of `RegistryService`). The audit
entry of each move carries its canonical digest (`move_digest`), which is how `verify`
detects a tampered history row.
"""

from __future__ import annotations

import builtins
from typing import Any

from strongroom.errors import Conflict, SignatureRequired, StaleChannel
from strongroom.ids import new_id
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
    record_digest,
)
from strongroom.retry import Backoff, retry_async
from strongroom.services._arguments import checked_arguments, enum_value
from strongroom.services._common import checked_reason
from strongroom.services.identity import Who, sign_act
from strongroom.services.registry._approvals import RegistryApprovals, approval_id_of
from strongroom.services.registry._results import MoveResult

__all__ = ["CURRENT", "RegistryChannels", "move_digest"]


class _Current:
    def __repr__(self) -> str:
        return "<current>"


CURRENT: Any = _Current()
"""`expected` default: compare-and-set from whatever the channel holds when read."""
_MOVE_ATTEMPTS = 5


def move_digest(move: ChannelMove) -> str:
    """The move's record digest (SHA-256 of its RFC 8785 canonical JSON): recorded in its
    audit entry, checked by verify (with `record_digest_as`, so moves recorded before RFC 8785
    still match)."""
    return record_digest(move)


@checked_arguments
class RegistryChannels(RegistryApprovals):
    """Moves of the registry's channels (see `RegistryService`)."""

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
        expected: str | object | None = CURRENT,
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
        reason = checked_reason(reason, "registry.promote")
        if approval_id is not None:
            approval_id = approval_id_of(approval_id, "registry.promote")
        kind = enum_value(DefinitionKind, kind, name="kind", operation="registry.promote")
        channel = enum_value(Channel, to, name="to", operation="registry.promote")
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
                "--role operator --key ADMIN_KEY`, FILE being the .pub file keys init wrote), "
                "and pass `--key PATH`",
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
        reason = checked_reason(reason, "registry.rollback")
        kind = enum_value(DefinitionKind, kind, name="kind", operation="registry.rollback")
        chan = enum_value(Channel, channel, name="channel", operation="registry.rollback")
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
        if current is not None and current.to_digest == target.digest and expected is CURRENT:
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
        """One compare-and-set move. ``expected`` CURRENT: from whatever the channel holds
        now (re-read and retried, ``attempts`` runs in all, when a racing move wins)."""

        async def once() -> ChannelMove:
            if expected is CURRENT:
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
            return isinstance(exc, StaleChannel) and expected is CURRENT

        # No backoff (the zero pause only yields to the loop): the re-read sees the winner.
        policy = Backoff(attempts, base=0.0, cap=0.0, jitter="none")
        return await retry_async(once, policy, retryable=retryable)
