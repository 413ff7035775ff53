"""A secret given in a vault URL or in the environment never shows up anywhere strongroom
writes: records, blobs, log lines, errors, text or ``--json`` output.

The CLI runs as a real process against PostgreSQL + S3 (moto). PostgreSQL here trusts local
connections, so a password in the URL is accepted and ignored: the run goes through with the
secret in hand, which is what the test needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from _pg_fixtures import libpq_url

pytestmark = [pytest.mark.postgres, pytest.mark.s3]

PG_SECRET = "PGpw-s3cr3t-91XQ"
AWS_SECRET = "AWSsk-s3cr3t-77ZK"
TOKEN_SECRET = "TOKEN-s3cr3t-55RM"
SECRETS = (PG_SECRET, AWS_SECRET, TOKEN_SECRET)


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(
        (parts.scheme, f"{user}:{password}@{host}{port}", parts.path, parts.query, "")
    )


class Cli:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.outputs: list[bytes] = []

    def __call__(
        self, *args: str, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            [sys.executable, "-m", "strongroom", *args],
            input=stdin,
            capture_output=True,
            env=self.env,
            cwd=self.cwd,
            timeout=120,
        )
        self.outputs += [done.stdout, done.stderr]
        return done


@pytest.fixture
def cli(pg_url: str, s3_blob_url: str, s3_env: dict[str, str], tmp_path: Path) -> tuple[Cli, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRONGROOM_", "AWS_"))}
    env.update(s3_env)
    env["AWS_SECRET_ACCESS_KEY"] = AWS_SECRET  # moto accepts any key pair
    env["STRONGROOM_URL"] = with_password(pg_url, PG_SECRET)
    env["STRONGROOM_BLOBS_URL"] = s3_blob_url
    env["STRONGROOM_DEBUG"] = "1"  # even a traceback must not carry a secret
    return Cli(env, tmp_path), pg_url


def database_text(pg_url: str) -> str:
    """Every row of every table of the test database, as text."""
    chunks: list[str] = []
    with psycopg.connect(libpq_url(pg_url)) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        for (table,) in tables:
            for (row,) in conn.execute(f'SELECT t::text FROM "{table}" t'):
                chunks.append(row)
    return "\n".join(chunks)


def bucket_bytes(s3_client: Any, bucket: str) -> bytes:
    data = b""
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            data += item["Key"].encode() + b"\n"
            data += s3_client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return data


def assert_no_secret(where: str, data: bytes | str) -> None:
    blob = data.encode() if isinstance(data, str) else data
    for secret in SECRETS:
        assert secret.encode() not in blob, f"{secret} leaked into {where}"


def test_no_secret_reaches_records_blobs_logs_errors_or_output(
    cli: tuple[Cli, str], s3_client: Any, s3_bucket: str
) -> None:
    run, pg_url = cli
    init = run("--json", "init")
    assert init.returncode == 0, init.stderr
    info = json.loads(init.stdout)
    assert info["metadata_backend"] == "postgresql"
    assert info["blob_backend"] == "s3"
    assert ":[REDACTED]@" in info["url"]

    created = run("runs", "create", "--project", "secrets", "--purpose", "leak hunt")
    assert created.returncode == 0, created.stderr
    run_id = created.stdout.decode().strip()
    # A pipeline that logs its own connection string and a token: redacted before storage.
    leaky = f"connecting to {with_password(pg_url, PG_SECRET)} with token={TOKEN_SECRET}"
    logged = run("--json", "logs", "append", run_id, "--event", "db.connect", "--message", leaky)
    assert logged.returncode == 0, logged.stderr
    assert "[REDACTED]" in json.loads(logged.stdout)["message"]
    data = json.dumps({"dsn": with_password(pg_url, PG_SECRET), "api_key": TOKEN_SECRET})
    assert run("logs", "append", run_id, "--event", "cfg", "--data", data).returncode == 0
    put = run("artifacts", "put", run_id, "-", "--role", "custom", "--name", "a.txt", stdin=b"x")
    assert put.returncode == 0, put.stderr
    for args in (
        ("runs", "start", run_id),
        ("runs", "complete", run_id),  # seals the log into a blob
        ("--json", "runs", "show", run_id),
        ("--json", "logs", "show", run_id),
        ("--json", "audit", "show"),
        ("--json", "verify"),
        ("verify",),
    ):
        done = run(*args)
        assert done.returncode == 0, (args, done.stderr)

    # Failures print errors that must not carry the secrets either.
    failures = [
        run("--json", "runs", "show", "00000000-0000-7000-8000-000000000000"),
        run("runs", "show", "not-a-run-id"),
        run(
            "--json",
            "--vault",
            f"postgresql://postgres:{PG_SECRET}@127.0.0.1:1/nowhere",
            "runs",
            "list",
        ),
        run("--vault", f"postgresql://postgres:{PG_SECRET}@127.0.0.1:1/nowhere", "runs", "list"),
        run("--json", "--blobs", f"s3://nosuch-bucket-{s3_bucket}/p", "init"),
        run("--json", "--blobs", f"s3://user:{AWS_SECRET}@{s3_bucket}/p", "init"),
    ]
    for done in failures:
        assert done.returncode != 0
    assert all(out for done in failures for out in (done.stdout + done.stderr,))

    for i, output in enumerate(run.outputs):
        assert_no_secret(f"CLI output #{i}", output)
    assert_no_secret("the PostgreSQL tables", database_text(pg_url))
    assert_no_secret("the S3 bucket", bucket_bytes(s3_client, s3_bucket))
