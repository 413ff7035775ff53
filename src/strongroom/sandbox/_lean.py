"""What the sandbox's scripts need of ``json`` and ``contextlib``, without importing them.

Every tool invocation starts a fresh interpreter, and ``import json`` costs it ``re`` and
``enum``, ``contextlib`` costs ``collections`` and ``functools`` (together about a fifth of
the sandbox's start-up on a slow machine). JSON is done by the
same C functions ``json`` itself uses (``_json.make_encoder`` and ``_json.make_scanner``),
configured exactly as ``json.dumps(obj, separators=(",", ":"), allow_nan=False)`` and
``json.loads`` configure them, so the results are identical (tests/test_sandbox_wire.py
checks that with hypothesis). Where the C accelerator is missing or differs (another
interpreter), the ``json`` package is used instead. `suppress` is ``contextlib.suppress``.

Standard library only (imported by the bootstrap script).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


def _default(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class _Context:
    """What the C scanner reads from a ``json.JSONDecoder`` (its defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: ClassVar[dict[str, Any]] = {}


def _accelerated() -> tuple[Any, Any] | None:
    try:
        import _json

        scanner = _json.make_scanner(_Context())  # type: ignore[arg-type]

        def encode(value: Any) -> str:
            # (markers, default, encoder, indent, key_separator, item_separator, sort_keys,
            #  skipkeys, allow_nan), as json.JSONEncoder.iterencode passes them.
            encoder = _json.make_encoder(
                {}, _default, _json.encode_basestring_ascii, None, ":", ",", False, False, False
            )
            return "".join(encoder(value, 0))

        if encode({"a": [1, 2.5, "é", None, True]}) != '{"a":[1,2.5,"\\u00e9",null,true]}':
            return None
        if scanner('{"a":[1]}', 0) != ({"a": [1]}, 9):
            return None
        return encode, scanner
    except Exception:
        return None


_FAST = _accelerated()


def dumps(value: Any) -> str:
    """``json.dumps(value, separators=(",", ":"), allow_nan=False)``."""
    if _FAST is None:
        import json

        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    encode: Any = _FAST[0]
    return str(encode(value))


def loads(data: str | bytes | bytearray) -> Any:
    """``json.loads(data)``."""
    if _FAST is None:
        import json

        return json.loads(data)
    text = bytes(data).decode("utf-8") if isinstance(data, bytes | bytearray) else data
    start = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        value, end = _FAST[1](text, start)
    except StopIteration:
        raise ValueError("Expecting value") from None
    if text[end:].strip(" \t\n\r"):
        raise ValueError("Extra data")
    return value


class suppress:
    """``contextlib.suppress``: ignore the given exceptions in a ``with`` block."""

    def __init__(self, *kinds: type[BaseException]) -> None:
        self._kinds = kinds

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, value: object, tb: object) -> bool:
        return kind is not None and issubclass(kind, self._kinds)
