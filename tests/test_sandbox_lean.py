"""The sandbox's JSON without the json package (`strongroom.sandbox._lean`) gives exactly what
``json`` gives, on success and on failure."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.sandbox import _lean

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


def test_the_c_accelerator_is_in_use() -> None:
    assert _lean._FAST is not None  # CPython: else every start imports json after all


@given(JSON)
def test_dumps_and_loads_match_json(value: Any) -> None:
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    assert _lean.dumps(value) == text
    assert _lean.loads(text) == json.loads(text)
    assert _lean.loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {"a": {1, 2}}, object()])
def test_dumps_refuses_what_json_refuses(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)) as ours:
        _lean.dumps(bad)
    with pytest.raises((ValueError, TypeError)) as theirs:
        json.dumps(bad, separators=(",", ":"), allow_nan=False)
    assert type(ours.value) is type(theirs.value)


@pytest.mark.parametrize("bad", ["", "{", '{"a":1} x', "[1,]", "nul", '"\\x"', "{'a':1}"])
def test_loads_refuses_what_json_refuses(bad: str) -> None:
    def reason(call: Callable[[], object]) -> str:
        try:
            call()
        except ValueError as exc:
            return str(exc).split(":")[0]
        raise AssertionError(f"{bad!r} was accepted")

    assert reason(lambda: _lean.loads(bad)) == reason(lambda: json.loads(bad))


def test_loads_reads_the_constants_json_reads() -> None:
    assert math.isnan(_lean.loads("NaN"))
    assert _lean.loads("[-Infinity]") == [float("-inf")]
    assert _lean.loads(" [1] \n") == [1]


def test_deep_nesting_is_a_recursion_error_as_with_json() -> None:
    deep = "[" * 200_000 + "]" * 200_000
    with pytest.raises(RecursionError):
        json.loads(deep)
    with pytest.raises(RecursionError):
        _lean.loads(deep)


def test_suppress_ignores_only_the_given_exceptions() -> None:
    with _lean.suppress(KeyError, OSError):
        raise FileNotFoundError("gone")
    with pytest.raises(ValueError, match="kept"), _lean.suppress(KeyError):
        raise ValueError("kept")
