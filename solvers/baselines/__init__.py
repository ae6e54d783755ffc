"""Baselines of the published evaluation (spec section 3); importing registers them.

``solvers.runner`` imports this package if present, so each name becomes an
``--algorithm`` choice: petals, bprr, whole-model, parallax, exo, jsq, jiq, sed, random.
"""

# importing registers each; this order is the order they are listed in (parallax and exo first, as before)
from . import parallax, exo, bprr, dispatch_variants, petals, whole_model  # noqa: F401, I001
