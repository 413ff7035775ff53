"""Identifiers and safe names: UUIDv7 ids, SHA-256 digests, and the name rules that keep
every id and name usable as a path segment without escaping its directory.

Names are deliberately ASCII-only: that rejects path traversal (``../``, ``%2e%2e``, NUL,
absolute paths) and Unicode look-alikes (fullwidth dots, division slash) in one rule.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated

import uuid6
from pydantic import AfterValidator, BeforeValidator

__all__ = [
    "MAX_KEY_CHARS",
    "ActorName",
    "Digest",
    "EntityId",
    "FileName",
    "SafeName",
    "Tag",
    "check_digest",
    "check_entity_id",
    "check_file_name",
    "check_key",
    "check_name",
    "key_run_id",
    "new_id",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ACTOR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:=/-]{0,127}$")
_FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ ()+=,@-]{0,254}$")
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def new_id() -> str:
    """A new time-ordered UUIDv7 as canonical lowercase text."""
    return str(uuid6.uuid7())


_KEY_NAMESPACE = uuid.UUID("6f1d3c2a-3b7e-5c4d-9a8b-2e1f0d9c8b7a")
MAX_KEY_CHARS = 200
"""The longest idempotency key (`check_key`)."""


def check_key(value: str) -> str:
    """An idempotency key: 1-200 printable characters (ValueError otherwise)."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_KEY_CHARS:
        raise ValueError(f"an idempotency key is 1-{MAX_KEY_CHARS} characters")
    if not value.isprintable():
        raise ValueError("an idempotency key holds only printable characters")
    return value


def key_run_id(scope: str, key: str, attempt: int = 0) -> str:
    """The run id of attempt ``attempt`` of idempotency key ``key`` in ``scope`` (a project
    for `PipelineRun`, a playbook for the orchestrator): a name-based UUID (v5), the same
    in every process on every machine, so a restarted caller finds its run from the key."""
    return str(uuid.uuid5(_KEY_NAMESPACE, f"{scope}\0{key}\0{attempt}"))


def check_entity_id(value: str) -> str:
    """Accept a UUID (any version, normalised to lowercase canonical form) or a ULID."""
    if not isinstance(value, str):
        raise ValueError("id must be a string")
    if _ULID_RE.fullmatch(value):
        return value
    if len(value) != 36:
        raise ValueError("id must be a UUID (36 characters) or a ULID")
    try:
        parsed = uuid.UUID(value)
    except ValueError as exc:
        raise ValueError("id must be a UUID or a ULID") from exc
    canonical = str(parsed)
    if canonical != value.lower():
        raise ValueError("id must be a UUID in canonical hyphenated form")
    return canonical


def _check_pattern(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    if not pattern.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{what} must be 1-128 ASCII letters, digits, '.', '_' or '-', start with a letter "
            "or digit, and contain no '..'"
        )
    return value


def check_name(value: str) -> str:
    return _check_pattern(value, _NAME_RE, "name")


def check_actor(value: str) -> str:
    return _check_pattern(value, _ACTOR_RE, "actor")


def check_tag(value: str) -> str:
    return _check_pattern(value, _TAG_RE, "tag")


def check_file_name(value: str) -> str:
    """A file name safe to use as one path segment anywhere (export bundles, downloads)."""
    if not isinstance(value, str):
        raise ValueError("file name must be a string")
    if not _FILE_NAME_RE.fullmatch(value) or ".." in value:
        raise ValueError(
            "file name must be 1-255 ASCII letters, digits, spaces or ._()+=,@- , start with a "
            "letter or digit, and contain no '..' or path separators"
        )
    return value


def check_digest(value: str) -> str:
    """Accept ``<hex>`` or ``sha256:<hex>``; return the bare lowercase hex."""
    if not isinstance(value, str):
        raise ValueError("digest must be a string")
    bare = value[len("sha256:") :] if value.startswith("sha256:") else value
    if not _DIGEST_RE.fullmatch(bare):
        raise ValueError(
            "digest must be 64 lowercase hex characters (optionally 'sha256:'-prefixed)"
        )
    return bare


EntityId = Annotated[str, AfterValidator(check_entity_id)]
SafeName = Annotated[str, AfterValidator(check_name)]
ActorName = Annotated[str, AfterValidator(check_actor)]
Tag = Annotated[str, AfterValidator(check_tag)]
FileName = Annotated[str, AfterValidator(check_file_name)]
Digest = Annotated[str, BeforeValidator(check_digest)]
