"""The registry of versioned definitions: parsing, validation and canonical form.

    from strongroom.registry import load_definition, canonical_bytes, definition_digest

    defn = load_definition(path.read_bytes(), file_name=path.name)   # YAML or JSON
    await check_references(defn, resolver)                           # against the registry
    blob = canonical_bytes(defn)                                     # what is stored
    digest = definition_digest(defn)                                 # sha256 of ``blob``

- `strongroom.registry.parse`: bytes -> data -> model (strict YAML, JSON), `load_definition`.
- `strongroom.registry.validate`: the document-level checks, error shapes, references,
  dependency order.
- `strongroom.registry.canonical`: the canonicalisation rule and object paths.

The models live in `strongroom.models.registry` (re-exported from `strongroom.models`).
"""

from strongroom.registry.canonical import (
    OBJECT_FOLDERS,
    canonical_bytes,
    canonical_form,
    definition_digest,
    object_path,
)
from strongroom.registry.parse import (
    MAX_DEFINITION_BYTES,
    definition_from_data,
    definition_model,
    detect_format,
    load_definition,
    parse_document,
)
from strongroom.registry.validate import (
    Issue,
    Resolver,
    check_references,
    contract_issues,
    execution_order,
    field_path,
    find_cycles,
    validate_definition,
)

__all__ = [
    "MAX_DEFINITION_BYTES",
    "OBJECT_FOLDERS",
    "Issue",
    "Resolver",
    "canonical_bytes",
    "canonical_form",
    "check_references",
    "contract_issues",
    "definition_digest",
    "definition_from_data",
    "definition_model",
    "detect_format",
    "execution_order",
    "field_path",
    "find_cycles",
    "load_definition",
    "object_path",
    "parse_document",
    "validate_definition",
]
