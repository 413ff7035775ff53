"""What a sandboxed tool may ask the runner to do for it.

A confined tool cannot open the vault (Landlock keeps its files out of reach), so the few
operations that need the vault are done by the runner on the tool's behalf, over the control
channel: each request is checked, performed with the runner's own services and listed in the
invocation's audit record. Only the reference tools get these services, recognised by
identity: a tool whose id, version, entrypoint, contract and governance are exactly those
strongroom ships (``strongroom/tools/reference_tools.yaml``). Another tool naming the same
entrypoint (an A0 copy that would skip the A2/A3 approval, say) is refused like any other.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.resources
import posixpath
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from strongroom.errors import NotFound, StrongroomError, ValidationError
from strongroom.models import ArtifactRole, sorted_json
from strongroom.models.registry import ToolDefinition, ToolManifest
from strongroom.registry.parse import load_definition

if TYPE_CHECKING:
    from strongroom.vault import Vault

__all__ = [
    "HOST_SERVICE_ENTRYPOINTS",
    "REFERENCE_TOOLS_FILE",
    "HostServices",
    "grants_host_services",
    "reference_manifest",
]

#: The module of the reference tools (loaded from the installed package only).
HOST_SERVICE_ENTRYPOINTS: tuple[str, ...] = ("strongroom.tools.reference",)
REFERENCE_TOOLS_FILE = "reference_tools.yaml"
#: Earlier shipped versions still recognised (record_run_summary 1.0.0, string summary).
LEGACY_REFERENCE_TOOLS_FILE = "reference_tools_legacy.yaml"


def reference_manifest() -> bytes:
    """The reference tools' manifest as strongroom ships it (publishable as it is)."""
    return importlib.resources.files("strongroom.tools").joinpath(REFERENCE_TOOLS_FILE).read_bytes()


def _identity(tool: ToolDefinition) -> str:
    fields = tool.model_dump(
        mode="json", include={"tool_id", "version", "entrypoint", "contract", "governance"}
    )
    return hashlib.sha256(sorted_json(fields)).hexdigest()


@functools.cache
def _reference_identities() -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {}
    for name in (REFERENCE_TOOLS_FILE, LEGACY_REFERENCE_TOOLS_FILE):
        data = importlib.resources.files("strongroom.tools").joinpath(name).read_bytes()
        manifest = load_definition(data, file_name=name)
        assert isinstance(manifest, ToolManifest)
        for tool in manifest.tools:
            found.setdefault(tool.tool_id, set()).add(_identity(tool))
    return {tool_id: frozenset(ids) for tool_id, ids in found.items()}


def grants_host_services(tool: ToolDefinition) -> bool:
    """Whether ``tool`` is one of the reference tools exactly as strongroom ships (or
    shipped) them."""
    if tool.entrypoint is None:
        return False
    module = tool.entrypoint.partition(":")[0]
    return module in HOST_SERVICE_ENTRYPOINTS and _identity(tool) in _reference_identities().get(
        tool.tool_id, frozenset()
    )


HOST_CALL_TIMEOUT = 600.0
SUMMARY_LIMIT = 4000


class HostServices:
    """Callable from the launcher's thread: ``services(op, params) -> result``."""

    def __init__(
        self,
        vault: Vault,
        loop: asyncio.AbstractEventLoop,
        *,
        run_id: str,
        tool_id: str,
        request_id: str,
        actor: str,
    ) -> None:
        self._vault = vault
        self._loop = loop
        self._run_id = run_id
        self._tool_id = tool_id
        self._request_id = request_id
        self._actor = actor
        self.artifact_ids: list[str] = []
        self._ops: dict[str, Callable[..., Coroutine[Any, Any, Any]]] = {
            "fetch_object": self.fetch_object,
            "record_summary": self.record_summary,
        }

    def __call__(self, op: str, params: dict[str, Any]) -> Any:
        handler = self._ops.get(op)
        if handler is None:
            raise ValidationError(f"unknown host operation {op!r}", operation="host." + op[:40])
        future = asyncio.run_coroutine_threadsafe(handler(**params), self._loop)
        try:
            return future.result(timeout=HOST_CALL_TIMEOUT)
        except TypeError as exc:
            raise ValidationError(
                f"bad parameters for {op}: {exc}", operation="host." + op
            ) from exc
        except StrongroomError:
            raise
        except Exception as exc:
            raise ValidationError(f"{op} failed: {exc}", operation="host." + op) from exc

    async def fetch_object(self, bucket: str, key: str) -> dict[str, Any]:
        """Copy the catalog object ``key`` of namespace ``bucket`` into an artifact of the
        run (streamed; the bytes are verified against the object's digest on the way)."""
        if not isinstance(bucket, str) or not isinstance(key, str):
            raise ValidationError("bucket and key must be strings", operation="host.fetch_object")
        await self._vault.catalog.namespace(bucket)  # NotFound for an unknown namespace
        found = [
            obj
            for obj in await self._vault.catalog.objects(bucket, prefix=key, limit=1000)
            if obj.path == key
        ]
        if not found:
            raise NotFound(
                f"no object {key!r} in namespace {bucket!r}",
                operation="host.fetch_object",
                reason="no_such_object",
            )
        obj = found[-1]

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in self._vault.blobs.get_stream(obj.sha256):
                yield chunk

        artifact = await self._vault.artifacts.put_stream(
            self._run_id,
            chunks(),
            role=ArtifactRole.CUSTOM,
            name=posixpath.basename(key) or "object",
            format="binary",
            media_type=obj.content_type,
            step=None,
            metadata={
                "tool_id": self._tool_id,
                "request_id": self._request_id,
                "source": f"catalog:{bucket}/{key}",
                "object_id": obj.object_id,
            },
        )
        self.artifact_ids.append(artifact.artifact_id)
        return {
            "uri": artifact.location.uri,
            "content_type": obj.content_type,
            "size_bytes": artifact.size_bytes,
            "sha256": artifact.sha256,
            "artifact_id": artifact.artifact_id,
        }

    async def record_summary(self, summary: Any) -> dict[str, Any]:
        """Record ``summary`` on the run record (compare-and-set, audited). A JSON object
        (the execution contract's summary) is recorded as its canonical JSON text (sorted
        keys, no whitespace) and also kept whole in the audit record; a non-empty string
        (record_run_summary 1.0.0) as it is."""
        details: dict[str, Any] = {"tool_id": self._tool_id, "request_id": self._request_id}
        if isinstance(summary, dict):
            text = sorted_json(summary).decode("utf-8")
            details.update(summary_format="json", summary=summary)
        elif isinstance(summary, str) and summary.strip():
            text = summary
        else:
            raise ValidationError(
                "summary must be a JSON object (or a non-empty string)", operation="host.summary"
            )
        if len(text) > SUMMARY_LIMIT:
            raise ValidationError(
                f"the summary is {len(text)} characters as JSON; a run's summary holds at most "
                f"{SUMMARY_LIMIT} (store a larger one as an artifact)",
                operation="host.summary",
                reason="too_large",
            )
        run = await self._vault.runs.update(self._run_id, summary=text)
        await self._vault.audit.record(
            {
                "event": "run.summary_recorded",
                "actor": self._actor,
                "subject_type": "run",
                "subject_id": self._run_id,
                "details": details,
            }
        )
        return {"recorded": True, "summary": summary if isinstance(summary, dict) else run.summary}
