"""Verified, resumable copies of a whole vault: vault → vault (any backend pair), vault →
directory bundle, bundle → vault (see `strongroom.bundle` for the bundle format).

    report = await export_vault(source_vault, Path("/backups/2025-03-01"))   # to a bundle
    report = await import_vault(Path("/backups/2025-03-01"), target_vault)   # from a bundle
    report = await transfer(source_vault, target_vault)                      # vault to vault

What is copied: every record of every kind in `RECORD_KINDS` (providers, namespaces, runs,
snapshots, artifacts, log entries, log references, catalog objects, registry definition
versions, channel moves and approvals, audit entries, Merkle checkpoints) **verbatim** — same
ids, row versions, timestamps, hashes — so every log chain, the audit chain and its
checkpoints verify in the target (channel moves are re-applied in history order through the
channel compare-and-set, so the target's pointers follow; an approval revoked since the last
copy is revoked in the target); and every blob of the source's blob store (referenced or
not), streamed, its SHA-256 checked while reading the source and again by the target on
write (``expected_sha256``). Work happens through the two ports only, so every backend pair
works.

How it runs:

1. **Check** (only when the target already holds records): every source record is compared
   with the target's record under the same primary key. A different one is `Conflict`
   naming the first such record, raised before anything is written — unless the target's
   record is an earlier state of the source's (see below).
2. **Blobs**: each source blob missing from the target is streamed across.
3. **Records**, kind by kind in dependency order, in batches. A record the target already
   holds (identical, as checked) is skipped; a log or audit chain continues from the
   target's head. A record that names a blob is written only once its blob is in the target.
4. **Finish**: a bundle gets its manifest (the completion marker).
5. **Verify** (default on): the target is verified like ``strongroom verify`` (a bundle by
   `verify_bundle`); the report says what was checked and any problem.

Every step is idempotent, so a transfer killed at any point and run again completes with no
duplicate and no error. A source blob that is missing or damaged does not stop the copy: it
is reported in ``problems`` (and by the verify step) and ``ok`` is False.

Re-running against a source that moved on (a live vault, a nightly sync) brings the target up
to date: new records are added, chains continue, and the few records that change in place
are updated when the target's copy is an earlier state of the source's: a run whose row
``version`` is lower (it is stepped up to the source's exact version), a log reference not
yet sealed, and a provider or namespace when the target's audit chain is a prefix of the
source's (every catalog change is audited, so the target is an earlier copy of the same
vault). Anything else that differs is a `Conflict`: a run at the same or a higher version,
a sealed log reference, an immutable record (snapshot, artifact, log or audit entry,
checkpoint, catalog object), a diverged audit chain. Nothing is ever deleted from the target
(a catalog object deleted in the source stays). A checkpoint newer than the audit entries
read is left for the next run. Records read at slightly different moments of a live source
may leave the target transiently inconsistent (e.g. a log sealed after its lines were read):
verify reports it and the next run completes it.

Limits: one writer per target. A vault opened with plain `Vault.open` creates its default
catalog entries and audits them, i.e. it is not empty and its audit chain is its own: open
targets with `open_target_vault` (``Vault.open(..., bootstrap=False)``; the CLI does);
importing into such a vault is a `Conflict`.

Secrets: a report names a vault by its `safe_url` (no password, no credential query value)
and a bundle's manifest names backend kinds only; records and blobs hold none (log lines
were redacted before they were stored).

The modules: `endpoints` (``--to``/``--from`` values, opening the two ends), `sources` and
`sinks` (reading a vault or bundle, writing one), `compare` (identical, earlier state or
conflict), `engine` (the copy), `report` (`TransferReport`).
"""

from __future__ import annotations

from strongroom.services.verify import ProgressCallback
from strongroom.transfer.endpoints import (
    BUNDLE_PREFIX,
    Endpoint,
    open_sink,
    open_source,
    open_target_vault,
    parse_endpoint,
)
from strongroom.transfer.engine import Copy
from strongroom.transfer.report import BlobCounts, TransferReport
from strongroom.transfer.sources import iter_vault_records
from strongroom.vault import Vault

__all__ = [
    "BUNDLE_PREFIX",
    "BlobCounts",
    "Endpoint",
    "TransferReport",
    "export_vault",
    "import_vault",
    "iter_vault_records",
    "open_target_vault",
    "parse_endpoint",
    "transfer",
]


def _noop(stage: str, done: int, total: int | None) -> None:
    return None


async def transfer(
    source: Endpoint,
    target: Endpoint,
    *,
    progress: ProgressCallback | None = None,
    verify: bool = True,
) -> TransferReport:
    """Copy every record and blob of ``source`` into ``target``; each is an open `Vault` or
    the `Path` of a bundle directory (read: a finished bundle; written: created or
    completed). Vaults stay open (the caller owns them); see the module docstring."""
    async with open_source(source) as src, open_sink(target, source=source) as sink:
        report = TransferReport.start(src.describe(), sink.describe())
        return await Copy(src, sink, progress or _noop, report).run(verify=verify)


async def export_vault(
    source: Vault,
    target: Endpoint,
    *,
    progress: ProgressCallback | None = None,
    verify: bool = True,
) -> TransferReport:
    """Copy a vault into another vault or into a bundle directory (`transfer`)."""
    return await transfer(source, target, progress=progress, verify=verify)


async def import_vault(
    source: Endpoint,
    target: Vault,
    *,
    progress: ProgressCallback | None = None,
    verify: bool = True,
) -> TransferReport:
    """Copy a bundle directory (or another vault) into a vault (`transfer`)."""
    return await transfer(source, target, progress=progress, verify=verify)
