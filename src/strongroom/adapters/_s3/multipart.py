"""Incomplete multipart uploads: the bytes a killed writer leaves that no object listing shows.

A large put streams through an S3 multipart upload (`upload`); when the writing process dies
(SIGKILL, power loss) the upload stays open and its parts are stored, and billed, until someone
aborts it. Nothing lists them as objects and obstore can neither list nor abort an upload it
did not start, so this module speaks the three requests GC needs, ``ListMultipartUploads``,
``ListParts`` and ``AbortMultipartUpload``, through botocore (AWS's own signer and credential
chain), on the store's bucket, prefix, endpoint and region.

- Only uploads to keys of the store's own layout are listed or aborted: ``tmp/<name>`` (a
  staging object) and ``sha256/ab/cd/<hex>`` (a put whose digest was stated). Nothing else
  under the prefix, and nothing outside it, is touched.
- An upload's age is its last activity: the newest part's ``LastModified`` (its initiation
  when it has none). A slow upload that is still sending parts is therefore never old, however
  long ago it started; an abort re-reads the parts first and keeps an upload that moved since.
- The size is the sum of its parts (what aborting frees).

botocore is imported here only, when GC or verify first asks (a CLI command that never lists
uploads never loads it). Credentials come from the same environment as obstore's (``AWS_*``
variables, then the shared files and instance or web-identity roles); errors name bucket, key
and endpoint and are scrubbed like every other error of this adapter.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from strongroom.adapters._s3.config import TRUE_WORDS, digest_of_key, is_staging_key
from strongroom.adapters._s3.errors import S3Errors, scrub, scrub_in_place, summary
from strongroom.errors import PermissionDenied, StorageIOError, StrongroomError

__all__ = ["SEPARATOR", "Upload", "UploadClient", "seconds", "split_upload_path"]

SEPARATOR = "#"
"""Between an upload's key and its id in the path GC names it by (``tmp/x#<upload id>``)."""

_UPLOAD_ID_RE = re.compile(r"[A-Za-z0-9._=+/-]{1,700}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Upload:
    """One incomplete multipart upload under the store's prefix."""

    key: str  # relative to the prefix
    upload_id: str
    size_bytes: int
    last_activity: datetime

    @property
    def path(self) -> str:
        return f"{self.key}{SEPARATOR}{self.upload_id}"


def _ours(key: str) -> bool:
    """A key of the store's layout: a staging object or a blob."""
    return is_staging_key(key) or digest_of_key(key) is not None


def split_upload_path(path: str) -> tuple[str, str] | None:
    """(key, upload id) of a path `Upload.path` built; None for anything else (a hostile plan
    file may name any string)."""
    key, sep, upload_id = path.partition(SEPARATOR)
    if not sep or not _ours(key) or not _UPLOAD_ID_RE.fullmatch(upload_id):
        return None
    return key, upload_id


class UploadClient:
    """A botocore S3 client for one store, built on first use (in a worker thread: building it
    reads files and may ask an instance metadata service)."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str,
        endpoint: str | None,
        region: str | None,
        errors: S3Errors,
        max_retries: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.region = region
        self.max_retries = max_retries
        self.connect_timeout = connect_timeout
        self._err = errors
        self._client: Any = None
        self._lock = threading.Lock()

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, full: str) -> str | None:
        if not self.prefix:
            return full
        head = self.prefix + "/"
        return full[len(head) :] if full.startswith(head) else None

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._build()
            return self._client

    def _build(self) -> Any:
        import os

        import botocore.session
        from botocore.config import Config

        virtual = os.environ.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "").lower() in TRUE_WORDS
        style = "virtual" if virtual else ("path" if self.endpoint else "auto")
        session = botocore.session.get_session()
        return session.create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region or "us-east-1",
            config=Config(
                connect_timeout=self.connect_timeout,
                read_timeout=120,
                retries={"total_max_attempts": self.max_retries + 1, "mode": "standard"},
                s3={"addressing_style": style},
            ),
        )

    # -- the three requests (blocking: callers run them in a worker thread) ----------------------

    def list(self, limit: int) -> list[Upload]:
        """Incomplete uploads to keys of the store's layout, at most ``limit``."""
        found: list[Upload] = []
        for key, upload_id, initiated in self._uploads():
            if len(found) >= limit:
                break
            parts = self._parts(key, upload_id)
            if parts is None:
                continue  # completed or aborted since it was listed
            size, newest = parts
            found.append(Upload(key, upload_id, size, max(newest, initiated)))
        return found

    def abort(self, key: str, upload_id: str, older_than: datetime) -> int:
        """Abort the upload if its last activity is before ``older_than``; the bytes its
        parts held (0: it moved since, or it is gone)."""
        parts = self._parts(key, upload_id)
        if parts is None:
            return 0
        size, newest = parts
        if newest >= older_than:
            return 0
        if newest == _EPOCH and not self._initiated_before(key, upload_id, older_than):
            return 0
        with self._translated("abort_upload", key) as gone:
            self.client().abort_multipart_upload(
                Bucket=self.bucket, Key=self._full(key), UploadId=upload_id
            )
        return 0 if gone else size

    def _initiated_before(self, key: str, upload_id: str, older_than: datetime) -> bool:
        """An upload without parts: its initiation date decides."""
        for listed_key, listed_id, initiated in self._uploads(key):
            if (listed_key, listed_id) == (key, upload_id):
                return initiated < older_than
        return False

    def _uploads(self, only: str | None = None) -> Iterator[tuple[str, str, datetime]]:
        prefix = self._full(only) if only is not None else self._full("")
        markers: dict[str, str] = {}
        while True:
            with self._translated("list_uploads", only) as gone:
                page = self.client().list_multipart_uploads(
                    Bucket=self.bucket, Prefix=prefix, MaxUploads=1000, **markers
                )
            if gone:
                return
            for upload in page.get("Uploads", []):
                key = self._relative(str(upload.get("Key", "")))
                upload_id = str(upload.get("UploadId", ""))
                if key is None or not _ours(key) or not _UPLOAD_ID_RE.fullmatch(upload_id):
                    continue
                yield key, upload_id, _utc(upload.get("Initiated"))
            if not page.get("IsTruncated"):
                return
            key_marker = page.get("NextKeyMarker")
            if not key_marker:
                return
            markers = {"KeyMarker": key_marker}
            if page.get("NextUploadIdMarker"):
                markers["UploadIdMarker"] = page["NextUploadIdMarker"]

    def _parts(self, key: str, upload_id: str) -> tuple[int, datetime] | None:
        """(bytes, newest part's time; the epoch when it has none), or None when no such
        upload is open."""
        size, newest = 0, _EPOCH
        marker = 0
        while True:
            with self._translated("list_parts", key) as gone:
                page = self.client().list_parts(
                    Bucket=self.bucket,
                    Key=self._full(key),
                    UploadId=upload_id,
                    MaxParts=1000,
                    PartNumberMarker=marker,
                )
            if gone:
                return None
            for part in page.get("Parts", []):
                size += int(part.get("Size", 0))
                newest = max(newest, _utc(part.get("LastModified")))
            next_marker = int(page.get("NextPartNumberMarker") or 0)
            if not page.get("IsTruncated") or next_marker <= marker:
                return size, newest
            marker = next_marker

    def _translated(self, operation: str, key: str | None) -> _Translated:
        return _Translated(self, operation, key)

    def error(self, exc: Exception, operation: str, key: str | None) -> StrongroomError:
        """The strongroom error for a botocore one (its text scrubbed, in place too)."""
        text = scrub(str(exc))
        scrub_in_place(exc)
        place = self._err.uri(key) if key is not None else f"s3://{self.bucket}/{self.prefix}"
        details: dict[str, Any] = {
            "operation": operation,
            "backend": "s3",
            "bucket": self.bucket,
            "path": key,
            "uri": place,
            "endpoint": self._err.where(),
            "cause": summary(text),
        }
        code = _error_code(exc)
        details["s3_code"] = code
        name = type(exc).__name__
        if name in ("NoCredentialsError", "PartialCredentialsError"):
            return PermissionDenied(
                f"{operation}: no AWS credentials for {place} (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or use an instance or web-identity role)",
                reason="unauthenticated",
                **details,
            )
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return PermissionDenied(
                f"{operation}: access to {place} denied by {details['endpoint']} (check the AWS "
                "credentials and the bucket policy: GC needs s3:ListBucketMultipartUploads, "
                "s3:ListMultipartUploadParts and s3:AbortMultipartUpload)",
                reason="denied",
                **details,
            )
        if code == "NoSuchBucket":
            return StorageIOError(
                f"{operation}: bucket {self.bucket!r} does not exist at {details['endpoint']}",
                reason="no_such_bucket",
                **details,
            )
        if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
            reason, what = "unreachable", "cannot reach the S3 endpoint"
        elif name in ("ReadTimeoutError",):
            reason, what = "timeout", "request timed out"
        elif code:
            reason, what = "s3_error", f"S3 answered {code}"
        else:
            reason, what = "s3_error", name
        return StorageIOError(
            f"{operation}: {what} ({place} at {details['endpoint']})", reason=reason, **details
        )


class _Translated:
    """Turns botocore's errors into strongroom's; ``NoSuchUpload`` is not an error but an
    upload gone (`gone` is true after the block)."""

    def __init__(self, owner: UploadClient, operation: str, key: str | None) -> None:
        self._owner = owner
        self._operation = operation
        self._key = key
        self.gone = False

    def __enter__(self) -> _Translated:
        return self

    def __bool__(self) -> bool:
        return self.gone

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        if isinstance(exc, StrongroomError):
            return False
        if _error_code(exc) == "NoSuchUpload":
            self.gone = True
            return True
        raise self._owner.error(exc, self._operation, self._key) from exc


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if isinstance(code, str) and re.fullmatch(r"[A-Za-z0-9.]{1,64}", code):
            return code
    return None


def seconds(value: Any, default: float) -> float:
    """A timeout as obstore takes it (a timedelta, ``"10s"``, ``"500ms"``, a number) in
    seconds; ``default`` for anything else."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(value))
    if match is None:
        return default
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2) or "s"]
    return float(match.group(1)) * scale


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return _EPOCH
