"""`audit show --event/--actor/--run/--newest` and `verify` recording its outcome, end to end
through the CLI: the filters page exactly the matching entries both ways, bad filters are
structured errors naming the option, and verify appends one ``vault.verified`` entry (none with
``--no-record``; a warning, same verdict, when the database role cannot write)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner, Result

from _blob_tamper import write_stored_blob
from _pg_fixtures import libpq_url
from _pg_roles import Roles, execute_as
from strongroom.cli import app
from strongroom.models import VERIFIED_EVENT, AuditEntry, AuditQuery
from strongroom.vault import Vault


@pytest.fixture(autouse=True)
def no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM_SIGNING_KEY", str(tmp_path / "no-key.pem"))
    monkeypatch.delenv("STRONGROOM_ANCHOR", raising=False)


def cli(vault: str, *args: str) -> Result:
    return CliRunner(env={"NO_COLOR": "1"}).invoke(app, ["--vault", vault, *args])


def ok_json(vault: str, *args: str) -> Any:
    result = cli(vault, *args, "--json")
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return json.loads(result.stdout)


def populate(vault: str) -> tuple[str, str]:
    first = ok_json(vault, "runs", "create", "-p", "cli", "--actor", "ada")["run_id"]
    second = ok_json(vault, "runs", "create", "-p", "cli", "--actor", "bob")["run_id"]
    for run_id, actor in ((first, "ada"), (second, "bob")):
        assert cli(vault, "runs", "start", run_id, "--actor", actor).exit_code == 0
        assert cli(vault, "logs", "append", run_id, "-e", "e", "-m", "hi").exit_code == 0
    assert cli(vault, "runs", "complete", first, "--actor", "ada").exit_code == 0
    return first, second


def all_entries(vault: str) -> list[AuditEntry]:
    shown = ok_json(vault, "audit", "show", "-n", "10000")
    return [AuditEntry.model_validate(e) for e in shown["entries"]]


def walk(vault: str, *args: str) -> list[int]:
    """Every seq ``audit show ARGS`` pages through, two at a time, following the cursor."""
    seqs: list[int] = []
    cursor: list[str] = []
    while True:
        page = ok_json(vault, "audit", "show", *args, "-n", "2", *cursor)
        seqs += [e["seq"] for e in page["entries"]]
        if page["next_cursor"] is None:
            return seqs
        cursor = ["--cursor", page["next_cursor"]]


@pytest.mark.parametrize(
    "filters",
    [
        ["--run", "FIRST"],
        ["--actor", "bob"],
        ["-e", "run.status"],
        ["--event", "run."],
        ["--event", "log.", "--run", "SECOND"],
        ["--actor", "ada", "-e", "run."],
        [],
    ],
)
def test_filters_page_both_ways(tmp_path: Path, filters: list[str]) -> None:
    vault = str(tmp_path / "vault")
    first, second = populate(vault)
    args = [{"FIRST": first, "SECOND": second}.get(a, a) for a in filters]
    names = {"--run": "run_id", "--actor": "actor", "-e": "event", "--event": "event"}
    query = AuditQuery.model_validate(
        dict(zip([names[a] for a in args[::2]], args[1::2], strict=True))
    )
    matching = [e.seq for e in all_entries(vault) if query.matches(e)]
    assert matching
    assert walk(vault, *args) == matching
    assert walk(vault, *args, "--newest") == list(reversed(matching))


def test_a_run_shows_its_history_as_a_table(tmp_path: Path) -> None:
    vault = str(tmp_path / "vault")
    first, second = populate(vault)
    shown = cli(vault, "audit", "show", "--run", first)
    assert shown.exit_code == 0, shown.output
    for event in ("run.created", "run.status", "run.ended", "log.sealed"):
        assert event in shown.stdout
    assert second not in shown.stdout
    empty = cli(vault, "audit", "show", "--actor", "nobody")
    assert empty.exit_code == 0
    assert "No matching audit entries." in empty.stdout


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--run", "not-a-run"], "--run"),
        (["--event", "Run.Created"], "--event"),
        (["--actor", "../etc"], "--actor"),
        (["--newest", "--cursor", "0"], "--cursor"),
    ],
)
def test_bad_filters_are_validation_errors_naming_the_option(
    tmp_path: Path, args: list[str], option: str
) -> None:
    vault = str(tmp_path / "vault")
    populate(vault)
    result = cli(vault, "audit", "show", *args, "--json")
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "validation_error"
    assert option in error["message"]


# -- verify records its outcome ----------------------------------------------------------------


def test_verify_records_its_outcome_and_stays_clean(tmp_path: Path) -> None:
    vault = str(tmp_path / "vault")
    populate(vault)
    head = ok_json(vault, "audit", "show", "--newest", "-n", "1")["head_seq"]
    first = ok_json(vault, "verify")
    assert first["ok"] is True
    assert first["recorded_seq"] == head + 1
    last = ok_json(vault, "audit", "show", "-e", VERIFIED_EVENT, "--newest", "-n", "1")
    (entry,) = last["entries"]
    assert entry["seq"] == first["recorded_seq"]
    assert entry["actor"].startswith("os:")
    assert entry["details"]["ok"] is True
    assert entry["details"]["checked"] == first["checked"]
    assert entry["details"]["problem_count"] == 0

    # The next verify is clean, counts the recorded entry, and records its own.
    second = ok_json(vault, "verify")
    assert second["ok"] is True
    assert second["checked"]["audit_entries"] >= first["recorded_seq"]
    assert second["recorded_seq"] > first["recorded_seq"]
    text = cli(vault, "verify")
    assert text.exit_code == 0
    assert "Vault intact" in text.stdout
    assert "recorded as audit entry" in text.stdout


def test_verify_no_record_writes_nothing(tmp_path: Path) -> None:
    vault = str(tmp_path / "vault")
    populate(vault)
    head = ok_json(vault, "audit", "show", "--newest", "-n", "1")["head_seq"]
    result = ok_json(vault, "verify", "--no-record")
    assert (result["ok"], result["recorded_seq"]) == (True, None)
    assert ok_json(vault, "audit", "show", "--newest", "-n", "1")["head_seq"] == head
    assert ok_json(vault, "audit", "show", "-e", VERIFIED_EVENT)["entries"] == []


def test_a_verify_with_problems_records_them_and_exits_1(tmp_path: Path) -> None:
    vault = str(tmp_path / "vault")
    _, running = populate(vault)
    put = cli(
        vault, "artifacts", "put", running, str(_file(tmp_path)), "--role", "custom", "--json"
    )
    assert put.exit_code == 0, put.output
    digest = json.loads(put.stdout)["sha256"]
    write_stored_blob(tmp_path / "vault", digest, b"tampered")
    result = cli(vault, "verify", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert isinstance(report["recorded_seq"], int)
    (entry,) = ok_json(vault, "audit", "show", "-e", VERIFIED_EVENT)["entries"]
    assert entry["details"]["ok"] is False
    assert entry["details"]["problem_count"] == len(report["problems"])
    assert entry["details"]["problem_kinds"]["blob"] == 1


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "payload.txt"
    path.write_bytes(b"payload")
    return path


@pytest.mark.postgres
def test_a_read_only_role_verifies_with_a_warning(roles: Roles, tmp_path: Path) -> None:
    """An auditor's role that may only read: verify reports as usual, exit 0, and says on
    stderr that the outcome could not be recorded."""
    blobs = str(tmp_path / "blobs")

    async def make() -> None:
        async with await Vault.open(roles.url(roles.owner), blobs_url=blobs) as vault:
            run = await vault.runs.create(project="ro", actor="ada")
            await vault.runs.start(run.run_id)

    asyncio.run(make())
    execute_as(
        roles.url(roles.owner),
        [
            f"GRANT CONNECT ON DATABASE {roles.database} TO {roles.app}",
            f"GRANT USAGE ON SCHEMA public TO {roles.app}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {roles.app}",
        ],
    )
    result = CliRunner(env={"NO_COLOR": "1"}).invoke(
        app, ["--vault", roles.url(roles.app), "--blobs", blobs, "verify", "--json"]
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    report = json.loads(result.stdout)
    assert (report["ok"], report["recorded_seq"]) == (True, None)
    assert "warning: the outcome was not recorded in the audit chain" in result.stderr
    assert "permission_denied" in result.stderr
    with psycopg.connect(libpq_url(roles.url(roles.owner))) as conn:
        events = [row[0] for row in conn.execute(b"SELECT event FROM audit_entries")]
    assert VERIFIED_EVENT not in events
