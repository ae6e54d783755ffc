"""Liveness through the dispatcher's store itself (its liveness API: set_server_state, heartbeat, server_states,
events; serving/dispatch/protocol.py), in process, on both stores: the in-memory one and Redis under a prefix of
the test's own.  Heartbeats and drains are mirrored to the store and answered with its state; the poller records
the store's transitions (failure reports, heartbeats, drains) once each, follows drains to their end and heals.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from planner_app.dispatch.services import snapshot_for
from planner_app.liveness import mirror, models, selectors, services
from planner_app.liveness.models import ClusterLiveness, LivenessEvent, ServerLiveness
from planner_app.models import Cluster, Job, Server
from planner_app.probe.services import probe_token_create

from .conftest import run_queued

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("liveness_quick")]

V1 = "/api/v1"


@pytest.fixture
def adopted(api, small_doc, store):
    """A cluster with an adopted plan that the store dispatches (withdrawn at the end)."""
    cid = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json").json()["id"]
    assert api.post(f"{V1}/clusters/{cid}/replan/", {}, format="json").status_code == 201
    run_queued()
    cluster = Cluster.objects.select_related("adopted_plan").get(pk=cid)
    assert cluster.adopted_plan is not None
    store.set_plan(cid, snapshot_for(cluster))
    yield cluster
    store.set_plan(cid, None)


def probe_client(cluster_id, server_id):
    from rest_framework.test import APIClient
    client = APIClient()
    token = probe_token_create(Server.objects.get(cluster_id=cluster_id, server_id=server_id))
    client.credentials(HTTP_AUTHORIZATION=f"Probe {token.key}")
    return client


def poll(cluster_id, now=None):
    return services.cluster_poll(cluster_id, now=now)


def test_the_service_knows_the_stores_states():
    from serving.dispatch import protocol
    assert models.SERVER_STATES == protocol.SERVER_STATES
    assert models.MASKING_STATES == protocol.MASKING_STATES
    assert models.PLANNABLE_STATES | models.MASKING_STATES == set(models.SERVER_STATES)


def test_heartbeats_are_mirrored_and_answered_with_the_stores_state(api, adopted, store, settings):
    cid = adopted.pk
    doc = adopted.adopted_plan.document
    victim = sorted(selectors.plan_servers(doc))[0]
    probe = probe_client(cid, victim)
    url = f"{V1}/clusters/{cid}/servers/{victim}/heartbeat/"
    r = probe.post(url, {"state": "up", "free_memory_gb": 11.5, "device": "test"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["server"] == victim and r.json()["state"] == "up" and r.json()["drain_requested"] is False
    held = {s["server"]: s for s in store.server_states(cid)}
    assert held[victim]["state"] == "up"
    row = ServerLiveness.objects.get(server__cluster_id=cid, server__server_id=victim)
    assert row.heartbeat["free_memory_gb"] == 11.5 and row.last_heartbeat_at is not None
    # a heartbeat that changes nothing is written at most every LIVENESS_HEARTBEAT_RECORD_S (the store has it)
    assert probe.post(url, {"state": "up", "free_memory_gb": 9.0}, format="json").json()["state"] == "up"
    assert ServerLiveness.objects.get(pk=row.pk).heartbeat["free_memory_gb"] == 11.5
    settings.LIVENESS_HEARTBEAT_RECORD_S = 0
    assert probe.post(url, {"state": "up", "free_memory_gb": 9.0}, format="json").json()["state"] == "up"
    assert ServerLiveness.objects.get(pk=row.pk).heartbeat["free_memory_gb"] == 9.0
    # draining, said by the heartbeat: masked in the store at once; "up" again takes it back
    r = probe.post(url, {"state": "draining"}, format="json")
    assert r.json()["state"] == "draining"
    masked = [c["chain"] for c in store.state(cid)["chains"] if c["masked"]]
    assert masked == selectors.chains_through(doc, victim)
    assert probe.post(url, {"state": "up"}, format="json").json()["state"] == "up"
    assert not any(c["masked"] for c in store.state(cid)["chains"])
    # the owner may send one too
    assert api.post(url, {"state": "up"}, format="json").status_code == 200
    # the poller records the two transitions, once
    poll(cid)
    got = list(LivenessEvent.objects.filter(cluster_id=cid).order_by("at", "id").values_list("prev", "state"))
    assert got == [("up", "draining"), ("draining", "up")]
    poll(cid)
    assert LivenessEvent.objects.filter(cluster_id=cid).count() == 2
    assert ClusterLiveness.objects.get(cluster_id=cid).transitions == {"draining": 1, "up": 1}


def test_an_owners_drain_holds_then_completes_and_the_server_leaves_the_plan(api, adopted, store):
    cid = adopted.pk
    doc = adopted.adopted_plan.document
    lease = store.acquire(cid, wait_s=0)
    victim = lease["servers"][0]["server"]
    r = api.post(f"{V1}/clusters/{cid}/servers/{victim}/drain/", {}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["state"] == "draining" and r.json()["drain_requested"] is True
    assert api.post(f"{V1}/clusters/{cid}/servers/{victim}/drain/").status_code == 200      # again: no change
    # the server's own heartbeat says up: the owner's drain holds
    probe = probe_client(cid, victim)
    r = probe.post(f"{V1}/clusters/{cid}/servers/{victim}/heartbeat/", {"state": "up"}, format="json")
    assert r.json()["state"] == "draining" and r.json()["drain_requested"] is True
    through = selectors.chains_through(doc, victim)
    assert [c["chain"] for c in store.state(cid)["chains"] if c["masked"]] == through
    # a lease through it is in flight: not drained yet, no re-plan
    got = poll(cid)
    assert got["drained"] == 0 and got["replans"] == 0
    view = api.get(f"{V1}/clusters/{cid}/liveness/servers/").json()
    mine = next(s for s in view["servers"] if s["server"] == victim)
    assert mine["state"] == "draining" and mine["drain"]["requested_by"] == "alice" and not mine["drain"]["drained_at"]
    assert [m["chain"] for m in view["masked_chains"]] == through
    store.release(cid, lease["lease"])
    got = poll(cid)
    assert got["drained"] == 1 and got["replans"] == 1
    job = Job.objects.get(cluster_id=cid, trigger="servers")
    assert f"server {victim} drained" in job.trigger_detail
    assert victim not in {s["id"] for s in job.scenario["servers"]}
    run_queued()
    job.refresh_from_db()
    assert job.replan_outcome["adopted"]
    assert victim not in selectors.plan_servers(Cluster.objects.get(pk=cid).adopted_plan.document)
    history = api.get(f"{V1}/clusters/{cid}/liveness/?server={victim}").json()["results"]
    assert [e["kind"] for e in history] == ["drained", "transition"]
    assert history[0]["replan"]["job"] == job.pk and history[0]["replan"]["adopted"] is True
    assert "drain requested by alice" in history[1]["cause"]
    # the owner ends the drain: up again, and once it stays up a re-plan may take it back
    r = api.delete(f"{V1}/clusters/{cid}/servers/{victim}/drain/")
    assert r.status_code == 200 and r.json()["state"] == "up" and r.json()["drain_requested"] is False
    t = timezone.now()
    assert poll(cid, now=t)["replans"] == 0
    assert poll(cid, now=t + timedelta(seconds=11))["replans"] == 1
    back = Job.objects.filter(cluster_id=cid, trigger="servers").order_by("-id").first()
    assert f"server {victim} back up" in back.trigger_detail
    assert victim in {s["id"] for s in back.scenario["servers"]}


def test_failure_reports_take_a_server_down_and_healing_replans_without_it(api, adopted, store):
    cid = adopted.pk
    # every slot of the plan taken, so that two leases pass through one server before any report masks it
    capacity = sum(ch["capacity"] for ch in adopted.adopted_plan.document["chains"])
    leases = [store.acquire(cid, wait_s=0) for _ in range(capacity)]
    through: dict[str, list] = {}
    for lease in leases:
        for hop in lease["servers"]:
            through.setdefault(hop["server"], []).append(lease)
    victim = sorted(s for s, ls in through.items() if len(ls) >= 2)[0]
    first, second = through[victim][:2]
    answer = store.release(cid, first["lease"], failed={"server": victim, "error": "connection refused"})
    assert answer["server_state"] == "suspect"
    # a second report, from another lease, takes it down
    answer = store.release(cid, second["lease"], failed={"server": victim, "error": "timed out"})
    assert answer["server_state"] == "down"
    for lease in leases:
        if lease not in (first, second):
            store.release(cid, lease["lease"])
    got = poll(cid)
    assert got["events"] == 2 and got["replans"] == 1
    causes = list(LivenessEvent.objects.filter(cluster_id=cid, server=victim).order_by("at", "id")
                  .values_list("prev", "state", "cause"))
    assert [(p, st) for p, st, _ in causes] == [("up", "suspect"), ("suspect", "down")]
    assert "connection refused" in causes[0][2] and "timed out" in causes[1][2]
    death = LivenessEvent.objects.get(cluster_id=cid, server=victim, state="down")
    job = Job.objects.get(cluster_id=cid, trigger="servers")
    assert death.replan_job_id == job.pk and f"server {victim} down" in job.trigger_detail
    assert victim not in {s["id"] for s in job.scenario["servers"]}
    run_queued()
    job.refresh_from_db()
    assert job.replan_outcome["adopted"]
    assert victim not in selectors.plan_servers(Cluster.objects.get(pk=cid).adopted_plan.document)
    assert ServerLiveness.objects.get(server__cluster_id=cid, server__server_id=victim).state == "down"


def test_a_ban_run_out_keeps_the_server_out_until_it_is_heard_from(api, adopted, store, settings):
    """The store's own cause for a ban that ran out (models.BAN_OVER_CAUSE) is what the service looks for."""
    import time
    cid = adopted.pk
    capacity = sum(ch["capacity"] for ch in adopted.adopted_plan.document["chains"])
    leases = [store.acquire(cid, wait_s=0) for _ in range(capacity)]
    through: dict[str, list] = {}
    for lease in leases:
        for hop in lease["servers"]:
            through.setdefault(hop["server"], []).append(lease)
    victim = sorted(s for s, ls in through.items() if len(ls) >= 2)[0]
    store.release(cid, through[victim][0]["lease"], failed={"server": victim, "error": "reset"})
    store.release(cid, through[victim][1]["lease"], failed={"server": victim, "error": "reset"})
    for lease in leases:
        store.release(cid, lease["lease"])
    time.sleep(1.3)         # the first ban: CHAINPLAN_DISPATCH_SUSPECT_S (1 s)
    store.sweep(cid)
    got = poll(cid)
    assert got["replans"] == 1
    history = list(LivenessEvent.objects.filter(cluster_id=cid, server=victim).order_by("at", "id")
                   .values_list("prev", "state", "cause"))
    assert history[-1] == ("down", "up", models.BAN_OVER_CAUSE), history
    row = ServerLiveness.objects.get(server__cluster_id=cid, server__server_id=victim)
    assert row.state == "up" and row.on_trial
    run_queued()
    t = timezone.now()
    assert poll(cid, now=t + timedelta(seconds=30))["replans"] == 0          # no sign of life, no return
    r = probe_client(cid, victim).post(f"{V1}/clusters/{cid}/servers/{victim}/heartbeat/", {"state": "up"},
                                       format="json")
    assert r.status_code == 200 and r.json()["state"] == "up"
    assert poll(cid, now=t + timedelta(seconds=60))["replans"] == 1
    back = Job.objects.filter(cluster_id=cid, trigger="servers").order_by("-id").first()
    assert f"server {victim} back up" in back.trigger_detail


def test_a_drain_the_store_lost_is_applied_again(api, adopted, store):
    cid = adopted.pk
    victim = sorted(selectors.plan_servers(adopted.adopted_plan.document))[0]
    assert api.post(f"{V1}/clusters/{cid}/servers/{victim}/drain/", {}, format="json").status_code == 200
    # the store forgets it (a restarted in-memory store, a flushed Redis): its record says up
    store.set_server_state(cid, victim, "up", cause="test: store lost the drain")
    poll(cid)
    held = {s["server"]: s["state"] for s in store.server_states(cid)}
    assert held[victim] == "draining"
    assert ServerLiveness.objects.get(server__cluster_id=cid, server__server_id=victim).state == "draining"


def test_the_cursor_follows_the_store(api, adopted, store, monkeypatch):
    cid = adopted.pk
    victim = sorted(selectors.plan_servers(adopted.adopted_plan.document))[0]
    for state in ("draining", "up", "draining", "up"):
        store.set_server_state(cid, victim, state, cause="test")
    assert poll(cid)["events"] == 4 and poll(cid)["events"] == 0
    meta = ClusterLiveness.objects.get(cluster_id=cid)
    assert meta.cursor == store.events(cid)[-1]["id"] and meta.store_key == mirror.store_key()
    # another store (a new in-memory store after a restart): its stream is read from the start
    monkeypatch.setattr(mirror, "_PROCESS_TOKEN", "another-process")
    monkeypatch.setattr(mirror, "uses_redis", lambda: False)
    assert poll(cid)["events"] == len(store.events(cid))
