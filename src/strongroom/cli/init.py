"""`strongroom init`: create the vault (or open an existing one) and say where it is."""

from __future__ import annotations

import typer
from pydantic import BaseModel

from strongroom.adapters import MemoryMetadataStore, SqliteMetadataStore
from strongroom.cli._context import JsonFlag, cli_state, reported_errors
from strongroom.cli._output import key_values, print_json, print_lines, stdout_console
from strongroom.vault import Vault

__all__ = ["VaultInfo", "init"]


class VaultInfo(BaseModel):
    """What `init --json` prints."""

    url: str
    created: bool
    metadata_backend: str
    metadata_location: str
    blob_backend: str
    blob_location: str
    runs: int


async def _describe(vault: Vault) -> VaultInfo:
    probe = vault.blobs.locate("0" * 64)
    metadata = vault.metadata
    # An SQL store knows whether its open created the schema; a memory vault is always new.
    created = bool(getattr(metadata, "schema_created", isinstance(metadata, MemoryMetadataStore)))
    page = await vault.runs.list(limit=1, count_limit=None)  # `runs N`: exact
    return VaultInfo(
        url=vault.url,
        created=created,
        metadata_backend=metadata.backend,
        metadata_location=str(metadata.path)
        if isinstance(metadata, SqliteMetadataStore)
        else "in memory"
        if isinstance(metadata, MemoryMetadataStore)
        else vault.url,
        blob_backend=vault.blobs.backend,
        blob_location=probe.uri.removesuffix(probe.path),
        runs=page.total,
    )


def init(ctx: typer.Context, json_flag: JsonFlag = False) -> None:
    """Create the vault (or open an existing one) and say where it is."""
    state = cli_state(ctx, json_flag)
    with reported_errors(state):
        info = state.run(_describe, create=True)
        if state.json:
            print_json(info)
            return
        console = stdout_console()
        verb = "Created" if info.created else "Opened existing"
        console.print(f"{verb} vault {info.url}", soft_wrap=True, markup=False)
        print_lines(
            console,
            key_values(
                [
                    ("metadata", f"{info.metadata_backend}  {info.metadata_location}"),
                    ("blobs", f"{info.blob_backend}  {info.blob_location}"),
                    ("runs", str(info.runs)),
                ]
            ),
        )
        if info.metadata_backend == "memory":
            console.print(
                "memory:// vaults vanish when the command ends; use a directory to keep data.",
                markup=False,
            )
