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
- Row-level security, **forced** (the table's owner obeys it too; only a superuser or a role
  with BYPASSRLS is above it):

  - INSERT: ``written_by`` must be the inserting role, and an unsigned claim of a role
    (``actor`` or ``revoked_by`` of the form ``pg:NAME``) must name that role too;
  - UPDATE (a revocation): a ``revoked_by`` of the form ``pg:NAME`` must be the updating role;
  - SELECT and DELETE: unchanged (privileges decide, as before).

- A trigger refuses an UPDATE that changes ``written_by`` or the approval's ``actor``: a
  revocation rewrites the row's body, never who wrote it nor who approved.

Violations fail with SQLSTATE 42501 (insufficient_privilege), which the store reports as
`PermissionDenied`. A registered person's name is not a role's: what proves it is the
signature (checked by the gates and by ``verify``), which no role can make without the key.

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

# An unsigned claim (``pg:NAME``) in the body must be the current role; anything else (a
# registered name, ``os:NAME`` from an embedded vault, no revoker yet) is the signature's
# business, not the database's.
_OWN_CLAIM: Final = (
    "(({field}) IS NULL OR ({field}) NOT LIKE 'pg:%' OR ({field}) = 'pg:' || current_user)"
)
_ACTOR: Final = "body::jsonb ->> 'actor'"
_REVOKED_BY: Final = "body::jsonb ->> 'revoked_by'"

PG_FUNCTION: Final = "strongroom_approval_writer"
PG_CREATE_FUNCTION: Final = f"""
CREATE FUNCTION {PG_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.written_by IS DISTINCT FROM OLD.written_by
            OR (NEW.body::jsonb ->> 'actor') IS DISTINCT FROM (OLD.body::jsonb ->> 'actor') THEN
        RAISE EXCEPTION USING
            MESSAGE = 'strongroom: an approval''s writer and approver cannot change',
            DETAIL = 'UPDATE refused by trigger ' || TG_NAME,
            ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$
"""

PG_POLICIES: Final = {
    "approvals_read": "FOR SELECT USING (true)",
    "approvals_delete": "FOR DELETE USING (true)",
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
    op.execute(PG_CREATE_FUNCTION)
    op.execute(
        "CREATE TRIGGER approvals_writer_fixed BEFORE UPDATE ON approvals "
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
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("written_by")
