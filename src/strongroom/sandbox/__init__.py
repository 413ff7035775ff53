"""The sandbox of the governed execution lane: probing what this host can enforce, planning the
layers a policy needs, and launching a tool in a fresh, confined process.

The enforcement primitives (`_landlock`, `_seccomp`) and the child's entry point
(`_bootstrap`) use the standard library only: the child runs ``_bootstrap.py`` as a plain
script, so confining a tool never imports strongroom's heavier modules.
"""
