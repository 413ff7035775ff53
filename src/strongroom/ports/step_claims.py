"""Step claims: which worker runs which attempt of a step, so that at-least-once delivery
(a broker that redelivers a message when a worker dies) runs and records each attempt once.

A claim is keyed by (run, step, attempt) and taken in one write transaction that inserts it:
of two workers handed the same attempt, exactly one gets it (the other finds it and does
nothing). The holder beats a heartbeat while the step runs and finishes the claim with the
runner's response, each a compare-and-set on (holder, ``running``): a claim declared lost
(its heartbeat older than a lease, `lose_step_claim`) can no longer be finished, so the answer
of a worker presumed dead is never recorded beside the new attempt's. The coordinator reads
the claim to learn how the attempt ended.

Claims are operational state, like garbage collection's blob claims: not bound into the audit
chain (the attempts are audited by the execution lane, ``execution.start`` / ``.end``, and the
step's end by the run's snapshot chain), not exported, and deleted with their run.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from strongroom.errors import ValidationError

__all__ = [
    "MAX_LISTED_CLAIMS",
    "MAX_RESPONSE_BYTES",
    "STEP_CLAIM_STATES",
    "StepClaim",
    "StepClaimRecords",
    "StepClaimState",
    "check_list_limit",
    "response_text",
]

StepClaimState = Literal["running", "finished", "lost"]
STEP_CLAIM_STATES: Final = ("running", "finished", "lost")

MAX_LISTED_CLAIMS: Final = 100_000
"""The most claims one `list_step_claims` returns."""

MAX_RESPONSE_BYTES: Final = 1024 * 1024
"""The largest response a claim keeps (its canonical JSON): a step's output larger than this
travels as its output artifact, not inline."""


@dataclass(frozen=True)
class StepClaim:
    """One attempt of one step as a worker holds it."""

    run_id: str
    step_id: str
    attempt: int
    request_id: str
    worker: str
    state: StepClaimState
    claimed_at: datetime
    heartbeat_at: datetime
    finished_at: datetime | None = None
    response: dict[str, Any] | None = None  # the RunnerResponse, as JSON, once finished


class StepClaimRecords(ABC):
    """Claims of step attempts by workers (`strongroom.ports.step_claims`)."""

    @abstractmethod
    async def claim_step(
        self, run_id: str, step_id: str, attempt: int, *, request_id: str, worker: str
    ) -> tuple[bool, StepClaim]:
        """Take the attempt for ``worker``: (True, the new claim), or (False, the claim that
        already exists, in whatever state). `NotFound` when the run does not exist."""

    @abstractmethod
    async def heartbeat_step_claim(
        self, run_id: str, step_id: str, attempt: int, *, worker: str
    ) -> bool:
        """Say the holder is alive; False when the claim is not ``worker``'s running claim any
        more (it was declared lost: the holder should stop the step)."""

    @abstractmethod
    async def finish_step_claim(
        self,
        run_id: str,
        step_id: str,
        attempt: int,
        *,
        worker: str,
        response: dict[str, Any],
    ) -> bool:
        """Record how the attempt ended; False (nothing changed) unless it is ``worker``'s
        running claim. `ValidationError` for a response over `MAX_RESPONSE_BYTES`."""

    @abstractmethod
    async def lose_step_claim(
        self, run_id: str, step_id: str, attempt: int, *, stale_before: datetime
    ) -> bool:
        """Declare the attempt lost if it is running and its last heartbeat is older than
        ``stale_before``; False otherwise."""

    @abstractmethod
    async def get_step_claim(self, run_id: str, step_id: str, attempt: int) -> StepClaim | None:
        """The claim on the attempt, or None."""

    @abstractmethod
    async def list_step_claims(
        self, run_id: str, *, limit: int = MAX_LISTED_CLAIMS, responses: bool = True
    ) -> list[StepClaim]:
        """The run's claims by step then attempt, the first ``limit`` (1 to
        `MAX_LISTED_CLAIMS`); without ``responses`` every ``response`` is None and none is
        read (what a page listing workers needs)."""


def check_list_limit(limit: int) -> None:
    """`ValidationError` unless ``limit`` is 1 to `MAX_LISTED_CLAIMS`."""
    if type(limit) is not int or not 1 <= limit <= MAX_LISTED_CLAIMS:
        raise ValidationError(
            f"list_step_claims: limit must be 1 to {MAX_LISTED_CLAIMS}",
            operation="list_step_claims",
            field="limit",
        )


def response_text(response: dict[str, Any], operation: str) -> str:
    """A response as the JSON a claim keeps; `ValidationError` when it is not JSON or is
    over `MAX_RESPONSE_BYTES`."""
    try:
        text = json.dumps(
            response, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{operation}: the response is not JSON ({exc})", operation=operation
        ) from None
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_RESPONSE_BYTES:
        raise ValidationError(
            f"{operation}: the response is {size} bytes, over {MAX_RESPONSE_BYTES} (a large "
            "output travels as the step's output artifact)",
            operation=operation,
            reason="too_large",
        )
    return text
