"""Dispatch domain: dispatch tokens, plan snapshots pushed to the dispatcher's store, observations.

The hot path (acquire/release/renew/state) is served by ``serving.dispatch``'s ASGI
app from its store (Redis, or memory in the embedded default) and never reads the
database; this domain keeps the store in step with the database (adopted plans,
tokens) and brings the dispatcher's observations back (aggregates, re-plan triggers).
"""
