"""The vault conformance suite: one class every backend pair inherits.

class TestSqliteLocal(VaultTests):
    @pytest.fixture
    async def vault(self, tmp_path): ...
    async def corrupt_blob(self, vault, sha256): ...
"""

from __future__ import annotations

from strongroom.testing._artifacts import ArtifactTests
from strongroom.testing._audit_query import AuditQueryTests
from strongroom.testing._identity import IdentityTests
from strongroom.testing._identity_policy import IdentityPolicyTests
from strongroom.testing._logs import AuditTests, CatalogTests, LogTests
from strongroom.testing._registry import RegistryStoreTests
from strongroom.testing._registry_service import RegistryServiceTests
from strongroom.testing._retention import RetentionTests
from strongroom.testing._run_stats import RunStatsTests
from strongroom.testing._runs import RunIndexTests, RunTests, SnapshotTests
from strongroom.testing._step_claims import StepClaimTests
from strongroom.testing._transitions import TransitionTests
from strongroom.testing._verify import VerifyTests

__all__ = [
    "ArtifactRecordsTests",
    "AuditRecordsTests",
    "CatalogRecordsTests",
    "LogRecordsTests",
    "RegistryRecordsTests",
    "RetentionRecordsTests",
    "RunRecordsTests",
    "StepClaimRecordsTests",
    "VaultTests",
    "VerifyRecordsTests",
]


# One suite per narrow port (`strongroom.ports`), each run through a Vault over the backend:
# a backend that implements one port can run that port's suite alone.


class RunRecordsTests(RunTests, SnapshotTests, TransitionTests, RunIndexTests, RunStatsTests):
    """`RunRecords`: runs, snapshots, transitions, the run index and its statistics."""


class ArtifactRecordsTests(ArtifactTests):
    """`ArtifactRecords`."""


class LogRecordsTests(LogTests):
    """`LogRecords`: log chains, sealing, references."""


class AuditRecordsTests(AuditTests, AuditQueryTests):
    """`AuditRecords`: the audit chain, bindings, checkpoints, queries by event, actor and
    run, and verify's recorded outcome."""


class CatalogRecordsTests(CatalogTests):
    """`CatalogRecords`."""


class RegistryRecordsTests(
    RegistryStoreTests, RegistryServiceTests, IdentityTests, IdentityPolicyTests
):
    """`RegistryRecords`: definition versions, channels, approvals, actors and the
    governance built on them."""


class VerifyRecordsTests(VerifyTests):
    """`VerifyRecords`: what verify reads, and that it finds what was damaged."""


class RetentionRecordsTests(RetentionTests):
    """`RetentionRecords`: holds, run deletion under a tombstone, blob claims, and the
    plans and GC built on them."""


class StepClaimRecordsTests(StepClaimTests):
    """`StepClaimRecords`: an attempt taken once, beaten and finished by its holder only,
    lost when stale, gone with its run."""


class VaultTests(
    RunRecordsTests,
    ArtifactRecordsTests,
    LogRecordsTests,
    AuditRecordsTests,
    CatalogRecordsTests,
    RegistryRecordsTests,
    RetentionRecordsTests,
    StepClaimRecordsTests,
    VerifyRecordsTests,
):
    """Every behaviour a vault promises, independent of its backends."""
