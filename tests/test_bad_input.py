"""Bad input at the doors strongroom's artifacts, registry and service layers own: every refused
command exits with its documented code, prints one structured error (never exit 70, never a
traceback, never pydantic's wording) and leaves the vault as it was. Special files are real
ones (a FIFO, a UNIX socket, a character device made with mknod where root may), and a
refused write never replaces them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shlex
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from _keys import registered_key
from strongroom import Vault
from strongroom.cli import app
from strongroom.cli._context import EXIT_CODES
from strongroom.errors import SerializationError, StrongroomError, ValidationError
from strongroom.models import LogQuery, RunnerRequest, RunQuery, load_json_text
from strongroom.services import parse

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "registry"
DEEP = 100_000


class Cli:
    """The app against one vault directory, the way a user's shell would run it."""

    def __init__(self, vault: Path) -> None:
        self.vault = vault
        self.runner = CliRunner(
            env={
                "STRONGROOM_URL": None,
                "STRONGROOM_ACTOR": None,
                "STRONGROOM_DEBUG": None,
                "COLUMNS": None,
                "NO_COLOR": "1",
            }
        )

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return self.runner.invoke(app, ["--vault", str(self.vault), *args], input=input)

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self(*args, input=input)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok("--json", *args).stdout)

    def refused(self, code: str, *args: str) -> dict[str, Any]:
        """Run ``args`` with --json: it must fail with ``code`` and its exit code, and change
        nothing in the vault."""
        before = fingerprint(self.vault)
        result = self("--json", *args)
        return refusal(result.exit_code, result.stdout, code, before, self.vault)


def refusal(exit_code: int, stdout: str, code: str, before: str, vault: Path) -> dict[str, Any]:
    document = json.loads(stdout)
    assert set(document) == {"error"}, document
    error = document["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code, error
    assert exit_code == EXIT_CODES[code], (exit_code, error)
    message = error["message"]
    assert "pydantic" not in message, message
    assert "https://" not in message, message
    assert "Traceback" not in stdout
    assert fingerprint(vault) == before, "a refused command changed the vault"
    return dict(error)


def fingerprint(vault: Path) -> str:
    """Every row of every table and every blob file of an embedded vault, as one digest."""
    digest = hashlib.sha256()
    db = sqlite3.connect(f"file:{vault / 'vault.db'}?mode=ro", uri=True)
    try:
        for line in db.iterdump():
            digest.update(line.encode("utf-8", "surrogatepass"))
    finally:
        db.close()
    for path in sorted((vault / "blobs").rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(vault)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    bound = Cli(tmp_path / "vault")
    bound.ok("init")
    return bound


@pytest.fixture
def run_id(cli: Cli) -> str:
    return cli.ok("runs", "create", "--project", "docs").stdout.strip()


@pytest.fixture
def stored(cli: Cli, run_id: str, tmp_path: Path) -> str:
    """An artifact recorded under the name notes.txt."""
    source = tmp_path / "notes.txt"
    source.write_text("hello\n")
    artifact = cli.json("artifacts", "put", run_id, str(source), "--role", "report")
    return str(artifact["artifact_id"])


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path (a UNIX socket's path is limited to ~100 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sr-") as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def unix_socket(path: Path) -> Iterator[Path]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        yield path
    finally:
        server.close()
        path.unlink(missing_ok=True)


def char_device(path: Path) -> Path | None:
    """A character device node like /dev/full (1, 7), made fresh: never a host's real one."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 7))
    except (PermissionError, OSError):
        return None
    return path


# -- NaN, infinities, depth: JSON from options --------------------------------------------------


@pytest.mark.parametrize("text", ['{"x": NaN}', '{"x": 1e999}', '{"x": [-Infinity]}'])
def test_artifact_metadata_not_a_number_is_refused(
    cli: Cli, run_id: str, tmp_path: Path, text: str
) -> None:
    source = tmp_path / "a.txt"
    source.write_text("a")
    error = cli.refused(
        "validation_error", "artifacts", "put", run_id, str(source), "--role", "custom",
        "--metadata", text,
    )  # fmt: skip
    assert error["details"]["reason"] == "not_a_number"
    assert "--metadata" in error["message"]


@pytest.mark.parametrize("text", ['{"x": NaN, "y": 1e999}', '{"x": Infinity}'])
def test_log_data_not_a_number_is_refused_not_stored_as_null(
    cli: Cli, run_id: str, text: str
) -> None:
    error = cli.refused(
        "validation_error", "logs", "append", run_id, "-e", "a", "-m", "b", "--data", text
    )
    assert error["details"]["reason"] == "not_a_number"
    assert "data" in error["message"]


def test_a_failure_message_that_is_not_unicode_is_refused_and_the_run_unchanged(
    cli: Cli, run_id: str
) -> None:
    """From the CLI fuzzer: `runs fail -m` with a lone surrogate (undecodable bytes in an
    argument) was an internal error while the run was being audited; it is refused before
    anything is written."""
    error = cli.refused(
        "serialization_error", "runs", "fail", run_id, "--code", "E_TEST", "-m", "\udced\udca0"
    )
    assert error["details"]["reason"] == "not_canonicalizable"  # and the vault unchanged


def test_deep_metadata_is_a_serialization_error(cli: Cli, run_id: str, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("a")
    nested = '{"a":' * 30_000 + "1" + "}" * 30_000  # within one argument's size limit
    error = cli.refused(
        "serialization_error", "artifacts", "put", run_id, str(source), "--role", "custom",
        "--metadata", nested,
    )  # fmt: skip
    assert error["details"]["reason"] == "too_deep"


def test_deep_json_payload_is_a_serialization_error(cli: Cli, run_id: str, tmp_path: Path) -> None:
    source = tmp_path / "deep.json"
    source.write_text(deep_json(DEEP))
    error = cli.refused(
        "serialization_error", "artifacts", "put", run_id, str(source), "--role", "custom"
    )
    assert error["details"]["reason"] == "too_deep"


# -- text fields: length, control characters, surrogates --------------------------------------


def test_over_long_text_names_the_field_and_the_limit(
    cli: Cli, run_id: str, tmp_path: Path
) -> None:
    source = tmp_path / "a.txt"
    source.write_text("a")
    error = cli.refused(
        "validation_error", "artifacts", "put", run_id, str(source), "--role", "custom",
        "--description", "x" * 4001,
    )  # fmt: skip
    assert error["message"] == "description is too long: 4,001 characters, at most 4,000"
    assert error["details"]["reason"] == "too_long"
    assert error["details"]["limit"] == 4000
    assert "ArtifactMetadata" not in error["message"]


def test_over_long_reason_is_a_short_validation_error(cli: Cli, run_id: str) -> None:
    error = cli.refused(
        "validation_error", "registry", "approve", "--run", run_id, "--reason", "x" * 1200
    )
    assert error["message"] == "reason is too long: 1,200 characters, at most 1,000"
    assert error["details"]["field"] == "reason"


@pytest.mark.parametrize(
    ("option", "value"),
    [("--description", "red \x1b[31malert"), ("--label", "two\nlines"), ("--label", "nul\x00")],
)
def test_control_characters_in_text_are_refused(
    cli: Cli, run_id: str, tmp_path: Path, option: str, value: str
) -> None:
    source = tmp_path / "a.txt"
    source.write_text("a")
    error = cli.refused(
        "validation_error", "artifacts", "put", run_id, str(source), "--role", "custom",
        option, value,
    )  # fmt: skip
    assert error["details"]["reason"] == "control_character"
    assert option.removeprefix("--") in error["message"]


def test_a_lone_surrogate_in_metadata_is_refused(cli: Cli, run_id: str, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("a")
    error = cli.refused(
        "serialization_error", "artifacts", "put", run_id, str(source), "--role", "custom",
        "--metadata", '{"k": "\\udcff"}',
    )  # fmt: skip
    assert error["details"]["reason"] == "not_canonicalizable"


# -- numbers beyond what a store holds ----------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "10001", "99999999999999999999999"])
def test_artifacts_list_limit_out_of_range_names_the_option(cli: Cli, limit: str) -> None:
    error = cli.refused("validation_error", "artifacts", "list", "--limit", limit)
    assert error["message"].startswith("--limit must be at ")
    assert error["details"]["reason"] == "out_of_range"


def test_bad_cursor_names_the_option(cli: Cli) -> None:
    error = cli.refused("validation_error", "artifacts", "list", "--cursor", "nope")
    assert error["message"].startswith("--cursor: ")


# -- files that are not regular files, given as input -------------------------------------------


def test_put_of_a_fifo_is_refused_not_blocked_on(cli: Cli, run_id: str, short_dir: Path) -> None:
    fifo = short_dir / "fifo"
    os.mkfifo(fifo)
    before = fingerprint(cli.vault)
    # A real process: if it ever blocked on the FIFO, the timeout would fail the test.
    done = subprocess.run(
        [sys.executable, "-m", "strongroom", "--vault", str(cli.vault), "--json",
         "artifacts", "put", run_id, str(fifo), "--role", "custom"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    error = refusal(done.returncode, done.stdout, "validation_error", before, cli.vault)
    assert error["details"]["reason"] == "not_a_regular_file"
    assert error["details"]["file_type"] == "FIFO (named pipe)"


def test_put_of_a_directory_socket_or_device_is_refused(
    cli: Cli, run_id: str, short_dir: Path
) -> None:
    with unix_socket(short_dir / "sock") as sock:
        for path, kind in [
            (short_dir, "directory"),
            (sock, "socket"),
            (Path("/dev/null"), "character device"),
        ]:
            error = cli.refused(
                "validation_error", "artifacts", "put", run_id, str(path), "--role", "custom"
            )
            assert error["details"]["reason"] == "not_a_regular_file"
            assert error["details"]["file_type"] == kind


def test_publish_of_a_fifo_is_refused_not_blocked_on(cli: Cli, short_dir: Path) -> None:
    fifo = short_dir / "tool.yaml"
    os.mkfifo(fifo)
    before = fingerprint(cli.vault)
    done = subprocess.run(
        [sys.executable, "-m", "strongroom", "--vault", str(cli.vault), "--json",
         "registry", "publish", str(fifo)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    error = refusal(done.returncode, done.stdout, "validation_error", before, cli.vault)
    assert error["details"]["reason"] == "not_a_regular_file"


def test_publish_never_creates_a_vault(tmp_path: Path) -> None:
    missing = Cli(tmp_path / "nowhere")
    result = missing("--json", "registry", "publish", *sorted(map(str, EXAMPLES.glob("*.yaml"))))
    assert result.exit_code == EXIT_CODES["not_found"], result.stdout
    assert json.loads(result.stdout)["error"]["code"] == "not_found"
    assert not (tmp_path / "nowhere").exists()


# -- -o: only regular files are written -------------------------------------------------------


def test_get_onto_a_fifo_socket_or_device_leaves_it_alone(
    cli: Cli, stored: str, short_dir: Path
) -> None:
    fifo = short_dir / "fifo"
    os.mkfifo(fifo)
    targets = [(fifo, stat.S_ISFIFO)]
    device = char_device(short_dir / "full")
    if device is not None:
        targets.append((device, stat.S_ISCHR))
    with unix_socket(short_dir / "sock") as sock:
        targets.append((sock, stat.S_ISSOCK))
        for path, still in targets:
            error = cli.refused("validation_error", "artifacts", "get", stored, "-o", str(path))
            assert error["details"]["reason"] == "not_a_regular_file"
            assert still(os.lstat(path).st_mode), f"{path} was replaced"
    assert sorted(p.name for p in short_dir.iterdir()) == sorted(
        ["fifo", *(["full"] if device else [])]
    )  # no temporary file left behind


def test_get_into_a_new_directory_with_a_trailing_slash(
    cli: Cli, stored: str, tmp_path: Path
) -> None:
    target = tmp_path / "out" / "deeper"
    written = cli.json("artifacts", "get", stored, "-o", f"{target}/")
    assert Path(written["path"]) == target / "notes.txt"
    assert (target / "notes.txt").read_text() == "hello\n"


def test_get_into_a_missing_directory_without_slash_is_refused(
    cli: Cli, stored: str, tmp_path: Path
) -> None:
    error = cli.refused(
        "validation_error", "artifacts", "get", stored, "-o", str(tmp_path / "missing" / "x.txt")
    )
    assert error["details"]["reason"] == "missing_directory"
    assert not (tmp_path / "missing").exists()


def test_get_with_a_trailing_slash_onto_a_file_is_refused(
    cli: Cli, stored: str, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.write_text("keep")
    error = cli.refused("validation_error", "artifacts", "get", stored, "-o", f"{plain}/")
    assert error["details"]["reason"] == "not_a_directory"
    assert plain.read_text() == "keep"


def test_get_replaces_a_regular_file(cli: Cli, stored: str, tmp_path: Path) -> None:
    target = tmp_path / "old.txt"
    target.write_text("old")
    cli.ok("artifacts", "get", stored, "-o", str(target))
    assert target.read_text() == "hello\n"


async def test_api_get_file_never_replaces_a_device(tmp_path: Path, short_dir: Path) -> None:
    fifo = short_dir / "fifo"
    os.mkfifo(fifo)
    async with await Vault.open(str(tmp_path / "v")) as vault:
        run = await vault.runs.create(project="docs")
        meta = await vault.artifacts.put_bytes(run.run_id, b"x", role="custom")
        with pytest.raises(ValidationError) as caught:
            await vault.artifacts.get_file(meta.artifact_id, fifo)
    assert caught.value.details["reason"] == "not_a_regular_file"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# -- grammar: artifacts list [RUN], --role without -r --------------------------------------------


def test_artifacts_list_takes_the_run_as_an_argument(cli: Cli, run_id: str, stored: str) -> None:
    positional = cli.json("artifacts", "list", run_id)["items"]
    hidden = cli.json("artifacts", "list", "--run", run_id)["items"]
    both = cli.json("artifacts", "list", run_id, "--run", run_id)["items"]
    assert [a["artifact_id"] for a in positional] == [stored]
    assert positional == hidden == both
    other = cli.ok("runs", "create", "--project", "docs").stdout.strip()
    error = cli.refused("validation_error", "artifacts", "list", run_id, "--run", other)
    assert error["details"]["reason"] == "conflicting_run"


def test_artifacts_role_has_no_short_flag(cli: Cli, run_id: str, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("a")
    before = fingerprint(cli.vault)
    result = cli("artifacts", "put", run_id, str(source), "-r", "custom")
    assert result.exit_code == 2
    assert fingerprint(cli.vault) == before
    assert "-r" not in cli.ok("artifacts", "put", "--help").stdout.replace("--r", "")


def test_next_page_hint_runs_as_printed(cli: Cli, run_id: str, tmp_path: Path) -> None:
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(name)
        cli.ok("artifacts", "put", run_id, str(tmp_path / name), "--role", "custom")
    out = cli.ok("artifacts", "list", run_id, "--limit", "1").stdout
    hint = out.split("next page: ", 1)[1].strip()
    words = shlex.split(hint)
    assert words[0] == "strongroom"
    page = cli.runner.invoke(app, words[1:])
    assert page.exit_code == 0, page.stdout
    assert "b.txt" in page.stdout


# -- hints: the approval a promotion needs ------------------------------------------------------


def test_the_approval_hint_of_promote_runs_as_printed(cli: Cli, tmp_path: Path) -> None:
    alice = registered_key(cli, tmp_path, "alice")
    bob = registered_key(cli, tmp_path, "bob", admin=alice)
    cli.ok("registry", "publish", *sorted(map(str, EXAMPLES.glob("*.yaml"))), "--key", alice)
    promote = (
        "registry", "promote", "data-quality-tools", "1.0.0", "--to", "production",
        "--reason", "go", "--key", bob,
    )  # fmt: skip
    error = cli.refused("approval_required", *promote)
    hint = error["message"].split("approves it with: ", 1)[1].split("; then", 1)[0]
    words = shlex.split(hint)
    assert words[0] == "strongroom"
    assert "--reason" in words
    words = [bob if word == "KEY" else word for word in words]  # the approver's own key
    cli.ok(*words[1:])
    assert cli.json(*promote)["moved"] is True


# -- the service and model layers: API parameters ------------------------------------------------


async def test_api_refusals_are_structured(tmp_path: Path) -> None:
    async with await Vault.open(str(tmp_path / "v")) as vault:
        run = await vault.runs.create(project="docs")
        rid = run.run_id
        deep: Any = 1
        for _ in range(DEEP):
            deep = {"a": deep}
        nan, inf, first = {"x": math.nan}, {"x": -math.inf}, 0
        save = vault.snapshots.save
        invalid, unserializable = "validation_error", "serialization_error"
        cases: list[tuple[Any, str, str]] = [
            (vault.logs.append(rid, {"event": "e", "data": nan}), invalid, "not_a_number"),
            (vault.logs.append(rid, {"event": "e", "data": deep}), unserializable, "too_deep"),
            (save(rid, {"data": inf}, expected_revision=first), invalid, "not_a_number"),
            (save(rid, {"data": deep}, expected_revision=first), unserializable, "too_deep"),
            (vault.snapshots.load(rid, 10**20), invalid, "out_of_range"),
            (vault.audit.entries(after_seq=10**20), invalid, "out_of_range"),
            (vault.logs.tail(rid, 10**20), invalid, "out_of_range"),
            (vault.artifacts.put_bytes(rid, b"x", metadata=inf), invalid, "not_a_number"),
            (vault.artifacts.put_bytes(rid, b"x", metadata=deep), unserializable, "too_deep"),
        ]  # fmt: skip
        head = await vault.audit.head()
        for call, code, reason in cases:
            with pytest.raises(StrongroomError) as caught:
                await call
            assert (caught.value.code, caught.value.details.get("reason")) == (code, reason)
            assert "pydantic" not in caught.value.message
        assert await vault.audit.head() == head  # nothing was written
        assert await vault.logs.read(rid) == []


def test_model_errors_speak_of_fields_not_models() -> None:
    with pytest.raises(ValidationError) as caught:
        parse(RunQuery, {"limit": 0}, operation="runs.list", names={"limit": "--limit"})
    assert caught.value.message == "--limit must be at least 1, got 0"
    assert "RunQuery" not in caught.value.message
    with pytest.raises(ValidationError) as caught:
        parse(LogQuery, {"after_seq": 2**63}, operation="logs.read")
    assert caught.value.details["reason"] == "out_of_range"
    with pytest.raises(ValidationError) as caught:
        parse(
            RunnerRequest,
            {"request_id": "01890000-0000-7000-8000-000000000000", "tool_id": "t",
             "input": {"x": [math.nan]}},
            operation="runner.run",
        )  # fmt: skip
    assert caught.value.details["reason"] == "not_a_number"
    assert "input at /x/0" in caught.value.message


@pytest.mark.parametrize(
    ("text", "error", "reason"),
    [
        ('{"x": NaN}', ValidationError, "not_a_number"),
        ("[1e999]", ValidationError, "not_a_number"),
        ("-Infinity", ValidationError, "not_a_number"),
        (deep_json(DEEP), SerializationError, "too_deep"),
        (deep_json(200), SerializationError, "too_deep"),
        ('"\\ud800"', SerializationError, "not_canonicalizable"),
        ("{", ValidationError, "bad_json"),
        ("1" * 5000, ValidationError, "number_too_long"),
    ],
)
def test_load_json_text_refuses_at_the_door(
    text: str, error: type[StrongroomError], reason: str
) -> None:
    with pytest.raises(error) as caught:
        load_json_text(text, source="--data", operation="cli")
    assert caught.value.details["reason"] == reason
    assert caught.value.message.startswith("--data")


def test_load_json_text_accepts_plain_json() -> None:
    assert load_json_text('{"a": [1, 2.5, "x", null, true]}', source="--data", operation="cli") == {
        "a": [1, 2.5, "x", None, True]
    }


# -- progress on a terminal ----------------------------------------------------------------------


def _stderr_on_a_terminal(args: list[str]) -> tuple[int, str, bytes]:
    """Run ``python -m strongroom ARGS`` with stderr on a pseudo-terminal (stdout a pipe):
    exit code, stdout, and every byte written to the terminal."""
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    for name in ("NO_COLOR", "STRONGROOM_URL", "STRONGROOM_DEBUG"):
        env.pop(name, None)
    seen = bytearray()
    with subprocess.Popen(
        [sys.executable, "-m", "strongroom", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    ) as process:
        os.close(slave)
        try:
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the terminal's last writer is gone
                    break
                if not chunk:
                    break
                seen += chunk
        finally:
            os.close(master)
        out, _ = process.communicate(timeout=120)
    return process.returncode, out.decode(), bytes(seen)


def test_put_and_get_show_progress_on_a_terminal_only_without_json(
    cli: Cli, run_id: str, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1024 * 1024) * 8)
    vault = ["--vault", str(cli.vault)]
    code, out, terminal = _stderr_on_a_terminal(
        [*vault, "artifacts", "put", run_id, str(big), "--role", "custom"]
    )
    assert code == 0, terminal
    assert b"Storing big.bin" in terminal
    artifact_id = out.split()[0]
    code, out, terminal = _stderr_on_a_terminal(
        [*vault, "artifacts", "get", artifact_id, "-o", f"{tmp_path}/back/"]
    )
    assert code == 0, terminal
    assert b"Fetching big.bin" in terminal
    assert (tmp_path / "back" / "big.bin").read_bytes() == big.read_bytes()
    code, out, terminal = _stderr_on_a_terminal(
        [*vault, "--json", "artifacts", "put", run_id, str(big), "--role", "custom"]
    )
    assert code == 0, terminal
    assert b"Storing" not in terminal
    assert json.loads(out)["size_bytes"] == 8 * 1024 * 1024


def test_the_replace_hint_of_get_runs_as_printed(
    cli: Cli, stored: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    error = cli.refused("conflict", "artifacts", "get", stored)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    words = shlex.split(error["message"].split("run ", 1)[1].split(" (or", 1)[0])
    assert words[:3] == ["strongroom", "--vault", str(cli.vault)]
    cli.runner.invoke(app, words[1:])
    assert (tmp_path / "notes.txt").read_text() == "hello\n"


# -- governed acts: reasons and ids --------------------------------------------------------------


@pytest.fixture
def published_m(cli: Cli, tmp_path: Path) -> str:
    """An A0 tool manifest ``m`` 1.0.0 (unsigned publication allowed), on draft."""
    from strongroom.testing._registry_service import manifest

    source = tmp_path / "m.json"
    source.write_bytes(manifest())
    cli.ok("registry", "publish", str(source))
    return "m"


@pytest.mark.parametrize(
    ("reason", "why"),
    [("x" * 1001, "too_long"), ("bell\x07", "control_character"), ("", "too_short")],
)
def test_channel_moves_refuse_a_bad_reason_before_reading_anything(
    cli: Cli, published_m: str, reason: str, why: str
) -> None:
    for args in (
        ("registry", "promote", published_m, "1.0.0", "--to", "staging", "--reason", reason),
        ("registry", "rollback", published_m, "--channel", "draft", "--reason", reason),
    ):
        error = cli.refused("validation_error", *args)
        assert error["details"]["reason"] == why
        assert error["message"].startswith(("reason ", "reason:"))


@pytest.mark.parametrize("bad", ["\udcff-approval", "not-an-id", "x" * 5000])
def test_bad_approval_ids_are_validation_errors(cli: Cli, published_m: str, bad: str) -> None:
    cli.refused("validation_error", "registry", "revoke", bad, "--reason", "why")
    cli.refused(
        "validation_error",
        "registry", "promote", published_m, "1.0.0", "--to", "staging", "--reason", "why",
        "--approval", bad,
    )  # fmt: skip
