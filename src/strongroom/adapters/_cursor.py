"""The run index cursor shared by every records backend: opaque to callers, and the same
format everywhere so that a cursor means one thing whichever store produced it. Also the
capped-total rule (`capped_total`), the same on every backend.

A cursor is ``base64url(JSON [sort_value_iso, run_id])`` (unpadded): the keyset position
(sort column value, run_id) of the last run on the previous page. A metric sort
(``sort="metrics.KEY"``) uses ``base64url(JSON [metric_value, run_id])`` with the value as a
JSON number (`encode_metric_cursor`); either kind given to the other sort is a bad cursor.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import UTC, datetime

from strongroom.errors import ValidationError
from strongroom.ids import check_entity_id
from strongroom.models import RunStatus, RunStatusCounts

__all__ = [
    "capped_total",
    "decode_metric_cursor",
    "decode_run_cursor",
    "encode_metric_cursor",
    "encode_run_cursor",
    "status_counts_of",
]


def encode_run_cursor(sort_value: datetime, run_id: str) -> str:
    """Opaque keyset cursor: base64url (unpadded) of JSON ``[sort_value_iso, run_id]``."""
    # The fixed-width UTC form of the SQL timestamps (`_sql.tables.format_timestamp`), so a
    # cursor is the same string whichever time zone the run's datetime carried.
    sort_text = sort_value.astimezone(UTC).isoformat(timespec="microseconds")
    raw = json.dumps([sort_text, run_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("ascii")).rstrip(b"=").decode("ascii")


def decode_run_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of `encode_run_cursor`; anything else raises `ValidationError`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(part, str) for part in value)
        ):
            raise ValueError("cursor must encode [sort_value, run_id]")
        sort_value = datetime.fromisoformat(value[0])
        if sort_value.tzinfo is None:
            raise ValueError("cursor timestamp must be timezone-aware")
        run_id = check_entity_id(value[1])
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValidationError(
            "invalid run index cursor: pass back the next_cursor of a previous page",
            field="cursor",
            reason="bad_cursor",
        ) from exc
    return sort_value.astimezone(UTC), run_id


def encode_metric_cursor(value: float, run_id: str) -> str:
    """The cursor of a metric sort: base64url (unpadded) of JSON ``[value, run_id]``."""
    raw = json.dumps([float(value), run_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("ascii")).rstrip(b"=").decode("ascii")


def decode_metric_cursor(cursor: str) -> tuple[float, str]:
    """Inverse of `encode_metric_cursor`; anything else raises `ValidationError`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))
        if not (
            isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], int | float)
            and not isinstance(value[0], bool)
            and isinstance(value[1], str)
            and math.isfinite(value[0])
        ):
            raise ValueError("cursor must encode [metric_value, run_id]")
        run_id = check_entity_id(value[1])
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise ValidationError(
            "invalid run index cursor: pass back the next_cursor of a previous page "
            "of the same sort",
            field="cursor",
            reason="bad_cursor",
        ) from exc
    return float(value[0]), run_id


def status_counts_of(read: dict[str, int], count_limit: int | None) -> RunStatusCounts:
    """`RunStatusCounts` from per-status counts over at most ``count_limit + 1`` matches read
    (every backend's rule): more than ``count_limit`` read -> not exact."""
    total = sum(read.values())
    return RunStatusCounts(
        counts={RunStatus(status): n for status, n in sorted(read.items()) if n},
        total=total,
        exact=count_limit is None or total <= count_limit,
    )


def capped_total(counted: int, count_limit: int | None) -> tuple[int, bool]:
    """``(total, total_is_exact)`` of a page from a count that stopped after
    ``count_limit + 1`` matches (or an exact count when ``count_limit`` is None): more than
    ``count_limit`` matches -> ``(count_limit, False)``; exactly ``count_limit`` is exact."""
    if count_limit is not None and counted > count_limit:
        return count_limit, False
    return counted, True
