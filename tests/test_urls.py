"""Vault URLs: which stores they choose, and that no secret in them survives into output."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.adapters import (
    LocalBlobStore,
    MemoryBlobStore,
    MemoryMetadataStore,
    SqliteMetadataStore,
    open_stores,
    safe_url,
)
from strongroom.errors import NotFound, ValidationError
from strongroom.secrets import REDACTED, scrub_text, shown_url

SECRET = "s3cr3t-URL-Q7X"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("./.strongroom", "./.strongroom"),
        ("/var/lib/vault", "/var/lib/vault"),
        ("memory://", "memory://"),
        ("postgresql://app@db:5432/vault", "postgresql://app@db:5432/vault"),
        (
            f"postgresql://app:{SECRET}@db:5432/vault",
            "postgresql://app:[REDACTED]@db:5432/vault",
        ),
        (f"postgresql://app:{SECRET}@db/vault?sslmode=require", None),
        (f"postgresql://db/vault?password={SECRET}&application_name=x", None),
        (f"s3://bucket/prefix?endpoint=http://h:9000&secret_access_key={SECRET}", None),
        (f"s3://bucket/prefix?token={SECRET}", None),
    ],
)
def test_safe_url_removes_passwords_and_secret_query_values(url: str, expected: str | None) -> None:
    shown = safe_url(url)
    assert SECRET not in shown
    if expected is not None:
        assert shown == expected


def test_safe_url_keeps_harmless_query_values() -> None:
    shown = safe_url("s3://b/p?endpoint=http://127.0.0.1:9000&region=eu-west-1")
    assert "endpoint=http://127.0.0.1:9000" in shown
    assert "region=eu-west-1" in shown


@given(
    user=st.text(alphabet="abcdefghij_", min_size=1, max_size=8),
    password=st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="@/?#"),
        min_size=6,
        max_size=30,
    ),
)
def test_safe_url_never_shows_the_password(user: str, password: str) -> None:
    url = f"postgresql://{user}:{password}@host:5432/db"
    shown = safe_url(url)
    assert f":{password}@" not in shown
    # Either the password is masked, or the URL does not parse and nothing of it is shown.
    assert shown == REDACTED or shown.endswith(f"{user}:{REDACTED}@host:5432/db")
    assert safe_url(shown) == shown  # a safe URL stays as it is


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"postgresql://app:{SECRET}@db:5432/vault?sslpassword={SECRET}&application_name=x",
            "postgresql://app:[REDACTED]@db:5432/vault?sslpassword=[REDACTED]&application_name=x",
        ),
        (
            f"postgresql://app:{SECRET}@[::1]:5432/vault",
            "postgresql://app:[REDACTED]@[::1]:5432/vault",
        ),
        (
            f"s3://bucket/prefix?endpoint=http://h:9000&secret_access_key={SECRET}",
            "s3://bucket/prefix?endpoint=http://h:9000&secret_access_key=[REDACTED]",
        ),
    ],
)
def test_safe_url_of_a_safe_url_changes_nothing(url: str, expected: str) -> None:
    """``vault.url`` is already safe and is shown through `safe_url` again (reports): the
    marker in the user-info must not read as an IPv6 host and hide the whole URL."""
    assert safe_url(url) == expected
    assert safe_url(expected) == expected


def test_directory_url_chooses_the_embedded_pair(tmp_path: Path) -> None:
    metadata, blobs = open_stores(str(tmp_path / "v"))
    assert isinstance(metadata, SqliteMetadataStore)
    assert metadata.path == tmp_path / "v" / "vault.db"
    assert isinstance(blobs, LocalBlobStore)
    assert blobs.root == tmp_path / "v" / "blobs"


def test_blobs_url_moves_the_blobs_of_an_embedded_vault(tmp_path: Path) -> None:
    metadata, blobs = open_stores(str(tmp_path / "v"), blobs_url=f"file://{tmp_path}/elsewhere")
    assert isinstance(metadata, SqliteMetadataStore)
    assert isinstance(blobs, LocalBlobStore)
    assert blobs.root == tmp_path / "elsewhere"
    _, memory_blobs = open_stores(str(tmp_path / "v"), blobs_url="memory://")
    assert isinstance(memory_blobs, MemoryBlobStore)


def test_memory_url_chooses_memory_stores() -> None:
    metadata, blobs = open_stores("memory://")
    assert isinstance(metadata, MemoryMetadataStore)
    assert isinstance(blobs, MemoryBlobStore)


def test_postgresql_without_a_blob_store_is_refused_without_the_password() -> None:
    with pytest.raises(ValidationError) as caught:
        open_stores(f"postgresql://app:{SECRET}@127.0.0.1:5432/vault")
    error = caught.value
    assert error.details["reason"] == "blobs_url_required"
    assert "--blobs" in error.message
    assert SECRET not in str(error.to_info().model_dump())


@pytest.mark.parametrize(
    "url", [f"mysql://root:{SECRET}@localhost/x", f"http://u:{SECRET}@h/", "ftp://h/p"]
)
def test_unsupported_vault_scheme_is_a_validation_error_without_secrets(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        open_stores(url)
    assert caught.value.details["reason"] == "unsupported_scheme"
    assert SECRET not in str(caught.value.to_info().model_dump())


def test_unsupported_blob_scheme_is_a_validation_error_without_secrets(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        open_stores(str(tmp_path / "v"), blobs_url=f"gs://u:{SECRET}@bucket/p")
    assert caught.value.details["reason"] == "unsupported_scheme"
    assert SECRET not in str(caught.value.to_info().model_dump())


@pytest.mark.parametrize("url", ["", "a\x00b"])
def test_empty_or_nul_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        open_stores(url)


def test_a_missing_embedded_vault_is_not_created_when_create_is_false(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        open_stores(str(tmp_path / "nope"), create=False)
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:pa/ss@mq:5672//", "amqp://[REDACTED]@mq:5672//"),
        ("amqp://u:p#q?r@mq/vhost", "amqp://[REDACTED]@mq/vhost"),
        ("amqp://u:p@ss@mq/", "amqp://[REDACTED]@mq/"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_shown_url_hides_any_user_info_a_parser_would_misread(url: str, shown: str) -> None:
    printed, secrets = shown_url(url)
    assert printed == shown
    if "@" in url:
        secret = url.split("://", 1)[1].rpartition("@")[0]
        password = secret.split(":", 1)[1]
        assert secrets[0] == secret
        assert password not in printed
        scrubbed = scrub_text(f"could not connect to {url} (password {password})", secrets)
        assert secret not in scrubbed
        assert password not in scrubbed
    else:
        assert secrets == ()
