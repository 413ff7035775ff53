"""The command line's grammar (docs/cli.md "Grammar"): global options before or after the
command, one meaning per short flag, one paging style, one cancel; and how a command finds its
vault: --vault / $STRONGROOM_URL, else the nearest .strongroom up the tree, and never a write
into a file or database that is not a strongroom vault."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import create_engine, text
from typer.testing import CliRunner, Result

from strongroom.cli import app
from strongroom.cli._context import CEILING_ENV

_ENV: dict[str, str | None] = {
    "STRONGROOM_URL": None,
    "STRONGROOM_BLOBS_URL": None,
    "STRONGROOM_DEBUG": None,
    "NO_COLOR": "1",
}


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner(env={**_ENV, **(env or {})}).invoke(app, list(args))


def ok(*args: str) -> Result:
    result = invoke(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def error_of(result: Result) -> dict[str, Any]:
    document = json.loads(result.stdout)
    error = document["error"]
    assert isinstance(error, dict)
    return error


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory below which (and only below which) a vault is looked for."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv(CEILING_ENV, str(tmp_path))
    return work


def fingerprint(path: Path) -> dict[str, str]:
    """Every file under ``path`` (or the file itself) with the SHA-256 of its bytes."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


# -- the grammar, checked on the whole command tree ---------------------------------------------


def _commands() -> Iterator[tuple[str, Any]]:
    root = typer.main.get_command(app)
    stack: list[tuple[str, Any]] = [("strongroom", root)]
    while stack:
        name, command = stack.pop()
        yield name, command
        for sub_name, sub in getattr(command, "commands", {}).items():
            stack.append((f"{name} {sub_name}", sub))


def test_a_short_flag_means_the_same_long_option_in_every_command() -> None:
    meaning: dict[str, tuple[str, str]] = {}
    for name, command in _commands():
        for param in command.params:
            opts = list(getattr(param, "opts", ())) + list(getattr(param, "secondary_opts", ()))
            shorts = [o for o in opts if len(o) == 2 and o.startswith("-")]
            longs = [o for o in opts if o.startswith("--")]
            for short in shorts:
                long = longs[0] if longs else "?"
                first = meaning.setdefault(short, (long, name))
                assert first[0] == long, (
                    f"{short} is {first[0]} in `{first[1]}` but {long} in `{name}`"
                )
    assert meaning["-r"][0] == "--reason"
    assert meaning["-n"][0] == "--limit"


def test_every_paged_listing_pages_with_limit_and_cursor() -> None:
    paged = []
    for name, command in _commands():
        opts = {o for p in command.params for o in getattr(p, "opts", ())}
        if "--cursor" in opts:
            paged.append(name)
            assert {"--limit", "-n"} <= opts, name
        assert "--after" not in opts or "--cursor" in opts, name
    assert {"strongroom runs list", "strongroom audit show", "strongroom logs show"} <= set(paged)


def test_global_options_work_after_the_command_name_too(here: Path) -> None:
    vault = here / "elsewhere"
    ok("--vault", str(vault), "init")
    run_id = ok("runs", "create", "-p", "docs", "--vault", str(vault)).stdout.strip()
    before = json.loads(ok("--vault", str(vault), "--json", "runs", "list").stdout)
    after = json.loads(ok("runs", "list", "--vault", str(vault), "--json").stdout)
    assert [r["run_id"] for r in before["items"]] == [run_id]
    assert after["items"] == before["items"]
    # After the command it wins over what came before it (the nearer one, as for any option).
    other = here / "other"
    ok("init", "--vault", str(other))
    listed = json.loads(
        ok("--vault", str(vault), "runs", "list", "--vault", str(other), "--json").stdout
    )
    assert listed["items"] == []
    # A group takes them too, and a command without its own --json still prints JSON.
    assert json.loads(ok("runs", "--vault", str(vault), "show", run_id, "--json").stdout)
    help_text = ok("keys", "show", "--help").stdout
    assert "--vault" in help_text
    assert "--install-completion" not in help_text  # the root's own, not every command's


# -- finding the vault ----------------------------------------------------------------------------


def test_a_command_finds_the_vault_of_a_parent_directory(here: Path) -> None:
    created = json.loads(ok("init", "--json").stdout)
    assert created["created"] is True
    run_id = ok("runs", "create", "-p", "docs").stdout.strip()
    deep = here / "a" / "b" / "c"
    deep.mkdir(parents=True)
    os.chdir(deep)
    listed = json.loads(ok("runs", "list", "--json").stdout)
    assert [r["run_id"] for r in listed["items"]] == [run_id]
    again = json.loads(ok("init", "--json").stdout)
    assert again["created"] is False
    assert Path(again["metadata_location"]) == here / ".strongroom" / "vault.db"
    assert not (deep / ".strongroom").exists()


def test_without_a_vault_only_the_creating_commands_create_one(here: Path) -> None:
    refused = invoke("--json", "runs", "list")
    assert refused.exit_code == 3
    error = error_of(refused)
    assert error["code"] == "not_found"
    assert error["details"]["reason"] == "no_vault"
    assert "strongroom init" in error["message"]
    examples = Path(__file__).resolve().parent.parent / "examples" / "registry"
    for args in (
        ("artifacts", "list"),
        ("audit", "show"),
        ("verify",),
        ("registry", "publish", str(examples / "data-quality-tools.yaml")),
        ("registry", "list"),
        ("actors", "list"),
        ("cancel", "01890000-0000-7000-8000-000000000000"),
    ):
        result = invoke("--json", *args)
        assert result.exit_code == 3, (args, result.stdout)
        assert error_of(result)["details"]["reason"] == "no_vault", args
        assert not (here / ".strongroom").exists(), args
    ok("runs", "create", "-p", "docs")
    assert (here / ".strongroom" / "vault.db").is_file()


def test_a_ceiling_directory_stops_the_search(here: Path, tmp_path: Path) -> None:
    ok("init")
    inner = here / "inner"
    inner.mkdir()
    os.chdir(inner)
    assert invoke("runs", "list").exit_code == 0
    assert invoke("runs", "list", env={CEILING_ENV: str(here)}).exit_code == 3


def test_a_named_vault_that_does_not_exist_gets_a_hint_that_creates_it(here: Path) -> None:
    target = here / "my vault"
    refused = invoke("--json", "--vault", str(target), "runs", "list")
    assert refused.exit_code == 3
    message = error_of(refused)["message"]
    assert f"strongroom init --vault '{target}'" in message
    assert not target.exists()
    assert json.loads(ok("init", "--vault", str(target), "--json").stdout)["created"] is True


def _foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.close()


@pytest.mark.parametrize("content", ["sqlite", "text", "empty"])
def test_a_file_that_is_not_a_vault_is_refused_and_left_unchanged(here: Path, content: str) -> None:
    directory = here / "other"
    directory.mkdir()
    db = directory / "vault.db"
    if content == "sqlite":
        _foreign_sqlite(db)
    elif content == "text":
        db.write_text("not a database at all\n" * 50)
    else:
        db.touch()
    before = fingerprint(directory)
    for args in (("runs", "list"), ("verify",), ("audit", "show"), ("logs", "show", "x")):
        result = invoke("--json", "--vault", str(directory), *args)
        assert result.exit_code in (3, 9), (args, result.stdout)
        error = error_of(result)
        expected = "no_vault" if content == "empty" else "not_a_vault"
        assert error["details"]["reason"] == expected, (args, error)
        assert fingerprint(directory) == before, args
    if content != "empty":
        refused = invoke("--json", "--vault", str(directory), "init")
        assert refused.exit_code == 9
        assert error_of(refused)["details"]["reason"] == "not_a_vault"
        assert fingerprint(directory) == before
        assert sorted(p.name for p in directory.iterdir()) == ["vault.db"]


@pytest.mark.postgres
def test_a_postgresql_database_that_is_not_a_vault_is_refused_unchanged(
    pg_url: str, tmp_path: Path
) -> None:
    blobs = str(tmp_path / "blobs")
    empty = invoke("--json", "--vault", pg_url, "--blobs", blobs, "runs", "list")
    assert empty.exit_code == 3
    assert error_of(empty)["details"]["reason"] == "no_vault"
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            assert (
                conn.execute(
                    text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                ).scalar()
                == 0
            )
        created = json.loads(ok("--vault", pg_url, "--blobs", blobs, "init", "--json").stdout)
        assert created["created"] is True
        ok("--vault", pg_url, "--blobs", blobs, "runs", "create", "-p", "docs")
        opened = json.loads(ok("--vault", pg_url, "--blobs", blobs, "init", "--json").stdout)
        assert opened["created"] is False
        assert opened["runs"] == 1
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
            conn.execute(text("CREATE TABLE ledger (id int primary key, amount int)"))
            conn.execute(text("INSERT INTO ledger VALUES (1, 100)"))
        for args in (("runs", "list"), ("init",), ("verify",)):
            result = invoke("--json", "--vault", pg_url, "--blobs", blobs, *args)
            assert result.exit_code == 9, (args, result.stdout)
            assert error_of(result)["details"]["reason"] == "not_a_vault"
        with engine.begin() as conn:
            tables = conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
            assert sorted(tables) == ["ledger"]
    finally:
        engine.dispose()


# -- one cancel, one paging style -----------------------------------------------------------------


def test_runs_cancel_is_cancel_with_a_reason_in_the_audit_trail(here: Path) -> None:
    ok("init")
    first = ok("runs", "create", "-p", "docs").stdout.strip()
    second = ok("runs", "create", "-p", "docs").stdout.strip()
    assert ok("runs", "cancel", first, "-r", "wrong input").stdout.strip() == (
        f"run {first} is now cancelled"
    )
    assert ok("cancel", second, "--reason", "duplicate").stdout.strip() == (
        f"run {second} is now cancelled"
    )
    entries = json.loads(ok("audit", "show", "-n", "1000", "--json").stdout)["entries"]
    reasons = {
        e["subject_id"]: e["details"].get("reason")
        for e in entries
        if e["event"] == "orchestrator.cancel_requested"
    }
    assert reasons == {first: "wrong input", second: "duplicate"}
    again = invoke("--json", "runs", "cancel", first)
    assert again.exit_code == 4
    assert error_of(again)["code"] == "conflict"


def test_log_pages_follow_their_cursor_to_the_end(here: Path) -> None:
    ok("init")
    run_id = ok("runs", "create", "-p", "docs").stdout.strip()
    for i in range(7):
        ok("logs", "append", run_id, "-e", "step", "-m", f"line {i}")
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        args = ["logs", "show", run_id, "-n", "3", "--json"]
        if cursor is not None:
            args += ["--cursor", cursor]
        page = json.loads(ok(*args).stdout)
        seen += [e["message"] for e in page["entries"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"line {i}" for i in range(7)]
    assert pages == 3
    text_page = ok("logs", "show", run_id, "-n", "3").stdout
    assert "next page: --cursor 3" in text_page
    tail = json.loads(ok("logs", "show", run_id, "--tail", "2", "--json").stdout)
    assert [e["message"] for e in tail["entries"]] == ["line 5", "line 6"]
    mixed = invoke("--json", "logs", "show", run_id, "--tail", "2", "-n", "3")
    assert mixed.exit_code == 2
    assert error_of(mixed)["details"]["reason"] == "conflicting_options"


@pytest.mark.parametrize(
    "args",
    [
        ("audit", "show", "--after", "99999999999999999999"),
        ("audit", "show", "--cursor", "-1"),
        ("audit", "show", "--cursor", "abc"),
        ("audit", "show", "-n", "0"),
        ("audit", "show", "-n", "99999999999999999999"),
        ("logs", "show", "RUN", "--cursor", "99999999999999999999"),
        ("logs", "show", "RUN", "--tail", "0"),
        ("logs", "show", "RUN", "-n", "1000001"),
    ],
)
def test_page_options_out_of_range_are_validation_errors(here: Path, args: tuple[str, ...]) -> None:
    ok("init")
    run_id = ok("runs", "create", "-p", "docs").stdout.strip()
    before = fingerprint(here / ".strongroom" / "vault.db")
    result = invoke("--json", *(run_id if a == "RUN" else a for a in args))
    assert result.exit_code == 2, result.stdout
    assert error_of(result)["code"] in ("validation_error", "usage_error")
    assert fingerprint(here / ".strongroom" / "vault.db") == before


# -- `run` given a path ------------------------------------------------------------------------


def test_run_of_a_missing_or_special_playbook_file_is_refused_before_anything(
    here: Path,
) -> None:
    ok("init")
    missing = invoke("--json", "run", "./nope.yaml")
    assert missing.exit_code == 3
    assert error_of(missing)["details"] == {
        "operation": "cli.run",
        "reason": "no_file",
        "path": "./nope.yaml",
    }
    os.mkfifo(here / "pipe.yaml")
    fifo = invoke("--json", "run", "pipe.yaml")  # would block forever if it were opened
    assert fifo.exit_code == 2
    assert error_of(fifo)["details"]["reason"] == "not_a_regular_file"
    bad = invoke("--json", "run", "not a ref!")
    assert bad.exit_code == 2
    assert error_of(bad)["details"]["reason"] == "bad_reference"
    assert json.loads(ok("runs", "list", "--json").stdout)["items"] == []


@pytest.mark.postgres
@pytest.mark.s3
def test_a_missing_bucket_is_reported_before_postgresql_gets_a_table(
    pg_url: str, s3_endpoint: str, s3_env: dict[str, str]
) -> None:
    blobs = f"s3://no-such-bucket-{os.getpid()}/v?endpoint={s3_endpoint}&max_retries=1"
    refused = invoke("--json", "--vault", pg_url, "--blobs", blobs, "init", env=dict(s3_env))
    assert refused.exit_code == 6, refused.stdout
    error = error_of(refused)
    assert error["details"].get("reason") == "no_such_bucket", error
    assert "create it first" in error["message"]
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            count = conn.execute(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            ).scalar()
        assert count == 0
    finally:
        engine.dispose()


def test_dates_at_the_ends_of_the_calendar_are_refused_or_clamped_never_internal(
    here: Path,
) -> None:
    ok("init")
    assert json.loads(ok("runs", "list", "--until", "9999-12-31", "--json").stdout)["items"] == []
    for option, value in (
        ("--since", "0001-01-01T00:00:00+14:00"),
        ("--until", "9999-12-31T23:59:59-14:00"),
    ):
        result = invoke("--json", "runs", "list", option, value)
        assert result.exit_code == 2, result.stdout
        assert error_of(result)["details"]["reason"] == "bad_timestamp"


# -- what the fuzzer found (tests/test_cli_fuzz.py), pinned -------------------------------------


def test_a_run_id_in_upper_case_acts_on_the_run_and_reports_it_canonically(here: Path) -> None:
    ok("init")
    run_id = ok("runs", "create", "-p", "docs").stdout.strip()
    shouted = ok("runs", "cancel", run_id.upper(), "-r", "caps", "--json").stdout
    assert json.loads(shouted)["run_id"] == run_id
    entries = json.loads(ok("audit", "show", "-n", "1000", "--json").stdout)["entries"]
    subjects = {e["subject_id"] for e in entries if e["event"].startswith(("run.", "log."))}
    assert subjects == {run_id}


def test_a_refused_command_makes_no_blob_folder(here: Path) -> None:
    ok("init")
    blobs = here / "new-blobs"
    refused = invoke("--json", "--blobs", str(blobs), "runs", "cancel", "not-an-id")
    assert refused.exit_code == 2
    assert not blobs.exists()
    run_id = ok("runs", "create", "-p", "docs").stdout.strip()
    (here / "f.txt").write_text("data\n" * 20_000)  # over 64 KiB: a file, not a row
    ok("--blobs", str(blobs), "artifacts", "put", run_id, "f.txt", "--role", "report")
    assert any((blobs / "sha256").rglob("*"))


def test_anchor_targets_are_checked_before_the_checkpoint(here: Path, tmp_path: Path) -> None:
    from strongroom.integrity import init_key

    ok("init")
    key = init_key(tmp_path / "k.pem")
    before = fingerprint(here / ".strongroom" / "vault.db")
    too_long = invoke("--json", "audit", "anchor", "--to", "A" * 5000, "--key", str(key.path))
    assert too_long.exit_code in (2, 6), too_long.stdout
    assert fingerprint(here / ".strongroom" / "vault.db") == before
    made = json.loads(
        ok("audit", "anchor", "--to", f"{here}/witness/", "--key", str(key.path), "--json").stdout
    )
    assert (here / "witness" / "strongroom-anchors.jsonl").is_file(), made


def test_undecodable_bytes_never_crash_a_command(here: Path) -> None:
    ok("init")
    run_id = ok("runs", "create", "-p", "docs").stdout.strip()
    weird = os.fsdecode(b"\xed\xb3\x83(")  # what argv holds for bytes that are not UTF-8
    shown = invoke("--json", "logs", "show", weird)
    assert shown.exit_code == 2, shown.stdout
    assert error_of(shown)["code"] == "validation_error"
    piped = CliRunner(env=_ENV).invoke(
        app, ["logs", "append", run_id, "--lines", "-e", "step"], input=b"\xff\xfeok\nplain\n"
    )
    assert piped.exit_code == 0, piped.stdout
    lines = json.loads(ok("logs", "show", run_id, "--json").stdout)["entries"]
    assert [e["message"] for e in lines] == ["\ufffd\ufffdok", "plain"]
    long_path = invoke("--json", "tools", "run", "x", "--tool-path", "x" * 5000, "-i", "{}")
    assert long_path.exit_code == 2, long_path.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_keys_init_never_replaces_a_device_even_with_force(tmp_path: Path) -> None:
    device = tmp_path / "key.pem"
    os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
    result = invoke("--json", "keys", "init", "--path", str(device), "--force")
    assert result.exit_code == 2, result.stdout
    assert error_of(result)["details"]["reason"] == "not_a_regular_file"
    assert stat.S_ISCHR(device.lstat().st_mode)
    os.mkfifo(tmp_path / "other.pem.pub")
    result = invoke("--json", "keys", "init", "--path", str(tmp_path / "other.pem"), "--force")
    assert result.exit_code == 2, result.stdout
    assert stat.S_ISFIFO((tmp_path / "other.pem.pub").lstat().st_mode)
    assert not (tmp_path / "other.pem").exists()
