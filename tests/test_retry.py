"""The one retry helper (`strongroom.retry`): the backoff policy's pauses and the loop's
contract. No real sleeping: every loop gets a fake ``sleep`` that records the pauses."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.errors import Conflict, StrongroomError, ValidationError
from strongroom.retry import Backoff, retry_async

seconds = st.floats(min_value=0.0, max_value=3600.0, allow_nan=False, allow_infinity=False)
attempt_numbers = st.integers(min_value=1, max_value=5000)


class Busy(Exception):
    """A retryable failure."""


class Broken(Exception):
    """A failure no retry can cure."""


def only_busy(exc: Exception) -> bool:
    return isinstance(exc, Busy)


class Script:
    """An operation that raises the scripted errors in turn, then returns ``value``."""

    def __init__(self, *errors: BaseException, value: str = "done") -> None:
        self.errors = list(errors)
        self.value = value
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


class FakeSleep:
    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)


# -- the policy -------------------------------------------------------------------------------


@settings(deadline=None)
@given(attempts=st.integers(1, 100), base=seconds, cap=seconds, attempt=attempt_numbers)
def test_a_full_jitter_pause_stays_within_its_exponential_bound(
    attempts: int, base: float, cap: float, attempt: int
) -> None:
    policy = Backoff(attempts, base, cap)
    bound = min(cap, base * 2.0 ** min(attempt - 1, 1000))
    assert policy.ceiling(attempt) == bound
    for uniform in (random.uniform, random.Random(attempt).uniform, min, max):
        assert 0.0 <= policy.delay(attempt, uniform) <= bound


@given(base=seconds, cap=seconds, attempt=attempt_numbers)
def test_without_jitter_the_pause_is_the_bound(base: float, cap: float, attempt: int) -> None:
    policy = Backoff(3, base, cap, jitter="none")
    assert policy.delay(attempt, lambda a, b: pytest.fail("no draw without jitter")) == (
        policy.ceiling(attempt)
    )


@given(base=seconds, cap=seconds, attempt=st.integers(1, 60))
def test_the_bound_is_the_formulas_the_loops_used_before(
    base: float, cap: float, attempt: int
) -> None:
    # The execution lane: min(backoff * 2 ** (attempt - 1), max_backoff).
    assert Backoff(1, base, cap, jitter="none").delay(attempt) == min(
        base * 2 ** (attempt - 1), cap
    )
    # The services' compare-and-set appends: base_delay * 2 ** min(i, 8), i = attempt - 1.
    conflict = Backoff(50, 0.001, 0.001 * 2**8)
    assert conflict.ceiling(attempt) == 0.001 * 2 ** min(attempt - 1, 8)


def test_the_sql_bound_is_the_doubling_the_stores_used_before() -> None:
    policy = Backoff(8, 0.01, 2.0)
    delay = 0.01
    for attempt in range(1, 40):
        assert policy.ceiling(attempt) == delay
        delay = min(delay * 2, 2.0)


def test_a_huge_attempt_number_is_capped_not_an_overflow() -> None:
    assert Backoff(10**6, 0.01, 2.0).ceiling(10**6) == 2.0
    assert Backoff(10**6, 1e300, float("inf")).ceiling(10**6) == float("inf")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"attempts": 0, "base": 0.1, "cap": 1.0}, "attempts=0"),
        ({"attempts": 1, "base": -0.1, "cap": 1.0}, "base=-0.1"),
        ({"attempts": 1, "base": 0.1, "cap": -1.0}, "cap=-1.0"),
        ({"attempts": 1, "base": 0.1, "cap": 1.0, "jitter": "half"}, "jitter='half'"),
    ],
)
def test_a_policy_that_makes_no_sense_is_refused(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        Backoff(**fields)  # type: ignore[arg-type]


# -- the loop ---------------------------------------------------------------------------------


async def test_a_first_success_neither_sleeps_nor_reports() -> None:
    sleep, reports = FakeSleep(), []
    op = Script()
    result = await retry_async(
        op,
        Backoff(5, 1.0, 10.0),
        retryable=only_busy,
        on_retry=lambda *args: reports.append(args),
        sleep=sleep,
    )
    assert (result, op.calls, sleep.pauses, reports) == ("done", 1, [], [])


@settings(deadline=None)
@given(attempts=st.integers(1, 30), failures=st.integers(0, 40))
def test_it_runs_until_success_or_the_attempts_are_used(attempts: int, failures: int) -> None:
    errors = [Busy(f"busy {i}") for i in range(failures)]
    op = Script(*errors)
    sleep = FakeSleep()
    reports: list[tuple[int, Exception, float]] = []

    async def run() -> str:
        return await retry_async(
            op,
            Backoff(attempts, 0.5, 4.0, jitter="none"),
            retryable=only_busy,
            on_retry=lambda n, exc, pause: reports.append((n, exc, pause)),
            sleep=sleep,
        )

    if failures < attempts:
        assert asyncio.run(run()) == "done"
        assert op.calls == failures + 1
    else:
        with pytest.raises(Busy) as caught:
            asyncio.run(run())
        assert caught.value is errors[attempts - 1]  # the last attempt's own error
        assert op.calls == attempts
    retries = min(failures, attempts - 1)
    assert [n for n, _, _ in reports] == list(range(1, retries + 1))
    assert [exc for _, exc, _ in reports] == errors[:retries]
    assert sleep.pauses == [pause for _, _, pause in reports]
    assert sleep.pauses == [min(4.0, 0.5 * 2 ** (n - 1)) for n in range(1, retries + 1)]


async def test_a_non_retryable_error_propagates_at_once_untouched() -> None:
    broken = Broken("no")
    op = Script(broken)
    sleep, reports = FakeSleep(), []
    with pytest.raises(Broken) as caught:
        await retry_async(
            op,
            Backoff(5, 1.0, 10.0),
            retryable=only_busy,
            on_retry=lambda *args: reports.append(args),
            sleep=sleep,
        )
    assert caught.value is broken
    assert broken.__context__ is None
    assert broken.__cause__ is None
    assert (op.calls, sleep.pauses, reports) == (1, [], [])


async def test_an_error_after_a_retry_does_not_chain_the_earlier_one() -> None:
    busy, broken = Busy("busy"), Broken("no")
    op = Script(busy, broken)
    with pytest.raises(Broken) as caught:
        await retry_async(op, Backoff(5, 0.0, 0.0), retryable=only_busy, sleep=FakeSleep())
    assert caught.value is broken
    assert broken.__context__ is None
    assert op.calls == 2


async def test_the_predicate_sees_each_error_and_decides() -> None:
    seen: list[Exception] = []
    first, second = Conflict("lost", reason="stale_head"), Conflict("sealed", reason="sealed")

    def retryable(exc: Exception) -> bool:
        seen.append(exc)
        return isinstance(exc, StrongroomError) and exc.details.get("reason") != "sealed"

    op = Script(first, second)
    with pytest.raises(Conflict) as caught:
        await retry_async(op, Backoff(50, 0.001, 0.256), retryable=retryable, sleep=FakeSleep())
    assert caught.value is second
    assert seen == [first, second]


async def test_one_attempt_means_no_retry() -> None:
    busy = Busy("busy")
    op = Script(busy)
    sleep = FakeSleep()
    with pytest.raises(Busy) as caught:
        await retry_async(op, Backoff(1, 1.0, 1.0), retryable=only_busy, sleep=sleep)
    assert caught.value is busy
    assert (op.calls, sleep.pauses) == (1, [])


async def test_cancellation_is_never_retried() -> None:
    op = Script(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await retry_async(op, Backoff(5, 0.0, 0.0), retryable=lambda _: True, sleep=FakeSleep())
    assert op.calls == 1


async def test_the_jitter_draw_is_injectable() -> None:
    draws: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return high / 2

    sleep = FakeSleep()
    await retry_async(
        Script(Busy(), Busy()),
        Backoff(3, 0.01, 2.0),
        retryable=only_busy,
        sleep=sleep,
        uniform=uniform,
    )
    assert draws == [(0.0, 0.01), (0.0, 0.02)]
    assert sleep.pauses == [0.005, 0.01]
