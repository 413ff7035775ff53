"""The Python API reference builds from the docstrings with every pdoc warning an error
(`strongroom._api_docs`, ``make api-docs``), and documents what users import."""

from __future__ import annotations

from pathlib import Path

from strongroom._api_docs import PUBLIC_MODULES, build


def test_the_api_reference_builds_without_a_warning(tmp_path: Path) -> None:
    pages = build(tmp_path / "api")
    names = {page.relative_to(tmp_path / "api").as_posix() for page in pages}
    for module in PUBLIC_MODULES:
        assert module.replace(".", "/") + ".html" in names, module
    vault = (tmp_path / "api" / "strongroom" / "vault.html").read_text(encoding="utf-8")
    assert "Vault.open" in vault or "def open" in vault or "open(" in vault
    sync = (tmp_path / "api" / "strongroom" / "sync.html").read_text(encoding="utf-8")
    assert "SyncVault" in sync
    adapters = (tmp_path / "api" / "strongroom" / "adapters.html").read_text(encoding="utf-8")
    assert "PostgresMetadataStore" in adapters  # a lazy export, documented like the rest
