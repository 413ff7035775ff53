"""Registry definitions: the examples load and validate, the canonical form is stable however a
definition is written, and every kind of bad input gets its own code and the path to the
offending field (or the line of a syntax error).

Pure code: no vault, no storage. Cross-definition references are checked through a
dict-backed resolver standing in for the registry store.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from strongroom.cli._context import EXIT_CODES, exit_code_for
from strongroom.errors import (
    DependencyCycle,
    InvalidContract,
    SerializationError,
    StrongroomError,
    UnknownReference,
    ValidationError,
)
from strongroom.ids import new_id
from strongroom.models import canonical_json
from strongroom.models.registry import (
    Approval,
    Channel,
    ChannelMove,
    DefinitionKind,
    DefinitionVersion,
    GovernanceLevel,
    PersistenceRecord,
    Playbook,
    ProjectConfig,
    Ref,
    RefKind,
    SandboxPolicy,
    ToolManifest,
)
from strongroom.registry import (
    MAX_DEFINITION_BYTES,
    canonical_bytes,
    check_references,
    definition_digest,
    definition_from_data,
    execution_order,
    field_path,
    load_definition,
    object_path,
    parse_document,
)
from strongroom.registry.parse import _StrictLoader

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "registry"
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
SCHEMA_OF = {
    "tool_manifest": "ToolManifest",
    "playbook": "Playbook",
    "project_config": "ProjectConfig",
    "sandbox_policy": "SandboxPolicy",
}


def load_example(name: str) -> Any:
    path = EXAMPLES / name
    return load_definition(path.read_bytes(), file_name=path.name)


def load_any(data: bytes | dict[str, Any], name: str) -> Any:
    if isinstance(data, dict):
        return definition_from_data(data, file_name=name)
    return load_definition(data, file_name=name)


def raises(cls: type[StrongroomError], data: bytes | dict[str, Any], name: str) -> StrongroomError:
    """Load ``data``; assert it fails with exactly ``cls``; the error, for more checks."""
    with pytest.raises(StrongroomError) as caught:
        load_any(data, name)
    error = caught.value
    assert type(error) is cls, (type(error).__name__, error.message, error.details)
    assert "\n" not in error.message
    assert "Traceback" not in error.message
    assert json.loads(json.dumps(error.to_dict())) == error.to_dict()  # JSON-safe details
    return error


def paths(error: StrongroomError) -> list[str]:
    return [item["path"] for item in error.details["errors"]]


def message_at(error: StrongroomError, path: str) -> str:
    found = [item["message"] for item in error.details["errors"] if item["path"] == path]
    assert found, (path, error.details["errors"])
    message: str = found[0]
    return message


# -- small valid documents to break ------------------------------------------------------------


def playbook_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "playbook",
        "playbook_id": "pb",
        "name": "PB",
        "version": "1.0.0",
        "steps": [
            {"step_id": "a", "tool": "load_csv@1.2.0", "inputs": {"path": {"from_input": "p"}}},
            {
                "step_id": "b",
                "tool": "normalise_records@staging",
                "inputs": {"records": {"from_step": "a", "pointer": "/records"}},
            },
            {"step_id": "c", "tool": "build_report", "depends_on": ["b"]},
        ],
    }
    data.update(changes)
    return data


def tool_data(tool_id: str = "t", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "tool_id": tool_id,
        "name": "T",
        "version": "1.0.0",
        "entrypoint": "pkg.mod:run",
        "contract": {
            "request_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
            "response_schema": {"type": "object"},
        },
        "governance": {"level": "A0"},
        "constraints": {"timeout_seconds": 5},
    }
    data.update(changes)
    return data


def manifest_data(*tools: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "tool_manifest",
        "manifest_id": "m",
        "name": "M",
        "version": "1.0.0",
        "owner": "me",
        "tools": list(tools) or [tool_data()],
    }


def sandbox_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "sandbox_policy",
        "sandbox_id": "sb",
        "name": "SB",
        "version": "1",
        "owner": "sec",
        "resources": {"cpu_cores": 0.5, "memory_mb": 128, "timeout_seconds": 10},
    }
    data.update(changes)
    return data


class CoreDumper(yaml.SafeDumper):
    """PyYAML's dumper quoting by the YAML 1.2 core schema the loader reads (``"08"`` stays
    quoted: unquoted it is the integer 8 there), not by YAML 1.1's."""


CoreDumper.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in _StrictLoader.yaml_implicit_resolvers.items()
}


def as_yaml(data: Any) -> bytes:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()


# -- the examples ------------------------------------------------------------------------------


def test_there_is_one_example_of_each_kind() -> None:
    kinds = sorted(load_definition(p.read_bytes(), file_name=p.name).kind for p in EXAMPLE_FILES)
    assert kinds == sorted(kind.value for kind in DefinitionKind)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda path: path.name)
def test_each_example_loads_validates_and_survives_its_canonical_form(path: Path) -> None:
    defn = load_definition(path.read_bytes(), file_name=path.name)
    blob = canonical_bytes(defn)

    again = load_definition(blob, file_name="canonical.json")

    assert again == defn
    assert canonical_bytes(again) == blob
    assert definition_digest(defn) == hashlib.sha256(blob).hexdigest()
    # editors validate YAML against the exported schemas: the examples pass them too
    schema = json.loads((SCHEMAS / f"{SCHEMA_OF[defn.kind]}.schema.json").read_text())
    document = parse_document(path.read_bytes(), file_name=path.name)
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(document)]
    assert errors == []


def test_the_example_manifest_spans_the_governance_levels() -> None:
    manifest = load_example("data-quality-tools.yaml")
    assert isinstance(manifest, ToolManifest)
    levels = {tool.tool_id: tool.governance.level for tool in manifest.tools}
    assert levels["load_csv"] is GovernanceLevel.A0
    assert levels["normalise_records"] is GovernanceLevel.A1
    assert levels["fetch_object_storage"] is GovernanceLevel.A2
    fetch = manifest.tool("fetch_object_storage")
    assert fetch is not None
    assert (fetch.constraints.timeout_seconds, fetch.constraints.max_retries) == (45, 1)
    assert manifest.tool("record_run_summary") is not None
    assert manifest.max_governance_level is GovernanceLevel.A3


def test_the_example_playbook_runs_ingest_to_export_in_order() -> None:
    playbook = load_example("data-quality-playbook.yaml")
    assert isinstance(playbook, Playbook)
    assert execution_order(playbook) == [
        "ingest",
        "normalise",
        "qa",
        "report",
        "export",
        "summarise",
    ]
    qa = playbook.step("qa")
    assert qa is not None
    assert qa.tool == Ref("run_quality_checks", channel=Channel.PRODUCTION)
    assert qa.upstream() == {"normalise": "inputs.records.from_step"}


def test_the_example_sandbox_policy_denies_the_network_and_writes_only_out() -> None:
    policy = load_example("sandbox-readonly.yaml")
    assert isinstance(policy, SandboxPolicy)
    assert policy.network.mode == "deny-all"
    assert policy.filesystem.write_paths == ["out"]


async def test_the_examples_reference_each_other_and_nothing_else() -> None:
    defns = [load_definition(p.read_bytes(), file_name=p.name) for p in EXAMPLE_FILES]
    known: set[tuple[RefKind, str]] = set()
    for defn in defns:
        if isinstance(defn, ToolManifest):
            for tool in defn.tools:
                known |= {(RefKind.TOOL, f"{tool.tool_id}@{tool.version}")}
                known |= {(RefKind.TOOL, f"{tool.tool_id}@production")}
        elif isinstance(defn, Playbook):
            known.add((RefKind.PLAYBOOK, f"{defn.playbook_id}@{defn.version}"))
        elif isinstance(defn, SandboxPolicy):
            known.add((RefKind.SANDBOX_POLICY, f"{defn.sandbox_id}@{defn.version}"))

    async def resolve(what: RefKind, ref: Ref) -> bool:
        return (what, str(ref)) in known

    for defn in defns:
        await check_references(defn, resolve)


# -- canonical form ----------------------------------------------------------------------------

PLAYBOOK_YAML = b"""\
# a comment
kind: playbook
playbook_id: pb
name: PB
version: 1.0.0
created_at: 2026-01-15T10:00:00+01:00
steps:
  - step_id: a
    tool: load_csv@1.2.0
    inputs:
      path: {from_input: p}
  - &b
    step_id: b
    tool: normalise_records@staging
    inputs:
      records: {from_step: a, pointer: /records}
  - step_id: c
    tool: build_report
    depends_on: [b]
"""

PLAYBOOK_JSON_REORDERED = b"""{
  "steps": [
    {"inputs": {"path": {"from_input": "p"}}, "tool": "load_csv@1.2.0", "step_id": "a"},
    {"tool": "normalise_records@staging", "step_id": "b",
     "inputs": {"records": {"pointer": "/records", "from_step": "a"}},
     "persistence": {"store_output": true, "snapshot": true, "role": "phase_output"},
     "depends_on": []},
    {"depends_on": ["b"], "step_id": "c", "tool": "build_report", "name": "", "inputs": {}}
  ],
  "created_at": "2026-01-15T09:00:00Z",
  "version": "1.0.0", "name": "PB", "playbook_id": "pb", "kind": "playbook"
}"""


def test_yaml_json_key_order_comments_and_explicit_defaults_give_the_same_bytes() -> None:
    from_yaml = load_definition(PLAYBOOK_YAML, file_name="pb.yaml")
    from_json = load_definition(PLAYBOOK_JSON_REORDERED, file_name="pb.json")

    assert from_yaml == from_json
    assert canonical_bytes(from_yaml) == canonical_bytes(from_json)
    assert definition_digest(from_yaml) == definition_digest(from_json)


def test_the_canonical_form_is_sorted_compact_json_without_defaults_but_with_kind() -> None:
    defn = load_definition(PLAYBOOK_YAML, file_name="pb.yaml")
    blob = canonical_bytes(defn)
    body = json.loads(blob)

    assert blob == canonical_json(body)
    assert body["kind"] == "playbook"
    assert body["created_at"] == "2026-01-15T09:00:00Z"  # normalised to UTC
    assert "persistence" not in body["steps"][0]  # all defaults: left out
    assert body["steps"][1]["inputs"]["records"] == {"from_step": "a", "pointer": "/records"}
    assert b" " not in blob.replace(b"PB", b"")


def test_content_changes_change_the_digest() -> None:
    base = definition_from_data(playbook_data())
    renamed = definition_from_data(playbook_data(name="PB2"))
    reordered_steps = playbook_data()
    reordered_steps["steps"] = list(reversed(reordered_steps["steps"]))
    reordered = definition_from_data(reordered_steps)
    assert isinstance(base, Playbook)
    assert isinstance(reordered, Playbook)

    assert definition_digest(base) != definition_digest(renamed)
    assert definition_digest(base) != definition_digest(reordered)  # step order is content
    assert execution_order(reordered) == execution_order(base)  # but not the execution order


def test_free_json_is_kept_exactly_and_float_fields_are_normalised() -> None:
    data = playbook_data()
    data["steps"][0]["inputs"]["n"] = {"value": None}
    data["steps"][0]["inputs"]["m"] = {"value": 1.0}
    with_nulls = definition_from_data(data)
    body = json.loads(canonical_bytes(with_nulls))
    assert body["steps"][0]["inputs"]["n"] == {"value": None}  # an explicit null is content
    assert body["steps"][0]["inputs"]["m"] == {"value": 1.0}

    one = definition_from_data(sandbox_data())
    as_int = sandbox_data()
    as_int["resources"] = {"cpu_cores": 1, "memory_mb": 128, "timeout_seconds": 10}
    as_float = sandbox_data()
    as_float["resources"] = {"cpu_cores": 1.0, "memory_mb": 128, "timeout_seconds": 10}
    assert canonical_bytes(definition_from_data(as_int)) == canonical_bytes(
        definition_from_data(as_float)
    )
    assert canonical_bytes(one) != canonical_bytes(definition_from_data(as_int))


# -- hypothesis: any playbook/manifest, however written, has one canonical form -----------------

IDS = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
LABELS = st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}(-rc\.[0-9])?", fullmatch=True)
TEXT = st.text(max_size=30)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
REFS = st.builds(
    lambda name, sel: name + sel,
    IDS,
    st.sampled_from(["", "@draft", "@staging", "@production"]) | LABELS.map(lambda v: f"@{v}"),
)
SCHEMAS_OK = st.sampled_from(
    [
        {"type": "object"},
        {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}},
        {"$schema": "http://json-schema.org/draft-07/schema#", "type": "array"},
        True,
        {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
    ]
)


@st.composite
def playbooks(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 5))
    ids = [f"s{i}" for i in range(count)]
    steps = []
    for i, step_id in enumerate(ids):
        earlier = ids[:i]
        sources = [
            st.builds(lambda key: {"from_input": key}, IDS),
            st.builds(lambda value: {"value": value}, JSON_VALUES),
        ]
        if earlier:
            sources.append(
                st.builds(
                    lambda s, p: {"from_step": s, "pointer": p} if p else {"from_step": s},
                    st.sampled_from(earlier),
                    st.sampled_from(["", "/records", "/a~1b/0"]),
                )
            )
        step: dict[str, Any] = {
            "step_id": step_id,
            "tool": draw(REFS),
            "inputs": draw(st.dictionaries(IDS, st.one_of(sources), max_size=3)),
        }
        with_depends_on: bool = draw(st.booleans())
        if earlier and with_depends_on:
            depends_on: list[str] = draw(st.lists(st.sampled_from(earlier), unique=True))
            step["depends_on"] = depends_on
        if draw(st.booleans()):
            step["persistence"] = draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "store_output": st.booleans(),
                        "role": st.sampled_from(["phase_output", "export"]),
                        "snapshot": st.booleans(),
                    },
                )
            )
        steps.append(step)
    data: dict[str, Any] = {
        "kind": "playbook",
        "playbook_id": draw(IDS),
        "name": "P",
        "version": draw(LABELS),
        "steps": steps,
    }
    if draw(st.booleans()):
        data["description"] = draw(TEXT)
    return data


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    tool_ids = draw(st.lists(IDS, min_size=1, max_size=4, unique=True))
    tools = []
    for tool_id in tool_ids:
        level = draw(st.sampled_from(["A0", "A1", "A2", "A3"]))
        governance: dict[str, Any] = {"level": level}
        if draw(st.booleans()):
            governance["requires_hitl"] = draw(st.booleans())
        if level == "A3" or draw(st.booleans()):
            governance["requires_run_logging"] = level == "A3" or draw(st.booleans())
        contract = {"request_schema": draw(SCHEMAS_OK), "response_schema": draw(SCHEMAS_OK)}
        if draw(st.booleans()):
            contract["error_schema"] = draw(SCHEMAS_OK)
        tools.append(
            {
                "tool_id": tool_id,
                "name": draw(TEXT.filter(lambda t: 0 < len(t) <= 200)),
                "version": draw(LABELS),
                "entrypoint": f"pkg.{tool_id}:run",
                "contract": contract,
                "governance": governance,
                "constraints": {
                    "timeout_seconds": draw(st.integers(1, 3600)),
                    "max_retries": draw(st.integers(0, 5)),
                },
                "policy_refs": draw(
                    st.lists(REFS, max_size=2, unique_by=lambda r: r.split("@")[0])
                ),
            }
        )
    return {
        "kind": "tool_manifest",
        "manifest_id": draw(IDS),
        "name": "M",
        "version": draw(LABELS),
        "owner": "me",
        "tools": tools,
    }


def shuffled(value: Any, rnd: random.Random) -> Any:
    """The same JSON value with every mapping's keys in a random order."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {key: shuffled(item, rnd) for key, item in items}
    if isinstance(value, list):
        return [shuffled(item, rnd) for item in value]
    return value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(playbooks(), manifests()), rnd=st.randoms(use_true_random=False))
def test_canonical_bytes_ignore_key_order_and_json_or_yaml(
    data: dict[str, Any], rnd: random.Random
) -> None:
    reference = canonical_bytes(definition_from_data(data))

    as_json = json.dumps(shuffled(data, rnd), indent=rnd.choice([None, 2])).encode()
    written_yaml = yaml.dump(
        shuffled(data, rnd),
        Dumper=CoreDumper,
        sort_keys=False,
        default_flow_style=rnd.choice([None, False, True]),
    ).encode()

    from_json = load_definition(as_json, file_name="d.json")
    from_yaml = load_definition(written_yaml, file_name="d.yaml")
    assert canonical_bytes(from_json) == reference
    assert canonical_bytes(from_yaml) == reference
    # the canonical form is a definition file with the same canonical form
    assert canonical_bytes(load_definition(reference, file_name="c.json")) == reference


# -- bad input: one code each, with the path (or the line) ------------------------------------


def test_invalid_yaml_is_a_serialization_error_with_line_and_column() -> None:
    error = raises(SerializationError, b"kind: playbook\nplaybook_id: p\n  name: x\n", "bad.yaml")
    assert (error.details["line"], error.details["column"]) == (3, 7)
    assert "bad.yaml" in error.message
    assert "line 3" in error.message


def test_invalid_json_is_a_serialization_error_with_line_and_column() -> None:
    error = raises(SerializationError, b'{"kind": "playbook",\n  "x": 1,,}', "bad.json")
    assert (error.details["line"], error.details["column"]) == (2, 10)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (b"kind: playbook\nname: a\nname: b\n", 3, "duplicate key 'name'"),
        (b"kind: playbook\n1: 1\n", 2, "key must be a string"),
        (b"kind: playbook\nx: .nan\n", 2, "not a JSON number"),
        (b"kind: playbook\nx: !!binary aGk=\n", 2, "!!binary"),
        (b"kind: playbook\nx: !!set {a}\n", 2, "!!set"),
        (b"kind: playbook\nx: !custom 1\n", 2, "!custom"),
        (b"kind: playbook\n---\nkind: playbook\n", 2, "single document"),
    ],
    ids=["duplicate-key", "non-string-key", "nan", "binary", "set", "app-tag", "two-documents"],
)
def test_yaml_that_is_not_plain_json_data_is_refused_with_its_line(
    text: bytes, line: int, fragment: str
) -> None:
    error = raises(SerializationError, text, "x.yaml")
    assert error.details["line"] == line
    assert fragment in error.message


def test_json_duplicate_keys_and_nan_are_refused() -> None:
    error = raises(SerializationError, b'{"kind": "playbook", "kind": "x"}', "d.json")
    assert error.details["key"] == "kind"
    raises(SerializationError, b'{"kind": NaN}', "n.json")
    raises(SerializationError, b"kind: \xff\n", "u.yaml")


def test_yaml_anchors_are_fine_and_timestamps_stay_text() -> None:
    text = PLAYBOOK_YAML + b"description: &d 2026-01-15\nupdated_at: 2026-01-15T10:00:00Z\n"
    document = parse_document(text, file_name="pb.yaml")
    assert document["description"] == "2026-01-15"  # a string, as in JSON
    assert document["steps"][1]["step_id"] == "b"


def test_alias_bombs_recursive_aliases_and_huge_files_are_refused() -> None:
    bomb = b"a: &a [" + b",".join([b"1"] * 10) + b"]\n"
    for level in "bcdefg":
        prev = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [{','.join([f'*{prev}'] * 10)}]\n".encode()
    assert raises(ValidationError, bomb, "bomb.yaml").details["reason"] == "too_large"
    assert raises(ValidationError, b"a: &a [*a]\n", "r.yaml").details["reason"] == "too_deep"
    huge = b"kind: playbook\n#" + b"x" * MAX_DEFINITION_BYTES
    assert raises(ValidationError, huge, "h.yaml").details["reason"] == "too_large"


def test_a_document_that_is_not_a_mapping_or_has_no_known_kind() -> None:
    assert paths(raises(ValidationError, b"- 1\n", "l.yaml")) == [""]
    assert paths(raises(ValidationError, b"name: x\n", "k.yaml")) == ["kind"]
    error = raises(ValidationError, b"kind: tool\n", "k.yaml")
    assert "tool_manifest" in message_at(error, "kind")


def test_unknown_keys_are_refused_with_their_path() -> None:
    data = playbook_data(extra=1)
    data["steps"][1]["inputs"]["records"]["poniter"] = "/x"
    error = raises(ValidationError, as_yaml(data), "pb.yaml")
    assert sorted(paths(error)) == ["extra", "steps[1].inputs.records.poniter"]
    assert message_at(error, "extra") == "unknown key"
    assert error.details["kind"] == "playbook"


def test_wrong_types_report_every_failing_field() -> None:
    data = manifest_data(
        tool_data(constraints={"timeout_seconds": "soon"}, governance={"level": "A9"})
    )
    data["version"] = 1.1  # YAML's classic: an unquoted version is a float
    error = raises(ValidationError, as_yaml(data), "m.yaml")
    assert sorted(paths(error)) == [
        "tools[0].constraints.timeout_seconds",
        "tools[0].governance.level",
        "version",
    ]
    assert "quote" in message_at(error, "version")
    assert "A0" in message_at(error, "tools[0].governance.level")
    assert error.message.startswith("invalid tool_manifest m in m.yaml: ")
    assert error.message.endswith("(and 2 more)")


def test_a_bad_json_schema_in_a_contract_is_invalid_contract_with_the_path_inside_it() -> None:
    bad = tool_data(
        "b",
        contract={
            "request_schema": {"type": "object", "properties": {"text": {"type": "strin"}}},
            "response_schema": {"type": "object", "required": "text"},
            "error_schema": {"$schema": "https://example.com/my-dialect"},
        },
    )
    error = raises(InvalidContract, manifest_data(tool_data("a"), bad), "m.yaml")
    assert isinstance(error, ValidationError)
    assert paths(error) == [
        "tools[1].contract.request_schema.properties.text.type",
        "tools[1].contract.response_schema.required",
        'tools[1].contract.error_schema["$schema"]',
    ]
    assert "not a valid JSON Schema" in error.message


def test_a_dependency_cycle_names_the_cycle() -> None:
    data = playbook_data()
    data["steps"][0]["depends_on"] = ["c"]  # a -> b (input) -> c (depends_on) -> a
    error = raises(DependencyCycle, data, "pb.yaml")
    assert error.details["cycles"] == [["a", "b", "c", "a"]]
    assert paths(error) == ["steps[0].depends_on[0]"]  # where a depends on c
    assert "a → b → c → a" in error.message
    with pytest.raises(DependencyCycle):
        execution_order(Playbook.model_validate(data))


def test_a_step_depending_on_itself_is_a_cycle() -> None:
    data = playbook_data()
    data["steps"][2]["inputs"] = {"x": {"from_step": "c"}}
    error = raises(DependencyCycle, data, "pb.yaml")
    assert error.details["cycles"] == [["c", "c"]]
    assert paths(error) == ["steps[2].inputs.x.from_step"]


def test_unknown_steps_and_duplicate_step_ids_are_validation_errors_with_paths() -> None:
    data = playbook_data()
    data["steps"][2]["depends_on"] = ["b", "nope", "b"]
    data["steps"][1]["inputs"]["x"] = {"from_step": "ghost"}
    data["steps"].append({"step_id": "a", "tool": "x"})
    error = raises(ValidationError, data, "pb.yaml")
    assert sorted(paths(error)) == [
        "steps[1].inputs.x.from_step",
        "steps[2].depends_on[1]",
        "steps[2].depends_on[2]",
        "steps[3].step_id",
    ]
    assert "no step 'nope'" in message_at(error, "steps[2].depends_on[1]")
    assert "duplicate step_id 'a'" in message_at(error, "steps[3].step_id")


def test_an_artifact_input_needs_a_step_that_stores_its_output() -> None:
    data = playbook_data()
    data["steps"][0]["persistence"] = {"store_output": False}
    data["steps"][2]["inputs"] = {"table": {"from_artifact": {"step": "a"}}}
    error = raises(ValidationError, data, "pb.yaml")
    assert paths(error) == ["steps[2].inputs.table.from_artifact.step"]


@pytest.mark.parametrize(
    "entrypoint",
    ["pkg.mod.fn", "pkg:mod:fn", "1pkg:fn", "pkg.mod:", ":fn", "pkg mod:fn", "pkg:a.b"],
)
def test_a_bad_entrypoint_is_refused(entrypoint: str) -> None:
    error = raises(ValidationError, manifest_data(tool_data(entrypoint=entrypoint)), "m.yaml")
    assert paths(error) == ["tools[0].entrypoint"]
    assert "package.module:function" in message_at(error, "tools[0].entrypoint")


@pytest.mark.parametrize(
    "ref",
    ["tool@", "@1.0", "tool@1.0@2", "tool@latest", "tool@1..0", "../x@1", "tool@sha256:abc", "a b"],
)
def test_a_bad_reference_is_refused_with_the_grammar(ref: str) -> None:
    data = playbook_data()
    data["steps"][1]["tool"] = ref
    error = raises(ValidationError, data, "pb.yaml")
    assert paths(error) == ["steps[1].tool"]
    assert "reference" in message_at(error, "steps[1].tool")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"from_input": "p", "value": 1}, "exactly one"),
        ({}, "exactly one"),
        ("p", "must be a mapping"),
        ({"from_step": "a", "pointer": "records"}, "RFC 6901"),
        ({"from_step": "a", "pointer": "/a~2"}, "RFC 6901"),
    ],
)
def test_bad_input_wiring_is_reported_at_the_input(source: Any, message: str) -> None:
    data = playbook_data()
    data["steps"][1]["inputs"]["records"] = source
    error = raises(ValidationError, data, "pb.yaml")
    (path,) = paths(error)
    assert path.startswith("steps[1].inputs.records")
    assert message in message_at(error, path)


def test_duplicate_tool_ids_and_an_a3_tool_without_run_logging() -> None:
    loose = tool_data("t", governance={"level": "A3", "requires_run_logging": False})
    error = raises(ValidationError, manifest_data(tool_data("t"), loose), "m.yaml")
    assert paths(error) == ["tools[1].tool_id", "tools[1].governance.requires_run_logging"]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("(unclosed", "not a valid regular expression"), ("a*", "empty string"), ("", "at least")],
)
def test_a_bad_redact_pattern_is_refused(pattern: str, message: str) -> None:
    data = sandbox_data(logging={"redact_patterns": ["ok=\\S+", pattern]})
    error = raises(ValidationError, data, "s.yaml")
    assert paths(error) == ["logging.redact_patterns[1]"]
    assert message in message_at(error, "logging.redact_patterns[1]")


def test_sandbox_modes_must_agree_with_their_lists() -> None:
    data = sandbox_data(
        filesystem={"mode": "read-only", "read_paths": ["in"], "write_paths": ["out"]},
        network={"mode": "deny-all", "allow_hosts": ["example.com"], "allow_ports": [443]},
    )
    error = raises(ValidationError, data, "s.yaml")
    assert paths(error) == [
        "filesystem.write_paths",
        "network.allow_hosts",
        "network.allow_ports",
    ]
    bounds = sandbox_data(
        filesystem={"mode": "read-write", "read_paths": ["../etc"]},
        network={"mode": "allowlist", "allow_hosts": ["bad host"]},
        resources={"cpu_cores": 0.05, "memory_mb": 32, "timeout_seconds": 0},
    )
    assert sorted(paths(raises(ValidationError, bounds, "s.yaml"))) == [
        "filesystem.read_paths[0]",
        "network.allow_hosts[0]",
        "resources.cpu_cores",
        "resources.memory_mb",
        "resources.timeout_seconds",
    ]
    empty_allowlist = sandbox_data(network={"mode": "allowlist"})
    assert paths(raises(ValidationError, empty_allowlist, "s.yaml")) == ["network.allow_hosts"]


def test_a_project_config_lists_each_playbook_once() -> None:
    data: dict[str, Any] = {
        "kind": "project_config",
        "project_id": "proj",
        "name": "Proj",
        "version": "1",
        "settings": {"paths": {"out dir": "out"}, "languages": ["en", "english!"]},
        "playbooks": ["p@1", "p@2"],
    }
    error = raises(ValidationError, data, "p.yaml")
    assert paths(error) == ["settings.languages[1]"]
    data["settings"]["languages"] = ["en"]
    assert paths(raises(ValidationError, data, "p.yaml")) == ["playbooks[1]"]
    data["playbooks"] = ["p@1"]
    assert isinstance(definition_from_data(data), ProjectConfig)


def project_data(**fields: Any) -> dict[str, Any]:
    return {"kind": "project_config", "project_id": "proj", "name": "P", "version": "1", **fields}


def test_a_project_config_names_its_executor_and_queue() -> None:
    """docs/workers.md, "In the project config": where runs go when no --executor is given."""
    config = definition_from_data(project_data(executor={"kind": "celery", "queue": "nightly"}))
    assert isinstance(config, ProjectConfig)
    assert config.executor is not None
    assert (config.executor.kind, config.executor.queue) == ("celery", "nightly")
    default = definition_from_data(project_data(executor={}))
    assert isinstance(default, ProjectConfig)
    assert default.executor is not None
    assert (default.executor.kind, default.executor.queue) == ("local", None)
    plain = definition_from_data(project_data())
    assert isinstance(plain, ProjectConfig)
    assert plain.executor is None


@pytest.mark.parametrize(
    ("executor", "path"),
    [
        ({"kind": "celery", "broker": "amqp://strongroom:pw@mq:5672//"}, "executor.broker"),
        ({"kind": "celery", "url": "redis://:pw@cache:6379/0"}, "executor.url"),
        ({"kind": "celery", "queue": "night_ly"}, "executor.queue"),  # no worker could listen
        ({"kind": "celery", "queue": "../etc"}, "executor.queue"),
        ({"kind": "celery", "queue": ""}, "executor.queue"),
        ({"kind": "k8s"}, "executor.kind"),
        ("celery", "executor"),
    ],
)
def test_a_project_executor_names_no_broker_and_only_known_kinds(executor: Any, path: str) -> None:
    error = raises(ValidationError, project_data(executor=executor), "p.yaml")
    assert paths(error) == [path]
    assert "pw" not in error.message


# -- references to other definitions -----------------------------------------------------------


def dict_resolver(known: dict[RefKind, set[str]], calls: list[str]) -> Callable[..., Any]:
    async def resolve(what: RefKind, ref: Ref) -> bool:
        calls.append(f"{what}:{ref}")
        return str(ref) in known.get(what, set())

    return resolve


async def test_unknown_tools_are_unknown_reference_with_their_steps() -> None:
    data = playbook_data()
    data["steps"].append({"step_id": "d", "tool": "load_csv@1.2.0", "depends_on": ["c"]})
    playbook = definition_from_data(data)
    calls: list[str] = []
    resolve = dict_resolver({RefKind.TOOL: {"load_csv@1.2.0", "build_report"}}, calls)

    with pytest.raises(UnknownReference) as caught:
        await check_references(playbook, resolve, file_name="pb.yaml")

    error = caught.value
    assert isinstance(error, ValidationError)
    assert paths(error) == ["steps[1].tool"]
    assert error.details["references"] == ["normalise_records@staging"]
    assert "no tool normalise_records@staging in the registry" in error.message
    assert len(calls) == 3  # load_csv@1.2.0 asked once for two steps


async def test_project_and_manifest_references_are_checked_by_kind() -> None:
    project = definition_from_data(
        {
            "kind": "project_config",
            "project_id": "proj",
            "name": "P",
            "version": "1",
            "playbooks": ["pb@production"],
            "policies": ["sb@1"],
        }
    )
    manifest = definition_from_data(manifest_data(tool_data(policy_refs=["sb@2"])))
    calls: list[str] = []
    resolve = dict_resolver(
        {RefKind.PLAYBOOK: {"pb@production"}, RefKind.SANDBOX_POLICY: {"sb@1"}}, calls
    )

    await check_references(project, resolve)
    with pytest.raises(UnknownReference) as caught:
        await check_references(manifest, resolve)
    assert paths(caught.value) == ["tools[0].policy_refs[0]"]
    assert calls == ["playbook:pb@production", "sandbox_policy:sb@1", "sandbox_policy:sb@2"]


# -- references, paths, codes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tool", Ref("tool")),
        ("tool@1.4.0", Ref("tool", version="1.4.0")),
        ("tool@2026-12-02.1", Ref("tool", version="2026-12-02.1")),
        ("tool@production", Ref("tool", channel=Channel.PRODUCTION)),
        ("tool@sha256:" + "ab" * 32, Ref("tool", digest="ab" * 32)),
    ],
)
def test_references_parse_and_print_canonically(text: str, expected: Ref) -> None:
    ref = Ref.parse(text)
    assert ref == expected
    assert str(ref) == text
    assert ref.pinned == (ref.version is not None or ref.digest is not None)


def test_a_reference_pins_at_most_one_thing() -> None:
    with pytest.raises(ValueError, match="at most one"):
        Ref("t", version="1", channel=Channel.DRAFT)
    with pytest.raises(ValueError, match="version label"):
        Ref("t", version="draft")


def test_field_paths_read_like_json_paths() -> None:
    assert field_path(("steps", 2, "inputs", "text", "pointer")) == "steps[2].inputs.text.pointer"
    assert field_path(("settings", "paths", "out dir")) == 'settings.paths["out dir"]'
    assert field_path(()) == ""


def test_refined_codes_exit_like_their_family() -> None:
    assert exit_code_for("invalid_contract") == EXIT_CODES["validation_error"]
    assert exit_code_for("unknown_reference") == EXIT_CODES["validation_error"]
    assert exit_code_for("dependency_cycle") == EXIT_CODES["validation_error"]
    assert exit_code_for("version_label_taken") == EXIT_CODES["conflict"]
    assert exit_code_for("stale_channel") == EXIT_CODES["conflict"]
    assert exit_code_for("self_approval") == EXIT_CODES["permission_denied"]


def test_object_paths_are_deterministic_and_safe() -> None:
    assert object_path("playbook", "pb", "1.0.0") == "playbooks/pb/1.0.0.json"
    assert object_path(DefinitionKind.PROJECT_CONFIG, "p", "2") == "projects/p/2.json"
    with pytest.raises(ValueError, match="name must be"):
        object_path("playbook", "../x", "1")
    with pytest.raises(ValueError, match="not a version label"):
        object_path("playbook", "pb", "../1")


# -- stored records ----------------------------------------------------------------------------


def test_registry_records_validate_and_round_trip() -> None:
    digest = "cd" * 32
    version = DefinitionVersion(
        kind=DefinitionKind.PLAYBOOK,
        definition_id="pb",
        version="1.0.0",
        digest=f"sha256:{digest}",
        size_bytes=10,
        publisher="alice",
        source_file="pb.yaml",
    )
    move = ChannelMove(
        move_id=new_id(),
        kind=DefinitionKind.PLAYBOOK,
        definition_id="pb",
        channel=Channel.PRODUCTION,
        action="promote",
        to_digest=digest,
        actor="bob",
        reason="QA passed",
    )
    record = PersistenceRecord(
        subject="playbook",
        subject_id="pb",
        version="1.0.0",
        storage={
            "provider_id": "local",
            "namespace_id": "playbooks",
            "object_path": object_path("playbook", "pb", "1.0.0"),
            "checksum": digest,
            "size_bytes": 10,
            "content_type": "application/json",
        },
    )
    for model in (version, move, record):
        assert type(model).model_validate_json(model.model_dump_json()) == model
    assert version.digest == digest


def test_approvals_know_their_scope_expiry_and_revocation() -> None:
    now = datetime.now(UTC)
    approval = Approval(
        approval_id=new_id(),
        target={"scope": "tool_version", "tool_id": "fetch_object_storage", "version": "1.0.0"},
        actor="bob",
        reason="reviewed",
        expires_at=now + timedelta(days=1),
    )
    assert approval.scope == "tool_version"
    assert approval.is_active(now)
    assert not approval.is_active(now + timedelta(days=2))
    revoked = approval.model_copy(update={"revoked_at": now, "revoked_by": "carol"})
    assert not revoked.is_active(now + timedelta(seconds=1))
    with pytest.raises(Exception, match="promotion"):
        Approval.model_validate(
            {**approval.model_dump(), "target": {"scope": "promotion", "run_id": new_id()}}
        )
