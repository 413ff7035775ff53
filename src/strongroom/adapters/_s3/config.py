"""Configuration of the S3 blob store: defaults, S3's limits, the object layout, the ``s3://``
URL, and the checks every setting passes before obstore sees it (obstore panics on some
malformed endpoints at request time, so they are refused here).

Credentials are never configuration: a URL or endpoint that carries one is refused, and they
come from the environment (``AWS_*``) or obstore's default chain only.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from strongroom.errors import ValidationError
from strongroom.secrets import safe_url

__all__ = [
    "CLIENT_DEFAULTS",
    "COPY_OBJECT_LIMIT",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_PART_SIZE",
    "DEFAULT_PUT_MANY_CONCURRENCY",
    "DEFAULT_STALE_STAGING_AFTER",
    "MAX_OBJECT_SIZE",
    "MAX_PARTS",
    "TRUE_WORDS",
    "MiB",
    "blob_key",
    "check_bucket",
    "check_prefix",
    "check_sizes",
    "digest_of_key",
    "is_staging_key",
    "parse_url",
    "resolve_endpoint",
    "resolve_region",
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

MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * 1024 * 1024 * MiB  # 5 TiB

CLIENT_DEFAULTS: dict[str, str] = {
    "connect_timeout": "10s",
    # reqwest's `timeout` bounds a whole request, body included: obstore's 30 s default would
    # cut off any GET stream that takes longer (a large blob, a slow consumer). A stalled
    # connection is caught by read_timeout instead.
    "timeout": "6h",
    "read_timeout": "120s",
}

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9._=+@,-]{1,255}")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})

_FALSE = frozenset({"0", "false", "no", "off"})
_URL_KEYS = ("endpoint", "region", "allow_http", "max_retries", "connect_timeout", "timeout")


def blob_key(hexd: str) -> str:
    """The key of a blob below the store's prefix: ``sha256/ab/cd/<hex>`` (staging objects
    live under ``tmp/``)."""
    return f"sha256/{hexd[0:2]}/{hexd[2:4]}/{hexd}"


_DIGEST_KEY_RE = re.compile(r"sha256/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})")
_STAGING_KEY_RE = re.compile(r"tmp/[A-Za-z0-9._-]{1,200}")


def digest_of_key(key: str) -> str | None:
    """The digest a key of the layout names (``sha256/ab/cd/<hex>``, its folders agreeing with
    the digest), None for any other key."""
    match = _DIGEST_KEY_RE.fullmatch(key)
    if match is None or match.group(3)[0:4] != match.group(1) + match.group(2):
        return None
    return match.group(3)


def is_staging_key(key: str) -> bool:
    """A staging object's key, ``tmp/<name>``."""
    return _STAGING_KEY_RE.fullmatch(key) is not None


def _invalid(message: str, reason: str | None = None, **details: Any) -> ValidationError:
    return ValidationError(message, operation="open_blobs", backend="s3", reason=reason, **details)


def _url_error(message: str, reason: str, url: str | None = None) -> ValidationError:
    return _invalid(message, reason, url=safe_url(url) if url is not None else None)


# -- the s3:// URL ------------------------------------------------------------------------------


def parse_url(url: str, kwargs: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(bucket, prefix, constructor keyword arguments) of an ``s3://`` URL; ``kwargs`` (the
    caller's own constructor arguments) win over the URL's options."""
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
                "credentials are not accepted in an s3:// URL: use the AWS_* environment variables"
                if secretish
                else f"unknown s3:// URL option {shown!r}: use " + ", ".join(_URL_KEYS),
                "credentials_in_url" if secretish else "unknown_option",
                None if secretish else url,
            )
        if key in options:
            raise _url_error(f"s3:// URL option {key!r} given twice", "bad_url", url)
        options[key] = value
    kwargs = dict(kwargs)
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
        if flag not in TRUE_WORDS | _FALSE:
            raise _url_error("s3:// URL option allow_http takes true or false", "bad_option")
        allow_http = flag in TRUE_WORDS
    kwargs.setdefault("endpoint", options.get("endpoint") or None)
    kwargs.setdefault("region", options.get("region") or None)
    kwargs.setdefault("allow_http", allow_http)
    kwargs["client_options"] = client or None
    kwargs["retry_config"] = retry or None
    return unquote(parts.netloc), unquote(parts.path), kwargs


# -- settings -----------------------------------------------------------------------------------


def check_bucket(bucket: str) -> str:
    if not isinstance(bucket, str) or not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise _invalid(
            "S3 bucket names are 3-63 lowercase letters, digits, dots and dashes",
            "bad_bucket",
            bucket=repr(bucket)[:80],
        )
    return bucket


def check_prefix(prefix: str) -> str:
    text = prefix.strip("/")
    if not text:
        return ""
    segments = text.split("/")
    if len(text) > 512 or not all(
        _SEGMENT_RE.fullmatch(s) and s not in (".", "..") for s in segments
    ):
        raise _invalid(
            "S3 prefix segments are ASCII letters, digits and ._=+@,- (no empty, '.' or '..')",
            "bad_prefix",
            prefix=repr(prefix)[:120],
        )
    return "/".join(segments)


def resolve_endpoint(endpoint: str | None) -> str | None:
    """``endpoint``, else ``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT``, checked; None for AWS."""
    endpoint = (
        endpoint or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT") or None
    )
    return _check_endpoint(endpoint) if endpoint is not None else None


def _check_endpoint(endpoint: str) -> str:
    """An http(s) origin without credentials, query or fragment."""
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        parts = None
    if parts is not None and (parts.username is not None or "@" in parts.netloc):
        raise _invalid(
            "credentials are not accepted in the S3 endpoint URL: use the AWS_* environment "
            "variables",
            "credentials_in_url",
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
        raise _invalid(
            "the S3 endpoint must be an http:// or https:// URL such as http://127.0.0.1:9000",
            "bad_endpoint",
            endpoint=safe_url(endpoint)[:200],
        )
    return endpoint.rstrip("/")


def resolve_region(region: str | None) -> str | None:
    """``region``, else ``AWS_REGION`` or ``AWS_DEFAULT_REGION``, checked; None if unset."""
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region is not None and not re.fullmatch(r"[a-z0-9-]{1,64}", region):
        raise _invalid(
            "S3 region must be lowercase letters, digits and dashes",
            "bad_region",
            region=repr(region)[:80],
        )
    return region


def check_sizes(
    *, part_size: int, max_concurrency: int, put_many_concurrency: int, copy_limit: int
) -> None:
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise _invalid("S3 part_size must be between 5 MiB and 5 GiB", part_size=part_size)
    for name, value in (
        ("max_concurrency", max_concurrency),
        ("put_many_concurrency", put_many_concurrency),
        ("copy_limit", copy_limit),
    ):
        if value < 1:
            raise _invalid(f"S3 {name} must be positive")
