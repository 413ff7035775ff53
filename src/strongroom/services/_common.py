"""Helpers every service shares: input validation into `ValidationError`, chain hashing,
bounded retry of compare-and-set appends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import pydantic

from strongroom.errors import Conflict, ValidationError
from strongroom.models import GENESIS_HASH, VerifyProblem, canon_regressed, chain_hash, entry_hash
from strongroom.models.chain import ChainedEntry
from strongroom.retry import Backoff, retry_async

__all__ = [
    "GENESIS_HASH",
    "chain_hash",
    "parse",
    "retry_on_conflict",
    "validation_error",
    "verify_chain",
]

M = TypeVar("M", bound=pydantic.BaseModel)
T = TypeVar("T")


def parse(model: type[M], data: Any, *, operation: str, **details: Any) -> M:
    """Validate ``data`` (a model instance or a mapping) as ``model``; `ValidationError` with
    every failing field's JSON path in ``details.errors`` otherwise."""
    if isinstance(data, model):
        return data
    if isinstance(data, pydantic.BaseModel):
        data = data.model_dump()
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise validation_error(exc, operation=operation, what=model.__name__, **details) from exc


def validation_error(
    exc: pydantic.ValidationError, *, operation: str, what: str, **details: Any
) -> ValidationError:
    errors = [
        {"path": "/" + "/".join(str(p) for p in err["loc"]), "message": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    first = errors[0] if errors else {"path": "/", "message": "invalid"}
    return ValidationError(
        f"invalid {what}: {first['path']}: {first['message']}",
        operation=operation,
        errors=errors,
        **details,
    )


#: A lost compare-and-set runs again after a full-jitter pause below 1 ms, doubling up to
#: 256 ms; 50 runs in all.
CONFLICT_BACKOFF: Final = Backoff(attempts=50, base=0.001, cap=0.001 * 2**8)


async def retry_on_conflict(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: Backoff = CONFLICT_BACKOFF,
    final: frozenset[str] = frozenset({"sealed"}),
) -> T:
    """Re-run a read-compute-append ``attempt`` when a racing writer won the compare-and-set.
    A `Conflict` whose ``reason`` is in ``final`` (a sealed log) is raised at once: trying
    again cannot help."""

    def retryable(exc: Exception) -> bool:
        return isinstance(exc, Conflict) and exc.details.get("reason") not in final

    return await retry_async(attempt, policy, retryable=retryable)


def verify_chain(
    entries: Sequence[ChainedEntry], *, subject_prefix: str, kind: str, first_seq: int = 1
) -> list[VerifyProblem]:
    """Replay a chain: consecutive seqs, each prev_hash the previous hash, each hash recomputed."""
    problems: list[VerifyProblem] = []
    prev = GENESIS_HASH

    def problem(entry: ChainedEntry, message: str) -> None:
        problems.append(
            VerifyProblem(
                kind=kind,
                code="integrity_error",
                subject=f"{subject_prefix}#{entry.seq}",
                message=message,
            )
        )

    previous: ChainedEntry | None = None
    for expected_seq, entry in enumerate(entries, start=first_seq):
        if entry.seq != expected_seq:
            problem(entry, f"sequence gap: expected entry {expected_seq}, found {entry.seq}")
        if entry.prev_hash != prev:
            problem(entry, "chain broken: prev_hash does not match the previous entry's hash")
        if entry_hash(entry) != entry.hash:
            problem(entry, "entry content does not match its hash (edited after writing)")
        if canon_regressed(previous, entry):
            problem(entry, "entry hashed in the form before RFC 8785 after one hashed with it")
        if entry.canon is not None:
            previous = entry
        prev = entry.hash
    return problems
