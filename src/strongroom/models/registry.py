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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from strongroom.ids import ActorName, Digest, EntityId, FileName, SafeName, check_digest, check_name
from strongroom.models._base import Record, UtcDatetime, utcnow
from strongroom.models.artifacts import ArtifactRole

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


# -- enums -------------------------------------------------------------------------------------


class DefinitionKind(StrEnum):
    TOOL_MANIFEST = "tool_manifest"
    PLAYBOOK = "playbook"
    PROJECT_CONFIG = "project_config"
    SANDBOX_POLICY = "sandbox_policy"


DEFINITION_KINDS: tuple[str, ...] = tuple(kind.value for kind in DefinitionKind)


class Channel(StrEnum):
    """Named pointers at a definition's versions, in promotion order."""

    DRAFT = "draft"
    STAGING = "staging"
    PRODUCTION = "production"


CHANNEL_NAMES: tuple[str, ...] = tuple(channel.value for channel in Channel)


class ChannelAction(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"


class GovernanceLevel(StrEnum):
    """A0 read-only; A1 draft, needs human review; A2 approval required before execution;
    A3 governed execution with strict audit. Ordered: ``A0 < A1 < A2 < A3``."""

    A0 = "A0"
    A1 = "A1"
    A2 = "A2"
    A3 = "A3"

    @property
    def rank(self) -> int:
        return int(self.value[1])


class RefKind(StrEnum):
    """What a reference points at (the resolver's first argument)."""

    TOOL = "tool"
    PLAYBOOK = "playbook"
    SANDBOX_POLICY = "sandbox_policy"


class FilesystemMode(StrEnum):
    READ_ONLY = "read-only"
    READ_WRITE = "read-write"
    DENY_ALL = "deny-all"


class NetworkMode(StrEnum):
    ALLOWLIST = "allowlist"
    DENY_ALL = "deny-all"


class ApprovalScope(StrEnum):
    TOOL_VERSION = "tool_version"
    PROMOTION = "promotion"
    RUN = "run"


class PersistenceSubject(StrEnum):
    RUN = "run"
    PLAYBOOK = "playbook"
    PROJECT_CONFIG = "project_config"
    TOOL_MANIFEST = "tool_manifest"
    SANDBOX_POLICY = "sandbox_policy"


# -- grammars ----------------------------------------------------------------------------------

VERSION_LABEL_PATTERN = r"^[0-9][A-Za-z0-9]*(?:[._-][A-Za-z0-9]+)*$"
ENTRYPOINT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
JSON_POINTER_PATTERN = r"^(?:/(?:[^~/]|~[01])*)*$"
_SAFE_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
REF_PATTERN = (
    rf"^{_SAFE_NAME_PATTERN}(?:@(?:{'|'.join(CHANNEL_NAMES)}|"
    r"[0-9][A-Za-z0-9]*(?:[._-][A-Za-z0-9]+)*|sha256:[0-9a-f]{64}))?$"
)
_LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,4}$"
_ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_PATTERN = rf"^(?:\*\.)?{_HOST_LABEL}(?:\.{_HOST_LABEL}){{0,8}}$"

_VERSION_RE = re.compile(VERSION_LABEL_PATTERN)

PATTERN_MESSAGES: dict[str, str] = {
    VERSION_LABEL_PATTERN: (
        "a version label starts with a digit and uses letters and digits separated by single "
        "'.', '_' or '-' (e.g. 1.4.0, 2026-12-02.1)"
    ),
    ENTRYPOINT_PATTERN: (
        "an entrypoint is 'package.module:function' (dotted Python identifiers, a colon, "
        "one function name)"
    ),
    JSON_POINTER_PATTERN: (
        "a pointer is an RFC 6901 JSON pointer: '' or '/key/0/...' ('~' only as ~0 or ~1)"
    ),
    _LANGUAGE_PATTERN: "a language is a BCP 47 tag such as en, de-CH or pt-BR",
    _ENV_VAR_PATTERN: "an environment variable name is letters, digits and '_', not a digit first",
    _HOST_PATTERN: "a host is a DNS name or IPv4 address, optionally '*.'-prefixed (*.example.com)",
}
"""Readable messages for the grammars above, keyed by pattern (used to explain a mismatch)."""


VersionLabel = Annotated[
    str,
    Field(
        max_length=64,
        pattern=VERSION_LABEL_PATTERN,
        description="Human version label, unique per definition (e.g. 1.4.0, 2026-12-02.1).",
    ),
]
Entrypoint = Annotated[
    str, Field(max_length=256, pattern=ENTRYPOINT_PATTERN, description="package.module:function")
]
JsonPointer = Annotated[
    str,
    Field(max_length=1024, pattern=JSON_POINTER_PATTERN, description="RFC 6901 JSON pointer."),
]
JsonSchemaDoc = dict[str, Any] | bool
Text = Annotated[str, Field(max_length=4000)]
Title = Annotated[str, Field(min_length=1, max_length=200)]


# -- references --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed reference: ``id``, ``id@version``, ``id@channel`` or ``id@sha256:<hex>``.

    At most one of ``version``, ``channel``, ``digest`` is set; none means "unpinned". The
    text form (``str(ref)``) is the canonical spelling and what models serialise to.
    """

    id: str
    version: str | None = None
    channel: Channel | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        check_name(self.id)
        if sum(part is not None for part in (self.version, self.channel, self.digest)) > 1:
            raise ValueError("a reference pins at most one of version, channel or digest")
        if self.version is not None and (
            len(self.version) > 64 or not _VERSION_RE.fullmatch(self.version)
        ):
            raise ValueError(PATTERN_MESSAGES[VERSION_LABEL_PATTERN])
        if self.channel is not None:
            object.__setattr__(self, "channel", Channel(self.channel))
        if self.digest is not None:
            object.__setattr__(self, "digest", check_digest(self.digest))

    @classmethod
    def parse(cls, text: str) -> Ref:
        """Parse ``ID[@VERSION|@CHANNEL|@sha256:HEX]``; ValueError with a readable reason."""
        if not isinstance(text, str):
            raise ValueError("a reference is a string: ID, ID@VERSION, ID@CHANNEL or ID@sha256:HEX")
        ident, at, selector = text.partition("@")
        try:
            check_name(ident)
        except ValueError:
            raise ValueError(
                f"{text!r} is not a reference: the id before '@' must be 1-128 ASCII letters, "
                "digits, '.', '_' or '-' starting with a letter or digit"
            ) from None
        if not at:
            return cls(ident)
        if selector in CHANNEL_NAMES:
            return cls(ident, channel=Channel(selector))
        if selector.startswith("sha256:"):
            try:
                return cls(ident, digest=check_digest(selector))
            except ValueError:
                raise ValueError(
                    f"{text!r} is not a reference: a digest is sha256: and 64 lowercase hex digits"
                ) from None
        if _VERSION_RE.fullmatch(selector) and len(selector) <= 64:
            return cls(ident, version=selector)
        raise ValueError(
            f"{text!r} is not a reference: after '@' comes a version label (starting with a "
            f"digit, e.g. 1.4.0), a channel ({', '.join(CHANNEL_NAMES)}) or sha256:<hex>"
        )

    @property
    def selector(self) -> str | None:
        """What follows the ``@`` (None when unpinned)."""
        if self.version is not None:
            return self.version
        if self.channel is not None:
            return self.channel.value
        if self.digest is not None:
            return f"sha256:{self.digest}"
        return None

    @property
    def pinned(self) -> bool:
        """True when the reference names one immutable version (by label or digest)."""
        return self.version is not None or self.digest is not None

    def __str__(self) -> str:
        selector = self.selector
        return self.id if selector is None else f"{self.id}@{selector}"


def _coerce_ref(value: Any) -> Ref:
    if isinstance(value, Ref):
        return value
    return Ref.parse(value)


RefField = Annotated[
    Ref,
    BeforeValidator(_coerce_ref),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": REF_PATTERN,
            "description": "ID, ID@VERSION, ID@CHANNEL (draft|staging|production) or "
            "ID@sha256:<hex>.",
        }
    ),
]


# -- definitions: the shared base --------------------------------------------------------------


def _require_kind(schema: dict[str, Any]) -> None:
    """In the exported JSON Schema ``kind`` is required (Python callers may omit it)."""
    required = schema.setdefault("required", [])
    if "kind" not in required:
        required.insert(0, "kind")


class DefinitionBase(Record):
    """Common shape of the four definition kinds.

    Subclasses declare ``kind`` (a literal with a default, so Python callers may omit it),
    their id field and ``version``. `definition_id` and `references` give generic access.
    """

    model_config = ConfigDict(json_schema_extra=_require_kind)

    ID_FIELD: ClassVar[str]
    KIND: ClassVar[DefinitionKind]

    @property
    def definition_id(self) -> str:
        value = getattr(self, self.ID_FIELD)
        assert isinstance(value, str)
        return value

    def references(self) -> Iterator[tuple[str, RefKind, Ref]]:
        """Every reference to another definition: ``(json_path, what, ref)``."""
        return iter(())


# -- tool manifests ----------------------------------------------------------------------------


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
    entrypoint: Entrypoint
    contract: ToolContract
    governance: ToolGovernance
    constraints: ToolConstraints
    policy_refs: list[RefField] = Field(
        default_factory=list, description="Sandbox policies this tool runs under."
    )


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
    def max_governance_level(self) -> GovernanceLevel:
        """The highest level among the tools (what promotion policy looks at)."""
        return max((tool.governance.level for tool in self.tools), key=lambda lv: lv.rank)


# -- playbooks ---------------------------------------------------------------------------------


class FromInput(Record):
    """Take the value of one of the run's inputs."""

    from_input: Annotated[str, Field(min_length=1, max_length=200)]


class FromStep(Record):
    """Take (part of) an earlier step's output: the JSON value at ``pointer`` (``""`` = all).

    Naming a step here makes it a dependency (see `Step.upstream`)."""

    from_step: SafeName
    pointer: JsonPointer = ""


class ArtifactFromStep(Record):
    """The artifact an earlier step stored (its ``persistence.store_output`` must be true)."""

    step: SafeName


class ArtifactById(Record):
    """A fixed artifact (reference data), optionally pinned to its sha256."""

    artifact_id: EntityId
    sha256: Digest | None = None


def _dispatch(choices: dict[str, type[Record]], what: str, slug: str) -> Callable[[Any], Any]:
    """A before-validator picking the model of a key-discriminated union by which of the keys
    is present, so an error's path is the real field path (no union-member noise)."""
    names = list(choices)
    listed = ", ".join(names[:-1]) + f" or {names[-1]}"

    def pick(value: Any) -> Any:
        if isinstance(value, tuple(choices.values())):
            return value
        if not isinstance(value, dict):
            raise PydanticCustomError(
                f"{slug}_type", f"{what} must be a mapping with one of {listed}"
            )
        present = [name for name in names if name in value]
        if len(present) != 1:
            found = f"; got {' and '.join(present)}" if present else ""
            raise PydanticCustomError(
                f"{slug}_choice", f"{what} takes exactly one of {listed}{found}"
            )
        return choices[present[0]].model_validate(value)

    pick.__name__ = f"pick_{slug}"
    return pick


_pick_artifact_source = _dispatch(
    {"step": ArtifactFromStep, "artifact_id": ArtifactById}, "an artifact source", "artifact_source"
)
ArtifactSource = Annotated[ArtifactFromStep | ArtifactById, BeforeValidator(_pick_artifact_source)]


class FromArtifact(Record):
    """Pass an artifact (as a reference ``{artifact_id, sha256}``) to the tool."""

    from_artifact: ArtifactSource


class LiteralValue(Record):
    """A constant: any JSON value (``null`` included)."""

    value: Any


_pick_step_input = _dispatch(
    {
        "from_input": FromInput,
        "from_step": FromStep,
        "from_artifact": FromArtifact,
        "value": LiteralValue,
    },
    "an input",
    "step_input",
)
StepInput = Annotated[
    FromInput | FromStep | FromArtifact | LiteralValue, BeforeValidator(_pick_step_input)
]


class StepPersistence(Record):
    """What is kept of a step: its output as an artifact (with this role), and a run-state
    snapshot after it completes (the resume point)."""

    store_output: bool = True
    role: Literal[ArtifactRole.PHASE_OUTPUT, ArtifactRole.EXPORT] = ArtifactRole.PHASE_OUTPUT
    snapshot: bool = True


class Step(Record):
    step_id: SafeName
    name: Annotated[str, Field(max_length=200)] = ""
    description: Text = ""
    tool: RefField
    inputs: dict[str, StepInput] = Field(
        default_factory=dict, description="Request field name -> where its value comes from."
    )
    depends_on: list[SafeName] = Field(default_factory=list)
    persistence: StepPersistence = Field(default_factory=StepPersistence)

    def upstream(self) -> dict[str, str]:
        """Every step this one depends on -> the path that says so (first mention wins):
        ``depends_on`` entries plus every ``from_step`` / ``from_artifact.step`` input."""
        found: dict[str, str] = {}
        for d, dep in enumerate(self.depends_on):
            found.setdefault(dep, f"depends_on[{d}]")
        for key, source in self.inputs.items():
            where = field_path(["inputs", key])
            if isinstance(source, FromStep):
                found.setdefault(source.from_step, f"{where}.from_step")
            elif isinstance(source, FromArtifact) and isinstance(
                source.from_artifact, ArtifactFromStep
            ):
                found.setdefault(source.from_artifact.step, f"{where}.from_artifact.step")
        return found


class Playbook(DefinitionBase):
    """A named, versioned pipeline of dependency-linked steps, each invoking a tool."""

    ID_FIELD: ClassVar[str] = "playbook_id"
    KIND: ClassVar[DefinitionKind] = DefinitionKind.PLAYBOOK

    kind: Literal["playbook"] = "playbook"
    playbook_id: SafeName
    name: Title
    version: VersionLabel
    description: Text = ""
    owner: ActorName | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    steps: list[Step] = Field(min_length=1, max_length=1000)

    def references(self) -> Iterator[tuple[str, RefKind, Ref]]:
        for s, step in enumerate(self.steps):
            yield f"steps[{s}].tool", RefKind.TOOL, step.tool

    def step(self, step_id: str) -> Step | None:
        return next((step for step in self.steps if step.step_id == step_id), None)


# -- project configs ---------------------------------------------------------------------------


class ProjectSettings(Record):
    paths: dict[str, Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=dict, description="Named paths (input, output, glossary...)."
    )
    languages: list[Annotated[str, Field(pattern=_LANGUAGE_PATTERN)]] = Field(default_factory=list)
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="Default run inputs and options."
    )


class ProjectConfig(DefinitionBase):
    ID_FIELD: ClassVar[str] = "project_id"
    KIND: ClassVar[DefinitionKind] = DefinitionKind.PROJECT_CONFIG

    kind: Literal["project_config"] = "project_config"
    project_id: SafeName
    name: Title
    version: VersionLabel
    description: Text = ""
    owner: ActorName | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    settings: ProjectSettings = Field(default_factory=ProjectSettings)
    playbooks: list[RefField] = Field(default_factory=list)
    policies: list[RefField] = Field(default_factory=list, description="Sandbox policies.")

    def references(self) -> Iterator[tuple[str, RefKind, Ref]]:
        for p, ref in enumerate(self.playbooks):
            yield f"playbooks[{p}]", RefKind.PLAYBOOK, ref
        for p, ref in enumerate(self.policies):
            yield f"policies[{p}]", RefKind.SANDBOX_POLICY, ref


# -- sandbox policies --------------------------------------------------------------------------


def _check_sandbox_path(value: str) -> str:
    if "\x00" in value:
        raise ValueError("a path must not contain NUL")
    if ".." in value.replace("\\", "/").split("/"):
        raise ValueError("a path must not contain a '..' segment")
    return value


SandboxPath = Annotated[
    str, Field(min_length=1, max_length=1024), AfterValidator(_check_sandbox_path)
]


def _check_redact_pattern(value: str) -> str:
    try:
        compiled = re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    if compiled.fullmatch(""):
        raise ValueError("the pattern matches the empty string, so it would redact everywhere")
    return value


RedactPattern = Annotated[
    str,
    Field(min_length=1, max_length=1000, description="Python regular expression."),
    AfterValidator(_check_redact_pattern),
]


class FilesystemPolicy(Record):
    """Paths are allowlists; ``mode`` is the ceiling. ``deny-all``: no paths at all;
    ``read-only``: read ``read_paths``, write nothing (``write_paths`` must be empty);
    ``read-write``: read ``read_paths`` and ``write_paths``, write ``write_paths``."""

    mode: FilesystemMode = FilesystemMode.DENY_ALL
    read_paths: list[SandboxPath] = Field(default_factory=list)
    write_paths: list[SandboxPath] = Field(default_factory=list)


class NetworkPolicy(Record):
    """``deny-all``: no network (lists must be empty). ``allowlist``: only ``allow_hosts``
    (at least one), on ``allow_ports`` (empty = any port)."""

    mode: NetworkMode = NetworkMode.DENY_ALL
    allow_hosts: list[Annotated[str, Field(max_length=253, pattern=_HOST_PATTERN)]] = Field(
        default_factory=list
    )
    allow_ports: list[Annotated[int, Field(ge=1, le=65_535)]] = Field(default_factory=list)


class SandboxEnvironment(Record):
    allowlist: list[Annotated[str, Field(pattern=_ENV_VAR_PATTERN)]] = Field(
        default_factory=list, description="Environment variables passed through; none else."
    )


class ResourceLimits(Record):
    cpu_cores: float = Field(ge=0.1, le=1024)
    memory_mb: int = Field(ge=64, le=16_777_216)
    timeout_seconds: int = Field(ge=1, le=86_400)


class LoggingPolicy(Record):
    redact_patterns: list[RedactPattern] = Field(default_factory=list)


class SandboxPolicy(DefinitionBase):
    ID_FIELD: ClassVar[str] = "sandbox_id"
    KIND: ClassVar[DefinitionKind] = DefinitionKind.SANDBOX_POLICY

    kind: Literal["sandbox_policy"] = "sandbox_policy"
    sandbox_id: SafeName
    name: Title
    version: VersionLabel
    owner: ActorName
    description: Text = ""
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    execution_lane: Literal["python"] = "python"
    filesystem: FilesystemPolicy = Field(default_factory=FilesystemPolicy)
    network: NetworkPolicy = Field(default_factory=NetworkPolicy)
    environment: SandboxEnvironment = Field(default_factory=SandboxEnvironment)
    resources: ResourceLimits
    logging: LoggingPolicy = Field(default_factory=LoggingPolicy)


Definition = ToolManifest | Playbook | ProjectConfig | SandboxPolicy
"""Any definition kind (dispatch on ``kind``: see `strongroom.registry.definition_model`)."""


# -- what the registry stores about definitions ------------------------------------------------


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
    reason: Annotated[str, Field(min_length=1, max_length=1000)]
    approval_id: EntityId | None = Field(default=None, description="The approval it relied on.")
    at: UtcDatetime = Field(default_factory=utcnow)


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
    reason: Annotated[str, Field(min_length=1, max_length=1000)]
    created_at: UtcDatetime = Field(default_factory=utcnow)
    expires_at: UtcDatetime | None = None
    revoked_at: UtcDatetime | None = None
    revoked_by: ActorName | None = None
    revoke_reason: Annotated[str, Field(max_length=1000)] | None = None

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


def field_path(loc: Iterable[int | str]) -> str:
    """A location as a JSON-path-like string: ``("steps", 2, "inputs", "text", "pointer")`` ->
    ``steps[2].inputs.text.pointer``; a key that is not identifier-like (ASCII letter or ``_``
    first, then letters, digits, ``_``, ``-``) is quoted: ``settings.paths["out dir"]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}"
        else:
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            out += f'["{escaped}"]'
    return out.removeprefix(".")


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
