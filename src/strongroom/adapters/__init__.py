"""Backend adapters and the URLs that choose a pair of them.

Records (``url``, the ``--vault`` option / ``STRONGROOM_URL``):

- a directory path (default ``./.strongroom``) or ``file://`` URL: the embedded vault,
  SQLite (``<dir>/vault.db``), with its blobs in ``<dir>/blobs/`` unless ``blobs_url`` says
  otherwise;
- ``postgresql://user@host:5432/dbname`` (also ``postgres://``, ``postgresql+psycopg://``):
  PostgreSQL; needs ``blobs_url``;
- ``memory://``: both stores in memory (tests, scratch work; nothing survives the process).

Blobs (``blobs_url``, the ``--blobs`` option / ``STRONGROOM_BLOBS_URL``):

- ``s3://bucket/prefix`` (``?endpoint=...&region=...``; credentials only from the
  environment): S3 or any S3-compatible store (MinIO, Ceph, R2...);
- a directory path or ``file://`` URL: a local blob directory;
- ``memory://``: in memory.

The PostgreSQL and S3 adapters are imported only when a URL asks for them, so the embedded
default starts without loading their drivers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from strongroom.adapters._inline import InlineBlobStore
from strongroom.adapters._local import LocalBlobStore
from strongroom.adapters._memory import MemoryMetadataStore
from strongroom.adapters._memory_blobs import MemoryBlobStore
from strongroom.adapters._sqlite import SqliteMetadataStore
from strongroom.errors import NotFound, ValidationError
from strongroom.ports import BlobStore, MetadataStore
from strongroom.secrets import safe_url

if TYPE_CHECKING:
    from strongroom.adapters._anchors import Witness
    from strongroom.adapters._postgres import PostgresMetadataStore
    from strongroom.adapters._s3 import S3BlobStore

__all__ = [
    "InlineBlobStore",
    "LocalBlobStore",
    "MemoryBlobStore",
    "MemoryMetadataStore",
    "PostgresMetadataStore",
    "S3BlobStore",
    "SqliteMetadataStore",
    "embedded_paths",
    "open_stores",
    "open_witness",
    "safe_url",
]

_POSTGRES_SCHEMES = frozenset({"postgresql", "postgres", "postgresql+psycopg"})


def open_witness(target: str | Path) -> Witness:
    """The anchor witness at ``target``: a JSONL file, a directory, or ``s3://bucket/prefix``
    (see `strongroom.adapters._anchors`). Imported on use: obstore loads only for S3."""
    from strongroom.adapters._anchors import open_witness as _open

    return _open(target)


def __getattr__(name: str) -> object:
    # Lazy exports: importing strongroom.adapters must not load psycopg or obstore.
    if name == "PostgresMetadataStore":
        from strongroom.adapters._postgres import PostgresMetadataStore

        return PostgresMetadataStore
    if name == "S3BlobStore":
        from strongroom.adapters._s3 import S3BlobStore

        return S3BlobStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def embedded_paths(directory: Path) -> tuple[Path, Path]:
    """(SQLite database file, blob root) of an embedded vault directory."""
    return directory / "vault.db", directory / "blobs"


def _check_url(url: str, what: str) -> None:
    if not url or "\x00" in url:
        raise ValidationError(f"{what} URL is empty or contains NUL", operation="open_vault")


def _local_path(url: str) -> Path | None:
    """The directory a path or ``file://`` URL names; None for any other scheme."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme == "" or (len(parts.scheme) == 1 and url[1:3] in (":\\", ":/")):
        return Path(url)
    return None


def _open_blobs(blobs_url: str) -> BlobStore:
    _check_url(blobs_url, "blob store")
    if blobs_url.startswith("memory://"):
        return MemoryBlobStore()
    if urlsplit(blobs_url).scheme == "s3":
        from strongroom.adapters._s3 import S3BlobStore

        return S3BlobStore.from_url(blobs_url)
    directory = _local_path(blobs_url)
    if directory is None:
        scheme = urlsplit(blobs_url).scheme
        raise ValidationError(
            f"unsupported blob store URL scheme {scheme!r}: use s3://bucket/prefix, a "
            "directory path, file:// or memory://",
            operation="open_vault",
            reason="unsupported_scheme",
            scheme=scheme,
            blobs_url=safe_url(blobs_url),
        )
    # A blob directory named apart from the vault is made at its first write, not at open: a
    # command that is then refused (a bad argument checked after opening) leaves no folder.
    return LocalBlobStore(directory, create=False)


def open_stores(
    url: str, *, blobs_url: str | None = None, create: bool = True
) -> tuple[MetadataStore, BlobStore]:
    """Build (not yet open) the metadata and blob stores a vault URL (and optionally a
    separate blob store URL) names.

    With ``create=False`` an embedded vault that does not exist yet is `NotFound` instead of
    being created (so a mistyped path does not silently start an empty vault). A PostgreSQL
    database must exist already (it is `NotFound` on open otherwise); its tables are created
    by the migrations on first open.
    """
    _check_url(url, "vault")
    if blobs_url == "":
        blobs_url = None
    if url.startswith("memory://"):
        return MemoryMetadataStore(), (
            _open_blobs(blobs_url) if blobs_url is not None else MemoryBlobStore()
        )
    scheme = urlsplit(url).scheme
    if scheme in _POSTGRES_SCHEMES:
        if blobs_url is None:
            raise ValidationError(
                "a PostgreSQL vault needs a blob store: pass --blobs s3://bucket/prefix (or a "
                "directory), or set STRONGROOM_BLOBS_URL",
                operation="open_vault",
                reason="blobs_url_required",
                url=safe_url(url),
            )
        blobs = _open_blobs(blobs_url)
        from strongroom.adapters._postgres import PostgresMetadataStore

        return PostgresMetadataStore(url, create=create), blobs
    directory = _local_path(url)
    if directory is None:
        raise ValidationError(
            f"unsupported vault URL scheme {scheme!r}: use a directory path, file://, "
            "postgresql:// or memory://",
            operation="open_vault",
            reason="unsupported_scheme",
            scheme=scheme,
            url=safe_url(url),
        )
    db_path, blob_root = embedded_paths(directory)
    if not create and not db_path.is_file():
        raise NotFound(
            f"no vault at {directory}: create one with `strongroom init` or check --vault",
            operation="open_vault",
            path=str(directory),
        )
    blobs = (
        _open_blobs(blobs_url)
        if blobs_url is not None
        else LocalBlobStore(blob_root, create=create)
    )
    return SqliteMetadataStore(db_path, create=create), blobs
