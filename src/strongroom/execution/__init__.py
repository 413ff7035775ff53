"""The governed execution lane: `ToolRunner` runs registry tools under their sandbox policy
and governance level, and audits every invocation."""

from strongroom.execution.governance import Governance, approve_command
from strongroom.execution.runner import BUILTIN_POLICY, RunnerOptions, ToolRunner

__all__ = ["BUILTIN_POLICY", "Governance", "RunnerOptions", "ToolRunner", "approve_command"]
