"""The registry part of ``make demo``: publish the example definitions in ``examples/registry``.

Publishing is idempotent (identical content is a no-op), so running the demo again publishes
nothing new. Outside a source checkout (no ``examples/`` folder) this step is skipped.
"""

from __future__ import annotations

from pathlib import Path

from strongroom.integrity import SigningKey
from strongroom.services.registry import PublishResult
from strongroom.vault import Vault

__all__ = ["EXAMPLES_DIR", "publish_examples"]

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "registry"

# Dependency order: policies, then the tools they govern, then playbooks, then projects.
EXAMPLE_FILES = (
    "sandbox-readonly.yaml",
    "data-quality-tools.yaml",
    "data-quality-playbook.yaml",
    "data-quality-project.yaml",
)


async def publish_examples(
    vault: Vault, directory: Path = EXAMPLES_DIR, *, signer: SigningKey | None = None
) -> list[tuple[str, PublishResult]]:
    """Publish every example file found in ``directory``, signed by ``signer`` (a publisher's
    key; unsigned: by the OS user); (file name, result) per file."""
    results: list[tuple[str, PublishResult]] = []
    for name in EXAMPLE_FILES:
        path = directory / name
        if path.is_file():
            result = await vault.registry.publish(path.read_bytes(), file_name=name, signer=signer)
            results.append((name, result))
    return results
