"""The vault conformance suite: one class every backend pair inherits.

class TestSqliteLocal(VaultTests):
    @pytest.fixture
    async def vault(self, tmp_path): ...
    async def corrupt_blob(self, vault, sha256): ...
"""

from __future__ import annotations

from strongroom.testing._artifacts import ArtifactTests
from strongroom.testing._identity import IdentityTests
from strongroom.testing._identity_policy import IdentityPolicyTests
from strongroom.testing._logs import AuditTests, CatalogTests, LogTests
from strongroom.testing._registry import RegistryStoreTests
from strongroom.testing._registry_service import RegistryServiceTests
from strongroom.testing._runs import RunIndexTests, RunTests, SnapshotTests
from strongroom.testing._transitions import TransitionTests
from strongroom.testing._verify import VerifyTests

__all__ = ["VaultTests"]


class VaultTests(
    RunTests,
    SnapshotTests,
    TransitionTests,
    RunIndexTests,
    ArtifactTests,
    LogTests,
    AuditTests,
    CatalogTests,
    RegistryStoreTests,
    RegistryServiceTests,
    VerifyTests,
    IdentityTests,
    IdentityPolicyTests,
):
    """Every behaviour a vault promises, independent of its backends."""
