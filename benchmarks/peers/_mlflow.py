"""MLflow's side: a SQLite tracking store (``sqlite:///WORK/mlflow.db``) and a local file
artifact store (``WORK/artifacts``), both in the work directory, with MLflow's default
durability: its SQLite database in SQLite's default rollback-journal mode with
``synchronous=FULL`` (every commit fsynced), artifact files copied (``shutil.copy2``) without
any fsync.

MLflow is imported inside each function (through ``importlib``: it is not installed in the
project's dev venv, where mypy checks this file); its calls are typed ``Any``.
"""

from __future__ import annotations

import importlib
import random
import time
from pathlib import Path
from typing import Any

from benchmarks.peers._shared import (
    MLFLOW_STATUS,
    PeerSizes,
    Result,
    labels,
    payloads,
    snapshot_state,
)

__all__ = ["artifacts", "cli_setup", "index", "index_setup", "runs"]


def _mlflow(work: Path) -> tuple[Any, Any, str]:
    """(the mlflow module, an MlflowClient, the tracking URI) for the store in ``work``."""
    mlflow = importlib.import_module("mlflow")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.tracking.MlflowClient(uri)
    return mlflow, client, uri


def _experiment(client: Any, work: Path, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = (work / "artifacts" / name).as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def _one_run(mlflow: Any, experiment_id: str, i: int) -> None:
    with mlflow.start_run(experiment_id=experiment_id, tags=labels(i)):
        mlflow.log_dict(snapshot_state(i), "state.json")


def runs(work: Path, sizes: PeerSizes) -> Result:
    """start_run with 10 tags + log_dict of the ~1 KB state + end_run (the ``with`` block)."""
    mlflow, client, _ = _mlflow(work)
    experiment_id = _experiment(client, work, "bench-peers")
    for i in range(20):  # warm-up
        _one_run(mlflow, experiment_id, -1 - i)
    start = time.perf_counter()
    for i in range(sizes.runs):
        _one_run(mlflow, experiment_id, i)
    seconds = time.perf_counter() - start
    return {"rate": sizes.runs / seconds, "seconds": seconds, "count": sizes.runs}


def _write_files(directory: Path, datas: list[bytes], prefix: str) -> list[Path]:
    directory.mkdir(parents=True)
    paths = []
    for n, data in enumerate(datas):
        path = directory / f"{prefix}-{n:05}.bin"
        path.write_bytes(data)
        paths.append(path)
    return paths


def artifacts(work: Path, sizes: PeerSizes) -> Result:
    """log_artifact of one file per call, then log_artifacts of a folder of ``small_batch``
    files per call; the source files are written beforehand (not timed)."""
    batch = max(1, sizes.small_batch)
    batches = max(1, sizes.small_count // batch)
    count = batches * batch
    source = work / "source"
    single = _write_files(source / "single", payloads(count), "single")
    folders = []
    for b in range(batches):
        folder = source / f"batch-{b:03}"
        _write_files(folder, payloads(batch), f"batch-{b:03}")
        folders.append(folder)
    warm = _write_files(source / "warmup", payloads(20), "warmup")
    warm_folder = source / "warmup-folder"
    _write_files(warm_folder, payloads(10), "warmup")

    mlflow, client, _ = _mlflow(work)
    experiment_id = _experiment(client, work, "bench-peers")
    with mlflow.start_run(experiment_id=experiment_id):
        for path in warm:
            mlflow.log_artifact(str(path), artifact_path="warmup")
        mlflow.log_artifacts(str(warm_folder), artifact_path="warmup-folder")

        start = time.perf_counter()
        for path in single:
            mlflow.log_artifact(str(path))
        single_s = time.perf_counter() - start

        start = time.perf_counter()
        for folder in folders:
            mlflow.log_artifacts(str(folder), artifact_path=folder.name)
        many_s = time.perf_counter() - start
    return {
        "single_rate": count / single_s,
        "batch_rate": count / many_s,
        "count": count,
        "batch": batch,
    }


# -- the run index -------------------------------------------------------------------------------


def index_setup(work: Path, sizes: PeerSizes) -> Result:
    """The run index benchmark's population (same seed, so the same statuses, projects and
    creation times as strongroom's): one experiment per project, create_run with the start
    time and two tags, then set_terminated to the mapped status (all but RUNNING)."""
    from benchmarks.run_index import _make_run

    _, client, _ = _mlflow(work)
    rng = random.Random(2026)
    experiments: dict[str, str] = {}
    start = time.perf_counter()
    for i in range(sizes.index_runs):
        run = _make_run(rng, i)
        if run.project not in experiments:
            experiments[run.project] = _experiment(client, work, run.project)
        created = client.create_run(
            experiments[run.project],
            start_time=int(run.created_at.timestamp() * 1000),
            tags={"actor": run.actor, "purpose": run.purpose},
        )
        status = MLFLOW_STATUS[run.status.value]
        if status != "RUNNING":
            client.set_terminated(
                created.info.run_id,
                status=status,
                end_time=int(run.updated_at.timestamp() * 1000),
            )
    return {"seconds": time.perf_counter() - start, "runs": sizes.index_runs}


def index(work: Path, sizes: PeerSizes, queries: list[tuple[str, str]]) -> Result:
    """search_runs([the project's experiment], "attributes.status = 'S'", max_results=50)."""
    _, client, _ = _mlflow(work)
    experiments = {e.name: str(e.experiment_id) for e in client.search_experiments()}

    def query(status: str, project: str) -> int:
        page = client.search_runs(
            [experiments[project]],
            filter_string=f"attributes.status = '{MLFLOW_STATUS[status]}'",
            max_results=50,
        )
        return len(page)

    for status, project in queries[:10]:  # warm-up
        query(status, project)
    latencies: list[float] = []
    rows = 0
    for status, project in queries[10:]:
        start = time.perf_counter()
        rows += query(status, project)
        latencies.append(time.perf_counter() - start)
    return {"latencies_ms": [s * 1e3 for s in latencies], "rows": rows}


def cli_setup(work: Path, sizes: PeerSizes) -> Result:
    """An experiment with ``cli_runs`` finished runs, for ``mlflow runs list``."""
    mlflow, client, uri = _mlflow(work)
    experiment_id = _experiment(client, work, "bench-peers")
    for i in range(sizes.cli_runs):
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"listed run {i}"):
            pass
    return {"tracking_uri": uri, "experiment_id": experiment_id, "runs": sizes.cli_runs}
