"""S3 test fixtures: moto's standalone server as a real process, a fresh bucket per test.

- ``s3_endpoint`` (session): starts ``python -m moto.server`` on 127.0.0.1 and a free port,
  waits until it answers and stops it when the session ends. When it cannot start, S3 tests
  skip with what to install, or fail under ``CI=true``.
- ``s3_env`` (function): fake credentials in the environment (where obstore and the store
  read them) and every other ``AWS_*`` variable removed, so a developer's own AWS setup never
  leaks into a test.
- ``s3_bucket`` (function): a new empty bucket, emptied and removed afterwards.
- ``s3_store_factory`` (function): builds `S3BlobStore` objects on that bucket, with quick
  retries so a failing test fails fast.
- ``s3_blob_url`` (function): the ``s3://`` URL of that bucket (``/vault`` prefix).
- ``s3_client`` (session): a boto3 client for looking behind the store's back.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:  # imported when a test asks for a store: obstore loads only for S3 tests
    from strongroom.adapters._s3 import S3BlobStore

REGION = "us-east-1"
ACCESS_KEY_ID = "strongroom-test-key"
SECRET_ACCESS_KEY = "strongroom-test-secret"
START_TIMEOUT = 30.0
# Retries for test stores: moto on loopback does not fail transiently, so a failure should
# surface at once rather than after obstore's default backoff.
FAST_RETRY = {"max_retries": 1, "retry_timeout": timedelta(seconds=5)}

S3StoreFactory = Callable[..., "S3BlobStore"]


def _unavailable(message: str) -> NoReturn:
    hint = (
        f"S3 tests need moto's server: {message}. Install the dev extras "
        "(pip install -e '.[dev]', which brings moto[server]) or check that "
        "`python -m moto.server -H 127.0.0.1 -p 5000` starts."
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(hint, pytrace=False)
    pytest.skip(hint)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(endpoint: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{endpoint}/", timeout=1.0) as response:
            return int(response.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def _start_moto(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start moto on a free port (a few tries: another process may take the port first)."""
    last = "it did not start"
    for _ in range(3):
        port = _free_port()
        endpoint = f"http://127.0.0.1:{port}"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if _answers(endpoint):
                return process, endpoint
            time.sleep(0.1)
        _stop(process)
        tail = log_path.read_text(errors="replace")[-600:]
        last = f"it did not answer on {endpoint} (log tail: {tail!r})"
    _unavailable(last)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a moto S3 server running for this test session."""
    problem: str | None = None
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        problem = f"moto[server] is not importable ({exc})"
    if problem is not None:
        _unavailable(problem)
    process, endpoint = _start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield endpoint
    finally:
        _stop(process)


@functools.cache
def client_for(endpoint: str) -> Any:
    """A boto3 S3 client with the test credentials (cached: building one takes ~0.1 s)."""
    problem: str | None = None
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        problem = f"boto3 is not importable ({exc})"
    if problem is not None:
        _unavailable(problem)
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(proxies={}, retries={"max_attempts": 2}),
    )


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: str) -> Any:
    return client_for(s3_endpoint)


def set_test_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Test credentials in the environment (through ``monkeypatch``, undone with it); no
    other AWS_* setting; loopback never proxied. Returns the variables set."""
    for name in list(os.environ):
        if name.upper().startswith("AWS_"):
            monkeypatch.delenv(name)
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("NO_PROXY", "no_proxy"):
        current = os.environ.get(name)
        monkeypatch.setenv(name, f"{current},127.0.0.1,localhost" if current else "127.0.0.1")
    return env


@contextlib.contextmanager
def module_bucket(endpoint: str, client: Any, *, prefix: str = "sr-test") -> Iterator[str]:
    """For a module-scoped fixture (the per-test ``s3_env`` / ``s3_bucket`` cannot serve
    one): the test environment and a fresh bucket for as long as the block runs; yields the
    bucket's ``s3://`` vault URL (``/vault`` prefix); empties and removes the bucket after."""
    bucket = f"{prefix}-{uuid.uuid4().hex[:16]}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        set_test_env(monkeypatch)
        client.create_bucket(Bucket=bucket)
        try:
            yield f"s3://{bucket}/vault?endpoint={endpoint}&region={REGION}&max_retries=1"
        finally:
            empty_bucket(client, bucket)
            client.delete_bucket(Bucket=bucket)


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Test credentials in the environment; no other AWS_* setting; loopback never proxied."""
    return set_test_env(monkeypatch)


def empty_bucket(client: Any, bucket: str) -> None:
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


@pytest.fixture
def s3_bucket(s3_env: dict[str, str], s3_client: Any) -> Iterator[str]:
    """A fresh, empty bucket (emptied and removed after the test; moto keeps it in memory)."""
    bucket = f"sr-test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=bucket)
    try:
        yield bucket
    finally:
        empty_bucket(s3_client, bucket)
        s3_client.delete_bucket(Bucket=bucket)


@pytest.fixture
def s3_store_factory(s3_endpoint: str, s3_bucket: str) -> S3StoreFactory:
    """``factory(**kwargs)``: an `S3BlobStore` on the test bucket (prefix ``vault/blobs``)."""

    from strongroom.adapters._s3 import S3BlobStore

    def factory(**kwargs: Any) -> S3BlobStore:
        kwargs.setdefault("prefix", "vault/blobs")
        kwargs.setdefault("endpoint", s3_endpoint)
        kwargs.setdefault("region", REGION)
        kwargs.setdefault("retry_config", FAST_RETRY)
        return S3BlobStore(s3_bucket, **kwargs)

    return factory


@pytest.fixture
def s3_blob_url(s3_endpoint: str, s3_bucket: str) -> str:
    return f"s3://{s3_bucket}/vault?endpoint={s3_endpoint}&region={REGION}&max_retries=1"
