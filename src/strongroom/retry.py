"""The one bounded retry of strongroom: a backoff policy and the loop that applies it.

    policy = Backoff(attempts=8, base=0.01, cap=2.0)  # full jitter
    value = await retry_async(operation, policy, retryable=lambda exc: is_busy(exc))

`retry_async` runs ``operation`` up to ``policy.attempts`` times in all. An exception the
``retryable`` predicate refuses propagates at once, untouched; a retryable one is raised
unchanged by the last attempt. Between attempts it sleeps ``policy.delay(attempt)``:
exponential from ``base`` (doubling per failed attempt) up to ``cap``, and with full jitter a
uniform draw below that bound, so writers that collided do not collide again in lockstep.

Who uses it: the SQLite and PostgreSQL stores (a transaction found busy, or aborted by the
server), the services' compare-and-set appends (`Conflict` from a racing writer), the
registry's channel moves (a zero-delay re-read), and the execution lane's tool attempts
(their pause only: `Backoff.delay`). Standard library and `strongroom.errors` only.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from strongroom.errors import ValidationError

__all__ = ["Backoff", "retry_async"]

T = TypeVar("T")

#: Past this many doublings every sane policy is at its cap; bounding the exponent keeps
#: ``base * 2**n`` a finite float for any attempt count.
_MAX_DOUBLINGS = 1000


@dataclass(frozen=True)
class Backoff:
    """How often to try and how long to pause in between.

    ``attempts``: runs in all (the first one included), at least 1. ``base``: the bound of
    the pause after the first failed attempt, in seconds; it doubles after each further
    failure, up to ``cap``. ``jitter``: ``"full"`` pauses a uniform draw in ``[0, bound]``,
    ``"none"`` exactly the bound. ``base=0`` makes a re-try without pause."""

    attempts: int
    base: float
    cap: float
    jitter: Literal["full", "none"] = "full"

    def __post_init__(self) -> None:
        problems = [
            f"{name}={value!r} (expected {expected})"
            for name, value, ok, expected in (
                ("attempts", self.attempts, self.attempts >= 1, "an integer >= 1"),
                ("base", self.base, self.base >= 0, "seconds >= 0"),
                ("cap", self.cap, self.cap >= 0, "seconds >= 0"),
                ("jitter", self.jitter, self.jitter in ("full", "none"), "'full' or 'none'"),
            )
            if not ok
        ]
        if problems:
            raise ValidationError(
                f"invalid retry policy: {', '.join(problems)}",
                operation="retry",
                reason="invalid_option",
            )

    def ceiling(self, attempt: int) -> float:
        """The longest pause after attempt number ``attempt`` (1, 2, ...) failed:
        ``min(cap, base * 2 ** (attempt - 1))``."""
        return min(self.cap, self.base * 2.0 ** min(max(attempt - 1, 0), _MAX_DOUBLINGS))

    def delay(
        self, attempt: int, uniform: Callable[[float, float], float] = random.uniform
    ) -> float:
        """The pause after attempt number ``attempt`` failed, in ``[0, ceiling(attempt)]``
        (``uniform`` draws the full jitter; inject a seeded one in tests)."""
        bound = self.ceiling(attempt)
        return uniform(0.0, bound) if self.jitter == "full" else bound


async def retry_async(
    operation: Callable[[], Awaitable[T]],
    policy: Backoff,
    *,
    retryable: Callable[[Exception], bool],
    on_retry: Callable[[int, Exception, float], object] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    uniform: Callable[[float, float], float] = random.uniform,
) -> T:
    """Await ``operation()`` until it returns, at most ``policy.attempts`` times.

    An exception for which ``retryable`` is false, or any exception of the last attempt, is
    re-raised as is (same object, same traceback). Otherwise ``on_retry(attempt, exc,
    pause)`` is called (``attempt`` counts from 1: the one that just failed) and, after
    ``await sleep(pause)`` outside the ``except`` block (so the next attempt's error does
    not chain this one), the operation runs again. ``BaseException`` (cancellation) is never
    retried."""
    attempt = 1
    while True:
        try:
            return await operation()
        except Exception as exc:
            if attempt >= policy.attempts or not retryable(exc):
                raise
            pause = policy.delay(attempt, uniform)
            if on_retry is not None:
                on_retry(attempt, exc, pause)
        await sleep(pause)
        attempt += 1
