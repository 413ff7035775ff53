"""The example data-quality tools (examples/tools/strongroom_examples/data_quality.py): every
output matches its contract in examples/registry/data-quality-tools.yaml, outputs are
deterministic, the sample CSV's dirty values are cleaned or reported, and load_csv runs
through the real ToolRunner under the sandbox-readonly policy."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from strongroom import Vault
from strongroom.execution import RunnerOptions, ToolRunner
from strongroom.ids import new_id
from strongroom.sandbox.host import probe_host
from strongroom.testing.keys import approver

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
REGISTRY = EXAMPLES / "registry"
TOOLS_DIR = EXAMPLES / "tools"
PROJECT = EXAMPLES / "project"
SAMPLE = "data/in/customers.csv"
PLAYBOOK_RULES = ["not_null:id", "unique:id", "range:amount:0:1000000"]
ALL_RULES = [*PLAYBOOK_RULES, "email:email", "date:signup_date"]

Tool = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture(scope="module")
def dq() -> Iterator[ModuleType]:
    sys.path.insert(0, str(TOOLS_DIR))
    try:
        yield importlib.import_module("strongroom_examples.data_quality")
    finally:
        sys.path.remove(str(TOOLS_DIR))


@pytest.fixture(scope="module")
def contracts() -> dict[str, dict[str, Any]]:
    manifest = yaml.safe_load((REGISTRY / "data-quality-tools.yaml").read_text(encoding="utf-8"))
    return {tool["tool_id"]: tool["contract"] for tool in manifest["tools"]}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of examples/project as the working directory."""
    workdir = tmp_path / "project"
    shutil.copytree(PROJECT, workdir)
    monkeypatch.chdir(workdir)
    return workdir


def call(
    dq: ModuleType, contracts: dict[str, dict[str, Any]], name: str, request: dict[str, Any]
) -> dict[str, Any]:
    """Call tool ``name`` as the runner would: request and response checked against the
    manifest's contract, the response a JSON round trip."""
    contract = contracts[name]
    jsonschema.validate(request, contract["request_schema"])
    tool: Tool = getattr(dq, name)
    response = tool(request)
    assert json.loads(json.dumps(response, allow_nan=False)) == response
    jsonschema.validate(response, contract["response_schema"])
    return response


def pipeline(
    dq: ModuleType, contracts: dict[str, dict[str, Any]], *, locale: str = "en"
) -> dict[str, dict[str, Any]]:
    """The playbook's steps on the sample, wired as in data-quality-playbook.yaml."""
    ingest = call(dq, contracts, "load_csv", {"path": SAMPLE, "delimiter": ","})
    normalise = call(
        dq, contracts, "normalise_records", {"records": ingest["records"], "locale": locale}
    )
    qa = call(
        dq,
        contracts,
        "run_quality_checks",
        {"records": normalise["records"], "rules": PLAYBOOK_RULES},
    )
    report = call(
        dq,
        contracts,
        "build_report",
        {"failures": qa["failures"], "row_count": ingest["row_count"]},
    )
    export = call(
        dq, contracts, "export_dataset", {"records": normalise["records"], "format": "jsonl"}
    )
    return {"ingest": ingest, "normalise": normalise, "qa": qa, "report": report, "export": export}


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


# -- the sample through the pipeline -----------------------------------------------------------


def test_sample_pipeline_finds_the_planted_failures(
    dq: ModuleType, contracts: dict[str, dict[str, Any]], project: Path
) -> None:
    steps = pipeline(dq, contracts)
    ingest = steps["ingest"]
    assert ingest["row_count"] == 150
    assert ingest["columns"] == ["id", "name", "email", "country", "amount", "signup_date"]
    assert all(isinstance(v, str) for record in ingest["records"] for v in record.values())

    found = [(f["rule"], f["row"]) for f in steps["qa"]["failures"]]
    assert found == [
        ("not_null:id", 17),
        ("unique:id", 88),
        ("range:amount:0:1000000", 102),
        ("range:amount:0:1000000", 131),
    ]
    assert steps["qa"]["passed"] is False
    assert steps["report"]["report"] == {
        "row_count": 150,
        "failure_count": 4,
        "failed_rows": 4,
        "by_rule": {"not_null:id": 1, "range:amount:0:1000000": 2, "unique:id": 1},
        "pass_rate": 0.9733,
        "passed": False,
        "generated_by": "strongroom_examples.data_quality:build_report",
    }

    assert steps["export"] == {"path": "out/clean.jsonl", "row_count": 150}
    lines = (project / "out" / "clean.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        dict(sorted(r.items())) for r in steps["normalise"]["records"]
    ]
    assert not [p.name for p in (project / "out").iterdir() if p.name.endswith(".tmp")]


def test_sample_optional_rules_find_bad_emails_and_dates(
    dq: ModuleType, contracts: dict[str, dict[str, Any]], project: Path
) -> None:
    records = pipeline(dq, contracts)["normalise"]["records"]
    qa = call(dq, contracts, "run_quality_checks", {"records": records, "rules": ALL_RULES})
    extra = [(f["rule"], f["row"]) for f in qa["failures"] if f["rule"] not in PLAYBOOK_RULES]
    assert extra == [("email:email", 23), ("email:email", 64), ("date:signup_date", 55)]


def test_sample_dirty_values_are_normalised(
    dq: ModuleType, contracts: dict[str, dict[str, Any]], project: Path
) -> None:
    steps = pipeline(dq, contracts)
    raw, clean = steps["ingest"]["records"], steps["normalise"]["records"]
    assert raw[3]["name"] == "  Chiara Roth "
    assert clean[3]["name"] == "Chiara Roth"
    assert clean[77]["name"] == "Meier, Lea"
    assert clean[9]["country"] == "CH"
    assert clean[8]["email"] == "daniel.vogel@mail.example.ch"
    assert clean[17]["id"] is None
    assert clean[0]["id"] == 1001
    assert [clean[r]["amount"] for r in (14, 38, 81, 115)] == [1234.5, 2480.0, 12.5, 89.9]
    dates = [clean[r]["signup_date"] for r in (5, 12, 30, 47, 71, 95, 120)]
    assert dates == [
        "2024-03-15",
        "2024-07-01",
        "2023-11-28",
        "2024-03-05",
        "2024-03-05",
        "2024-01-15",
        "2023-09-14",
    ]
    assert clean[55]["signup_date"] == "2024-02-30"  # left for the date rule to report
    assert steps["normalise"]["changes"] > 0
    again = call(dq, contracts, "normalise_records", {"records": clean, "locale": "en"})
    assert again == {"records": clean, "changes": 0}


def test_every_output_is_deterministic(
    dq: ModuleType, contracts: dict[str, dict[str, Any]], project: Path
) -> None:
    first = pipeline(dq, contracts)
    first_file = (project / "out" / "clean.jsonl").read_bytes()
    second = pipeline(dq, contracts)
    assert _dump(first) == _dump(second)
    assert (project / "out" / "clean.jsonl").read_bytes() == first_file
    records = first["normalise"]["records"]
    exported = [
        call(dq, contracts, "export_dataset", {"records": records, "format": "csv"})
        for _ in range(2)
    ]
    assert exported[0] == exported[1] == {"path": "out/clean.csv", "row_count": 150}
    text = (project / "out" / "clean.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "amount,country,email,id,name,signup_date"
    assert len(text.splitlines()) == 151


# -- small hand-made inputs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "locale", "expected"),
    [
        ("1.234,50", "de-CH", 1234.5),
        ("1.234,50", "en", 1234.5),
        ("1,234.50", "en", 1234.5),
        ("1,234.50", "de", 1234.5),
        ("1'234.50", "de-CH", 1234.5),
        ("12,50", "de-CH", 12.5),
        ("1,250", "en", 1250.0),
        ("1,250", "de-CH", 1.25),
        ("1.250", "de", 1250.0),
        ("1.250", "en", 1.25),
        ("CHF 89.90", "de-CH", 89.9),
        ("-25.00", "en", -25.0),
        ("1.234.567", "de_CH", 1234567.0),
        ("n/a", "en", "n/a"),
        ("1,2,3.4.5", "en", "1,2,3.4.5"),
    ],
)
def test_amounts_are_parsed_for_the_locale(
    dq: ModuleType,
    contracts: dict[str, dict[str, Any]],
    text: str,
    locale: str,
    expected: float | str,
) -> None:
    result = call(
        dq, contracts, "normalise_records", {"records": [{"amount": text}], "locale": locale}
    )
    assert result["records"] == [{"amount": expected}]


def test_normalise_small_record(dq: ModuleType, contracts: dict[str, dict[str, Any]]) -> None:
    record = {
        "id": " 42 ",
        "customer_id": "C-7",
        "name": "  Zoë \t Keller ",
        "email": " Zoe.Keller@Example.CH ",
        "country": "li",
        "amount": "",
        "signup_date": "04/03/2024",
        "score": 3,
    }
    en = call(dq, contracts, "normalise_records", {"records": [record], "locale": "en"})
    assert en["records"] == [
        {
            "id": 42,
            "customer_id": "C-7",
            "name": "Zoë Keller",
            "email": "zoe.keller@example.ch",
            "country": "LI",
            "amount": None,
            "signup_date": "2024-04-03",
            "score": 3,
        }
    ]
    assert en["changes"] == 6
    de = call(dq, contracts, "normalise_records", {"records": [record], "locale": "de-CH"})
    assert de["records"][0]["signup_date"] == "2024-03-04"
    with pytest.raises(ValueError, match="locale"):
        dq.normalise_records({"records": [record], "locale": "not a locale"})


def test_quality_checks_small_input(dq: ModuleType, contracts: dict[str, dict[str, Any]]) -> None:
    records: list[dict[str, Any]] = [
        {"id": 1, "amount": 10.0, "email": "a@example.ch", "signup_date": "2024-01-31"},
        {"id": 1, "amount": "ten", "email": "a@example", "signup_date": "31.01.2024"},
        {"amount": 5, "email": None, "signup_date": None},
        {"id": "", "amount": 2_000_000, "email": "x y@example.ch", "signup_date": "2023-02-29"},
    ]
    result = call(
        dq,
        contracts,
        "run_quality_checks",
        {"records": records, "rules": [*ALL_RULES, "range:amount::5"]},
    )
    assert [(f["rule"], f["row"]) for f in result["failures"]] == [
        ("not_null:id", 2),
        ("not_null:id", 3),
        ("unique:id", 1),
        ("range:amount:0:1000000", 1),
        ("range:amount:0:1000000", 3),
        ("email:email", 1),
        ("email:email", 3),
        ("date:signup_date", 1),
        ("date:signup_date", 3),
        ("range:amount::5", 0),
        ("range:amount::5", 1),
        ("range:amount::5", 3),
    ]
    assert result["failures"][0]["detail"] == "id is missing"
    assert result["passed"] is False
    clean = call(dq, contracts, "run_quality_checks", {"records": records[:1], "rules": ALL_RULES})
    assert clean == {"passed": True, "failures": []}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("primary_key:id", "unknown rule"),
        ("NOT_NULL:id", "unknown rule"),
        ("not_null", "malformed rule"),
        ("range:amount:0", "malformed rule"),
        ("range:amount:low:high", "malformed rule"),
        ("range:amount:10:1", "malformed rule"),
        ("range:amount::", "malformed rule"),
    ],
)
def test_bad_rules_are_refused(dq: ModuleType, rule: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dq.run_quality_checks({"records": [{"id": 1}], "rules": ["not_null:id", rule]})


def test_report_of_no_failures_and_bad_failures(
    dq: ModuleType, contracts: dict[str, dict[str, Any]]
) -> None:
    empty = call(dq, contracts, "build_report", {"failures": [], "row_count": 0})
    assert empty["report"]["pass_rate"] == 1.0
    assert empty["report"]["passed"] is True
    failures = [{"rule": "unique:id", "row": 1}, {"rule": "not_null:id", "row": 1}]
    report = call(dq, contracts, "build_report", {"failures": failures, "row_count": 3})
    assert report["report"]["failed_rows"] == 1
    assert report["report"]["pass_rate"] == 0.6667
    assert list(report["report"]["by_rule"]) == ["not_null:id", "unique:id"]
    with pytest.raises(ValueError, match="outside"):
        dq.build_report({"failures": [{"rule": "r", "row": 3}], "row_count": 3})


def test_load_csv_errors_and_ragged_rows(
    dq: ModuleType, contracts: dict[str, dict[str, Any]], project: Path
) -> None:
    with pytest.raises(ValueError, match="not found"):
        dq.load_csv({"path": "data/in/missing.csv"})
    (project / "data/in/empty.csv").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty header"):
        dq.load_csv({"path": "data/in/empty.csv"})
    (project / "data/in/blank.csv").write_text(" ; \na;b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty header"):
        dq.load_csv({"path": "data/in/blank.csv", "delimiter": ";"})
    (project / "data/in/wide.csv").write_text("a;b\n1;2;3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 has 3 fields"):
        dq.load_csv({"path": "data/in/wide.csv", "delimiter": ";"})
    (project / "data/in/ok.csv").write_text("\ufeff a ;b\n1\n\n'x';\"y;z\"\n", encoding="utf-8")
    result = call(dq, contracts, "load_csv", {"path": "data/in/ok.csv", "delimiter": ";"})
    assert result == {
        "records": [{"a": "1", "b": ""}, {"a": "'x'", "b": "y;z"}],
        "row_count": 2,
        "columns": ["a", "b"],
    }


def test_export_needs_the_output_folder(dq: ModuleType, project: Path) -> None:
    shutil.rmtree(project / "out")
    with pytest.raises(ValueError, match="does not exist"):
        dq.export_dataset({"records": [{"id": 1}], "format": "jsonl"})
    with pytest.raises(ValueError, match="format"):
        dq.export_dataset({"records": [], "format": "xlsx"})


# -- through the sandbox -------------------------------------------------------------------------


async def test_load_csv_runs_in_the_sandbox(tmp_path: Path) -> None:
    if not probe_host().available()["landlock_fs"]:
        message = "this host has no Landlock: the sandbox-readonly policy cannot be enforced"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    workdir = tmp_path / "project"
    shutil.copytree(PROJECT, workdir)
    vault = await Vault.open(tmp_path / "vault")
    try:
        key = await approver(vault, "tester")  # they govern A3 execution: signed
        for name in ("sandbox-readonly.yaml", "data-quality-tools.yaml"):
            await vault.registry.publish((REGISTRY / name).read_bytes(), file_name=name, signer=key)
        runner = ToolRunner(vault, RunnerOptions(workdir=workdir, tool_paths=(TOOLS_DIR,)))
        response = await runner.run(
            {
                "request_id": new_id(),
                "tool_id": "load_csv",
                "input": {"path": SAMPLE, "delimiter": ","},
            }
        )
        assert response.ok, response.error
        assert not response.degraded
        assert "landlock_fs" in response.layers
        assert response.output is not None
        assert response.output["row_count"] == 150
        assert response.output["records"][0]["email"] == "fabian.zuercher@example.com"
    finally:
        await vault.close()
