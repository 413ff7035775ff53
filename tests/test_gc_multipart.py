"""Incomplete S3 multipart uploads of killed `artifacts put` processes, end to end: real
processes SIGKILLed mid-upload (on progress: once the server holds a part), on a moto server;
`verify` warns about them, `gc plan` lists them only once they are idle past the staging age,
`gc apply` aborts them, and the vault then verifies clean with no warning.

The staging age is 15 minutes of the upload's own inactivity (its newest part), and moto's
clock is the real one: the test moves the retention service's clock forward instead of
waiting (``utcnow`` in `strongroom.services.retention`, for plan and apply alike).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import strongroom.services.retention as retention_service
from strongroom.models import utcnow
from strongroom.vault import Vault

pytestmark = pytest.mark.s3

DEADLINE = 600.0  # seconds: generous, a loaded CI machine is slow; nothing waits this long
MiB = 1024 * 1024


def _cli(vault: Path, blobs: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "strongroom", "--vault", str(vault), "--blobs", blobs, *args]


def _open_uploads(client: Any, bucket: str) -> list[dict[str, Any]]:
    """Open uploads that already hold a part (what a kill mid-upload leaves)."""
    found = []
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        parts = client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        if parts.get("Parts"):
            found.append(upload)
    return found


def test_uploads_of_killed_puts_are_listed_when_idle_and_aborted(
    tmp_path: Path,
    s3_blob_url: str,
    s3_client: Any,
    s3_bucket: str,
) -> None:
    vault_dir = tmp_path / "vault"
    run_id = subprocess.run(
        _cli(vault_dir, s3_blob_url, "runs", "create", "-p", "puts"),
        capture_output=True,
        check=True,
        text=True,
    ).stdout.strip()
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        for _ in range(80):  # five 16 MiB parts: the put is multipart
            handle.write(os.urandom(MiB))
    killed = 0
    for _ in range(4):
        before = len(_open_uploads(s3_client, s3_bucket))
        process = subprocess.Popen(
            _cli(vault_dir, s3_blob_url, "artifacts", "put", run_id, str(big), "--role", "custom"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + DEADLINE
        while process.poll() is None and len(_open_uploads(s3_client, s3_bucket)) <= before:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        if process.poll() is None:  # a part is stored, the upload is open: kill it
            process.send_signal(signal.SIGKILL)
            process.wait()
            killed += 1
    assert killed >= 2
    left = _open_uploads(s3_client, s3_bucket)
    assert len(left) >= 2
    held = 0
    for upload in left:
        parts = s3_client.list_parts(
            Bucket=s3_bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )
        held += sum(part["Size"] for part in parts["Parts"])

    asyncio.run(_gc_aborts_them(vault_dir, s3_blob_url, s3_client, s3_bucket, left, held))


async def _gc_aborts_them(
    vault_dir: Path,
    s3_blob_url: str,
    s3_client: Any,
    s3_bucket: str,
    left: list[dict[str, Any]],
    held: int,
) -> None:
    async with await Vault.open(str(vault_dir), blobs_url=s3_blob_url) as vault:
        report = await vault.verify(record=False)
        assert report.ok
        warned = [w for w in report.warnings if w.subject == "multipart"]
        assert len(warned) == 1
        assert warned[0].details["count"] >= len(left)
        # Just written: a live upload looks the same, so nothing is planned yet.
        fresh = await vault.retention.plan(None, grace_seconds=0)
        assert [i for i in fresh.items if i.kind == "multipart"] == []

        later = utcnow() + timedelta(minutes=20)

        def clock() -> datetime:
            return later

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(retention_service, "utcnow", clock)
            plan = await vault.retention.plan(None, grace_seconds=0)
            uploads = [i for i in plan.items if i.kind == "multipart"]
            assert {i.id.split("#")[1] for i in uploads} == {u["UploadId"] for u in left}
            assert sum(i.bytes for i in uploads) == held
            assert plan.totals["multipart"] == len(left)
            result = await vault.retention.apply(plan)
        assert result.deleted["multipart"] == len(left)
        assert result.bytes >= held
        assert _open_uploads(s3_client, s3_bucket) == []
        after = await vault.verify(record=False)
        assert after.ok
        assert [w.subject for w in after.warnings] == []
