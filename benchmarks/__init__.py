"""strongroom benchmarks: ``make bench`` (= ``python -m benchmarks.run``).

Each benchmark module measures one operation of the embedded vault (SQLite + local blobs) and,
in the same run and on the same disk, a baseline doing the same work with the standard library
only (``os`` + ``hashlib`` + ``sqlite3``). See ``docs/performance.md`` for what each figure
means and the latest results.
"""
