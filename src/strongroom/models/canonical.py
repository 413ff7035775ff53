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

For the values strongroom hashes most (strings, booleans, null, integers within range, floats
from 1e-4 to 1e16, keys below U+E000) both forms are the same bytes once integral floats are
ints, and `canonical_json` hands them to CPython's C encoder whole. Anything else (a float in
exponent form, an out-of-range integer, a key at or above U+E000, where UTF-16 and code-point
order can differ) is written by `_write`: strings still by the C string
encoder, floats by a port of ECMAScript's Number::toString over ``repr``'s shortest digits.
It is written here rather than taken from the ``rfc8785`` package because that one is ~5x
slower on the log hot path (a log line with one float went from 18k to 6k lines/s with it);
the tests check this one against ``rfc8785`` and against JavaScript itself.
"""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring
from typing import Any, Final, Literal

from strongroom.errors import SerializationError

__all__ = ["CANON", "Canon", "canonical_json", "record_json", "sorted_json"]

Canon = Literal["jcs"]
CANON: Final[Canon] = "jcs"
"""The ``canon`` an entry hashed with `canonical_json` carries (absent: `sorted_json`)."""

_SAFE_INT: Final = 2**53 - 1
_NOT_PLAIN: Final = object()
_CONTAINER: Final = object()
_string: Final = encode_basestring  # CPython's C encoder, the ensure_ascii=False form
_FIRST_UNSAFE_KEY_CHAR: Final = "\ue000"


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON of ``value`` (a JSON value: dicts with string keys, lists,
    strings, numbers, booleans, None). Raises `SerializationError` for what JCS cannot
    represent: NaN or infinity, an integer beyond ±(2**53 - 1), a lone surrogate, another
    type, or nesting too deep to walk."""
    try:
        plain = _as_plain(value)
        if plain is not _NOT_PLAIN:
            return _dumps(plain).encode("utf-8")
        out: list[str] = []
        _write(value, out)
        return "".join(out).encode("utf-8")
    except _Refused as exc:
        raise _refused(exc.message, exc.reason) from None
    except UnicodeEncodeError:
        raise _refused(
            "a lone surrogate cannot be written as canonical JSON (RFC 8785 is UTF-8)",
            "not_canonicalizable",
        ) from None
    except RecursionError:
        raise _refused("the value is nested too deeply to hash", "too_deep") from None


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


def _as_plain(value: Any) -> Any:
    """``value`` in a form CPython's C encoder writes as RFC 8785 writes ``value`` (itself
    when nothing needs changing, else a copy with integral floats as ints: ``1.0`` -> ``1``),
    or `_NOT_PLAIN` when it holds what only `_write` writes right: a float ``repr`` puts in
    exponent form (below 1e-4 or from 1e16), an integer out of range, NaN or infinity, a key
    with a character where UTF-16 and code-point order can disagree, or a non-JSON value.
    Runs on every hash (every log line): scalars are checked inline, not by a call each, and
    the dict and list loops are written out twice on purpose (a shared helper would cost a
    call per item on this path)."""
    kind = type(value)
    if kind is dict:
        copy: dict[str, Any] | None = None
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and max(key) >= _FIRST_UNSAFE_KEY_CHAR):
                return _NOT_PLAIN
            if type(item) is str:  # most values: no call
                continue
            plain = _scalar(item)
            if plain is _CONTAINER:
                plain = _as_plain(item)
            if plain is not item:
                if plain is _NOT_PLAIN:
                    return _NOT_PLAIN
                if copy is None:
                    copy = dict(value)
                copy[key] = plain
        return value if copy is None else copy
    if kind is list or kind is tuple:
        items: list[Any] | None = None
        for at, item in enumerate(value):
            if type(item) is str:
                continue
            plain = _scalar(item)
            if plain is _CONTAINER:
                plain = _as_plain(item)
            if plain is not item:
                if plain is _NOT_PLAIN:
                    return _NOT_PLAIN
                if items is None:
                    items = list(value)
                items[at] = plain
        return value if items is None else items
    plain = _scalar(value)
    return _NOT_PLAIN if plain is _CONTAINER else plain


def _scalar(value: Any) -> Any:
    """`_as_plain` of a scalar; `_CONTAINER` for a dict, list or tuple."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return value if -_SAFE_INT <= value <= _SAFE_INT else _NOT_PLAIN
    if kind is float:
        if value.is_integer():
            return int(value) if -_SAFE_INT <= value <= _SAFE_INT else _NOT_PLAIN
        # repr writes 1e-4 <= |x| < 1e16 without an exponent, with ECMAScript's digits
        return value if 1e-4 <= abs(value) < 1e16 else _NOT_PLAIN
    if kind is dict or kind is list or kind is tuple:
        return _CONTAINER
    return _NOT_PLAIN


class _Refused(Exception):
    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


def _write(value: Any, out: list[str]) -> None:
    """RFC 8785 of a value `_plain` refused: strings through CPython's C string encoder
    (which escapes exactly what JCS escapes, the same way), numbers as ECMAScript writes
    them, members sorted by the UTF-16 code units of their names."""
    kind = type(value)
    if kind is str:
        out.append(_string(value))
    elif value is None:
        out.append("null")
    elif kind is bool:
        out.append("true" if value else "false")
    elif kind is int:
        if not -_SAFE_INT <= value <= _SAFE_INT:
            raise _Refused(
                "an integer beyond ±(2**53 - 1) cannot be hashed (RFC 8785 / I-JSON): store "
                "it as a string",
                "integer_out_of_range",
            )
        out.append(int.__repr__(value))
    elif kind is float:
        out.append(_number(value))
    elif kind is dict:
        if not all(type(key) is str for key in value):
            raise _Refused("an object key that is not a string cannot be hashed", "not_json")
        out.append("{")
        for at, key in enumerate(_member_order(value)):
            if at:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif kind is list or kind is tuple:
        out.append("[")
        for at, item in enumerate(value):
            if at:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise _Refused(f"a {kind.__name__} is not a JSON value and cannot be hashed", "not_json")


def _member_order(members: dict[str, Any]) -> list[str]:
    """Member names in RFC 8785's order, by UTF-16 code units: the code-point order unless a
    name holds a character at or above U+E000 (where the two can differ)."""
    if all(key.isascii() or max(key) < _FIRST_UNSAFE_KEY_CHAR for key in members):
        return sorted(members)
    return sorted(members, key=lambda key: key.encode("utf-16-be", "surrogatepass"))


def _number(number: float) -> str:
    """ECMAScript's Number::toString of a finite float (RFC 8785 section 3.2.2.3): the
    shortest digits that round-trip (what ``repr`` finds), placed by ECMAScript's rules."""
    if number != number or number in (math.inf, -math.inf):
        raise _Refused("NaN and infinity cannot be hashed", "not_a_number")
    if number == 0:
        return "0"
    text = repr(number)
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # value = 0.<digits> x 10**point
    point = len(whole) + int(exponent or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    count = len(digits)
    if count <= point <= 21:
        return sign + digits + "0" * (point - count)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    power = point - 1
    tail = ("e+" if power >= 0 else "e-") + str(abs(power))
    if count == 1:
        return sign + digits + tail
    return sign + digits[0] + "." + digits[1:] + tail


def _refused(message: str, reason: str) -> SerializationError:
    return SerializationError(message, operation="canonical_json", reason=reason)
