"""strongroom beside the tools people would pick instead (issue 21): ``make bench-peers``.

``make bench-peers`` makes the venv ``.venv-peers`` (strongroom installed editable, with its
dependencies, plus the pinned peers of ``benchmarks/peers/requirements.txt``: MLflow, Prefect,
DBOS; they install together without a conflict) and runs ``.venv-peers/bin/python -m
benchmarks.peers``. Every side runs under that same interpreter, so strongroom and its peers
share Python, SQLite and the libraries they have in common.

Each workload runs its sides INTERLEAVED: every side once per repetition (``--reps``, 3 by
default), the order reversed every other repetition, each side in a fresh process of its own
(``benchmarks.peers._worker``) with a fresh store in a fresh directory under
``bench-results/work/`` (the repository's disk, not ``/tmp``). Only one process measures at a
time: no tool's imports, background threads or servers are alive while another is measured,
and a tool that fails (not installed, say) fails only its own rows. Opening the store,
starting a tool's server, warm-up and preparing input data are never timed. Every tool keeps
its default durability.

Workloads (``--only NAME``; sizes have flags, ``--quick`` makes them small):

- ``runs``: create, 10 metadata values, a ~1 KB snapshot, complete: strongroom
  ``runs.create(labels=...)``, ``runs.start``, ``snapshots.save``, ``runs.complete``;
  MLflow ``start_run(tags=...)``, ``log_dict``, end of the run.
- ``artifacts``: distinct 4 KiB payloads, one call each (``artifacts.put_bytes``;
  ``mlflow.log_artifact`` of a file) and batched (``artifacts.put_many`` of 100;
  ``mlflow.log_artifacts`` of a folder of 100 files).
- ``chain``: a chain of in-process durable steps, each output persisted: a ``PipelineRun``
  phase per step with ``phase.output``; DBOS ``@DBOS.step`` functions in a ``@DBOS.workflow``
  (SQLite system database); Prefect ``@task(persist_result=True)`` in a ``@flow`` (temporary
  local server, SQLite, ``PREFECT_HOME`` in the work directory).
- ``large``: ``artifacts.put_file`` of random files; ``cp`` + ``sync`` + ``sha256sum``;
  ``hashlib.file_digest`` alone (the hash rate).
- ``index``: filtered pages of 50 over a populated run index: ``runs.list(status, project)``;
  MLflow ``search_runs`` of the project's experiment with a status filter.
- ``cli``: whole-process wall time of ``strongroom runs list`` / ``--help``, ``mlflow runs
  list`` / ``--help`` and ``python -c "import ..."``, the commands taking turns.
- ``acceptance``: the issue's strongroom-only figures from the suite's own benchmarks
  (``benchmarks.log_append``, ``benchmarks.run_latency``), each with its stdlib baseline.

Output: the Markdown table on stdout, progress on stderr, every figure with the machine, the
load average and the versions in ``bench-results/peers.json``; each side process's output in
``bench-results/peers-logs/``. Exit status 1 if any side failed (the others still ran).
"""
