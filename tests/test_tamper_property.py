"""Random single-row tampering, found every time: Hypothesis picks a chained table of a
populated embedded vault, a row, and an edit (a field of the body changed, the row deleted, two
rows' bodies swapped, a copied column changed), applies it to a fresh copy of the vault, and
``verify`` must report at least one problem. 300 examples in the slow suite (``-m slow``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from _tamper_vault import Populated, populate
from strongroom.integrity import SigningKey

# Table -> its key columns (what a tamper names a row by).
TABLES: dict[str, tuple[str, ...]] = {
    "runs": ("run_id",),
    "snapshots": ("run_id", "revision"),
    "artifacts": ("artifact_id",),
    "log_entries": ("run_id", "seq"),
    "log_refs": ("run_id",),
    "audit_entries": ("seq",),
    "audit_bindings": ("seq", "pos"),
    "audit_checkpoints": ("tree_size",),
    "providers": ("provider_id",),
    "namespaces": ("namespace_id",),
    "catalog_objects": ("object_id",),
    "definition_versions": ("kind", "definition_id", "digest"),
    "channel_moves": ("move_id",),
    "channel_pointers": ("kind", "definition_id", "channel"),
    "artifact_tags": ("artifact_id", "tag"),
    "approvals": ("approval_id",),
}

EXAMPLES = 300


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Populated:
    root = tmp_path_factory.mktemp("template")
    vault_dir = root / "vault"
    return asyncio.run(
        populate(str(vault_dir), vault_dir / "blobs", SigningKey.generate(), root / "a.jsonl")
    )


def _rows(conn: sqlite3.Connection, table: str) -> list[sqlite3.Row]:
    keys = ", ".join(TABLES[table])
    return list(conn.execute(f"SELECT * FROM {table} ORDER BY {keys}"))


def _where(table: str, row: sqlite3.Row) -> tuple[str, list[Any]]:
    keys = TABLES[table]
    return " AND ".join(f"{k} = ?" for k in keys), [row[k] for k in keys]


def _mutate(value: Any, salt: int) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1 + salt
    if isinstance(value, str):
        return value[:-1] + ("x" if not value.endswith("x") else "y") if value else "x"
    if value is None:
        return "tampered"
    if isinstance(value, list):
        return [*value, "tampered"]
    if isinstance(value, dict):
        return {**value, "tampered": salt}
    return "tampered"


def tamper(db: Path, data: st.DataObject) -> str:
    """Apply one random edit; returns its description (Hypothesis shows it on failure)."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        ).fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        table = data.draw(st.sampled_from(sorted(TABLES)), label="table")
        rows = _rows(conn, table)
        assume(rows)
        row = rows[data.draw(st.integers(0, len(rows) - 1), label="row")]
        where, args = _where(table, row)
        columns = [c for c in row.keys() if c != "body"]  # noqa: SIM118 - sqlite3.Row
        ops = ["delete", "column"] + (["body", "swap"] if "body" in row.keys() else [])  # noqa: SIM118
        op = data.draw(st.sampled_from(ops), label="op")
        if op == "delete":
            try:
                conn.execute(f"DELETE FROM {table} WHERE {where}", args)
            except sqlite3.IntegrityError:
                assume(False)  # a foreign key refuses it: not a tamper that happened
            described = f"delete {table} {args}"
        elif op == "column":
            column = data.draw(st.sampled_from(columns), label="column")
            new = _mutate(row[column], 0)
            try:
                conn.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", [new, *args])
            except sqlite3.IntegrityError:
                assume(False)
            described = f"column {table}.{column} {args}: {row[column]!r} -> {new!r}"
        elif op == "body":
            body = json.loads(row["body"])
            assume(body)
            field = data.draw(st.sampled_from(sorted(body)), label="field")
            body[field] = _mutate(body[field], data.draw(st.integers(0, 3), label="salt"))
            conn.execute(f"UPDATE {table} SET body = ? WHERE {where}", [json.dumps(body), *args])
            described = f"body {table}.{field} {args}"
        else:
            assume(len(rows) > 1)
            other = rows[data.draw(st.integers(0, len(rows) - 1), label="other")]
            assume(other["body"] != row["body"])
            other_where, other_args = _where(table, other)
            conn.execute(f"UPDATE {table} SET body = ? WHERE {where}", [other["body"], *args])
            conn.execute(
                f"UPDATE {table} SET body = ? WHERE {other_where}", [row["body"], *other_args]
            )
            described = f"swap {table} {args} <-> {other_args}"
        conn.commit()
        return described
    finally:
        conn.close()


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_every_random_single_row_tamper_is_detected(
    template: Populated, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    root = tmp_path_factory.mktemp("copy")
    shutil.copytree(Path(template.url), root / "vault")
    copy = Populated(
        url=str(root / "vault"),
        blobs_dir=root / "vault" / "blobs",
        key=template.key,
        anchors=template.anchors,
    )
    db = copy.sqlite_path
    assert db is not None
    described = tamper(db, data)
    report = asyncio.run(copy.verify(with_anchor=True))
    assert not report.ok, f"undetected: {described}"
    shutil.rmtree(root)
