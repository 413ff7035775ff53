"""Adapters that let programs written against another project's storage interfaces keep their
code and store in a strongroom vault instead.

- `strongroom.integrations.rentl`: rentl's storage ports (run state store, run index,
  artifact store, log store) on a vault, for rentl-style translation pipelines.
- `strongroom.integrations.mass_relay`: Mass Relay's documents (tool manifests, playbooks,
  project configs, sandboxes, runner requests, persistence records) accepted as they are.

This package sits in the application layer: it uses `strongroom.vault` and the services, and
nothing in strongroom imports it (docs/architecture.md).
"""

__all__: list[str] = []
