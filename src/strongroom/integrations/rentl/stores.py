"""rentl's storage ports on a strongroom vault.

======================  =======================================================================
rentl                   strongroom
======================  =======================================================================
save_run_state          a snapshot of the run (the record kept whole in ``data["rentl"]``;
                        phase history, revisions, artifacts, progress and last error mapped
                        onto strongroom's `RunState`), after making sure the run exists
load_run_state          the latest snapshot (sha256 verified), or None; ``location`` and
                        ``checksum_sha256`` say where the snapshot blob is and its digest
save_run_index          a small JSON artifact of the run in namespace ``rentl-index`` holding
                        the whole record (also in its metadata, so listing reads no blob); the
                        run record gets rentl's status, current phase and last error
list_run_index          the newest index artifact of each run, filtered and sorted as rentl
write_artifact_json/l   an artifact in namespace ``rentl`` (content-addressed, checksum real),
                        tagged ``rentl.artifact=<rentl artifact id>``
list_artifacts          the run's artifacts in namespace ``rentl``
load_artifact_json/l    the newest artifact with that tag, bytes verified, parsed into the model
append_log(s)           lines of the run's hash-chained log (``warn`` stored as ``warning``)
get_log_reference       the log's reference with its live entry count, or None
======================  =======================================================================

Status: strongroom's runs follow a state machine in which a finished run never runs again,
while rentl re-runs failed or completed runs and logs after marking them completed. So a
rentl ``running`` run is ``running`` in strongroom, and a run rentl calls ``completed``,
``failed`` or ``cancelled`` is ``paused`` there (still resumable, log still open) until
`StrongroomRunStateStore.close_run` ends it for good (sealing its log).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from strongroom.integrations.rentl._base import (
    ARTIFACT_NAMESPACE,
    INDEX_NAMESPACE,
    RentlSchemas,
)
from strongroom.integrations.rentl._handle import VaultHandle
from strongroom.integrations.rentl.artifacts import StrongroomArtifactStore
from strongroom.integrations.rentl.logs import StrongroomLogStore
from strongroom.integrations.rentl.run_state import StrongroomRunStateStore
from strongroom.vault import Vault

__all__ = [
    "ARTIFACT_NAMESPACE",
    "INDEX_NAMESPACE",
    "RentlSchemas",
    "RentlStores",
    "StrongroomArtifactStore",
    "StrongroomLogStore",
    "StrongroomRunStateStore",
    "VaultHandle",
    "rentl_stores",
]


@dataclass(frozen=True)
class RentlStores:
    """The three stores over one vault (`rentl_stores`)."""

    run_state: StrongroomRunStateStore
    artifacts: StrongroomArtifactStore
    logs: StrongroomLogStore

    async def aclose(self) -> None:
        """Close the vault if the stores opened it from a URL."""
        await self.run_state.handle.aclose()


def rentl_stores(
    vault: Vault | str | Path,
    *,
    blobs_url: str | Path | None = None,
    project: str = "rentl",
    actor: str = "rentl",
    schemas: RentlSchemas | None = None,
) -> RentlStores:
    """rentl's run state, artifact and log stores on one vault: an open `Vault`, or a URL
    / path opened on first use (close it with `RentlStores.aclose`)."""
    handle = VaultHandle(vault, blobs_url=blobs_url, project=project, actor=actor)
    return RentlStores(
        run_state=StrongroomRunStateStore(handle, schemas=schemas),
        artifacts=StrongroomArtifactStore(handle, schemas=schemas),
        logs=StrongroomLogStore(handle, schemas=schemas),
    )
