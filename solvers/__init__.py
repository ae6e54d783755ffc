"""chainplan solvers: server chain composition for pipeline-parallel model serving.

Framework-free (no Django).  Entry points:

- ``parse_scenario`` / ``load_scenario``: validated scenario model
- ``solvers.runner.plan``: run one algorithm on a scenario, returning the plan document
- ``python -m solvers``: command line
"""

from .errors import FieldError, ScenarioError
from .scenario import Scenario, load_scenario, parse_scenario

__all__ = ["FieldError", "ScenarioError", "Scenario", "load_scenario", "parse_scenario"]
