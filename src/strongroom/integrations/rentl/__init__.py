"""rentl's storage ports on a strongroom vault: drop-in replacements for rentl's filesystem
adapters (``FileSystemRunStateStore``, ``FileSystemArtifactStore``, ``FileSystemLogStore``).

    from strongroom.integrations.rentl import rentl_stores

    stores = rentl_stores("./.strongroom")  # or an open Vault, or postgresql://... + blobs_url
    orchestrator = PipelineOrchestrator(
        ...,
        run_state_store=stores.run_state,
        artifact_store=stores.artifacts,
        log_store=stores.logs,
    )

Each method keeps rentl's name, arguments, return values (None where rentl returns None),
error codes and error shape (`StorageError` with ``.info``, `StorageBatchError`); what each
one does in the vault is in `strongroom.integrations.rentl.stores`. rentl's records are
mirrored in `.schemas` (rentl needs Python 3.14 and is not a dependency); rentl's own models
are accepted as they are.
"""

from strongroom.integrations.rentl.errors import (
    ErrorDetails,
    ErrorResponse,
    StorageBatchError,
    StorageError,
    StorageErrorCode,
    StorageErrorDetails,
    StorageErrorInfo,
)
from strongroom.integrations.rentl.ports import (
    ArtifactStoreProtocol,
    LogStoreProtocol,
    RunStateStoreProtocol,
)
from strongroom.integrations.rentl.stores import (
    ARTIFACT_NAMESPACE,
    INDEX_NAMESPACE,
    RentlSchemas,
    RentlStores,
    StrongroomArtifactStore,
    StrongroomLogStore,
    StrongroomRunStateStore,
    VaultHandle,
    rentl_stores,
)

__all__ = [
    "ARTIFACT_NAMESPACE",
    "INDEX_NAMESPACE",
    "ArtifactStoreProtocol",
    "ErrorDetails",
    "ErrorResponse",
    "LogStoreProtocol",
    "RentlSchemas",
    "RentlStores",
    "RunStateStoreProtocol",
    "StorageBatchError",
    "StorageError",
    "StorageErrorCode",
    "StorageErrorDetails",
    "StorageErrorInfo",
    "StrongroomArtifactStore",
    "StrongroomLogStore",
    "StrongroomRunStateStore",
    "VaultHandle",
    "rentl_stores",
]
