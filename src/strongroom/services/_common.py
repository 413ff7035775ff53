"""Helpers every service shares: input validation into `ValidationError`, chain hashing,
bounded retry of compare-and-set appends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Final, TypeVar

import pydantic

from strongroom.errors import Conflict, SerializationError, ValidationError
from strongroom.models import (
    GENESIS_HASH,
    INPUT_CONTEXT,
    MAX_INT64,
    SERIALIZATION_REASONS,
    Text,
    VerifyProblem,
    canon_regressed,
    chain_hash,
    entry_hash,
)
from strongroom.models.chain import ChainedEntry
from strongroom.retry import Backoff, retry_async

__all__ = [
    "GENESIS_HASH",
    "chain_hash",
    "check_int",
    "checked_reason",
    "parse",
    "query_of",
    "retry_on_conflict",
    "validation_error",
    "verify_chain",
]

M = TypeVar("M", bound=pydantic.BaseModel)
T = TypeVar("T")


def parse(
    model: type[M],
    data: Any,
    *,
    operation: str,
    names: Mapping[str, str] | None = None,
    **details: Any,
) -> M:
    """Validate ``data`` (a model instance or a mapping) as ``model``; `ValidationError` with
    every failing field's JSON path in ``details.errors`` otherwise (`SerializationError` when
    a JSON value is nested too deeply or is not Unicode). The value counts as input
    (`INPUT_CONTEXT`): text fields refuse control characters. ``names`` maps fields to what
    the caller calls them (``{"after_id": "--cursor"}``) for the message."""
    if isinstance(data, model):
        return data
    if isinstance(data, pydantic.BaseModel):
        data = data.model_dump()
    try:
        return model.model_validate(data, context={INPUT_CONTEXT: True})
    except pydantic.ValidationError as exc:
        raise validation_error(exc, operation=operation, names=names, **details) from exc


def query_of(model: type[M], query: Any, filters: Mapping[str, Any], *, operation: str) -> M:
    """A service's query argument: a ``model`` instance, a mapping of its fields, or (when
    ``query`` is None) its fields as keywords; `ValidationError` naming the parameter for
    anything else, or for a query and keywords together."""
    if query is None:
        return parse(model, dict(filters), operation=operation)
    if filters:
        raise ValidationError(
            f"give a {model.__name__} or its fields as keywords, not both",
            operation=operation,
            reason="conflicting_arguments",
            field="query",
        )
    if isinstance(query, model | Mapping):
        return parse(model, query, operation=operation)
    raise ValidationError(
        f"query must be a {model.__name__} or a mapping of its fields, got {type(query).__name__}",
        operation=operation,
        reason="bad_type",
        field="query",
    )


def validation_error(
    exc: pydantic.ValidationError,
    *,
    operation: str,
    what: str | None = None,
    names: Mapping[str, str] | None = None,
    **details: Any,
) -> ValidationError | SerializationError:
    """A pydantic error as strongroom's: one short sentence about the first failing field in
    the caller's terms (the field, what is wrong, the limit; never the model's name or
    pydantic's wording and links), every failure in ``details.errors`` (``path``, ``field``,
    ``message``, ``type``), and the first one's ``reason``, ``field`` and ``limit``.
    ``what`` is accepted for compatibility and not shown."""
    del what
    raw = exc.errors(include_url=False, include_input=True)
    errors: list[dict[str, Any]] = []
    for err in raw:
        loc = [part for part in err["loc"] if not _internal_loc(part)]
        errors.append(
            {
                "path": "/" + "/".join(str(p) for p in loc),
                "field": _field_name(loc, names),
                "message": _sentence(err, _field_name(loc, names)),
                "type": err["type"],
            }
        )
    if not errors:
        errors = [{"path": "/", "field": "input", "message": "input is invalid", "type": "invalid"}]
    first, first_raw = errors[0], raw[0] if raw else None
    extra: dict[str, Any] = {"field": first["field"]}
    if first_raw is not None:
        limit = _limit(first_raw)
        if limit is not None:
            extra["limit"] = limit
        details.setdefault("reason", _REASONS.get(first_raw["type"], first_raw["type"]))
    for key, value in extra.items():
        details.setdefault(key, value)
    message = first["message"]
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    cls = SerializationError if first["type"] in SERIALIZATION_REASONS else ValidationError
    return cls(message, operation=operation, errors=errors, **details)


#: pydantic's error types as strongroom's ``reason``s (the rest keep pydantic's type).
_REASONS: Final = {
    "string_too_long": "too_long",
    "too_long": "too_long",
    "string_too_short": "too_short",
    "too_short": "too_short",
    "less_than_equal": "out_of_range",
    "less_than": "out_of_range",
    "greater_than_equal": "out_of_range",
    "greater_than": "out_of_range",
    "string_unicode": "not_unicode",
    "enum": "not_allowed",
    "literal_error": "not_allowed",
    "string_pattern_mismatch": "bad_format",
    "value_error": "bad_value",
    "missing": "missing",
    "extra_forbidden": "unknown_field",
}


def _internal_loc(part: str | int) -> bool:
    """pydantic's names for union branches and validator wrappers in an error location."""
    return isinstance(part, str) and ("[" in part or part in _BRANCHES)


_BRANCHES: Final = frozenset(
    {"constrained-str", "function-after", "function-plain", "lax-or-strict"}
)


def _field_name(loc: Sequence[str | int], names: Mapping[str, str] | None) -> str:
    if not loc:
        return "input"
    head = str(loc[0])
    out = (names or {}).get(head, head)
    for part in loc[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _limit(err: Any) -> Any:
    ctx = err.get("ctx") or {}
    for key in ("max_length", "min_length", "le", "ge", "lt", "gt"):
        if key in ctx:
            return ctx[key]
    return None


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _sentence(err: Any, field: str) -> str:
    """One readable sentence about one pydantic error."""
    kind: str = err["type"]
    ctx = err.get("ctx") or {}
    given = err.get("input")
    if isinstance(given, str) and kind in ("too_long", "too_short"):
        kind = f"string_{kind}"  # a length constraint on a validated string type
    if kind == "string_too_long":
        size = f"{len(given):,} characters, " if isinstance(given, str) else ""
        return f"{field} is too long: {size}at most {ctx['max_length']:,}"
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return f"{field} must not be empty"
        return f"{field} is too short: at least {ctx['min_length']:,} characters"
    if kind == "too_long":
        return f"{field} has too many items: at most {ctx.get('max_length')}"
    if kind == "too_short":
        return f"{field} has too few items: at least {ctx.get('min_length')}"
    bounds = {
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("more than", "gt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"{field} must be {words} {ctx[key]}, got {_shown(given)}"
    if kind == "string_unicode":
        return f"{field} is not Unicode text (it holds a lone surrogate?)"
    if kind in ("enum", "literal_error"):
        expected = ctx.get("expected", "one of the allowed values")
        return f"{field} must be {expected}, got {_shown(given)}"
    if kind == "string_pattern_mismatch":
        return f"{field} does not have the expected form, got {_shown(given)}"
    if kind == "missing":
        return f"{field} is required"
    if kind == "extra_forbidden":
        return f"{field} is not a known field"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{field} must be a whole number, got {_shown(given)}"
    message = str(err["msg"]).removeprefix("Value error, ")
    if ctx.get("path") not in (None, "/"):
        field = f"{field} at {ctx['path']}"
    return f"{field}: {message.replace('Input should be', 'should be')}"


class _Reason(pydantic.BaseModel):
    reason: Annotated[Text, pydantic.Field(min_length=1, max_length=1000)]


def checked_reason(reason: str, operation: str) -> str:
    """A governed act's ``reason`` as the records keep it (1-1,000 characters of text, no
    control characters but tabs and line breaks); `ValidationError` naming ``reason`` and
    the limit otherwise, before anything is read or written."""
    return parse(_Reason, {"reason": reason}, operation=operation).reason


def check_int(
    value: int,
    *,
    name: str,
    operation: str,
    low: int = 0,
    high: int = MAX_INT64,
    **details: Any,
) -> int:
    """``value`` if it is an integer from ``low`` to ``high`` (default: what a store's BIGINT
    holds); `ValidationError` (``out_of_range``) naming ``name`` otherwise, so a number no
    column can hold never reaches a driver (an ``OverflowError`` there)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            f"{name} must be a whole number, got {type(value).__name__}",
            operation=operation,
            reason="not_an_integer",
            field=name,
            **details,
        )
    if not low <= value <= high:
        shown = str(value) if len(str(value)) <= 40 else str(value)[:37] + "..."
        raise ValidationError(
            f"{name} must be from {low} to {high:,}, got {shown}",
            operation=operation,
            reason="out_of_range",
            field=name,
            limit=high if value > high else low,
            **details,
        )
    return value


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
