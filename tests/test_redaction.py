"""Redaction and scrubbing (`strongroom.secrets`): the literal pre-checks that skip regexes
never change what gets redacted, and every way strongroom hides a secret (log redaction, URLs,
SQL and S3 driver messages, the CLI's internal errors) uses the one marker."""

from __future__ import annotations

import re

import pytest
import sqlalchemy.exc as sa_exc
import typer
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom import services
from strongroom.adapters import safe_url
from strongroom.adapters._s3 import _scrub as s3_scrub
from strongroom.adapters._sql import map_db_errors
from strongroom.cli._context import CliState, reported_errors
from strongroom.errors import StorageIOError, ValidationError
from strongroom.secrets import DEFAULT_REDACT_PATTERNS, REDACTED, Redactor, scrub_text

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


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.one_of(
                st.sampled_from([*FRAGMENTS, "password", "tokens", "n"]), st.text(max_size=8)
            ),
            st.integers() | st.text(max_size=8),
            max_size=4,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_remembered_keys_redact_as_a_fresh_redactor_does(batches: list[dict[str, object]]) -> None:
    """A redactor remembers how it redacted each data key (log lines repeat them): every
    later dict must come out as a redactor that never saw a key before makes it."""
    shared = Redactor()
    for data in batches + batches:
        assert shared.value(data) == Redactor().value(data)


def test_keys_of_other_types_are_not_confused_with_remembered_ones() -> None:
    redactor = Redactor()
    assert redactor.value({1: "a"}) == {"1": "a"}
    assert redactor.value({True: "b"}) == {"True": "b"}
    long_secret = "password=" + "x" * 200  # longer than what is remembered: redacted each time
    assert redactor.value({long_secret: 1}) == {REDACTED: 1}
    assert redactor.value({long_secret: 1}) == {REDACTED: 1}


def test_the_credential_key_rule_can_be_switched_off() -> None:
    assert Redactor(secret_keys=None).value({"password": "p"}) == {"password": "p"}


def test_a_redactor_extended_with_more_patterns_keeps_its_own() -> None:
    base = Redactor([r"alpha-\d+"])
    more = base.extended([r"beta-\d+"])
    assert more.text("alpha-1 beta-2 gamma-3") == f"{REDACTED} {REDACTED} gamma-3"
    assert base.text("beta-2") == "beta-2"
    assert base.extended([r"beta-\d+"]) is more  # compiled once per set
    assert base.extended([r"alpha-\d+"]) is base  # nothing new


def test_the_public_services_names_are_the_secrets_modules() -> None:
    assert services.Redactor is Redactor
    assert services.DEFAULT_REDACT_PATTERNS is DEFAULT_REDACT_PATTERNS


# -- one marker everywhere -------------------------------------------------------------------

SECRET = "s3cr3t-Z9Q"


def test_url_and_message_scrubbing_use_the_one_marker() -> None:
    shown = {
        "url": safe_url(f"postgresql://app:{SECRET}@db/vault?sslpassword={SECRET}"),
        "userinfo": scrub_text(f"cannot reach postgresql://app:{SECRET}@db/vault"),
        "pair": scrub_text(f'connect failed: password="{SECRET}" host=db'),
        "xml": scrub_text(f"<Error><SignatureProvided>{SECRET}</SignatureProvided></Error>"),
        "param": scrub_text(f"GET /k?X-Amz-Signature={SECRET}&x=1"),
        "header": scrub_text(f"authorization: AWS4-HMAC-SHA256 Credential={SECRET}"),
        "known": scrub_text(f"echoed {SECRET} back", known_values=[SECRET]),
        "log": Redactor().text(f"token={SECRET}"),
    }
    for where, text in shown.items():
        assert SECRET not in text, where
        assert REDACTED in text, where
        assert "***" not in text, where
    assert shown["url"] == "postgresql://app:[REDACTED]@db/vault?sslpassword=[REDACTED]"
    assert shown["userinfo"] == "cannot reach postgresql://[REDACTED]@db/vault"
    assert shown["pair"] == "connect failed: password=[REDACTED] host=db"


def test_known_values_too_short_to_be_secrets_are_not_searched_for() -> None:
    assert scrub_text("a b c", known_values=["a", "", None]) == "a b c"


def test_a_scrubbed_text_stays_as_it_is() -> None:
    once = scrub_text(f"postgresql://u:{SECRET}@h password={SECRET} X-Amz-Signature={SECRET}")
    assert scrub_text(once) == once


def test_sql_driver_messages_are_scrubbed_with_the_one_marker() -> None:
    driver = Exception(f"connection to postgresql://app:{SECRET}@db failed: password={SECRET}")
    with pytest.raises(StorageIOError) as caught, map_db_errors("open", "postgresql"):
        raise sa_exc.OperationalError(None, None, driver)
    assert SECRET not in caught.value.message
    assert "postgresql://[REDACTED]@db" in caught.value.message
    assert "password=[REDACTED]" in caught.value.message


def test_s3_driver_text_is_scrubbed_with_the_one_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    scrubbed = s3_scrub(
        f"<AWSAccessKeyId>AKID</AWSAccessKeyId> key {SECRET}\n\nDebug source:\n{SECRET}"
    )
    assert scrubbed == f"<AWSAccessKeyId>{REDACTED}</AWSAccessKeyId> key {REDACTED}"


def test_the_clis_internal_errors_are_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit), reported_errors(CliState(json=True)):
        raise RuntimeError(f"driver said: postgresql://app:{SECRET}@db password={SECRET}")
    out = capsys.readouterr().out
    assert SECRET not in out
    assert "postgresql://[REDACTED]@db password=[REDACTED]" in out


# -- what a hostile message tries: each was a leak once ------------------------------------------

LEAKS = {
    "password with @ and /": f"connect postgresql://app:p@ss/{SECRET}@db/vault failed",
    "any scheme": f"redis://app:{SECRET}@cache:6379 refused",
    "python repr": f"kwargs={{'password': '{SECRET}'}}",
    "json": f'{{"api_key": "{SECRET}"}}',
    "pwd pair": f"dsn: host=db pwd={SECRET}",
    "token shape": f"auth failed for ghp_{'A1b2' * 6}",
    "aws key id": "echoed AKIAABCDEFGHIJKLMNOP",
}


@pytest.mark.parametrize("text", LEAKS.values(), ids=LEAKS.keys())
def test_both_tools_hide_what_either_knows(text: str) -> None:
    """Log redaction and message scrubbing hide the same shapes: a secret one of them knew
    and the other did not was a leak (tracebacks, run errors, tool output)."""
    for shown in (Redactor().text(text), scrub_text(text)):
        for secret in (SECRET, "AKIAABCDEFGHIJKLMNOP", "A1b2" * 6):
            assert secret not in shown, shown


def test_a_secret_at_the_cut_is_redacted_before_the_message_is_shortened() -> None:
    """Redact, then cut: a key cut in two at the limit would match no pattern."""
    from strongroom.pipeline._common import MAX_ERROR_MESSAGE, error_info

    message = "x" * (MAX_ERROR_MESSAGE - 30) + f" password={SECRET}{SECRET}"
    info = error_info(RuntimeError(message), Redactor())
    assert SECRET[:5] not in info.message
    assert len(info.message) <= MAX_ERROR_MESSAGE


def test_the_clis_internal_errors_hide_the_credential_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("PGPASSWORD", SECRET[::-1])
    with pytest.raises(typer.Exit), reported_errors(CliState(json=True)):
        raise RuntimeError(f"driver echoed {SECRET} and {SECRET[::-1]}")
    out = capsys.readouterr().out
    assert SECRET not in out
    assert SECRET[::-1] not in out
