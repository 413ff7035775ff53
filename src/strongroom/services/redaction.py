"""Redaction applied to log lines before anything is stored: regex patterns replace secrets
with ``[REDACTED]`` in messages and in every string inside ``data`` (keys included)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from strongroom.errors import ValidationError

__all__ = ["DEFAULT_REDACT_PATTERNS", "Redactor"]

REDACTED = "[REDACTED]"

# Conservative defaults: credentials that commonly leak into pipeline logs. Each comes with
# lowercase literals one of which must occur for it to match: a cheap `in` test skips the
# regex for the vast majority of strings (logging is a hot path).
_DEFAULTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"AKIA[0-9A-Z]{16}", ("akia",)),  # AWS access key id
    (r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}", ("bearer",)),  # HTTP bearer tokens
    (
        r"(?i)\b(password|passwd|secret|api[_-]?key|token)\s*[=:]\s*[^\s,;&]+",
        ("pass", "secret", "api", "token"),
    ),
    (r"sk-[A-Za-z0-9_-]{16,}", ("sk-",)),  # common API-key shape
    (r"gh[pousr]_[A-Za-z0-9]{20,}", ("gh",)),  # GitHub tokens
    (r"(?i)(postgres(?:ql)?|mysql|s3|https?)://[^\s:/@]+:[^\s@/]+@", ("://",)),  # URL creds
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


class Redactor:
    def __init__(
        self,
        patterns: Iterable[str] = DEFAULT_REDACT_PATTERNS,
        *,
        secret_keys: str | None = DEFAULT_SECRET_KEY_PATTERN,
    ) -> None:
        """``patterns`` are searched in every string; a ``data`` key matching ``secret_keys``
        (None: no such rule) has its whole value replaced by ``[REDACTED]``."""
        try:
            self._secret_keys = re.compile(secret_keys) if secret_keys is not None else None
        except re.error as exc:
            raise ValidationError(
                f"invalid secret key pattern {secret_keys!r}: {exc}",
                operation="redaction",
                reason="bad_pattern",
            ) from exc
        compiled: list[tuple[re.Pattern[str], tuple[str, ...] | None]] = []
        for pattern in patterns:
            try:
                compiled.append((re.compile(pattern), _HINTS.get(pattern)))
            except re.error as exc:
                raise ValidationError(
                    f"invalid redaction pattern {pattern!r}: {exc}",
                    operation="redaction",
                    reason="bad_pattern",
                ) from exc
        self._patterns = tuple(compiled)
        # When every pattern has hints, one case-insensitive search for any hint rules out
        # most strings at once (a single C-level scan instead of a loop over the patterns).
        hints = [hint for _, pattern_hints in compiled for hint in pattern_hints or ()]
        self._prefilter: re.Pattern[str] | None = (
            re.compile("|".join(map(re.escape, hints)), re.IGNORECASE)
            if compiled and all(pattern_hints for _, pattern_hints in compiled)
            else None
        )

    def text(self, value: str) -> str:
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
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            secret_keys = self._secret_keys
            return {
                self.text(str(k)): REDACTED
                if secret_keys is not None and v is not None and secret_keys.match(str(k))
                else self.value(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value
