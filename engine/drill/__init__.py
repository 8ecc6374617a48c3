"""Restore drills (the seed's testing_validation_framework): restore the newest backup into
a scratch cluster, recover it to a restore point taken for the drill, and prove it.

- :mod:`engine.drill.reference` takes the restore point and, consistently with it, the
  source's row counts, checksums, roles and privileges (its docstring says how);
- :mod:`engine.drill.scratch` restores into an isolated scratch directory and removes it;
- :mod:`engine.drill.checks`, :mod:`engine.drill.auth`, :mod:`engine.drill.crud` and
  :mod:`engine.drill.probes` validate the restored cluster;
- :mod:`engine.drill.model` holds the result and the threshold decisions (pure);
- :mod:`engine.drill.run` runs a drill (``run``) and records it in the catalog (``record``);
- :mod:`engine.drill.report` renders the Markdown report.

A full drill compares every permanent user table of the configured databases; a partial
drill compares the configured critical tables and runs CRUD on them. Both check roles,
logins and grants, and time the configured probes against the source's baseline.
"""

from engine.drill.model import Check, DrillResult

__all__ = ["Check", "DrillResult"]
