"""The two ends of a transfer: reading a ``--to`` / ``--from`` value (`parse_endpoint`),
opening a vault to import into (`open_target_vault`), and turning an open `Vault` or a bundle
`Path` into the `Source` / `Sink` the copy engine uses."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from strongroom.bundle import is_bundle_dir
from strongroom.errors import ValidationError
from strongroom.transfer.sinks import BundleSink, Sink, VaultSink
from strongroom.transfer.sources import BundleSource, Source, VaultSource
from strongroom.vault import Vault

__all__ = [
    "BUNDLE_PREFIX",
    "Endpoint",
    "open_sink",
    "open_source",
    "open_target_vault",
    "parse_endpoint",
]

BUNDLE_PREFIX = "bundle:"

Endpoint = Vault | Path
"""An open `Vault` (the caller owns it) or the directory of a bundle."""


def parse_endpoint(text: str) -> str | Path:
    """A command-line ``--to`` / ``--from`` value: a `Path` for a bundle, else a vault URL.

    ``bundle:PATH`` is always a bundle. A plain path naming an existing directory that holds a
    bundle (a ``manifest.json`` of format strongroom-bundle, or an unfinished one) is a bundle
    too. Anything else is a vault URL (a directory path is the embedded vault, created if
    missing), exactly as ``--vault`` reads it.
    """
    if text.startswith(BUNDLE_PREFIX):
        rest = text[len(BUNDLE_PREFIX) :]
        if not rest or "\x00" in rest:
            raise ValidationError(
                "bundle: needs a directory path, e.g. bundle:/backups/vault-2025-03-01",
                operation="transfer",
                reason="empty_bundle_path",
            )
        return Path(rest)
    if "://" not in text and text and "\x00" not in text:
        path = Path(text)
        if path.is_dir() and is_bundle_dir(path):
            return path
    return text


async def open_target_vault(url: str | Path, *, blobs_url: str | Path | None = None) -> Vault:
    """Open a vault to import into, creating an embedded one if missing: `Vault.open` with
    ``bootstrap=False``, i.e. **without** the default catalog entries a normal open adds;
    those would start the target's audit chain and collide with the source's (the copy
    brings the source's own)."""
    return await Vault.open(url, blobs_url=blobs_url, bootstrap=False)


@contextlib.asynccontextmanager
async def open_source(endpoint: Endpoint) -> AsyncIterator[Source]:
    """The source side: a finished bundle is opened (its manifest and records files checked);
    a vault is used as it is."""
    if not isinstance(endpoint, Path):
        yield VaultSource(endpoint)
        return
    source = BundleSource(endpoint)
    await source.open()
    try:
        yield source
    finally:
        await source.close()


@contextlib.asynccontextmanager
async def open_sink(endpoint: Endpoint, *, source: Endpoint) -> AsyncIterator[Sink]:
    """The target side: a bundle directory is opened for writing (created, or an unfinished
    or finished bundle, locked against a second writer); a vault is used as it is."""
    sink: Sink
    if isinstance(endpoint, Path):
        if isinstance(source, Path) and _same_dir(source, endpoint):
            raise ValidationError(
                "a bundle cannot be copied onto itself",
                operation="transfer",
                path=str(endpoint),
            )
        bundle_sink = BundleSink(endpoint)
        try:
            await bundle_sink.open()
        except BaseException:
            await bundle_sink.close()
            raise
        sink = bundle_sink
    else:
        sink = VaultSink(endpoint)
    try:
        yield sink
    finally:
        await sink.close()


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
