"""Every error the S3 blob store raises, built in one place.

`S3Errors.translated` is the one place obstore and HTTP errors become strongroom errors for
this adapter. Errors carry bucket, key, ``s3://`` URI and endpoint, never a credential: the
driver's own text is scrubbed (`scrub`, over `strongroom.secrets.scrub_text`) of anything
credential-like before it goes into a message or a detail, and the driver's exception itself
is scrubbed in place before it is chained as the cause.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from obstore.exceptions import (
    AlreadyExistsError,
    NotSupportedError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
    UnknownConfigurationKeyError,
)

from strongroom.errors import (
    NotFound,
    PermissionDenied,
    StorageIOError,
    StrongroomError,
    ValidationError,
)
from strongroom.secrets import env_secrets, scrub_text

if TYPE_CHECKING:
    from strongroom.adapters._s3.upload import Source

__all__ = ["S3Errors", "scrub", "scrub_in_place", "summary"]

_STATUS_RE = re.compile(r"status code: (\d{3})")
_S3_CODE_RE = re.compile(r"<Code>([A-Za-z0-9.]{1,64})</Code>")


def scrub(text: str) -> str:
    """Driver error text without its Debug dump and without anything credential-like
    (`strongroom.secrets.scrub_text`: signature XML elements, presigned-URL parameters,
    authentication headers, and the values of the AWS secret variables)."""
    text = text.split("\n\nDebug source:", 1)[0]
    return scrub_text(text, known_values=env_secrets())


def summary(text: str) -> str:
    """The first line of scrubbed driver text, shortened for an error's details."""
    line = " ".join(text.split())
    return line if len(line) <= 400 else line[:397] + "..."


def scrub_in_place(exc: BaseException) -> None:
    """Replace a driver exception's text by its scrubbed form (it is chained as a cause)."""
    with contextlib.suppress(Exception):
        exc.args = tuple(scrub(arg) if isinstance(arg, str) else arg for arg in exc.args)


class S3Errors:
    """The errors of one store, each naming where it happened."""

    def __init__(
        self, *, backend: str, bucket: str, prefix: str, endpoint: str | None, region: str | None
    ) -> None:
        self.backend = backend
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.region = region

    def uri(self, key: str) -> str:
        """``s3://bucket/prefix/key``."""
        full = f"{self.prefix}/{key}" if self.prefix else key
        return f"s3://{self.bucket}/{full}"

    def where(self) -> str:
        """The endpoint, or which AWS region answers."""
        return self.endpoint or f"AWS S3 ({self.region or 'default region'})"

    def _place(self, operation: str, key: str | None, **extra: Any) -> dict[str, Any]:
        return {
            "operation": operation,
            "backend": self.backend,
            "bucket": self.bucket,
            "path": key,
            "uri": self.uri(key) if key is not None else f"s3://{self.bucket}/{self.prefix}",
            **extra,
            "endpoint": self.where(),
        }

    def io_error(
        self, operation: str, key: str, message: str, *, reason: str, **extra: Any
    ) -> StorageIOError:
        return StorageIOError(message, **self._place(operation, key, **extra), reason=reason)

    def staging_vanished(self, staging: str, key: str) -> StorageIOError:
        return self.io_error(
            "put",
            key,
            "put: the staging object disappeared before it was copied into place (a staging "
            "sweep with too short a horizon?)",
            reason="staging_vanished",
            staging=self.uri(staging),
        )

    def too_large(self, limit: int) -> ValidationError:
        return ValidationError(
            f"put: blob larger than {limit} bytes (10,000 parts of part_size, or S3's 5 TiB)",
            operation="put",
            backend=self.backend,
            bucket=self.bucket,
            reason="too_large",
            limit=limit,
        )

    @contextlib.contextmanager
    def translated(
        self, operation: str, key: str | None = None, *, source: Source | None = None
    ) -> Iterator[None]:
        """Driver errors raised inside become strongroom errors; an exception of the caller's
        own iterator behind ``source`` passes untouched."""
        try:
            yield
        except StrongroomError:
            raise
        except Exception as exc:
            if source is not None and exc is source.failure:
                raise  # the caller's own iterator failed: its exception, untouched
            self._raise_translated(exc, operation, key)

    def _raise_translated(self, exc: Exception, operation: str, key: str | None) -> NoReturn:
        text = scrub(str(exc))
        scrub_in_place(exc)  # the cause stays inspectable, without anything secret
        status_match = _STATUS_RE.search(text)
        status = int(status_match.group(1)) if status_match else None
        code_match = _S3_CODE_RE.search(text)
        s3_code = code_match.group(1) if code_match else None
        details: dict[str, Any] = {
            **self._place(operation, key),
            "status": status,
            "s3_code": s3_code,
            "cause": summary(text),
        }
        uri, endpoint = details["uri"], details["endpoint"]
        if s3_code == "NoSuchBucket":
            raise StorageIOError(
                f"{operation}: bucket {self.bucket!r} does not exist at {endpoint}: create "
                f"it first (e.g. `aws s3 mb s3://{self.bucket}`, or your provider's console; "
                "docs/backends.md shows a local S3 server), or check --blobs",
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
