"""The bytes every hash is taken over: RFC 8785 (JSON Canonicalization Scheme, "JCS").

`canonical_json` is RFC 8785: object members sorted by the UTF-16 code units of their names,
no whitespace, strings as ECMAScript's ``JSON.stringify`` writes them (only ``"``, ``\\`` and
control characters escaped; UTF-8 out), numbers as ECMAScript's ``Number.prototype.toString``
(``1.0`` is ``1``, ``1e21`` is ``1e+21``), integers only within ±(2**53 - 1) (I-JSON: beyond
that a number has no single spelling every JSON reader agrees on). Any JCS implementation (a
dozen languages have one; a recursive key sort plus ``JSON.stringify`` in JavaScript is one)
gives the same bytes, so an auditor re-computes strongroom's hashes without Python; see
docs/security.md, "Re-computing a hash without strongroom".

`sorted_json` is the form hashes were taken over before (CPython's ``json.dumps`` with sorted
keys): audit and log entries without ``"canon": "jcs"``, and the records and signatures they
vouch for, were hashed with it and still verify with it. It is also the content form of
definition blobs and snapshot payloads, which are bytes addressed by their own SHA-256 rather
than a hashing format, and which keep it so an unchanged definition keeps its digest.

For the values strongroom hashes (strings, booleans, null, integers within range, keys below
U+E000) both forms are the same bytes, and `canonical_json` takes CPython's C encoder for them;
anything else (a float, an out-of-range integer, a key at or above U+E000, where UTF-16 and
code-point order can differ) goes through the ``rfc8785`` package.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

import rfc8785

from strongroom.errors import SerializationError

__all__ = ["CANON", "Canon", "canonical_json", "record_json", "sorted_json"]

Canon = Literal["jcs"]
CANON: Final[Canon] = "jcs"
"""The ``canon`` an entry hashed with `canonical_json` carries (absent: `sorted_json`)."""

_SAFE_INT: Final = 2**53 - 1
_FIRST_UNSAFE_KEY_CHAR: Final = "\ue000"


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON of ``value`` (a JSON value: dicts with string keys, lists,
    strings, numbers, booleans, None). Raises `SerializationError` for what JCS cannot
    represent: NaN or infinity, an integer beyond ±(2**53 - 1), a lone surrogate, another
    type, or nesting too deep to walk."""
    try:
        if _plain(value):
            return _dumps(value).encode("utf-8")
        return rfc8785.dumps(value)
    except rfc8785.IntegerDomainError as exc:
        raise _refused(
            "an integer beyond ±(2**53 - 1) cannot be hashed (RFC 8785 / I-JSON): store it "
            "as a string",
            "integer_out_of_range",
            exc,
        ) from None
    except rfc8785.FloatDomainError as exc:
        raise _refused("NaN and infinity cannot be hashed", "not_a_number", exc) from None
    except (rfc8785.CanonicalizationError, UnicodeEncodeError) as exc:
        raise _refused(
            "the value cannot be written as canonical JSON (a lone surrogate, or a value "
            "that is not JSON)",
            "not_canonicalizable",
            exc,
        ) from None
    except RecursionError:
        raise _refused("the value is nested too deeply to hash", "too_deep", None) from None


def record_json(value: Any) -> bytes:
    """The bytes a record is stored as and its binding's digest taken over: `canonical_json`,
    or `sorted_json` for a record RFC 8785 cannot represent (one written before it with an
    integer beyond 2**53, copied by an import; an error's details). A record is never lost
    for its values; what a caller can get wrong (log data, artifact metadata) is refused at
    the door instead (see docs/security.md, "The hashing format")."""
    try:
        return canonical_json(value)
    except SerializationError:
        return sorted_json(value)


def sorted_json(value: Any) -> bytes:
    """CPython's ``json.dumps`` with sorted keys, no whitespace, UTF-8, no NaN: the hashing
    form before `canonical_json` (see the module docstring)."""
    return _dumps(value).encode("utf-8")


def _dumps(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _plain(value: Any) -> bool:
    """Whether RFC 8785 and `sorted_json` write ``value`` the same: no float, no integer out
    of range, no key with a character where UTF-16 and code-point order can disagree."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-_SAFE_INT <= value <= _SAFE_INT)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return False
            if not key.isascii() and max(key) >= _FIRST_UNSAFE_KEY_CHAR:
                return False
            if not _plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        return all(map(_plain, value))
    return False


def _refused(message: str, reason: str, exc: Exception | None) -> SerializationError:
    details: dict[str, Any] = {"reason": reason}
    if exc is not None:
        details["cause"] = str(exc)[:200]
    return SerializationError(message, operation="canonical_json", **details)
