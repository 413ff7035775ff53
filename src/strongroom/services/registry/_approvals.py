"""Approvals: record, revoke and look them up; the promotion check (part of
`RegistryService`)."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from strongroom.errors import (
    ApprovalRequired,
    NotFound,
    SelfApproval,
    ValidationError,
)
from strongroom.ids import new_id
from strongroom.models import (
    Approval,
    ApprovalScope,
    AuditEvent,
    Channel,
    DefinitionVersion,
    PromotionTarget,
    Ref,
    RunTarget,
    ToolVersionTarget,
    utcnow,
)
from strongroom.services._common import parse
from strongroom.services.registry._reader import ApprovalTarget, RegistryReader

__all__ = ["RegistryApprovals"]


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
        candidates = (
            [await self.records.get_approval(approval_id)]
            if approval_id is not None
            else await self.records.list_approvals(ApprovalScope.PROMOTION)
        )
        now = utcnow()
        for approval in reversed(candidates):
            if approval.target != wanted or not approval.is_active(now):
                continue
            if approval.actor == target.publisher and not self.policy.allow_self_approval:
                continue
            return approval
        why = (
            f"approval {approval_id} is not an active approval of this promotion by someone "
            "other than the publisher"
            if approval_id is not None
            else "it needs an active promotion approval by someone other than the publisher "
            f"({target.publisher})"
        )
        raise ApprovalRequired(
            f"promoting {target.kind.value} {target.definition_id} {target.version} to "
            f"{channel.value}: {why} (strongroom registry approve --promotion "
            f"{target.definition_id}@{target.version} --channel {channel.value})",
            approval_id=approval_id,
            **context,
        )

    async def approve(
        self,
        target: ApprovalTarget | dict[str, Any],
        *,
        actor: str = "local",
        reason: str,
        expires_at: datetime | None = None,
    ) -> Approval:
        """Record an approval: of a tool version (before an A2+ tool may execute), of one
        promotion (kind, id, digest, channel), or of one run. The target must exist
        (`NotFound`). The publisher of the approved version may not approve it
        (`SelfApproval`) unless the policy allows it. Audited as ``registry.approved``."""
        approval = parse(
            Approval,
            {
                "approval_id": new_id(),
                "target": target.model_dump() if hasattr(target, "model_dump") else target,
                "actor": actor,
                "reason": reason,
                "expires_at": expires_at,
            },
            operation="registry.approve",
        )
        if approval.expires_at is not None and approval.expires_at <= approval.created_at:
            raise ValidationError(
                "an approval cannot expire before it is made",
                operation="registry.approve",
                errors=[{"path": "expires_at", "message": "must be in the future"}],
            )
        publishers = await self._publishers(approval.target)
        if actor in publishers and not self.policy.allow_self_approval:
            raise SelfApproval(
                f"{actor} published what they are approving; another actor must approve it",
                operation="registry.approve",
                actor=actor,
                scope=approval.scope.value,
            )
        await self.records.insert_approval(
            approval,
            audit=AuditEvent(
                event="registry.approved",
                actor=actor,
                subject_type="approval",
                subject_id=approval.approval_id,
                details=approval.model_dump(mode="json"),
            ),
        )
        return approval

    async def _publishers(self, target: ApprovalTarget) -> set[str]:
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
            return {v.publisher for v, _ in matches}
        if isinstance(target, PromotionTarget):
            version = await self.records.get_definition_version(
                target.kind, target.definition_id, digest=target.digest
            )
            return {version.publisher}
        await self._metadata.get_run(target.run_id)
        return set()

    async def revoke(self, approval_id: str, *, actor: str = "local", reason: str) -> Approval:
        """Revoke an approval (`NotFound`; `Conflict` if already revoked). Audited as
        ``registry.revoked``."""
        if not reason.strip():
            raise ValidationError("a revocation needs a reason", operation="registry.revoke")
        # The event is written with the revocation; its scope is the approval's, read first.
        scope = (await self.records.get_approval(approval_id)).scope
        return await self.records.revoke_approval(
            approval_id,
            at=utcnow(),
            by=actor,
            reason=reason,
            audit=AuditEvent(
                event="registry.revoked",
                actor=actor,
                subject_type="approval",
                subject_id=approval_id,
                details={"reason": reason, "scope": scope.value},
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
            if have == target:
                return approval
            if (
                isinstance(have, ToolVersionTarget)
                and isinstance(target, ToolVersionTarget)
                and (have.tool_id, have.version) == (target.tool_id, target.version)
                and have.digest is None
            ):
                return approval
            if (
                isinstance(have, RunTarget)
                and isinstance(target, RunTarget)
                and have.run_id == target.run_id
                and have.tool_id is None
            ):
                return approval
        return None

    async def tool_approval(
        self, tool_id: str, version: str, *, digest: str | None = None
    ) -> Approval | None:
        """For the execution lane: an active approval to execute ``tool_id@version`` (as
        defined by the manifest version ``digest``, when given)."""
        return await self.active_approval(
            ToolVersionTarget(scope="tool_version", tool_id=tool_id, version=version, digest=digest)
        )

    async def run_approval(self, run_id: str, *, tool_id: str | None = None) -> Approval | None:
        """For the execution lane: an active approval of one run (for ``tool_id``)."""
        return await self.active_approval(RunTarget(scope="run", run_id=run_id, tool_id=tool_id))
