"""Where a step's request fields come from: the run's inputs, an earlier step's output (an
RFC 6901 JSON pointer into it), an artifact (passed as ``{artifact_id, sha256}``) or a
literal value."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from strongroom.errors import IntegrityError, ValidationError
from strongroom.models.registry import (
    ArtifactById,
    ArtifactFromStep,
    FromArtifact,
    FromInput,
    FromStep,
    LiteralValue,
    Step,
)
from strongroom.orchestrator.state import PlanState

if TYPE_CHECKING:
    from strongroom.vault import Vault

__all__ = ["UpstreamOutputs", "resolve_pointer", "step_request"]

OutputLoader = Callable[[str], Awaitable[Any]]
ArtifactChecker = Callable[[str, str | None], Awaitable[str]]


def resolve_pointer(document: Any, pointer: str, *, where: str) -> Any:
    """The value at ``pointer`` (``""`` = the whole document); `ValidationError` naming the
    step input when it does not exist."""
    if pointer == "":
        return document
    value = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and token in value:
            value = value[token]
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            raise ValidationError(
                f"{where}: the pointer {pointer!r} does not exist in the output",
                operation="orchestrator.wire",
                reason="missing_pointer",
                pointer=pointer,
            )
    return value


async def step_request(
    step: Step, plan: PlanState, load_output: OutputLoader, check_artifact: ArtifactChecker
) -> dict[str, Any]:
    """The request a step's tool gets, built from its ``inputs`` wiring."""
    request: dict[str, Any] = {}
    for name, source in step.inputs.items():
        where = f"step {step.step_id} input {name}"
        if isinstance(source, LiteralValue):
            request[name] = source.value
        elif isinstance(source, FromInput):
            if source.from_input not in plan.inputs:
                raise ValidationError(
                    f"{where}: the run has no input {source.from_input!r} (give it with "
                    f"--input {source.from_input}=VALUE or in the project config's defaults)",
                    operation="orchestrator.wire",
                    reason="missing_input",
                    input=source.from_input,
                )
            request[name] = plan.inputs[source.from_input]
        elif isinstance(source, FromStep):
            output = await load_output(source.from_step)
            request[name] = resolve_pointer(output, source.pointer, where=where)
        elif isinstance(source, FromArtifact):
            origin = source.from_artifact
            if isinstance(origin, ArtifactFromStep):
                upstream = plan.steps[origin.step]
                if upstream.output_artifact_id is None or upstream.output_sha256 is None:
                    raise ValidationError(
                        f"{where}: step {origin.step} stored no output artifact",
                        operation="orchestrator.wire",
                        reason="no_artifact",
                    )
                request[name] = {
                    "artifact_id": upstream.output_artifact_id,
                    "sha256": upstream.output_sha256,
                }
            else:
                assert isinstance(origin, ArtifactById)
                sha256 = await check_artifact(origin.artifact_id, origin.sha256)
                request[name] = {"artifact_id": origin.artifact_id, "sha256": sha256}
    return request


class UpstreamOutputs:
    """The outputs of a plan's completed steps, for the steps downstream: kept in ``cache``,
    inline in the plan, or read back from their artifact (verified against the sha256 the
    plan recorded). Shared by the driver and by a worker that runs one step."""

    def __init__(self, vault: Vault, plan: PlanState, cache: dict[str, Any] | None = None) -> None:
        self._vault = vault
        self._plan = plan
        self.cache: dict[str, Any] = {} if cache is None else cache

    async def load(self, step_id: str) -> Any:
        if step_id in self.cache:
            return self.cache[step_id]
        state = self._plan.steps[step_id]
        if state.output_artifact_id is None:
            value = state.output
        else:
            sha256 = await self._artifact_sha256(
                state.output_artifact_id,
                state.output_sha256,
                f"the output artifact of step {step_id} is not the one the run recorded",
                "orchestrator.resume",
            )
            value = json.loads(await self._vault.blobs.get_bytes(sha256))  # verified read
        self.cache[step_id] = value
        return value

    async def check_artifact(self, artifact_id: str, sha256: str | None) -> str:
        return await self._artifact_sha256(
            artifact_id,
            sha256,
            f"artifact {artifact_id} is not the pinned content",
            "orchestrator.wire",
        )

    async def _artifact_sha256(
        self, artifact_id: str, expected: str | None, message: str, operation: str
    ) -> str:
        """The artifact's sha256, `IntegrityError` (``message``) if it is not ``expected``."""
        meta = await self._vault.artifacts.get(artifact_id)
        if expected is not None and meta.sha256 != expected:
            raise IntegrityError(message, operation=operation, artifact_id=artifact_id)
        return meta.sha256
