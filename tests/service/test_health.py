"""GET /api/v1/health/ tells the truth: real gunicorn, Celery worker, PostgreSQL and Redis (or none)."""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from .live import free_port

pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]

KEYS = {"status", "database", "broker", "workers"}


def health(stack):
    response = requests.get(stack.url + "/api/v1/health/", timeout=10)
    body = response.json()
    assert set(body) == KEYS, body
    return response.status_code, body


def wait_health(stack, code, within_s):
    start = time.monotonic()
    while True:
        got, body = health(stack)
        if got == code:
            return time.monotonic() - start, body
        if time.monotonic() - start > within_s:
            raise AssertionError(f"health still {got} after {within_s} s: {body}")
        time.sleep(0.25)


def test_health_follows_the_worker_and_a_killed_one_shows_within_10_s(stack_factory):
    stack = stack_factory()
    stack.start_web()
    code, body = health(stack)
    assert code == 503 and body["status"] == "unavailable"
    assert body["database"]["ok"] and body["broker"]["ok"]
    assert body["workers"] == {"ok": False, "alive": 0, "detail": body["workers"]["detail"]}
    assert stack.queue in body["workers"]["detail"]

    worker = stack.start_worker("hw", beat=False)
    _, body = wait_health(stack, 200, within_s=15)
    assert body["status"] == "ok" and body["workers"]["alive"] == 1 and body["workers"]["ok"]

    os.kill(worker.pid, signal.SIGKILL)        # the main process only, as in the issue
    took, body = wait_health(stack, 503, within_s=10)
    assert body["workers"]["alive"] == 0
    print(f"killed worker seen by /health/ after {took:.1f} s")


def test_health_reports_an_unreachable_broker(stack_factory):
    # nothing listens on this port: the broker is down
    stack = stack_factory(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    stack.start_web()
    code, body = health(stack)
    assert code == 503
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is False and "unreachable" in body["broker"]["detail"]
    assert body["workers"]["ok"] is False and body["workers"]["alive"] == 0
