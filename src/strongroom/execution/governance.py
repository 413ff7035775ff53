"""Governance levels at execution time (contracts.md): A0 read-only; A1 outputs are drafts a
human must review; A2 needs an approval of the tool version (or of the run) before it runs;
A3 is A2 plus full input/output payloads stored as artifacts. A caller may ask for a stricter
level than the tool's, never a laxer one."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from strongroom.errors import ApprovalRequired
from strongroom.models import DefinitionVersion, GovernanceLevel, ToolDefinition
from strongroom.models.execution import RequestGovernance

if TYPE_CHECKING:
    from strongroom.vault import Vault

__all__ = ["Governance", "approve_command", "check_governance"]


@dataclass(frozen=True)
class Governance:
    level: GovernanceLevel
    requires_hitl: bool

    @classmethod
    def of(
        cls, tool: ToolDefinition, requested: RequestGovernance | GovernanceLevel | None
    ) -> Governance:
        """The tool's governance, made stricter (never laxer) by what the request asks: a
        higher level, or a human in the loop."""
        if isinstance(requested, GovernanceLevel):
            requested = RequestGovernance(level=requested)
        level = tool.governance.level
        hitl = tool.governance.requires_hitl
        if requested is not None:
            if requested.level.rank > level.rank:
                level = requested.level
            hitl = hitl or bool(requested.requires_hitl)
        return cls(level=level, requires_hitl=hitl)

    @property
    def needs_approval(self) -> bool:
        return self.level.rank >= 2

    @property
    def needs_review(self) -> bool:
        """A1 outputs (and those of a lower-level tool that wants a human) are drafts."""
        return self.level is GovernanceLevel.A1 or (
            self.requires_hitl and self.level is GovernanceLevel.A0
        )

    @property
    def stores_payloads(self) -> bool:
        return self.level is GovernanceLevel.A3


def approve_command(tool: ToolDefinition) -> str:
    """The approval a waiting tool needs, as a command that runs as printed by someone whose
    personal key is registered (``--sign``: $STRONGROOM_SIGNING_KEY or the default key)."""
    ref = shlex.quote(f"{tool.tool_id}@{tool.version}")
    return f'strongroom registry approve --tool {ref} --reason "..." --sign'


async def check_governance(
    vault: Vault,
    governance: Governance,
    tool: ToolDefinition,
    manifest: DefinitionVersion,
    run_id: str,
) -> None:
    """`ApprovalRequired` unless an active approval covers this tool version (as defined by
    this manifest version) or this run."""
    if not governance.needs_approval:
        return
    approval = await vault.registry.tool_approval(
        tool.tool_id, tool.version, digest=manifest.digest
    ) or await vault.registry.run_approval(run_id, tool_id=tool.tool_id)
    if approval is not None:
        return
    command = approve_command(tool)
    raise ApprovalRequired(
        f"tool {tool.tool_id}@{tool.version} is {governance.level.value} and has no active "
        f"approval; someone other than its publisher can approve it with: {command}",
        operation="runner.governance",
        tool_id=tool.tool_id,
        tool_version=tool.version,
        manifest_digest=manifest.digest,
        governance=governance.level.value,
        run_id=run_id,
        command=command,
    )
