"""The single-beat Redis lock (planner_app/core/beat.py), against a real Redis, with short TTLs.

A database of these tests' own and a key per test, so no other test's keys are touched.
"""

from __future__ import annotations

import time
import uuid

import pytest

from planner_app.core.beat import RedisBeatLock

from .live import OWN_REDIS_URL as URL, own_redis


@pytest.fixture
def key():
    client = own_redis()
    name = f"chainplan-test-{uuid.uuid4().hex[:8]}:beat-lock"
    yield name
    client.delete(name)


def test_release_deletes_the_key_only_while_it_holds_it(key):
    lock = RedisBeatLock(URL, key, ttl=5)
    assert lock.acquire() is None
    assert lock.holder()[0] == lock.token
    lock.release()
    assert lock.holder() == (None, -2)

    lock = RedisBeatLock(URL, key, ttl=5)
    assert lock.acquire() is None
    lock.client.set(key, "another beat (taken over)", px=5000)     # after a stall longer than the TTL
    lock.release()
    assert lock.holder()[0] == "another beat (taken over)"         # not ours any more: left alone


def test_a_renewed_lock_is_refused_and_a_stale_one_is_waited_out(key):
    alive = RedisBeatLock(URL, key, ttl=1.5)
    assert alive.acquire() is None
    alive.keep_alive()                     # renews every 0.5 s
    started = time.monotonic()
    assert RedisBeatLock(URL, key, ttl=1.5).acquire() == alive.token
    assert time.monotonic() - started < 2.5     # refused once it saw the renewal, not after a fixed wait
    alive.release()

    stale = RedisBeatLock(URL, key, ttl=1.5)
    assert stale.acquire() is None         # never renewed: as if its beat was killed
    newcomer = RedisBeatLock(URL, key, ttl=1.5)
    assert newcomer.acquire() is None
    assert newcomer.holder()[0] == newcomer.token
    newcomer.release()


def test_a_key_without_expiry_is_refused_at_once(key):
    lock = RedisBeatLock(URL, key, ttl=1.5)
    lock.client.set(key, "set by hand")
    started = time.monotonic()
    assert "no expiry" in lock.acquire()
    assert time.monotonic() - started < 1
