"""Export / import across backend pairs, through the real CLI in subprocesses: an embedded
vault (SQLite + local blobs) → PostgreSQL + S3 (moto) → a directory bundle → a new embedded
vault holds exactly the original records and blobs, and verifies clean at every hop; an export
into PostgreSQL + S3 SIGKILLed halfway completes when run again, without a duplicate; and no
hop copies or prints the PostgreSQL password given in the URL.

PostgreSQL here trusts local connections, so the password in the URL is accepted and ignored:
the commands run with the secret in hand, which is what the secret checks need.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from _pg_fixtures import libpq_url
from strongroom.bundle import RECORD_KINDS, verify_bundle
from strongroom.cli._context import EXIT_CODES
from strongroom.ports.inline_blobs import DEFAULT_INLINE_THRESHOLD
from strongroom.testing.transfer import MIB, populate_vault, snapshot_vault
from strongroom.vault import Vault

pytestmark = [pytest.mark.postgres, pytest.mark.s3]

PG_PASSWORD = "PGpw-s3cr3t-T1"

# The records table of each kind (strongroom.adapters._sql.tables).
PG_TABLES = {
    "providers": "providers",
    "namespaces": "namespaces",
    "runs": "runs",
    "snapshots": "snapshots",
    "artifacts": "artifacts",
    "log_entries": "log_entries",
    "log_references": "log_refs",
    "objects": "catalog_objects",
    "definition_versions": "definition_versions",
    "channel_moves": "channel_moves",
    "actors": "actors",
    "approvals": "approvals",
    "holds": "holds",
    "audit_entries": "audit_entries",
    "checkpoints": "audit_checkpoints",
}
S3_PREFIX = "vault"  # the prefix of the s3_blob_url fixture


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{user}:{password}@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


class Cli:
    """Runs ``python -m strongroom`` in a subprocess; keeps every output for the secret check.

    ``plain`` is the environment of a command on the embedded vaults (no STRONGROOM_*
    variable); ``scale_out`` points STRONGROOM_URL / STRONGROOM_BLOBS_URL at PostgreSQL + S3.
    Both carry the test's S3 credentials and no other AWS_* setting.
    """

    def __init__(self, s3_env: dict[str, str], pg_url: str, blobs_url: str, cwd: Path) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("STRONGROOM_", "AWS_"))}
        base.update(s3_env)
        base["NO_COLOR"] = "1"
        self.plain = base
        self.scale_out = {**base, "STRONGROOM_URL": pg_url, "STRONGROOM_BLOBS_URL": blobs_url}
        self.cwd = cwd
        self.outputs: list[tuple[str, bytes]] = []

    def run(
        self, *args: str, env: dict[str, str], prefix: Sequence[str] = ("-m", "strongroom")
    ) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            [sys.executable, *prefix, *args],
            capture_output=True,
            env=env,
            cwd=self.cwd,
            timeout=300,
            check=False,
        )
        label = " ".join(args)
        self.outputs += [(f"stdout of {label}", done.stdout), (f"stderr of {label}", done.stderr)]
        return done

    def json(self, *args: str, env: dict[str, str]) -> Any:
        done = self.run("--json", *args, env=env)
        assert done.returncode == 0, (args, done.stdout.decode(), done.stderr.decode())
        return json.loads(done.stdout)


@pytest.fixture
def cli(pg_url: str, s3_blob_url: str, s3_env: dict[str, str], tmp_path: Path) -> tuple[Cli, str]:
    """The CLI and the PostgreSQL URL with the password in it."""
    secret_url = with_password(pg_url, PG_PASSWORD)
    return Cli(s3_env, secret_url, s3_blob_url, tmp_path), secret_url


def build_source(path: Path, *, big_bytes: int) -> dict[str, Any]:
    """An embedded vault with a bit of everything; returns its `snapshot_vault`."""

    async def build() -> dict[str, Any]:
        async with await Vault.open(path, checkpoint_interval=4) as vault:
            await populate_vault(vault, big_bytes=big_bytes)
            return await snapshot_vault(vault)

    return asyncio.run(build())


def snapshot(url: str | Path, blobs_url: str | None = None) -> dict[str, Any]:
    async def take() -> dict[str, Any]:
        # bootstrap=False: looking must not write (not even default catalog entries).
        async with await Vault.open(
            url, blobs_url=blobs_url, create=False, bootstrap=False
        ) as vault:
            return await snapshot_vault(vault)

    return asyncio.run(take())


def counts_of(snap: dict[str, Any]) -> dict[str, int]:
    return {kind: len(items) for kind, items in snap["records"].items()}


def pg_row_counts(pg_url: str) -> dict[str, int]:
    with psycopg.connect(libpq_url(pg_url)) as conn:
        return {
            kind: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]  # type: ignore[index]
            for kind, table in PG_TABLES.items()
        }


def pg_inline_digests(pg_url: str) -> list[str]:
    """The blobs the PostgreSQL records store keeps as rows (those up to 64 KiB)."""
    with psycopg.connect(libpq_url(pg_url)) as conn:
        return sorted(row[0] for row in conn.execute("SELECT sha256 FROM inline_blobs"))


def split_blobs(snap: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The snapshot's blob digests kept inline (rows) and in the blob store (objects)."""
    small = sorted(
        d for d, b in snap["blobs"].items() if b["size_bytes"] <= DEFAULT_INLINE_THRESHOLD
    )
    return small, sorted(d for d in snap["blobs"] if d not in set(small))


def s3_keys(s3_client: Any, bucket: str) -> list[str]:
    keys: list[str] = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def assert_complete(report: dict[str, Any], before: dict[str, Any], *, fresh: bool) -> None:
    """A transfer report that copied everything (``fresh``: into an empty target) and whose
    target verified clean."""
    assert report["ok"] is True, report
    assert report["problems"] == []
    assert report["verify"] is not None
    assert report["verify"]["problems"] == []
    for kind, count in counts_of(before).items():
        got = report["records"][kind] + report["records_skipped"][kind]
        assert got == count, (kind, report)
        assert report["records_updated"][kind] == 0
    blobs = report["blobs"]
    assert blobs["copied"] + blobs["skipped"] == len(before["blobs"])
    if fresh:
        assert report["records"] == counts_of(before)
        assert blobs["copied"] == len(before["blobs"])
        assert blobs["bytes"] == sum(b["size_bytes"] for b in before["blobs"].values())


def assert_verifies(cli: Cli, env: dict[str, str], *args: str) -> dict[str, Any]:
    # --no-record: verify would otherwise add its outcome to the chain the copies are
    # compared with.
    report: dict[str, Any] = cli.json(*args, "verify", "--no-record", env=env)
    assert report["problems"] == [], report
    return report


def assert_no_secret(cli: Cli, *trees: Path) -> None:
    secret = PG_PASSWORD.encode()
    for where, data in cli.outputs:
        assert secret not in data, f"the PostgreSQL password leaked into the {where}"
    for tree in trees:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                assert secret not in path.read_bytes(), f"the password leaked into {path}"


# -- the round trip ------------------------------------------------------------------------------


def test_sqlite_to_postgres_s3_to_bundle_to_sqlite_round_trip(
    cli: tuple[Cli, str],
    pg_url: str,
    s3_blob_url: str,
    s3_client: Any,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    run, secret_url = cli
    source, bundle, final = tmp_path / "source", tmp_path / "bundle", tmp_path / "final"
    before = build_source(source, big_bytes=3 * MIB + 17)
    assert all(before["records"][kind.name] for kind in RECORD_KINDS), counts_of(before)
    assert_verifies(run, run.plain, "--vault", str(source))

    # Hop 1: SQLite + local -> PostgreSQL + S3 (export --to URL --to-blobs URL).
    hop1 = run.json(
        "--vault",
        str(source),
        "export",
        "--to",
        secret_url,
        "--to-blobs",
        s3_blob_url,
        env=run.plain,
    )
    assert_complete(hop1, before, fresh=True)
    assert hop1["source"]["metadata_backend"] == "sqlite"
    assert hop1["target"]["metadata_backend"] == "postgresql"
    assert hop1["target"]["blob_backend"] == "s3"
    assert ":[REDACTED]@" in hop1["target"]["url"]
    assert_verifies(run, run.scale_out)
    assert snapshot(pg_url, s3_blob_url) == before
    assert pg_row_counts(pg_url) == counts_of(before)
    blob_keys = s3_keys(s3_client, s3_bucket)
    small, large = split_blobs(before)
    assert small  # both places are exercised
    assert large
    assert sorted(key.rsplit("/", 1)[-1] for key in blob_keys) == large
    assert pg_inline_digests(pg_url) == small
    assert all(key.startswith(f"{S3_PREFIX}/sha256/") for key in blob_keys)

    # Running it again (text output this time) copies nothing and says where it went.
    again = run.run(
        "--vault",
        str(source),
        "export",
        "--to",
        secret_url,
        "--to-blobs",
        s3_blob_url,
        env=run.plain,
    )
    assert again.returncode == 0, again.stderr.decode()
    text = again.stdout.decode()
    assert "(postgresql + s3)" in text
    assert "0 copied, 0 updated" in text
    assert ":[REDACTED]@" in text
    assert again.stderr == b""
    assert pg_row_counts(pg_url) == counts_of(before)

    # Hop 2: PostgreSQL + S3 (STRONGROOM_URL / STRONGROOM_BLOBS_URL) -> a directory bundle.
    hop2 = run.json("export", "--to", f"bundle:{bundle}", env=run.scale_out)
    assert_complete(hop2, before, fresh=True)
    assert hop2["source"]["metadata_backend"] == "postgresql"
    assert hop2["target"] == {"kind": "bundle", "path": str(bundle)}
    assert hop2["verify"]["checked"]["audit_checkpoints"] == len(before["records"]["checkpoints"])
    assert asyncio.run(verify_bundle(bundle)).ok
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    assert manifest["source"] == {"metadata_backend": "postgresql", "blob_backend": "s3"}

    # Hop 3: the bundle -> a new embedded vault.
    hop3 = run.json("--vault", str(final), "import", "--from", str(bundle), env=run.plain)
    assert_complete(hop3, before, fresh=True)
    assert hop3["source"] == {"kind": "bundle", "path": str(bundle)}
    assert_verifies(run, run.plain, "--vault", str(final))
    assert snapshot(final) == before
    assert snapshot(source) == before  # exporting changed nothing in the source

    # A target that cannot be reached: an io_error that does not echo the password.
    nowhere = f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:1/nowhere"
    for flags in (["--json"], []):
        failed = run.run(
            *flags, "--vault", str(source), "export", "--to", nowhere, "--to-blobs", s3_blob_url,
            env=run.plain,
        )  # fmt: skip
        assert failed.returncode == EXIT_CODES["io_error"], failed.stderr.decode()

    assert_no_secret(run, bundle, final, source)


# -- SIGKILL halfway ------------------------------------------------------------------------------

# Runs the real CLI with the transfer's progress callback wrapped so that the process SIGKILLs
# itself: in the middle of the multipart upload of the big blob to S3 (after `after` bytes of
# it went into the upload), or right after the first batch of log entries went into PostgreSQL.
_KILLER = r"""
import os, signal, sys
import strongroom.cli.transfer as cli_transfer

where, after = sys.argv[1], int(sys.argv[2])
real = cli_transfer.transfer

async def killing(src, dst, *, progress, verify):
    def wrapped(stage, done, total):
        progress(stage, done, total)
        if (where == "mid-blob" and stage == "blob_bytes" and done >= after) or (
            where == "mid-records" and stage == "log_entries"
        ):
            os.kill(os.getpid(), signal.SIGKILL)
    return await real(src, dst, progress=wrapped, verify=verify)

cli_transfer.transfer = killing
from strongroom.cli import app
app(sys.argv[3:])
"""

# The S3 store uploads a blob larger than one part (16 MiB) in parts: a 20 MiB blob killed
# after 18 MiB dies with its multipart upload in flight.
_BIG = {"mid-blob": 20 * MIB + 5, "mid-records": 3 * MIB + 1}


@pytest.mark.parametrize("where", ["mid-blob", "mid-records"])
def test_an_export_into_postgres_s3_killed_halfway_completes_when_run_again(
    cli: tuple[Cli, str],
    pg_url: str,
    s3_blob_url: str,
    s3_client: Any,
    s3_bucket: str,
    tmp_path: Path,
    where: str,
) -> None:
    run, secret_url = cli
    source = tmp_path / "source"
    before = build_source(source, big_bytes=_BIG[where])
    big = max(before["blobs"], key=lambda d: before["blobs"][d]["size_bytes"])
    big_key = f"{S3_PREFIX}/sha256/{big[:2]}/{big[2:4]}/{big}"
    export = ("--vault", str(source), "export", "--to", secret_url, "--to-blobs", s3_blob_url)

    killed = run.run(where, str(18 * MIB), *export, env=run.plain, prefix=("-c", _KILLER))
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    published = big_key in s3_keys(s3_client, s3_bucket)
    assert published == (where == "mid-records")  # killed while uploading it, or after
    partial = pg_row_counts(pg_url)
    if where == "mid-records":
        assert 0 < partial["log_entries"] < len(before["records"]["log_entries"])
        assert partial["runs"] == len(before["records"]["runs"])
    else:
        assert sum(partial.values()) == 0  # blobs go first: no record yet

    report = run.json(*export, env=run.plain)
    assert_complete(report, before, fresh=False)
    if where == "mid-records":
        assert report["blobs"]["copied"] == 0  # every blob had made it before the kill
        assert report["records_skipped"]["runs"] == len(before["records"]["runs"])
        assert report["records_skipped"]["log_entries"] == partial["log_entries"]
    else:
        assert report["blobs"]["copied"] >= 1
        assert report["records"] == counts_of(before)

    # No duplicate anywhere: the same records, one row each, one row or object per blob.
    assert snapshot(pg_url, s3_blob_url) == before
    assert pg_row_counts(pg_url) == counts_of(before)
    small, large = split_blobs(before)
    keys = s3_keys(s3_client, s3_bucket)
    assert sorted(keys) == sorted(f"{S3_PREFIX}/sha256/{d[:2]}/{d[2:4]}/{d}" for d in large)
    assert pg_inline_digests(pg_url) == small
    assert_verifies(run, run.scale_out)
    assert_no_secret(run)
