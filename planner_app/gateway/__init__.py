"""Gateway domain: the OpenAI gateway's keys (``Authorization: Bearer <key>``, each scoped to one cluster).

The gateway itself (``serving.gateway``, mounted under /v1/ in planner_app.asgi) never reads the
database: as with dispatch tokens, only a key's digest is kept, and it is mirrored into the
dispatcher's store, where the gateway looks it up on every request.
"""
