"""Mass Relay's contracts (github: santosizhar/usul-mass-relay) accepted as they are.

- Definitions (tool manifest, reference tool catalog, execution sandbox, agent playbook,
  project config) are recognised by their shape and published as strongroom definitions
  that keep the original document verbatim under ``extensions["mass_relay"]``:
  `strongroom registry publish FILE` does it for any such file, `publish` here from Python,
  `original_document` (or `strongroom registry show REF --original`) gives the document
  back, field for field. A tool without an entrypoint is published but not runnable until
  bound (`strongroom registry bind TOOL@VERSION --entrypoint module:function`).
- A PythonRunnerRequest runs through `ToolRunner` (`run_request`, or
  `strongroom tools run --request FILE`) and comes back as strongroom's `RunnerResponse`
  and as a PythonRunnerResponse.
- Persistence records convert both ways with strongroom's `PersistenceRecord`
  (`persistence_record`, `from_persistence_record`); strongroom computes the record of each
  registry version (`version_record`, `strongroom registry show REF --persistence-record`).

docs/registry.md, "Mass Relay documents", lists what maps to what.
"""

from __future__ import annotations

from typing import Any

from strongroom.integrations.mass_relay.contracts import (
    PersistenceDocument,
    PythonRunnerRequest,
    PythonRunnerResponse,
)
from strongroom.integrations.mass_relay.documents import (
    DEFINITION_TYPES,
    DOCUMENT_TYPES,
    EXTENSION_KEY,
    document_type,
    original_document,
    to_definition,
)
from strongroom.integrations.mass_relay.persistence import (
    from_persistence_record,
    persistence_document,
    persistence_record,
    version_record,
)
from strongroom.integrations.mass_relay.runner import (
    python_runner_request,
    python_runner_response,
    run_request,
    runner_request,
)
from strongroom.integrity import SigningKey
from strongroom.models import sorted_json
from strongroom.registry import parse_document
from strongroom.services.registry import PublishResult
from strongroom.vault import Vault

__all__ = [
    "DEFINITION_TYPES",
    "DOCUMENT_TYPES",
    "EXTENSION_KEY",
    "PersistenceDocument",
    "PythonRunnerRequest",
    "PythonRunnerResponse",
    "convert",
    "document_type",
    "from_persistence_record",
    "original_document",
    "persistence_document",
    "persistence_record",
    "publish",
    "python_runner_request",
    "python_runner_response",
    "run_request",
    "runner_request",
    "to_definition",
    "version_record",
]


def convert(data: bytes, *, file_name: str) -> bytes:
    """A definition file's bytes as strongroom publishes them: a Mass Relay definition
    document converted (`to_definition`, as JSON), anything else unchanged (a strongroom
    definition, or what publishing will refuse with its own message)."""
    parsed: Any = parse_document(data, file_name=file_name)
    if document_type(parsed) not in DEFINITION_TYPES:
        if document_type(parsed) is not None:
            to_definition(parsed, file_name=file_name)  # raises, saying where it belongs
        return data
    return sorted_json(to_definition(parsed, file_name=file_name))


async def publish(
    vault: Vault,
    data: bytes,
    *,
    file_name: str,
    signer: SigningKey | None = None,
    actor: str | None = None,
) -> PublishResult:
    """Publish a Mass Relay definition document (or a strongroom definition) as
    `strongroom registry publish` does."""
    return await vault.registry.publish(
        convert(data, file_name=file_name), file_name=file_name, signer=signer, actor=actor
    )
