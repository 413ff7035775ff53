"""Directory bundles: a whole vault as plain files, readable without strongroom.

A bundle is what ``strongroom export --to bundle:DIR`` writes and ``strongroom import --from
DIR`` reads. Format ``strongroom-bundle``, version 1::

    DIR/manifest.json                 written last: a bundle is complete iff it has one
    DIR/records/<kind>.jsonl          every record of one kind, one JSON object per line
    DIR/blobs/sha256/ab/cd/<hex>      every blob; <hex> is the SHA-256 of the file's bytes,
                                      ab and cd its first two byte pairs (read-only files)
    DIR/.partial/                     temp files of an unfinished export (gone when complete)
    DIR/blobs/tmp/                    temp files of blob writes (empty or gone when complete)

**Records.** ``<kind>`` is one of `RECORD_KINDS`, listed here in import order (a record only
refers to kinds above it): ``providers``, ``namespaces``, ``runs``, ``snapshots``,
``artifacts``, ``log_entries``, ``log_references``, ``objects`` (catalog objects),
``definition_versions``, ``channel_moves``, ``actors``, ``approvals`` (the registry's records),
``holds`` (retention holds, released ones too), ``audit_entries`` (run deletions are there, as
their ``run.deleted`` tombstones), ``checkpoints`` (audit Merkle checkpoints). Each line is
the canonical JSON (keys sorted, no whitespace, UTF-8) of one record exactly as
`strongroom.models` dumps it (``model_dump(mode="json")``; JSON Schemas in ``schemas/``),
copied verbatim from the source
vault: same ids, versions, timestamps and hashes, so log and audit chains and Merkle checkpoints
replay in any vault the bundle is imported into. Order within a file: providers, namespaces
by id; runs by (created_at, run_id); snapshots and log references by run, in run order;
artifacts by id; log entries by (run_id, seq); objects by (path, namespace_id); audit entries
by seq; checkpoints by tree size; definition versions by (kind, definition_id), oldest first;
channel moves by definition, in history order; approvals oldest first; holds by id. Every file
exists, possibly empty (a bundle written before the registry kinds or holds were added lacks
their files and reads as having none).

**manifest.json**::

    {"format": "strongroom-bundle", "format_version": 1,
     "created_at": "2025-03-01T14:05:09.123456Z", "strongroom_version": "0.1.0",
     "source": {"metadata_backend": "sqlite", "blob_backend": "local"},
     "kinds": ["providers", ..., "checkpoints"],
     "counts": {"providers": 1, ..., "checkpoints": 2, "blobs": 17},
     "blob_bytes": 4718592,
     "files": {"records/runs.jsonl": {"sha256": "<hex>", "size_bytes": 2048, "records": 3},
               ...}}

``source`` names backend kinds only (never a URL, path or credential). ``files`` holds the
SHA-256 of every records file; ``counts.blobs`` / ``blob_bytes`` describe the blob files.

**Checking a bundle without strongroom**: every ``files`` entry hashes to its ``sha256`` and
has ``records`` lines; every blob file hashes to its own name; every ``sha256`` a snapshot,
artifact or catalog object record names (and every definition version's ``digest``) is a
blob file of that ``size_bytes``. `verify_bundle`
does that and also replays the log and audit chains and recomputes the checkpoints.

**Writing** is resumable: blobs are published atomically (temp file, fsync, link), each records
file is written whole to ``.partial/`` and renamed into place, the manifest goes last. A
re-run over an unfinished bundle rewrites the records files and skips blobs already present.
A finished bundle is never silently rewritten: exporting into it again succeeds only if the
records would come out identical, and is `Conflict` otherwise. One writer at a time (a lock
in ``.partial/``).

Modules: `format` (layout, `RECORD_KINDS`, the manifest), `writer` (`BundleWriter`), `reader`
(`BundleReader`), `verify` (`verify_bundle`).
"""

from __future__ import annotations

from strongroom.bundle.format import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    KINDS_BY_NAME,
    RECORD_KINDS,
    RecordKind,
    encode_record,
    is_bundle_dir,
    read_manifest,
)
from strongroom.bundle.reader import BundleReader
from strongroom.bundle.verify import verify_bundle
from strongroom.bundle.writer import BundleWriter

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "KINDS_BY_NAME",
    "RECORD_KINDS",
    "BundleReader",
    "BundleWriter",
    "RecordKind",
    "encode_record",
    "is_bundle_dir",
    "read_manifest",
    "verify_bundle",
]
