"""Baselines of the published evaluation (spec section 3); importing registers them.

``solvers.api`` imports this package if present, so each name becomes an
``--algorithm`` choice: petals, bprr, whole-model, parallax, exo, jsq, jiq, sed, random.
"""

from . import anchors, bprr, dispatch_variants, petals, whole_model  # noqa: F401  (register on import)
