"""Step claims on SQL (migration 0011, `strongroom.ports.step_claims`): taking an attempt is
one INSERT that the primary key (run, step, attempt) lets through once; heartbeat, finish and
lose are each one UPDATE guarded by the claim's holder and state, so their row count says
whether they won."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, null, select, update
from sqlalchemy.engine import Connection

from strongroom.adapters._sql.base import SqlStoreBase, fetch_all
from strongroom.adapters._sql.tables import runs_table, step_claims_table
from strongroom.errors import Conflict
from strongroom.models import utcnow
from strongroom.ports.step_claims import (
    MAX_LISTED_CLAIMS,
    StepClaim,
    StepClaimRecords,
    check_list_limit,
    response_text,
)

__all__ = ["StepClaimRecordsSql"]

_c = step_claims_table.c
_COLUMNS = (
    _c.run_id,
    _c.step_id,
    _c.attempt,
    _c.request_id,
    _c.worker,
    _c.state,
    _c.claimed_at,
    _c.heartbeat_at,
    _c.finished_at,
    _c.response,
)


def _claim(row: Any) -> StepClaim:
    return StepClaim(
        run_id=row.run_id,
        step_id=row.step_id,
        attempt=int(row.attempt),
        request_id=row.request_id,
        worker=row.worker,
        state=row.state,
        claimed_at=row.claimed_at,
        heartbeat_at=row.heartbeat_at,
        finished_at=row.finished_at,
        response=None if row.response is None else json.loads(row.response),
    )


def _key(run_id: str, step_id: str, attempt: int) -> Any:
    return and_(_c.run_id == run_id, _c.step_id == step_id, _c.attempt == attempt)


class StepClaimRecordsSql(SqlStoreBase, StepClaimRecords):
    """The step claim methods of `SqlMetadataStore`."""

    async def claim_step(
        self, run_id: str, step_id: str, attempt: int, *, request_id: str, worker: str
    ) -> tuple[bool, StepClaim]:
        now = utcnow()

        def op(conn: Connection) -> tuple[bool, StepClaim]:
            if (
                conn.scalar(select(runs_table.c.run_id).where(runs_table.c.run_id == run_id))
                is None
            ):
                raise self._not_found("claim_step", f"run {run_id} not found", run_id=run_id)
            row = conn.execute(select(*_COLUMNS).where(_key(run_id, step_id, attempt))).first()
            if row is not None:
                return False, _claim(row)
            values = {
                "run_id": run_id,
                "step_id": step_id,
                "attempt": attempt,
                "request_id": request_id,
                "worker": worker,
                "state": "running",
                "claimed_at": now,
                "heartbeat_at": now,
                "finished_at": None,
                "response": None,
            }
            conn.execute(insert(step_claims_table).values(**values))
            return True, StepClaim(**values)  # type: ignore[arg-type]

        try:
            return await self._write("claim_step", op, run_id=run_id, step_id=step_id)
        except Conflict as exc:
            if exc.details.get("reason") != "unique_violation":
                raise
            # Another worker inserted it between our look and our insert: it is theirs.
        existing = await self.get_step_claim(run_id, step_id, attempt)
        assert existing is not None
        return False, existing

    async def _update(self, operation: str, stmt: Any) -> bool:
        def op(conn: Connection) -> bool:
            return int(conn.execute(stmt).rowcount) == 1

        return await self._write(operation, op)

    async def heartbeat_step_claim(
        self, run_id: str, step_id: str, attempt: int, *, worker: str
    ) -> bool:
        stmt = (
            update(step_claims_table)
            .where(_key(run_id, step_id, attempt), _c.worker == worker, _c.state == "running")
            .values(heartbeat_at=utcnow())
        )
        return await self._update("heartbeat_step_claim", stmt)

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
        now = utcnow()
        stmt = (
            update(step_claims_table)
            .where(_key(run_id, step_id, attempt), _c.worker == worker, _c.state == "running")
            .values(state="finished", heartbeat_at=now, finished_at=now, response=text)
        )
        return await self._update("finish_step_claim", stmt)

    async def lose_step_claim(
        self, run_id: str, step_id: str, attempt: int, *, stale_before: datetime
    ) -> bool:
        stmt = (
            update(step_claims_table)
            .where(
                _key(run_id, step_id, attempt),
                _c.state == "running",
                _c.heartbeat_at < stale_before,
            )
            .values(state="lost", finished_at=utcnow())
        )
        return await self._update("lose_step_claim", stmt)

    async def get_step_claim(self, run_id: str, step_id: str, attempt: int) -> StepClaim | None:
        rows = await self._read(
            "get_step_claim", fetch_all(select(*_COLUMNS).where(_key(run_id, step_id, attempt)))
        )
        return _claim(rows[0]) if rows else None

    async def list_step_claims(
        self, run_id: str, *, limit: int = MAX_LISTED_CLAIMS, responses: bool = True
    ) -> list[StepClaim]:
        check_list_limit(limit)
        columns = _COLUMNS if responses else (*_COLUMNS[:-1], null().label("response"))
        stmt = (
            select(*columns)
            .where(_c.run_id == run_id)
            .order_by(_c.step_id, _c.attempt)
            .limit(limit)
        )
        return [_claim(row) for row in await self._read("list_step_claims", fetch_all(stmt))]
