"""chainplan's serving side: what runs beside a model runtime, without Django.

``serving.dispatch`` is the live join-the-fastest-free-chain dispatcher's client
(and its Redis store, for gateways that talk to Redis directly);
``serving.petals`` launches a plan on a PETALS swarm and forces requests onto
their granted chains.  The rig that measures plans on such a swarm is the top-level
package ``testbed`` (``serving.testbed`` and ``serving.host`` are deprecation shims).
"""
