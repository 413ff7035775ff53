"""S3 blob store (Amazon S3 and S3-compatible stores: MinIO, Ceph RGW, R2...) on obstore.

Layout: ``<prefix>/sha256/ab/cd/<hex>``, the same as the local directory store, plus staging
objects under ``<prefix>/tmp/``. Blobs are hashed as they stream in and out: a digest mismatch
never publishes a blob (writing) and raises `IntegrityError` (reading).

Credentials come only from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``) or obstore's default chain (web identity, ECS/EKS, instance profile).
They are never taken from a URL, and nothing this package builds (repr, locations, errors)
contains them: errors carry bucket, key and endpoint, and the driver's own text is scrubbed of
anything credential-like before it is chained as the cause.

Modules: ``config`` (defaults and limits, the ``s3://`` URL, checks of every setting),
``errors`` (every error the store raises; the one place driver errors are translated and
scrubbed), ``base`` (constructor and shared helpers), ``upload`` (the write paths: conditional
PutObject, multipart, staging and copy), ``multipart`` (listing and aborting the incomplete
uploads killed writers leave, through botocore, for GC) and ``store`` (`S3BlobStore`, the port
methods).
"""

from __future__ import annotations

from strongroom.adapters._s3.config import (
    COPY_OBJECT_LIMIT,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_PART_SIZE,
    DEFAULT_PUT_MANY_CONCURRENCY,
    DEFAULT_STALE_STAGING_AFTER,
)
from strongroom.adapters._s3.errors import scrub as _scrub  # tests/test_blobs_s3.py
from strongroom.adapters._s3.store import S3BlobStore

__all__ = [
    "COPY_OBJECT_LIMIT",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_PART_SIZE",
    "DEFAULT_PUT_MANY_CONCURRENCY",
    "DEFAULT_STALE_STAGING_AFTER",
    "S3BlobStore",
    "_scrub",
]
