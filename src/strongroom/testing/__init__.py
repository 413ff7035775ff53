"""Conformance suites shipped with strongroom: a backend is done when it passes them.

- `VaultTests`: the whole vault (runs, snapshots, index, artifacts, logs, audit, catalog,
  verify) over a metadata store + blob store pair.
- `BlobStoreTests` (``strongroom.testing.blobs``): the blob port alone.
"""

from strongroom.testing.vault import VaultTests

__all__ = ["VaultTests"]
