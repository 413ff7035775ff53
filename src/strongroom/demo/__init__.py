"""`python -m strongroom.demo` (what `make demo` runs): record a realistic sample run of a small
document-translation pipeline in the vault at ``./.strongroom`` (or ``$STRONGROOM_URL``),
verify the vault, and print what was stored and the CLI commands that inspect it.

The pipeline is simulated (no model is called) but everything it stores is real: a run moving
through ingest → translate → qa → export, log lines (one carrying a fake API key, redacted
before storage), a state snapshot after each phase, and JSONL, JSON, CSV and zip artifacts.
Running it again records another run in the same vault; identical outputs are stored once.

The parts live in sibling modules: `strongroom.demo_translation` (the sample run),
`strongroom.demo_registry` (publishing the example definitions), `strongroom.demo_pipeline`
(the main job) and `strongroom.demo_summary` (the printed summary).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from pathlib import Path

from strongroom.cli._context import emit_error, exit_code_for
from strongroom.cli._output import stdout_console
from strongroom.demo_pipeline import PipelineDemo, demo_people, print_main_job, run_main_job
from strongroom.demo_registry import publish_examples
from strongroom.demo_summary import cli_command, print_registry, print_summary
from strongroom.demo_translation import DemoResult, record_demo_run
from strongroom.errors import StrongroomError
from strongroom.models import RunStatus
from strongroom.services.registry import PublishResult
from strongroom.vault import DEFAULT_VAULT_URL, Vault

__all__ = ["main"]

DEMO_WORKDIR = "./.strongroom-demo"  # the main job's working folder (a copy of examples/project)
DEMO_KEYS = "./.strongroom-demo-keys"  # the demo people's personal keys (demo only)


async def _main(
    url: str, workdir: Path, keys: Path
) -> tuple[DemoResult, list[tuple[str, PublishResult]], PipelineDemo | None]:
    async with await Vault.open(url) as vault:
        result = await record_demo_run(vault)
        people = await demo_people(vault, keys)
        published = await publish_examples(vault, signer=people.publisher)
        job = await run_main_job(vault, workdir, keys=keys) if published else None
        return result, published, job


def main() -> int:
    url = os.environ.get("STRONGROOM_URL") or DEFAULT_VAULT_URL
    workdir = Path(os.environ.get("STRONGROOM_DEMO_WORKDIR", DEMO_WORKDIR))
    keys = Path(os.environ.get("STRONGROOM_DEMO_KEYS", DEMO_KEYS))
    try:
        result, published, job = asyncio.run(_main(url, workdir, keys))
    except StrongroomError as exc:
        emit_error(False, exc.to_dict())
        return exit_code_for(exc.code)
    shown = str(Path(url).absolute()) if "://" not in url else url
    console = stdout_console()
    print_summary(console, result, url, shown)
    cli = cli_command() + (f" --vault {shlex.quote(url)}" if url != DEFAULT_VAULT_URL else "")
    print_registry(console, published, cli)
    if job is not None:
        print_main_job(console, job, cli)
    completed = job is None or job.finished.status is RunStatus.COMPLETED
    return 0 if result.report.ok and completed else 1


if __name__ == "__main__":
    sys.exit(main())
