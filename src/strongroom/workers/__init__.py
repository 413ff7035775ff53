"""Playbook steps on Celery workers, on this machine or others (docs/orchestrator.md).

- `celery_app(broker_url)`: the Celery application both sides use: late acknowledgement,
  ``reject_on_worker_lost``, prefetch 1, JSON messages, no result backend (a step's answer is
  its step claim in the vault, not a Celery result);
- `CeleryExecutor`: the orchestrator's executor that sends each step attempt to the broker
  and waits on its claim (`strongroom.orchestrator.remote.ClaimExecutor`);
- the task ``strongroom.step``: on a worker, runs one attempt through
  `strongroom.orchestrator.remote.run_claimed_step` against the worker's own vault, tools and
  sandbox (`WorkerSettings`, from the environment ``strongroom worker`` sets).

A message carries ids and digests only (run, step, attempt, request id, tool, manifest
digest, caller): never an input, an output or a secret. Delivery is at least once; the claim
makes each attempt run and be recorded once.
"""

from strongroom.workers.broker import (
    BROKER_ENV,
    DEFAULT_QUEUE,
    STEP_TASK,
    CeleryExecutor,
    WorkerSettings,
    celery_app,
)

__all__ = [
    "BROKER_ENV",
    "DEFAULT_QUEUE",
    "STEP_TASK",
    "CeleryExecutor",
    "WorkerSettings",
    "celery_app",
]
