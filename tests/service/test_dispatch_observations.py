"""The dispatcher's observations feed re-planning (in process: Django's test database, the in-memory store).

A virtual clock makes the measured service times and the arrival rate exact.
"""

from __future__ import annotations

import asyncio

import pytest

from planner_app.catalog.models import Cluster
from planner_app.dispatch import services
from planner_app.dispatch.models import DispatchObservation, DispatchToken
from planner_app.planning.models import Job
from serving.dispatch.memory_store import MemoryStore

from .conftest import run_queued

V1 = "/api/v1"


@pytest.fixture
def adopted(api, small_doc):
    cid = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json").json()["id"]
    api.post(f"{V1}/clusters/{cid}/replan/", {}, format="json")
    run_queued()
    cluster = Cluster.objects.select_related("adopted_plan").get(pk=cid)
    assert cluster.adopted_plan is not None
    return cluster


def drive(cluster, *, requests: int, gap_s: float, hold_factor: float) -> dict:
    """``requests`` acquire/release pairs ``gap_s`` apart, each held hold_factor x the chain's predicted time."""
    clock = [1_000_000.0]
    store = MemoryStore(clock_ms=lambda: clock[0])

    async def body():
        await store.set_plan(cluster.pk, services.snapshot_for(cluster))
        for _ in range(requests):
            lease = await store.acquire(cluster.pk, wait_s=0)
            predicted = cluster.adopted_plan.document["chains"][lease["chain"]]["service_time_s"]
            clock[0] += predicted * hold_factor * 1000
            await store.release(cluster.pk, lease["lease"])
            clock[0] += gap_s * 1000
        state = await store.state(cluster.pk)
        state.pop("_raw")
        return state
    return asyncio.run(body())


def replans(cluster, trigger):
    return list(Job.objects.filter(cluster=cluster, trigger=trigger))


def test_measured_service_time_drift_triggers_one_replan(adopted, settings):
    settings.DISPATCH_DRIFT_MIN_COMPLETED = 30
    Cluster.objects.filter(pk=adopted.pk).update(replan_load_threshold=100.0)   # only the service time here
    state = drive(adopted, requests=40, gap_s=0.5, hold_factor=1.5)             # 50 % slower than predicted
    row = services.observation_record(adopted.pk, state)
    assert isinstance(row, DispatchObservation) and row.plan_id == adopted.adopted_plan_id
    assert row.grants == row.releases == 40 and row.chains[0]["completed"] == 40
    assert row.chains[0]["measured_service_time_s"] == pytest.approx(1.5 * row.chains[0]["predicted_service_time_s"],
                                                                     rel=1e-3)
    jobs = replans(adopted, "service_time")
    assert len(jobs) == 1 and "chain 0" in jobs[0].trigger_detail and "50%" in jobs[0].trigger_detail
    services.observation_record(adopted.pk, state)          # within the cool-down: no second re-plan
    assert len(replans(adopted, "service_time")) == 1


def test_service_time_within_threshold_or_too_few_requests_does_not_trigger(adopted, settings):
    Cluster.objects.filter(pk=adopted.pk).update(replan_load_threshold=100.0)
    settings.DISPATCH_DRIFT_MIN_COMPLETED = 30
    services.observation_record(adopted.pk, drive(adopted, requests=40, gap_s=0.5, hold_factor=1.1))
    services.observation_record(adopted.pk, drive(adopted, requests=10, gap_s=0.5, hold_factor=3.0))
    assert replans(adopted, "service_time") == []


def test_measured_arrival_rate_feeds_the_observed_load_trigger(adopted):
    planned = adopted.adopted_plan.document["arrival_rate"]
    # requests 0.25 s apart for 10 s: 4 per second, far above the planned rate
    state = drive(adopted, requests=40, gap_s=0.25, hold_factor=0.01)
    assert state["arrival_rate"] > 3 * planned
    services.observation_record(adopted.pk, state)
    cluster = Cluster.objects.get(pk=adopted.pk)
    assert cluster.observed_arrival_rate == pytest.approx(state["arrival_rate"])
    jobs = replans(adopted, "load")
    assert len(jobs) == 1 and "observed arrival rate" in jobs[0].trigger_detail


def test_token_endpoint_owner_only_and_stored_hashed(api, other_api, adopted):
    url = f"{V1}/clusters/{adopted.pk}/dispatch/tokens/"
    assert other_api.post(url, {}, format="json").status_code == 404
    r = api.post(url, {}, format="json")
    assert r.status_code == 201
    token = r.json()["token"]
    row = DispatchToken.objects.get(cluster=adopted)
    assert row.digest == services.token_digest(token) and token not in row.digest and row.hint == token[:6]
    panel = api.get(f"{V1}/clusters/{adopted.pk}/dispatcher/").json()
    assert panel["tokens"] == 1 and panel["adopted_plan"] == adopted.adopted_plan_id
    assert other_api.get(f"{V1}/clusters/{adopted.pk}/dispatcher/").status_code == 404


def test_cluster_dispatch_policy_setting(api, adopted):
    url = f"{V1}/clusters/{adopted.pk}/"
    r = api.patch(url, {"dispatch_policy": "fastest"}, format="json")
    assert r.status_code == 400 and "dispatch_policy" in r.content.decode()
    assert api.patch(url, {"dispatch_policy": "sed"}, format="json").json()["dispatch_policy"] == "sed"
    cluster = Cluster.objects.select_related("adopted_plan").get(pk=adopted.pk)
    assert services.snapshot_for(cluster)["policy"] == "sed"


class _Dispatcher:
    """The ASGI dispatcher over this deployment's store, kept across calls (as a running one is: its caches too)."""

    def __init__(self):
        from planner_app.dispatch.store import async_store
        from serving.dispatch.http import DispatchApp
        self.loop = asyncio.new_event_loop()
        self.app = DispatchApp(async_store())

    def status(self, cluster_id: int, token: str) -> int:
        import httpx

        async def call():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://d") as c:
                r = await c.get(f"{V1}/clusters/{cluster_id}/dispatch/state/",
                                headers={"Authorization": f"Dispatch {token}"})
            return r.status_code
        return self.loop.run_until_complete(call())


@pytest.fixture
def dispatcher():
    d = _Dispatcher()
    yield d
    d.loop.close()


def test_tokens_listed_and_revoked_at_once(api, other_api, adopted, dispatcher, django_capture_on_commit_callbacks):
    url = f"{V1}/clusters/{adopted.pk}/dispatch/tokens/"
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post(url, {}, format="json").json()["token"]
        second = api.post(url, {}, format="json").json()["token"]
    listed = api.get(url).json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [r["hint"] for r in rows] == [second[:6], first[:6]]        # newest first
    assert all(r["active"] and r["revoked_at"] is None for r in rows)
    assert all(first not in str(r) and "digest" not in r for r in rows)  # neither token nor digest shown again
    assert other_api.get(url).status_code == 404
    assert dispatcher.status(adopted.pk, first) == 200

    first_id = rows[1]["id"]
    assert other_api.delete(f"{url}{first_id}/").status_code == 404     # not their cluster
    with django_capture_on_commit_callbacks(execute=True):
        r = api.delete(f"{url}{first_id}/")
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["revoked_at"]
    # the very next call with the revoked token is refused; the other token still works
    assert dispatcher.status(adopted.pk, first) == 401
    assert dispatcher.status(adopted.pk, second) == 200
    assert api.delete(f"{url}{first_id}/").status_code == 200         # revoking twice is harmless
    assert api.delete(f"{url}999999/").status_code == 404
    assert api.get(f"{V1}/clusters/{adopted.pk}/dispatcher/").json()["tokens"] == 1

    # a full sync with the database never brings a revoked token back (and re-drops it)
    from planner_app.dispatch.store import sync_store
    services._full_sync_at[0] = 0.0
    sync_store().put_token(services.token_digest(first), adopted.pk)   # as if the drop had been lost
    services.sync_store_with_database()
    assert dispatcher.status(adopted.pk, first) == 401
