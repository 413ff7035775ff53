"""Conformance: step claims (`vault.metadata`'s `StepClaimRecords`): an attempt is taken once,
whoever asks and however often; only its holder beats and finishes it; a stale claim is
declared lost and can no longer be finished; claims go with their run."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from strongroom.errors import NotFound, ValidationError
from strongroom.ids import new_id
from strongroom.models import utcnow
from strongroom.ports.step_claims import MAX_RESPONSE_BYTES
from strongroom.testing._base import VaultFixtureContract
from strongroom.vault import Vault

__all__ = ["StepClaimTests"]

RESPONSE = {"request_id": "r", "status": "succeeded", "output": {"sum": 3, "text": "ünï"}}


class StepClaimTests(VaultFixtureContract):
    async def _run(self, vault: Vault) -> str:
        run = await vault.runs.create(project="claims", actor="tester")
        return run.run_id

    async def test_an_attempt_is_claimed_once_whoever_asks(self, vault: Vault) -> None:
        run_id = await self._run(vault)
        store = vault.metadata
        results = await asyncio.gather(
            *(
                store.claim_step(run_id, "a", 1, request_id=f"req-{n}", worker=f"w{n}")
                for n in range(8)
            )
        )
        won = [claim for taken, claim in results if taken]
        assert len(won) == 1
        holder = won[0]
        assert holder.state == "running"
        assert holder.heartbeat_at == holder.claimed_at
        # Everyone else was shown the winner's claim.
        for taken, claim in results:
            if not taken:
                assert (claim.worker, claim.request_id) == (holder.worker, holder.request_id)
        again = await store.claim_step(run_id, "a", 1, request_id="late", worker=holder.worker)
        assert again[0] is False
        # Another attempt or another step is another claim.
        assert (await store.claim_step(run_id, "a", 2, request_id="x", worker="w9"))[0]
        assert (await store.claim_step(run_id, "b", 1, request_id="y", worker="w9"))[0]
        listed = await store.list_step_claims(run_id)
        assert [(c.step_id, c.attempt) for c in listed] == [("a", 1), ("a", 2), ("b", 1)]
        # A page of them, and without their responses (none is read).
        await store.finish_step_claim(run_id, "a", 2, worker="w9", response={"n": 1})
        first = await store.list_step_claims(run_id, limit=2)
        assert [(c.step_id, c.attempt, c.response) for c in first] == [
            ("a", 1, None),
            ("a", 2, {"n": 1}),
        ]
        bare = await store.list_step_claims(run_id, responses=False)
        assert [(c.step_id, c.attempt, c.state, c.response) for c in bare] == [
            ("a", 1, "running", None),
            ("a", 2, "finished", None),
            ("b", 1, "running", None),
        ]
        for limit in (0, -1, 100_001):
            with pytest.raises(ValidationError):
                await store.list_step_claims(run_id, limit=limit)

    async def test_a_claim_needs_its_run(self, vault: Vault) -> None:
        with pytest.raises(NotFound):
            await vault.metadata.claim_step(new_id(), "a", 1, request_id="r", worker="w")

    async def test_only_the_holder_beats_and_finishes(self, vault: Vault) -> None:
        run_id = await self._run(vault)
        store = vault.metadata
        _, claim = await store.claim_step(run_id, "a", 1, request_id="r1", worker="w1")
        assert await store.heartbeat_step_claim(run_id, "a", 1, worker="w1")
        assert not await store.heartbeat_step_claim(run_id, "a", 1, worker="w2")
        assert not await store.finish_step_claim(run_id, "a", 1, worker="w2", response=RESPONSE)
        assert not await store.heartbeat_step_claim(run_id, "a", 2, worker="w1")  # no claim
        beaten = await store.get_step_claim(run_id, "a", 1)
        assert beaten is not None
        assert beaten.heartbeat_at >= claim.heartbeat_at
        assert await store.finish_step_claim(run_id, "a", 1, worker="w1", response=RESPONSE)
        done = await store.get_step_claim(run_id, "a", 1)
        assert done is not None
        assert done.state == "finished"
        assert done.response == RESPONSE
        assert done.finished_at is not None
        # Finished is final: no second answer, no heartbeat, never lost.
        other = {**RESPONSE, "output": {"sum": 4}}
        assert not await store.finish_step_claim(run_id, "a", 1, worker="w1", response=other)
        assert not await store.heartbeat_step_claim(run_id, "a", 1, worker="w1")
        later = utcnow() + timedelta(days=1)
        assert not await store.lose_step_claim(run_id, "a", 1, stale_before=later)
        final = await store.get_step_claim(run_id, "a", 1)
        assert final is not None
        assert final.response == RESPONSE

    async def test_a_stale_claim_is_lost_and_its_answer_refused(self, vault: Vault) -> None:
        run_id = await self._run(vault)
        store = vault.metadata
        _, claim = await store.claim_step(run_id, "a", 1, request_id="r1", worker="w1")
        # Fresh: not lost.
        assert not await store.lose_step_claim(
            run_id, "a", 1, stale_before=claim.heartbeat_at - timedelta(seconds=1)
        )
        assert await store.lose_step_claim(
            run_id, "a", 1, stale_before=utcnow() + timedelta(seconds=1)
        )
        lost = await store.get_step_claim(run_id, "a", 1)
        assert lost is not None
        assert lost.state == "lost"
        # The presumed-dead holder comes back: its heartbeat and its answer are refused.
        assert not await store.heartbeat_step_claim(run_id, "a", 1, worker="w1")
        assert not await store.finish_step_claim(run_id, "a", 1, worker="w1", response=RESPONSE)
        lost_again = await store.get_step_claim(run_id, "a", 1)
        assert lost_again is not None
        assert (lost_again.state, lost_again.response) == ("lost", None)
        # Nor can anyone take the lost attempt over: a new attempt is a new claim.
        assert not (await store.claim_step(run_id, "a", 1, request_id="r2", worker="w2"))[0]

    async def test_an_oversized_or_non_json_response_is_refused(self, vault: Vault) -> None:
        run_id = await self._run(vault)
        store = vault.metadata
        await store.claim_step(run_id, "a", 1, request_id="r1", worker="w1")
        big = {"output": "x" * (MAX_RESPONSE_BYTES + 1)}
        with pytest.raises(ValidationError):
            await store.finish_step_claim(run_id, "a", 1, worker="w1", response=big)
        with pytest.raises(ValidationError):
            await store.finish_step_claim(run_id, "a", 1, worker="w1", response={"x": float("nan")})
        still = await store.get_step_claim(run_id, "a", 1)
        assert still is not None
        assert still.state == "running"

    async def test_claims_go_with_their_run(self, vault: Vault) -> None:
        run_id = await self._run(vault)
        store = vault.metadata
        await store.claim_step(run_id, "a", 1, request_id="r1", worker="w1")
        await store.finish_step_claim(run_id, "a", 1, worker="w1", response=RESPONSE)
        await vault.runs.start(run_id)
        await vault.runs.complete(run_id)
        await vault.retention.delete_run(run_id, reason="claims go too")
        assert await store.list_step_claims(run_id) == []
        assert await store.get_step_claim(run_id, "a", 1) is None
        # Claims are operational state, outside the audit chain: verify neither needs nor
        # misses them.
        assert (await vault.verify()).ok
