"""Approvals remember which database role wrote them, and on PostgreSQL no role can write or
revoke one under another role's name (row-level security; issue 14, identity).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Written by hand and frozen: plain SQLAlchemy types and raw DDL, never the live table
definitions of ``_sql/registry_tables.py``.

Both dialects get the column ``approvals.written_by`` (nullable: rows written before this
revision, and every row on SQLite, which has no roles, leave it empty). On PostgreSQL:

- ``written_by`` defaults to ``current_user``: the role the server authenticated, filled in by
  the database, not by strongroom.
- Row-level security, **forced** (the table's owner obeys it too while it is in force; a
  superuser or a role with BYPASSRLS is above it):

  - INSERT: ``written_by`` must be the inserting role, and an unsigned claim of a role
    (``actor`` or ``revoked_by`` of the form ``pg:NAME``, the prefix in any case) must be
    this session's principal (`strongroom_principal()`: the role's name made safe as
    strongroom makes it);
  - UPDATE (a revocation): a ``revoked_by`` claiming a role must be the updating one;
  - SELECT: unchanged (privileges decide).

- A trigger allows an UPDATE only as a revocation: of an approval not yet revoked, changing
  nothing but the revocation's fields (not the target, actor, reason, times, signature,
  key columns or ``written_by``); and refuses every DELETE (approvals are revoked, never
  deleted) unless the deleting transaction named the table in ``strongroom.allow_delete``,
  the bypass migration 0004 documents for the append-only tables.

Violations fail with SQLSTATE 42501 (insufficient_privilege), which the store reports as
`PermissionDenied`. A registered person's name is not a role's: what proves it is the
signature (checked by the gates and by ``verify``), which no role can make without the key.

Defence in depth, like 0004's guards: the table's owner can still lift both (``ALTER TABLE
... NO FORCE ROW LEVEL SECURITY``, ``DISABLE TRIGGER``); with the role setup of 0004 the
application role owns nothing and cannot. ``verify`` catches a rewritten approval whatever
the database allowed (its audit binding).

Importing another vault's bundle whose unsigned approvals were made by other roles therefore
needs a role above row-level security (the migration owner is not: the policy is forced); see
docs/backends.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The principal an unsigned act of this session is recorded as: ``pg:`` and the role's name
# made safe exactly as `strongroom.services.identity` makes it (characters outside
# ``[A-Za-z0-9._@+-]`` become ``_``, at most 100 of them). Keep the two in step.
PG_PRINCIPAL: Final = "strongroom_principal"
PG_CREATE_PRINCIPAL: Final = f"""
CREATE FUNCTION {PG_PRINCIPAL}() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT 'pg:' || left(regexp_replace(current_user, '[^A-Za-z0-9._@+-]', '_', 'g'), 100)
$$
"""

# An unsigned claim of a role (``pg:NAME``, the prefix in any case) in the body must be this
# session's principal; anything else (a registered name, ``os:NAME`` from an embedded vault,
# no revoker yet) is the signature's business, not the database's.
_OWN_CLAIM: Final = (
    "(({field}) IS NULL OR ({field}) NOT ILIKE 'pg:%' OR ({field}) = " + PG_PRINCIPAL + "())"
)
_ACTOR: Final = "body::jsonb ->> 'actor'"
_REVOKED_BY: Final = "body::jsonb ->> 'revoked_by'"
# What a revocation writes; everything else in an approval is fixed once written.
_REVOCATION_KEYS: Final = "ARRAY['revoked_at', 'revoked_by', 'revoke_reason', 'revoke_signature']"

PG_FUNCTION: Final = "strongroom_approval_writer"
PG_CREATE_FUNCTION: Final = f"""
CREATE FUNCTION {PG_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('strongroom.allow_delete', true) = 'approvals' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION USING
            MESSAGE = 'strongroom: approvals are never deleted (revoke one instead)',
            DETAIL = 'DELETE refused by trigger ' || TG_NAME,
            ERRCODE = 'insufficient_privilege';
    END IF;
    IF ROW(NEW.approval_id, NEW.scope, NEW.created_at, NEW.written_by)
                IS DISTINCT FROM ROW(OLD.approval_id, OLD.scope, OLD.created_at, OLD.written_by)
            OR (OLD.body::jsonb ->> 'revoked_at') IS NOT NULL
            OR (NEW.body::jsonb - {_REVOCATION_KEYS})
                IS DISTINCT FROM (OLD.body::jsonb - {_REVOCATION_KEYS}) THEN
        RAISE EXCEPTION USING
            MESSAGE = 'strongroom: an approval can only be revoked, once; nothing else of it '
                || 'changes',
            DETAIL = 'UPDATE refused by trigger ' || TG_NAME,
            ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$
"""

PG_POLICIES: Final = {
    "approvals_read": "FOR SELECT USING (true)",
    "approvals_delete": "FOR DELETE USING (true)",  # the trigger decides
    "approvals_insert": "FOR INSERT WITH CHECK (written_by = current_user AND "
    + _OWN_CLAIM.format(field=_ACTOR)
    + " AND "
    + _OWN_CLAIM.format(field=_REVOKED_BY)
    + ")",
    "approvals_revoke": "FOR UPDATE USING (true) WITH CHECK ("
    + _OWN_CLAIM.format(field=_REVOKED_BY)
    + ")",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        column = sa.Column(
            "written_by", sa.String(128), nullable=True, server_default=sa.text("NULL")
        )
        op.add_column("approvals", column)
        return
    op.add_column("approvals", sa.Column("written_by", sa.String(128), nullable=True))
    op.execute("ALTER TABLE approvals ALTER COLUMN written_by SET DEFAULT current_user")
    op.execute(PG_CREATE_PRINCIPAL)
    op.execute(PG_CREATE_FUNCTION)
    op.execute(
        "CREATE TRIGGER approvals_writer_fixed BEFORE UPDATE OR DELETE ON approvals "
        f"FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()"
    )
    for name, rule in PG_POLICIES.items():
        op.execute(f"CREATE POLICY {name} ON approvals {rule}")
    op.execute("ALTER TABLE approvals ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE approvals FORCE ROW LEVEL SECURITY")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE approvals NO FORCE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE approvals DISABLE ROW LEVEL SECURITY")
        for name in reversed(PG_POLICIES):
            op.execute(f"DROP POLICY {name} ON approvals")
        op.execute("DROP TRIGGER approvals_writer_fixed ON approvals")
        op.execute(f"DROP FUNCTION {PG_FUNCTION}()")
        op.execute(f"DROP FUNCTION {PG_PRINCIPAL}()")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("written_by")
