"""Artifact content in the Control Room: previews that read a bounded prefix (memory stays
flat whatever the artifact's size), and downloads streamed and verified on the way.

A download of up to `VERIFY_FIRST_BYTES` is read and verified before its first byte is sent,
so a digest mismatch is an ``integrity_error`` answer that says so. A larger one is streamed
with its last chunk held back until the digest is checked: on a mismatch that chunk is never
sent and the connection is cut, so the client holds fewer bytes than ``Content-Length`` and
reports a failed download rather than a complete, wrong file."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import quote

from starlette.responses import Response, StreamingResponse

from strongroom.errors import IntegrityError
from strongroom.models import ArtifactFormat, ArtifactMetadata
from strongroom.vault import Vault
from strongroom.web.models import Preview

__all__ = ["INLINE_IMAGE_TYPES", "DownloadCut", "download", "preview"]

log = logging.getLogger("strongroom.web")

PREVIEW_BYTES: Final = 256 * 1024
PREVIEW_ROWS: Final = 50
PREVIEW_COLUMNS: Final = 30
CELL_CHARS: Final = 300
VERIFY_FIRST_BYTES: Final = 8 * 1024 * 1024
INLINE_IMAGE_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""Raster images a browser may show inline; anything else (SVG included: it can carry
script) is only ever served as an attachment."""


async def _prefix(vault: Vault, meta: ArtifactMetadata, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the content, and whether that is all of it (then verified:
    the stream checks the digest after its last chunk)."""
    chunks = await vault.artifacts.stream(meta.artifact_id)
    got = bytearray()
    complete = True
    try:
        async for chunk in chunks:
            got += chunk
            if len(got) > limit:
                complete = False
                break
    finally:
        close = getattr(chunks, "aclose", None)
        if not complete and close is not None:
            with contextlib.suppress(Exception):
                await close()
    return bytes(got[:limit]), complete


def _cell(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def _lines(text: str, complete: bool) -> list[str]:
    lines = text.splitlines()
    if not complete and lines:
        lines = lines[:-1]  # the last line may be cut
    return lines[:PREVIEW_ROWS]


def _jsonl_table(text: str, complete: bool) -> tuple[list[str], list[list[str]]] | None:
    records: list[dict[str, object]] = []
    for line in _lines(text, complete):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            return None
        records.append(value if isinstance(value, dict) else {"value": value})
    columns: list[str] = []
    for record in records:
        for key in record:
            if key not in columns and len(columns) < PREVIEW_COLUMNS:
                columns.append(key)
    rows = [[_cell(r[c]) if c in r else "" for c in columns] for r in records]
    return columns, rows


def _csv_table(text: str, complete: bool) -> tuple[list[str], list[list[str]]]:
    reader = csv.reader(io.StringIO("\n".join(_lines(text, complete))))
    rows = [[_cell(cell) for cell in row[:PREVIEW_COLUMNS]] for row in reader]
    if not rows:
        return [], []
    return rows[0], rows[1:]


def _kind_of(meta: ArtifactMetadata) -> str:
    media = meta.media_type.split(";")[0].strip().lower()
    if media in INLINE_IMAGE_TYPES:
        return "image"
    if meta.format is ArtifactFormat.JSONL or media in (
        "application/jsonl",
        "application/x-ndjson",
    ):
        return "jsonl"
    if meta.format is ArtifactFormat.CSV or media == "text/csv":
        return "csv"
    if meta.format is ArtifactFormat.JSON or media == "application/json" or media.endswith("+json"):
        return "json"
    if meta.format is ArtifactFormat.TXT or media.startswith("text/"):
        return "text"
    return "binary"


async def preview(vault: Vault, artifact_id: str) -> Preview:
    """What the artifact page shows: the first rows of JSONL/CSV as a table, JSON pretty
    printed, text, or an inline image; at most `PREVIEW_BYTES` read."""
    meta = await vault.artifacts.get(artifact_id)
    kind = _kind_of(meta)
    base = {"artifact_id": meta.artifact_id, "media_type": meta.media_type}
    base_size = {"size_bytes": meta.size_bytes}
    if kind == "image":
        return Preview(
            **base, **base_size, kind="image", bytes_read=0, truncated=False, verified=False,
            note="shown from the content URL",
        )  # fmt: skip
    if kind == "binary":
        return Preview(
            **base, **base_size, kind="none", bytes_read=0, truncated=False, verified=False,
            note="binary content: download it to look inside",
        )  # fmt: skip
    data, complete = await _prefix(vault, meta, PREVIEW_BYTES)
    text = data.decode("utf-8", errors="replace")
    common = {
        **base,
        **base_size,
        "bytes_read": len(data),
        "truncated": not complete,
        "verified": complete,
    }
    if kind == "jsonl":
        table = _jsonl_table(text, complete)
        if table is not None:
            return Preview(**common, kind="table", columns=table[0], rows=table[1])
    elif kind == "csv":
        columns, rows = _csv_table(text, complete)
        return Preview(**common, kind="table", columns=columns, rows=rows)
    elif kind == "json" and complete:
        try:
            pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pretty = text
        return Preview(**common, kind="json", text=pretty[:PREVIEW_BYTES])
    return Preview(**common, kind="text", text=text)


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _disposition(meta: ArtifactMetadata, inline: bool) -> str:
    name = meta.name or f"{meta.artifact_id}.{meta.format.value}"
    ascii_name = _UNSAFE_NAME.sub("_", name).strip("._") or meta.artifact_id
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


async def download(vault: Vault, artifact_id: str, *, inline: bool = False) -> Response:
    """The artifact's content as an attachment (``nosniff``), verified on the way; ``inline``
    only for the raster image types of `INLINE_IMAGE_TYPES`."""
    meta = await vault.artifacts.get_bound(artifact_id)
    media = meta.media_type.split(";")[0].strip().lower()
    inline = inline and media in INLINE_IMAGE_TYPES
    headers = {
        "content-disposition": _disposition(meta, inline),
        "x-content-type-options": "nosniff",
        "x-strongroom-sha256": meta.sha256,
        "content-security-policy": "default-src 'none'; sandbox",
    }
    media_type = media if inline else "application/octet-stream"
    if meta.size_bytes <= VERIFY_FIRST_BYTES:
        data = await vault.artifacts.get_bytes(artifact_id)  # IntegrityError before a byte
        return Response(data, media_type=media_type, headers=headers)
    headers["content-length"] = str(meta.size_bytes)
    chunks = await vault.artifacts.stream(artifact_id)
    return StreamingResponse(
        _held_back(chunks, artifact_id), media_type=media_type, headers=headers
    )


class DownloadCut(Exception):
    """Raised inside a started download whose bytes no longer match their digest: not a
    strongroom error with an answer (the status line is gone), it makes the server drop the
    connection short of ``Content-Length``."""


async def _held_back(chunks: AsyncIterator[bytes], artifact_id: str) -> AsyncIterator[bytes]:
    pending: bytes | None = None
    try:
        async for chunk in chunks:
            if pending is not None:
                yield pending
            pending = chunk
    except IntegrityError as exc:
        log.error("artifact %s: stored bytes no longer match the digest; download cut", artifact_id)
        raise DownloadCut(f"artifact {artifact_id}: {exc.message}; download cut") from None
    if pending is not None:
        yield pending
