"""Re-planning in process: adoption and its threshold, triggers, diffs, apply, schedules, webhook."""

from __future__ import annotations

import json

import pytest
from django_celery_beat.models import PeriodicTask

from planner_app.core.validation import parse_scenario_document
from planner_app.probe import services as probe_services
from planner_app.replanning import services
from planner_app.models import Cluster, Job, Plan, PlanAdoption, ReplanSchedule, Server
from solvers.switching import plan_diff

from .conftest import run_queued

pytestmark = pytest.mark.django_db

V1 = "/api/v1"


@pytest.fixture(autouse=True)
def _quick(settings):
    settings.DEFAULT_SIMULATE_REQUESTS = 300


@pytest.fixture
def cluster(api, small_doc):
    return api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json").json()


def replan(api, cluster_id) -> dict:
    r = api.post(f"{V1}/clusters/{cluster_id}/replan/", {}, format="json")
    assert r.status_code == 201, r.content
    run_queued()
    return api.get(f"{V1}/jobs/{r.json()['id']}/").json()


def used_servers(doc) -> set[str]:
    return ({p["server"] for p in doc["placement"] if p["num_blocks"] > 0}
            | {s for ch in doc["chains"] for s in ch["servers"]})


def test_import_keeps_default_workload_and_jobs_fall_back_to_it(api, cluster, small_doc):
    assert cluster["default_workload"] == small_doc["workload"]
    r = api.post(f"{V1}/jobs/", {"cluster": cluster["id"]}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["scenario"]["workload"]["arrival_rate"] == small_doc["workload"]["arrival_rate"]
    # a cluster without one still asks for a workload
    bare = api.post(f"{V1}/clusters/", {"name": "bare", "model": cluster["model"],
                                        "servers": [{"server_id": "x", "memory_gb": 20, "comm_time_s": 0.1, "block_time_s": 0.1}]}, format="json").json()
    r = api.post(f"{V1}/jobs/", {"cluster": bare["id"]}, format="json")
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "workload"


def test_first_replan_is_adopted_and_a_no_gain_replan_stays_a_candidate(api, cluster):
    first = replan(api, cluster["id"])
    assert first["status"] == "succeeded" and first["trigger"] == "manual"
    assert first["replan_outcome"]["adopted"] and first["previous_plan"] is None
    plan_id = first["plans"][0]["id"]
    assert api.get(f"{V1}/clusters/{cluster['id']}/").json()["adopted_plan"] == plan_id

    second = replan(api, cluster["id"])       # nothing changed: same plan, no gain
    outcome = second["replan_outcome"]
    assert second["previous_plan"] == plan_id
    assert not outcome["adopted"] and outcome["gain"] < 0.05 and "candidate" in outcome["why"]
    assert api.get(f"{V1}/clusters/{cluster['id']}/").json()["adopted_plan"] == plan_id
    switching = Plan.objects.get(pk=second["plans"][0]["id"]).document["switching"]
    assert switching["blocks_to_load"] == 0 and switching["servers_changed"] == 0
    candidates = api.get(f"{V1}/clusters/{cluster['id']}/candidates/").json()["results"]
    assert second["plans"][0]["id"] in [p["id"] for p in candidates]
    assert plan_id not in [p["id"] for p in candidates]
    history = api.get(f"{V1}/clusters/{cluster['id']}/adoptions/").json()["results"]
    assert [(a["plan"], a["trigger"], a["adopted_by"]) for a in history] == [(plan_id, "manual", None)]


def test_a_gain_above_the_threshold_is_adopted_by_itself(api, cluster):
    replan(api, cluster["id"])
    # more load than the adopted plan was made for: a re-plan for it must be at least as good
    Cluster.objects.filter(pk=cluster["id"]).update(replan_min_gain=0.0, observed_arrival_rate=1.2)
    job = replan(api, cluster["id"])
    assert job["replan_outcome"]["gain"] >= 0 and job["replan_outcome"]["adopted"]
    Cluster.objects.filter(pk=cluster["id"]).update(replan_min_gain=10.0)   # unreachable
    Cluster.objects.filter(pk=cluster["id"]).update(observed_arrival_rate=0.2)
    job = replan(api, cluster["id"])
    assert not job["replan_outcome"]["adopted"]


def test_manual_adoption_history_diff_and_conflict(api, cluster):
    job = api.post(f"{V1}/jobs/", {"cluster": cluster["id"], "algorithms": ["proposed", "whole-model", "bprr"],
                                   "options": {"simulate_requests": 200}}, format="json").json()
    run_queued()
    plans = [p for p in api.get(f"{V1}/jobs/{job['id']}/").json()["plans"] if p["feasible"]]
    a, b = plans[0]["id"], plans[1]["id"]
    r = api.post(f"{V1}/plans/{a}/adopt/")
    assert r.status_code == 201 and r.json()["adopted_by"] == "alice" and r.json()["previous_plan"] is None
    assert api.post(f"{V1}/plans/{a}/adopt/").status_code == 409
    r = api.post(f"{V1}/plans/{b}/adopt/")
    assert r.status_code == 201 and r.json()["previous_plan"] == a
    docs = {p.pk: p.document for p in Plan.objects.filter(pk__in=[a, b])}
    assert r.json()["diff"] == json.loads(json.dumps(plan_diff(docs[a], docs[b])))
    history = api.get(f"{V1}/clusters/{cluster['id']}/adoptions/").json()["results"]
    assert [h["plan"] for h in history] == [b, a]
    adopted = api.get(f"{V1}/clusters/{cluster['id']}/adopted-plan/").json()
    assert adopted["plan"]["id"] == b and adopted["adoption"]["previous_plan"] == a
    diff = api.get(f"{V1}/plans/diff/?old={a}&new={b}").json()
    assert diff["old"] == a and diff["new"] == b and diff["servers"] == r.json()["diff"]["servers"]
    # without old: against the adopted plan (itself here: nothing changes)
    assert api.get(f"{V1}/plans/diff/?new={b}").json()["servers"] == []
    # plans of inline scenarios have no cluster to adopt them for
    inline = api.post(f"{V1}/jobs/", {"scenario": {**job["scenario"]}, "options": {"simulate_requests": 0}},
                      format="json").json()
    run_queued()
    pid = api.get(f"{V1}/jobs/{inline['id']}/").json()["plans"][0]["id"]
    assert api.post(f"{V1}/plans/{pid}/adopt/").status_code == 400


def _plan(job, doc) -> int:
    return Plan.objects.create(job=job, algorithm=doc["algorithm"], feasible=True, document=doc).pk


def test_diff_on_hand_made_plans(api, user):
    job = Job.objects.create(owner=user, scenario={}, input_scenario={}, algorithms=["proposed"])
    old = {"algorithm": "proposed", "placement": [
        {"server": "a", "start_block": 0, "num_blocks": 6}, {"server": "b", "start_block": 6, "num_blocks": 4},
        {"server": "c", "start_block": 0, "num_blocks": 10}],
        "chains": [{"servers": ["a", "b"], "blocks": [6, 4], "service_time_s": 2.0, "capacity": 3},
                   {"servers": ["c"], "blocks": [10], "service_time_s": 3.0, "capacity": 2}],
        "bounds": {"response_time_lower_s": 2.0, "response_time_upper_s": 2.5},
        "simulation": {"mean_response_s": 2.2, "p95_response_s": 4.0}}
    new = {"algorithm": "best", "placement": [
        {"server": "a", "start_block": 0, "num_blocks": 4}, {"server": "b", "start_block": 4, "num_blocks": 6},
        {"server": "c", "start_block": 0, "num_blocks": 10}, {"server": "d", "start_block": 0, "num_blocks": 0}],
        "chains": [{"servers": ["a", "b"], "blocks": [4, 6], "service_time_s": 1.8, "capacity": 3},
                   {"servers": ["c"], "blocks": [10], "service_time_s": 3.0, "capacity": 4}],
        "bounds": {"response_time_lower_s": 1.5, "response_time_upper_s": 2.0},
        "simulation": {"mean_response_s": 1.7, "p95_response_s": 3.0}}
    o, n = _plan(job, old), _plan(job, new)
    diff = api.get(f"{V1}/plans/diff/?old={o}&new={n}").json()
    # a drops 4..5, b loads 4..5; c unchanged; d holds nothing in either
    assert diff["servers"] == [
        {"server": "a", "old": {"start_block": 0, "num_blocks": 6}, "new": {"start_block": 0, "num_blocks": 4},
         "blocks_to_load": [], "blocks_to_drop": [[4, 6]], "num_blocks_to_load": 0, "num_blocks_to_drop": 2},
        {"server": "b", "old": {"start_block": 6, "num_blocks": 4}, "new": {"start_block": 4, "num_blocks": 6},
         "blocks_to_load": [[4, 6]], "blocks_to_drop": [], "num_blocks_to_load": 2, "num_blocks_to_drop": 0}]
    assert [c["blocks"] for c in diff["chains_added"]] == [[4, 6]]
    assert [c["blocks"] for c in diff["chains_removed"]] == [[6, 4]]
    assert diff["capacity_changed"] == [{"servers": ["c"], "blocks": [10], "old": 2, "new": 4}]
    p = diff["predicted"]
    assert p["simulated_mean_response_s"]["change"] == pytest.approx(-0.5)
    assert p["simulated_p95_response_s"]["change"] == pytest.approx(-1.0)
    assert p["mean_response_upper_s"]["change"] == pytest.approx(-0.5)
    assert diff["switching_cost"] == {"blocks_to_load": 2, "blocks_to_drop": 2, "servers_changed": 2, "total": 4.0}
    # the reverse swaps loads and drops
    back = api.get(f"{V1}/plans/diff/?old={n}&new={o}").json()
    assert back["servers"][0]["blocks_to_load"] == [[4, 6]] and back["servers"][1]["blocks_to_drop"] == [[4, 6]]
    for bad in ("", "?old=1", f"?new=x&old={o}"):
        r = api.get(f"{V1}/plans/diff/{bad}")
        assert r.status_code == 400, bad
    assert api.get(f"{V1}/plans/diff/?new=999999").status_code == 404


def test_replan_after_a_server_leaves_never_uses_it(api, cluster, small_doc):
    first = replan(api, cluster["id"])
    adopted = Plan.objects.get(pk=first["plans"][0]["id"]).document
    gone = sorted(used_servers(adopted))[0]
    servers = [s for s in api.get(f"{V1}/clusters/{cluster['id']}/").json()["servers"] if s["server_id"] != gone]
    for s in servers:
        s.pop("latest_calibration")
    assert api.patch(f"{V1}/clusters/{cluster['id']}/", {"servers": servers}, format="json").status_code == 200
    job = Job.objects.filter(cluster_id=cluster["id"], trigger="servers").get()
    assert f"removed: {gone}" in job.trigger_detail
    run_queued()
    job = api.get(f"{V1}/jobs/{job.pk}/").json()
    assert job["status"] == "succeeded"
    new = Plan.objects.get(pk=job["plans"][0]["id"]).document
    assert gone not in used_servers(new)
    # the adopted plan used the server that left: the re-plan replaces it whatever the gain
    assert job["replan_outcome"]["adopted"] and "no longer in the cluster" in job["replan_outcome"]["why"]
    apply = api.get(f"{V1}/clusters/{cluster['id']}/apply/").json()
    assert apply["missing_servers"] == [] and all(f"# on {gone}\n" not in c for c in apply["petals_commands"])


def test_calibration_change_past_the_threshold_triggers_a_replan(api, cluster):
    server = Server.objects.get(cluster_id=cluster["id"], server_id="b")     # block_time_s 0.2
    probe_services.calibration_record(server, {"derived": {"block_time_s": 0.5}, "model": {"name": "toy"}})
    assert not Job.objects.filter(trigger="calibration").exists()           # nothing adopted yet
    replan(api, cluster["id"])
    server.refresh_from_db()
    probe_services.calibration_record(server, {"derived": {"block_time_s": 0.52}, "model": {"name": "toy"}})
    assert not Job.objects.filter(trigger="calibration").exists()           # 4 %: under the 20 % threshold
    server.refresh_from_db()
    probe_services.calibration_record(server, {"derived": {"block_time_s": 0.2}, "model": {"name": "toy"}})
    job = Job.objects.get(trigger="calibration")
    assert "server b" in job.trigger_detail and "block_time_s" in job.trigger_detail
    # the re-plan is planned with the new figures
    assert [s for s in job.input_scenario["servers"] if s["id"] == "b"][0]["calibration"]["block_time_s"] == 0.2
    run_queued()
    job.refresh_from_db()
    assert job.status == "succeeded" and job.replan_outcome is not None


def test_observed_load_drift_triggers_once(api, cluster):
    url = f"{V1}/clusters/{cluster['id']}/observed-load/"
    r = api.post(url, {"arrival_rate": 1.0}, format="json").json()
    assert r["replan_job"] is None and r["drift"] == pytest.approx(1.0)     # nothing adopted: no re-plan
    replan(api, cluster["id"])       # planned for the observed 1.0
    r = api.post(url, {"arrival_rate": 1.05, "window_s": 60}, format="json").json()
    assert r["planned_arrival_rate"] == pytest.approx(1.0) and r["replan_job"] is None
    r = api.post(url, {"arrival_rate": 2.0}, format="json").json()
    assert r["replan_job"] is not None and r["drift"] == pytest.approx(1.0)
    # the re-plan for 2.0 is now what the load is compared with: a steady load does not re-plan again
    again = api.post(url, {"arrival_rate": 2.1}, format="json").json()
    assert again["replan_job"] is None and again["planned_arrival_rate"] == pytest.approx(2.0)
    assert Job.objects.filter(trigger="load").count() == 1
    job = Job.objects.get(pk=r["replan_job"])
    assert job.trigger == "load" and job.scenario["workload"]["arrival_rate"] == 2.0
    for bad in ({"arrival_rate": -1}, {"arrival_rate": "x"}, {}, {"arrival_rate": 1, "window_s": "nan"}):
        assert api.post(url, bad, format="json").status_code == 400, bad


def test_replan_settings_validation_and_refusal(api, cluster):
    url = f"{V1}/clusters/{cluster['id']}/"
    r = api.patch(url, {"replan_delta": 0.5, "replan_min_gain": 0.1, "replan_webhook_url": "http://127.0.0.1:9/h",
                        "default_workload": {"arrival_rate": 0.3}}, format="json")
    assert r.status_code == 200 and r.json()["replan_min_gain"] == 0.1
    assert r.json()["default_workload"] == {"arrival_rate": 0.3}
    for bad in ({"replan_delta": -1}, {"replan_min_gain": "x"}, {"replan_webhook_url": "not a url"},
                {"replan_load_threshold": -0.1}, {"default_workload": {"arrival_rate": "x"}}):
        assert api.patch(url, bad, format="json").status_code == 400, bad
    bare = api.post(f"{V1}/clusters/", {"name": "bare", "servers": [{"server_id": "x", "memory_gb": 20, "comm_time_s": 0.1, "block_time_s": 0.1}]},
                    format="json").json()
    r = api.post(f"{V1}/clusters/{bare['id']}/replan/", {}, format="json")
    assert r.status_code == 400 and "no model" in r.json()["detail"]
    assert api.get(f"{V1}/clusters/{bare['id']}/apply/").status_code == 404
    assert api.get(f"{V1}/clusters/{bare['id']}/adopted-plan/").json() == {"plan": None, "adoption": None}


def test_apply_gives_petals_commands_and_the_plan_json(api, cluster):
    first = replan(api, cluster["id"])
    doc = Plan.objects.get(pk=first["plans"][0]["id"]).document
    r = api.get(f"{V1}/clusters/{cluster['id']}/apply/?initial_peers=/ip4/10.0.0.1/tcp/31337/p2p/Qm").json()
    assert r["plan"]["id"] == first["plans"][0]["id"] and r["plan_json"] == doc and r["model_name"] == "toy"
    held = [p for p in doc["placement"] if p["num_blocks"] > 0]
    assert len(r["petals_commands"]) == len(held)
    for p, cmd in zip(held, r["petals_commands"]):
        assert cmd.startswith(f"# on {p['server']}\n")
        assert f"--block_indices {p['start_block']}:{p['start_block'] + p['num_blocks']}" in cmd
        assert "--initial_peers /ip4/10.0.0.1/tcp/31337/p2p/Qm" in cmd
    # one code path for every PETALS command (issue 20): the re-planning page's are the plan page's
    plan_page = api.get(f"{V1}/plans/{first['plans'][0]['id']}/petals-commands/")
    without_peers = api.get(f"{V1}/clusters/{cluster['id']}/apply/").json()["petals_commands"]
    assert plan_page.status_code == 200 and plan_page.json()["commands"] == without_peers


def test_schedules_map_onto_periodic_tasks_and_clean_up(api, cluster, settings):
    url = f"{V1}/clusters/{cluster['id']}/schedules/"
    r = api.post(url, {"kind": "interval", "every": 30, "period": "minutes"}, format="json")
    assert r.status_code == 201, r.content
    sched = r.json()
    task = PeriodicTask.objects.get(replan_schedule__pk=sched["id"])
    assert task.task == "planner_app.replan_scheduled" and task.interval.every == 30 and task.enabled
    assert json.loads(task.kwargs) == {"cluster_id": cluster["id"], "schedule_id": sched["id"]}
    assert sched["description"] == "every 30 minutes"
    r = api.patch(f"{url}{sched['id']}/", {"kind": "cron", "cron": "0 */6 * * 1-5", "enabled": False},
                  format="json")
    assert r.status_code == 200 and r.json()["cron"] == "0 */6 * * 1-5" and r.json()["every"] is None
    task.refresh_from_db()
    assert task.interval is None and task.crontab.hour == "*/6" and not task.enabled
    assert api.get(url).json()[0]["kind"] == "cron"
    for bad in ({"kind": "cron", "cron": "61 * * * *"}, {"kind": "cron", "cron": "* *"},
                {"kind": "interval", "every": 5, "period": "seconds"}, {"kind": "interval"}, {"kind": "weekly"}):
        assert api.post(url, bad, format="json").status_code == 400, bad
    assert api.get(f"{url}999999/").status_code == 404
    assert api.delete(f"{url}{sched['id']}/").status_code == 204
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()
    # deleting the periodic task (admin) drops the schedule; deleting the cluster drops its tasks
    one = api.post(url, {"kind": "interval", "every": 1, "period": "hours"}, format="json").json()
    PeriodicTask.objects.get(replan_schedule__pk=one["id"]).delete()
    assert not ReplanSchedule.objects.filter(pk=one["id"]).exists()
    two = api.post(url, {"kind": "interval", "every": 1, "period": "hours"}, format="json").json()
    task_id = ReplanSchedule.objects.get(pk=two["id"]).periodic_task_id
    assert api.delete(f"{V1}/clusters/{cluster['id']}/").status_code == 204
    assert not PeriodicTask.objects.filter(pk=task_id).exists()


def test_scheduled_task_body_queues_a_replan_that_says_why(api, cluster):
    sched = api.post(f"{V1}/clusters/{cluster['id']}/schedules/", {"kind": "cron", "cron": "*/5 * * * *"},
                     format="json").json()
    job_id = services.replan_scheduled(cluster["id"], sched["id"])
    job = Job.objects.get(pk=job_id)
    assert job.trigger == "schedule" and f"schedule {sched['id']}: cron */5 * * * *" == job.trigger_detail
    assert services.replan_scheduled(cluster["id"], sched["id"]) == job_id    # still queued: not doubled




def test_webhook_gets_the_diff_and_failures_are_recorded(api, cluster, hook, settings):
    settings.REPLAN_WEBHOOK_ALLOW_PRIVATE = True        # the test's hook listens on 127.0.0.1
    url, received = hook
    api.patch(f"{V1}/clusters/{cluster['id']}/", {"replan_webhook_url": url}, format="json")
    first = replan(api, cluster["id"])
    adoption = PlanAdoption.objects.get(cluster_id=cluster["id"])
    assert services.adoption_notify(adoption.pk) == "ok"
    assert len(received) == 1 and received[0]["event"] == "plan.adopted"
    assert received[0]["plan"] == first["plans"][0]["id"] and received[0]["diff"]["servers"]
    adoption.refresh_from_db()
    assert adoption.webhook_status == 204 and adoption.webhook_error == ""
    # an unreachable hook is recorded on the adoption, never raised
    settings.REPLAN_WEBHOOK_TIMEOUT_S = 1
    Cluster.objects.filter(pk=cluster["id"]).update(replan_webhook_url="http://127.0.0.1:9/none")
    assert services.adoption_notify(adoption.pk) != "ok"
    history = api.get(f"{V1}/clusters/{cluster['id']}/adoptions/").json()["results"]
    assert history[0]["webhook_status"] is None and "Connection" in history[0]["webhook_error"]


def test_webhook_to_a_private_address_is_refused_by_default(api, cluster, hook, settings):
    settings.REPLAN_WEBHOOK_ALLOW_PRIVATE = False
    url, received = hook
    api.patch(f"{V1}/clusters/{cluster['id']}/", {"replan_webhook_url": url}, format="json")
    replan(api, cluster["id"])
    adoption = PlanAdoption.objects.get(cluster_id=cluster["id"])
    outcome = services.adoption_notify(adoption.pk)
    assert outcome.startswith("refused: 127.0.0.1 resolves to 127.0.0.1")
    assert received == []                             # nothing was sent
    adoption.refresh_from_db()
    assert adoption.webhook_status is None and adoption.webhook_error.startswith("refused:")


def test_a_replan_is_judged_by_the_bound_it_was_chosen_by(api, cluster):
    """c is chosen by the lower bound (solvers.switching.replan), so the gain uses the lower bound too."""
    from solvers.bounds import response_time_bounds
    from solvers.topology import make_chain

    job = replan(api, cluster["id"])
    assert job["status"] == "succeeded", job
    plan = Plan.objects.get(pk=job["plans"][0]["id"])
    scenario = parse_scenario_document(job["scenario"], "")
    index = {s.id: j for j, s in enumerate(scenario.servers)}
    chains = [make_chain(scenario, [(index[sid], int(m)) for sid, m in zip(ch["servers"], ch["blocks"])],
                         int(ch["capacity"])) for ch in plan.document["chains"]]
    bounds = response_time_bounds(chains, scenario.workload.arrival_rate)
    assert bounds.stable and bounds.lower_s < bounds.upper_s
    judged = services.replan_gain(None, plan.document, scenario)
    assert judged["predicted_new_s"] == pytest.approx(bounds.lower_s)
    assert judged["predicted_new_s"] == pytest.approx(plan.document["bounds"]["response_time_lower_s"])


def test_a_schedule_tick_with_unchanged_input_adds_no_second_candidate(api, cluster):
    replan(api, cluster["id"])                                   # nothing adopted yet: adopted whatever the gain
    sched = api.post(f"{V1}/clusters/{cluster['id']}/schedules/", {"kind": "interval", "every": 1, "period": "hours"},
                     format="json").json()
    first = services.replan_scheduled(cluster["id"], sched["id"])
    run_queued()
    assert Job.objects.get(pk=first).status == "succeeded"
    jobs = Job.objects.count()
    assert services.replan_scheduled(cluster["id"], sched["id"]) == first     # same input: the same answer
    assert Job.objects.count() == jobs
    # a different arrival rate is a different input
    services.observed_load_record(Cluster.objects.get(pk=cluster["id"]), 0.05, None)
    run_queued()
    assert services.replan_scheduled(cluster["id"], sched["id"]) != first


def test_candidates_say_which_workload_they_were_planned_for(api, cluster):
    """Candidates for different arrival rates are told apart (and from the adopted plan's load)."""
    url = f"{V1}/clusters/{cluster['id']}/candidates/"
    replan(api, cluster["id"])                                   # adopted: the first re-plan
    Cluster.objects.filter(pk=cluster["id"]).update(replan_min_gain=10.0)   # later ones stay candidates
    same = replan(api, cluster["id"])
    Cluster.objects.filter(pk=cluster["id"]).update(observed_arrival_rate=0.05)
    other = replan(api, cluster["id"])
    rows = {p["job"]: p for p in api.get(url).json()["results"]}
    assert rows[same["id"]]["workload"]["arrival_rate"] == pytest.approx(cluster["default_workload"]["arrival_rate"])
    assert rows[other["id"]]["workload"]["arrival_rate"] == pytest.approx(0.05)
    assert rows[same["id"]]["workload"]["trace_requests"] is None
    assert rows[same["id"]]["workload"]["digest"] != rows[other["id"]]["workload"]["digest"]
    assert rows[same["id"]]["same_workload_as_adopted"] is True
    assert rows[other["id"]]["same_workload_as_adopted"] is False
    # with nothing adopted, there is nothing to compare with
    Cluster.objects.filter(pk=cluster["id"]).update(adopted_plan=None)
    assert {p["same_workload_as_adopted"] for p in api.get(url).json()["results"]} == {None}


def test_adopting_a_plan_of_no_cluster_is_a_documented_400(api, small_doc):
    """Schemathesis found the 400 for a plan of an inline scenario missing from the schema."""
    job = api.post(f"{V1}/jobs/", {"scenario": small_doc, "algorithms": ["proposed"],
                                   "options": {"simulate_requests": 200}}, format="json").json()
    run_queued()
    plan = api.get(f"{V1}/jobs/{job['id']}/").json()["plans"][0]["id"]
    r = api.post(f"{V1}/plans/{plan}/adopt/")
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "plan"
    schema = api.get(f"{V1}/schema/?format=json").json()
    assert "400" in schema["paths"]["/api/v1/plans/{id}/adopt/"]["post"]["responses"]
