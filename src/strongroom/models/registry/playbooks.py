"""Playbooks: step inputs (where a request field's value comes from), steps and playbooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from strongroom.ids import ActorName, Digest, EntityId, SafeName
from strongroom.models._base import Record, UtcDatetime
from strongroom.models.artifacts import ArtifactRole
from strongroom.models.registry._common import (
    DefinitionBase,
    DefinitionKind,
    JsonPointer,
    Ref,
    RefField,
    RefKind,
    Text,
    Title,
    VersionLabel,
    field_path,
)


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
    steps: list[Step] = Field(min_length=1, max_length=10_000)

    def references(self) -> Iterator[tuple[str, RefKind, Ref]]:
        for s, step in enumerate(self.steps):
            yield f"steps[{s}].tool", RefKind.TOOL, step.tool

    def step(self, step_id: str) -> Step | None:
        return next((step for step in self.steps if step.step_id == step_id), None)
