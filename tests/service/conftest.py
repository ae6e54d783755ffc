"""Fixtures for the planning service tests.

In-process API tests use Django's test database (SQLite in memory unless
DATABASE_URL says otherwise) and run queued jobs by calling the task body.
End-to-end tests (marker ``services``) start real processes on PostgreSQL and
Redis; see live.py.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from rest_framework.test import APIClient

from planner_app.core.services import user_ensure
from planner_app.planning.services import execute_job
from planner_app.models import Job, JobStatus

from .live import PgDatabase, Stack, require_services

SMALL = {
    "name": "small",
    "model": {"name": "toy", "num_blocks": 10, "block_size_gb": 1.0, "cache_size_gb": 0.1},
    "servers": [
        {"id": "a", "memory_gb": 12, "comm_time_s": 0.5, "block_time_s": 0.1},
        {"id": "b", "memory_gb": 8, "comm_time_s": 0.3, "block_time_s": 0.2},
        {"id": "c", "memory_gb": 8, "comm_time_s": 0.4, "block_time_s": 0.15},
    ],
    "workload": {"arrival_rate": 0.5, "target_load": 0.7},
}


@pytest.fixture(autouse=True)
def _fresh_cache():
    # ids repeat between tests (each test's rows are rolled back); the finished-job cache must not
    from django.core.cache import cache
    cache.clear()


@pytest.fixture
def small_doc():
    return copy.deepcopy(SMALL)


def token_client(user) -> APIClient:
    _, token = user_ensure(user.get_username())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def user(db, django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-pw")


@pytest.fixture
def other(db, django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-pw")


@pytest.fixture
def api(user):
    return token_client(user)


@pytest.fixture
def other_api(other):
    return token_client(other)


def run_queued() -> list[str]:
    """Run every queued job with the Celery task's body, in this process."""
    return [execute_job(job.pk, "test-worker")
            for job in Job.objects.filter(status=JobStatus.QUEUED).order_by("pk")]


# ---------------------------------------------------------------------------
# real processes
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def template_db(tmp_path_factory):
    """A migrated database that no process keeps open, copied for each stack."""
    require_services()
    template = PgDatabase()
    try:
        Stack(tmp_path_factory.mktemp("migrate"), template.url).manage("migrate", "--noinput", "-v", "0")
        yield template
    finally:
        template.drop()


@pytest.fixture(scope="session")
def migrated_db(template_db):
    database = PgDatabase(template=template_db)
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture(scope="session")
def live(migrated_db, tmp_path_factory):
    """gunicorn + one Celery worker (2 processes) on PostgreSQL and Redis."""
    stack = Stack(tmp_path_factory.mktemp("live"), migrated_db.url)
    try:
        stack.start_web()
        stack.start_worker("main", concurrency=2)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def stack_factory(template_db, tmp_path):
    """Stacks of one's own (own database and queue), for tests that kill or starve workers.

    Their own database, because every stack's sweep looks at every job of its database and
    would re-queue another stack's stalled job on its own queue.
    """
    stacks, databases = [], []

    def make(**env):
        database = PgDatabase(template=template_db)
        databases.append(database)
        stack = Stack(tmp_path / f"stack{len(stacks)}", database.url, **env)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
    for database in databases:
        database.drop()


class _WebhookReceiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        _WebhookReceiver.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook():
    """A webhook receiver on 127.0.0.1: (url, list of the JSON bodies it received)."""
    server = HTTPServer(("127.0.0.1", 0), _WebhookReceiver)
    _WebhookReceiver.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _WebhookReceiver.received
    server.shutdown()
    server.server_close()


@pytest.fixture
def liveness_quick(settings):
    """Short simulations, and re-plan and rejoin debounces that a test can outwait or stay inside."""
    settings.DEFAULT_SIMULATE_REQUESTS = 300
    settings.LIVENESS_REPLAN_MIN_INTERVAL_S = 10.0
    settings.LIVENESS_REJOIN_STABLE_S = 10.0


@pytest.fixture(params=["memory", "redis"])
def store(request, settings):
    """The service's dispatch store (planner_app.dispatch.store.sync_store) as the liveness poller sees it: the
    in-memory one, or Redis under a prefix of this test's own; emptied before and after."""
    from planner_app.dispatch import store as store_mod
    if request.param == "redis":
        from .live import OWN_REDIS_URL, own_redis
        own_redis()
        settings.DISPATCH_REDIS_URL = OWN_REDIS_URL
        settings.DISPATCH_PREFIX = f"test-liveness-{uuid.uuid4().hex[:8]}"
        store_mod._sync = None
    sync = store_mod.sync_store()
    sync.clear()        # cluster ids repeat between tests (their rows are rolled back): nothing left of another

    class Store:
        """Blocking calls; acquire through the async store, which the in-memory one needs an event loop for."""

        def __getattr__(self, name):
            return getattr(sync, name)

        def acquire(self, cluster, wait_s=0):
            async def go():
                async_store = store_mod.async_store()
                try:
                    return await async_store.acquire(cluster, wait_s=wait_s)
                finally:
                    if request.param == "redis":
                        await async_store.close()
            return asyncio.run(go())

    yield Store()
    sync.clear()
    if request.param == "redis":
        sync.close()
        store_mod._sync = None
