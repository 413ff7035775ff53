"""Example tools for strongroom's data-quality pipeline (``examples/registry``).

The runner puts ``examples/tools`` on the tool's ``sys.path``, so the manifest's entry points
read ``strongroom_examples.data_quality:<function>``. Standard library only.
"""

from __future__ import annotations

__all__ = ["data_quality"]
