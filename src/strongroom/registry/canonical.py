"""Canonical bytes of a definition: what is stored, hashed and compared.

The rule: take the model's JSON-mode dump **without the fields that equal their default**
(``exclude_defaults``), put ``kind`` back (it is always present), and serialise it with
`strongroom.models.sorted_json` (keys sorted, no whitespace, UTF-8, no NaN; the bytes are
content, addressed by their SHA-256, not a hashing format, and keep this form so an unchanged
definition keeps its digest across strongroom versions). So:

- YAML or JSON, key order, comments, quoting, indentation, anchors/aliases: irrelevant;
- writing a default explicitly (``requires_hitl: false``, ``pointer: ""``, ``depends_on: []``)
  or leaving it out: the same bytes;
- values are normalised by their field type: timestamps to UTC (``...Z``), references to their
  canonical spelling (``tool@sha256:<hex>``), numbers in float fields to floats (``1`` ->
  ``1.0``), enums to their values;
- list order is kept (steps, tools, depends_on are stored as written), and free JSON (contract
  schemas, ``value`` inputs, ``settings.defaults``) is kept exactly as parsed: there ``1`` and
  ``1.0`` differ, and ``null`` is kept.

The digest of a version is the SHA-256 of these bytes; `load_definition` of them gives back an
equal model (the canonical form is itself a valid JSON definition file).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from strongroom.ids import check_name
from strongroom.models import sorted_json
from strongroom.models.registry import (
    VERSION_LABEL_PATTERN,
    Definition,
    DefinitionKind,
)

__all__ = [
    "OBJECT_FOLDERS",
    "canonical_bytes",
    "canonical_form",
    "definition_digest",
    "object_path",
]

OBJECT_FOLDERS: dict[DefinitionKind, str] = {
    DefinitionKind.TOOL_MANIFEST: "tools",
    DefinitionKind.PLAYBOOK: "playbooks",
    DefinitionKind.PROJECT_CONFIG: "projects",
    DefinitionKind.SANDBOX_POLICY: "policies",
}
"""The catalog namespace folder of each kind (``playbooks/<id>/<version>.json``...)."""


def canonical_form(defn: Definition) -> dict[str, Any]:
    """The JSON value whose `sorted_json` is `canonical_bytes` (see the module docstring)."""
    body = defn.model_dump(mode="json", exclude_defaults=True)
    body["kind"] = defn.KIND.value
    return body


def canonical_bytes(defn: Definition) -> bytes:
    """The canonical bytes of a definition (stored as its blob; hashed for its digest)."""
    return sorted_json(canonical_form(defn))


def definition_digest(defn: Definition) -> str:
    """SHA-256 (lowercase hex) of `canonical_bytes`: the version's address."""
    return hashlib.sha256(canonical_bytes(defn)).hexdigest()


def object_path(kind: DefinitionKind | str, definition_id: str, version: str) -> str:
    """Deterministic catalog object path of a version: ``<folder>/<id>/<version>.json``."""
    check_name(definition_id)
    if not re.fullmatch(VERSION_LABEL_PATTERN, version) or len(version) > 64:
        raise ValueError(f"{version!r} is not a version label")
    return f"{OBJECT_FOLDERS[DefinitionKind(kind)]}/{definition_id}/{version}.json"
