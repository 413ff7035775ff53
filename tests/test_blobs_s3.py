"""The S3 blob store on a moto server: the conformance suite plus what only S3 can show
(layout, multipart and staging, copy limits, listing past one page, credentials hygiene,
error translation, URLs)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import traceback
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import obstore
import pytest

from _s3_fixtures import REGION, S3StoreFactory, client_for
from strongroom.adapters._s3 import S3BlobStore, _scrub
from strongroom.errors import IntegrityError, PermissionDenied, StorageIOError, ValidationError
from strongroom.ports.blobs import BlobStore
from strongroom.testing.blobs import BlobStoreTests, chunked, payload, sha256_hex

pytestmark = pytest.mark.s3

MiB = 1024 * 1024
SECRET = "AKIA-SECRET-XYZ123"
TOKEN = "SESSION-TOKEN-SECRET-Q9Z"


def _split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _flip_first_byte(store: S3BlobStore, sha256: str) -> None:
    assert store.endpoint is not None
    client = client_for(store.endpoint)
    bucket, key = _split_uri(store.locate(sha256).uri)
    data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    data = bytes([data[0] ^ 0xFF]) + data[1:] if data else b"\x00"
    client.put_object(Bucket=bucket, Key=key, Body=data)


class TestS3BlobStore(BlobStoreTests):
    async def make_store(self, request: pytest.FixtureRequest) -> BlobStore:
        factory: S3StoreFactory = request.getfixturevalue("s3_store_factory")
        return factory()

    async def corrupt(self, store: BlobStore, sha256: str) -> None:
        assert isinstance(store, S3BlobStore)
        await asyncio.to_thread(_flip_first_byte, store, sha256)


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
async def store(s3_store_factory: S3StoreFactory) -> AsyncIterator[S3BlobStore]:
    store = s3_store_factory()
    await store.open()
    yield store
    await store.close()


def _keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(keys)


def _uploads(client: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


class _Spy:
    """Records obstore put/copy calls (path and options) while passing them through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.puts: list[tuple[str, dict[str, Any]]] = []
        self.copies: list[tuple[str, str]] = []
        real_put, real_copy = obstore.put_async, obstore.copy_async

        def put_async(store: Any, path: str, file: Any, **kwargs: Any) -> Any:
            self.puts.append((path, kwargs))
            return real_put(store, path, file, **kwargs)

        def copy_async(store: Any, from_: str, to: str, **kwargs: Any) -> Any:
            self.copies.append((from_, to))
            return real_copy(store, from_, to, **kwargs)

        monkeypatch.setattr(obstore, "put_async", put_async)
        monkeypatch.setattr(obstore, "copy_async", copy_async)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> _Spy:
    return _Spy(monkeypatch)


# -- layout -----------------------------------------------------------------------------------


async def test_blobs_are_keyed_by_digest_under_the_prefix(
    store: S3BlobStore, s3_client: Any, s3_bucket: str
) -> None:
    info = await store.put_bytes(b"sharded")
    hexd = info.sha256
    key = f"vault/blobs/sha256/{hexd[0:2]}/{hexd[2:4]}/{hexd}"
    assert _keys(s3_client, s3_bucket) == [key]
    assert s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == b"sharded"
    location = store.locate(hexd)
    assert location.backend == "s3"
    assert location.path == f"sha256/{hexd[0:2]}/{hexd[2:4]}/{hexd}"
    assert location.uri == f"s3://{s3_bucket}/{key}"
    # Vault.open derives the storage provider's base URI this way.
    assert location.uri.removesuffix(location.path) == f"s3://{s3_bucket}/vault/blobs/"


async def test_small_blobs_go_out_as_one_conditional_put(store: S3BlobStore, spy: _Spy) -> None:
    data = payload(3 * MiB)
    await store.put_stream(chunked(data, 65_536))
    await store.put_bytes(data)  # exists already: If-None-Match turns it into a no-op
    assert [(path, kw.get("mode")) for path, kw in spy.puts] == [
        (store.locate(sha256_hex(data)).path, "create")
    ] * 2
    assert spy.copies == []


async def test_foreign_keys_under_the_prefix_are_not_listed(
    store: S3BlobStore, s3_client: Any, s3_bucket: str
) -> None:
    info = await store.put_bytes(b"real")
    hexd = sha256_hex(b"elsewhere")
    for key in (
        f"vault/blobs/sha256/{hexd[0:2]}/xx/{hexd}",  # wrong shard
        f"vault/blobs/sha256/00/00/{hexd}",  # shard does not match the digest
        "vault/blobs/sha256/readme.txt",
        f"vault/blobs/tmp/{hexd}",
        f"vault/other/sha256/{hexd[0:2]}/{hexd[2:4]}/{hexd}",  # outside the prefix
    ):
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"x")
    assert [d async for d in store.iter_digests()] == [info.sha256]


# -- multipart, staging, copies ---------------------------------------------------------------


async def test_a_large_stream_goes_through_multipart_staging_and_leaves_nothing_behind(
    s3_store_factory: S3StoreFactory, s3_client: Any, s3_bucket: str, spy: _Spy
) -> None:
    store = s3_store_factory(part_size=5 * MiB, max_concurrency=4)
    data = payload(64 * MiB, seed=64)
    digest = sha256_hex(data)
    info = await store.put_stream(chunked(data, [MiB + 7, 3 * MiB]))
    assert (info.sha256, info.size_bytes) == (digest, 64 * MiB)
    [(staging, options)] = spy.puts
    assert staging.startswith("tmp/")
    assert options["use_multipart"] is True
    assert options["chunk_size"] == 5 * MiB
    assert options["max_concurrency"] == 4
    assert spy.copies == [(staging, store.locate(digest).path)]
    # The blob is there, whole; the staging object and every multipart upload are gone.
    _, key = _split_uri(store.locate(digest).uri)
    assert _keys(s3_client, s3_bucket) == [key]
    assert s3_client.head_object(Bucket=s3_bucket, Key=key)["ContentLength"] == 64 * MiB
    assert _uploads(s3_client, s3_bucket) == []
    assert await store.verify(digest) == info
    hasher = hashlib.sha256()
    async for chunk in store.get_stream(digest, chunk_size=4 * MiB):
        assert len(chunk) <= 4 * MiB
        hasher.update(chunk)
    assert hasher.hexdigest() == digest


async def test_a_large_stream_with_a_stated_digest_is_uploaded_straight_to_its_key(
    s3_store_factory: S3StoreFactory, s3_client: Any, s3_bucket: str, spy: _Spy
) -> None:
    store = s3_store_factory(part_size=5 * MiB)
    data = payload(23 * MiB, seed=23)
    digest = sha256_hex(data)
    info = await store.put_stream(chunked(data, MiB), expected_sha256=digest)
    assert info.sha256 == digest
    assert [path for path, _ in spy.puts] == [store.locate(digest).path]
    assert spy.copies == []
    _, key = _split_uri(store.locate(digest).uri)
    assert s3_client.head_object(Bucket=s3_bucket, Key=key)["ETag"].endswith('-5"')  # 5 parts
    assert await store.get_bytes(digest) == data
    # Again, now that it exists: the bytes are checked, nothing is uploaded.
    assert await store.put_stream(chunked(data, MiB), expected_sha256=digest) == info
    assert len(spy.puts) == 1


async def test_a_large_stream_not_matching_its_stated_digest_publishes_nothing(
    s3_store_factory: S3StoreFactory, s3_client: Any, s3_bucket: str
) -> None:
    store = s3_store_factory(part_size=5 * MiB)
    data = payload(12 * MiB, seed=12)
    wrong = sha256_hex(b"something else")
    with pytest.raises(IntegrityError) as caught:
        await store.put_stream(chunked(data, MiB), expected_sha256=wrong)
    assert caught.value.details["actual_sha256"] == sha256_hex(data)
    assert _keys(s3_client, s3_bucket) == []
    assert _uploads(s3_client, s3_bucket) == []  # obstore aborted the multipart upload


async def test_a_source_failing_mid_multipart_aborts_the_upload(
    s3_store_factory: S3StoreFactory, s3_client: Any, s3_bucket: str
) -> None:
    store = s3_store_factory(part_size=5 * MiB)

    async def failing() -> AsyncIterator[bytes]:
        async for chunk in chunked(payload(17 * MiB), MiB):
            yield chunk
        raise FileNotFoundError("the caller's own error, not an S3 one")

    with pytest.raises(FileNotFoundError, match="caller's own error"):
        await store.put_stream(failing())
    assert _keys(s3_client, s3_bucket) == []
    assert _uploads(s3_client, s3_bucket) == []


async def test_blobs_over_the_copy_limit_are_copied_through_the_client(
    s3_store_factory: S3StoreFactory, s3_client: Any, s3_bucket: str, spy: _Spy
) -> None:
    # CopyObject copies at most 5 GiB; a lowered limit takes the path bigger blobs take.
    store = s3_store_factory(part_size=5 * MiB, copy_limit=MiB)
    data = payload(12 * MiB + 5, seed=5)
    digest = sha256_hex(data)
    info = await store.put_stream(chunked(data, 999_999))
    assert info.sha256 == digest
    assert [path.split("/")[0] for path, _ in spy.puts] == ["tmp", "sha256"]
    assert spy.copies == []
    _, key = _split_uri(store.locate(digest).uri)
    assert _keys(s3_client, s3_bucket) == [key]
    assert _uploads(s3_client, s3_bucket) == []
    assert await store.get_bytes(digest) == data


async def test_a_cancelled_large_put_leaves_no_upload_and_no_object(
    s3_store_factory: S3StoreFactory, s3_client: Any, s3_bucket: str
) -> None:
    store = s3_store_factory(part_size=5 * MiB)
    started = asyncio.Event()
    produced: list[int] = []

    async def slow() -> AsyncIterator[bytes]:
        for index in range(200):
            if index == 8:
                started.set()
            produced.append(index)
            yield payload(MiB, seed=index)
            await asyncio.sleep(0.01)

    task = asyncio.create_task(store.put_stream(slow()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.close()  # waits for background clean-ups
    # The abort runs in obstore's runtime: wait for it on a condition, with a deadline that
    # a loaded machine does not reach.
    deadline = asyncio.get_running_loop().time() + 120
    while _uploads(s3_client, s3_bucket):
        assert asyncio.get_running_loop().time() < deadline, "the upload was never aborted"
        await asyncio.sleep(0.1)
    assert _uploads(s3_client, s3_bucket) == []
    assert _keys(s3_client, s3_bucket) == []
    # The upload was abandoned at its next chunk, not carried on to the end of the source.
    assert len(produced) < 16


async def test_a_store_without_conditional_puts_falls_back_to_plain_puts(
    store: S3BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_put = obstore.put_async
    modes: list[object] = []

    def put_async(store_: Any, path: str, file: Any, **kwargs: Any) -> Any:
        modes.append(kwargs.get("mode"))
        if kwargs.get("mode") == "create":
            raise obstore.exceptions.NotSupportedError("conditional put not implemented")
        return real_put(store_, path, file, **kwargs)

    monkeypatch.setattr(obstore, "put_async", put_async)
    first = await store.put_bytes(b"one")
    second = await store.put_bytes(b"two")
    assert modes == ["create", None, None]  # asked once, then remembered
    assert await store.get_bytes(first.sha256) == b"one"
    assert await store.get_bytes(second.sha256) == b"two"


async def test_a_vanished_staging_object_fails_the_put_clearly(
    s3_store_factory: S3StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = s3_store_factory(part_size=5 * MiB)

    async def copy_async(*args: Any, **kwargs: Any) -> None:
        raise FileNotFoundError("Object at location tmp/x not found")

    monkeypatch.setattr(obstore, "copy_async", copy_async)
    with pytest.raises(StorageIOError) as caught:
        await store.put_stream(chunked(payload(6 * MiB), MiB))
    assert caught.value.details["reason"] == "staging_vanished"


# -- listing and staging sweep ----------------------------------------------------------------


async def test_iter_digests_follows_pages_beyond_1000_keys(store: S3BlobStore) -> None:
    blobs = [b"blob %d" % i for i in range(1_050)]
    infos = await store.put_many(blobs)
    listed = [digest async for digest in store.iter_digests()]
    assert len(listed) == 1_050
    assert sorted(listed) == sorted(info.sha256 for info in infos)


async def test_open_sweeps_only_stale_staging_objects(
    store: S3BlobStore, s3_client: Any, s3_bucket: str
) -> None:
    info = await store.put_bytes(b"keep me")
    s3_client.put_object(Bucket=s3_bucket, Key="vault/blobs/tmp/crashed-upload", Body=b"partial")
    await store.open()  # default horizon (24 h): the fresh staging object stays
    assert "vault/blobs/tmp/crashed-upload" in _keys(s3_client, s3_bucket)
    assert await store.sweep_staging(older_than=0) == 1
    _, key = _split_uri(store.locate(info.sha256).uri)
    assert _keys(s3_client, s3_bucket) == [key]


# -- errors and credentials -------------------------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _unreachable_store(endpoint: str) -> S3BlobStore:
    """A store on ``endpoint`` (nothing listens) that gives up at once."""
    return S3BlobStore(
        "some-bucket",
        "p",
        endpoint=endpoint,
        region=REGION,
        retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=2)},
        client_options={"connect_timeout": "2s"},
    )


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text
        assert TOKEN not in text


@pytest.fixture
def secret_env(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)


@pytest.mark.usefixtures("secret_env")
async def test_an_unreachable_endpoint_is_a_quick_io_error_without_credentials() -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = _unreachable_store(endpoint)
    started = time.monotonic()
    for name, operation in (
        ("open", store.open()),
        ("put", store.put_bytes(b"x")),
        ("stat", store.stat(sha256_hex(b"x"))),
        ("get", store.get_bytes(sha256_hex(b"x"))),
        ("verify", store.verify(sha256_hex(b"x"))),
    ):
        with pytest.raises(StorageIOError) as caught:
            await operation
        error = caught.value
        assert error.code == "io_error"
        if name != "open":  # open sweeps the staging prefix: a listing of its own
            assert error.details["operation"] == name, error.details
        assert error.details["reason"] == "unreachable"
        assert error.details["endpoint"] == endpoint
        assert error.details["bucket"] == "some-bucket"
        assert endpoint in error.message
        assert "some-bucket" in error.message
        _assert_no_secret(
            str(error),
            repr(error),
            json.dumps(error.to_dict()),
            str(error.__cause__),
            repr(error.__cause__),
            "".join(traceback.format_exception(error)),
        )
    assert time.monotonic() - started < 10
    _assert_no_secret(repr(store), str(store.locate(sha256_hex(b"x"))))


def test_driver_text_is_scrubbed_of_anything_credential_like(secret_env: None) -> None:
    body = (
        "Server returned non-2xx status code: 403 Forbidden: <Error><Code>SignatureDoesNotMatch"
        "</Code><AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256\n"
        f"x</StringToSign><CanonicalRequest>GET\n/\nx-amz-security-token:{TOKEN}\n"
        "</CanonicalRequest><SignatureProvided>abc</SignatureProvided></Error> "
        f"https://b.s3.amazonaws.com/k?X-Amz-Credential=AKID%2F&X-Amz-Signature=f00&"
        f"X-Amz-Security-Token={TOKEN} authorization: AWS4-HMAC-SHA256 Credential=AKID "
        f"secret={SECRET}\n\nDebug source:\n{SECRET}"
    )
    scrubbed = _scrub(body)
    _assert_no_secret(scrubbed)
    for leaked in ("AKIDEXAMPLE", "f00", "SignatureProvided>abc", "Credential=AKID "):
        assert leaked not in scrubbed
    assert "SignatureDoesNotMatch" in scrubbed


async def test_a_missing_bucket_fails_open_clearly(
    s3_endpoint: str, s3_env: dict[str, str]
) -> None:
    store = S3BlobStore("no-such-bucket-here", endpoint=s3_endpoint, region=REGION)
    with pytest.raises(StorageIOError) as caught:
        await store.open()
    assert caught.value.details["reason"] == "no_such_bucket"
    assert "no-such-bucket-here" in caught.value.message


@pytest.mark.usefixtures("secret_env")
async def test_access_denied_is_permission_denied(
    store: S3BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def denied(*args: Any, **kwargs: Any) -> Any:
        raise obstore.exceptions.PermissionDeniedError(
            "Server returned non-2xx status code: 403 Forbidden: <Code>AccessDenied</Code> "
            + SECRET
        )

    monkeypatch.setattr(obstore, "head_async", denied)
    with pytest.raises(PermissionDenied) as caught:
        await store.stat(sha256_hex(b"x"))
    assert caught.value.details["s3_code"] == "AccessDenied"
    _assert_no_secret(str(caught.value), json.dumps(caught.value.to_dict()))


# -- URLs and configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"s3://AKIAEXAMPLE:{SECRET}@bucket/prefix",
        f"s3://{SECRET}@bucket/prefix",
        f"s3://bucket/prefix?aws_secret_access_key={SECRET}",
        f"s3://bucket/prefix?endpoint=http://user:{SECRET}@127.0.0.1:9000",
    ],
    ids=["user-password", "user", "query", "endpoint-userinfo"],
)
def test_credentials_in_a_url_are_refused_without_being_echoed(
    url: str, s3_env: dict[str, str]
) -> None:
    with pytest.raises(ValidationError) as caught:
        S3BlobStore.from_url(url)
    assert caught.value.details["reason"] == "credentials_in_url"
    _assert_no_secret(str(caught.value), repr(caught.value), json.dumps(caught.value.to_dict()))


def test_from_url_reads_bucket_prefix_and_options(s3_env: dict[str, str]) -> None:
    store = S3BlobStore.from_url(
        "s3://my-bucket/a/b/?endpoint=http://127.0.0.1:9000&region=eu-west-1&max_retries=2"
    )
    assert (store.bucket, store.prefix) == ("my-bucket", "a/b")
    assert (store.endpoint, store.region) == ("http://127.0.0.1:9000", "eu-west-1")
    assert repr(store) == (
        "S3BlobStore(bucket='my-bucket', prefix='a/b', endpoint='http://127.0.0.1:9000')"
    )
    assert store.locate("0" * 64).uri == f"s3://my-bucket/a/b/sha256/00/00/{'0' * 64}"
    bare = S3BlobStore.from_url("s3://my-bucket")
    assert (bare.prefix, bare.endpoint, bare.region) == ("", None, REGION)
    assert bare.locate("0" * 64).uri == f"s3://my-bucket/sha256/00/00/{'0' * 64}"


def test_endpoint_and_region_default_to_the_environment(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://minio.internal:9000")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    store = S3BlobStore.from_url("s3://my-bucket/p")
    assert (store.endpoint, store.region) == ("https://minio.internal:9000", "ap-south-1")


@pytest.mark.parametrize(
    "url",
    [
        "https://bucket/prefix",
        "s3://Bad_Bucket/prefix",
        "s3://ab/prefix",
        "s3://bucket:9000/prefix",
        "s3://bucket/../etc",
        "s3://bucket/a//b",
        "s3://bucket/p?endpoint=not-a-url",
        "s3://bucket/p?endpoint=ftp://host",
        "s3://bucket/p?colour=blue",
        "s3://bucket/p?region=us-east-1&region=eu-west-1",
        "s3://bucket/p?allow_http=maybe",
        "s3://bucket/p?max_retries=many",
        "s3://bucket/p#fragment",
    ],
)
def test_malformed_urls_are_validation_errors(url: str, s3_env: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        S3BlobStore.from_url(url)


def test_bad_tuning_is_refused(s3_env: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        S3BlobStore("my-bucket", part_size=MiB)
    with pytest.raises(ValidationError):
        S3BlobStore("my-bucket", max_concurrency=0)


async def test_a_store_from_its_url_round_trips(s3_blob_url: str, s3_bucket: str) -> None:
    store = S3BlobStore.from_url(s3_blob_url)
    await store.open()
    info = await store.put_bytes(b"via url")
    assert await store.get_bytes(info.sha256) == b"via url"
    assert store.locate(info.sha256).uri.startswith(f"s3://{s3_bucket}/vault/sha256/")
    await store.close()


# -- incomplete multipart uploads (what a killed writer leaves) ---------------------------------


def _open_upload(client: Any, bucket: str, key: str, parts: list[bytes]) -> str:
    """A multipart upload started and never completed, as a killed writer leaves it."""
    upload_id: str = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    for number, body in enumerate(parts, 1):
        client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)
    return upload_id


async def test_incomplete_uploads_of_the_layout_are_listed_with_their_bytes_and_aborted(
    store: S3BlobStore, s3_client: Any, s3_bucket: str
) -> None:
    staged = _open_upload(s3_client, s3_bucket, "vault/blobs/tmp/killed", [b"a" * 5 * MiB, b"b"])
    digest = sha256_hex(b"never finished")
    final_key = f"vault/blobs/sha256/{digest[:2]}/{digest[2:4]}/{digest}"
    stated = _open_upload(s3_client, s3_bucket, final_key, [b"c" * 1000])
    # Not the store's: another prefix, a key outside its layout, a digest key whose folders lie.
    foreign = [
        ("elsewhere/tmp/killed", [b"x"]),
        ("vault/blobs/notes/draft", [b"x"]),
        (f"vault/blobs/sha256/00/00/{digest}", [b"x"]),
    ]
    for key, parts in foreign:
        _open_upload(s3_client, s3_bucket, key, parts)
    listed = {item.path: item for item in await store.list_uploads()}
    assert set(listed) == {
        f"tmp/killed#{staged}",
        f"sha256/{digest[:2]}/{digest[2:4]}/{digest}#{stated}",
    }
    assert listed[f"tmp/killed#{staged}"].size_bytes == 5 * MiB + 1
    assert not listed[f"tmp/killed#{staged}"].live
    # Touched just now: an abort that asks for older activity keeps it.
    now = datetime.now(UTC)
    assert (
        await store.abort_upload(f"tmp/killed#{staged}", older_than=now - timedelta(minutes=15))
        == 0
    )
    assert len(_uploads(s3_client, s3_bucket)) == 5
    later = now + timedelta(hours=1)
    assert await store.abort_upload(f"tmp/killed#{staged}", older_than=later) == 5 * MiB + 1
    assert await store.abort_upload(f"tmp/killed#{staged}", older_than=later) == 0  # gone
    # A path the store does not name is never aborted, whatever it says.
    for hostile in (
        "vault/blobs/notes/draft#x",
        "../elsewhere/tmp/killed#" + staged,
        "tmp/killed",
        "tmp/a/../../x#1",
        "tmp/killed#" + "x" * 2000,
        "",
    ):
        assert await store.abort_upload(hostile, older_than=later) == 0
    assert sorted(_uploads(s3_client, s3_bucket)) == sorted(
        [final_key, *(key for key, _ in foreign)]
    )
    assert [item.path for item in await store.list_uploads()] == [
        f"sha256/{digest[:2]}/{digest[2:4]}/{digest}#{stated}"
    ]


async def test_upload_listing_stops_at_its_limit_and_counts_uploads_without_parts(
    store: S3BlobStore, s3_client: Any, s3_bucket: str
) -> None:
    # (moto answers every upload in one page, so paging past 1,000 is not shown here.)
    for n in range(3):
        _open_upload(s3_client, s3_bucket, f"vault/blobs/tmp/u{n}", [])
    listed = await store.list_uploads()
    assert sorted(item.path.split("#")[0] for item in listed) == ["tmp/u0", "tmp/u1", "tmp/u2"]
    assert {item.size_bytes for item in listed} == {0}
    assert len(await store.list_uploads(limit=2)) == 2


@pytest.mark.usefixtures("secret_env")
async def test_listing_uploads_on_an_unreachable_endpoint_is_an_io_error_without_credentials() -> (
    None
):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = _unreachable_store(endpoint)
    with pytest.raises(StorageIOError) as caught:
        await store.list_uploads()
    error = caught.value
    assert error.details["operation"] == "list_uploads"
    assert error.details["reason"] == "unreachable"
    assert endpoint in error.message
    _assert_no_secret(
        str(error),
        json.dumps(error.to_dict()),
        "".join(traceback.format_exception(error)),
    )
