"""On PostgreSQL the database itself keeps every approval honest about which role wrote it
(migration 0006): ``written_by`` is filled in by the server, row-level security (forced, so
the table's owner obeys it too) refuses a row written or revoked under another role's
``pg:`` name, and a trigger refuses rewriting who wrote or who approved.

Real roles, made by the documented setup (``tests/_pg_roles.py``): the owner migrates, the
application role works; neither is a superuser (a superuser is above row-level security).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from _pg_fixtures import admin_url, database_url, libpq_url
from _pg_roles import PLACEHOLDER_PASSWORD as PW
from _pg_roles import Roles, documented_role_sql, execute_as
from strongroom.errors import PermissionDenied
from strongroom.models import Approval, AuditEvent
from strongroom.services.registry import RegistryPolicy
from strongroom.vault import Vault

pytestmark = pytest.mark.postgres

UNSIGNED = RegistryPolicy(require_signed_approvals=False)


def _rows(url: str) -> list[tuple[str, str | None, str | None]]:
    """(approval_id, written_by, the body's actor) of every approval, as the owner sees them."""
    with psycopg.connect(libpq_url(url)) as conn:
        found = conn.execute(
            b"SELECT approval_id, written_by, body::jsonb ->> 'actor' FROM approvals "
            b"ORDER BY created_at, approval_id"
        ).fetchall()
    return [(str(a), w, b) for a, w, b in found]


def _refused(url: str, statement: str, params: tuple[Any, ...] = ()) -> str:
    """Run one statement as a role that must be refused; the server's message."""
    with (
        psycopg.connect(libpq_url(url), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege) as refused,
    ):
        conn.execute(statement.encode(), params)
    return str(refused.value)


async def _working_vault(roles: Roles, tmp_path: Path) -> str:
    """Migrate as the owner and grant as documented; the blobs URL both roles share."""
    blobs = str(tmp_path / "blobs")
    async with await Vault.open(roles.url(roles.owner), blobs_url=blobs):
        pass
    execute_as(roles.url(roles.owner), [roles.render(s) for s in documented_role_sql()["3"]])
    return blobs


async def test_no_role_writes_or_revokes_an_approval_under_another_roles_name(
    roles: Roles, tmp_path: Path
) -> None:
    blobs = await _working_vault(roles, tmp_path)
    owner_url, app_url = roles.url(roles.owner), roles.url(roles.app)

    async with await Vault.open(app_url, blobs_url=blobs) as vault:
        vault.registry.policy = UNSIGNED
        run = await vault.runs.create(project="rls", actor="tester")
        approved = await vault.registry.approve(
            {"scope": "run", "run_id": run.run_id}, reason="one run"
        )
        assert approved.actor == f"pg:{roles.app}"
        # The records port, the application's own write path, cannot name another role: the
        # database refuses the row and nothing is written (neither the row nor its audit).
        forged = Approval.model_validate(
            {
                **approved.model_dump(),
                "approval_id": "01900000-0000-7000-8000-00000000f0f0",
                "actor": f"pg:{roles.owner}",
            }
        )
        audit_before = len(await vault.audit.entries())
        with pytest.raises(PermissionDenied) as refused:
            await vault.registry.records.insert_approval(
                forged,
                audit=AuditEvent(
                    event="registry.approved",
                    actor=forged.actor,
                    subject_type="approval",
                    subject_id=forged.approval_id,
                ),
            )
        assert refused.value.details["reason"] == "insufficient_privilege"
        assert "row-level security" in refused.value.message
        assert len(await vault.audit.entries()) == audit_before
        # A revocation is recorded as the revoking role too.
        revoked = await vault.registry.revoke(approved.approval_id, reason="done")
        assert revoked.revoked_by == f"pg:{roles.app}"
        other_run = await vault.runs.create(project="rls", actor="tester")
        live = await vault.registry.approve(
            {"scope": "run", "run_id": run.run_id}, reason="still in force"
        )
        assert (await vault.verify()).ok

    app = roles.app
    before = [(approved.approval_id, app, f"pg:{app}"), (live.approval_id, app, f"pg:{app}")]
    assert _rows(owner_url) == before

    # Raw SQL as the application role, as a bug or an intruder holding its password would.
    own = Approval.model_validate({**forged.model_dump(), "actor": f"pg:{app}"})
    shouting = Approval.model_validate({**forged.model_dump(), "actor": f"PG:{roles.owner}"})
    revocation = "jsonb_set(jsonb_set(body::jsonb, '{revoked_by}', to_jsonb(%s::text)), "
    revocation += "'{revoked_at}', to_jsonb(now()))::text"
    attempts: dict[str, tuple[str, tuple[Any, ...]]] = {
        "claims the owner": (
            "INSERT INTO approvals VALUES (%s, 'run', now(), %s)",
            (forged.approval_id, forged.model_dump_json()),
        ),
        "claims the owner in capitals": (
            "INSERT INTO approvals VALUES (%s, 'run', now(), %s)",
            (shouting.approval_id, shouting.model_dump_json()),
        ),
        "says the owner wrote it": (
            "INSERT INTO approvals (approval_id, scope, created_at, body, written_by) "
            "VALUES (%s, 'run', now(), %s, %s)",
            (own.approval_id, own.model_dump_json(), roles.owner),
        ),
        "revokes as the owner": (
            f"UPDATE approvals SET body = {revocation} WHERE approval_id = %s",
            (f"pg:{roles.owner}", live.approval_id),
        ),
        "retargets an approval": (
            "UPDATE approvals SET body = jsonb_set(body::jsonb, '{target,run_id}', "
            "to_jsonb(%s::text))::text WHERE approval_id = %s",
            (other_run.run_id, live.approval_id),
        ),
        "rewrites the reason": (
            "UPDATE approvals SET body = jsonb_set(body::jsonb, '{reason}', '\"ok\"')::text "
            "WHERE approval_id = %s",
            (live.approval_id,),
        ),
        "un-revokes": (
            "UPDATE approvals SET body = (body::jsonb - ARRAY['revoked_at', 'revoked_by', "
            "'revoke_reason'])::text WHERE approval_id = %s",
            (approved.approval_id,),
        ),
        "revokes again": (
            f"UPDATE approvals SET body = {revocation} WHERE approval_id = %s",
            (f"pg:{app}", approved.approval_id),
        ),
        "rewrites the writer": (
            "UPDATE approvals SET written_by = %s WHERE approval_id = %s",
            (roles.owner, live.approval_id),
        ),
        "clears the writer": (
            "UPDATE approvals SET written_by = NULL WHERE approval_id = %s",
            (live.approval_id,),
        ),
        "rewrites the approver": (
            "UPDATE approvals SET body = jsonb_set(body::jsonb, '{actor}', to_jsonb(%s::text))"
            "::text WHERE approval_id = %s",
            ("alice", live.approval_id),
        ),
        "deletes one": ("DELETE FROM approvals WHERE approval_id = %s", (live.approval_id,)),
        "lifts the policy": ("ALTER TABLE approvals NO FORCE ROW LEVEL SECURITY", ()),
        "drops the policy": ("DROP POLICY approvals_insert ON approvals", ()),
        "drops the trigger": ("DROP TRIGGER approvals_writer_fixed ON approvals", ()),
    }
    for what, (statement, params) in attempts.items():
        assert _refused(app_url, statement, params), what
        assert _rows(owner_url) == before, what
    # The owner obeys the forced policy too: it cannot write under the application's name.
    _refused(
        owner_url,
        "INSERT INTO approvals VALUES (%s, 'run', now(), %s)",
        (own.approval_id, own.model_dump_json()),
    )
    assert _rows(owner_url) == before


async def test_signed_and_embedded_names_are_left_to_the_signature(
    roles: Roles, tmp_path: Path
) -> None:
    """Row-level security judges only ``pg:`` claims: a registered name is proved by its
    signature (the gates and verify check it), an ``os:`` name came from an embedded vault."""
    blobs = await _working_vault(roles, tmp_path)
    async with await Vault.open(roles.url(roles.app), blobs_url=blobs) as vault:
        vault.registry.policy = UNSIGNED
        run = await vault.runs.create(project="rls", actor="tester")
        approved = await vault.registry.approve(
            {"scope": "run", "run_id": run.run_id}, reason="one run"
        )
        for n, name in enumerate(("alice", "os:carol")):
            copy = Approval.model_validate(
                {
                    **approved.model_dump(),
                    "approval_id": f"01900000-0000-7000-8000-00000000000{n}",
                    "actor": name,
                }
            )
            await vault.registry.records.insert_approval(copy)
    assert [w for _, w, _ in _rows(roles.url(roles.owner))] == [roles.app] * 3


async def test_a_role_name_strongroom_makes_safe_is_still_its_own_principal(
    roles: Roles, tmp_path: Path
) -> None:
    """strongroom records a role as ``pg:`` and its name made safe (``$`` -> ``_``); the
    database's check makes it safe the same way, so such a role approves as itself, and
    cannot pass for the role whose name it resembles."""
    blobs = await _working_vault(roles, tmp_path)
    odd = Roles(roles.owner, f"{roles.app}$x", roles.database)
    execute_as(admin_url(), [odd.render(f"CREATE ROLE strongroom_app LOGIN PASSWORD '{PW}'")])
    try:
        execute_as(roles.url(roles.owner), [odd.render(s) for s in documented_role_sql()["3"]])
        async with await Vault.open(odd.url(odd.app), blobs_url=blobs) as vault:
            vault.registry.policy = UNSIGNED
            run = await vault.runs.create(project="rls", actor="tester")
            approved = await vault.registry.approve(
                {"scope": "run", "run_id": run.run_id}, reason="one run"
            )
            assert approved.actor == f"pg:{roles.app}_x"
            assert (await vault.verify()).ok
        twin = Approval.model_validate(
            {**approved.model_dump(), "approval_id": "01900000-0000-7000-8000-0000000000aa"}
        )
        _refused(  # the plain app role is not pg:<app>_x
            roles.url(roles.app),
            "INSERT INTO approvals VALUES (%s, 'run', now(), %s)",
            (twin.approval_id, twin.model_dump_json()),
        )
    finally:
        execute_as(database_url(roles.database), [f'DROP OWNED BY "{odd.app}"'])
        execute_as(admin_url(), [f'DROP ROLE IF EXISTS "{odd.app}"'])
