"""Vault URLs without their secrets.

A PostgreSQL URL may carry a password (``postgresql://user:pw@host/db``) and any URL may carry
credentials in its query (``?password=``, ``?sslpassword=``, ``?secret=``...). Whatever strongroom
prints, stores or puts into an error goes through `safe_url` first, so a secret given in a URL
never reaches a record, a log line, an error or ``--json`` output.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["REDACTED", "safe_url"]

REDACTED = "***"

# Query keys whose values are credentials (libpq's own, and the usual cloud ones).
_SECRET_KEYS = re.compile(
    r"(pass|secret|token|key|credential|signature|sslcert|sslkey|auth)", re.IGNORECASE
)


def safe_url(url: str) -> str:
    """``url`` with any password and secret-looking query values replaced by ``***``.

    Paths without a scheme (a vault directory) come back unchanged; a string that does not
    parse as a URL at all comes back as ``***`` rather than risk echoing a secret.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if not parts.scheme or len(parts.scheme) == 1:  # a path (or a Windows drive letter)
        return url
    netloc = parts.netloc
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if "@" not in netloc and not any(_SECRET_KEYS.search(k) for k, _ in pairs):
        return url  # nothing to hide: keep the URL exactly as given
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{hostport}" if has_password else f"{user}@{hostport}"
    query = parts.query
    if query:
        query = urlencode(
            [(k, REDACTED if _SECRET_KEYS.search(k) else v) for k, v in pairs], safe="/:*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
