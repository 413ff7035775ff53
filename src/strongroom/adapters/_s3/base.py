"""What the S3 store's write and read paths build on: the constructor (checked settings, the
obstore client, the store's `S3Errors`), where a blob is named in errors, and HEAD. Digests,
hashing and the blob errors are the port's (`strongroom.ports.blobs.BlobStore`)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import obstore as obs
from obstore.store import S3Store

from strongroom.adapters._s3.config import (
    CLIENT_DEFAULTS,
    COPY_OBJECT_LIMIT,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_PART_SIZE,
    DEFAULT_PUT_MANY_CONCURRENCY,
    DEFAULT_STALE_STAGING_AFTER,
    blob_key,
    check_bucket,
    check_prefix,
    check_sizes,
    resolve_endpoint,
    resolve_region,
)
from strongroom.adapters._s3.errors import S3Errors, scrub, scrub_in_place, summary
from strongroom.adapters._s3.multipart import UploadClient, seconds
from strongroom.errors import NotFound, ValidationError
from strongroom.ports.blobs import BlobStore

if TYPE_CHECKING:
    from obstore import ObjectMeta
    from obstore.store import ClientConfig, RetryConfig

__all__ = ["S3StoreBase"]


class S3StoreBase(BlobStore):
    """The state of an S3 blob store and the helpers its write and read paths share."""

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
        self.bucket = check_bucket(bucket)
        self.prefix = check_prefix(prefix)
        self.endpoint = resolve_endpoint(endpoint)
        self.region = resolve_region(region)
        if allow_http is None:
            allow_http = self.endpoint is not None and self.endpoint.startswith("http://")
        check_sizes(
            part_size=part_size,
            max_concurrency=max_concurrency,
            put_many_concurrency=put_many_concurrency,
            copy_limit=copy_limit,
        )
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.put_many_concurrency = put_many_concurrency
        self.stale_staging_after = stale_staging_after
        self.copy_limit = copy_limit
        self._err = S3Errors(
            backend=self.backend,
            bucket=self.bucket,
            prefix=self.prefix,
            endpoint=self.endpoint,
            region=self.region,
        )
        options: dict[str, Any] = dict(CLIENT_DEFAULTS)
        options["allow_http"] = allow_http
        options.update(client_options or {})
        # The requests obstore cannot make (multipart uploads for GC) follow the same retry
        # count and connect timeout.
        self._upload_client = UploadClient(
            bucket=self.bucket,
            prefix=self.prefix,
            endpoint=self.endpoint,
            region=self.region,
            errors=self._err,
            max_retries=int((retry_config or {}).get("max_retries", 4)),
            connect_timeout=seconds(options.get("connect_timeout"), 10.0),
        )
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
            scrub_in_place(exc)
            raise ValidationError(
                "invalid S3 configuration",
                operation="open_blobs",
                backend=self.backend,
                bucket=self.bucket,
                endpoint=self.endpoint,
                reason=summary(scrub(str(exc))),
            ) from exc
        self._background: set[asyncio.Task[None]] = set()
        # False once the store has answered that it cannot do If-None-Match on PutObject.
        self._conditional_put = True

    def _error_details(self, hexd: str) -> dict[str, Any]:
        """The port's blob errors name the key and its ``s3://`` URI."""
        key = blob_key(hexd)
        return {"path": key, "uri": self._err.uri(key)}

    async def _head(self, operation: str, key: str) -> ObjectMeta | None:
        """The object's metadata, or None when there is no such object."""
        try:
            with self._err.translated(operation, key):
                return await obs.head_async(self._store, key)
        except NotFound:
            return None

    async def _key_exists(self, operation: str, key: str) -> bool:
        return await self._head(operation, key) is not None
