"""The demo (``strongroom demo``, what `make demo` runs): record a realistic sample run of a
small document-translation pipeline in a vault, publish the example registry definitions,
run the main job through the governed lane, and verify the vault. This package does the work
(`run_demo`); the CLI command prints it (`strongroom.cli.demo`).

The pipeline is simulated (no model is called) but everything it stores is real: a run moving
through ingest → translate → qa → export, log lines (one carrying a fake API key, redacted
before storage), a state snapshot after each phase, and JSONL, JSON, CSV and zip artifacts.
Running it again records another run in the same vault; identical outputs are stored once.

The parts: `strongroom.demo.translation` (the sample run), `strongroom.demo.registry`
(publishing the example definitions), `strongroom.demo.pipeline` (the main job);
`strongroom.demo.examples` finds the example files (shipped in the wheel, or the source
checkout's ``examples/``).
"""

from __future__ import annotations

from pathlib import Path

from strongroom.demo.pipeline import PipelineDemo, demo_people, run_main_job
from strongroom.demo.registry import publish_examples
from strongroom.demo.translation import DemoResult, record_demo_run
from strongroom.services.registry import PublishResult
from strongroom.vault import Vault

__all__ = ["DEMO_KEYS", "DEMO_WORKDIR", "DemoResult", "PipelineDemo", "run_demo"]

DEMO_WORKDIR = "./.strongroom-demo"  # the main job's working folder (a copy of examples/project)
DEMO_KEYS = "./.strongroom-demo-keys"  # the demo people's personal keys (demo only)


async def run_demo(
    url: str, workdir: Path, keys: Path, *, blobs_url: str | None = None
) -> tuple[DemoResult, list[tuple[str, PublishResult]], PipelineDemo | None]:
    """Record the sample run, publish the examples signed by the demo publisher, and run the
    main job (when the examples were published): what was done, for the caller to show."""
    async with await Vault.open(url, blobs_url=blobs_url) as vault:
        result = await record_demo_run(vault)
        people = await demo_people(vault, keys)
        published = await publish_examples(vault, signer=people.publisher)
        job = await run_main_job(vault, workdir, keys=keys) if published else None
        return result, published, job
