"""Celery beat, at most one per deployment: ``python -m planner_app.core.beat [beat options]``.

Two beats on one schedule database send every due schedule twice. Before starting, this
takes a lock that lives exactly as long as the process:

- embedded default (filesystem broker): an fcntl lock on ``$CHAINPLAN_VAR_DIR/beat.lock``;
  the kernel drops it when the process dies, however it dies;
- Redis broker (production): a Redis key ``<prefix>:beat-lock`` with a TTL, renewed by a
  thread every TTL/3; a beat that cannot renew (lost Redis, or the key taken over after a
  stall longer than the TTL) exits at once rather than risk running beside another. A beat
  that stops cleanly (SIGTERM, SIGINT) deletes the key if it still holds it, so a restart
  starts at once. A key left by a beat that could not release it (kill -9, a lost host) is
  waited out: it is not renewed, so it expires within the TTL and the new beat takes it;
  meanwhile the web server and the worker serve as usual.

A second beat, while the holder is alive (the lock is renewed), exits with status 75 and
a message naming the holder.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import uuid

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "planner_app.settings")

EX_TEMPFAIL = 75
LOCK_TTL_S = float(os.environ.get("CHAINPLAN_BEAT_LOCK_TTL_S", "30"))
POLL_S = 0.5        # how often a beat waiting for a stale lock looks again


def _identity() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class FileBeatLock:
    """An fcntl lock held through an open handle: closing it (or dying) releases it."""

    def __init__(self, handle):
        self._handle = handle

    def release(self) -> None:
        self._handle.close()


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
    return FileBeatLock(handle), None     # keep it referenced: closing the handle would release the lock


class RedisBeatLock:
    """The single-beat key, held with redis-py's Lock: set-if-absent with a TTL, renewed and deleted only while
    the key still holds this beat's token (compare-and-extend, compare-and-delete, each one Lua call)."""

    def __init__(self, url: str, key: str, ttl: float = LOCK_TTL_S):
        import redis
        self.key, self.ttl = key, ttl
        self.client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        self.token = f"{_identity()} ({uuid.uuid4().hex[:8]})"
        # thread_local=False: the keeper thread renews with the token the main thread took
        self._lock = self.client.lock(key, timeout=ttl, thread_local=False)
        self._stopped = threading.Event()

    def try_acquire(self) -> bool:
        return bool(self._lock.acquire(blocking=False, token=self.token))

    def holder(self) -> tuple[str | None, int]:
        """(the holder's token or None, milliseconds until the key expires: -1 never, -2 no key)."""
        with self.client.pipeline() as pipe:
            value, left_ms = pipe.get(self.key).pttl(self.key).execute()
        return (value.decode() if value else None), int(left_ms)

    def acquire(self) -> str | None:
        """Take the key, waiting out one that is not renewed; None when taken, else the live holder."""
        if self.try_acquire():
            return None
        holder, left_ms = self.holder()
        if left_ms == -1:
            return f"{holder}, with no expiry: delete the key by hand if no beat runs"
        deadline = time.monotonic() + max(left_ms, 0) / 1000 + 2 * POLL_S
        _say(f"== beat: the single-beat lock {self.key!r} is held by {holder}; waiting up to "
             f"{max(left_ms, 0) / 1000:.0f} s for it to expire, unless that beat is alive and renews it")
        while time.monotonic() < deadline:
            time.sleep(POLL_S)
            if self.try_acquire():
                _say(f"== beat: took over the single-beat lock {self.key!r} (its holder stopped renewing it)")
                return None
            now, now_left_ms = self.holder()
            if now is not None and (now != holder or now_left_ms > left_ms):
                return now          # renewed, or taken by another beat: a live beat holds it
            left_ms = now_left_ms
        return holder or "another beat"

    def keep_alive(self) -> None:
        """Renew every TTL/3 from a daemon thread; exit the process at once when that fails."""
        from redis.exceptions import LockError

        def keep():
            while not self._stopped.wait(self.ttl / 3):
                try:
                    self._lock.reacquire()
                    continue
                except LockError:
                    why = "the lock was taken over"
                except Exception as exc:  # noqa: BLE001
                    why = f"Redis unreachable ({exc})"
                if self._stopped.is_set():     # released while renewing: a clean stop, not a lost lock
                    return
                _say(f"!! beat: lost its single-beat lock {self.key!r}: {why}; exiting so that no schedule is "
                     "sent twice")
                os._exit(EX_TEMPFAIL)

        threading.Thread(target=keep, name="beat-lock", daemon=True).start()

    def release(self) -> None:
        """Delete the key if this beat still holds it; a key taken over or expired is left to its holder."""
        from redis.exceptions import LockError, RedisError
        self._stopped.set()
        try:
            self._lock.release()
        except LockError:
            pass
        except RedisError as exc:
            _say(f"!! beat: could not release {self.key!r} ({exc}); it expires within {self.ttl:.0f} s")


def redis_lock(url: str, key: str, ttl: float = LOCK_TTL_S):
    """Take ``key`` and keep it alive from a daemon thread; (None, holder) if a live beat holds it."""
    lock = RedisBeatLock(url, key, ttl)
    holder = lock.acquire()
    if holder is not None:
        return None, holder
    lock.keep_alive()
    return lock, None


def acquire():
    """The lock for this deployment's beat (released by the caller), or exit with a message."""
    from django.conf import settings
    if settings.EMBEDDED_BROKER:
        where = settings.VAR_DIR / "beat.lock"
        held, holder = file_lock(where)
    else:
        prefix = os.environ.get("CHAINPLAN_BEAT_LOCK_PREFIX", "chainplan")
        where = f"{prefix}:beat-lock"
        held, holder = redis_lock(settings.CELERY_BROKER_URL, where)
    if held is None:
        _say(f"!! beat is already running ({holder}; lock {where}): a second beat would send every due "
             "schedule twice. Not starting.")
        sys.exit(EX_TEMPFAIL)
    return held


def _stop(signum, frame):
    raise SystemExit(0)


def main(argv: list[str]) -> None:
    import django
    django.setup()
    lock = acquire()
    # until celery installs its own handlers (they also end in SystemExit), a stop still runs the finally
    signal.signal(signal.SIGTERM, _stop)
    try:
        from celery import current_app     # planner_app's app: the package binds it when Django starts
        current_app.start(["beat", *argv])
    finally:
        lock.release()


if __name__ == "__main__":
    main(sys.argv[1:])
