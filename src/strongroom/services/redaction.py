"""Log redaction, kept importable here: it lives in `strongroom.secrets` (the one module that
knows what a secret looks like and the one ``[REDACTED]`` marker)."""

from __future__ import annotations

from strongroom.secrets import (
    DEFAULT_REDACT_PATTERNS,
    DEFAULT_SECRET_KEY_PATTERN,
    REDACTED,
    Redactor,
)

__all__ = ["DEFAULT_REDACT_PATTERNS", "DEFAULT_SECRET_KEY_PATTERN", "REDACTED", "Redactor"]
