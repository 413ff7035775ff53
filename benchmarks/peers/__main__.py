"""``python -m benchmarks.peers``: see `benchmarks.peers`."""

from benchmarks.peers._run import main

raise SystemExit(main())
