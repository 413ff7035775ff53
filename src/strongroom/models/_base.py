"""Shared model base, time helpers and the checks every JSON value from outside goes through."""

from __future__ import annotations

import json
import math
import re
import sys
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo
from pydantic_core import PydanticCustomError

from strongroom.errors import SerializationError, StrongroomError, ValidationError

__all__ = [
    "INPUT_CONTEXT",
    "MAX_INT64",
    "MAX_JSON_DEPTH",
    "SERIALIZATION_REASONS",
    "JsonObject",
    "JsonValue",
    "Record",
    "SingleLineText",
    "Text",
    "UtcDatetime",
    "check_json_value",
    "json_value_problem",
    "load_json_text",
    "utcnow",
]

MAX_JSON_DEPTH: Final = 128
"""How deeply a JSON value from outside (log data, artifact metadata, run state, tool input,
an option's JSON) may nest: far below what the serializers and the hash can walk (pydantic's
serializer stops near 255 levels, Python's recursion near 1,000), so deep input is a
`SerializationError` (reason ``too_deep``) at the door, never a crash later."""

MAX_INT64: Final = 2**63 - 1
"""The largest integer a store column (SQLite's and PostgreSQL's BIGINT) holds."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is before year 1 in UTC
        raise ValueError("timestamp is out of range in UTC") from None


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]


class Record(BaseModel):
    """Base of every record: unknown keys are refused, values validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# -- JSON values from outside -------------------------------------------------------------------

#: What `json_value_problem` reports: (reason, message, JSON path of the offending value).
JsonProblem = tuple[str, str, str]

#: Reasons that are a `SerializationError` (the value cannot be stored as JSON at all); the
#: others are a `ValidationError` (JSON can write it, strongroom does not accept it).
SERIALIZATION_REASONS: Final = frozenset({"too_deep", "not_canonicalizable"})


#: A path as a linked list, built in O(1) per value: (parent, key), or None at the root.
_Path = tuple[Any, str | int] | None


def _pointer(path: _Path) -> str:
    keys: list[str] = []
    while path is not None:
        path, key = path
        keys.append(str(key).replace("~", "~0").replace("/", "~1"))
    return "/" + "/".join(reversed(keys))


def _has_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _spelling(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


def json_value_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> JsonProblem | None:
    """The first thing in ``value`` strongroom refuses to store as JSON, or None.

    Walked iteratively (a 100,000-deep value is reported, never a `RecursionError`): nesting
    deeper than ``max_depth`` (``too_deep``); NaN or an infinity (``not_a_number``: JSON
    has no spelling for them and pydantic would write them as null); a lone surrogate in a
    string or key (``not_canonicalizable``: not UTF-8). Other values (datetimes, enums...)
    are left to pydantic, which writes them as JSON."""
    stack: list[tuple[Any, int, _Path]] = [(value, 0, None)]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            if _has_surrogate(item):
                return (
                    "not_canonicalizable",
                    "holds a lone surrogate (U+D800-U+DFFF), which is not Unicode text",
                    _pointer(path),
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                return (
                    "not_a_number",
                    f"{_spelling(item)} is not a number JSON can hold (NaN and the "
                    "infinities are refused, as is a number too large for a float, e.g. 1e999)",
                    _pointer(path),
                )
        elif isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                return ("too_deep", f"nested deeper than {max_depth} levels", _pointer(path))
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str) and _has_surrogate(key):
                        return (
                            "not_canonicalizable",
                            "has a key holding a lone surrogate (U+D800-U+DFFF)",
                            _pointer(path),
                        )
                    stack.append((child, depth + 1, (path, key)))
            else:
                stack.extend((child, depth + 1, (path, at)) for at, child in enumerate(item))
    return None


def check_json_value(value: Any, *, field: str, operation: str, **details: Any) -> None:
    """`json_value_problem` as the strongroom error a service raises at its door:
    `SerializationError` for ``too_deep`` and ``not_canonicalizable``,
    `ValidationError` for ``not_a_number``; the message names ``field``."""
    problem = json_value_problem(value)
    if problem is None:
        return
    reason, message, path = problem
    where = field if path == "/" or reason == "too_deep" else f"{field} at {path}"
    cls: type[StrongroomError] = (
        SerializationError if reason in SERIALIZATION_REASONS else ValidationError
    )
    raise cls(
        f"{where}: {message}", operation=operation, reason=reason, field=field, path=path, **details
    )


def _checked_json(value: Any) -> Any:
    problem = json_value_problem(value)
    if problem is not None:
        reason, message, path = problem
        shown_path = "/" if reason == "too_deep" else path
        raise PydanticCustomError(reason, "{message}", {"message": message, "path": shown_path})
    return value


JsonValue = Annotated[Any, AfterValidator(_checked_json)]
"""Any JSON value, refused (`json_value_problem`) when too deep, not finite or not UTF-8."""

JsonObject = Annotated[dict[str, Any], AfterValidator(_checked_json)]
"""A JSON object, checked like `JsonValue`."""


# -- text from outside --------------------------------------------------------------------------

# C0 and C1 control characters and DEL; `_MULTI_LINE_CONTROL` spares tab, LF and CR.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MULTI_LINE_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


INPUT_CONTEXT: Final = "strongroom_input"
"""The validation-context key `strongroom.services.parse` sets: the value comes from a caller
(a CLI option, an API parameter), not from the store. `Text` and `SingleLineText` refuse
control characters only then, so a record stored before the rule still loads."""


def _check_text(value: str, info: ValidationInfo, pattern: re.Pattern[str]) -> str:
    if not (isinstance(info.context, dict) and info.context.get(INPUT_CONTEXT)):
        return value
    found = pattern.search(value)
    if found is not None:
        raise PydanticCustomError(
            "control_character",
            "holds the control character U+{code} (not allowed here)",
            {"code": f"{ord(found.group()):04X}"},
        )
    return value


def _multi_line(value: str, info: ValidationInfo) -> str:
    return _check_text(value, info, _MULTI_LINE_CONTROL)


def _single_line(value: str, info: ValidationInfo) -> str:
    return _check_text(value, info, _CONTROL)


Text = Annotated[str, AfterValidator(_multi_line)]
"""Free text (a description, a reason): tabs and line breaks allowed, other control
characters (escape sequences a terminal would obey, NUL...) refused in input (see
`INPUT_CONTEXT`). Lone surrogates are refused by pydantic's string validation itself."""

SingleLineText = Annotated[str, AfterValidator(_single_line)]
"""Text on one line (a label, a purpose): no control character at all."""


# -- JSON text from outside ---------------------------------------------------------------------


class _NotANumber(ValueError):
    def __init__(self, spelling: str) -> None:
        super().__init__(spelling)
        self.spelling = spelling


def _no_constant(name: str) -> Any:
    raise _NotANumber(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotANumber(text if len(text) <= 40 else text[:37] + "...")
    return value


def load_json_text(
    text: str | bytes, *, source: str, operation: str, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """Parse JSON a caller gave (an option's value, an ``@file``, a request body) the strict
    way: `ValidationError` for malformed JSON (``bad_json``) and for NaN, Infinity or a
    number too large for a float such as ``1e999`` (``not_a_number``: never read as a float
    that would be stored as null); `SerializationError` for nesting deeper than
    ``max_depth`` (``too_deep``, whatever the depth: never a `RecursionError`) and for a lone
    surrogate (``not_canonicalizable``). ``source`` names the input in messages
    (``--data``, a file name)."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except _NotANumber as exc:
        raise ValidationError(
            f"{source}: {exc.spelling} is not a number JSON can hold (NaN, Infinity and "
            "numbers too large for a float are refused)",
            operation=operation,
            reason="not_a_number",
            field=source,
        ) from None
    except RecursionError:
        raise SerializationError(
            f"{source}: nested deeper than {max_depth} levels",
            operation=operation,
            reason="too_deep",
            field=source,
        ) from None
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{source} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            operation=operation,
            reason="bad_json",
            field=source,
            line=exc.lineno,
            column=exc.colno,
        ) from None
    except UnicodeDecodeError:
        raise ValidationError(
            f"{source} is not UTF-8 text", operation=operation, reason="bad_json", field=source
        ) from None
    except ValueError:  # an integer of more digits than Python converts (4,300)
        raise ValidationError(
            f"{source}: a number has more digits than can be read "
            f"({sys.get_int_max_str_digits():,} at most)",
            operation=operation,
            reason="number_too_long",
            field=source,
        ) from None
    check_json_value(value, field=source, operation=operation)
    return value
