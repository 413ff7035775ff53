"""Secrets: the one place that knows what a secret looks like and how it is hidden.

Everything strongroom hides is replaced by one marker, `REDACTED` (``[REDACTED]``), the one
stored log lines have always carried. Three tools, each for one kind of text:

- `Redactor`: configurable regex patterns (`DEFAULT_REDACT_PATTERNS` unless a vault is given
  others: ``Vault(redact_patterns=...)``, exposed as ``vault.redactor``), applied to log lines
  before they are hashed and stored, to a `PipelineRun`'s error records and to the execution
  lane's tool output (plus the sandbox policy's own patterns: `Redactor.extended`).
- `safe_url`: a vault or blob URL with its password and credential-looking query values
  hidden; every URL strongroom prints, stores or puts into an error goes through it.
- `scrub_text`: a driver's or an unexpected exception's message with URL user-info,
  ``password=``-like pairs, S3's signature XML elements, presigned-URL parameters and
  authentication headers, any known secret values (`env_secrets`), and everything the
  default `Redactor` hides (the SQL and S3 adapters' error mapping, the CLI's ``internal``
  errors and ``STRONGROOM_DEBUG`` tracebacks).

Standard library only (and `strongroom.errors`): every layer may use it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from strongroom.errors import ErrorInfo, ValidationError

__all__ = [
    "DEFAULT_REDACT_PATTERNS",
    "DEFAULT_SECRET_KEY_PATTERN",
    "MIN_KNOWN_VALUE",
    "REDACTED",
    "Redactor",
    "env_secrets",
    "safe_url",
    "scrub_text",
    "shown_url",
]

#: What replaces a secret, everywhere.
REDACTED = "[REDACTED]"

# -- Redactor: configurable patterns, for log lines and error records ------------------------

# Conservative defaults: credentials that commonly leak into pipeline logs. Each comes with
# lowercase literals one of which must occur for it to match: a cheap `in` test skips the
# regex for the vast majority of strings (logging is a hot path).
_DEFAULTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"AKIA[0-9A-Z]{16}", ("akia",)),  # AWS access key id
    (r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}", ("bearer",)),  # HTTP bearer tokens
    (  # key=value, key: value, and the quoted forms of reprs and JSON ('password': 'x')
        r"(?i)\b(password|passwd|pwd|secret|api[_-]?key|token)['\"]?\s*[=:]\s*['\"]?"
        r"(?!\[REDACTED\])[^\s,;&'\"]+",  # a value already hidden stays as it is
        ("pass", "pwd", "secret", "api", "token"),
    ),
    (r"sk-[A-Za-z0-9_-]{16,}", ("sk-",)),  # common API-key shape
    (r"gh[pousr]_[A-Za-z0-9]{20,}", ("gh",)),  # GitHub tokens
    # URL credentials, any scheme; the password may hold '@' or '/' (up to the last '@')
    (r"(?i)\b[a-z][a-z0-9+.-]*://[^\s:/@]+:\S*@", ("://",)),
)
DEFAULT_REDACT_PATTERNS: tuple[str, ...] = tuple(pattern for pattern, _ in _DEFAULTS)
_HINTS = dict(_DEFAULTS)

# A ``data`` key that names a credential (``password``, ``db_password``, ``api_key``,
# ``access-token``...) has its whole value redacted, whatever the value looks like: the
# patterns above only see ``key=value`` when both are in one string. Keys that merely contain
# such a word (``tokens``, ``password_policy``) are left alone.
DEFAULT_SECRET_KEY_PATTERN = (
    r"(?i)^(?:.*[_.-])?(?:password|passwd|pwd|secret|secret[_-]?key|api[_-]?key|apikey|token|"
    r"access[_-]?key|private[_-]?key|credentials?|auth|authorization|dsn)$"
)

_MAX_EXTENDED = 64  # distinct pattern sets a redactor keeps compiled extensions of
_MAX_KEYS = 4096  # data keys a redactor remembers the redaction of (cleared when full)
_MAX_KEY_CHARS = 128  # longer keys are redacted every time, never kept


def _compile(pattern: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValidationError(
            f"invalid {what} {pattern!r}: {exc}", operation="redaction", reason="bad_pattern"
        ) from exc


class Redactor:
    """Regex patterns searched in every string, each match replaced by `REDACTED`.

    A vault builds one from its ``redact_patterns`` (``vault.redactor``); everything that
    redacts on the vault's behalf uses that one."""

    def __init__(
        self,
        patterns: Iterable[str] = DEFAULT_REDACT_PATTERNS,
        *,
        secret_keys: str | None = DEFAULT_SECRET_KEY_PATTERN,
    ) -> None:
        """``patterns`` are searched in every string; a ``data`` key matching ``secret_keys``
        (None: no such rule) has its whole value replaced by ``[REDACTED]``. A pattern that
        does not compile is a `ValidationError` (reason ``bad_pattern``)."""
        self._secret_keys = (
            _compile(secret_keys, "secret key pattern") if secret_keys is not None else None
        )
        self._secret_keys_source = secret_keys
        sources = tuple(patterns)
        compiled = [(_compile(p, "redaction pattern"), _HINTS.get(p)) for p in sources]
        self.patterns: tuple[str, ...] = sources
        self._patterns = tuple(compiled)
        # When every pattern has hints, one case-insensitive search for any hint rules out
        # most strings at once (a single C-level scan instead of a loop over the patterns).
        hints = [hint for _, pattern_hints in compiled for hint in pattern_hints or ()]
        self._prefilter: re.Pattern[str] | None = (
            re.compile("|".join(map(re.escape, hints)), re.IGNORECASE)
            if compiled and all(pattern_hints for _, pattern_hints in compiled)
            else None
        )
        self._extended: dict[tuple[str, ...], Redactor] = {}
        self._keys: dict[str, tuple[str, bool]] = {}

    def extended(self, patterns: Iterable[str]) -> Redactor:
        """This redactor's patterns plus ``patterns`` (a sandbox policy's own), compiled once
        per distinct set and kept (the same set gives back the same redactor)."""
        extra = tuple(p for p in patterns if p not in self.patterns)
        if not extra:
            return self
        found = self._extended.get(extra)
        if found is None:
            if len(self._extended) >= _MAX_EXTENDED:
                self._extended.clear()
            found = Redactor([*self.patterns, *extra], secret_keys=self._secret_keys_source)
            self._extended[extra] = found
        return found

    def text(self, value: str) -> str:
        """``value`` with every match of every pattern replaced by `REDACTED`."""
        if self._prefilter is not None and self._prefilter.search(value) is None:
            return value
        lowered = value.lower()
        for pattern, hints in self._patterns:
            if hints is not None and not any(hint in lowered for hint in hints):
                continue
            if pattern.search(value):
                value = pattern.sub(REDACTED, value)
        return value

    def value(self, value: Any) -> Any:
        """Every string inside ``value`` (dict keys included) redacted; a dict value under a
        key naming a credential replaced whole. Tuples come back as lists (JSON's shape)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                name, secret = self._key(k)
                out[name] = REDACTED if secret and v is not None else self.value(v)
            return out
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def _key(self, key: Any) -> tuple[str, bool]:
        """A data key redacted, and whether it names a credential. Log lines repeat the same
        few keys, so string keys are remembered (at most `_MAX_KEYS`), which spares the log
        hot path most of its pattern scans."""
        cacheable = type(key) is str and len(key) <= _MAX_KEY_CHARS
        known = self._keys.get(key) if cacheable else None
        if known is not None:
            return known
        text = str(key)
        found = (
            self.text(text),
            self._secret_keys is not None and self._secret_keys.match(text) is not None,
        )
        if cacheable:
            if len(self._keys) >= _MAX_KEYS:
                self._keys.clear()
            self._keys[key] = found
        return found

    def error(self, info: ErrorInfo) -> ErrorInfo:
        """``info`` with its message and details redacted (what an error record stores)."""
        return info.model_copy(
            update={"message": self.text(info.message), "details": self.value(info.details)}
        )


_DEFAULT_REDACTOR = Redactor()


# -- safe_url: URLs strongroom shows ----------------------------------------------------------

# Query keys whose values are credentials (libpq's own, and the usual cloud ones).
_SECRET_QUERY_KEYS = re.compile(
    r"(pass|secret|token|key|credential|signature|sslcert|sslkey|auth)", re.IGNORECASE
)
# Stands for the marker while a URL is parsed: ``user:[REDACTED]@host`` (an already safe URL)
# would otherwise read as a malformed IPv6 host.
_MARK = "\ue000"


def safe_url(url: str) -> str:
    """``url`` with any password and secret-looking query values replaced by `REDACTED`.

    Paths without a scheme (a vault directory) come back unchanged, and so does a URL with
    nothing to hide; a safe URL stays as it is (``safe_url(safe_url(u)) == safe_url(u)``); a
    string that does not parse as a URL at all comes back as `REDACTED` rather than risk
    echoing a secret.
    """
    probe = url.replace(REDACTED, _MARK)
    try:
        parts = urlsplit(probe)
    except ValueError:
        return REDACTED
    if not parts.scheme or len(parts.scheme) == 1:  # a path (or a Windows drive letter)
        return url
    netloc = parts.netloc
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if "@" not in netloc and not any(_SECRET_QUERY_KEYS.search(k) for k, _ in pairs):
        return url  # nothing to hide: keep the URL exactly as given
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{_MARK}@{hostport}" if has_password else f"{user}@{hostport}"
    query = parts.query
    if query:
        query = urlencode(
            [
                (
                    k.replace(_MARK, REDACTED),
                    REDACTED if _SECRET_QUERY_KEYS.search(k) else v.replace(_MARK, REDACTED),
                )
                for k, v in pairs
            ],
            safe="/:*[]",
        )
    shown = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return shown.replace(_MARK, REDACTED)


# -- scrub_text: driver and exception messages -----------------------------------------------

# What could carry a credential in a driver's error text. S3's SignatureDoesNotMatch body
# echoes the access key id and the canonical request (which holds x-amz-security-token);
# presigned URLs carry X-Amz-Credential/Signature/Security-Token; libpq and SQLAlchemy echo
# connection strings (user-info, ``password=`` pairs).
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
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)\S*@")  # to the last '@'
_SECRET_PAIRS = re.compile(
    r"(?P<key>password|passwd|pwd|secret|token|sslpassword|access_key|secret_key)"
    r"(?P<sep>\s*[=:]\s*)(?:'[^']*'|\"[^\"]*\"|[^\s,;&]+)",
    re.IGNORECASE,
)
#: Known secret values shorter than this are not searched for (they would hide ordinary text).
MIN_KNOWN_VALUE = 4


def scrub_text(text: str, known_values: Iterable[str | None] = ()) -> str:
    """``text`` (a driver's or an exception's message) with anything credential-like replaced
    by `REDACTED`: each of ``known_values`` (secrets in hand, such as the AWS variables';
    empty ones and ones shorter than `MIN_KNOWN_VALUE` are skipped), S3's signature XML
    elements, presigned-URL parameters, ``Authorization`` and ``x-amz-*`` token headers, URL
    user-info (``scheme://[REDACTED]@host``) and ``password=``/``token:``-like pairs."""
    for value in known_values:
        if value and len(value) >= MIN_KNOWN_VALUE:
            text = text.replace(value, REDACTED)
    text = _SECRET_XML.sub(lambda m: f"<{m.group(1)}>{REDACTED}</{m.group(1)}>", text)
    text = _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    text = _SECRET_HEADERS.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    text = _SECRET_PAIRS.sub(lambda m: f"{m.group('key')}{m.group('sep')}{REDACTED}", text)
    return _DEFAULT_REDACTOR.text(text)  # and whatever a log line would lose (tokens, keys)


# Environment variables whose values are credentials strongroom may be handed.
_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "PGPASSWORD",
)


def env_secrets() -> list[str | None]:
    """The values of the credential environment variables (AWS, ``PGPASSWORD``): the known
    values `scrub_text` hides wherever a driver or a traceback echoes them."""
    return [os.environ.get(name) for name in _SECRET_ENV]


def shown_url(url: str) -> tuple[str, tuple[str, ...]]:
    """(``url`` fit to print, the secrets to scrub from messages about it): everything between
    ``scheme://`` and the *last* ``@`` is user-info and is replaced by `REDACTED` (a password
    may hold ``/``, ``?``, ``#`` or ``@``, which defeat URL parsers), then `safe_url` hides
    secret-looking query values. The secrets are the user-info whole and its user and
    password apart (none when there is no user-info), for `scrub_text`'s ``known_values``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return safe_url(url), ()
    userinfo, _, host = rest.rpartition("@")
    return safe_url(f"{scheme}://{REDACTED}@{host}"), (userinfo, *userinfo.split(":", 1))
