"""The hashing format (RFC 8785, JCS): `canonical_json` agrees with the ``rfc8785`` package
and with an independent JavaScript canonicalizer (docs/security.md's ``jcs.js``); what JCS
cannot represent is refused before anything is written; a vault written before the format
(tests/data/legacy_vault.tar.gz, see tests/_legacy_vault.py) still verifies, old entries and
new together; an entry rewritten in the older form after a ``jcs`` one is reported; and
docs/security.md's worked example runs as written."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _doc_blocks import blocks
from _sql_tamper import drop_append_only_guards
from strongroom import Vault
from strongroom.errors import SerializationError
from strongroom.integrity import SigningKey
from strongroom.models import (
    CANON,
    GENESIS_HASH,
    Actor,
    ActorRole,
    ActSignature,
    LogEntry,
    act_payload,
    canonical_json,
    entry_hash,
    sorted_json,
)
from strongroom.services._common import verify_chain
from strongroom.services.identity import signature_problem
from strongroom.transfer import export_vault, import_vault

ROOT = Path(__file__).resolve().parents[1]
SECURITY_MD = ROOT / "docs" / "security.md"
LEGACY_VAULT = Path(__file__).parent / "data" / "legacy_vault.tar.gz"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
SAFE = 2**53 - 1

# Keys from every corner that matters for the order: ASCII, Latin-1, the BMP below and above
# U+E000 (private use, CJK compatibility, specials) and the supplementary planes (surrogate
# pairs in UTF-16, where code-point and UTF-16 order part ways).
HIGH_KEY_CHARS = ["\ue000", "\ufb33", "\uffee", "\U0001f600", "\U00010000", "\U0010ffff"]
KEY_CHARS = st.sampled_from([*'aAzZ09_-\u00e9\u00f6\u20ac\u0080\r\n"\\\x00\x1f', *HIGH_KEY_CHARS])
KEYS = st.lists(KEY_CHARS, max_size=4).map("".join)
# No lone surrogates: those are refused (below).
TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)
FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.1, 1e21, 1e-7, 1e-6, 123e-20, 5e-324, 1.7976931348623157e308, -0.0, 1.0, 2.5e20]
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-SAFE, SAFE) | FLOATS | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


# -- the format -------------------------------------------------------------------------------


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES)
def test_canonical_json_is_rfc8785(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=3000)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_float_is_written_as_rfc8785_writes_it(number: float) -> None:
    assert canonical_json(number) == rfc8785.dumps(number)


@given(JSON_VALUES)
def test_without_floats_big_ints_or_high_keys_both_forms_are_the_same_bytes(value: Any) -> None:
    """What lets a vault written before JCS verify with it wherever its values were plain."""

    def plain(v: Any) -> bool:
        if isinstance(v, float):
            return False
        if isinstance(v, dict):
            return all(max(k, default="a") < "\ue000" and plain(x) for k, x in v.items())
        if isinstance(v, list):
            return all(map(plain, v))
        return True

    if plain(value):
        assert canonical_json(value) == sorted_json(value)


@pytest.mark.parametrize(
    ("number", "text"),
    [
        # RFC 8785 appendix B and ECMAScript's Number::toString boundaries
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (1.5, "1.5"),
        (0.1, "0.1"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (123e-20, "1.23e-18"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (-1.7976931348623157e308, "-1.7976931348623157e+308"),
        (9007199254740992.0, "9007199254740992"),
        (295147905179352830000.0, "295147905179352830000"),
        (333333333.3333333, "333333333.3333333"),
        (SAFE, "9007199254740991"),
        (-SAFE, "-9007199254740991"),
    ],
)
def test_numbers_are_written_as_ecmascript_writes_them(number: float, text: str) -> None:
    assert canonical_json([number]) == f"[{text}]".encode()


def test_keys_are_sorted_by_utf16_code_units() -> None:
    """RFC 8785 section 3.2.3's example: code-point order would put U+1F600 last."""
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    names = list(json.loads(canonical_json(value)).values())
    assert names == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]
    assert sorted_json(value) != canonical_json(value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"n": SAFE + 1}, "integer_out_of_range"),
        ([-(2**63)], "integer_out_of_range"),
        ({"x": math.nan}, "not_a_number"),
        ({"x": [math.inf]}, "not_a_number"),
        ({"x": "\ud800"}, "not_canonicalizable"),
        ({"\udfff": 1}, "not_canonicalizable"),
        ({"x": object()}, "not_json"),
        ({1: "int key"}, "not_json"),
    ],
)
def test_what_jcs_cannot_represent_is_refused(value: Any, reason: str) -> None:
    with pytest.raises(SerializationError) as caught:
        canonical_json(value)
    assert caught.value.details["reason"] == reason
    assert caught.value.code == "serialization_error"


def test_nesting_too_deep_to_walk_is_refused() -> None:
    deep: Any = 1
    for _ in range(sys.getrecursionlimit() + 100):
        deep = [deep]
    with pytest.raises(SerializationError) as caught:
        canonical_json(deep)
    assert caught.value.details["reason"] == "too_deep"


# -- an independent implementation: the docs' jcs.js --------------------------------------------


def _doc_blocks() -> tuple[str, str]:
    """docs/security.md's worked example: the block saved as ``jcs.js`` and the shell block
    after it (found by tests/_doc_blocks.py, the docs test's extractor)."""
    found = blocks(SECURITY_MD, ROOT)
    (index,) = [i for i, block in enumerate(found) if block.file_name == "jcs.js"]
    js, sh = found[index], found[index + 1]
    assert (js.lang, sh.lang) == ("js", "bash")
    return js.text, sh.text


def _tools(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        message = f"needs {', '.join(missing)} on PATH (apt-get install -y nodejs jq sqlite3)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(JSON_VALUES, min_size=40, max_size=40))
def test_the_docs_javascript_canonicalizer_agrees(tmp_path_factory: Any, values: list[Any]) -> None:
    """Each value goes to node as Python's JSON text (floats as repr, which parses to the
    same double); jcs.js must print exactly `canonical_json`'s bytes."""
    _tools("node")
    folder = tmp_path_factory.mktemp("jcs")
    script = folder / "jcs.js"
    script.write_text(_doc_blocks()[0])
    runner = folder / "each.js"
    # Run jcs.js's canonicalizer on every line of stdin, one output line each.
    runner.write_text(
        _doc_blocks()[0].split("let text")[0]
        + 'require("fs").readFileSync(0, "utf8").split("\\n").filter(Boolean)'
        + '.forEach((l) => process.stdout.write(canon(JSON.parse(l)) + "\\n"));\n'
    )
    lines = "".join(json.dumps(v, ensure_ascii=True) + "\n" for v in values)
    done = subprocess.run(
        ["node", str(runner)], input=lines.encode(), capture_output=True, timeout=120, check=True
    )
    got = done.stdout.decode("utf-8").split("\n")[:-1]
    assert got == [canonical_json(v).decode("utf-8") for v in values]


def test_the_worked_example_in_security_md_runs(tmp_path: Path) -> None:
    _tools("node", "jq", "sqlite3", "sha256sum")
    js, sh = _doc_blocks()
    (tmp_path / "jcs.js").write_text(js)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("STRONGROOM_URL", None)
    done = subprocess.run(
        ["bash", "-c", sh], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bound by the audit chain" in done.stdout
    assert "prev_hash" in done.stdout
    assert "its hash" in done.stdout


async def test_every_hash_in_a_vault_is_rfc8785_as_security_md_says(tmp_path: Path) -> None:
    """docs/security.md's table, checked on every row of a vault with the values the two forms
    write differently, by an implementation that is not strongroom's (``rfc8785``): every audit
    and log entry's hash is SHA-256 of the JCS of the entry without ``hash``, and the newest
    binding of every record is SHA-256 of the JCS of the record as stored."""
    odd = {"ratio": 1.0, "tiny": 1e-7, "huge": 1e21, "w": 0.5, "\U0001f600k": 1, "\ue000k": 2}
    path = tmp_path / "v"
    async with await Vault.open(path) as vault:
        run = await vault.runs.create(project="p", purpose="every hash")
        await vault.snapshots.save(run.run_id, {"data": odd}, expected_revision=0)
        await vault.logs.append_many(run.run_id, [{"event": "e", "data": odd}] * 3)
        await vault.artifacts.put_bytes(run.run_id, b"x", name="x.bin", metadata=odd)
        await vault.runs.start(run.run_id)
        await vault.runs.complete(run.run_id)
    db = path / "vault.db"

    def jcs_sha256(value: Any) -> str:
        return hashlib.sha256(rfc8785.dumps(value)).hexdigest()

    entries = _bodies(db, "SELECT body FROM audit_entries ORDER BY seq")
    newest: dict[tuple[str, str], str | None] = {}
    for entry in entries:
        assert entry["canon"] == CANON
        assert jcs_sha256({k: v for k, v in entry.items() if k != "hash"}) == entry["hash"]
        for binding in entry["records"]:
            if binding["type"] != "log":
                newest[(binding["type"], binding["id"])] = binding["digest"]
    lines = _bodies(db, "SELECT body FROM log_entries")
    assert len(lines) == 3
    for line in lines:
        assert jcs_sha256({k: v for k, v in line.items() if k != "hash"}) == line["hash"]
    with sqlite3.connect(db) as conn:
        tables = [
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if any(col[1] == "body" for col in conn.execute(f'PRAGMA table_info("{name}")'))
        ]
    stored = {
        jcs_sha256(body)
        for table in tables
        if table not in ("audit_entries", "log_entries")
        for body in _bodies(db, f'SELECT body FROM "{table}"')
    }
    bound = {digest for digest in newest.values() if digest is not None}
    assert len(bound) >= 5  # the run, its snapshot, the artifact, the log ref, the catalog
    assert bound <= stored, bound - stored


# -- entries and signatures in the older form ---------------------------------------------------


def _line(seq: int, prev: str, canon: str | None, data: dict[str, Any]) -> LogEntry:
    """A log entry hashed as the docs say, computed here without `entry_hash`: RFC 8785 of
    the entry without ``hash`` for a ``jcs`` entry, else sorted json.dumps without ``canon``."""
    entry = LogEntry.model_validate(
        {
            "run_id": "01a24d8e-e80d-7ec4-beaf-c95d8b93c517",
            "seq": seq,
            "timestamp": "2026-12-01T00:00:00.5Z",
            "level": "info",
            "event": "e",
            "message": "m",
            "data": data,
            "prev_hash": prev,
            "hash": GENESIS_HASH,
            "canon": canon,
        }
    )
    body = entry.model_dump(mode="json", exclude={"hash"})
    if canon is None:
        del body["canon"]
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        hashed = text.encode()
    else:
        hashed = rfc8785.dumps(body)
    return entry.model_copy(update={"hash": hashlib.sha256(hashed).hexdigest()})


def test_a_chain_of_old_then_new_entries_verifies_and_old_after_new_is_reported() -> None:
    floats = {"ratio": 1.0, "big": 1e21}
    old = _line(1, GENESIS_HASH, None, floats)
    new = _line(2, old.hash, CANON, floats)
    assert entry_hash(old) == old.hash
    assert entry_hash(new) == new.hash
    # The two forms differ here, so each entry verifies only in its own.
    assert sorted_json(floats) != canonical_json(floats)
    assert verify_chain([old, new], subject_prefix="run", kind="log") == []
    downgraded = _line(3, new.hash, None, floats)
    problems = verify_chain([old, new, downgraded], subject_prefix="run", kind="log")
    assert [p.subject for p in problems] == ["run#3"]
    assert "before RFC 8785" in problems[0].message
    # Claiming the new form while hashed the old way does not verify either.
    forged = old.model_copy(update={"canon": CANON})
    assert entry_hash(forged) != forged.hash


def test_a_signature_made_before_jcs_still_verifies_and_only_over_what_it_signed() -> None:
    key = SigningKey.generate()
    actor = Actor(
        key_id=key.key_id,
        name="ann",
        public_key=key.public_key_hex,
        roles=["admin"],
        added_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    content = {"version": "1.0.0", "weight": 1.0, "limit": 1e21}
    at = datetime(2026, 12, 1, tzinfo=UTC)
    before = act_payload("approve", content, key.key_id, at, before_jcs=True)
    assert before != act_payload("approve", content, key.key_id, at)
    old = ActSignature(key_id=key.key_id, signed_at=at, signature=key.sign(before))
    assert signature_problem("approve", content, old, actor, ActorRole.APPROVER) is None
    edited = {**content, "weight": 2.0}
    assert signature_problem("approve", edited, old, actor, ActorRole.APPROVER) is not None
    new = ActSignature(
        key_id=key.key_id,
        signed_at=at,
        signature=key.sign(act_payload("approve", content, key.key_id, at)),
    )
    assert signature_problem("approve", content, new, actor, ActorRole.APPROVER) is None


# -- a vault written before the format ----------------------------------------------------------


def _legacy_vault(tmp_path: Path) -> Path:
    with tarfile.open(LEGACY_VAULT) as archive:
        archive.extractall(tmp_path, filter="data")
    return tmp_path / ".strongroom"


def _forms_differ(value: Any) -> bool:
    try:
        return canonical_json(value) != sorted_json(value)
    except SerializationError:
        return True


def _bodies(db: Path, sql: str) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        return [json.loads(row[0]) for row in conn.execute(sql)]


async def test_a_vault_written_before_jcs_verifies_and_keeps_verifying_as_it_grows(
    tmp_path: Path,
) -> None:
    path = _legacy_vault(tmp_path)
    db = path / "vault.db"
    entries = _bodies(db, "SELECT body FROM audit_entries ORDER BY seq")
    assert entries
    assert all("canon" not in e for e in entries)
    # It holds records whose two forms differ (floats, a big integer, a key above U+E000):
    # a verify that knew only RFC 8785 would report them.
    artifacts = _bodies(db, "SELECT body FROM artifacts")
    assert [a["metadata"]["big"] for a in artifacts if "big" in a["metadata"]] == [2**60]
    # ...and one RFC 8785 writes, but differently (1.0 as 1, keys in UTF-16 order).
    (floats,) = [a for a in artifacts if "whole" in a["metadata"] and "big" not in a["metadata"]]
    assert canonical_json(floats) != sorted_json(floats)
    lines = _bodies(db, "SELECT body FROM log_entries")
    assert sum(map(_forms_differ, [ln["data"] for ln in lines])) == 3  # the ODD lines

    async with await Vault.open(path, create=False) as vault:
        report = await vault.verify()
        assert report.problems == [], report.problems
        # Reading checks the artifact against its binding; a bundle and a vault in memory
        # recompute every record's digest (no stored text to compare with).
        (odd,) = [a for a in await vault.artifacts.list(limit=500) if "big" in a.metadata]
        assert await vault.artifacts.get_bytes(odd.artifact_id) == b"legacy bytes\n"
        await export_vault(vault, tmp_path / "bundle")
        async with await Vault.open("memory://", bootstrap=False) as copy:
            await import_vault(tmp_path / "bundle", copy)
            report = await copy.verify()
            assert report.problems == [], report.problems
        run = await vault.runs.create(project="after", purpose="written in the new form")
        await vault.logs.append(run.run_id, {"event": "x", "data": {"ratio": 1.0, "n": 1e21}})
        await vault.artifacts.put_bytes(run.run_id, b"new\n", name="n.txt", metadata={"w": 0.5})
        report = await vault.verify()
        assert report.problems == [], report.problems

    after = _bodies(db, "SELECT body FROM audit_entries ORDER BY seq")
    assert [e.get("canon") for e in after[len(entries) :]] == [CANON] * (len(after) - len(entries))
    assert all("canon" not in e for e in after[: len(entries)])
    done = subprocess.run(  # noqa: ASYNC221 (the vault is closed; nothing else runs)
        [sys.executable, "-m", "strongroom", "--vault", str(path), "verify"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_a_log_line_rewritten_in_the_older_form_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "v"
    async with await Vault.open(path) as vault:
        run = await vault.runs.create(project="p")
        await vault.logs.append_many(run.run_id, [{"event": "a"}, {"event": "b"}])
    db = path / "vault.db"
    with sqlite3.connect(db) as conn:
        drop_append_only_guards(conn)
        (body,) = conn.execute("SELECT body FROM log_entries WHERE seq = 2").fetchone()
        entry = json.loads(body)
        assert entry.pop("canon") == CANON
        del entry["hash"]
        digest = hashlib.sha256(sorted_json(entry)).hexdigest()
        conn.execute(
            "UPDATE log_entries SET body = ?, hash = ? WHERE seq = 2",
            (json.dumps({**entry, "hash": digest}), digest),
        )
    async with await Vault.open(path, create=False) as vault:
        report = await vault.verify()
    reasons = [p.details.get("reason") for p in report.problems]
    assert "canon_regressed" in reasons, report.problems


async def test_a_value_jcs_cannot_hash_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    async with await Vault.open(tmp_path / "v") as vault:
        run = await vault.runs.create(project="p")
        before = await vault.audit.head()
        with pytest.raises(SerializationError) as caught:
            await vault.artifacts.put_bytes(run.run_id, b"x", name="x", metadata={"n": 2**60})
        assert caught.value.details["reason"] == "integer_out_of_range"
        with pytest.raises(SerializationError):
            await vault.logs.append(run.run_id, {"event": "big", "data": {"n": -(2**53)}})
        assert await vault.artifacts.list(run_id=run.run_id) == []
        assert await vault.logs.read(run.run_id) == []
        assert await vault.audit.head() == before
        assert (await vault.verify()).problems == []
