"""Shared pieces of the embedding API: error conversion, JSON encoding, phase names."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel

from strongroom.errors import (
    ErrorInfo,
    SerializationError,
    StrongroomError,
    ValidationError,
)
from strongroom.ids import check_name
from strongroom.models import (
    RunState,
)
from strongroom.secrets import Redactor

__all__ = [
    "MAX_ERROR_MESSAGE",
    "OUTPUT_JSONL_NAME",
    "OUTPUT_MARK",
    "OUTPUT_NAME",
    "M",
    "completed_in_order",
    "encode_json",
    "error_info",
    "model_stream",
    "phase_name",
]

M = TypeVar("M", bound=BaseModel)

#: File name of a phase's JSON output artifact (``phase.output(...)``).
OUTPUT_NAME = "output.json"
#: File name of a phase's output when it is a sequence of models (streamed as JSONL).
OUTPUT_JSONL_NAME = "output.jsonl"
# Metadata key marking the output artifact among a phase's artifacts.
OUTPUT_MARK = "pipeline_output"
MAX_ERROR_MESSAGE = 2000


def error_info(exc: BaseException, redactor: Redactor) -> ErrorInfo:
    """The `ErrorInfo` recorded for ``exc``: a `StrongroomError` keeps its code and details;
    anything else becomes code ``exception`` with the exception type in the details.
    Message and details pass through ``redactor`` (they land in records): `PipelineRun`
    gives its vault's (``vault.redactor``, built from ``redact_patterns``)."""
    if isinstance(exc, StrongroomError):
        return redactor.error(exc.to_info())
    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
        return ErrorInfo(
            code="cancelled",
            message=f"interrupted by {type(exc).__name__}",
            details={"type": type(exc).__name__},
        )
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    text = str(exc)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return ErrorInfo(
        code="exception",
        message=redactor.text(message)[:MAX_ERROR_MESSAGE],  # redact, then cut
        details={"type": name},
    )


def model_stream(value: Any) -> Iterable[BaseModel] | AsyncIterable[BaseModel] | None:
    """``value`` as a sequence of pydantic models to store as JSONL, or None when it is not
    one: a list or tuple whose items are all models (not empty), an async iterable, or an
    iterator/generator (its items are checked as they are written)."""
    if isinstance(value, list | tuple):
        if value and all(isinstance(item, BaseModel) for item in value):
            return value
        return None
    if isinstance(value, AsyncIterable):
        return _checked_async(value)
    if isinstance(value, Iterator):
        return _checked(value)
    return None


def _not_a_model(item: object) -> SerializationError:
    return SerializationError(
        f"a streamed phase output holds models only, not {type(item).__name__}",
        operation="pipeline.output",
        reason="not_a_model",
    )


def _checked(items: Iterator[Any]) -> Iterator[BaseModel]:
    for item in items:
        if not isinstance(item, BaseModel):
            raise _not_a_model(item)
        yield item


async def _checked_async(items: AsyncIterable[Any]) -> AsyncIterator[BaseModel]:
    async for item in items:
        if not isinstance(item, BaseModel):
            raise _not_a_model(item)
        yield item


def encode_json(value: Any, phase: str) -> bytes:
    if isinstance(value, BaseModel):
        return value.model_dump_json().encode()
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"output of phase {phase!r} is not JSON-serializable: {exc}",
            operation="pipeline.output",
            phase=phase,
        ) from exc


def phase_name(name: str, operation: str) -> str:
    try:
        return check_name(name)
    except ValueError as exc:
        raise ValidationError(
            f"invalid phase name {name[:80]!r}: {exc}", operation=operation
        ) from exc


def completed_in_order(state: RunState) -> list[str]:
    ordered: list[str] = []
    for event in state.phase_history:
        if event.status in ("completed", "skipped") and event.phase not in ordered:
            ordered.append(event.phase)
    done = [name for name in ordered if name in state.phase_artifacts]
    return done + sorted(set(state.phase_artifacts) - set(done))
