"""Liveness in process (docs/liveness.md), on the service's database only: who may send heartbeats and drain, bad
input, the history and the servers' states, re-plans that leave out servers that are not up, healing (a death, a
return, a completed drain, debouncing) and the metrics.

The store's transitions are fed to ``services.events_record`` in the shape ``mirror.poll_events`` gives them, as the
poller does; what needs the store's liveness API itself (heartbeats and drains mirrored, the poller reading real
events) is in test_liveness_store.py and test_liveness_live.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from planner_app.dispatch.services import snapshot_for
from planner_app.liveness import selectors, services
from planner_app.liveness.models import ClusterLiveness, LivenessEvent, ServerLiveness
from planner_app.models import Cluster, Job, Server
from planner_app.probe.services import probe_token_create
from planner_app.replanning.services import replan_request

from .conftest import run_queued

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("liveness_quick")]

V1 = "/api/v1"


@pytest.fixture
def cluster(api, small_doc):
    return api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json").json()


def adopt(api, cluster_id) -> dict:
    """A manual re-plan, run and adopted: the adopted plan's document."""
    r = api.post(f"{V1}/clusters/{cluster_id}/replan/", {}, format="json")
    assert r.status_code == 201, r.content
    run_queued()
    job = Job.objects.get(pk=r.json()["id"])
    assert job.replan_outcome["adopted"], job.replan_outcome
    return Cluster.objects.get(pk=cluster_id).adopted_plan.document


def used(doc) -> set[str]:
    return selectors.plan_servers(doc)


_ids = iter(range(1, 10**6))


def ev(server, prev, state, cause, at=None):
    """A store transition as mirror.poll_events gives it."""
    return {"id": next(_ids), "server": server, "prev": prev, "state": state, "at": at or timezone.now(),
            "cause": cause}


def record(cluster_id, *events):
    return services.events_record(Cluster.objects.get(pk=cluster_id), list(events))


def probe_client(server: Server):
    from rest_framework.test import APIClient
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Probe {probe_token_create(server).key}")
    return client


# -- who may, and bad input (all answered before the store is asked) --------------------------------------

def test_heartbeat_and_drain_are_for_the_server_of_the_token_or_the_owner(api, other_api, cluster, small_doc):
    cid = cluster["id"]
    a = Server.objects.get(cluster_id=cid, server_id="a")
    probe_a = probe_client(a)
    hb = f"{V1}/clusters/{cid}/servers/%s/heartbeat/"
    # a probe token names one server: another server of the same cluster is refused by name
    r = probe_a.post(hb % "b", {"state": "up"}, format="json")
    assert r.status_code == 403 and "for server 'a'" in r.json()["detail"] and "not server 'b'" in r.json()["detail"]
    # ... and so is the same server id in another cluster of the same owner
    other_cluster = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json").json()["id"]
    r = probe_a.post(f"{V1}/clusters/{other_cluster}/servers/a/heartbeat/", {"state": "up"}, format="json")
    assert r.status_code == 403 and f"of cluster {cid}" in r.json()["detail"]
    # a probe token cannot drain, not even its own server
    r = probe_a.post(f"{V1}/clusters/{cid}/servers/a/drain/", {}, format="json")
    assert r.status_code == 403 and "owner" in r.json()["detail"]
    # another user sees no such cluster; the owner is told which server does not exist
    assert other_api.post(hb % "a", {"state": "up"}, format="json").status_code == 404
    assert other_api.post(f"{V1}/clusters/{cid}/servers/a/drain/", {}, format="json").status_code == 404
    assert other_api.delete(f"{V1}/clusters/{cid}/servers/a/drain/").status_code == 404
    assert other_api.get(f"{V1}/clusters/{cid}/liveness/").status_code == 404
    assert other_api.get(f"{V1}/clusters/{cid}/liveness/servers/").status_code == 404
    r = api.post(hb % "nope", {"state": "up"}, format="json")
    assert r.status_code == 404 and "no server 'nope'" in r.json()["detail"]
    r = api.post(f"{V1}/clusters/{cid}/servers/nope/drain/", {}, format="json")
    assert r.status_code == 404
    # no credentials, or a wrong probe token
    from rest_framework.test import APIClient
    assert APIClient().post(hb % "a", {"state": "up"}, format="json").status_code == 401
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Probe not-a-token")
    assert bad.post(hb % "a", {"state": "up"}, format="json").status_code == 401
    assert not ServerLiveness.objects.exists() and not LivenessEvent.objects.exists()


@pytest.mark.parametrize("body,field,needle", [
    ({"state": "up", "free_memory": 3}, "free_memory", "did you mean 'free_memory_gb'"),
    ({"state": "up", "colour": "red"}, "colour", "unknown key"),
    ({"state": "down"}, "state", "not a valid choice"),
    ({}, "state", "required"),
    ({"state": "up", "free_memory_gb": -1}, "free_memory_gb", "greater than or equal to 0"),
    ({"state": "up", "free_memory_gb": "3"}, "free_memory_gb", "must be a number"),
    ({"state": "up", "device": "x" * 201}, "device", "no more than 200"),
    ([1, 2], "", "JSON object"),
])
def test_a_bad_heartbeat_names_the_problem(api, cluster, body, field, needle):
    r = api.post(f"{V1}/clusters/{cluster['id']}/servers/a/heartbeat/", body, format="json")
    assert r.status_code == 400, r.content
    errors = r.json()["errors"]
    assert any(e["field"] == field and needle in e["message"] for e in errors), errors


def test_bad_drain_requests(api, cluster):
    cid = cluster["id"]
    r = api.post(f"{V1}/clusters/{cid}/servers/a/drain/", {"now": True}, format="json")
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "now"
    r = api.post(f"{V1}/clusters/{cid}/servers/a/drain/", [1], format="json")
    assert r.status_code == 400
    # ending a drain that never began
    r = api.delete(f"{V1}/clusters/{cid}/servers/a/drain/")
    assert r.status_code == 409 and "not draining" in r.json()["detail"]


def test_history_filters_and_pages(api, cluster):
    cid = cluster["id"]
    t0 = timezone.now() - timedelta(minutes=5)
    record(cid, ev("a", "up", "suspect", "failure report: connection refused", t0),
           ev("a", "suspect", "down", "failure report: connection refused", t0 + timedelta(seconds=1)),
           ev("b", "up", "draining", "drain", t0 + timedelta(seconds=2)),
           ev("ghost", "up", "down", "heartbeat timeout", t0 + timedelta(seconds=3)))   # no longer in the catalog
    r = api.get(f"{V1}/clusters/{cid}/liveness/?page_size=2")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 4 and len(body["results"]) == 2 and body["next"]
    newest = body["results"][0]
    assert (newest["server"], newest["prev"], newest["state"], newest["kind"]) == ("ghost", "up", "down", "transition")
    assert newest["replan"] is None and newest["plan"] is None and newest["chains"] == []
    only_a = api.get(f"{V1}/clusters/{cid}/liveness/?server=a").json()["results"]
    assert [(e["prev"], e["state"]) for e in only_a] == [("suspect", "down"), ("up", "suspect")]
    assert api.get(f"{V1}/clusters/{cid}/liveness/?kind=drained").json()["count"] == 0
    for query, field in (("kind=nap", "kind"), ("server=", "server"), ("page_size=0", "page_size"),
                         ("server=" + "x" * 129, "server")):
        r = api.get(f"{V1}/clusters/{cid}/liveness/?{query}")
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == field, (query, r.content)
    # each server's record follows the transitions; a server never reported on is up
    view = api.get(f"{V1}/clusters/{cid}/liveness/servers/").json()
    states = {s["server"]: (s["state"], s["reported"]) for s in view["servers"]}
    assert states == {"a": ("down", True), "b": ("draining", True), "c": ("up", False)}
    assert view["adopted_plan"] is None and view["masked_chains"] == [] and view["chains"] == 0
    b = next(s for s in view["servers"] if s["server"] == "b")
    assert b["drain"] == {"requested_at": None, "requested_by": None, "drained_at": None}
    assert ClusterLiveness.objects.get(cluster_id=cid).transitions == {"suspect": 1, "down": 2, "draining": 1}


def test_masked_chains_follow_the_adopted_plan(api, cluster):
    cid = cluster["id"]
    doc = adopt(api, cid)
    chains = [tuple(ch["servers"]) for ch in doc["chains"]]
    victim = next(iter(sorted(used(doc))))
    record(cid, ev(victim, "up", "suspect", "failure report: timed out"))
    view = api.get(f"{V1}/clusters/{cid}/liveness/servers/").json()
    through = [k for k, servers in enumerate(chains) if victim in servers]
    assert [m["chain"] for m in view["masked_chains"]] == through and through
    assert all(m["servers"] == [victim] for m in view["masked_chains"])
    assert view["chains"] == len(chains)
    entry = api.get(f"{V1}/clusters/{cid}/liveness/").json()["results"][0]
    assert entry["chains"] == through and entry["plan"] == Cluster.objects.get(pk=cid).adopted_plan_id
    record(cid, ev(victim, "suspect", "up", "probation passed"))
    assert api.get(f"{V1}/clusters/{cid}/liveness/servers/").json()["masked_chains"] == []
    # suspect -> up is no return from away: nothing is owed
    assert ServerLiveness.objects.get(server__server_id=victim, server__cluster_id=cid).rejoined_at is None


# -- re-planning on the servers that are up ---------------------------------------------------------------

def test_every_replan_leaves_out_servers_that_are_not_up(api, cluster):
    cid = cluster["id"]
    doc = adopt(api, cid)
    victim = sorted(used(doc))[0]
    record(cid, ev(victim, "suspect", "down", "heartbeat timeout"))
    assert selectors.unavailable_servers(cid) == {victim: "down"}
    # a manual re-plan (any trigger) plans on the others, and replaces a plan that uses the dead server
    r = api.post(f"{V1}/clusters/{cid}/replan/", {}, format="json")
    job = Job.objects.get(pk=r.json()["id"])
    assert victim not in {s["id"] for s in job.scenario["servers"]}
    run_queued()
    job.refresh_from_db()
    assert job.replan_outcome["adopted"] and job.replan_outcome["forced"], job.replan_outcome
    assert "left out of this re-plan" in job.replan_outcome["why"] and victim in job.replan_outcome["why"]
    assert victim not in used(Cluster.objects.get(pk=cid).adopted_plan.document)
    # suspect servers are planned on (a probation, not a verdict); with every server out, nothing is planned
    record(cid, ev(victim, "down", "suspect", "heartbeat"))
    assert selectors.unavailable_servers(cid) == {}
    record(cid, *[ev(s, "up", "draining", "drain") for s in ("a", "b", "c")])
    from planner_app.replanning.services import ReplanRefused
    with pytest.raises(ReplanRefused, match="no server is up to plan on"):
        replan_request(cid, "manual", "test")


# -- healing ---------------------------------------------------------------------------------------------

def test_a_death_replans_at_once_and_a_return_after_it_stayed_up(api, cluster):
    cid = cluster["id"]
    doc = adopt(api, cid)
    victim = sorted(used(doc))[0]
    t0 = timezone.now()
    record(cid, ev(victim, "up", "suspect", "failure report: connection refused", t0),
           ev(victim, "suspect", "down", "failure report: connection refused", t0))
    job = services.heal(cid, now=t0)
    assert job is not None and job.trigger == "servers"
    assert f"server {victim} down (failure report: connection refused)" in job.trigger_detail
    assert f"leaving out {victim} (down)" in job.trigger_detail
    assert victim not in {s["id"] for s in job.scenario["servers"]}
    # the history says which server's death started it
    death = LivenessEvent.objects.get(cluster_id=cid, server=victim, state="down")
    assert death.replan_job_id == job.pk
    assert LivenessEvent.objects.get(cluster_id=cid, server=victim, state="suspect").replan_job_id is None
    # while it runs, and once it ran for this very plan and servers, nothing more starts
    assert services.heal(cid, now=t0 + timedelta(seconds=30)) is None
    run_queued()
    job.refresh_from_db()
    assert job.replan_outcome["adopted"]
    healed = Cluster.objects.get(pk=cid).adopted_plan
    assert victim not in used(healed.document)
    assert services.heal(cid, now=t0 + timedelta(seconds=60)) is None
    entry = api.get(f"{V1}/clusters/{cid}/liveness/?server={victim}").json()["results"][0]
    assert entry["replan"]["job"] == job.pk and entry["replan"]["adopted"] is True
    assert entry["replan"]["plan"] == healed.pk and entry["replan"]["status"] == "succeeded"

    # it comes back: nothing until it has stayed up LIVENESS_REJOIN_STABLE_S, then a re-plan that may use it
    t1 = t0 + timedelta(seconds=100)
    record(cid, ev(victim, "down", "joining", "heartbeat", t1), ev(victim, "joining", "up", "heartbeat", t1))
    assert ServerLiveness.objects.get(server__cluster_id=cid, server__server_id=victim).rejoined_at == t1
    assert services.heal(cid, now=t1 + timedelta(seconds=5)) is None
    back = services.heal(cid, now=t1 + timedelta(seconds=11))
    assert back is not None and f"server {victim} back up" in back.trigger_detail
    assert victim in {s["id"] for s in back.scenario["servers"]}
    assert LivenessEvent.objects.get(cluster_id=cid, server=victim, prev="joining", state="up").replan_job_id == back.pk
    assert ServerLiveness.objects.get(server__cluster_id=cid, server__server_id=victim).rejoined_at is None
    run_queued()
    back.refresh_from_db()
    # the normal adoption rule judges it: adopted when the gain clears the minimum, else a candidate
    assert back.status == "succeeded" and "adopted" in back.replan_outcome
    assert services.heal(cid, now=t1 + timedelta(seconds=40)) is None
    meta = ClusterLiveness.objects.get(cluster_id=cid)
    assert meta.replans == 2 and meta.replan_job_id == back.pk


def test_a_failure_ban_that_runs_out_is_no_return(api, cluster):
    """Two failure reports take a server down for a ban; when the ban runs out the store tries it again ("up on
    trial"), which is no sign of life: the plan heals around it all the same, and takes it back only once it is
    heard from."""
    cid = cluster["id"]
    doc = adopt(api, cid)
    victim = sorted(used(doc))[0]
    t0 = timezone.now()
    # all three within one poll: the poller never sees it down, only the history does
    record(cid, ev(victim, "up", "suspect", "failure report: connection reset", t0),
           ev(victim, "suspect", "down", "failure report: connection reset", t0 + timedelta(milliseconds=200)),
           ev(victim, "down", "up", "failure ban over", t0 + timedelta(seconds=1)))
    row = ServerLiveness.objects.get(server__cluster_id=cid, server__server_id=victim)
    assert row.state == "up" and row.on_trial
    assert selectors.unavailable_servers(cid) == {victim: "failed, on trial"}
    job = services.heal(cid, now=t0 + timedelta(seconds=1))
    assert job is not None and f"server {victim} down (failure reports; up on trial" in job.trigger_detail
    assert victim not in {s["id"] for s in job.scenario["servers"]}
    assert LivenessEvent.objects.get(cluster_id=cid, server=victim, state="down").replan_job_id == job.pk
    run_queued()
    assert victim not in used(Cluster.objects.get(pk=cid).adopted_plan.document)
    # up for a minute on trial, never heard from: no return
    assert services.heal(cid, now=t0 + timedelta(seconds=60)) is None
    # a heartbeat (what POST heartbeat/ records) is a sign of life: now it is a return
    ServerLiveness.objects.filter(pk=row.pk).update(last_heartbeat_at=t0 + timedelta(seconds=61))
    assert selectors.unavailable_servers(cid) == {}
    back = services.heal(cid, now=t0 + timedelta(seconds=62))
    assert back is not None and f"server {victim} back up" in back.trigger_detail


def test_a_flapping_server_does_not_start_a_replan_storm(api, cluster):
    cid = cluster["id"]
    doc = adopt(api, cid)
    victim = sorted(used(doc))[0]
    t = timezone.now()
    started = []
    # down and up every 2 s for a minute, the poller healing every second
    for step in range(60):
        now = t + timedelta(seconds=step)
        if step % 2 == 0:
            record(cid, ev(victim, "up", "down", "heartbeat timeout", now))
        else:
            record(cid, ev(victim, "down", "up", "heartbeat", now))
        job = services.heal(cid, now=now)
        if job is not None:
            started.append(job)
            run_queued()
    # the death re-plans once; its returns never stay up long enough to re-plan again
    assert len(started) == 1, [j.trigger_detail for j in started]
    assert ClusterLiveness.objects.get(cluster_id=cid).replans == 1


def test_two_deaths_close_together_are_debounced_into_the_next_replan(api, cluster):
    cid = cluster["id"]
    doc = adopt(api, cid)
    assert len(used(doc)) == 3          # SMALL's plan uses every server
    first, second = sorted(used(doc))[:2]
    t = timezone.now()
    record(cid, ev(first, "up", "down", "heartbeat timeout", t))
    assert services.heal(cid, now=t) is not None
    run_queued()
    record(cid, ev(second, "up", "down", "heartbeat timeout", t + timedelta(seconds=2)))
    assert services.heal(cid, now=t + timedelta(seconds=3)) is None          # within the minimum interval
    later = services.heal(cid, now=t + timedelta(seconds=11))
    assert later is not None and f"server {second} down" in later.trigger_detail
    assert {first, second}.isdisjoint({s["id"] for s in later.scenario["servers"]})
    # c alone cannot hold the model: the re-plan fails with its reason, the plan stays (its chains masked), and
    # the same situation is not re-planned again and again
    run_queued()
    later.refresh_from_db()
    assert later.status == "failed" and "can hold 7 of 10 blocks" in later.error
    assert all(services.heal(cid, now=t + timedelta(seconds=s)) is None for s in (30, 60, 120))
    entry = api.get(f"{V1}/clusters/{cid}/liveness/?server={second}").json()["results"][0]
    assert entry["replan"]["status"] == "failed" and "can hold 7 of 10 blocks" in entry["replan"]["why"]


def test_no_healing_when_the_owner_turned_server_replans_off(api, cluster):
    cid = cluster["id"]
    doc = adopt(api, cid)
    Cluster.objects.filter(pk=cid).update(replan_on_server_change=False)
    record(cid, ev(sorted(used(doc))[0], "up", "down", "heartbeat timeout"))
    assert services.heal(cid) is None and not Job.objects.filter(trigger="servers").exists()


def test_a_drain_completes_when_no_lease_passes_through_the_server_then_it_leaves_the_plan(api, cluster, store):
    """The busy counts come from the dispatcher's store (its state API, which both stores have today)."""
    cid = cluster["id"]
    adopt(api, cid)
    c = Cluster.objects.select_related("adopted_plan").get(pk=cid)
    store.set_plan(cid, snapshot_for(c))
    try:
        lease = store.acquire(cid, wait_s=0)
        victim = lease["servers"][0]["server"]
        record(cid, ev(victim, "up", "draining", "drain requested by alice"))
        state = store.state(cid)
        assert selectors.leases_through(state, victim, c.adopted_plan.document) == 1
        others = {s for s in ("a", "b", "c") if s not in {h["server"] for h in lease["servers"]}}
        assert all(selectors.leases_through(state, s, c.adopted_plan.document) == 0 for s in others)
        assert services.drains_check(c) == 0                      # a lease in flight passes through it
        assert services.heal(cid) is None                         # draining, not drained: no re-plan yet
        store.release(cid, lease["lease"])
        assert services.drains_check(c) == 1
        assert services.drains_check(c) == 0                      # once
        drained = LivenessEvent.objects.get(cluster_id=cid, kind="drained")
        assert drained.server == victim and "leaves the plan" in drained.cause
        job = services.heal(cid)
        assert job is not None and f"server {victim} drained" in job.trigger_detail
        assert LivenessEvent.objects.get(pk=drained.pk).replan_job_id == job.pk
        run_queued()
        job.refresh_from_db()
        assert job.replan_outcome["adopted"]
        assert victim not in used(Cluster.objects.get(pk=cid).adopted_plan.document)
    finally:
        store.set_plan(cid, None)


def test_leases_through_reads_older_generations_too():
    state = {"_raw": {"generations": [
        {"generation": 1, "in_flight": 2, "in_progress": [2, 0], "hops": [[["a", 4], ["b", 6]], [["c", 10]]]},
        {"generation": 2, "in_flight": 1, "in_progress": [0, 1], "hops": [[["c", 10]], [["b", 3], ["a", 7]]]},
    ]}}
    assert [selectors.leases_through(state, s) for s in "abcd"] == [3, 3, 0, 0]
    # a store without generations: its current chains with the plan document's servers
    plain = {"chains": [{"chain": 0, "in_progress": 2}, {"chain": 1, "in_progress": 1}]}
    doc = {"chains": [{"servers": ["a", "b"], "blocks": [4, 6], "service_time_s": 1.0, "capacity": 2},
                      {"servers": ["c"], "blocks": [10], "service_time_s": 2.0, "capacity": 1}]}
    assert [selectors.leases_through(plain, s, doc) for s in "abc"] == [2, 2, 1]


# -- metrics -------------------------------------------------------------------------------------------

def test_metrics_report_states_masked_chains_and_counters(api, cluster, settings, client):
    cid = cluster["id"]
    doc = adopt(api, cid)
    victim = sorted(used(doc))[0]
    record(cid, ev(victim, "up", "down", "heartbeat timeout"))
    services.heal(cid)
    ServerLiveness.objects.filter(server__cluster_id=cid, server__server_id=victim) \
        .update(last_heartbeat_at=timezone.now() - timedelta(seconds=30))
    r = client.get(f"{V1}/liveness/metrics")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/plain")
    text = r.content.decode()
    c = f'cluster="{cid}"'
    assert f'chainplan_liveness_server_state{{{c},server="{victim}",state="down"}} 1.0' in text
    assert f'chainplan_liveness_server_state{{{c},server="{victim}",state="up"}} 0.0' in text
    others = sorted({"a", "b", "c"} - {victim})
    assert f'chainplan_liveness_server_state{{{c},server="{others[0]}",state="up"}} 1.0' in text
    masked = len(selectors.chains_through(doc, victim))
    assert f"chainplan_liveness_masked_chains{{{c}}} {float(masked)}" in text
    assert f'chainplan_liveness_transitions_total{{{c},state="down"}} 1.0' in text
    assert f"chainplan_liveness_replans_total{{{c}}} 1.0" in text
    age = [line for line in text.splitlines() if line.startswith(f"chainplan_liveness_heartbeat_age_seconds{{{c}")]
    assert len(age) == 1 and 29 < float(age[0].split()[-1]) < 120
    settings.METRICS_TOKEN = "s3cret"
    r = client.get(f"{V1}/liveness/metrics")
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    assert client.get(f"{V1}/liveness/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200
