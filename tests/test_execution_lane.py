"""The runner's behaviour around the sandbox: governance (A1 review, A2 approvals, A3
payloads), schema validation, failure codes, retries, logs, artifacts, degraded isolation
and the reference tools. Every test runs real sandboxed processes and reads the audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from _lane import APPROVER, Lane, manifest, open_lane, policy, require_sandbox, tool
from strongroom.execution.host_services import reference_manifest
from strongroom.models import RunStatus
from strongroom.testing.keys import approver

COUNT_RESPONSE = {
    "type": "object",
    "required": ["count"],
    "properties": {"count": {"type": "integer"}},
}
TEXT_REQUEST = {
    "type": "object",
    "required": ["text"],
    "additionalProperties": False,
    "properties": {"text": {"type": "string", "maxLength": 20}},
}


def reference_tools(policy_ref: str = "lane-policy@1.0.0") -> list[dict[str, Any]]:
    """The reference tools as strongroom ships them, under this lane's policy."""
    tools: list[dict[str, Any]] = yaml.safe_load(reference_manifest())["tools"]
    return [{**t, "policy_refs": [policy_ref]} for t in tools]


@pytest.fixture
async def lane(tmp_path: Path) -> AsyncIterator[Lane]:
    require_sandbox()
    lane = await open_lane(tmp_path)
    tools = [
        tool("echo", "lane_tools:echo", level="A0", request_schema=TEXT_REQUEST),
        tool("draft_echo", "lane_tools:echo", level="A1"),
        tool("guarded_echo", "lane_tools:echo", level="A2"),
        tool("strict_echo", "lane_tools:echo", level="A3"),
        tool("fail", "lane_tools:fail", level="A0", retries=2),
        tool("fail_once", "lane_tools:fail", level="A0"),
        tool("flaky", "lane_tools:flaky", level="A1", retries=2),
        tool("sleep", "lane_tools:sleep", level="A0", timeout=1, retries=1),
        tool("wrong_output", "lane_tools:wrong_output", retries=2, response_schema=COUNT_RESPONSE),
        tool("allocate", "probe_tools:allocate", level="A0"),
        tool("no_policy", "lane_tools:echo", level="A0", policy_refs=()),
        *reference_tools(),
    ]
    await lane.publish(policy(), manifest(tools))
    try:
        yield lane
    finally:
        await lane.vault.close()


async def _events(lane: Lane, request_id: str) -> list[str]:
    return [e.event for e in await lane.audit(request_id)]


# -- success, logs, artifacts ------------------------------------------------------------------


async def test_success_stores_output_logs_and_audit(lane: Lane) -> None:
    response = await lane.run("echo", {"text": "hello"})
    assert response.ok, response.error
    assert response.output is not None
    assert response.output["text"] == "hello"
    assert "landlock_fs" in response.layers
    assert "seccomp" in response.layers
    assert not response.degraded
    assert response.usage["wall_seconds"] > 0
    assert response.usage["peak_memory_bytes"] > 0
    assert await _events(lane, response.request_id) == ["execution.start", "execution.end"]
    end = await lane.end_record(response)
    assert end["status"] == "success"
    assert end["tool_digest"]
    assert end["policy"] == "lane-policy@1.0.0"
    assert len(end["policy_digest"]) == 64
    assert len(end["input_sha256"]) == 64
    assert len(end["output_sha256"]) == 64
    assert response.run_id is not None
    lines = await lane.vault.logs.read(response.run_id)
    messages = {(line.event, line.message) for line in lines}
    assert ("tool.stdout", "echo: hello") in messages
    assert ("tool.stderr", "to stderr") in messages
    [artifact_id] = response.artifact_ids
    stored = await lane.vault.artifacts.get_bytes(artifact_id)
    assert b'"hello"' in stored
    # the audit's output digest names the stored artifact
    assert end["output_sha256"] == (await lane.vault.artifacts.get(artifact_id)).sha256
    run = await lane.vault.runs.get(response.run_id)
    assert run.status is RunStatus.COMPLETED


async def test_given_run_is_used_and_left_open(lane: Lane) -> None:
    run = await lane.vault.runs.create(project="lane")
    await lane.vault.runs.start(run.run_id)
    response = await lane.run("echo", {"text": "x"}, run_id=run.run_id)
    assert response.ok
    assert response.run_id == run.run_id
    assert (await lane.vault.runs.get(run.run_id)).status is RunStatus.RUNNING


async def test_tool_without_policy_runs_under_the_builtin_deny_all(lane: Lane) -> None:
    response = await lane.run("no_policy", {"text": "x"})
    assert response.ok, response.error
    start = next(e for e in await lane.audit(response.request_id) if e.event == "execution.start")
    assert start.details["policy"] == "builtin-deny-all@1"
    assert str(lane.workdir / "in") not in start.details["sandbox"]["read_paths"]


# -- governance --------------------------------------------------------------------------------


async def test_a1_output_needs_review(lane: Lane) -> None:
    response = await lane.run("draft_echo", {"text": "draft"})
    assert response.ok
    assert response.needs_review
    [artifact_id] = response.artifact_ids
    artifact = await lane.vault.artifacts.get(artifact_id)
    assert "needs-review" in artifact.tags
    assert artifact.metadata["review"] == "pending"
    assert "execution.review_required" in await _events(lane, response.request_id)


async def test_a2_needs_an_approval_and_revoking_it_stops_it(lane: Lane) -> None:
    refused = await lane.run("guarded_echo", {"text": "x"})
    assert refused.error is not None
    assert refused.error.code == "approval_required"
    assert "strongroom registry approve --tool guarded_echo@1.0.0" in refused.error.message
    assert await _events(lane, refused.request_id) == ["execution.refused"]
    assert refused.run_id is not None
    assert (await lane.vault.runs.get(refused.run_id)).status is RunStatus.FAILED

    approval = await lane.vault.registry.approve(
        {"scope": "tool_version", "tool_id": "guarded_echo", "version": "1.0.0"},
        actor=APPROVER,
        signer=await approver(lane.vault, APPROVER),
        reason="reviewed",
    )
    allowed = await lane.run("guarded_echo", {"text": "x"})
    assert allowed.ok, allowed.error

    await lane.vault.registry.revoke(
        approval.approval_id, reason="withdrawn", signer=await approver(lane.vault, APPROVER)
    )
    again = await lane.run("guarded_echo", {"text": "x"})
    assert again.error is not None
    assert again.error.code == "approval_required"
    refusal = (await lane.audit(again.request_id))[0]
    assert refusal.details["error_code"] == "approval_required"


async def test_a2_run_approval_covers_that_run_only(lane: Lane) -> None:
    run = await lane.vault.runs.create(project="lane")
    await lane.vault.runs.start(run.run_id)
    await lane.vault.registry.approve(
        {"scope": "run", "run_id": run.run_id},
        reason="this run only",
        signer=await approver(lane.vault, APPROVER),
    )
    assert (await lane.run("guarded_echo", {"text": "x"}, run_id=run.run_id)).ok
    other = await lane.run("guarded_echo", {"text": "x"})
    assert other.error is not None
    assert other.error.code == "approval_required"


async def test_a3_stores_input_and_output_payloads(lane: Lane) -> None:
    await lane.vault.registry.approve(
        {"scope": "tool_version", "tool_id": "strict_echo", "version": "1.0.0"},
        actor=APPROVER,
        signer=await approver(lane.vault, APPROVER),
        reason="ok",
    )
    response = await lane.run("strict_echo", {"text": "audited"})
    assert response.ok
    payloads = [await lane.vault.artifacts.get(a) for a in response.artifact_ids]
    assert sorted(a.metadata["payload"] for a in payloads) == ["input", "output"]


async def test_caller_may_ask_for_stricter_governance_not_laxer(lane: Lane) -> None:
    stricter = await lane.run("echo", {"text": "x"}, governance="A2")
    assert stricter.error is not None
    assert stricter.error.code == "approval_required"
    laxer = await lane.run("guarded_echo", {"text": "x"}, governance="A0")
    assert laxer.error is not None
    assert laxer.error.code == "approval_required"


# -- validation ---------------------------------------------------------------------------------


async def test_input_is_validated_before_any_process_starts(lane: Lane) -> None:
    response = await lane.run("echo", {"text": "x" * 50})
    assert response.error is not None
    assert response.error.code == "schema_validation_failed"
    assert response.error.details["path"] == "$.text"
    assert response.error.details["where"] == "input"
    assert await _events(lane, response.request_id) == ["execution.refused"]


async def test_output_is_validated_and_not_retried(lane: Lane) -> None:
    response = await lane.run("wrong_output")
    assert response.error is not None
    assert response.error.code == "schema_validation_failed"
    assert response.error.details["path"] == "$.count"
    assert response.error.details["where"] == "output"
    assert response.attempts == 1
    end = await lane.end_record(response)
    assert end["error_code"] == "schema_validation_failed"


# -- failures and retries ----------------------------------------------------------------------


async def test_handler_exception_is_redacted_and_retried(lane: Lane) -> None:
    response = await lane.run("fail", {"secret": "abc123"})
    assert response.error is not None
    assert response.error.code == "handler_exception"
    assert response.attempts == 3
    traceback = response.error.details["traceback"]
    assert "RuntimeError: deliberate failure" in traceback
    assert "abc123" not in traceback
    assert "abc123" not in response.error.message
    events = await _events(lane, response.request_id)
    assert events == ["execution.start", "execution.end"] * 3
    once = await lane.run("fail_once")
    assert once.attempts == 1


async def test_the_vaults_redact_patterns_apply_to_tool_errors(tmp_path: Path) -> None:
    """The lane redacts with the vault's redactor (``Vault(redact_patterns=...)``) plus the
    policy's own patterns, not with the defaults."""
    require_sandbox()
    lane = await open_lane(tmp_path, redact_patterns=[r"deliberate \w+"])
    try:
        await lane.publish(policy(), manifest([tool("fail", "lane_tools:fail", level="A0")]))
        response = await lane.run("fail", {"secret": "abc123"})
    finally:
        await lane.vault.close()
    assert response.error is not None
    assert response.error.code == "handler_exception"
    for text in (response.error.message, response.error.details["traceback"]):
        assert "[REDACTED]: token=[REDACTED]" in text  # the vault's pattern, then the policy's
        assert "deliberate" not in text
        assert "abc123" not in text


async def test_retry_recovers_a_flaky_tool(lane: Lane) -> None:
    response = await lane.run("flaky", {"dir": "out", "times": 1})
    assert response.ok, response.error
    assert response.attempts == 2
    assert response.output == {"attempts": 2}
    ends = [e for e in await lane.audit(response.request_id) if e.event == "execution.end"]
    assert [e.details["status"] for e in ends] == ["failure", "success"]


async def test_timeout_kills_and_retries(lane: Lane) -> None:
    response = await lane.run("sleep", {"seconds": 60})
    assert response.error is not None
    assert response.error.code == "timeout"
    assert response.attempts == 2
    ends = [e for e in await lane.audit(response.request_id) if e.event == "execution.end"]
    assert [e.details["error_code"] for e in ends] == ["timeout", "timeout"]
    assert all(e.details["usage"]["wall_seconds"] < 10 for e in ends)


async def test_memory_limit(lane: Lane) -> None:
    response = await lane.run("allocate", {"bytes": 1 << 30})
    assert response.error is not None
    assert response.error.code == "memory_exceeded"
    assert response.attempts == 1
    end = await lane.end_record(response)
    assert end["error_code"] == "memory_exceeded"
    start = next(e for e in await lane.audit(response.request_id) if e.event == "execution.start")
    assert start.details["sandbox"]["rlimits"]["as"] == 256 * 1024 * 1024


# -- degraded isolation ------------------------------------------------------------------------


async def test_missing_layer_refuses_unless_degraded_is_accepted(tmp_path: Path) -> None:
    require_sandbox()
    lane = await open_lane(tmp_path, disabled=frozenset({"seccomp"}))
    try:
        await lane.publish(policy(), manifest([tool("echo", "lane_tools:echo", level="A0")]))
        refused = await lane.run("echo", {"text": "x"})
        assert refused.error is not None
        assert refused.error.code == "sandbox_unavailable"
        assert refused.error.details["missing_layers"] == ["seccomp"]
        assert await _events(lane, refused.request_id) == ["execution.refused"]

        accepted = await lane.runner.run(
            {"request_id": _new_id(), "tool_id": "echo", "input": {"text": "x"}},
            allow_degraded=True,
        )
        assert accepted.ok, accepted.error
        assert accepted.degraded
        assert "seccomp" not in accepted.layers
        events = await _events(lane, accepted.request_id)
        assert events[0] == "execution.degraded_accepted"
        end = await lane.end_record(accepted)
        assert end["layers_missing"] == ["seccomp"]
    finally:
        await lane.vault.close()


def _new_id() -> str:
    from strongroom.ids import new_id

    return new_id()


# -- reference tools ---------------------------------------------------------------------------


async def _approve(lane: Lane, tool_id: str) -> None:
    await lane.vault.registry.approve(
        {"scope": "tool_version", "tool_id": tool_id, "version": "1.0.0"},
        actor=APPROVER,
        signer=await approver(lane.vault, APPROVER),
        reason="reference tool",
    )


async def test_fetch_object_storage(lane: Lane) -> None:
    namespace = (await lane.vault.catalog.namespaces())[0].namespace_id
    data = b"id,amount\n1,10\n" * 1000
    await lane.vault.catalog.put_object(namespace, "in/day.csv", data, content_type="text/csv")
    await _approve(lane, "fetch_object_storage")
    response = await lane.run("fetch_object_storage", {"bucket": namespace, "key": "in/day.csv"})
    assert response.ok, response.error
    output: dict[str, Any] = response.output
    assert output["size_bytes"] == len(data)
    assert output["content_type"] == "text/csv"
    stored = await lane.vault.artifacts.get_bytes(output["artifact_id"])
    assert stored == data
    assert output["artifact_id"] in response.artifact_ids
    end = await lane.end_record(response)
    assert end["host_calls"] == [{"op": "fetch_object", "ok": True, "error": None}]

    missing = await lane.run("fetch_object_storage", {"bucket": namespace, "key": "nope"})
    assert missing.error is not None
    assert missing.error.code == "handler_exception"
    assert "not_found" in missing.error.message


async def test_record_run_summary(lane: Lane) -> None:
    """The contract's object (1.1.0, as shipped): kept on the run as its canonical JSON."""
    await lane.vault.registry.approve(
        {"scope": "tool_version", "tool_id": "record_run_summary", "version": "1.1.0"},
        actor=APPROVER,
        signer=await approver(lane.vault, APPROVER),
        reason="reference tool",
    )
    run = await lane.vault.runs.create(project="lane")
    await lane.vault.runs.start(run.run_id)
    summary = {"files": 3, "checked": True}
    response = await lane.run("record_run_summary", {"summary": summary}, run_id=run.run_id)
    assert response.ok, response.error
    assert response.output == {"recorded": True, "summary": summary}
    assert (await lane.vault.runs.get(run.run_id)).summary == '{"checked":true,"files":3}'


async def test_other_tools_get_no_host_services(lane: Lane) -> None:
    await lane.publish(
        manifest(
            [tool("impostor", "lane_tools:call_host", level="A0")], manifest_id="impostor-tools"
        )
    )
    response = await lane.run("impostor", {"summary": "forged"})
    assert response.error is not None
    assert response.error.code == "handler_exception"
    assert "permission_denied" in response.error.message
    assert response.run_id is not None
    assert (await lane.vault.runs.get(response.run_id)).summary is None


async def test_a_copy_of_a_reference_entrypoint_gets_no_host_services(lane: Lane) -> None:
    """An A0 tool naming record_run_summary's entrypoint would skip its A3 approval; host
    services go to the reference tool as strongroom ships it, not to an entrypoint."""
    await lane.publish(
        manifest(
            [tool("summary_copy", "strongroom.tools.reference:record_run_summary", level="A0")],
            manifest_id="copycat-tools",
        )
    )
    run = await lane.vault.runs.create(project="lane")
    await lane.vault.runs.start(run.run_id)
    response = await lane.run("summary_copy", {"summary": "forged"}, run_id=run.run_id)
    assert response.error is not None
    assert "permission_denied" in response.error.message
    assert (await lane.vault.runs.get(run.run_id)).summary is None
    end = await lane.end_record(response)
    assert end["host_calls"][0]["ok"] is False


@pytest.mark.parametrize("shadow", ["strongroom", "json.py", "yaml"])
async def test_a_tool_path_that_shadows_a_module_is_refused(tmp_path: Path, shadow: str) -> None:
    require_sandbox()
    tools_dir = tmp_path / "evil-tools"
    target = tools_dir / shadow
    if shadow.endswith(".py"):
        tools_dir.mkdir()
        target.write_text("raise SystemExit('foreign code')\n")
    else:
        (target / "tools").mkdir(parents=True)
        (target / "__init__.py").write_text("")
        (target / "tools" / "__init__.py").write_text("")
        (target / "tools" / "reference.py").write_text("raise SystemExit('foreign code')\n")
    lane = await open_lane(tmp_path / "lane", tool_paths=(tools_dir,))
    try:
        await lane.publish(policy(), manifest([tool("echo", "lane_tools:echo", level="A0")]))
        response = await lane.run("echo", {"text": "hi"})
        assert response.error is not None
        assert response.error.code == "sandbox_violation"
        assert response.error.details["reason"] == "tool_path_shadows"
        refused = [
            e for e in await lane.audit(response.request_id) if e.event == "execution.refused"
        ]
        assert refused
    finally:
        await lane.vault.close()


def test_the_example_manifest_carries_the_reference_tools_as_shipped() -> None:
    """examples/registry declares the reference tools under its own policy: they must stay
    identical to strongroom's, or the demo's summary step would lose its host services."""
    from strongroom.execution.host_services import grants_host_services
    from strongroom.models.registry import ToolManifest
    from strongroom.registry.parse import load_definition

    path = Path(__file__).parents[1] / "examples" / "registry" / "data-quality-tools.yaml"
    manifest = load_definition(path.read_bytes(), file_name=path.name)
    assert isinstance(manifest, ToolManifest)
    granted = {t.tool_id for t in manifest.tools if grants_host_services(t)}
    assert granted == {"fetch_object_storage", "record_run_summary"}


# Every step the runner takes after the invocation is resolved, by the name it calls it by.
RUNNER_STEPS = [
    "check_governance",
    "schema_problem",
    "probe_host",
    "import_path_for",
    "check_tool_paths",
    "plan_sandbox",
    "launch",
    "classify",
    "encode_payload",
    "tool_log_lines",
    "_enforced_layers",
    "remove_tree",
    "store_payloads",
]


@pytest.mark.parametrize("step", RUNNER_STEPS)
async def test_a_failure_at_any_runner_step_still_ends_the_invocation_on_record(
    lane: Lane, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    import strongroom.execution.runner as runner_module

    calls = {"n": 0}
    real = getattr(runner_module, step)

    def broken(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if step == "encode_payload" and calls["n"] == 1:
            return real(*args, **kwargs)  # the input, at resolution: fail on the output
        raise RuntimeError(f"injected failure in {step}")

    monkeypatch.setattr(runner_module, step, broken)
    response = await lane.run("echo", {"text": "hi"})
    assert calls["n"] > 0, f"{step} was never called"
    assert response.error is not None
    assert response.error.code == "internal_error"
    events = [e.event for e in await lane.audit(response.request_id)]
    assert "execution.end" in events or "execution.refused" in events, events
    assert response.run_id is not None
    run = await lane.vault.runs.get(response.run_id)
    assert run.status is RunStatus.FAILED
    monkeypatch.undo()
    again = await lane.run("echo", {"text": "hi"})
    assert again.ok, again.error


def test_relative_lane_paths_mean_the_callers_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strongroom.execution import RunnerOptions

    monkeypatch.chdir(tmp_path)
    options = RunnerOptions(workdir=Path("project"), tool_paths=(Path("tools"), tmp_path / "x"))
    assert options.workdir == tmp_path / "project"
    assert options.tool_paths == (tmp_path / "tools", tmp_path / "x")
