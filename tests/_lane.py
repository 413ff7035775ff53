"""Shared set-up of the execution-lane tests: a vault with a sandbox policy and a tool
manifest published, and a runner whose tools come from tests/sandbox_tools/."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from strongroom import Vault
from strongroom.execution import RunnerOptions, ToolRunner
from strongroom.ids import new_id
from strongroom.models import AuditEntry, RunnerResponse
from strongroom.sandbox.host import probe_host
from strongroom.sandbox.plan import REQUIRED_LAYERS
from strongroom.secrets import DEFAULT_REDACT_PATTERNS
from strongroom.testing.keys import approver

TOOLS_DIR = Path(__file__).with_name("sandbox_tools")
PUBLISHER = "alice"
APPROVER = "bob"


def require_sandbox() -> None:
    """Skip (fail in CI) when this host cannot enforce the layers every tool needs."""
    available = probe_host().available()
    missing = [layer for layer in REQUIRED_LAYERS if not available[layer]]
    if missing:
        message = f"this host cannot enforce {', '.join(missing)} (Linux with Landlock + seccomp)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def policy(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": "sandbox_policy",
        "sandbox_id": "lane-policy",
        "name": "Lane test policy",
        "version": "1.0.0",
        "owner": "security",
        "filesystem": {"mode": "read-write", "read_paths": ["in"], "write_paths": ["out"]},
        "network": {"mode": "deny-all"},
        "environment": {"allowlist": ["LANG", "LANE_VISIBLE"]},
        "resources": {"cpu_cores": 1, "memory_mb": 256, "timeout_seconds": 30},
        "logging": {"redact_patterns": [r"sk-live-[A-Za-z0-9]+"]},
    }
    base.update(overrides)
    return base


def tool(
    tool_id: str,
    entrypoint: str,
    *,
    level: str = "A1",
    timeout: int = 20,
    retries: int = 0,
    request_schema: dict[str, Any] | None = None,
    response_schema: dict[str, Any] | None = None,
    policy_refs: Sequence[str] = ("lane-policy@1.0.0",),
) -> dict[str, Any]:
    return {
        "tool_id": tool_id,
        "name": tool_id.replace("_", " "),
        "version": "1.0.0",
        "entrypoint": entrypoint,
        "contract": {
            "request_schema": request_schema or {"type": "object"},
            "response_schema": response_schema or {"type": "object"},
        },
        "governance": {"level": level},
        "constraints": {"timeout_seconds": timeout, "max_retries": retries},
        "policy_refs": list(policy_refs),
    }


def manifest(tools: Sequence[dict[str, Any]], manifest_id: str = "lane-tools") -> dict[str, Any]:
    return {
        "kind": "tool_manifest",
        "manifest_id": manifest_id,
        "name": "Lane tools",
        "version": "1.0.0",
        "owner": PUBLISHER,
        "tools": list(tools),
    }


@dataclass
class Lane:
    vault: Vault
    runner: ToolRunner
    root: Path
    namespaces: bool = True  # False: opened with the namespace layer disabled

    @property
    def workdir(self) -> Path:
        return self.root / "work"

    async def publish(self, *definitions: dict[str, Any]) -> None:
        """Publish signed by the publisher's registered key (A2+ definitions must be)."""
        key = await approver(self.vault, PUBLISHER)
        for n, definition in enumerate(definitions):
            await self.vault.registry.publish(
                json.dumps(definition).encode(), file_name=f"def{n}.yaml", signer=key
            )

    async def run(self, tool_id: str, data: Any = None, **fields: Any) -> RunnerResponse:
        request = {"request_id": new_id(), "tool_id": tool_id, "input": data or {}, **fields}
        return await self.runner.run(request)

    async def audit(self, request_id: str) -> list[AuditEntry]:
        entries = await self.vault.audit.entries(limit=1_000_000)
        return [e for e in entries if e.subject_id == request_id]

    async def end_record(self, response: RunnerResponse) -> dict[str, Any]:
        ends = [e for e in await self.audit(response.request_id) if e.event == "execution.end"]
        assert ends, "no execution.end audit record"
        return ends[-1].details


async def open_lane(
    root: Path,
    *,
    disabled: frozenset[str] = frozenset(),
    backoff: float = 0.01,
    url: str | None = None,
    blobs_url: str | None = None,
    tool_paths: Sequence[Path] = (),
    redact_patterns: Sequence[str] = DEFAULT_REDACT_PATTERNS,
) -> Lane:
    """A lane under ``root``: the embedded vault ``root/vault``, or the vault at ``url``
    (with ``blobs_url``) for the other backend pairs; ``tool_paths`` come after the test
    tools' folder; ``redact_patterns`` are the vault's."""
    (root / "work" / "in").mkdir(parents=True)
    (root / "work" / "out").mkdir()
    vault = await Vault.open(
        url or root / "vault", blobs_url=blobs_url, redact_patterns=redact_patterns
    )
    runner = ToolRunner(
        vault,
        RunnerOptions(
            workdir=root / "work",
            tool_paths=(TOOLS_DIR, *tool_paths),
            disabled_layers=disabled,
            backoff_seconds=backoff,
        ),
    )
    return Lane(vault=vault, runner=runner, root=root, namespaces="netns" not in disabled)
