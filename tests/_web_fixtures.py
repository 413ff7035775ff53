"""A vault populated for the Control Room's tests: the demo's runs (a playbook run with steps,
approvals and artifacts, a translation pipeline run with phases), plus a failed run, a run
left running (so a test can move it and watch the page follow), an image, a run whose
every stored string is an XSS payload, and a playbook run whose steps ran on workers (step
claims: finished, lost to a worker with a hostile name, running).

`populate` fills a vault at a URL pair and returns what it made (`Population`)."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from strongroom import Vault
from strongroom.demo.pipeline import demo_people, run_main_job
from strongroom.demo.registry import publish_examples
from strongroom.demo.translation import record_demo_run

__all__ = ["PNG", "XSS", "Population", "populate", "populate_sync"]

XSS = {
    "purpose": '<script>window.__xss = "purpose"</script>',
    "label": '"><img src=x onerror="window.__xss=\'label\'">',
    "log": "<img src=x onerror=\"window.__xss='log'\"><script>window.__xss='log'</script>",
    "name": "<svg onload=alert(1)>.txt",
    "error": "<script>window.__xss='error'</script>",
    "worker": "<script>alert(1)</script>",
}
"""Stored strings a careless page would run; a safe one shows them as text."""

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@dataclass
class Population:
    url: str
    blobs_url: str | None
    playbook_run: str
    pipeline_run: str
    waiting_run: str
    failed_run: str
    retry_run: str
    running_run: str
    xss_run: str
    workers_run: str
    jsonl_artifact: str
    csv_artifact: str
    png_artifact: str
    xss_artifact: str
    run_ids: list[str] = field(default_factory=list)


async def populate(url: str, workdir: Path, *, blobs_url: str | None = None) -> Population:
    async with await Vault.open(url, blobs_url=blobs_url) as vault:
        sample = await record_demo_run(vault)
        keys = workdir / "keys"
        people = await demo_people(vault, keys)
        await publish_examples(vault, signer=people.publisher)
        job = await run_main_job(vault, workdir / "job", keys=keys)

        failed = await vault.runs.create(project="web", purpose="a run that failed")
        await vault.runs.start(failed.run_id)
        await vault.runs.fail(
            failed.run_id, {"code": "tool_failed", "message": "step qa exited with 3"}
        )

        retry = await vault.runs.create(
            project="web", purpose="the failed run, tried again", previous_run_id=failed.run_id
        )

        running = await vault.runs.create(
            project="web", purpose="a run still running", labels={"team": "data"}
        )
        await vault.runs.start(running.run_id)
        await vault.logs.append(running.run_id, {"event": "started", "message": "working"})
        jsonl = await vault.artifacts.put_bytes(
            running.run_id,
            b"".join(b'{"id": %d, "name": "row %d", "amount": %d}\n' % (i, i, i * 10)
                     for i in range(200)),
            format="jsonl",
            name="rows.jsonl",
        )  # fmt: skip
        csv = await vault.artifacts.put_bytes(
            running.run_id, b"id,city\n1,Lyon\n2,Oslo\n3,Kyoto\n", format="csv", name="cities.csv"
        )
        png = await vault.artifacts.put_bytes(
            running.run_id, PNG, format="binary", media_type="image/png", name="pixel.png"
        )
        for revision in range(3):
            await vault.snapshots.save(
                running.run_id,
                {"data": {"cursor": revision * 100, "stage": f"batch-{revision}"}},
                expected_revision=revision,
            )

        xss = await vault.runs.create(
            project="web", purpose=XSS["purpose"], labels={"note": XSS["label"]}
        )
        await vault.runs.start(xss.run_id)
        await vault.logs.append(
            xss.run_id, {"event": "xss", "level": "warning", "message": XSS["log"]}
        )
        evil = await vault.artifacts.put_bytes(
            xss.run_id,
            XSS["log"].encode(),
            format="txt",
            label=XSS["name"],  # file names are refused unless plain; a label is free text
            description=XSS["purpose"],
        )
        await vault.runs.fail(xss.run_id, {"code": "tool_failed", "message": XSS["error"]})

        waiting = await _waiting_run(vault)
        workers = await _workers_run(vault)
        report = await vault.verify(record=True)  # the audit page shows the last verify
        assert report.ok, report
        playbook_run = job.finished.run.run_id
        ids = [
            sample.run.run_id,
            playbook_run,
            failed.run_id,
            running.run_id,
            xss.run_id,
            workers,
        ]
        return Population(
            url=url,
            blobs_url=blobs_url,
            playbook_run=playbook_run,
            pipeline_run=sample.run.run_id,
            waiting_run=waiting,
            failed_run=failed.run_id,
            retry_run=retry.run_id,
            running_run=running.run_id,
            xss_run=xss.run_id,
            workers_run=workers,
            jsonl_artifact=jsonl.artifact_id,
            csv_artifact=csv.artifact_id,
            png_artifact=png.artifact_id,
            xss_artifact=evil.artifact_id,
            run_ids=ids,
        )


def _step(
    started: datetime, step_id: str, status: str, upstream: list[str], offset: int
) -> dict[str, Any]:
    """One step of an orchestrator plan, as a snapshot holds it."""
    at = started + timedelta(seconds=offset)
    done = status == "completed"
    return {
        "step_id": step_id,
        "status": status,
        "tool_id": "demo_tool",
        "tool_version": "1.0.0",
        "manifest_digest": "sha256:" + "0" * 64,
        "tool_ref": "demo_tool@1.0.0",
        "upstream": upstream,
        "started_at": at.isoformat(),
        "finished_at": (at + timedelta(seconds=2)).isoformat() if done else None,
        "error": None
        if status != "waiting_approval"
        else {
            "code": "approval_required",
            "message": "publish needs an approval",
            "details": {"command": "strongroom registry approve --tool demo_tool@1.0.0"},
        },
    }


def _plan(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "playbook_ref": "demo@1.0.0",
        "playbook_id": "demo",
        "playbook_version": "1.0.0",
        "playbook_digest": "sha256:" + "1" * 64,
        "steps": {step["step_id"]: step for step in steps},
        "order": [step["step_id"] for step in steps],
    }


async def _waiting_run(vault: Vault) -> str:
    """A playbook-shaped run paused on an approval: three steps, one waiting."""
    run = await vault.runs.create(project="web", purpose="paused for an approval")
    await vault.runs.start(run.run_id)
    started = datetime.now(UTC) - timedelta(minutes=10)
    plan = _plan(
        [
            _step(started, "fetch", "completed", [], 0),
            _step(started, "clean", "completed", ["fetch"], 2),
            _step(started, "publish", "waiting_approval", ["clean"], 4),
        ]
    )
    await vault.snapshots.save(run.run_id, {"data": {"orchestrator": plan}}, expected_revision=0)
    return run.run_id


async def _workers_run(vault: Vault) -> str:
    """A playbook-shaped run whose steps run on workers (``--executor celery``), as its step
    claims record them: ``fetch`` finished on worker-a; ``clean``'s first attempt lost by a
    worker with a hostile name, its second running on worker-b."""
    run = await vault.runs.create(project="workers", purpose="steps on workers")
    await vault.runs.start(run.run_id)
    started = datetime.now(UTC) - timedelta(minutes=5)
    fetch = {**_step(started, "fetch", "completed", [], 0), "starts": 1}
    clean = {**_step(started, "clean", "running", ["fetch"], 2), "starts": 2}
    plan = _plan([fetch, clean])
    await vault.snapshots.save(run.run_id, {"data": {"orchestrator": plan}}, expected_revision=0)
    claims = vault.metadata
    run_id = run.run_id
    await claims.claim_step(run_id, "fetch", 1, request_id="req-fetch-1", worker="worker-a@host1")
    await claims.heartbeat_step_claim(run_id, "fetch", 1, worker="worker-a@host1")
    response = {"request_id": "req-fetch-1", "status": "succeeded", "output": {"rows": 3}}
    await claims.finish_step_claim(run_id, "fetch", 1, worker="worker-a@host1", response=response)
    await claims.claim_step(run_id, "clean", 1, request_id="req-clean-1", worker=XSS["worker"])
    lost = await claims.lose_step_claim(
        run_id, "clean", 1, stale_before=datetime.now(UTC) + timedelta(minutes=1)
    )
    assert lost
    await claims.claim_step(run_id, "clean", 2, request_id="req-clean-2", worker="worker-b@host2")
    await claims.heartbeat_step_claim(run_id, "clean", 2, worker="worker-b@host2")
    return run_id


def populate_sync(url: str, workdir: Path, *, blobs_url: str | None = None) -> Population:
    return asyncio.run(populate(url, workdir, blobs_url=blobs_url))
