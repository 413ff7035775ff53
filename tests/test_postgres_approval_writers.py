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

from _pg_fixtures import libpq_url
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
        assert (await vault.verify()).ok

    assert _rows(owner_url) == [(approved.approval_id, roles.app, f"pg:{roles.app}")]

    # Raw SQL as the application role, as a bug or an intruder holding its password would.
    body = forged.model_dump_json()
    own = Approval.model_validate({**forged.model_dump(), "actor": f"pg:{roles.app}"})
    attempts = {
        "claims the owner": ("INSERT INTO approvals VALUES (%s, 'run', now(), %s)", body),
        "says the owner wrote it": (
            "INSERT INTO approvals (approval_id, scope, created_at, body, written_by) "
            "VALUES (%s, 'run', now(), %s, %s)",
            own.model_dump_json(),
            roles.owner,
        ),
        "revoked as the owner": (
            "UPDATE approvals SET body = jsonb_set(body::jsonb, '{revoked_by}', to_jsonb(%s::text))"
            "::text WHERE approval_id = %s",
            f"pg:{roles.owner}",
            approved.approval_id,
        ),
        "rewrites the writer": (
            "UPDATE approvals SET written_by = %s WHERE approval_id = %s",
            roles.owner,
            approved.approval_id,
        ),
        "rewrites the approver": (
            "UPDATE approvals SET body = jsonb_set(body::jsonb, '{actor}', to_jsonb(%s::text))"
            "::text WHERE approval_id = %s",
            "alice",
            approved.approval_id,
        ),
        "lifts the policy": ("ALTER TABLE approvals NO FORCE ROW LEVEL SECURITY",),
        "drops the policy": ("DROP POLICY approvals_insert ON approvals",),
        "drops the trigger": ("DROP TRIGGER approvals_writer_fixed ON approvals",),
    }
    for what, (statement, *params) in attempts.items():
        if statement.startswith("INSERT INTO approvals VALUES"):
            params = [forged.approval_id, *params]
        elif "(approval_id, scope" in statement:
            params = [own.approval_id, *params]
        message = _refused(app_url, statement, tuple(params))
        assert message, what
    # The owner obeys the forced policy too: it cannot write under the application's name.
    _refused(
        owner_url,
        "INSERT INTO approvals VALUES (%s, 'run', now(), %s)",
        (own.approval_id, own.model_dump_json()),
    )
    assert _rows(owner_url) == [(approved.approval_id, roles.app, f"pg:{roles.app}")]


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
