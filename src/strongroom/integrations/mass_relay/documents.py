"""Mass Relay documents recognised by their shape, and turned into strongroom definitions that
keep the original verbatim.

Mass Relay's documents carry no ``kind``; `document_type` tells them apart by their keys (see
`DOCUMENT_TYPES`). `to_definition` turns the five that are registry definitions (tool
manifest, reference tool catalog, execution sandbox, agent playbook, project config) into a
strongroom definition whose ``extensions["mass_relay"]`` is ``{"document": TYPE,
"original": DOCUMENT}``: the document exactly as parsed, every field, including those
strongroom has no use for. `original_document` gives it back. The strongroom fields are
derived from the original by fixed rules (so publishing the same document twice is one
version); where the two disagree the original is what Mass Relay meant and the derived
fields are what strongroom enforces (docs/registry.md, "Mass Relay documents").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from strongroom.errors import ValidationError
from strongroom.ids import check_name
from strongroom.models.registry import ENTRYPOINT_PATTERN, Definition

__all__ = [
    "DEFINITION_TYPES",
    "DOCUMENT_TYPES",
    "EXTENSION_KEY",
    "document_type",
    "original_document",
    "to_definition",
]

EXTENSION_KEY = "mass_relay"
"""The key of ``extensions`` under which a converted definition keeps its original."""

DOCUMENT_TYPES: dict[str, str] = {
    "tool_manifest": "ToolManifest: manifest_id + tools",
    "reference_tool_catalog": "ReferenceToolCatalog: catalog_id + tools",
    "execution_sandbox": "ExecutionSandbox: sandbox_id + filesystem/network/resources",
    "agent_playbook": "AgentPlaybook: playbook_id + steps",
    "project_config": "ProjectConfig: project_id without stored_at",
    "playbook_persistence": "PlaybookPersistenceRecord: playbook_id + stored_at + storage",
    "project_config_persistence": "ProjectConfigPersistenceRecord: project_id + stored_at "
    "+ storage",
    "run_persistence": "RunPersistenceRecord: run_id + stored_at + storage",
    "python_runner_request": "PythonRunnerRequest: request_id + tool_id + input, no status",
    "python_runner_response": "PythonRunnerResponse: request_id + tool_id + status",
}
"""Every Mass Relay document type recognised, with the shape that identifies it."""

DEFINITION_TYPES: dict[str, str] = {
    "tool_manifest": "tool_manifest",
    "reference_tool_catalog": "tool_manifest",
    "execution_sandbox": "sandbox_policy",
    "agent_playbook": "playbook",
    "project_config": "project_config",
}
"""The document types that are registry definitions -> the strongroom kind they become."""

_OPERATION = "mass_relay.convert"

#: A tool without constraints: the built-in policy's ceiling.
DEFAULT_TIMEOUT_SECONDS = 3600
#: A tool without governance (a reference catalog entry): approval before it runs.
DEFAULT_GOVERNANCE: dict[str, Any] = {
    "level": "A2",
    "requires_hitl": False,
    "requires_run_logging": True,
}
_ENTRYPOINT_RE = re.compile(ENTRYPOINT_PATTERN)
_DOTTED_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")


def document_type(data: Any) -> str | None:
    """The Mass Relay document type of parsed JSON ``data`` (a key of `DOCUMENT_TYPES`), or
    None: not a mapping, a strongroom definition (it has ``kind``), or no known shape."""
    if not isinstance(data, Mapping) or "kind" in data:
        return None
    keys = set(data)
    stored = {"stored_at", "storage"} <= keys
    if "request_id" in keys and "tool_id" in keys:
        return "python_runner_response" if "status" in keys else "python_runner_request"
    if stored:
        for key, found in (
            ("playbook_id", "playbook_persistence"),
            ("project_id", "project_config_persistence"),
            ("run_id", "run_persistence"),
        ):
            if key in keys:
                return found
        return None
    if "tools" in keys and "manifest_id" in keys:
        return "tool_manifest"
    if "tools" in keys and "catalog_id" in keys:
        return "reference_tool_catalog"
    if "sandbox_id" in keys and keys & {"filesystem", "network", "resources"}:
        return "execution_sandbox"
    if "playbook_id" in keys and "steps" in keys:
        return "agent_playbook"
    if "project_id" in keys and "name" in keys and "version" in keys:
        return "project_config"
    return None


def original_document(definition: Definition) -> dict[str, Any] | None:
    """The Mass Relay document a definition was converted from, field for field (None: it
    was not)."""
    kept = definition.extensions.get(EXTENSION_KEY)
    if not isinstance(kept, dict) or not isinstance(kept.get("original"), dict):
        return None
    original: dict[str, Any] = kept["original"]
    return original


def to_definition(data: Any, *, file_name: str | None = None) -> dict[str, Any]:
    """A Mass Relay definition document -> strongroom definition data (a mapping with
    ``kind``, validated when published), the original kept under
    ``extensions["mass_relay"]``. `ValidationError` for anything else (a runner request or
    a persistence record says which function takes it)."""
    found = document_type(data)
    where = f"{file_name}: " if file_name else ""
    if found is None:
        raise ValidationError(
            f"{where}not a Mass Relay document: none of the shapes "
            f"{', '.join(DOCUMENT_TYPES)} (a strongroom definition has a top-level 'kind')",
            operation=_OPERATION,
            file=file_name,
            reason="not_mass_relay",
        )
    if found not in DEFINITION_TYPES:
        raise ValidationError(
            f"{where}a Mass Relay {found} is not a registry definition: {_elsewhere(found)}",
            operation=_OPERATION,
            file=file_name,
            reason="not_a_definition",
            document=found,
        )
    doc = dict(data)
    converted = _CONVERTERS[found](doc)
    converted["extensions"] = {EXTENSION_KEY: {"document": found, "original": doc}}
    return converted


def _elsewhere(found: str) -> str:
    if found == "python_runner_request":
        return (
            "run it with `strongroom tools run --request FILE` "
            "(strongroom.integrations.mass_relay.run_request)"
        )
    if found == "python_runner_response":
        return "read it with strongroom.integrations.mass_relay.runner_response"
    return (
        "read it with strongroom.integrations.mass_relay.persistence_record; strongroom "
        "computes these for its own versions (`strongroom registry show REF "
        "--persistence-record`)"
    )


# -- the converters ----------------------------------------------------------------------------


def _common(doc: dict[str, Any], id_field: str, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind, id_field: doc.get(id_field)}
    for key in ("name", "version", "owner", "created_at", "updated_at"):
        if key in doc:
            out[key] = doc[key]
    if isinstance(doc.get("description"), str):
        out["description"] = doc["description"]
    return out


def _whole(value: Any, default: int) -> Any:
    """A Mass Relay number (seconds, megabytes, retries: JSON numbers that may be
    fractional) as a whole number, rounded up; ``default`` when absent."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default if value is None else value  # the model reports a wrong type
    return math.ceil(value)


def _entrypoint(value: Any) -> str | None:
    """``package.module:function`` as it is; Mass Relay's dotted ``package.module.function``
    (reference_tools.fetch_object_storage.run) with the last dot made the colon; anything
    else leaves the tool unbound."""
    if not isinstance(value, str):
        return None
    if _ENTRYPOINT_RE.fullmatch(value):
        return value
    if _DOTTED_RE.fullmatch(value):
        module, _, function = value.rpartition(".")
        return f"{module}:{function}"
    return None


def _tool(tool: Any) -> Any:
    if not isinstance(tool, dict):
        return tool  # the model reports it
    out: dict[str, Any] = {key: tool[key] for key in ("tool_id", "name", "version") if key in tool}
    if isinstance(tool.get("description"), str):
        out["description"] = tool["description"]
    if "execution_lane" in tool:
        out["execution_lane"] = tool["execution_lane"]
    entrypoint = _entrypoint(tool.get("entrypoint"))
    if entrypoint is not None:
        out["entrypoint"] = entrypoint
    contract = tool.get("contract")
    if isinstance(contract, dict):
        out["contract"] = {
            key: contract[key]
            for key in ("request_schema", "response_schema", "error_schema")
            if key in contract
        }
    else:  # a catalog entry: examples, no schemas
        out["contract"] = {
            "request_schema": {"type": "object"},
            "response_schema": {"type": "object"},
        }
    governance = tool.get("governance")
    out["governance"] = (
        {
            key: governance[key]
            for key in ("level", "requires_hitl", "requires_run_logging")
            if key in governance
        }
        if isinstance(governance, dict)
        else dict(DEFAULT_GOVERNANCE)
    )
    constraints = tool.get("constraints")
    constraints = constraints if isinstance(constraints, dict) else {}
    out["constraints"] = {
        "timeout_seconds": _whole(constraints.get("timeout_seconds"), DEFAULT_TIMEOUT_SECONDS),
        "max_retries": _whole(constraints.get("max_retries"), 0),
    }
    return out


def _tool_manifest(doc: dict[str, Any]) -> dict[str, Any]:
    out = _common(doc, "manifest_id", "tool_manifest")
    out["tools"] = [_tool(tool) for tool in doc.get("tools") or []]
    return out


def _reference_catalog(doc: dict[str, Any]) -> dict[str, Any]:
    out = _common(doc, "catalog_id", "tool_manifest")
    out["manifest_id"] = out.pop("catalog_id")
    out["tools"] = [_tool(tool) for tool in doc.get("tools") or []]
    return out


def _sandbox(doc: dict[str, Any]) -> dict[str, Any]:
    out = _common(doc, "sandbox_id", "sandbox_policy")
    if "execution_lane" in doc:
        out["execution_lane"] = doc["execution_lane"]
    fs = doc.get("filesystem")
    if isinstance(fs, dict):
        mode = fs.get("mode", "deny-all")
        out["filesystem"] = {"mode": mode}
        if mode != "deny-all":  # deny-all: no paths at all
            out["filesystem"]["read_paths"] = fs.get("read_paths", [])
        if mode == "read-write":  # read-only: nothing written, whatever write_paths says
            out["filesystem"]["write_paths"] = fs.get("write_paths", [])
    net = doc.get("network")
    if isinstance(net, dict):
        mode = net.get("mode", "deny-all")
        out["network"] = {"mode": mode}
        if mode != "deny-all":
            out["network"]["allow_hosts"] = net.get("allow_hosts", [])
            out["network"]["allow_ports"] = net.get("allow_ports", [])
    env = doc.get("environment")
    if isinstance(env, dict) and "allowlist" in env:
        out["environment"] = {"allowlist": env["allowlist"]}
    res = doc.get("resources")
    if isinstance(res, dict):
        out["resources"] = {
            "cpu_cores": res.get("cpu_cores"),
            "memory_mb": _whole(res.get("memory_mb"), 0),
            "timeout_seconds": _whole(res.get("timeout_seconds"), DEFAULT_TIMEOUT_SECONDS),
        }
    logging = doc.get("logging")
    if isinstance(logging, dict):
        patterns = logging.get("redact_patterns") or []
        # Mass Relay's patterns are literal text; strongroom's are regular expressions.
        out["logging"] = {
            "redact_patterns": [re.escape(p) if isinstance(p, str) else p for p in patterns]
        }
    return out


def _playbook(doc: dict[str, Any]) -> dict[str, Any]:
    out = _common(doc, "playbook_id", "playbook")
    steps: list[Any] = []
    produced: dict[str, str] = {}  # output name -> the step that produces it
    for step in doc.get("steps") or []:
        if not isinstance(step, dict):
            steps.append(step)
            continue
        converted: dict[str, Any] = {"step_id": step.get("step_id"), "tool": step.get("action")}
        if isinstance(step.get("name"), str):
            converted["name"] = step["name"]
        if isinstance(step.get("purpose"), str):
            converted["description"] = step["purpose"]
        depends = []
        for name in step.get("inputs") or []:
            source = produced.get(name) if isinstance(name, str) else None
            if source is not None and source not in depends:
                depends.append(source)
        if depends:
            converted["depends_on"] = depends
        for name in step.get("outputs") or []:
            if isinstance(name, str) and isinstance(step.get("step_id"), str):
                produced.setdefault(name, step["step_id"])
        steps.append(converted)
    out["steps"] = steps
    return out


def _project(doc: dict[str, Any]) -> dict[str, Any]:
    out = _common(doc, "project_id", "project_config")
    refs: list[Any] = []
    for entry in doc.get("playbooks") or []:
        ident = entry.get("playbook_id") if isinstance(entry, dict) else entry
        if isinstance(ident, str) and _is_name(ident) and ident not in refs:
            refs.append(ident)
    if refs:
        out["playbooks"] = refs
    return out


def _is_name(value: str) -> bool:
    try:
        check_name(value)
    except ValueError:
        return False
    return True


_CONVERTERS = {
    "tool_manifest": _tool_manifest,
    "reference_tool_catalog": _reference_catalog,
    "execution_sandbox": _sandbox,
    "agent_playbook": _playbook,
    "project_config": _project,
}
