"""chainplan's PETALS testbed: a measurement rig, not code that runs beside a runtime.

It runs plans on a real PETALS swarm on loopback and compares measured with predicted response
times (docs/petals-testbed.md).  One module per job:

* ``scenario``  the servers a user has (profile), the scenario built from measured times, arrivals
* ``worker``    the PETALS client process (serving.petals.client) and its JSON-lines protocol
* ``calibrate`` measuring hops and chains through PETALS, before planning and on a launched swarm
* ``routes``    where a request's chain comes from: the dispatcher (in this process or over HTTP)
* ``dispatcher`` the live dispatcher (serving.dispatch on Redis) started for a run
* ``replay``    one plan launched as a swarm and the arrivals replayed on it
* ``gateway``   ``--via gateway``: the gateway process for a swarm and the replay as OpenAI calls
* ``prompts``   prompts that do the testbed's work as OpenAI requests (run in the PETALS environment)
* ``predict``   the simulator's prediction of the same arrivals (the batch model)
* ``report``    summaries, the Markdown/CSV/PNG report and the run history
* ``cli``       ``python -m testbed`` (``scripts/testbed.sh``)
* ``host``      facts about the machine a measurement ran on (also used by bench/)
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    """Progress for the operator on stderr (stdout's last line is the run's JSON contract)."""
    print(msg, file=sys.stderr, flush=True)
