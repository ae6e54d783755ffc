"""Celery beat, at most one per deployment: ``python -m planner_app.core.beat [beat options]``.

Two beats on one schedule database send every due schedule twice. Before starting, this
takes a lock that lives exactly as long as the process:

- embedded default (filesystem broker): an fcntl lock on ``$CHAINPLAN_VAR_DIR/beat.lock``;
  the kernel drops it when the process dies, however it dies;
- Redis broker (production): a Redis key ``<prefix>:beat-lock`` with a TTL, renewed by a
  thread every TTL/3; a beat that cannot renew (lost Redis, or the key taken over after a
  stall longer than the TTL) exits at once rather than risk running beside another.

A second beat exits with status 75 and a message naming the holder.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "planner_app.settings")

EX_TEMPFAIL = 75
LOCK_TTL_S = float(os.environ.get("CHAINPLAN_BEAT_LOCK_TTL_S", "30"))


def _identity() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def file_lock(path):
    """Hold an exclusive lock on ``path`` for the life of the process; None if someone holds it."""
    import fcntl
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        return None, holder
    handle.seek(0)
    handle.truncate()
    handle.write(_identity())
    handle.flush()
    return handle, None     # keep the handle open: closing it would release the lock


def redis_lock(url: str, key: str, ttl: float = LOCK_TTL_S):
    """Take ``key`` (SET NX PX) and keep it alive from a daemon thread; None if someone holds it."""
    import redis
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    token = f"{_identity()} ({uuid.uuid4().hex[:8]})"
    if not client.set(key, token, nx=True, px=int(ttl * 1000)):
        holder = client.get(key)
        return None, holder.decode() if holder else "another beat"
    # renew only while we still hold it (compare-and-extend in one step)
    renew = client.register_script(
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end")

    def keep():
        while True:
            time.sleep(ttl / 3)
            try:
                ok = renew(keys=[key], args=[token, int(ttl * 1000)])
            except Exception as exc:  # noqa: BLE001
                ok, why = 0, f"Redis unreachable ({exc})"
            else:
                why = "the lock was taken over"
            if not ok:
                print(f"!! beat: lost its single-beat lock {key!r}: {why}; exiting so that no schedule is sent "
                      "twice", file=sys.stderr, flush=True)
                os._exit(EX_TEMPFAIL)

    threading.Thread(target=keep, name="beat-lock", daemon=True).start()
    return token, None


def acquire():
    """The lock for this deployment's beat (kept referenced by the caller), or exit with a message."""
    from django.conf import settings
    if settings.EMBEDDED_BROKER:
        where = settings.VAR_DIR / "beat.lock"
        held, holder = file_lock(where)
    else:
        prefix = os.environ.get("CHAINPLAN_BEAT_LOCK_PREFIX", "chainplan")
        where = f"{prefix}:beat-lock"
        held, holder = redis_lock(settings.CELERY_BROKER_URL, where)
    if held is None:
        print(f"!! beat is already running ({holder}; lock {where}): a second beat would send every due "
              "schedule twice. Not starting.", file=sys.stderr, flush=True)
        sys.exit(EX_TEMPFAIL)
    return held


def main(argv: list[str]) -> None:
    import django
    django.setup()
    lock = acquire()  # noqa: F841  (held for the life of the process)
    from celery import current_app     # planner_app's app: the package binds it when Django starts
    current_app.start(["beat", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
