"""Tool manifests: a versioned set of tool definitions (contract, governance, constraints)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Literal

from pydantic import Field

from strongroom.ids import ActorName, SafeName
from strongroom.models._base import Record, UtcDatetime
from strongroom.models.registry._common import (
    DefinitionBase,
    DefinitionKind,
    Entrypoint,
    GovernanceLevel,
    JsonSchemaDoc,
    Ref,
    RefField,
    RefKind,
    Text,
    Title,
    VersionLabel,
)


class ToolContract(Record):
    """JSON Schemas of a tool's request, response and (optional) error payloads.

    Each must be a valid JSON Schema (``$schema`` picks the dialect; default Draft 2020-12);
    checked at publish time by `strongroom.registry.validate_definition`.
    """

    request_schema: JsonSchemaDoc
    response_schema: JsonSchemaDoc
    error_schema: JsonSchemaDoc | None = None


class ToolGovernance(Record):
    level: GovernanceLevel
    requires_hitl: bool = Field(default=False, description="A human must be in the loop.")
    requires_run_logging: bool = Field(default=True, description="Every call is logged on a run.")


class ToolConstraints(Record):
    timeout_seconds: int = Field(ge=1, le=86_400)
    max_retries: int = Field(default=0, ge=0, le=100)


class ToolDefinition(Record):
    tool_id: SafeName
    name: Title
    description: Text = ""
    version: VersionLabel
    execution_lane: Literal["python"] = "python"
    entrypoint: Entrypoint | None = Field(
        default=None,
        description="package.module:function. None: published but not runnable until bound "
        "(`strongroom registry bind TOOL@VERSION --entrypoint module:function`).",
    )
    contract: ToolContract
    governance: ToolGovernance
    constraints: ToolConstraints
    policy_refs: list[RefField] = Field(
        default_factory=list, description="Sandbox policies this tool runs under."
    )

    @property
    def bound(self) -> bool:
        """Whether the tool can run: it names the function that implements it."""
        return self.entrypoint is not None


class ToolManifest(DefinitionBase):
    """A versioned set of tool definitions (``manifest_id`` + ``version``)."""

    ID_FIELD: ClassVar[str] = "manifest_id"
    KIND: ClassVar[DefinitionKind] = DefinitionKind.TOOL_MANIFEST

    kind: Literal["tool_manifest"] = "tool_manifest"
    manifest_id: SafeName
    name: Title
    version: VersionLabel
    owner: ActorName
    description: Text = ""
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    tools: list[ToolDefinition] = Field(min_length=1, max_length=1000)

    def references(self) -> Iterator[tuple[str, RefKind, Ref]]:
        for t, tool in enumerate(self.tools):
            for p, ref in enumerate(tool.policy_refs):
                yield f"tools[{t}].policy_refs[{p}]", RefKind.SANDBOX_POLICY, ref

    def tool(self, tool_id: str) -> ToolDefinition | None:
        return next((tool for tool in self.tools if tool.tool_id == tool_id), None)

    @property
    def unbound_tools(self) -> list[str]:
        """The ids of the tools without an entrypoint (published, not runnable until bound)."""
        return [tool.tool_id for tool in self.tools if tool.entrypoint is None]

    @property
    def max_governance_level(self) -> GovernanceLevel:
        """The highest level among the tools (what promotion policy looks at)."""
        return max((tool.governance.level for tool in self.tools), key=lambda lv: lv.rank)
