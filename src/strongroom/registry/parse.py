"""Definition files to models: bytes (YAML or JSON) -> plain JSON data -> a validated model.

The YAML reader is ``yaml.SafeLoader`` made stricter so that YAML means the same as JSON:

- plain scalars are typed by the YAML 1.2 core schema only (`CORE_SCHEMA`): ``null``/``~``/
  empty, ``true``/``false`` (three spellings each), decimal/``0o``/``0x`` integers and
  decimal floats; everything else is a string. So ``no``, ``on``, ``y`` are strings, ``010``
  is 10, ``12:30``, ``1_000`` and ``2026-12-06`` are strings (no YAML 1.1 booleans,
  sexagesimals, underscores or timestamps); ``1.10`` is the float 1.1 (quote labels);
- duplicate keys in one mapping are refused (YAML 1.1 merge keys ``<<``, kept because
  definitions use them, may still be overridden);
- mapping keys must be strings (``1:``/``true:``/``null:`` must be quoted);
- ``!!binary``, ``!!set``, ``!!omap``, ``!!pairs``, ``!!timestamp`` and any application tag
  are refused; so are ``.nan``/``.inf``, and an explicit ``!!int``/``!!float``/``!!bool``/
  ``!!null`` whose text is not that type's core-schema form;
- exactly one document; anchors and aliases are fine, but the expanded document is bounded
  (`MAX_VALUES` values, `MAX_DEPTH` levels), which also refuses recursive aliases.

Format choice: ``.yaml``/``.yml`` -> YAML, ``.json`` -> JSON, anything else by sniffing (a
document whose first non-blank character is ``{`` is read as JSON, otherwise YAML).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Literal

import pydantic
import yaml
from yaml.constructor import ConstructorError

from strongroom.errors import SerializationError, ValidationError
from strongroom.models.registry import (
    DEFINITION_KINDS,
    Definition,
    DefinitionKind,
    Playbook,
    ProjectConfig,
    SandboxPolicy,
    ToolManifest,
)
from strongroom.registry.validate import raise_issues, validate_definition, validation_issues

__all__ = [
    "CORE_SCHEMA",
    "MAX_DEFINITION_BYTES",
    "MAX_DEPTH",
    "MAX_VALUES",
    "definition_from_data",
    "definition_model",
    "detect_format",
    "load_definition",
    "parse_document",
]

MAX_DEFINITION_BYTES = 4 * 1024 * 1024
"""Largest definition file accepted (4 MiB)."""
MAX_DEPTH = 128
"""Deepest nesting of mappings/lists accepted."""
MAX_VALUES = 1_000_000
"""Most values (after alias expansion) one document may hold."""

_MODELS: dict[str, type[Definition]] = {
    DefinitionKind.TOOL_MANIFEST.value: ToolManifest,
    DefinitionKind.PLAYBOOK.value: Playbook,
    DefinitionKind.PROJECT_CONFIG.value: ProjectConfig,
    DefinitionKind.SANDBOX_POLICY.value: SandboxPolicy,
}

_OPERATION = "registry.load"


def definition_model(kind: str) -> type[Definition]:
    """The model class of a definition kind; `ValidationError` for an unknown kind."""
    model = _MODELS.get(str(kind))
    if model is None:
        raise ValidationError(
            f"unknown definition kind {kind!r}: one of {', '.join(DEFINITION_KINDS)}",
            operation=_OPERATION,
            errors=[{"path": "kind", "message": f"must be one of {', '.join(DEFINITION_KINDS)}"}],
        )
    return model


def detect_format(data: bytes, file_name: str) -> Literal["json", "yaml"]:
    """``json`` or ``yaml``, by the file's extension, else by sniffing the first character."""
    suffix = PurePath(file_name).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    return "json" if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "yaml"


def load_definition(data: bytes, *, file_name: str) -> Definition:
    """Parse and validate one definition file: the model, with every field-level and
    document-level check passed (references to other definitions are not resolved here: see
    `strongroom.registry.check_references`).

    Raises `SerializationError` (unreadable bytes, with ``line``/``column``), `ValidationError`
    (``details.errors = [{path, message}, ...]``, one per failing field), `InvalidContract` or
    `DependencyCycle`.
    """
    return definition_from_data(parse_document(data, file_name=file_name), file_name=file_name)


def definition_from_data(data: Any, *, file_name: str | None = None) -> Definition:
    """Validate already-parsed data (a mapping with ``kind``) as a definition, with the same
    checks as `load_definition`."""
    if not isinstance(data, Mapping):
        raise ValidationError(
            f"{_where(file_name)}a definition is a mapping with a top-level 'kind', "
            f"got {_json_type(data)}",
            operation=_OPERATION,
            file=file_name,
            errors=[{"path": "", "message": "must be a mapping"}],
        )
    kind = data.get("kind")
    if kind is None or not isinstance(kind, str) or kind not in _MODELS:
        message = (
            "required key missing"
            if kind is None
            else f"unknown kind {kind!r}"
            if isinstance(kind, str)
            else "must be a string"
        )
        raise ValidationError(
            f"{_where(file_name)}kind: {message} (one of {', '.join(DEFINITION_KINDS)})",
            operation=_OPERATION,
            file=file_name,
            errors=[
                {"path": "kind", "message": f"{message}: one of {', '.join(DEFINITION_KINDS)}"}
            ],
        )
    model = _MODELS[kind]
    try:
        definition = model.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        ident = data.get(model.ID_FIELD)
        raise_issues(
            ValidationError,
            validation_issues(exc),
            what=f"{kind} {ident}" if isinstance(ident, str) else kind,
            operation=_OPERATION,
            file=file_name,
            kind=kind,
        )
    validate_definition(definition, file_name=file_name)
    return definition


def parse_document(data: bytes, *, file_name: str) -> Any:
    """Bytes -> JSON data (dicts with string keys, lists, str, int, float, bool, None).

    `SerializationError` with ``line``/``column`` (1-based) when the bytes are not one valid
    YAML/JSON document; `ValidationError` when the file is too large.
    """
    if len(data) > MAX_DEFINITION_BYTES:
        raise ValidationError(
            f"{file_name}: {len(data)} bytes is more than the {MAX_DEFINITION_BYTES} a "
            "definition may have",
            operation=_OPERATION,
            file=file_name,
            reason="too_large",
        )
    fmt = detect_format(data, file_name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(data, exc.start)
        raise SerializationError(
            f"{file_name} is not UTF-8 text (line {line}, column {column})",
            operation=_OPERATION,
            file=file_name,
            format=fmt,
            line=line,
            column=column,
            reason="not_utf8",
        ) from None
    text = text.removeprefix("\ufeff")
    try:
        value = _parse_json(text, file_name) if fmt == "json" else _parse_yaml(text, file_name)
    except RecursionError:
        raise SerializationError(
            f"{file_name}: nested too deeply",
            operation=_OPERATION,
            file=file_name,
            format=fmt,
            reason="too_deep",
        ) from None
    _check_tree(value, file_name, fmt)
    return value


# -- JSON --------------------------------------------------------------------------------------


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    """A JSON number as a float, refused when it overflows (``1e999`` is not infinity)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _parse_json(text: str, file_name: str) -> Any:
    try:
        return json.loads(
            text, object_pairs_hook=_unique_object, parse_constant=_no_constant, parse_float=_finite
        )
    except json.JSONDecodeError as exc:
        raise SerializationError(
            f"invalid JSON in {file_name}: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            operation=_OPERATION,
            file=file_name,
            format="json",
            line=exc.lineno,
            column=exc.colno,
            reason="invalid_json",
        ) from None
    except _DuplicateKey as exc:
        raise SerializationError(
            f"invalid JSON in {file_name}: duplicate key {exc.key!r} in one object",
            operation=_OPERATION,
            file=file_name,
            format="json",
            key=exc.key,
            reason="duplicate_key",
        ) from None
    except ValueError as exc:  # NaN / Infinity / a number out of range
        raise SerializationError(
            f"invalid JSON in {file_name}: {exc}",
            operation=_OPERATION,
            file=file_name,
            format="json",
            reason="invalid_json",
        ) from None


# -- YAML --------------------------------------------------------------------------------------

_MERGE_TAG = "tag:yaml.org,2002:merge"
_CORE = "tag:yaml.org,2002:"

CORE_SCHEMA: tuple[tuple[str, re.Pattern[str], tuple[str, ...]], ...] = (
    (f"{_CORE}null", re.compile(r"(?:~|null|Null|NULL|)\Z"), ("~", "n", "N", "")),
    (f"{_CORE}bool", re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z"), tuple("tTfF")),
    (
        f"{_CORE}int",
        re.compile(r"(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z"),
        tuple("-+0123456789"),
    ),
    (
        f"{_CORE}float",
        re.compile(
            r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z"
        ),
        tuple("-+.0123456789"),
    ),
)
"""The YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1023-core-schema): ``(tag, regexp,
first characters)`` in resolution order (``""`` is the empty scalar's "first character"); a
plain scalar matching none of them is a string."""

_CORE_FORMS = {tag: regexp for tag, regexp, _ in CORE_SCHEMA}


# libyaml's parser when PyYAML was built with it (about 5x faster); the resolver and the
# constructor, which do the typing and the checks below, are the same Python code either way.
if TYPE_CHECKING:
    _BaseLoader = yaml.SafeLoader
else:
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):
    """SafeLoader that types scalars by the YAML 1.2 core schema, only builds JSON data and
    refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"a key must be a string, got {_json_type(key)} {key!r} (quote it)",
                        key_node.start_mark,
                    )
                if key in seen:
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {key!r} (first at line {seen[key].line + 1})",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping

    def _core_text(self, node: yaml.Node) -> str:
        """The scalar's text, checked against its tag's core-schema form (which an implicit
        tag always matches; an explicit ``!!int`` etc. may not)."""
        text = str(self.construct_scalar(node))  # type: ignore[arg-type]  # (a non-scalar raises)
        if not _CORE_FORMS[node.tag].match(text):
            raise ConstructorError(
                None,
                None,
                f"{text!r} is not a YAML 1.2 core {node.tag.replace(_CORE, '')}",
                node.start_mark,
            )
        return text

    def construct_core_null(self, node: yaml.Node) -> None:
        self._core_text(node)

    def construct_core_bool(self, node: yaml.Node) -> bool:
        return self._core_text(node).lower() == "true"

    def construct_core_int(self, node: yaml.Node) -> int:
        text = self._core_text(node)
        limit = sys.get_int_max_str_digits()
        if text.startswith(("0o", "0x")):
            value = int(text[2:], 8 if text[1] == "o" else 16)
            # Its decimal form must be writable too (canonical JSON writes decimal).
            digits = math.floor(value.bit_length() * math.log10(2)) + 1
        else:
            digits = len(text.lstrip("+-"))
            value = int(text, 10) if digits <= limit else 0
        if digits > limit:
            raise ConstructorError(
                None,
                None,
                f"an integer of {digits} digits is too long (at most {limit})",
                node.start_mark,
            )
        return value

    def construct_finite_float(self, node: yaml.Node) -> float:
        text = self._core_text(node)
        # ".inf", "-.Inf", ".NaN" -> "inf", "-Inf", "NaN" (which float() reads); refused below
        value = float(text.replace(".", "", 1) if text[-1] in "fFnN" else text)
        if not math.isfinite(value):
            raise ConstructorError(
                None,
                None,
                f"{text!r} is not a JSON number (no NaN or infinity)",
                node.start_mark,
            )
        return value

    def refuse_tag(self, node: yaml.Node) -> Any:
        raise ConstructorError(
            None,
            None,
            f"YAML tag {node.tag.replace(_CORE, '!!')} is not allowed: "
            "definitions hold JSON data only",
            node.start_mark,
        )


# A table of its own, built from scratch (never SafeLoader's YAML 1.1 one, nothing shared with
# it): `add_implicit_resolver` adds to the table in the class's own ``__dict__``.
_StrictLoader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in CORE_SCHEMA:
    _StrictLoader.add_implicit_resolver(_tag, _regexp, list(_first))
# Not core schema, kept from YAML 1.1 because definitions use it (see the module docstring).
_StrictLoader.add_implicit_resolver(_MERGE_TAG, re.compile(r"<<\Z"), ["<"])
_StrictLoader.add_constructor(f"{_CORE}null", _StrictLoader.construct_core_null)
_StrictLoader.add_constructor(f"{_CORE}bool", _StrictLoader.construct_core_bool)
_StrictLoader.add_constructor(f"{_CORE}int", _StrictLoader.construct_core_int)
_StrictLoader.add_constructor(f"{_CORE}float", _StrictLoader.construct_finite_float)
for _name in ("timestamp", "binary", "set", "omap", "pairs"):
    _StrictLoader.add_constructor(f"{_CORE}{_name}", _StrictLoader.refuse_tag)
_StrictLoader.add_constructor(None, _StrictLoader.refuse_tag)


def _parse_yaml(text: str, file_name: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: JSON data only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = str(exc.problem or exc.context or "invalid YAML")
        if exc.context and exc.problem and problem.startswith("but "):
            problem = f"{exc.context}, {problem}"  # "expected a single document..., but found"
        problem = " ".join(problem.split())
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise SerializationError(
            f"invalid YAML in {file_name}: {problem}{where}",
            operation=_OPERATION,
            file=file_name,
            format="yaml",
            line=mark.line + 1 if mark is not None else None,
            column=mark.column + 1 if mark is not None else None,
            reason="invalid_yaml",
        ) from None
    except yaml.YAMLError as exc:
        raise SerializationError(
            f"invalid YAML in {file_name}: {' '.join(str(exc).split())}",
            operation=_OPERATION,
            file=file_name,
            format="yaml",
            reason="invalid_yaml",
        ) from None


# -- shared ------------------------------------------------------------------------------------


def _check_tree(root: Any, file_name: str, fmt: str) -> None:
    """Bound the expanded size and depth (alias bombs, recursive aliases, absurd nesting)."""
    count = 0
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ValidationError(
                f"{file_name}: the document expands to more than {MAX_VALUES} values "
                "(aliases expanding too much?)",
                operation=_OPERATION,
                file=file_name,
                format=fmt,
                reason="too_large",
            )
        if depth > MAX_DEPTH:
            raise ValidationError(
                f"{file_name}: nested deeper than {MAX_DEPTH} levels (a recursive alias?)",
                operation=_OPERATION,
                file=file_name,
                format=fmt,
                reason="too_deep",
            )
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


def _position(data: bytes, offset: int) -> tuple[int, int]:
    before = data[:offset]
    line = before.count(b"\n") + 1
    column = offset - (before.rfind(b"\n") + 1) + 1
    return line, column


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _where(file_name: str | None) -> str:
    return f"{file_name}: " if file_name else ""
