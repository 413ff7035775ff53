"""Mass Relay's sample documents (tests/data/mass_relay, copied from santosizhar/usul-mass-relay)
accepted as they are: each definition publishes with `strongroom registry publish` and reads
back field for field; a tool without an entrypoint is published, says it is unbound and is
refused (structured) until `registry bind`; the sample runner request runs a tool and its
fields are in the response and the audit; persistence records and runner documents round-trip;
record_run_summary takes the contract's object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from _keys import registered_key
from _lane import APPROVER, Lane, open_lane, require_sandbox
from strongroom.cli import app
from strongroom.errors import ValidationError
from strongroom.integrations import mass_relay
from strongroom.models import DefinitionKind, RunnerStatus
from strongroom.testing.keys import approver

DATA = Path(__file__).with_name("data") / "mass_relay"
TOOLS = DATA / "tools"

DEFINITIONS = {
    "tool.manifest.sample.json": ("tool_manifest", "01J9Z0T7Y1MR2W3P4Q5N6R7S8T"),
    "reference.tools.sample.json": ("tool_manifest", "01J9Z1F5G6H7J8K9L0M1N2P3Q4"),
    "execution.sandbox.sample.json": ("sandbox_policy", "01J9Z1B3C4D5E6F7G8H9J0K1L2"),
    "agent-playbook.sample.json": ("playbook", "playbook-ops-triage"),
    "ops-triage.playbook.json": ("playbook", "playbook-ops-triage"),
    "project.config.json": ("project_config", "project-ops-automation-studio"),
}
PERSISTENCE = [
    "playbook.persistence.sample.json",
    "project.config.persistence.sample.json",
    "run.storage.sample.json",
]
TYPES = {
    "tool.manifest.sample.json": "tool_manifest",
    "reference.tools.sample.json": "reference_tool_catalog",
    "execution.sandbox.sample.json": "execution_sandbox",
    "agent-playbook.sample.json": "agent_playbook",
    "ops-triage.playbook.json": "agent_playbook",
    "project.config.json": "project_config",
    "playbook.persistence.sample.json": "playbook_persistence",
    "project.config.persistence.sample.json": "project_config_persistence",
    "run.storage.sample.json": "run_persistence",
    "python.runner.request.sample.json": "python_runner_request",
    "python.runner.response.sample.json": "python_runner_response",
}


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def same(a: Any, b: Any) -> bool:
    """Equal as JSON, types included (1 and 1.0, true and 1 differ)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


class Cli:
    def __init__(self, vault: Path) -> None:
        self.runner = CliRunner(
            env={"STRONGROOM_URL": None, "STRONGROOM_ACTOR": None, "NO_COLOR": "1"}
        )
        self.vault = vault

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(app, ["--vault", str(self.vault), *args])

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok("--json", *args).stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    bound = Cli(tmp_path / "vault")
    bound.ok("init")
    return bound


@pytest.fixture
def alice(cli: Cli) -> str:
    return registered_key(cli, cli.vault.parent, "alice")


def test_every_sample_is_recognised_by_its_shape() -> None:
    assert {p.name for p in DATA.glob("*.json")} == set(TYPES)
    for name, expected in TYPES.items():
        assert mass_relay.document_type(load(name)) == expected, name
    # A strongroom definition is never taken for one (it has `kind`).
    assert mass_relay.document_type({"kind": "playbook", "playbook_id": "x", "steps": []}) is None


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_each_definition_publishes_as_it_is_and_round_trips(
    cli: Cli, alice: str, name: str
) -> None:
    kind, ident = DEFINITIONS[name]
    path = DATA / name
    [result] = cli.json("registry", "publish", str(path), "--key", alice)
    assert result["created"] is True
    assert result["version"]["kind"] == kind
    assert result["version"]["definition_id"] == ident
    # Every field back, as it was: the original document.
    shown = json.loads(cli.ok("registry", "show", ident, "--original").stdout)
    assert same(shown, load(name))
    view = cli.json("registry", "show", ident)
    assert same(view["definition"]["extensions"]["mass_relay"]["original"], load(name))
    # Publishing the same document again is the same version.
    [again] = cli.json("registry", "publish", str(path), "--key", alice)
    assert again["created"] is False
    assert again["version"]["digest"] == result["version"]["digest"]


def test_a_tool_without_an_entrypoint_is_published_and_says_it_is_unbound(
    cli: Cli, alice: str
) -> None:
    path = DATA / "tool.manifest.sample.json"
    text = cli.ok("registry", "publish", str(path), "--key", alice).stdout
    assert "tool tool.fetch-object-storage: no entrypoint" in text
    assert "not runnable until bound" in text
    view = cli.json("registry", "show", "01J9Z0T7Y1MR2W3P4Q5N6R7S8T")
    assert view["unbound_tools"] == ["tool.fetch-object-storage", "tool.write-audit-log"]
    shown = cli.ok("registry", "show", "01J9Z0T7Y1MR2W3P4Q5N6R7S8T").stdout
    assert "strongroom registry bind" in shown


def test_running_an_unbound_tool_is_a_structured_refusal_then_bind_makes_it_runnable(
    cli: Cli, alice: str
) -> None:
    cli.ok("registry", "publish", str(DATA / "tool.manifest.sample.json"), "--key", alice)
    refused = cli("--json", "tools", "run", "tool.write-audit-log@2025.01", "--input", "{}")
    assert refused.exit_code != 0
    response = json.loads(refused.stdout)
    assert response.get("status") == "failure", response
    assert response["error"]["code"] == "validation_error"
    details = response["error"]["details"]
    assert details["reason"] == "tool_not_bound"
    assert details["command"] == (
        "strongroom registry bind tool.write-audit-log@2025.01 --entrypoint package.module:function"
    )
    bound = cli.json(
        "registry",
        "bind",
        "tool.write-audit-log@2025.01",
        "--entrypoint",
        "relay_tools:fetch_object_storage",
        "--key",
        alice,
    )
    assert bound["created"] is True
    assert bound["version"]["version"] == "1.0.0-bound.1"
    assert bound["unbound_tools"] == ["tool.fetch-object-storage"]
    view = cli.json("registry", "show", "01J9Z0T7Y1MR2W3P4Q5N6R7S8T@1.0.0-bound.1")
    assert view["unbound_tools"] == ["tool.fetch-object-storage"]
    # The original document is kept, unchanged, in the bound version too.
    original = cli.ok(
        "registry", "show", "01J9Z0T7Y1MR2W3P4Q5N6R7S8T@1.0.0-bound.1", "--original"
    ).stdout
    assert same(json.loads(original), load("tool.manifest.sample.json"))
    bad = cli("--json", "registry", "bind", "tool.write-audit-log", "--entrypoint", "not a path")
    assert json.loads(bad.stdout)["error"]["code"] == "validation_error"


def test_the_two_tool_samples_define_the_same_tools(cli: Cli, alice: str) -> None:
    """tool.manifest and reference.tools both define tool.fetch-object-storage: one manifest
    owns a tool in strongroom, so the second is refused, saying which owns it."""
    cli.ok("registry", "publish", str(DATA / "tool.manifest.sample.json"), "--key", alice)
    result = cli("--json", "registry", "publish", str(DATA / "reference.tools.sample.json"))
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "conflict"
    assert error["details"]["reason"] == "tool_owned_elsewhere"


def test_conversions_keep_strongroom_rules() -> None:
    catalog = mass_relay.to_definition(load("reference.tools.sample.json"))
    tools = {t["tool_id"]: t for t in catalog["tools"]}
    assert tools["tool.record-run-summary"]["entrypoint"] == (
        "reference_tools.record_run_summary:run"
    )
    assert tools["tool.record-run-summary"]["governance"]["level"] == "A2"
    sandbox = mass_relay.to_definition(load("execution.sandbox.sample.json"))
    assert sandbox["filesystem"] == {"mode": "read-only", "read_paths": ["/workspace", "/tmp"]}
    playbook = mass_relay.to_definition(load("agent-playbook.sample.json"))
    assert playbook["steps"][1]["depends_on"] == ["step-collect-signal"]
    assert playbook["steps"][1]["tool"] == "draft.remediation.plan"
    with pytest.raises(ValidationError) as info:
        mass_relay.to_definition(load("python.runner.request.sample.json"))
    assert "tools run --request" in str(info.value)


def test_a_playbook_and_project_naming_what_is_not_published_say_so(cli: Cli, alice: str) -> None:
    [playbook] = cli.json(
        "registry", "publish", str(DATA / "agent-playbook.sample.json"), "--key", alice
    )
    assert playbook["unresolved"] == ["tool:aggregate.alerts", "tool:draft.remediation.plan"]
    [project] = cli.json("registry", "publish", str(DATA / "project.config.json"), "--key", alice)
    assert project["unresolved"] == ["playbook:playbook-ops-writeback"]


# -- persistence records ------------------------------------------------------------------------


@pytest.mark.parametrize("name", PERSISTENCE)
def test_persistence_records_round_trip(name: str) -> None:
    original = load(name)
    assert mass_relay.persistence_document(original).document() == original
    record = mass_relay.persistence_record(original)
    assert record.storage.checksum == original["storage"]["checksum"].removeprefix("sha256:")
    assert same(mass_relay.from_persistence_record(record), original)


def test_each_version_has_its_persistence_record(cli: Cli, alice: str) -> None:
    [result] = cli.json(
        "registry", "publish", str(DATA / "agent-playbook.sample.json"), "--key", alice
    )
    shown = cli.ok("registry", "show", "playbook-ops-triage", "--persistence-record").stdout
    record = json.loads(shown)
    digest = result["version"]["digest"]
    assert record["playbook_id"] == "playbook-ops-triage"
    assert record["version"] == "1.0.0"
    assert record["format"] == "json"
    assert record["storage"]["checksum"] == f"sha256:{digest}"
    assert record["storage"]["object_path"] == "playbooks/playbook-ops-triage/1.0.0.json"
    assert record["storage"]["namespace_id"] == "playbooks"
    assert record["storage"]["size_bytes"] == result["version"]["size_bytes"]
    assert mass_relay.persistence_record(record).subject_id == "playbook-ops-triage"


# -- the runner -----------------------------------------------------------------------------------


def test_runner_documents_round_trip() -> None:
    request = load("python.runner.request.sample.json")
    assert mass_relay.python_runner_request(request).document() == request
    response = load("python.runner.response.sample.json")
    parsed = mass_relay.PythonRunnerResponse.model_validate(response)
    assert parsed.document() == response
    converted = mass_relay.runner_request(
        mass_relay.python_runner_request(request), run_exists=False
    )
    assert converted.external_run_id == request["run_id"]
    assert converted.governance is not None
    assert converted.governance.requires_hitl is True
    assert converted.trace is not None
    assert converted.trace.trace_id == "trace-0a1b2c3d4e"
    assert converted.timeout_seconds == 45


async def _bound_lane(tmp_path: Path) -> Lane:
    lane = await open_lane(tmp_path, tool_paths=(TOOLS,))
    key = await approver(lane.vault, "alice")
    await mass_relay.publish(
        lane.vault,
        (DATA / "tool.manifest.sample.json").read_bytes(),
        file_name="tool.manifest.sample.json",
        signer=key,
    )
    await lane.vault.registry.bind_tool(
        "tool.fetch-object-storage@2025.01",
        entrypoint="relay_tools:fetch_object_storage",
        signer=key,
    )
    await lane.vault.registry.approve(
        {"scope": "tool_version", "tool_id": "tool.fetch-object-storage", "version": "2025.01"},
        signer=await approver(lane.vault, APPROVER),
        reason="the Mass Relay sample tool",
    )
    return lane


async def test_the_sample_runner_request_runs_and_is_recorded(tmp_path: Path) -> None:
    require_sandbox()
    lane = await _bound_lane(tmp_path)
    try:
        request = load("python.runner.request.sample.json")
        native, relay = await mass_relay.run_request(lane.runner, request)
        assert native.status is RunnerStatus.SUCCESS, native.error
        out = relay.document()
        for key in ("request_id", "run_id", "tool_id", "tool_version", "trace"):
            assert out[key] == request[key], key
        assert out["status"] == "success"
        assert out["output"] == {
            "uri": f"s3://{request['input']['bucket']}/{request['input']['key']}",
            "content_type": "application/json",
        }
        assert set(out) <= set(mass_relay.PythonRunnerResponse.model_fields)
        # strongroom's response echoes what was asked, too.
        assert native.requested_at is not None
        assert native.requested_at.isoformat() == "2025-01-05T10:05:00+00:00"
        assert native.timeout_seconds == 45
        assert native.external_run_id == request["run_id"]
        assert native.governance is not None
        assert native.governance.model_dump() == request["governance"]
        assert native.trace is not None
        assert native.trace.model_dump() == request["trace"]
        end = await lane.end_record(native)
        assert end["requested_at"] == "2025-01-05T10:05:00+00:00"
        assert end["timeout_seconds"] == 45
        assert end["requested_governance"] == request["governance"]
        assert end["trace"] == request["trace"]
        assert end["external_run_id"] == request["run_id"]
        assert end["caller"] == request["caller"]
        assert end["timeout_seconds"] == 45
    finally:
        await lane.vault.close()


async def test_an_unbound_tool_is_refused_with_the_bind_command(tmp_path: Path) -> None:
    lane = await open_lane(tmp_path)
    try:
        await mass_relay.publish(
            lane.vault,
            (DATA / "tool.manifest.sample.json").read_bytes(),
            file_name="tool.manifest.sample.json",
            signer=await approver(lane.vault, "alice"),
        )
        response = await lane.runner.run(
            mass_relay.runner_request(
                mass_relay.python_runner_request(load("python.runner.request.sample.json")),
                run_exists=False,
            )
        )
        assert response.error is not None
        assert response.error.details["reason"] == "tool_not_bound"
        assert "strongroom registry bind tool.fetch-object-storage@2025.01" in (
            response.error.message
        )
        refused = await lane.audit(response.request_id)
        assert [e.event for e in refused] == ["execution.refused"]
        assert refused[0].details["external_run_id"] == "01J9Z0X9S4J5K6L7M8N9P0Q1R2"
    finally:
        await lane.vault.close()


def test_tools_run_request_prints_the_mass_relay_response(
    cli: Cli, alice: str, tmp_path: Path
) -> None:
    require_sandbox()
    cli.ok("registry", "publish", str(DATA / "tool.manifest.sample.json"), "--key", alice)
    cli.ok(
        "registry",
        "bind",
        "tool.fetch-object-storage@2025.01",
        "--entrypoint",
        "relay_tools:fetch_object_storage",
        "--key",
        alice,
    )
    bob = registered_key(cli, cli.vault.parent, "bob", admin=alice)
    cli.ok(
        "registry",
        "approve",
        "--tool",
        "tool.fetch-object-storage@2025.01",
        "--reason",
        "sample",
        "--key",
        bob,
    )
    result = cli.json(
        "tools",
        "run",
        "--request",
        str(DATA / "python.runner.request.sample.json"),
        "--tool-path",
        str(TOOLS),
        "--workdir",
        str(tmp_path),
    )
    request = load("python.runner.request.sample.json")
    assert result["response"]["run_id"] == request["run_id"]
    assert result["response"]["trace"] == request["trace"]
    assert result["response"]["status"] == "success"
    assert result["strongroom"]["timeout_seconds"] == 45


# -- record_run_summary ---------------------------------------------------------------------------


async def test_record_run_summary_takes_the_contract_object(tmp_path: Path) -> None:
    require_sandbox()
    from strongroom.execution.host_services import reference_manifest

    lane = await open_lane(tmp_path)
    try:
        key = await approver(lane.vault, "alice")
        await lane.vault.registry.publish(
            reference_manifest(), file_name="reference_tools.yaml", signer=key
        )
        await lane.vault.registry.approve(
            {"scope": "tool_version", "tool_id": "record_run_summary", "version": "1.1.0"},
            signer=await approver(lane.vault, APPROVER),
            reason="reference tool",
        )
        run = await lane.vault.runs.create(project="relay")
        await lane.vault.runs.start(run.run_id)
        summary = {"run_id": run.run_id, "status": "success"}
        response = await lane.run("record_run_summary", {"summary": summary}, run_id=run.run_id)
        assert response.ok, response.error
        assert response.output == {"recorded": True, "summary": summary}
        recorded = (await lane.vault.runs.get(run.run_id)).summary
        assert recorded is not None
        assert json.loads(recorded) == summary
        refused = await lane.run("record_run_summary", {"summary": "text"}, run_id=run.run_id)
        assert refused.error is not None
        assert refused.error.code == "schema_validation_failed"
    finally:
        await lane.vault.close()


def test_mass_relay_kinds_map_to_strongroom_kinds() -> None:
    assert set(mass_relay.DEFINITION_TYPES.values()) == {k.value for k in DefinitionKind}
