"""Project configs and sandbox policies (with the policy's filesystem, network, environment,
resource and logging parts)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from strongroom.ids import ActorName, SafeName, check_name
from strongroom.models._base import Record, UtcDatetime
from strongroom.models.registry._common import (
    _ENV_VAR_PATTERN,
    _HOST_PATTERN,
    _LANGUAGE_PATTERN,
    DefinitionBase,
    DefinitionKind,
    FilesystemMode,
    NetworkMode,
    Ref,
    RefField,
    RefKind,
    Text,
    Title,
    VersionLabel,
)
from strongroom.models.retention import RetentionPolicy


class ProjectSettings(Record):
    paths: dict[str, Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=dict, description="Named paths (input, output, glossary...)."
    )
    languages: list[Annotated[str, Field(pattern=_LANGUAGE_PATTERN)]] = Field(default_factory=list)
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="Default run inputs and options."
    )


QueueName = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,127}$"),
    AfterValidator(check_name),
]
"""A `SafeName` a worker can listen on: `strongroom worker --queue` takes letters, digits,
'-' and '.', so a project names no queue (one with '_') that no worker could serve."""


class ProjectExecutor(Record):
    """Where the steps of this project's runs go when the caller gives no ``--executor``.
    Never a broker URL: it can carry a password, and a project config is published, signed
    and shown to every reader of the registry; the broker comes from ``--broker`` or
    ``$STRONGROOM_BROKER_URL`` of the process that starts or resumes the run."""

    kind: Literal["local", "celery"] = Field(
        default="local",
        description="local: the steps run in the process that starts the run; celery: they "
        "are sent to `strongroom worker` processes through the broker (given by --broker or "
        "$STRONGROOM_BROKER_URL, never here: a broker URL can carry a password).",
    )
    queue: QueueName | None = Field(
        default=None,
        description="The Celery queue the steps are sent to (the workers' --queue); None: "
        "the default queue, strongroom. Letters, digits, '-' and '.'. Ignored for local.",
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
    retention: RetentionPolicy | None = Field(
        default=None,
        description="Retention rules for this project's runs (`strongroom gc plan` applies "
        "them when no --policy is given); a rule naming another project is refused.",
    )
    executor: ProjectExecutor | None = Field(
        default=None,
        description="Where this project's runs execute their steps when `strongroom run "
        "--project` or `strongroom resume` is given no --executor (an explicit --executor "
        "wins); None: locally. It names no broker URL (that can carry a password): the broker "
        "comes from --broker or $STRONGROOM_BROKER_URL.",
    )

    @model_validator(mode="after")
    def _own_rules(self) -> Self:
        if self.retention is not None:
            for n, rule in enumerate(self.retention.rules):
                if rule.project is not None and rule.project != self.project_id:
                    raise ValueError(
                        f"retention.rules[{n}] names project {rule.project!r}: a project "
                        f"config's rules cover its own project ({self.project_id!r}) only"
                    )
        return self

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
    max_response_mb: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Largest JSON response a tool may return; larger results belong in "
        "files under a write path.",
    )
    max_write_mb: int = Field(
        default=1024,
        ge=1,
        le=65_536,
        description="Most bytes a tool may write in one invocation, scratch folder and write "
        "paths together (staged in memory where the host allows a mount namespace).",
    )
    max_files: int = Field(
        default=100_000,
        ge=16,
        le=10_000_000,
        description="Most files and folders a tool may create in one invocation, scratch "
        "folder and write paths together.",
    )


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
