"""The `strongroom` command line, driven through Typer's CliRunner against a real embedded
vault in a temporary directory, plus one end-to-end run of the installed console script."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from _blob_tamper import flip_stored_byte
from strongroom.cli import app
from strongroom.cli._context import EXIT_CODES
from strongroom.errors import StrongroomError
from strongroom.services.runs import RunService

UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SECRET = "sk-demo-1234567890abcdef"
UNKNOWN_RUN = "01890000-0000-7000-8000-000000000000"


class Cli:
    """Invokes the app against one vault directory, the way a user's shell would."""

    def __init__(self, vault: Path) -> None:
        self.vault = vault
        self.runner = CliRunner(
            env={
                "STRONGROOM_URL": None,
                "STRONGROOM_DEBUG": None,
                "FORCE_COLOR": None,
                "COLUMNS": None,
                "NO_COLOR": "1",
            }
        )

    def __call__(self, *args: str, input: str | bytes | None = None) -> Result:
        return self.runner.invoke(app, ["--vault", str(self.vault), *args], input=input)

    def ok(self, *args: str, input: str | bytes | None = None) -> Result:
        result = self(*args, input=input)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok("--json", *args).stdout)

    def new_run(self, project: str = "docs", *extra: str) -> str:
        return self.ok("runs", "create", "--project", project, *extra).stdout.strip()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A CLI bound to a freshly initialised vault."""
    bound = Cli(tmp_path / "vault")
    assert bound("init").exit_code == 0
    return bound


def error_of(result: Result) -> dict[str, Any]:
    document = json.loads(result.stdout)
    assert set(document) == {"error"}
    error = document["error"]
    assert isinstance(error, dict)
    assert set(error) == {"code", "message", "details"}
    return error


# -- runs -----------------------------------------------------------------------------------------


def test_runs_create_prints_only_the_new_run_id(cli: Cli) -> None:
    out = cli.ok("runs", "create", "--project", "docs", "--purpose", "translate").stdout
    assert re.fullmatch(UUID_RE + r"\n", out)
    shown = cli.json("runs", "show", out.strip())
    assert shown["run"]["project"] == "docs"
    assert shown["run"]["purpose"] == "translate"
    assert shown["run"]["status"] == "pending"


def test_runs_list_json_parses_and_filters(cli: Cli) -> None:
    first = cli.new_run("alpha", "--purpose", "Translate the MANUAL")
    second = cli.new_run("alpha", "--actor", "ci-bot")
    third = cli.new_run("beta")
    cli.ok("runs", "start", second)

    everything = cli.json("runs", "list")
    assert everything["total"] == 3
    assert [r["run_id"] for r in everything["items"]] == [third, second, first]  # newest first

    assert {r["run_id"] for r in cli.json("runs", "list", "--project", "alpha")["items"]} == {
        first,
        second,
    }
    running = cli.json("runs", "list", "--status", "running")
    assert running["total"] == 1
    assert running["items"][0]["run_id"] == second
    either = cli.json("runs", "list", "--status", "running", "--status", "pending")
    assert either["total"] == 3
    assert cli.json("runs", "list", "--status", "running,pending")["total"] == 3
    assert [r["run_id"] for r in cli.json("runs", "list", "--search", "manual")["items"]] == [first]
    assert [r["run_id"] for r in cli.json("runs", "list", "--actor", "ci-bot")["items"]] == [second]


def test_runs_list_paginates_with_the_printed_cursor(cli: Cli) -> None:
    ids = [cli.new_run() for _ in range(3)]
    seen: list[str] = []
    page = cli.json("runs", "list", "--limit", "2")
    assert page["total"] == 3
    seen += [r["run_id"] for r in page["items"]]
    assert page["next_cursor"]
    page = cli.json("runs", "list", "--limit", "2", "--cursor", page["next_cursor"])
    seen += [r["run_id"] for r in page["items"]]
    assert page["next_cursor"] is None
    assert seen == list(reversed(ids))

    text = cli.ok("runs", "list", "--limit", "2").stdout
    assert "3 runs match; showing 2; next page: --cursor " in text
    assert all(run_id in text for run_id in ids[1:])  # ids printed in full


def test_runs_list_caps_the_total_unless_exact_total_is_given(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import strongroom.cli.runs as runs_cli

    monkeypatch.setattr(runs_cli, "COUNT_LIMIT", 2)  # the default, 10,000, scaled down
    ids = [cli.new_run() for _ in range(3)]
    capped = cli.json("runs", "list", "--limit", "2")
    assert (capped["total"], capped["total_is_exact"]) == (2, False)
    rest = cli.json("runs", "list", "--limit", "2", "--cursor", capped["next_cursor"])
    assert [r["run_id"] for r in capped["items"] + rest["items"]] == list(reversed(ids))
    exact = cli.json("runs", "list", "--limit", "2", "--exact-total")
    assert (exact["total"], exact["total_is_exact"]) == (3, True)
    text = cli.ok("runs", "list", "--limit", "2").stdout
    assert "2+ runs match (--exact-total counts them all); showing 2; next page: " in text
    text = cli.ok("runs", "list", "--limit", "2", "--exact-total").stdout
    assert "3 runs match; showing 2; next page: " in text


def test_runs_list_footer_formats_large_totals() -> None:
    from strongroom.cli.runs import matches_text
    from strongroom.models import RunPage

    assert matches_text(RunPage(items=[], total=10_000, total_is_exact=False)) == (
        "10,000+ runs match (--exact-total counts them all)"
    )
    assert matches_text(RunPage(items=[], total=12_345)) == "12,345 runs match"
    assert matches_text(RunPage(items=[], total=1)) == "1 run matches"


def test_runs_list_date_filters_take_iso_dates_and_include_the_until_day(cli: Cli) -> None:
    cli.new_run()
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    assert cli.json("runs", "list", "--since", str(yesterday), "--until", str(today))["total"] == 1
    assert cli.json("runs", "list", "--until", str(yesterday))["total"] == 0
    assert cli.json("runs", "list", "--since", f"{today + timedelta(days=1)}T00:00Z")["total"] == 0


def test_runs_list_text_shows_a_table_and_total(cli: Cli) -> None:
    run_id = cli.new_run("docs", "--purpose", "weekly [bold]export[/bold]")
    out = cli.ok("runs", "list").stdout
    assert "RUN ID" in out
    assert run_id in out
    assert "weekly [bold]export[/bold]" in out  # user text is never read as Rich markup
    assert "1 run matches" in out


def test_run_lifecycle_transitions_and_show(cli: Cli) -> None:
    run_id = cli.new_run()
    assert cli.ok("runs", "start", run_id).stdout == f"run {run_id} is now running\n"
    cli.ok("logs", "append", run_id, "--event", "step.done", "--message", "hello")
    assert "completed (success)" in cli.ok("runs", "complete", run_id).stdout

    details = cli.json("runs", "show", run_id)
    assert details["run"]["status"] == "completed"
    assert details["log"]["sealed"] is True
    assert details["log"]["entry_count"] == 1
    assert details["artifact_count"] == 1  # the sealed log
    assert details["latest_snapshot"] is None

    text = cli.ok("runs", "show", run_id).stdout
    assert run_id in text
    assert "sealed as artifact" in text
    assert re.search(r"created_at\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)


def test_runs_fail_records_code_and_message(cli: Cli) -> None:
    run_id = cli.new_run()
    cli.ok("runs", "fail", run_id, "--code", "upstream_down", "--message", "MT API unreachable")
    run = cli.json("runs", "show", run_id)["run"]
    assert run["status"] == "failed"
    assert run["last_error"]["code"] == "upstream_down"
    assert run["last_error"]["message"] == "MT API unreachable"
    assert "[upstream_down] MT API unreachable" in cli.ok("runs", "show", run_id).stdout


def test_illegal_transition_is_a_conflict_with_exit_code_4(cli: Cli) -> None:
    run_id = cli.new_run()
    result = cli("runs", "complete", run_id)
    assert result.exit_code == 4
    assert result.stderr.startswith("error[conflict]: ")
    assert "cannot go from pending to completed" in result.stderr


# -- artifacts ------------------------------------------------------------------------------------


def test_artifact_put_then_get_round_trips_the_bytes(cli: Cli, tmp_path: Path) -> None:
    payload = os.urandom(300_000) + b"\x00\xff tail"
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    run_id = cli.new_run()

    out = cli.ok("artifacts", "put", run_id, str(source), "--role", "export").stdout
    artifact_id, checksum = out.split()
    assert checksum == f"sha256:{hashlib.sha256(payload).hexdigest()}"

    dest = tmp_path / "fetched.bin"
    cli.ok("artifacts", "get", artifact_id, "--output", str(dest))
    assert dest.read_bytes() == payload

    piped = cli.ok("artifacts", "get", artifact_id, "-o", "-")
    assert piped.stdout_bytes == payload


def test_artifacts_put_prints_id_and_prefixed_checksum(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "segments.jsonl"
    source.write_text('{"id": 1}\n{"id": 2}\n')
    run_id = cli.new_run()
    out = cli.ok(
        "artifacts", "put", run_id, str(source), "--role", "phase_output", "--phase", "ingest",
        "--label", "fr", "--tag", "a", "--tag", "b", "--description", "segments",
    ).stdout  # fmt: skip
    assert re.fullmatch(UUID_RE + r" sha256:[0-9a-f]{64}\n", out)

    meta = cli.json("artifacts", "show", out.split()[0])
    assert meta["run_id"] == run_id
    assert meta["format"] == "jsonl"  # inferred from the extension
    assert meta["role"] == "phase_output"
    assert meta["phase"] == "ingest"
    assert meta["label"] == "fr"
    assert meta["tags"] == ["a", "b"]
    assert meta["name"] == "segments.jsonl"


def test_artifacts_put_reads_stdin_with_dash(cli: Cli) -> None:
    run_id = cli.new_run()
    out = cli.ok(
        "artifacts", "put", run_id, "-", "--role", "custom", "--name", "notes.txt", input="hi\n"
    ).stdout
    artifact_id = out.split()[0]
    assert cli.ok("artifacts", "get", artifact_id, "-o", "-").stdout_bytes == b"hi\n"
    assert cli.json("artifacts", "show", artifact_id)["format"] == "txt"


def test_artifacts_list_filters_by_run_role_and_phase(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.csv").write_text("x,y\n1,2\n")
    run_a, run_b = cli.new_run(), cli.new_run()
    first = cli.ok("artifacts", "put", run_a, str(tmp_path / "a.txt"), "--role", "report")
    cli.ok("artifacts", "put", run_a, str(tmp_path / "b.csv"), "--role", "export", "--phase", "qa")
    cli.ok("artifacts", "put", run_b, str(tmp_path / "a.txt"), "--role", "report")

    assert len(cli.json("artifacts", "list")["items"]) == 3
    of_a = cli.json("artifacts", "list", "--run", run_a)["items"]
    assert {a["name"] for a in of_a} == {"a.txt", "b.csv"}
    reports = cli.json("artifacts", "list", "--role", "report")["items"]
    assert {a["run_id"] for a in reports} == {run_a, run_b}
    assert [a["name"] for a in cli.json("artifacts", "list", "--phase", "qa")["items"]] == ["b.csv"]

    text = cli.ok("artifacts", "list", "--run", run_a).stdout
    assert first.stdout.split()[0] in text
    assert "2 artifacts" in text


def test_artifacts_get_never_replaces_a_file_it_was_not_told_to(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "report.txt"
    source.write_text("v1")
    run_id = cli.new_run()
    artifact_id = cli.ok(
        "artifacts", "put", run_id, str(source), "--role", "report"
    ).stdout.split()[0]
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)

    cli.ok("artifacts", "get", artifact_id)  # default destination: the artifact's name
    assert (workdir / "report.txt").read_text() == "v1"
    (workdir / "report.txt").write_text("local edits")
    again = cli("--json", "artifacts", "get", artifact_id)
    assert again.exit_code == 4
    assert error_of(again)["code"] == "conflict"
    assert (workdir / "report.txt").read_text() == "local edits"


def test_artifacts_get_of_a_tampered_blob_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(b"original bytes" * 100)
    run_id = cli.new_run()
    out = cli.ok("artifacts", "put", run_id, str(source), "--role", "custom").stdout
    artifact_id, checksum = out.split()
    flip_stored_byte(cli.vault, checksum)

    dest = tmp_path / "out.bin"
    result = cli("artifacts", "get", artifact_id, "-o", str(dest))
    assert result.exit_code == 5
    assert result.stderr.startswith("error[integrity_error]: ")
    assert not dest.exists()
    piped = cli("artifacts", "get", artifact_id, "-o", "-")
    assert piped.exit_code == 5
    assert piped.stdout_bytes == b""  # nothing unverified reaches stdout


# -- logs -----------------------------------------------------------------------------------------


def test_logs_show_prints_redacted_text(cli: Cli) -> None:
    run_id = cli.new_run()
    cli.ok(
        "logs", "append", run_id, "--event", "mt.request", "--level", "debug",
        "--message", f"calling MT with api_key={SECRET}", "--data", json.dumps({"key": SECRET}),
    )  # fmt: skip
    cli.ok("logs", "append", run_id, "--event", "qa.warn", "--level", "warning", "-m", "long")

    text = cli.ok("logs", "show", run_id).stdout
    assert "calling MT with [REDACTED]" in text
    assert '"key":"[REDACTED]"' in text
    assert SECRET not in text

    entries = cli.json("logs", "show", run_id)["entries"]
    assert [e["message"] for e in entries] == ["calling MT with [REDACTED]", "long"]
    assert SECRET not in json.dumps(entries)

    warnings = cli.json("logs", "show", run_id, "--level", "warning")["entries"]
    assert [e["event"] for e in warnings] == ["qa.warn"]
    assert [e["seq"] for e in cli.json("logs", "show", run_id, "--tail", "1")["entries"]] == [2]
    tail_of_debug = cli.json("logs", "show", run_id, "--level", "debug", "--tail", "1")
    assert [e["event"] for e in tail_of_debug["entries"]] == ["qa.warn"]
    assert [
        e["event"] for e in cli.json("logs", "show", run_id, "-e", "mt.request")["entries"]
    ] == ["mt.request"]
    assert "1 of 2 lines" in cli.ok("logs", "show", run_id, "--tail", "1").stdout


def test_logs_append_prints_the_sequence_number(cli: Cli) -> None:
    run_id = cli.new_run()
    assert cli.ok("logs", "append", run_id, "--event", "a").stdout == "1\n"
    assert cli.ok("logs", "append", run_id, "--event", "b", "--phase", "ingest").stdout == "2\n"
    entry = cli.json("logs", "append", run_id, "--event", "c", "--data", '{"rows": 3}')
    assert entry["seq"] == 3
    assert entry["data"] == {"rows": 3}


def test_logs_append_lines_stores_each_stdin_line(cli: Cli) -> None:
    run_id = cli.new_run()
    out = cli.ok(
        "logs", "append", run_id, "--event", "tool.output", "--lines", input="one\ntwo\nthree\n"
    )
    assert out.stdout == "3\n"
    entries = cli.json("logs", "show", run_id)["entries"]
    assert [e["message"] for e in entries] == ["one", "two", "three"]
    assert {e["event"] for e in entries} == {"tool.output"}


def test_logs_append_message_dash_reads_stdin(cli: Cli) -> None:
    run_id = cli.new_run()
    cli.ok("logs", "append", run_id, "--event", "note", "--message", "-", input="from a pipe\n")
    assert cli.json("logs", "show", run_id)["entries"][0]["message"] == "from a pipe"


# -- audit and init -------------------------------------------------------------------------------


def test_audit_show_lists_run_events_and_pages(cli: Cli) -> None:
    run_id = cli.new_run()
    view = cli.json("audit", "show", "--limit", "1000")
    created = [e for e in view["entries"] if e["event"] == "run.created"]
    assert [e["subject_id"] for e in created] == [run_id]
    assert view["head_seq"] == view["entries"][-1]["seq"]
    assert view["next_after"] is None

    first = cli.json("audit", "show", "--limit", "2")
    assert [e["seq"] for e in first["entries"]] == [1, 2]
    assert first["next_after"] == 2
    assert cli.json("audit", "show", "--after", "2", "--limit", "1")["entries"][0]["seq"] == 3
    assert "run.created" in cli.ok("audit", "show", "--limit", "1000").stdout


def test_init_creates_the_vault_and_names_its_backends(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "fresh")
    info = cli.json("init")
    assert info["created"] is True
    assert info["metadata_backend"] == "sqlite"
    assert info["blob_backend"] == "local"
    assert (cli.vault / "vault.db").exists()
    again = cli.ok("init").stdout
    assert again.startswith("Opened existing vault")
    assert "sqlite" in again
    assert str(cli.vault) in again


def test_vault_url_comes_from_the_environment(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "from-env"
    result = cli.runner.invoke(
        app, ["runs", "create", "--project", "env"], env={"STRONGROOM_URL": str(other)}
    )
    assert result.exit_code == 0, result.stderr
    assert (other / "vault.db").exists()


# -- verify ---------------------------------------------------------------------------------------


def test_verify_exits_0_when_intact_and_1_after_a_flipped_blob_byte(
    cli: Cli, tmp_path: Path
) -> None:
    source = tmp_path / "export.bin"
    source.write_bytes(b"export payload " * 50)
    run_id = cli.new_run()
    checksum = cli.ok("artifacts", "put", run_id, str(source), "--role", "export").stdout.split()[1]

    clean = cli.ok("verify")
    assert "Vault intact" in clean.stdout
    assert cli.json("verify")["ok"] is True

    digest = checksum.removeprefix("sha256:")
    flip_stored_byte(cli.vault, digest)
    broken = cli("verify")
    assert broken.exit_code == 1
    problem_lines = [line for line in broken.stdout.splitlines() if digest in line]
    assert len(problem_lines) == 1
    assert "integrity_error" in problem_lines[0]

    as_json = cli("--json", "verify")
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert report["checked"]["blobs"] >= 1
    assert [p["subject"] for p in report["problems"] if p["kind"] == "blob"] == [digest]


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_run_is_not_found_with_exit_code_3(cli: Cli) -> None:
    as_json = cli("--json", "runs", "show", UNKNOWN_RUN)
    assert as_json.exit_code == 3
    error = error_of(as_json)
    assert error["code"] == "not_found"
    assert UNKNOWN_RUN in error["message"]
    assert error["details"]["run_id"] == UNKNOWN_RUN
    assert as_json.stderr == ""

    text = cli("runs", "show", UNKNOWN_RUN)
    assert text.exit_code == 3
    assert text.stdout == ""
    assert text.stderr.startswith("error[not_found]: ")
    assert text.stderr.count("\n") == 1
    assert "Traceback" not in text.output


def test_json_flag_after_the_command_works_too(cli: Cli) -> None:
    result = cli("runs", "show", UNKNOWN_RUN, "--json")
    assert result.exit_code == 3
    assert error_of(result)["code"] == "not_found"


def test_path_traversal_project_is_a_validation_error_and_writes_nothing(cli: Cli) -> None:
    result = cli("--json", "runs", "create", "--project", "../x")
    assert result.exit_code == 2
    assert error_of(result)["code"] == "validation_error"
    assert cli.json("runs", "list")["total"] == 0
    assert not (cli.vault.parent / "x").exists()


@pytest.mark.parametrize(
    ("args", "code", "exit_code"),
    [
        (["runs", "list", "--status", "bogus"], "validation_error", 2),
        (["runs", "list", "--since", "last tuesday"], "validation_error", 2),
        (["runs", "show", "not-an-id"], "validation_error", 2),
        (["logs", "append", UNKNOWN_RUN, "--event", "e", "--data", "{oops"], "validation_error", 2),
        (
            ["logs", "append", UNKNOWN_RUN, "--event", "e", "--data", "[1, 2]"],
            "validation_error",
            2,
        ),
        (["logs", "append", UNKNOWN_RUN, "--event", "e"], "not_found", 3),
        (["logs", "show", UNKNOWN_RUN, "--level", "loud"], "validation_error", 2),
        (["artifacts", "put", UNKNOWN_RUN, "/no/such/file", "--role", "custom"], "not_found", 3),
        (["artifacts", "get", UNKNOWN_RUN], "not_found", 3),
        (["artifacts", "list", "--run", UNKNOWN_RUN], "not_found", 3),
        (["audit", "show", "--limit", "0"], "validation_error", 2),
        (["runs", "list", "--bogus-option"], "usage_error", 2),
    ],
)
def test_bad_input_is_a_structured_error(
    cli: Cli, args: list[str], code: str, exit_code: int
) -> None:
    as_json = cli("--json", *args)
    assert as_json.exit_code == exit_code, as_json.output
    assert error_of(as_json)["code"] == code

    text = cli(*args)
    assert text.exit_code == exit_code
    assert "Traceback" not in text.output
    if code != "usage_error":  # Typer's own usage errors keep Typer's format
        assert text.stderr.startswith(f"error[{code}]: ")
        assert text.stderr.count("\n") == 1


def test_bad_role_is_refused_before_anything_is_stored(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("a")
    run_id = cli.new_run()
    result = cli("--json", "artifacts", "put", run_id, str(source), "--role", "nonsense")
    assert result.exit_code == 2
    assert "role" in error_of(result)["message"]
    assert cli.json("artifacts", "list")["items"] == []


def test_unexpected_exception_is_one_internal_line_and_exit_70(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: RunService, run_id: str) -> None:
        raise RuntimeError("disk gremlins")

    monkeypatch.setattr(RunService, "get", broken)
    result = cli("runs", "show", UNKNOWN_RUN)
    assert result.exit_code == 70
    assert result.stderr == "error[internal]: RuntimeError: disk gremlins\n"

    as_json = cli("--json", "runs", "show", UNKNOWN_RUN)
    assert as_json.exit_code == 70
    assert error_of(as_json)["code"] == "internal"

    debug = cli.runner.invoke(
        app, ["--vault", str(cli.vault), "runs", "show", UNKNOWN_RUN], env={"STRONGROOM_DEBUG": "1"}
    )
    assert debug.exit_code == 70
    assert "Traceback (most recent call last)" in debug.stderr


# -- the installed console script -----------------------------------------------------------------


def test_installed_console_script_works_end_to_end(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "strongroom"
    assert script.exists(), "the package must be installed in the venv (pip install -e .)"
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "STRONGROOM_DEBUG")}
    env["STRONGROOM_URL"] = str(tmp_path / "vault")

    def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(script), *args], input=stdin, capture_output=True, env=env, timeout=120
        )

    created = run("runs", "create", "--project", "e2e")
    assert created.returncode == 0, created.stderr
    run_id = created.stdout.decode().strip()
    assert re.fullmatch(UUID_RE, run_id)

    put = run(
        "artifacts", "put", run_id, "-", "--role", "custom", "--name", "x.bin", stdin=b"\x00e2e"
    )
    assert put.returncode == 0, put.stderr
    got = run("artifacts", "get", put.stdout.decode().split()[0], "-o", "-")
    assert got.stdout == b"\x00e2e"

    shown = run("--json", "runs", "show", run_id)
    assert json.loads(shown.stdout)["artifact_count"] == 1

    missing = run("runs", "show", UNKNOWN_RUN)
    assert missing.returncode == 3
    assert missing.stdout == b""
    assert missing.stderr.decode().startswith("error[not_found]: ")
    assert b"Traceback" not in missing.stderr

    assert run("verify").returncode == 0
    usage = run("runs", "frobnicate")
    assert usage.returncode == 2
    assert b"Traceback" not in usage.stderr


def test_every_error_code_has_its_own_documented_exit_code() -> None:
    codes = {cls.code for cls in StrongroomError.__subclasses__()}
    assert codes <= set(EXIT_CODES), codes - set(EXIT_CODES)
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)  # one exit code per error code
    docs = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    for code, exit_code in EXIT_CODES.items():
        assert f"| {exit_code} | `{code}` |" in docs, code


def test_read_commands_do_not_create_a_missing_vault(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    result = CliRunner().invoke(app, ["--vault", str(missing), "--json", "runs", "list"])
    assert result.exit_code == 3
    assert json.loads(result.stdout)["error"]["code"] == "not_found"
    assert not missing.exists()


def test_a_blob_directory_named_apart_is_made_by_its_first_write_only(tmp_path: Path) -> None:
    """A command refused after it opened the vault leaves no ``--blobs`` folder behind (found
    by the CLI fuzzer); the first write makes it."""
    vault, blobs = tmp_path / "vault", tmp_path / "elsewhere"
    runner = CliRunner()
    created = runner.invoke(app, ["--vault", str(vault), "--json", "runs", "create", "-p", "x"])
    assert created.exit_code == 0, created.output
    run_id = json.loads(created.stdout)["run_id"]
    base = ["--vault", str(vault), "--blobs", str(blobs)]
    refused = runner.invoke(app, [*base, "runs", "create", "-p", "not a name!"])
    assert refused.exit_code == 2, refused.output
    assert not blobs.exists()
    listed = runner.invoke(app, [*base, "runs", "list"])
    assert listed.exit_code == 0, listed.output
    assert not blobs.exists()
    payload = tmp_path / "payload.txt"
    payload.write_text("first write " * 10_000)  # over 64 KiB: a file, not a row
    put = runner.invoke(app, [*base, "artifacts", "put", run_id, str(payload), "--role", "custom"])
    assert put.exit_code == 0, put.output
    assert (blobs / "sha256").is_dir()
