"""Step claims in memory, with the rules of `strongroom.ports.step_claims` (the SQL stores'
behaviour, in Python)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from strongroom.errors import NotFound
from strongroom.models import Run, utcnow
from strongroom.ports.step_claims import (
    MAX_LISTED_CLAIMS,
    StepClaim,
    StepClaimRecords,
    check_list_limit,
    response_text,
)

__all__ = ["MemoryStepClaims"]

_Key = tuple[str, str, int]


class MemoryStepClaims(StepClaimRecords):
    # Kept by `MemoryMetadataStore` (declared here for the methods below).
    _lock: asyncio.Lock
    _runs: dict[str, Run]

    def __init__(self) -> None:
        self._step_claims: dict[_Key, StepClaim] = {}

    async def claim_step(
        self, run_id: str, step_id: str, attempt: int, *, request_id: str, worker: str
    ) -> tuple[bool, StepClaim]:
        async with self._lock:
            if run_id not in self._runs:
                raise NotFound(f"run {run_id} not found", operation="claim_step", run_id=run_id)
            key = (run_id, step_id, attempt)
            existing = self._step_claims.get(key)
            if existing is not None:
                return False, existing
            now = utcnow()
            claim = StepClaim(
                run_id, step_id, attempt, request_id, worker, "running", now, now, None, None
            )
            self._step_claims[key] = claim
            return True, claim

    def _held(self, key: _Key, worker: str) -> StepClaim | None:
        claim = self._step_claims.get(key)
        if claim is None or claim.worker != worker or claim.state != "running":
            return None
        return claim

    async def heartbeat_step_claim(
        self, run_id: str, step_id: str, attempt: int, *, worker: str
    ) -> bool:
        async with self._lock:
            key = (run_id, step_id, attempt)
            claim = self._held(key, worker)
            if claim is None:
                return False
            self._step_claims[key] = replace(claim, heartbeat_at=utcnow())
            return True

    async def finish_step_claim(
        self,
        run_id: str,
        step_id: str,
        attempt: int,
        *,
        worker: str,
        response: dict[str, Any],
    ) -> bool:
        text = response_text(response, "finish_step_claim")
        async with self._lock:
            key = (run_id, step_id, attempt)
            claim = self._held(key, worker)
            if claim is None:
                return False
            now = utcnow()
            self._step_claims[key] = replace(
                claim,
                state="finished",
                heartbeat_at=now,
                finished_at=now,
                response=json.loads(text),
            )
            return True

    async def lose_step_claim(
        self, run_id: str, step_id: str, attempt: int, *, stale_before: datetime
    ) -> bool:
        async with self._lock:
            key = (run_id, step_id, attempt)
            claim = self._step_claims.get(key)
            if claim is None or claim.state != "running" or claim.heartbeat_at >= stale_before:
                return False
            self._step_claims[key] = replace(claim, state="lost", finished_at=utcnow())
            return True

    async def get_step_claim(self, run_id: str, step_id: str, attempt: int) -> StepClaim | None:
        return self._step_claims.get((run_id, step_id, attempt))

    async def list_step_claims(
        self, run_id: str, *, limit: int = MAX_LISTED_CLAIMS, responses: bool = True
    ) -> list[StepClaim]:
        check_list_limit(limit)
        claims = [c for key, c in sorted(self._step_claims.items()) if key[0] == run_id][:limit]
        return claims if responses else [replace(c, response=None) for c in claims]

    def _drop_step_claims(self, run_id: str) -> None:
        """With the run (called inside its deletion, under the store's lock)."""
        for key in [k for k in self._step_claims if k[0] == run_id]:
            del self._step_claims[key]
