"""Registry records: the four definition kinds (tool manifests, playbooks, project configs,
sandbox policies), the parsed reference type they use to point at each other, and the records
the registry stores about them (versions, channel moves, approvals, persistence records).

A *definition* is what a user writes in a YAML or JSON file: a top-level ``kind`` plus the
kind's fields. Its identity is ``(kind, <id field>)`` and its human version label is
``version``. Parsing, canonicalisation and the document-level checks (duplicate ids, unknown
steps, dependency cycles, contract schemas...) live in `strongroom.registry`; the models here
enforce the field-level rules (types, bounds, grammars, unknown keys).

Grammars (also in the exported JSON Schemas, so editors check them):

- **version label**: starts with a digit; ASCII letters and digits in runs separated by a
  single ``.``, ``_`` or ``-``; at most 64 characters. ``1.4.0``, ``2026-12-02.1``,
  ``2.0.0-rc.1``. Because it starts with a digit it can never be mistaken for a channel name.
- **reference** (`Ref`): ``ID`` | ``ID@VERSION`` | ``ID@CHANNEL`` | ``ID@sha256:HEX`` where
  ID is a safe name, CHANNEL one of ``draft``, ``staging``, ``production`` and HEX the 64
  lowercase hex digits of a version's digest. A bare ``ID`` means "whatever the resolver
  treats as current" (the registry service decides; typically ``production``).
- **entrypoint**: ``package.module:function`` (dotted Python identifiers, one function name).
- **JSON pointer**: RFC 6901, ``""`` (the whole document) or ``/a/b/0`` with ``~0``/``~1``
  escapes.

Layout: `._common` (enums, grammars, `Ref`, `field_path`, `DefinitionBase`), `.tools` (tool
manifests), `.playbooks` (steps and playbooks), `.configs` (project configs and sandbox
policies), `.records` (versions, channel moves, approvals, persistence records). Everything
public is re-exported here; import from `strongroom.models.registry`.
"""

from __future__ import annotations

from strongroom.models.registry._common import (
    CHANNEL_NAMES,
    DEFINITION_KINDS,
    ENTRYPOINT_PATTERN,
    JSON_POINTER_PATTERN,
    PATTERN_MESSAGES,
    REF_PATTERN,
    VERSION_LABEL_PATTERN,
    ApprovalScope,
    Channel,
    ChannelAction,
    DefinitionBase,
    DefinitionKind,
    FilesystemMode,
    GovernanceLevel,
    NetworkMode,
    PersistenceSubject,
    Ref,
    RefField,
    RefKind,
    VersionLabel,
    field_path,
)
from strongroom.models.registry.configs import (
    FilesystemPolicy,
    LoggingPolicy,
    NetworkPolicy,
    ProjectConfig,
    ProjectExecutor,
    ProjectSettings,
    RedactPattern,
    ResourceLimits,
    SandboxEnvironment,
    SandboxPath,
    SandboxPolicy,
)
from strongroom.models.registry.playbooks import (
    ArtifactById,
    ArtifactFromStep,
    ArtifactSource,
    FromArtifact,
    FromInput,
    FromStep,
    LiteralValue,
    Playbook,
    Step,
    StepInput,
    StepPersistence,
)
from strongroom.models.registry.records import (
    Approval,
    ChannelMove,
    DefinitionVersion,
    PersistenceRecord,
    PromotionTarget,
    RunTarget,
    StorageLocation,
    ToolVersionTarget,
)
from strongroom.models.registry.tools import (
    ToolConstraints,
    ToolContract,
    ToolDefinition,
    ToolGovernance,
    ToolManifest,
)

__all__ = [
    "CHANNEL_NAMES",
    "DEFINITION_KINDS",
    "ENTRYPOINT_PATTERN",
    "JSON_POINTER_PATTERN",
    "PATTERN_MESSAGES",
    "REF_PATTERN",
    "VERSION_LABEL_PATTERN",
    "Approval",
    "ApprovalScope",
    "ArtifactById",
    "ArtifactFromStep",
    "ArtifactSource",
    "Channel",
    "ChannelAction",
    "ChannelMove",
    "Definition",
    "DefinitionBase",
    "DefinitionKind",
    "DefinitionVersion",
    "FilesystemMode",
    "FilesystemPolicy",
    "FromArtifact",
    "FromInput",
    "FromStep",
    "GovernanceLevel",
    "LiteralValue",
    "LoggingPolicy",
    "NetworkMode",
    "NetworkPolicy",
    "PersistenceRecord",
    "PersistenceSubject",
    "Playbook",
    "ProjectConfig",
    "ProjectExecutor",
    "ProjectSettings",
    "PromotionTarget",
    "RedactPattern",
    "Ref",
    "RefField",
    "RefKind",
    "ResourceLimits",
    "RunTarget",
    "SandboxEnvironment",
    "SandboxPath",
    "SandboxPolicy",
    "Step",
    "StepInput",
    "StepPersistence",
    "StorageLocation",
    "ToolConstraints",
    "ToolContract",
    "ToolDefinition",
    "ToolGovernance",
    "ToolManifest",
    "ToolVersionTarget",
    "VersionLabel",
    "field_path",
]


Definition = ToolManifest | Playbook | ProjectConfig | SandboxPolicy
"""Any definition kind (dispatch on ``kind``: see `strongroom.registry.definition_model`)."""
