"""The people's keys registered in a vault (the actor half of the `RegistryRecords` port on
SQL, same semantics as the memory version). Revoking locks the row (``FOR UPDATE``; SQLite's
writer is exclusive anyway) and rewrites its body, bound into the audit chain like every write."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.engine import Connection

from strongroom.adapters._sql.audit import AuditRecords
from strongroom.adapters._sql.base import fetch_all, fetch_scalar, parse_body
from strongroom.adapters._sql.registry import insert_or_skip
from strongroom.adapters._sql.registry_tables import actors_table
from strongroom.models import Actor, ActSignature, AuditEvent, bind, stored_body
from strongroom.ports.registry import (
    actor_exists,
    actor_not_found,
    actor_revoked_before,
    not_first_actor,
)

__all__ = ["ActorRecordsSql"]

_ac = actors_table.c
_GET_ACTOR: Final = select(_ac.body).where(_ac.key_id == bindparam("key_id"))
_LOCK_ACTOR: Final = _GET_ACTOR.with_for_update()
_ACTORS: Final = select(_ac.key_id, _ac.body).order_by(_ac.added_at, _ac.key_id)
_ANY_ACTOR: Final = select(_ac.key_id).limit(1)
_CURRENT_USER: Final = text("SELECT current_user")


class ActorRecordsSql(AuditRecords):
    """`insert_actor`, `get_actor`, `list_actors` and `revoke_actor` of `SqlMetadataStore`."""

    async def session_role(self) -> str | None:
        def op(conn: Connection) -> str | None:
            if conn.dialect.name != "postgresql":
                return None
            return str(conn.scalar(_CURRENT_USER))

        return await self._read("session_role", op)

    async def insert_actor(self, actor: Actor, *, audit: AuditEvent | None = None) -> None:
        body = stored_body(actor)
        values = {
            "key_id": actor.key_id,
            "name": actor.name,
            "added_at": actor.added_at,
            "body": body,
        }

        def op(conn: Connection) -> None:
            if actor.added_by is None:
                # The vault's first admin: only into an empty registry, decided inside this
                # transaction (PostgreSQL: the table locked against concurrent writers;
                # SQLite's writer is exclusive anyway).
                if conn.dialect.name == "postgresql":
                    conn.execute(text("LOCK TABLE actors IN SHARE ROW EXCLUSIVE MODE"))
                if conn.execute(_ANY_ACTOR).first() is not None:
                    raise not_first_actor(actor.key_id)
            if not insert_or_skip(conn, actors_table, values):
                raise actor_exists(actor.key_id)

        await self._write_bound("insert_actor", op, audit, [bind(actor, body)], key_id=actor.key_id)

    async def get_actor(self, key_id: str) -> Actor:
        params = {"key_id": key_id}
        body = await self._read("get_actor", fetch_scalar(_GET_ACTOR, params), key_id=key_id)
        if body is None:
            raise actor_not_found(key_id)
        return parse_body(Actor, body, "actor", key_id)

    async def list_actors(self) -> list[Actor]:
        rows = await self._read("list_actors", fetch_all(_ACTORS))
        return [parse_body(Actor, row.body, "actor", row.key_id) for row in rows]

    async def revoke_actor(
        self,
        key_id: str,
        *,
        at: datetime,
        by: str | None,
        reason: str,
        signature: ActSignature | None,
        audit: AuditEvent | None = None,
    ) -> Actor:
        def op(conn: Connection) -> Actor:
            body = conn.execute(_LOCK_ACTOR, {"key_id": key_id}).scalar()
            if body is None:
                raise actor_not_found(key_id)
            actor = parse_body(Actor, body, "actor", key_id)
            if actor.revoked_at is not None:
                raise actor_revoked_before(key_id)
            revoked = actor.model_copy(
                update={
                    "revoked_at": at,
                    "revoked_by": by,
                    "revoke_reason": reason,
                    "revoke_signature": signature,
                }
            )
            conn.execute(
                update(actors_table).where(_ac.key_id == key_id).values(body=stored_body(revoked))
            )
            return revoked

        return await self._write_bound(
            "revoke_actor", op, audit, lambda revoked: [bind(revoked)], key_id=key_id
        )
