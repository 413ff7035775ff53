"""The checked-in JSON Schemas (``schemas/``) are exactly what the models export: a model
change without ``make schemas`` fails here."""

from __future__ import annotations

from pathlib import Path

from strongroom.models.export import EXPORTED, render_schemas

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
HINT = "the checked-in schemas are out of date: run `make schemas` and commit schemas/"


def checked_in() -> dict[str, str]:
    return {
        path.name: path.read_text(encoding="utf-8")
        for path in sorted(SCHEMAS_DIR.glob("*.schema.json"))
    }


def test_checked_in_schemas_are_the_exported_set() -> None:
    rendered = render_schemas()
    on_disk = checked_in()
    missing = sorted(set(rendered) - set(on_disk))
    stale = sorted(set(on_disk) - set(rendered))
    assert not missing, f"{HINT} (missing: {missing})"
    assert not stale, f"{HINT} (no longer exported: {stale})"


def test_checked_in_schemas_match_the_models_exactly() -> None:
    rendered = render_schemas()
    on_disk = checked_in()
    differing = sorted(
        name for name in rendered if name in on_disk and on_disk[name] != rendered[name]
    )
    assert not differing, f"{HINT} (differs: {differing})"


def test_every_exported_model_has_its_own_schema_file() -> None:
    assert sorted(render_schemas()) == sorted(f"{model.__name__}.schema.json" for model in EXPORTED)
