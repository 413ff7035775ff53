"""Conformance suites shipped with strongroom: a backend is done when it passes them.

- `VaultTests`: the whole vault (runs, snapshots, index, artifacts, logs, audit, catalog,
  registry, identity, verify) over a metadata store + blob store pair; it is the union of
  one suite per narrow records port (`RunRecordsTests`, `ArtifactRecordsTests`,
  `LogRecordsTests`, `AuditRecordsTests`, `CatalogRecordsTests`, `RegistryRecordsTests`,
  `RetentionRecordsTests`, `StepClaimRecordsTests`, `VerifyRecordsTests`).
- `BlobStoreTests` (``strongroom.testing.blobs``): the blob port alone.

The fixture contract is in `strongroom.testing._base` (and docs/architecture.md, "Adding a
backend"); installing strongroom registers a pytest plugin (``strongroom.pytest_plugin``)
that runs these suites' async tests without any asyncio configuration of your own.
"""

from strongroom.testing.vault import (
    ArtifactRecordsTests,
    AuditRecordsTests,
    CatalogRecordsTests,
    LogRecordsTests,
    RegistryRecordsTests,
    RetentionRecordsTests,
    RunRecordsTests,
    StepClaimRecordsTests,
    VaultTests,
    VerifyRecordsTests,
)

__all__ = [
    "ArtifactRecordsTests",
    "AuditRecordsTests",
    "CatalogRecordsTests",
    "LogRecordsTests",
    "RegistryRecordsTests",
    "RetentionRecordsTests",
    "RunRecordsTests",
    "StepClaimRecordsTests",
    "VaultTests",
    "VerifyRecordsTests",
]
