"""Approvals: record, revoke and look them up; the promotion check (part of
`RegistryService`)."""

from __future__ import annotations

import builtins
import shlex
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from strongroom.errors import (
    ApprovalRequired,
    NotFound,
    SelfApproval,
    SignatureRequired,
    ValidationError,
)
from strongroom.ids import EntityId, check_entity_id, new_id
from strongroom.integrity import SigningKey
from strongroom.models import (
    ActorRole,
    ActSignature,
    Approval,
    ApprovalScope,
    AuditEvent,
    Channel,
    DefinitionVersion,
    GovernanceLevel,
    PromotionTarget,
    Ref,
    RunTarget,
    Text,
    ToolVersionTarget,
    utcnow,
)
from strongroom.services._arguments import checked_arguments
from strongroom.services._common import parse
from strongroom.services.identity import sign_act, signature_problem
from strongroom.services.registry._reader import ApprovalTarget, RegistryReader

__all__ = ["RegistryApprovals"]


def _same_person(
    actor: str,
    signature: ActSignature | None,
    publishers: Iterable[tuple[str, ActSignature | None]],
) -> bool:
    """Whether the approver (``actor``, signed with ``signature`` or not) is one of the
    ``publishers`` (name, signature). Signed on both sides, the same key is the same person,
    whatever names are used, and so is the same registered name (one person's two keys,
    during a rotation); an unsigned side can only be compared by name (refusing, never
    letting through, when a name matches)."""
    for name, published in publishers:
        if name == actor:
            return True
        if signature is not None and published is not None and signature.key_id == published.key_id:
            return True
    return False


def _new_approval(
    target: ApprovalTarget | dict[str, Any],
    *,
    actor: str,
    reason: str,
    expires_at: datetime | None,
) -> Approval:
    """The approval asked for, made now (`ValidationError` when malformed or when it would
    expire before it is made)."""
    operation = "registry.approve"
    approval = parse(
        Approval,
        {
            "approval_id": new_id(),
            "target": target.model_dump() if hasattr(target, "model_dump") else target,
            "actor": actor,
            "reason": reason,
            "expires_at": expires_at,
        },
        operation=operation,
    )
    if approval.expires_at is not None and approval.expires_at <= approval.created_at:
        raise ValidationError(
            "an approval cannot expire before it is made",
            operation=operation,
            errors=[{"path": "expires_at", "message": "must be in the future"}],
        )
    return approval


class _Revocation(BaseModel):
    """What a caller passes to `revoke`, checked before anything is read."""

    model_config = ConfigDict(extra="forbid")

    approval_id: EntityId
    reason: Annotated[Text, Field(min_length=1, max_length=1000)]


def approval_id_of(value: str, operation: str) -> str:
    """``value`` as an approval id (canonical form); `ValidationError` when it is not an id
    at all (a lone surrogate, a typo), before any store is asked."""
    try:
        return check_entity_id(value)
    except ValueError as exc:
        raise ValidationError(
            f"invalid approval id {value[:80]!r}: {exc}",
            operation=operation,
            reason="bad_id",
            field="approval_id",
        ) from None


@checked_arguments
class RegistryApprovals(RegistryReader):
    """Approvals of tool versions, promotions and runs (see `RegistryService`)."""

    # -- approvals ----------------------------------------------------------------------------

    async def _approval_for(
        self, target: DefinitionVersion, channel: Channel, approval_id: str | None
    ) -> Approval:
        wanted = PromotionTarget(
            scope="promotion",
            kind=target.kind,
            definition_id=target.definition_id,
            digest=target.digest,
            channel=channel,
        )
        context: dict[str, Any] = {
            "operation": "registry.promote",
            "kind": target.kind.value,
            "definition_id": target.definition_id,
            "version": target.version,
            "digest": target.digest,
            "channel": channel.value,
            "publisher": target.publisher,
        }
        if approval_id is not None:
            approval_id = approval_id_of(approval_id, "registry.promote")
        candidates = (
            [await self.records.get_approval(approval_id)]
            if approval_id is not None
            else await self.records.list_approvals(ApprovalScope.PROMOTION)
        )
        now = utcnow()
        for approval in reversed(candidates):
            if approval.target != wanted or not approval.is_active(now):
                continue
            if not self.policy.allow_self_approval and _same_person(
                approval.actor, approval.signature, [(target.publisher, target.signature)]
            ):
                continue
            if not await self._counts(approval, covered=True):
                continue
            return approval
        why = (
            f"approval {approval_id} is not an active approval of this promotion by someone "
            "other than the publisher"
            if approval_id is not None
            else "it needs an active promotion approval by someone other than the publisher "
            f"({target.publisher})"
        )
        approve = shlex.join(
            [
                "strongroom",
                "registry",
                "approve",
                "--promotion",
                f"{target.definition_id}@{target.version}",
                "--channel",
                channel.value,
                "--kind",
                target.kind.value,
            ]
        )
        approve += ' --reason "..."'  # the approver says why
        if self.policy.require_signed_approvals:
            approve += " --key KEY"  # the approver's own registered key
        raise ApprovalRequired(
            f"promoting {target.kind.value} {target.definition_id} {target.version} to "
            f"{channel.value}: {why}. Someone other than the publisher approves it with: "
            f"{approve}; then promote again",
            approval_id=approval_id,
            **context,
        )

    async def approve(
        self,
        target: ApprovalTarget | dict[str, Any],
        *,
        actor: str | None = None,
        reason: str,
        expires_at: datetime | None = None,
        signer: SigningKey | None = None,
    ) -> Approval:
        """Record an approval: of a tool version (before an A2+ tool may execute), of one
        promotion (kind, id, digest, channel), or of one run. The target must exist
        (`NotFound`). The publisher of the approved version may not approve it
        (`SelfApproval`) unless the policy allows it: when both are signed, "the publisher"
        means the publisher's key, whatever names either uses. Audited as
        ``registry.approved``.

        ``signer``: the approver's personal key, registered with the ``approver`` role
        (`UnknownSigner` otherwise); the approval then carries the approver's signature over
        what it approves and ``actor`` is the key's registered name. Under
        `RegistryPolicy.require_signed_approvals` an approval of an A2+ tool version or of a
        production promotion that needs one is refused unsigned (`SignatureRequired`);
        otherwise it is accepted and its audit entry says the policy allowed it unsigned."""
        operation = "registry.approve"
        who = await self.identity.who(signer, ActorRole.APPROVER, actor=actor, operation=operation)
        actor = who.name
        approval = _new_approval(target, actor=actor, reason=reason, expires_at=expires_at)
        published = await self._published(approval.target)
        if signer is not None:
            approval = approval.model_copy(
                update={"signature": sign_act("approve", approval.signed_content(), signer)}
            )
        self._check_not_publisher(approval, published, signed=signer is not None)
        details = {**approval.model_dump(mode="json"), "principal": who.principal}
        if signer is None and await self._wants_signature(approval.target, published):
            self._check_may_be_unsigned(approval)
            details["unsigned_allowed_by_policy"] = True
        await self.records.insert_approval(
            approval,
            audit=AuditEvent(
                event="registry.approved",
                actor=actor,
                subject_type="approval",
                subject_id=approval.approval_id,
                details=details,
            ),
        )
        return approval

    def _check_not_publisher(
        self, approval: Approval, published: builtins.list[DefinitionVersion], *, signed: bool
    ) -> None:
        """Whether the approver may approve what they published (`SelfApproval` unless the
        policy allows self-approval)."""
        actor = approval.actor
        if not self.policy.allow_self_approval and _same_person(
            actor, approval.signature, [(v.publisher, v.signature) for v in published]
        ):
            raise SelfApproval(
                f"{actor} published what they are approving"
                + (" (with the same key)" if signed else "")
                + "; another actor must approve it",
                operation="registry.approve",
                actor=actor,
                scope=approval.scope.value,
            )

    def _check_may_be_unsigned(self, approval: Approval) -> None:
        """Whether the policy accepts this approval, one it covers, unsigned
        (`SignatureRequired` under `RegistryPolicy.require_signed_approvals`)."""
        if self.policy.require_signed_approvals:
            raise SignatureRequired(
                f"this vault's policy wants an approval of this {approval.scope.value} "
                "signed with a registered personal key: create one (`strongroom keys "
                "init`), have an admin register it (`strongroom actors add NAME "
                "--public-key FILE --role approver --key ADMIN_KEY`, FILE being the .pub "
                "file keys init wrote), and approve with `--key PATH`",
                operation="registry.approve",
                scope=approval.scope.value,
            )

    async def _wants_signature(
        self, target: ApprovalTarget, published: builtins.list[DefinitionVersion]
    ) -> bool:
        """Whether `RegistryPolicy.require_signed_approvals` covers an approval of
        ``target``: a tool version at A2 or above, or a promotion to production that needs
        an approval, or a run (whose approval lets its A2+ tools execute)."""
        if isinstance(target, ToolVersionTarget):
            levels = [await self.governance_level(v) for v in published]
            return any(
                level is not None and level.rank >= GovernanceLevel.A2.rank for level in levels
            )
        if isinstance(target, PromotionTarget):
            return any([await self._needs_approval(v, target.channel) for v in published])
        return True  # a run approval: it lets the run's A2+ tools execute

    async def _published(self, target: ApprovalTarget) -> builtins.list[DefinitionVersion]:
        """The published versions an approval of ``target`` is about (none for a run; the
        run must exist)."""
        if isinstance(target, ToolVersionTarget):
            ref = (
                Ref(target.tool_id, digest=target.digest)
                if target.digest
                else Ref(target.tool_id, version=target.version)
            )
            matches = [
                (v, t) for v, t in await self._tool_matches(ref) if t.version == target.version
            ]
            if not matches:
                raise NotFound(
                    f"no tool {target.tool_id}@{target.version} in the registry",
                    operation="registry.approve",
                    tool_id=target.tool_id,
                    version=target.version,
                )
            return [v for v, _ in matches]
        if isinstance(target, PromotionTarget):
            return [
                await self.records.get_definition_version(
                    target.kind, target.definition_id, digest=target.digest
                )
            ]
        await self._metadata.get_run(target.run_id)
        return []

    async def revoke(
        self,
        approval_id: str,
        *,
        actor: str | None = None,
        reason: str,
        signer: SigningKey | None = None,
    ) -> Approval:
        """Revoke an approval (`NotFound`; `Conflict` if already revoked). Audited as
        ``registry.revoked``. ``signer``: the revoker's personal key (``approver`` role):
        the revocation carries their signature and ``actor`` is the key's registered name."""
        operation = "registry.revoke"
        if not reason.strip():
            raise ValidationError("a revocation needs a reason", operation=operation)
        checked = parse(
            _Revocation, {"approval_id": approval_id, "reason": reason}, operation=operation
        )
        approval_id, reason = checked.approval_id, checked.reason
        who = await self.identity.who(signer, ActorRole.APPROVER, actor=actor, operation=operation)
        actor = who.name
        # The event is written with the revocation; its scope is the approval's, read first.
        approval = await self.records.get_approval(approval_id)
        at = utcnow()
        signature = None
        if signer is not None:
            content = approval.model_copy(
                update={"revoked_at": at, "revoked_by": actor, "revoke_reason": reason}
            ).revocation_content()
            signature = sign_act("revoke_approval", content, signer)
        return await self.records.revoke_approval(
            approval_id,
            at=at,
            by=actor,
            reason=reason,
            signature=signature,
            audit=AuditEvent(
                event="registry.revoked",
                actor=actor,
                subject_type="approval",
                subject_id=approval_id,
                details={"reason": reason, "scope": approval.scope.value, **who.audit()},
            ),
        )

    async def approvals(self, scope: ApprovalScope | str | None = None) -> builtins.list[Approval]:
        return await self.records.list_approvals(ApprovalScope(scope) if scope else None)

    async def active_approval(
        self, target: ApprovalTarget, *, at: datetime | None = None
    ) -> Approval | None:
        """The newest active approval whose target equals ``target`` (None if there is none).
        A tool-version approval without a digest also covers every manifest version; a run
        approval without a tool_id covers every tool of the run."""
        for approval in reversed(await self.records.list_approvals(ApprovalScope(target.scope))):
            if not approval.is_active(at):
                continue
            have = approval.target
            if (
                have == target
                or (
                    isinstance(have, ToolVersionTarget)
                    and isinstance(target, ToolVersionTarget)
                    and (have.tool_id, have.version) == (target.tool_id, target.version)
                    and have.digest is None
                )
                or (
                    isinstance(have, RunTarget)
                    and isinstance(target, RunTarget)
                    and have.run_id == target.run_id
                    and have.tool_id is None
                )
            ) and await self._counts(approval):
                return approval
        return None

    async def _counts(self, approval: Approval, *, covered: bool | None = None) -> bool:
        """Whether a stored approval may be relied on: its signature (if any) verifies with
        the registered key that made it, and, under `RegistryPolicy.require_signed_approvals`,
        one the policy covers (``covered``; None: work it out) is signed. A row written
        around the service (unsigned, or with a copied signature) does not count."""
        signature = approval.signature
        if signature is not None:
            signer = await self.identity.find(signature.key_id)
            if (
                signature_problem(
                    "approve", approval.signed_content(), signature, signer, ActorRole.APPROVER
                )
                is not None
            ):
                return False
            if signer is not None and signer.revoked_at is not None:
                # The chain's order decides, not the signing time the signature claims: an
                # approval that entered the chain after its key's revocation is backdated.
                made = await self._metadata.binding_span("approval", approval.approval_id)
                ended = await self._metadata.binding_span("actor", signer.key_id)
                if made is None or ended is None or made[0] >= ended[1]:
                    return False
            return True
        if not self.policy.require_signed_approvals:
            return True
        if covered is None:
            try:
                covered = await self._wants_signature(
                    approval.target, await self._published(approval.target)
                )
            except NotFound:
                covered = False
        return not covered

    async def tool_approval(
        self, tool_id: str, version: str, *, digest: str | None = None
    ) -> Approval | None:
        """For the execution lane: an active approval to execute ``tool_id@version`` (as
        defined by the manifest version ``digest``, when given)."""
        return await self.active_approval(
            parse(
                ToolVersionTarget,
                {"scope": "tool_version", "tool_id": tool_id, "version": version, "digest": digest},
                operation="registry.tool_approval",
            )
        )

    async def run_approval(self, run_id: str, *, tool_id: str | None = None) -> Approval | None:
        """For the execution lane: an active approval of one run (for ``tool_id``)."""
        target = parse(
            RunTarget,
            {"scope": "run", "run_id": run_id, "tool_id": tool_id},
            operation="registry.run_approval",
        )
        return await self.active_approval(target)
