"""The registry part of ``make demo``: publish the example definitions in ``examples/registry``.

Publishing is idempotent (identical content is a no-op), so running the demo again publishes
nothing new. The files come from `strongroom.demo.examples.examples_dir` (shipped in the wheel).
"""

from __future__ import annotations

from pathlib import Path

from strongroom.demo.examples import examples_dir
from strongroom.integrity import SigningKey
from strongroom.services.registry import PublishResult
from strongroom.vault import Vault

__all__ = ["EXAMPLE_FILES", "publish_examples"]

# Dependency order: policies, then the tools they govern, then playbooks, then projects.
EXAMPLE_FILES = (
    "sandbox-readonly.yaml",
    "data-quality-tools.yaml",
    "data-quality-playbook.yaml",
    "data-quality-project.yaml",
)


async def publish_examples(
    vault: Vault, directory: Path | None = None, *, signer: SigningKey | None = None
) -> list[tuple[str, PublishResult]]:
    """Publish every example file found in ``directory`` (default: the shipped examples'
    ``registry``), signed by ``signer`` (a publisher's key; unsigned: by the OS user);
    (file name, result) per file."""
    if directory is None:
        directory = examples_dir() / "registry"
    results: list[tuple[str, PublishResult]] = []
    for name in EXAMPLE_FILES:
        path = directory / name
        if path.is_file():
            result = await vault.registry.publish(path.read_bytes(), file_name=name, signer=signer)
            results.append((name, result))
    return results
