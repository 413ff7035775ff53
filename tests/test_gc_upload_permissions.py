"""docs/retention.md and docs/backends.md: credentials that may manage blobs but not list or
abort multipart uploads (S3's ListBucketMultipartUploads / AbortMultipartUpload) make
`verify` say so in a warning instead of failing, `gc plan` plan everything else, and
`gc apply` list a denied abort as refused. The denial is injected under the blob port (moto
does not enforce IAM permissions); everything above it is the real code."""

from __future__ import annotations

from datetime import datetime

from strongroom.adapters import MemoryBlobStore, MemoryMetadataStore
from strongroom.errors import PermissionDenied
from strongroom.models import GcItem
from strongroom.ports.blobs import StagingItem
from strongroom.vault import Vault


class NoUploadRights(MemoryBlobStore):
    """Blobs as usual; listing and aborting uploads denied, as S3 answers AccessDenied."""

    async def _uploads(self, limit: int) -> list[StagingItem]:
        raise PermissionDenied("list_uploads: access denied", operation="list_uploads")

    async def _abort_upload(self, path: str, older_than: datetime) -> int:
        raise PermissionDenied("abort_upload: access denied", operation="abort_upload")


async def test_missing_upload_rights_warn_and_refuse_but_fail_nothing() -> None:
    vault = Vault(MemoryMetadataStore(), NoUploadRights())
    orphan = await vault.blobs.put_bytes(b"nothing uses me")
    report = await vault.verify(record=False)
    assert report.ok
    [warning] = [w for w in report.warnings if w.subject == "multipart"]
    assert "could not be listed" in warning.message
    assert warning.details["error"] == "permission_denied"
    plan = await vault.retention.plan(None, grace_seconds=0)
    assert [i.id for i in plan.items if i.kind == "blob"] == [orphan.sha256]
    assert plan.totals["multipart"] == 0
    plan.items.append(
        GcItem(kind="multipart", id="tmp/killed#upload-1", bytes=10, reason="planned elsewhere")
    )
    result = await vault.retention.apply(plan)
    assert result.deleted.get("blob") == 1
    assert result.refused == [
        {
            "kind": "multipart",
            "id": "tmp/killed#upload-1",
            "reason": "denied",
            "message": "abort_upload: access denied",
        }
    ]
