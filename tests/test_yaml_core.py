"""The strict YAML loader types plain scalars by the YAML 1.2 core schema (JSON's typing), not
by YAML 1.1's: ``no`` is a string, ``010`` is 10, ``12:30`` is a string, ``1.10`` is 1.1. The
refusals (duplicate keys, non-string keys, tags, NaN/infinity, sizes) stay as they were, and
any JSON text read as YAML gives the value JSON gives.

Pure code: `parse_document` only.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.errors import SerializationError, ValidationError
from strongroom.registry.parse import CORE_SCHEMA, MAX_DEPTH, _StrictLoader, parse_document


def load(text: str) -> Any:
    return parse_document(text.encode(), file_name="x.yaml")


def value(scalar: str) -> Any:
    """What ``a: <scalar>`` gives ``a``."""
    document = load(f"a: {scalar}\n")
    assert isinstance(document, dict)
    return document["a"]


def refused(text: str) -> SerializationError:
    with pytest.raises(SerializationError) as caught:
        load(text)
    assert caught.value.details["reason"] == "invalid_yaml"
    assert caught.value.details["format"] == "yaml"
    return caught.value


def same(left: Any, right: Any) -> bool:
    """Equal with the same JSON types all the way down (1 is not 1.0 or True; -0.0 is not 0.0)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, dict):
        return list(left) == list(right) and all(same(left[k], right[k]) for k in left)
    return bool(left == right)


# -- the issue's cases: YAML 1.1 typing is gone --------------------------------------------------


@pytest.mark.parametrize(
    ("scalar", "expected"),
    [
        # booleans: only true/false in three spellings
        ("no", "no"),
        ("yes", "yes"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("n", "n"),
        ("No", "No"),
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("False", False),
        ("FALSE", False),
        ("tRue", "tRue"),
        # integers: decimal (leading zeros are decimal), 0o octal, 0x hex
        ("010", 10),
        ("-010", -10),
        ("+12", 12),
        ("0", 0),
        ("0o10", 8),
        ("0x1F", 31),
        ("0xff", 255),
        ("0b11", "0b11"),
        ("-0x1", "-0x1"),
        ("-0o7", "-0o7"),
        ("1_000", "1_000"),
        ("12:30", "12:30"),
        ("190:20:30", "190:20:30"),
        ("123456789012345678901234567890", 123456789012345678901234567890),
        # floats
        ("1.10", 1.1),
        ("1.0", 1.0),
        ("-0.0", -0.0),
        ("1.", 1.0),
        (".5", 0.5),
        ("1e5", 100000.0),
        ("1E-5", 1e-05),
        ("+1.5e+300", 1.5e300),
        ("1_000.5", "1_000.5"),
        ("1.2.3", "1.2.3"),
        (".", "."),
        ("-x", "-x"),
        ("1e", "1e"),
        # null: ~, null in three spellings, nothing
        ("~", None),
        ("null", None),
        ("Null", None),
        ("NULL", None),
        ("", None),
        ("nULL", "nULL"),
        # no timestamps, no YAML 1.1 specials
        ("2026-12-06", "2026-12-06"),
        ("2026-12-06T10:00:00Z", "2026-12-06T10:00:00Z"),
        ("=", "="),
        # quoted scalars are strings, whatever they look like
        ("'1.10'", "1.10"),
        ('"1.0.0"', "1.0.0"),
        ("'010'", "010"),
        ('"true"', "true"),
        ("'~'", "~"),
        ("''", ""),
        # explicit core tags are fine when the text is that type's core form
        ("!!str 010", "010"),
        ("!!int '010'", 10),
        ("!!float 1", 1.0),
        ("!!bool 'true'", True),
        ("!!null ''", None),
    ],
)
def test_plain_scalars_are_typed_by_the_core_schema(scalar: str, expected: Any) -> None:
    assert same(value(scalar), expected), (scalar, value(scalar), expected)


def test_the_issue_examples() -> None:
    document = load("a: no\nb: 010\nc: 12:30\nd: 1.10\nversion: '1.10'\n")
    assert same(document, {"a": "no", "b": 10, "c": "12:30", "d": 1.1, "version": "1.10"})


def test_yaml_1_1_words_are_string_keys_now() -> None:
    assert load("on: 1\nno: 2\ny: 3\n") == {"on": 1, "no": 2, "y": 3}


def test_in_flow_collections_and_block_sequences_too() -> None:
    assert same(load("[no, 010, 12:30, 1.10, ~, ]"), ["no", 10, "12:30", 1.1, None])
    assert same(load("{a: off, b: 0o17}"), {"a": "off", "b": 15})
    assert same(load("- yes\n- 0x10\n-\n"), ["yes", 16, None])


def test_a_version_label_written_as_a_number_is_a_number() -> None:
    """``version: 1.10`` is the float 1.1 (core typing); the model layer refuses it with a
    hint to quote it (see test_registry_models); quoted it stays the string."""
    assert same(value("1.10"), 1.1)
    assert same(value("1.0.0"), "1.0.0")
    assert same(value("'1.10'"), "1.10")
    assert same(value("2026-01-15.1"), "2026-01-15.1")


# -- the refusals are unchanged --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("a: 1\na: 2\n", 2, 1, "duplicate key 'a' (first at line 1)"),
        ("on: 1\n'on': 2\n", 2, 1, "duplicate key 'on' (first at line 1)"),
        ("{a: 1, a: 2}", 1, 8, "duplicate key 'a'"),
        ("1: x\n", 1, 1, "a key must be a string, got a number 1 (quote it)"),
        ("true: x\n", 1, 1, "a key must be a string, got a boolean True (quote it)"),
        ("~: x\n", 1, 1, "a key must be a string, got null None (quote it)"),
        ("a: !!binary aGk=\n", 1, 4, "YAML tag !!binary is not allowed"),
        ("a: !!set {x}\n", 1, 4, "YAML tag !!set is not allowed"),
        ("a: !!omap [{x: 1}]\n", 1, 4, "YAML tag !!omap is not allowed"),
        ("a: !!pairs [{x: 1}]\n", 1, 4, "YAML tag !!pairs is not allowed"),
        ("a: !!timestamp 2026-12-06\n", 1, 4, "YAML tag !!timestamp is not allowed"),
        ("a: !custom 1\n", 1, 4, "YAML tag !custom is not allowed"),
        ("a: !!python/object:os.system x\n", 1, 4, "!!python/object:os.system is not allowed"),
        ("a: .inf\n", 1, 4, "'.inf' is not a JSON number (no NaN or infinity)"),
        ("a: -.Inf\n", 1, 4, "'-.Inf' is not a JSON number"),
        ("a: +.INF\n", 1, 4, "'+.INF' is not a JSON number"),
        ("a: .nan\n", 1, 4, "'.nan' is not a JSON number"),
        ("a: .NaN\n", 1, 4, "'.NaN' is not a JSON number"),
        ("a: 1e999\n", 1, 4, "'1e999' is not a JSON number"),
        ("a: 1\n---\na: 2\n", 2, 1, "expected a single document"),
    ],
)
def test_refusals_are_kept(text: str, line: int, column: int, fragment: str) -> None:
    error = refused(text)
    assert (error.details["line"], error.details["column"]) == (line, column)
    assert fragment in error.message
    assert error.message.startswith("invalid YAML in x.yaml: ")


@pytest.mark.parametrize(
    ("scalar", "fragment"),
    [
        ("!!int 0b11", "'0b11' is not a YAML 1.2 core int"),
        ("!!int 1_000", "'1_000' is not a YAML 1.2 core int"),
        ("!!int 12:30", "'12:30' is not a YAML 1.2 core int"),
        ("!!float 1_0.5", "'1_0.5' is not a YAML 1.2 core float"),
        ("!!bool yes", "'yes' is not a YAML 1.2 core bool"),
        ("!!null nil", "'nil' is not a YAML 1.2 core null"),
        ("!!int {}", "expected a scalar node"),
    ],
)
def test_an_explicit_core_tag_needs_the_core_form(scalar: str, fragment: str) -> None:
    assert fragment in refused(f"a: {scalar}\n").message


def test_an_integer_longer_than_python_converts_is_refused_not_a_crash() -> None:
    error = refused("a: " + "1" * 5000 + "\n")
    assert "an integer of 5000 digits is too long" in error.message
    # Hex and octal are written back in decimal (canonical JSON): the same bound applies.
    for long in ("0x" + "f" * 5000, "0o" + "7" * 6000):
        assert "digits is too long" in refused(f"a: {long}\n").message
    assert value("0x" + "f" * 100) == 16**100 - 1


def test_size_and_depth_bounds_are_kept() -> None:
    with pytest.raises(ValidationError) as caught:
        load("a: &a [*a]\n")
    assert caught.value.details["reason"] == "too_deep"
    with pytest.raises(ValidationError) as caught:
        load("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2))  # the innermost at depth 129
    assert caught.value.details["reason"] == "too_deep"


def test_anchors_aliases_and_merge_keys_still_work() -> None:
    """``<<`` is not core schema but is kept (a shipped example uses it); duplicate checks
    skip it, so the mapping's own keys override the merged ones."""
    document = load("base: &b {type: object, required: [x]}\nuse:\n  <<: *b\n  required: [y]\n")
    assert document["use"] == {"type": "object", "required": ["y"]}
    assert load("a: &x no\nb: *x\n") == {"a": "no", "b": "no"}
    assert load("'<<': 1\n") == {"<<": 1}  # quoted: just a key


# -- the resolver table is the loader's own ----------------------------------------------------


def test_the_resolver_table_is_built_from_scratch_and_not_shared() -> None:
    table = _StrictLoader.yaml_implicit_resolvers
    assert "yaml_implicit_resolvers" in vars(_StrictLoader)
    assert table is not yaml.SafeLoader.yaml_implicit_resolvers
    tags = {tag for resolvers in table.values() for tag, _ in resolvers}
    assert tags == {tag for tag, _, _ in CORE_SCHEMA} | {"tag:yaml.org,2002:merge"}
    for first, resolvers in table.items():
        for tag, regexp in resolvers:
            assert isinstance(regexp, re.Pattern), (first, tag)
    # PyYAML's own loaders keep YAML 1.1 typing: nothing leaked either way
    assert yaml.safe_load("a: no\nb: 010\nc: 2026-12-06\n") == {
        "a": False,
        "b": 8,
        "c": date(2026, 12, 6),
    }
    assert value("no") == "no"


def test_the_core_schema_regexps_are_anchored_at_the_end() -> None:
    # Python's ``$`` also matches before a final newline; ``\Z`` does not
    for _, regexp, _ in CORE_SCHEMA:
        assert regexp.pattern.endswith(r"\Z")
    assert value('"010\\n"') == "010\n"


# -- JSON is a YAML 1.2 subset: any JSON text reads back as the same value --------------------

# Text without surrogates and in the Basic Multilingual Plane: json.dumps writes other
# characters as UTF-16 surrogate pairs (\ud83d\ude00), which libyaml refuses ("invalid
# Unicode character escape code"): JSON allows them, YAML 1.2's \u escapes do not.
TEXT = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"]), max_size=20)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: (
        st.lists(children, max_size=5)
        # keys of at most 20 characters: YAML refuses implicit keys longer than 1024
        | st.dictionaries(TEXT, children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    data=JSON_VALUES,
    indent=st.sampled_from([None, 2]),
    separators=st.sampled_from([None, (",", ":")]),
)
def test_json_text_read_as_yaml_is_the_same_value(
    data: Any, indent: int | None, separators: tuple[str, str] | None
) -> None:
    text = json.dumps(data, indent=indent, separators=separators)
    loaded = parse_document(text.encode(), file_name="d.yaml")
    assert same(loaded, data), (text, loaded)
    assert same(loaded, parse_document(text.encode(), file_name="d.json"))


@pytest.mark.parametrize(
    "number",
    [0, -1, 2**63, -(2**64), 10**300, 0.1, -0.0, 1e300, 1e-300, 5e-324, 1.7976931348623157e308],
)
def test_json_numbers_read_exactly(number: int | float) -> None:
    assert same(value(json.dumps(number)), number)


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1E400"])
def test_a_json_number_out_of_range_is_refused_not_infinity(number: str) -> None:
    with pytest.raises(SerializationError) as refused:
        parse_document(f'{{"a": {number}}}'.encode(), file_name="d.json")
    assert refused.value.details["reason"] == "invalid_json"
    assert "out of range" in refused.value.message
