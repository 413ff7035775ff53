"""Backend adapters and the URL that chooses a pair of them.

- a directory path (default ``./.strongroom``) or ``file://`` URL: the embedded vault,
  SQLite (``<dir>/vault.db``) + local blobs (``<dir>/blobs/``);
- ``memory://``: both stores in memory (tests, scratch work; nothing survives the process).

PostgreSQL (``postgresql://``) and S3 (``s3://``) adapters arrive with the scale-out backends.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from strongroom.adapters._local import LocalBlobStore
from strongroom.adapters._memory import MemoryMetadataStore
from strongroom.adapters._memory_blobs import MemoryBlobStore
from strongroom.adapters._sqlite import SqliteMetadataStore
from strongroom.errors import NotFound, ValidationError
from strongroom.ports import BlobStore, MetadataStore

__all__ = [
    "LocalBlobStore",
    "MemoryBlobStore",
    "MemoryMetadataStore",
    "SqliteMetadataStore",
    "embedded_paths",
    "open_stores",
]


def embedded_paths(directory: Path) -> tuple[Path, Path]:
    """(SQLite database file, blob root) of an embedded vault directory."""
    return directory / "vault.db", directory / "blobs"


def open_stores(url: str, *, create: bool = True) -> tuple[MetadataStore, BlobStore]:
    """Build (not yet open) the metadata and blob stores a vault URL names.

    With ``create=False`` a vault that does not exist yet is `NotFound` instead of being
    created (so a mistyped path does not silently start an empty vault).
    """
    if not url or "\x00" in url:
        raise ValidationError("vault URL is empty or contains NUL", operation="open_vault")
    if url == "memory://" or url.startswith("memory://"):
        return MemoryMetadataStore(), MemoryBlobStore()
    parts = urlsplit(url)
    if parts.scheme == "file":
        directory = Path(unquote(parts.path))
    elif parts.scheme == "" or (len(parts.scheme) == 1 and url[1:3] in (":\\", ":/")):
        directory = Path(url)
    else:
        raise ValidationError(
            f"unsupported vault URL scheme {parts.scheme!r}: use a directory path, file:// "
            "or memory://",
            operation="open_vault",
            reason="unsupported_scheme",
            scheme=parts.scheme,
        )
    db_path, blob_root = embedded_paths(directory)
    if not create and not db_path.is_file():
        raise NotFound(
            f"no vault at {directory}: create one with `strongroom init` or check --vault",
            operation="open_vault",
            path=str(directory),
        )
    return SqliteMetadataStore(db_path), LocalBlobStore(blob_root)
