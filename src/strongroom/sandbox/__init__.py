"""The sandbox of the governed execution lane: probing what this host can enforce, planning the
layers a policy needs, and launching a tool in a fresh, confined process.

The child's entry point (`_bootstrap`: the supervisor, the order of confinement) and what it
imports (`_layers`: namespaces, relay, rlimits, uid drop; `_landlock`; `_seccomp`;
`_staging`: the write quota; `_connects`: the connect watch; `_invoke`: running the tool)
use the standard library only: the child runs ``_bootstrap.py`` as a plain script, so
confining a tool never imports strongroom's heavier modules.
"""
