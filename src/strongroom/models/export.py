"""Export every boundary model's JSON Schema: ``python -m strongroom.models.export DIR``.

The checked-in ``schemas/`` folder is compared against this output by a test, so a model change
without ``make schemas`` fails CI.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from strongroom import models

EXPORTED: tuple[type[BaseModel], ...] = (
    models.Run,
    models.RunState,
    models.SnapshotRecord,
    models.RunQuery,
    models.RunPage,
    models.RunStatusCounts,
    models.RunStatsQuery,
    models.RunStats,
    models.ArtifactMetadata,
    models.ArtifactManifest,
    models.LogLine,
    models.LogEntry,
    models.LogReference,
    models.AuditEntry,
    models.MerkleCheckpoint,
    models.Provider,
    models.Namespace,
    models.CatalogObject,
    models.ErrorInfo,
    models.VerifyReport,
    models.ToolManifest,
    models.Playbook,
    models.ProjectConfig,
    models.SandboxPolicy,
    models.DefinitionVersion,
    models.ChannelMove,
    models.Approval,
    models.Actor,
    models.Hold,
    models.RetentionPolicy,
    models.GcPlan,
    models.GcResult,
    models.RunDeletion,
    models.PersistenceRecord,
    models.RunnerRequest,
    models.RunnerResponse,
)


def render_schemas() -> dict[str, str]:
    """File name -> schema text, deterministic."""
    out: dict[str, str] = {}
    for model in EXPORTED:
        schema = model.model_json_schema(mode="validation")
        out[f"{model.__name__}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def main(argv: list[str]) -> int:
    target = Path(argv[1] if len(argv) > 1 else "schemas")
    target.mkdir(parents=True, exist_ok=True)
    for name, text in render_schemas().items():
        (target / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(EXPORTED)} schemas to {target}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
