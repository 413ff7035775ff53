"""What a transfer reports: `TransferReport` (``strongroom export/import --json`` prints it)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from strongroom.adapters import safe_url
from strongroom.bundle import RECORD_KINDS
from strongroom.models import UtcDatetime, VerifyProblem, VerifyReport, utcnow
from strongroom.vault import Vault

__all__ = ["BlobCounts", "TransferReport", "describe_vault"]


class BlobCounts(BaseModel):
    copied: int = 0
    skipped: int = Field(default=0, description="Already in the target.")
    bytes: int = Field(default=0, description="Bytes copied.")


class TransferReport(BaseModel):
    """What a transfer did; ``--json`` prints it."""

    source: dict[str, str]
    target: dict[str, str]
    started_at: UtcDatetime = Field(default_factory=utcnow)
    finished_at: UtcDatetime | None = None
    records: dict[str, int] = Field(default_factory=dict, description="Records copied, per kind.")
    records_skipped: dict[str, int] = Field(
        default_factory=dict, description="Records the target already held (identical)."
    )
    records_updated: dict[str, int] = Field(
        default_factory=dict,
        description="Records the target held in an earlier state, brought up to date (a run "
        "at a lower row version, an unsealed log reference, a provider or namespace changed "
        "since an earlier copy).",
    )
    blobs: BlobCounts = Field(default_factory=BlobCounts)
    problems: list[VerifyProblem] = Field(
        default_factory=list, description="Source blobs that were missing or damaged."
    )
    verify: VerifyReport | None = Field(
        default=None, description="The target's verification after the copy."
    )

    @classmethod
    def start(cls, source: dict[str, str], target: dict[str, str]) -> TransferReport:
        """An empty report with a zero count for every kind of record."""
        report = cls(source=source, target=target)
        for kind in RECORD_KINDS:
            report.records[kind.name] = 0
            report.records_skipped[kind.name] = 0
            report.records_updated[kind.name] = 0
        return report

    @property
    def ok(self) -> bool:
        return not self.problems and (self.verify is None or self.verify.ok)


def describe_vault(vault: Vault) -> dict[str, str]:
    """A vault end of a report: backends and the URL without its secrets (`Vault.open` already
    strips them; a `Vault` built by hand may not have)."""
    return {
        "kind": "vault",
        "url": safe_url(vault.url),
        "metadata_backend": vault.metadata.backend,
        "blob_backend": vault.blobs.backend,
    }
