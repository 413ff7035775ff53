"""Redaction: the literal pre-checks that skip regexes never change what gets redacted."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.errors import ValidationError
from strongroom.services import DEFAULT_REDACT_PATTERNS, Redactor
from strongroom.services.redaction import REDACTED

FRAGMENTS = [
    "AKIAABCDEFGHIJKLMNOP",
    "Bearer abcdefgh12345678",
    "BEARER zzzzzzzzzz",
    "password=hunter2",
    "PassWd: x",
    "api-key=k1",
    "APIKEY:k2",
    "token = t",
    "sk-abcdefghijklmnop1234",
    "ghp_abcdefghijklmnopqrstuvwxyz",
    "postgresql://bob:s3cr3t@db/x",
    "HTTPS://u:p@host",
    "plain words",
    "é ü 中文",
    " ",
    "\n",
]


def naive(text: str) -> str:
    for pattern in DEFAULT_REDACT_PATTERNS:
        text = re.sub(pattern, REDACTED, text)
    return text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=20)), max_size=8))
def test_pre_checks_redact_exactly_what_the_patterns_match(parts: list[str]) -> None:
    text = "".join(parts)
    assert Redactor().text(text) == naive(text)


def test_nested_data_is_redacted_keys_included() -> None:
    redacted = Redactor().value({"token=abc": ["password=x", {"k": "sk-abcdefghijklmnop1234"}]})
    assert redacted == {REDACTED: [REDACTED, {"k": REDACTED}]}


def test_custom_patterns_always_run() -> None:
    assert Redactor([r"\d{4}-\d{4}"]).text("card 1234-5678 ok") == f"card {REDACTED} ok"


def test_an_invalid_pattern_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        Redactor(["(unclosed"])


@pytest.mark.parametrize(
    "key", ["password", "DB_PASSWORD", "api_key", "apiKey", "access-token", "aws.secret", "dsn"]
)
def test_a_value_under_a_credential_key_is_redacted_whatever_it_looks_like(key: str) -> None:
    assert Redactor().value({key: "opaque-42", "n": 1}) == {key: REDACTED, "n": 1}
    assert Redactor().value({"outer": [{key: {"nested": "x"}}]}) == {"outer": [{key: REDACTED}]}


@pytest.mark.parametrize("key", ["tokens", "password_policy", "secretary", "author", "keys"])
def test_keys_that_only_contain_a_credential_word_keep_their_values(key: str) -> None:
    assert Redactor().value({key: 412}) == {key: 412}


def test_the_credential_key_rule_can_be_switched_off() -> None:
    assert Redactor(secret_keys=None).value({"password": "p"}) == {"password": "p"}
