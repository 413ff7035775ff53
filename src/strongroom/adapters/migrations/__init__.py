"""Alembic migrations of the SQL records store, shipped in the package.

Run only through ``SqlMetadataStore.open()``, which applies ``upgrade head`` inside its own
write transaction. Revisions are written by hand (``op.create_table``...) and frozen: they
never import the live table definitions, and a drift test proves that applying all of them
yields exactly ``strongroom.adapters._sql.metadata``.
"""
