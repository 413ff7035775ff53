"""S3 blob store (Amazon S3 and S3-compatible stores: MinIO, Ceph RGW, R2...) on obstore.

Layout: ``<prefix>/sha256/ab/cd/<hex>``, the same as the local directory store, plus staging
objects under ``<prefix>/tmp/``.

Writing. A blob is hashed while it streams, so where it may be published depends on what is
known when the upload starts:

- the whole blob fits in one part (``part_size``, default 16 MiB; ``put_bytes`` and small
  streams): one ``PutObject`` straight to the final key with ``If-None-Match: *``. An
  existing key holds the same bytes (its name is their digest), so "already exists" is success;
- a larger stream whose digest the caller states (``expected_sha256``): a multipart upload
  straight to the final key. The source is checked as it ends; on mismatch the source raises,
  obstore aborts the upload and nothing becomes visible (S3 shows a multipart object only once
  it is completed);
- a larger stream of unknown digest: a multipart upload to ``<prefix>/tmp/<uuid>``, then a
  server-side ``CopyObject`` to the final key unless that key already exists, then the staging
  object is deleted. ``CopyObject`` copies at most 5 GiB in one request and obstore exposes no
  ranged ``UploadPartCopy``; bigger blobs are copied through this process instead (streamed
  down and up again, re-verified, bounded memory: one more download and upload). Callers that
  know the digest of a big blob save both the staging and the copy by stating it.

Multipart uploads go through ``obstore.put_async`` fed by an async iterator (not
``open_writer``): obstore then aborts the upload itself when the source or a request fails,
which ``open_writer`` cannot do (closing it completes the upload), and it bounds memory to about
``(max_concurrency + 1) * part_size`` with ``max_concurrency`` parts in flight.

Reading streams one ``GetObject`` and hashes as it goes: `NotFound` before the first chunk,
`IntegrityError` after the last one, like the local store.

Credentials come only from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``) or obstore's default chain (web identity, ECS/EKS, instance profile).
They are never taken from a URL, and nothing this module builds (repr, locations, errors)
contains them: errors carry bucket, key and endpoint, and the driver's own text is scrubbed of
anything credential-like before it is chained as the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Coroutine, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Self
from urllib.parse import parse_qsl, unquote, urlsplit

import obstore as obs
from obstore.exceptions import (
    AlreadyExistsError,
    NotSupportedError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
    UnknownConfigurationKeyError,
)
from obstore.store import S3Store

from strongroom.adapters._urls import safe_url
from strongroom.errors import (
    IntegrityError,
    NotFound,
    PermissionDenied,
    StorageIOError,
    StrongroomError,
    ValidationError,
)
from strongroom.models import BlobInfo, BlobLocation
from strongroom.ports.blobs import CHUNK_SIZE, BlobStore, check_blob_digest

if TYPE_CHECKING:
    from obstore import ObjectMeta
    from obstore.store import ClientConfig, RetryConfig

__all__ = [
    "COPY_OBJECT_LIMIT",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_PART_SIZE",
    "DEFAULT_STALE_STAGING_AFTER",
    "S3BlobStore",
]

MiB = 1024 * 1024

DEFAULT_PART_SIZE = 16 * MiB
"""Multipart part size, and the largest blob written with one PutObject. S3 allows 10,000
parts, so a streamed blob may be up to 10,000 x part_size (156 GiB at the default)."""

DEFAULT_MAX_CONCURRENCY = 4
"""Parts of one upload in flight at once."""

DEFAULT_PUT_MANY_CONCURRENCY = 32
"""Concurrent requests of one put_many call."""

DEFAULT_STALE_STAGING_AFTER = 24 * 3600.0
"""Seconds before `open()` deletes an object under ``tmp/``. Generous on purpose: S3 dates a
multipart object by the start of its upload, so a long upload's staging object already looks
old when the copy that publishes it begins; a staging object lives only for that copy."""

COPY_OBJECT_LIMIT = 5 * 1024 * MiB
"""The largest object one S3 CopyObject request may copy (5 GiB)."""

_MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
_MAX_PART_SIZE = 5 * 1024 * MiB
_MAX_PARTS = 10_000
_MAX_OBJECT_SIZE = 5 * 1024 * 1024 * MiB  # 5 TiB
# obstore's GET stream hands over chunks of at least this size (network reads coalesced);
# get_stream then cuts them to the caller's chunk_size.
_MIN_READ = 64 * 1024
_MAX_READ = 8 * MiB
# Hashing runs on the event loop (about 0.7 ms per MiB with SHA-NI) except for pieces this big,
# which go to a worker thread (hashlib releases the GIL) so the loop is never held for long.
_THREAD_HASH = 4 * MiB

_DEFAULT_CLIENT_OPTIONS: dict[str, str] = {
    "connect_timeout": "10s",
    # reqwest's `timeout` bounds a whole request, body included: obstore's 30 s default would
    # cut off any GET stream that takes longer (a large blob, a slow consumer). A stalled
    # connection is caught by read_timeout instead.
    "timeout": "6h",
    "read_timeout": "120s",
}

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9._=+@,-]{1,255}")
_DIGEST_KEY_RE = re.compile(r"sha256/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})")
_STATUS_RE = re.compile(r"status code: (\d{3})")
_S3_CODE_RE = re.compile(r"<Code>([A-Za-z0-9.]{1,64})</Code>")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_URL_KEYS = ("endpoint", "region", "allow_http", "max_retries", "connect_timeout", "timeout")

# What could carry a credential in a driver's error text: S3's SignatureDoesNotMatch body
# echoes the access key id and the canonical request (which holds x-amz-security-token), and
# presigned URLs carry X-Amz-Credential/Signature/Security-Token.
_SECRET_XML = re.compile(
    r"<(AWSAccessKeyId|StringToSign|StringToSignBytes|CanonicalRequest|CanonicalRequestBytes|"
    r"SignatureProvided)>.*?</\1>",
    re.DOTALL,
)
_SECRET_PARAMS = re.compile(
    r"((?:X-Amz-(?:Credential|Signature|Security-Token))|AWSAccessKeyId|Signature)=[^&\s\"'<]*",
    re.IGNORECASE,
)
_SECRET_HEADERS = re.compile(
    r"((?:authorization|x-amz-security-token|x-amz-credential)\s*[:=]\s*)[^\n\"',}]*",
    re.IGNORECASE,
)
_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ACCESS_KEY_ID",
)
_REDACTED = "***"


def _scrub(text: str) -> str:
    """Driver error text without anything credential-like (and without its Debug dump)."""
    text = text.split("\n\nDebug source:", 1)[0]
    text = _SECRET_XML.sub(lambda m: f"<{m.group(1)}>{_REDACTED}</{m.group(1)}>", text)
    text = _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}={_REDACTED}", text)
    text = _SECRET_HEADERS.sub(lambda m: f"{m.group(1)}{_REDACTED}", text)
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, _REDACTED)
    return text


def _summary(text: str) -> str:
    """The first line of scrubbed driver text, shortened for an error's details."""
    line = " ".join(text.split())
    return line if len(line) <= 400 else line[:397] + "..."


async def _hash(hasher: Any, data: bytes) -> None:
    if len(data) >= _THREAD_HASH:
        await asyncio.to_thread(hasher.update, data)
    else:
        hasher.update(data)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Done-callback marking an abandoned future's exception as seen."""
    if not future.cancelled():
        future.exception()


class _Aborted(Exception):
    """Raised into an abandoned upload's source so obstore aborts the multipart upload."""


class _Source:
    """The async iterator obstore pulls an upload's bytes from: hashes, counts, checks.

    It first replays ``head`` (chunks already read and hashed while deciding how to upload),
    then continues with ``rest``. When ``expected`` is set the digest is checked as the source
    ends, *before* obstore sees the end, so a mismatch aborts the upload instead of completing
    it. An exception from the caller's iterator is remembered so the store re-raises it as is.
    """

    def __init__(
        self,
        store: S3BlobStore,
        head: list[bytes],
        hasher: Any,
        size: int,
        rest: AsyncIterator[bytes] | None,
        expected: str | None,
        limit: int,
    ) -> None:
        self._store = store
        self._head = head
        self._index = 0
        self.hasher = hasher
        self.size = size
        self._rest = rest
        self._expected = expected
        self._limit = limit
        self._aborted = False
        self.failure: BaseException | None = None

    def abort(self) -> None:
        self._aborted = True

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._aborted:
            raise _Aborted("upload abandoned")
        if self._index < len(self._head):
            chunk = self._head[self._index]
            self._head[self._index] = b""  # let obstore own the only reference
            self._index += 1
            return chunk
        while self._rest is not None:
            try:
                chunk = await anext(self._rest)
            except StopAsyncIteration:
                break
            except BaseException as exc:
                self.failure = exc
                raise
            if self._aborted:
                raise _Aborted("upload abandoned")
            if not chunk:
                continue
            if type(chunk) is not bytes:
                chunk = bytes(chunk)  # a caller may reuse a mutable buffer once we move on
            await _hash(self.hasher, chunk)
            self.size += len(chunk)
            if self.size > self._limit:
                raise self._store._too_large(self._limit)
            return chunk
        if self._expected is not None:
            actual = self.hasher.hexdigest()
            if actual != self._expected:
                raise self._store._mismatch("put", self._expected, actual)
        raise StopAsyncIteration


class S3BlobStore(BlobStore):
    """Blobs as objects in an S3 bucket, keyed by digest under an optional prefix."""

    backend = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        allow_http: bool | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        put_many_concurrency: int = DEFAULT_PUT_MANY_CONCURRENCY,
        stale_staging_after: float = DEFAULT_STALE_STAGING_AFTER,
        copy_limit: int = COPY_OBJECT_LIMIT,
        client_options: ClientConfig | None = None,
        retry_config: RetryConfig | None = None,
    ) -> None:
        """A store on ``bucket`` under ``prefix``. No I/O happens until the first call.

        ``endpoint`` (default: ``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT``, else AWS itself) and
        ``region`` (default: ``AWS_REGION``, ``AWS_DEFAULT_REGION``) select the service;
        ``allow_http`` defaults to true exactly when the endpoint is ``http://``.
        ``client_options`` and ``retry_config`` are obstore's (timeouts, proxies, retries) and
        override this store's defaults.
        ``copy_limit`` is the largest blob copied server-side (tests lower it).
        """
        self.bucket = _check_bucket(bucket)
        self.prefix = _check_prefix(prefix)
        endpoint = (
            endpoint or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT") or None
        )
        self.endpoint = _check_endpoint(endpoint) if endpoint is not None else None
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if self.region is not None and not re.fullmatch(r"[a-z0-9-]{1,64}", self.region):
            raise ValidationError(
                "S3 region must be lowercase letters, digits and dashes",
                operation="open_blobs",
                backend=self.backend,
                reason="bad_region",
                region=repr(self.region)[:80],
            )
        if allow_http is None:
            allow_http = self.endpoint is not None and self.endpoint.startswith("http://")
        if not _MIN_PART_SIZE <= part_size <= _MAX_PART_SIZE:
            raise ValidationError(
                "S3 part_size must be between 5 MiB and 5 GiB",
                operation="open_blobs",
                backend=self.backend,
                part_size=part_size,
            )
        for name, value in (
            ("max_concurrency", max_concurrency),
            ("put_many_concurrency", put_many_concurrency),
            ("copy_limit", copy_limit),
        ):
            if value < 1:
                raise ValidationError(
                    f"S3 {name} must be positive", operation="open_blobs", backend=self.backend
                )
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.put_many_concurrency = put_many_concurrency
        self.stale_staging_after = stale_staging_after
        self.copy_limit = copy_limit
        options: dict[str, Any] = dict(_DEFAULT_CLIENT_OPTIONS)
        options["allow_http"] = allow_http
        options.update(client_options or {})
        config: dict[str, Any] = {}
        if self.endpoint is not None:
            config["endpoint"] = self.endpoint
        if self.region is not None:
            config["region"] = self.region
        try:
            # S3Store reads the remaining AWS_* settings (credentials included) from the
            # environment itself; they stay inside it.
            self._store = S3Store(
                self.bucket,
                prefix=self.prefix or None,
                client_options=options,  # type: ignore[arg-type]
                retry_config=retry_config,
                **config,
            )
        except Exception as exc:
            _scrub_in_place(exc)
            raise ValidationError(
                "invalid S3 configuration",
                operation="open_blobs",
                backend=self.backend,
                bucket=self.bucket,
                endpoint=self.endpoint,
                reason=_summary(_scrub(str(exc))),
            ) from exc
        self._background: set[asyncio.Task[None]] = set()
        # False once the store has answered that it cannot do If-None-Match on PutObject.
        self._conditional_put = True

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> S3BlobStore:
        """``s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1``.

        Query keys: ``endpoint``, ``region``, ``allow_http``, ``max_retries``,
        ``connect_timeout`` and ``timeout`` (seconds). Credentials are refused: they come from
        the environment only. ``kwargs`` go to the constructor.
        """
        try:
            parts = urlsplit(url)
        except ValueError:
            raise _url_error("not a valid s3:// URL", "bad_url") from None
        if "@" in parts.netloc or parts.password is not None:
            raise _url_error(
                "credentials are not accepted in an s3:// URL: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) in the environment, or use an "
                "instance or web-identity role",
                "credentials_in_url",
            )
        if parts.scheme != "s3":
            raise _url_error("an S3 blob store URL starts with s3://", "unsupported_scheme", url)
        if parts.fragment:
            raise _url_error("an s3:// URL has no #fragment", "bad_url", url)
        options: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key not in _URL_KEYS:
                shown = key if re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", key) else "?"
                secretish = re.search(r"(key|secret|token|pass|cred|auth|sig)", key, re.I)
                raise _url_error(
                    "credentials are not accepted in an s3:// URL: use the AWS_* environment "
                    "variables"
                    if secretish
                    else f"unknown s3:// URL option {shown!r}: use " + ", ".join(_URL_KEYS),
                    "credentials_in_url" if secretish else "unknown_option",
                    None if secretish else url,
                )
            if key in options:
                raise _url_error(f"s3:// URL option {key!r} given twice", "bad_url", url)
            options[key] = value
        client: dict[str, Any] = dict(kwargs.pop("client_options", None) or {})
        retry: dict[str, Any] = dict(kwargs.pop("retry_config", None) or {})
        try:
            if "max_retries" in options:
                retry["max_retries"] = int(options["max_retries"])
            for key in ("connect_timeout", "timeout"):
                if key in options:
                    seconds = float(options[key])
                    if not seconds > 0:
                        raise ValueError(key)
                    client[key] = timedelta(seconds=seconds)
        except ValueError:
            raise _url_error(
                "s3:// URL options max_retries, connect_timeout and timeout take numbers",
                "bad_option",
                url,
            ) from None
        allow_http: bool | None = None
        if "allow_http" in options:
            flag = options["allow_http"].lower()
            if flag not in _TRUE | _FALSE:
                raise _url_error("s3:// URL option allow_http takes true or false", "bad_option")
            allow_http = flag in _TRUE
        kwargs.setdefault("endpoint", options.get("endpoint") or None)
        kwargs.setdefault("region", options.get("region") or None)
        kwargs.setdefault("allow_http", allow_http)
        return cls(
            unquote(parts.netloc),
            unquote(parts.path),
            client_options=client or None,  # type: ignore[arg-type]
            retry_config=retry or None,  # type: ignore[arg-type]
            **kwargs,
        )

    def __repr__(self) -> str:
        where = f", endpoint={self.endpoint!r}" if self.endpoint else ""
        return f"S3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r}{where})"

    # -- lifecycle --------------------------------------------------------------------------------

    async def open(self) -> None:
        """Check the bucket answers and delete staging objects left by crashed writers."""
        await self.sweep_staging()

    async def close(self) -> None:
        """Wait for background clean-ups (staging deletes of abandoned puts)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def sweep_staging(self, older_than: float | None = None) -> int:
        """Delete objects under ``tmp/`` older than ``older_than`` seconds (default
        `stale_staging_after`); returns how many. Unfinished multipart uploads are not
        visible here: a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes those."""
        horizon = datetime.now(UTC) - timedelta(
            seconds=self.stale_staging_after if older_than is None else older_than
        )
        stale: list[str] = []
        with self._errors("open", "tmp/"):
            async for batch in obs.list(self._store, "tmp", chunk_size=1000):
                stale.extend(m["path"] for m in batch if m["last_modified"] <= horizon)
        for start in range(0, len(stale), 1000):
            with self._errors("open", "tmp/"):
                await obs.delete_async(self._store, stale[start : start + 1000])
        return len(stale)

    # -- names and errors -------------------------------------------------------------------------

    def _digest(self, value: str, operation: str) -> str:
        return check_blob_digest(value, operation=operation, backend=self.backend)

    @staticmethod
    def _rel(hexd: str) -> str:
        return f"sha256/{hexd[0:2]}/{hexd[2:4]}/{hexd}"

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def _where(self) -> str:
        return self.endpoint or f"AWS S3 ({self.region or 'default region'})"

    def _not_found(self, operation: str, hexd: str) -> NotFound:
        key = self._rel(hexd)
        return NotFound(
            f"{operation}: blob not found",
            operation=operation,
            sha256=hexd,
            backend=self.backend,
            path=key,
            uri=self._uri(key),
        )

    def _mismatch(self, operation: str, hexd: str, actual: str) -> IntegrityError:
        key = self._rel(hexd)
        return IntegrityError(
            f"{operation}: blob digest mismatch",
            operation=operation,
            sha256=hexd,
            actual_sha256=actual,
            backend=self.backend,
            path=key,
            uri=self._uri(key),
        )

    def _staging_vanished(self, staging: str, key: str) -> StorageIOError:
        return StorageIOError(
            "put: the staging object disappeared before it was copied into place (a staging "
            "sweep with too short a horizon?)",
            operation="put",
            backend=self.backend,
            bucket=self.bucket,
            path=key,
            uri=self._uri(key),
            staging=self._uri(staging),
            endpoint=self._where(),
            reason="staging_vanished",
        )

    def _too_large(self, limit: int) -> ValidationError:
        return ValidationError(
            f"put: blob larger than {limit} bytes (10,000 parts of part_size, or S3's 5 TiB)",
            operation="put",
            backend=self.backend,
            bucket=self.bucket,
            reason="too_large",
            limit=limit,
        )

    @contextlib.contextmanager
    def _errors(
        self, operation: str, key: str | None = None, *, source: _Source | None = None
    ) -> Iterator[None]:
        """The one place obstore and HTTP errors become strongroom errors for this adapter."""
        try:
            yield
        except StrongroomError:
            raise
        except Exception as exc:
            if source is not None and exc is source.failure:
                raise  # the caller's own iterator failed: its exception, untouched
            self._raise_translated(exc, operation, key)

    def _raise_translated(self, exc: Exception, operation: str, key: str | None) -> NoReturn:
        text = _scrub(str(exc))
        _scrub_in_place(exc)  # the cause stays inspectable, without anything secret
        status_match = _STATUS_RE.search(text)
        status = int(status_match.group(1)) if status_match else None
        code_match = _S3_CODE_RE.search(text)
        s3_code = code_match.group(1) if code_match else None
        uri = self._uri(key) if key is not None else f"s3://{self.bucket}/{self.prefix}"
        endpoint = self._where()
        details: dict[str, Any] = {
            "operation": operation,
            "backend": self.backend,
            "bucket": self.bucket,
            "path": key,
            "uri": uri,
            "endpoint": endpoint,
            "status": status,
            "s3_code": s3_code,
            "cause": _summary(text),
        }
        if s3_code == "NoSuchBucket":
            raise StorageIOError(
                f"{operation}: bucket {self.bucket!r} does not exist at {endpoint}",
                reason="no_such_bucket",
                **details,
            ) from exc
        if isinstance(exc, FileNotFoundError):
            raise NotFound(
                f"{operation}: no object at {uri}", reason="not_found", **details
            ) from exc
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError):
            raise PermissionDenied(
                f"{operation}: access to {uri} denied by {endpoint} (check the AWS credentials "
                "and the bucket policy)",
                reason="unauthenticated" if isinstance(exc, UnauthenticatedError) else "denied",
                **details,
            ) from exc
        if isinstance(exc, UnknownConfigurationKeyError):
            raise ValidationError(
                f"{operation}: invalid S3 configuration", reason="bad_config", **details
            ) from exc
        if isinstance(exc, AlreadyExistsError | PreconditionError):
            reason, what = "precondition_failed", "a precondition failed"
        elif isinstance(exc, NotSupportedError):
            reason, what = "not_supported", "operation not supported by this store"
        elif status is not None:
            reason, what = (
                f"http_{status}",
                f"S3 answered {status}" + (f" {s3_code}" if s3_code else ""),
            )
        elif re.search(r"timed? ?out|TimedOut|deadline", text, re.IGNORECASE):
            reason, what = "timeout", "request timed out"
        elif re.search(
            r"error sending request|tcp connect|connection refused|dns error|failed to lookup",
            text,
            re.IGNORECASE,
        ):
            reason, what = "unreachable", "cannot reach the S3 endpoint"
        else:
            reason, what = "s3_error", type(exc).__name__
        raise StorageIOError(
            f"{operation}: {what} ({uri} at {endpoint})", reason=reason, **details
        ) from exc

    # -- writing ----------------------------------------------------------------------------------

    async def put_bytes(self, data: bytes, *, expected_sha256: str | None = None) -> BlobInfo:
        expected = None if expected_sha256 is None else self._digest(expected_sha256, "put")
        if type(data) is not bytes:
            data = bytes(data)
        hasher = hashlib.sha256()
        await _hash(hasher, data)
        hexd = hasher.hexdigest()
        if expected is not None and hexd != expected:
            raise self._mismatch("put", expected, hexd)
        await self._publish_bytes(hexd, data)
        return BlobInfo(sha256=hexd, size_bytes=len(data))

    async def put_many(self, items: Sequence[bytes]) -> list[BlobInfo]:
        """Put several blobs, ``put_many_concurrency`` requests at a time, results in order."""
        if not items:
            return []
        gate = asyncio.Semaphore(self.put_many_concurrency)

        async def one(item: bytes) -> BlobInfo:
            async with gate:
                return await self.put_bytes(item)

        results = await asyncio.gather(*(one(item) for item in items), return_exceptions=True)
        infos: list[BlobInfo] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            infos.append(result)
        return infos

    async def _publish_bytes(self, hexd: str, data: bytes) -> None:
        key = self._rel(hexd)
        if len(data) <= self.part_size:
            if self._conditional_put:
                try:
                    with self._errors("put", key), contextlib.suppress(AlreadyExistsError):
                        # If-None-Match: * failed: the key exists and, named by its digest,
                        # already holds these bytes.
                        await obs.put_async(self._store, key, data, mode="create")
                    return
                except StorageIOError as exc:
                    if exc.details.get("reason") not in ("not_supported", "http_501"):
                        raise
                    # An S3-compatible store without conditional PutObject: a plain put can
                    # only ever replace a blob by the same bytes, so it is safe, just not free.
                    self._conditional_put = False
            with self._errors("put", key):
                await obs.put_async(self._store, key, data)
            return
        if await self._key_exists("put", key):
            return
        with self._errors("put", key):
            await obs.put_async(
                self._store,
                key,
                data,
                use_multipart=True,
                chunk_size=self.part_size,
                max_concurrency=self.max_concurrency,
            )

    async def put_stream(
        self, chunks: AsyncIterable[bytes], *, expected_sha256: str | None = None
    ) -> BlobInfo:
        expected = None if expected_sha256 is None else self._digest(expected_sha256, "put")
        upstream = aiter(chunks)
        hasher = hashlib.sha256()
        head: list[bytes] = []
        size = 0
        exhausted = False
        # Read up to one part: most blobs end here and go out as one conditional PutObject.
        while size <= self.part_size:
            try:
                chunk = await anext(upstream)
            except StopAsyncIteration:
                exhausted = True
                break
            if not chunk:
                continue
            if type(chunk) is not bytes:
                chunk = bytes(chunk)  # a caller may reuse a mutable buffer once we move on
            await _hash(hasher, chunk)
            head.append(chunk)
            size += len(chunk)
        if exhausted:
            hexd = hasher.hexdigest()
            if expected is not None and hexd != expected:
                raise self._mismatch("put", expected, hexd)
            data = b"".join(head)
            head.clear()
            await self._publish_bytes(hexd, data)
            return BlobInfo(sha256=hexd, size_bytes=size)
        limit = min(_MAX_PARTS * self.part_size, _MAX_OBJECT_SIZE)
        source = _Source(self, head, hasher, size, upstream, expected, limit)
        if expected is not None:
            return await self._put_expected(expected, source)
        return await self._put_staged(source)

    async def _put_expected(self, expected: str, source: _Source) -> BlobInfo:
        """Stream straight to the final key: the source checks the digest before it ends."""
        key = self._rel(expected)
        if await self._key_exists("put", key):
            async for _ in source:  # only to check the caller's bytes against expected
                pass
        else:
            await self._upload(key, source)
        return BlobInfo(sha256=expected, size_bytes=source.size)

    async def _put_staged(self, source: _Source) -> BlobInfo:
        """Stream to a staging key, then copy to the final key (named by the digest)."""
        staging = f"tmp/{uuid.uuid4().hex}"
        await self._upload(staging, source, staging=True)
        hexd = source.hasher.hexdigest()
        key = self._rel(hexd)
        try:
            if not await self._key_exists("put", key):
                if source.size <= self.copy_limit:
                    try:
                        with self._errors("put", key):
                            await obs.copy_async(self._store, staging, key, overwrite=True)
                    except NotFound as exc:
                        raise self._staging_vanished(staging, key) from exc
                else:
                    await self._copy_through(staging, key, hexd)
                info = await self._head("put", key)
                if info is None or info["size"] != source.size:
                    raise StorageIOError(
                        "put: the copied blob is missing or has the wrong size",
                        operation="put",
                        backend=self.backend,
                        bucket=self.bucket,
                        path=key,
                        uri=self._uri(key),
                        endpoint=self._where(),
                        reason="copy_failed",
                    )
        finally:
            await self._discard(staging)
        return BlobInfo(sha256=hexd, size_bytes=source.size)

    async def _upload(
        self, key: str, source: _Source, *, staging: bool = False, callers: bool = True
    ) -> None:
        """Multipart-upload ``source`` to ``key``. With ``callers`` the source wraps the
        caller's iterator, whose own exceptions then propagate untranslated."""
        # put_async hands back an asyncio future already: the upload runs in obstore's runtime.
        upload = asyncio.ensure_future(
            obs.put_async(
                self._store,
                key,
                source,
                use_multipart=True,
                chunk_size=self.part_size,
                max_concurrency=self.max_concurrency,
            )
        )
        try:
            with self._errors("put", key, source=source if callers else None):
                await asyncio.shield(upload)
        except asyncio.CancelledError:
            # Let the upload fail on its next chunk so obstore aborts the multipart upload
            # (dropping it would leave the parts behind); a staging object that completed
            # anyway is deleted in the background.
            source.abort()
            if staging:
                upload.add_done_callback(lambda done: self._after_abandoned(done, key))
            else:
                upload.add_done_callback(_retrieve)
            raise

    def _after_abandoned(self, done: asyncio.Future[Any], staging: str) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        self._spawn(self._discard_quietly(staging))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _discard(self, staging: str) -> None:
        """Delete a staging object; a failure leaves it to `sweep_staging`."""
        await asyncio.shield(self._spawn(self._discard_quietly(staging)))

    async def _discard_quietly(self, staging: str) -> None:
        with contextlib.suppress(Exception):
            await obs.delete_async(self._store, staging)

    async def _copy_through(self, staging: str, key: str, hexd: str) -> None:
        """Copy a blob too large for CopyObject by streaming it through this process."""
        try:
            with self._errors("put", staging):
                result = await obs.get_async(self._store, staging)
        except NotFound as exc:
            raise self._staging_vanished(staging, key) from exc
        source = _Source(
            self, [], hashlib.sha256(), 0, aiter(result.stream(self.part_size)), hexd, 2**63
        )
        await self._upload(key, source, callers=False)

    # -- reading ----------------------------------------------------------------------------------

    def get_stream(self, sha256: str, *, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        hexd = self._digest(sha256, "get")
        if chunk_size < 1:
            raise ValidationError(
                "get: chunk_size must be positive", backend=self.backend, chunk_size=chunk_size
            )
        return self._stream("get", hexd, chunk_size)

    async def _stream(self, operation: str, hexd: str, chunk_size: int) -> AsyncIterator[bytes]:
        key = self._rel(hexd)
        try:
            with self._errors(operation, key):
                result = await obs.get_async(self._store, key)
        except NotFound:
            raise self._not_found(operation, hexd) from None
        hasher = hashlib.sha256()
        cut = min(chunk_size, _MAX_READ)  # chunks may be smaller than asked, never larger
        stream = result.stream(max(cut, _MIN_READ))
        carry = b""
        while True:
            with self._errors(operation, key):
                try:
                    piece = await anext(stream)
                except StopAsyncIteration:
                    break
            await _hash(hasher, piece)
            if carry:
                piece = carry + piece
            start, end = 0, len(piece)
            while end - start >= cut:
                yield piece[start : start + cut]
                start += cut
            carry = piece[start:] if start else piece
        if carry:
            yield carry
        actual = hasher.hexdigest()
        if actual != hexd:
            raise self._mismatch(operation, hexd, actual)

    async def get_bytes(self, sha256: str) -> bytes:
        hexd = self._digest(sha256, "get")
        key = self._rel(hexd)
        try:
            with self._errors("get", key):
                result = await obs.get_async(self._store, key)
                data = bytes(await result.bytes_async())
        except NotFound:
            raise self._not_found("get", hexd) from None
        hasher = hashlib.sha256()
        await _hash(hasher, data)
        actual = hasher.hexdigest()
        if actual != hexd:
            raise self._mismatch("get", hexd, actual)
        return data

    async def verify(self, sha256: str) -> BlobInfo:
        hexd = self._digest(sha256, "verify")
        size = 0
        async for chunk in self._stream("verify", hexd, _MAX_READ):  # hashes as it reads
            size += len(chunk)
        return BlobInfo(sha256=hexd, size_bytes=size)

    # -- metadata ---------------------------------------------------------------------------------

    async def _head(self, operation: str, key: str) -> ObjectMeta | None:
        """The object's metadata, or None when there is no such object."""
        try:
            with self._errors(operation, key):
                return await obs.head_async(self._store, key)
        except NotFound:
            return None

    async def _key_exists(self, operation: str, key: str) -> bool:
        return await self._head(operation, key) is not None

    async def stat(self, sha256: str) -> BlobInfo:
        hexd = self._digest(sha256, "stat")
        meta = await self._head("stat", self._rel(hexd))
        if meta is None:
            raise self._not_found("stat", hexd)
        return BlobInfo(sha256=hexd, size_bytes=meta["size"])

    async def exists(self, sha256: str) -> bool:
        return await self._key_exists("exists", self._rel(self._digest(sha256, "exists")))

    async def delete(self, sha256: str) -> bool:
        hexd = self._digest(sha256, "delete")
        key = self._rel(hexd)
        # S3 deletes are idempotent and do not say whether the key existed: ask first.
        if not await self._key_exists("delete", key):
            return False
        with self._errors("delete", key):
            await obs.delete_async(self._store, key)
        return True

    async def iter_digests(self) -> AsyncIterator[str]:
        # obstore follows S3's continuation tokens (1,000 keys a page) as the stream is read.
        with self._errors("list", "sha256/"):
            stream = obs.list(self._store, "sha256", chunk_size=1000)
        while True:
            with self._errors("list", "sha256/"):
                try:
                    batch = await anext(stream)
                except StopAsyncIteration:
                    return
            for meta in batch:
                match = _DIGEST_KEY_RE.fullmatch(meta["path"])
                if (
                    match
                    and match.group(3)[0:2] == match.group(1)
                    and match.group(3)[2:4] == match.group(2)
                ):
                    yield match.group(3)

    def locate(self, sha256: str) -> BlobLocation:
        hexd = self._digest(sha256, "locate")
        key = self._rel(hexd)
        return BlobLocation(backend=self.backend, path=key, uri=self._uri(key))


# -- validation ---------------------------------------------------------------------------------


def _scrub_in_place(exc: BaseException) -> None:
    """Replace a driver exception's text by its scrubbed form (it is chained as a cause)."""
    with contextlib.suppress(Exception):
        exc.args = tuple(_scrub(arg) if isinstance(arg, str) else arg for arg in exc.args)


def _url_error(message: str, reason: str, url: str | None = None) -> ValidationError:
    return ValidationError(
        message,
        operation="open_blobs",
        backend="s3",
        reason=reason,
        url=safe_url(url) if url is not None else None,
    )


def _check_bucket(bucket: str) -> str:
    if not isinstance(bucket, str) or not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ValidationError(
            "S3 bucket names are 3-63 lowercase letters, digits, dots and dashes",
            operation="open_blobs",
            backend="s3",
            reason="bad_bucket",
            bucket=repr(bucket)[:80],
        )
    return bucket


def _check_prefix(prefix: str) -> str:
    text = prefix.strip("/")
    if not text:
        return ""
    segments = text.split("/")
    if len(text) > 512 or not all(
        _SEGMENT_RE.fullmatch(s) and s not in (".", "..") for s in segments
    ):
        raise ValidationError(
            "S3 prefix segments are ASCII letters, digits and ._=+@,- (no empty, '.' or '..')",
            operation="open_blobs",
            backend="s3",
            reason="bad_prefix",
            prefix=repr(prefix)[:120],
        )
    return "/".join(segments)


def _check_endpoint(endpoint: str) -> str:
    """An http(s) origin without credentials, query or fragment (obstore panics on some bad
    URLs at request time, so they are refused here)."""
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        parts = None
    if parts is not None and (parts.username is not None or "@" in parts.netloc):
        raise ValidationError(
            "credentials are not accepted in the S3 endpoint URL: use the AWS_* environment "
            "variables",
            operation="open_blobs",
            backend="s3",
            reason="credentials_in_url",
        )
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or any(c.isspace() or ord(c) < 32 for c in endpoint)
        or not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", parts.netloc)
    ):
        raise ValidationError(
            "the S3 endpoint must be an http:// or https:// URL such as http://127.0.0.1:9000",
            operation="open_blobs",
            backend="s3",
            reason="bad_endpoint",
            endpoint=safe_url(endpoint)[:200],
        )
    return endpoint.rstrip("/")
