"""The orchestrator: runs a registry playbook step by step through the governed execution
lane, durably (a snapshot after every transition), with resume, approvals and cancel."""

from strongroom.orchestrator.engine import DigestDrift, Orchestrator, RunResult
from strongroom.orchestrator.events import Event
from strongroom.orchestrator.executor import LocalExecutor, StepExecutor, StepJob
from strongroom.orchestrator.state import PlanState, StepState, StepStatus

__all__ = [
    "DigestDrift",
    "Event",
    "LocalExecutor",
    "Orchestrator",
    "PlanState",
    "RunResult",
    "StepExecutor",
    "StepJob",
    "StepState",
    "StepStatus",
]
