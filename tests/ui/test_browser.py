"""The web UI in a real browser against a real server and worker (see conftest.py).

Sign in, create a cluster from the example scenario, plan it, watch the job,
read the plan (placement diagram rows, chains, memory), export JSON, compare
the algorithms, shareable URLs with back/forward, lists with filters, the
model form's live derived sizes, and keyboard use.  Any browser console error
fails the test that produced it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
expect = pytest.importorskip("playwright.sync_api").expect

from .conftest import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "two-tier-europe.json"
DEMO = ROOT / "examples" / "paper-j20.json"
JOB_TIMEOUT_MS = 180_000


def wait_job_finished(page) -> str:
    final = page.locator("[data-testid=job-final]")
    final.wait_for(timeout=JOB_TIMEOUT_MS)
    return final.inner_text()


def test_sign_in_redirects_back_and_offers_the_demo(page, user):
    page.goto("/clusters")
    page.wait_for_url(re.compile(r"/login\?next=%2Fclusters$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, "01-sign-in", full_page=False)

    sign_in(page, user)
    page.wait_for_url(re.compile(r"/clusters$"))
    expect(page.get_by_role("heading", name="No clusters yet")).to_be_visible()
    expect(page.get_by_role("button", name="Plan the demo scenario")).to_be_visible()

    page.get_by_role("link", name="chainplan home").click()
    page.wait_for_url(re.compile(r"/$"))
    page.get_by_role("heading", name="Welcome to chainplan").wait_for()
    shot(page, "02-empty-state")

    # the demo: one click plans the paper's 20-server scenario
    page.get_by_role("button", name="Plan the demo scenario").first.click()
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    assert "Finished" in wait_job_finished(page)
    page.get_by_role("link", name="Open the search plan").click()
    diagram = page.locator("[data-testid=placement-diagram]")
    diagram.wait_for()
    demo = json.loads(DEMO.read_text())
    rows = diagram.locator("g.placement-row").evaluate_all("els => els.map(e => e.dataset.server)")
    assert rows == [s["id"] for s in demo["servers"]]
    page.locator("[data-testid=curve-chart] canvas").wait_for()
    shot(page, "02b-demo-plan")

    # the session survives a reload; signing out returns to the sign-in page
    page.reload()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for()


def test_cluster_from_example_plan_compare_export(page, user, tmp_path):
    scenario = json.loads(EXAMPLE.read_text())
    page.goto("/clusters")
    sign_in(page, user)
    page.wait_for_url(re.compile(r"/clusters$"))

    # create a cluster (and its model) from the example scenario
    page.set_input_files("[data-testid=import-scenario]", str(EXAMPLE))
    page.wait_for_url(re.compile(r"/clusters/\d+$"))
    cluster_id = int(page.url.rsplit("/", 1)[1])
    rows = page.locator("[data-testid=servers-table] tbody tr")
    rows.first.wait_for()
    assert rows.count() == len(scenario["servers"])
    ids = [rows.nth(i).locator("input.cell-input.id").input_value() for i in range(rows.count())]
    assert ids == [s["id"] for s in scenario["servers"]]

    # a validation message appears next to the field it concerns, and is announced with it
    memory = page.get_by_label(f"Memory (GB) of {ids[0]}")
    memory.fill("-5")
    expect(memory).to_have_attribute("aria-invalid", "true")
    message = page.locator(f"#{memory.get_attribute('aria-describedby')}")
    expect(message).to_have_text("must be > 0")
    memory.fill(str(scenario["servers"][0]["memory_gb"]))
    expect(memory).not_to_have_attribute("aria-invalid", "true")

    # as given, the example's 60 GB cannot hold 70 blocks of 1.32 GB: the job fails with a readable reason
    page.get_by_role("link", name="Plan this cluster").click()
    page.get_by_role("button", name="Submit plan").click()
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    failed_job_id = int(page.url.rsplit("/", 1)[1])
    reason = wait_job_finished(page)
    assert "The job failed" in reason and "70 blocks" in reason
    shot(page, "05-job-failed", full_page=False)

    # so give both servers 80 GB with a bulk edit, and save
    page.goto(f"/clusters/{cluster_id}")
    rows.first.wait_for()
    page.get_by_label("Select all servers").check()
    page.get_by_text("Bulk edit the selected servers (2)").click()
    page.get_by_label("Field", exact=True).select_option("memory_gb")
    page.get_by_label("Change", exact=True).select_option("set")
    page.get_by_label("Value", exact=True).fill("80")
    page.get_by_role("button", name="Apply").click()
    for server_id in ids:
        expect(page.get_by_label(f"Memory (GB) of {server_id}")).to_have_value("80")
    page.get_by_text("unsaved changes").wait_for()
    shot(page, "03-cluster-editor", full_page=False)
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_text("Saved.").wait_for()
    assert page.get_by_text("unsaved changes").count() == 0

    # plan it with three algorithms
    page.get_by_role("link", name="Plan this cluster").click()
    page.wait_for_url(re.compile(rf"/jobs/new\?cluster={cluster_id}$"))
    page.get_by_role("button", name="Submit plan").wait_for()
    assert page.get_by_label("Cluster", exact=True).input_value() == str(cluster_id)
    assert page.get_by_label("Model", exact=True).input_value() != ""
    assert page.get_by_label("Arrival rate (requests/s)").input_value() == str(scenario["workload"]["arrival_rate"])
    assert page.locator("input[name=algorithms][value=search]").is_checked()
    page.locator("input[name=algorithms][value=petals]").check()
    page.locator("input[name=algorithms][value=bprr]").check()
    shot(page, "04-new-plan")
    page.get_by_role("button", name="Submit plan").click()

    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    page.get_by_role("heading", name=re.compile(rf"Job #{job_id}")).wait_for()
    shot(page, "06-job-submitted", full_page=False)
    assert "Finished" in wait_job_finished(page)
    plan_rows = page.locator("[data-testid=plans-table] tbody tr")
    expect(plan_rows).to_have_count(3)
    shot(page, "07-job-finished")

    # the plan view: one placement row per server of the scenario
    page.get_by_role("link", name="Open the search plan").click()
    page.wait_for_url(re.compile(r"/plans/\d+$"))
    plan_url = page.url
    diagram = page.locator("[data-testid=placement-diagram]")
    diagram.wait_for()
    servers_in_rows = diagram.locator("g.placement-row").evaluate_all("els => els.map(e => e.dataset.server)")
    assert servers_in_rows == [s["id"] for s in scenario["servers"]]
    assert page.locator("[data-testid=chains-table] tbody tr").count() >= 1
    page.locator("[data-testid=memory-chart] canvas").wait_for()
    page.locator("[data-testid=distribution-chart] canvas").wait_for()
    page.locator("[data-testid=curve-chart] canvas").wait_for()
    shot(page, "08-plan")

    # export JSON: the plan document
    with page.expect_download() as download:
        page.get_by_test_id("export-json").click()
    doc = json.loads(Path(download.value.path()).read_text())
    assert doc["algorithm"] == "search" and doc["feasible"] is True
    assert {p["server"] for p in doc["placement"]} <= {s["id"] for s in scenario["servers"]}
    for chain in doc["chains"]:
        assert sum(chain["blocks"]) == scenario["model"]["num_blocks"]
    used = diagram.locator("g.placement-row:not(.unused)").evaluate_all("els => els.map(e => e.dataset.server)")
    assert sorted(used) == sorted(p["server"] for p in doc["placement"] if p["num_blocks"] > 0)

    # PETALS launch commands, one per server that holds blocks
    page.get_by_role("button", name="PETALS launch commands").click()
    commands = page.locator("pre.commands")
    commands.wait_for()
    assert "petals" in commands.inner_text()

    # compare the algorithms side by side
    page.get_by_role("link", name="Compare algorithms").click()
    page.wait_for_url(re.compile(rf"/jobs/{job_id}/compare\?plan=\d+$"))
    table = page.locator("[data-testid=compare-table]")
    table.wait_for()
    expect(table.locator("tbody tr")).to_have_count(3)
    for chart in ("compare-response", "compare-split", "compare-capacity", "compare-solve", "curve-chart"):
        page.locator(f"[data-testid={chart}] canvas").wait_for()
    shot(page, "09-compare")

    # shareable URLs: back and forward work, and a URL opened afresh shows the same page
    compare_url = page.url
    page.go_back()
    page.wait_for_url(plan_url)
    diagram.wait_for()
    page.go_forward()
    page.wait_for_url(compare_url)
    table.wait_for()
    page.goto(compare_url)
    table.wait_for()

    # the jobs list with filters (in the URL) and the job in it
    page.goto("/jobs?status=succeeded")
    jobs = page.locator("[data-testid=jobs-table]")
    jobs.wait_for()
    expect(jobs.get_by_role("link", name=f"#{job_id}", exact=True)).to_be_visible()
    assert jobs.get_by_role("link", name=f"#{failed_job_id}", exact=True).count() == 0
    assert page.get_by_label("Status").input_value() == "succeeded"
    shot(page, "10-jobs")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r"/jobs\?status=failed$"))
    jobs.get_by_role("link", name=f"#{failed_job_id}", exact=True).wait_for()
    assert jobs.get_by_role("link", name=f"#{job_id}", exact=True).count() == 0
    page.get_by_label("Status").select_option("cancelled")
    page.get_by_role("button", name="Apply filters").click()
    page.get_by_text("No jobs match these filters.").wait_for()
    page.go_back()
    page.wait_for_url(re.compile(r"/jobs\?status=failed$"))
    page.go_back()
    page.wait_for_url(re.compile(r"/jobs\?status=succeeded$"))
    jobs.get_by_role("link", name=f"#{job_id}", exact=True).wait_for()


def test_placement_rows_for_a_larger_cluster(page, user, tmp_path):
    servers = [{"id": f"gpu-{i:02d}", "memory_gb": 10 + 2 * (i % 4), "comm_time_s": 0.2 + 0.05 * (i % 5),
                "block_time_s": 0.05 + 0.01 * (i % 3)} for i in range(12)]
    doc = {"name": "twelve", "model": {"name": "toy-24", "num_blocks": 24, "block_size_gb": 1.0, "cache_size_gb": 0.05},
           "servers": servers, "workload": {"arrival_rate": 1.0, "target_load": 0.7}}
    path = tmp_path / "twelve.json"
    path.write_text(json.dumps(doc))

    page.goto("/clusters")
    sign_in(page, user)
    page.set_input_files("[data-testid=import-scenario]", str(path))
    page.wait_for_url(re.compile(r"/clusters/\d+$"))
    expect(page.locator("[data-testid=servers-table] tbody tr")).to_have_count(12)
    page.get_by_role("link", name="Plan this cluster").click()
    page.get_by_role("button", name="Submit plan").click()
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    assert "Finished" in wait_job_finished(page)
    page.get_by_role("link", name="Open the search plan").click()
    diagram = page.locator("[data-testid=placement-diagram]")
    diagram.wait_for()
    expect(diagram.locator("g.placement-row")).to_have_count(12)
    # every chain colour appears in the legend, one button per chain
    chains = page.locator("[data-testid=chains-table] tbody tr").count()
    assert page.get_by_role("group", name=re.compile("Chains")).get_by_role("button", name=re.compile(r"^Chain \d+$")).count() == chains
    shot(page, "11-plan-twelve-servers")


def test_model_form_derives_sizes_as_you_type(page, user):
    page.goto("/models/new")
    sign_in(page, user)
    page.wait_for_url(re.compile(r"/models/new$"))
    page.get_by_label("Name").fill("my-llama-2-7b")
    page.get_by_label("Hidden size").fill("4096")
    page.get_by_label("Layers (blocks)").fill("32")
    page.get_by_label("Attention heads").fill("32")
    page.get_by_label("FFN size").fill("11008")
    page.get_by_label("Gated FFN (SwiGLU: three FFN matrices)").check()
    page.get_by_label("Max sequence length").fill("4096")
    derived = page.get_by_test_id("derived-sizes")
    # 202,375,168 parameters per block in fp16 and 2*32*128*4096*2 bytes of KV (solvers/calibration.py)
    derived.get_by_text("0.405 GB").wait_for()
    derived.get_by_text("0.0671 GB").wait_for()
    page.get_by_text("The server derives the same sizes.").wait_for()
    shot(page, "12-model-editor", full_page=False)
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(re.compile(r"/models/\d+$"))
    page.goto("/models")
    page.get_by_role("link", name="my-llama-2-7b").wait_for()
    page.get_by_role("heading", name="Presets").wait_for()
    shot(page, "13-models")


def test_keyboard_only_navigation(page, user):
    page.goto("/clusters")
    page.get_by_label("User name").focus()
    page.keyboard.type(user)
    page.keyboard.press("Tab")
    page.keyboard.type("ui-test-pw-1")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/clusters$"))
    page.get_by_role("heading", name="Clusters", exact=True).wait_for()
    # after signing in, focus is on the page's heading
    page.wait_for_function("document.activeElement && document.activeElement.id === 'page-title'")

    # on a freshly loaded page the first Tab reaches the skip link, then the main navigation
    page.reload()
    page.get_by_role("heading", name="Clusters", exact=True).wait_for()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Models":
            break
    else:
        pytest.fail("the Models link is not reachable with Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/models$"))
    # focus moves to the new page's heading, so screen readers announce it
    page.wait_for_function("document.activeElement && document.activeElement.id === 'page-title'")
    assert page.evaluate("document.activeElement.textContent") == "Models"


def test_live_progress_and_cancel(page, user, tmp_path):
    # a job made long on purpose: five algorithms, each simulating two million requests
    servers = [{"id": f"n-{i}", "memory_gb": 16, "comm_time_s": 0.3, "block_time_s": 0.06} for i in range(8)]
    doc = {"name": "long", "model": {"name": "toy-24", "num_blocks": 24, "block_size_gb": 1.0, "cache_size_gb": 0.05},
           "servers": servers, "workload": {"arrival_rate": 2.0, "target_load": 0.7}}
    path = tmp_path / "long.json"
    path.write_text(json.dumps(doc))
    page.goto("/clusters")
    sign_in(page, user)
    page.set_input_files("[data-testid=import-scenario]", str(path))
    page.wait_for_url(re.compile(r"/clusters/\d+$"))
    page.get_by_role("link", name="Plan this cluster").click()
    for name in ("jsq", "jiq", "sed", "random"):
        page.locator(f"input[name=algorithms][value={name}]").check()
    page.get_by_text("Options").click()
    page.get_by_label("Simulated requests").fill("2000000")
    page.get_by_role("button", name="Submit plan").click()
    page.wait_for_url(re.compile(r"/jobs/\d+$"))

    # live progress while it runs, then cancel
    progress = page.get_by_test_id("job-progress")
    progress.wait_for()
    page.locator("label.progress-label", has_text=re.compile(r"^Running")).wait_for(timeout=60_000)
    expect(page.get_by_role("heading", name=re.compile("Job #"))).to_contain_text("running")
    pending = page.get_by_test_id("pending-algorithms")
    expect(pending).to_contain_text("still to come")
    expect(pending.locator("li", has_text="random")).to_be_visible()
    shot(page, "06b-job-running", full_page=False)

    # plans appear as each algorithm finishes, while the job still runs; the pending list shrinks
    rows = page.locator("[data-testid=plans-table] tbody tr")
    rows.first.wait_for(timeout=150_000)
    expect(page.get_by_role("heading", name=re.compile("Job #"))).to_contain_text("running")
    expect(page.get_by_role("heading", name="Plans so far")).to_be_visible()
    finished = rows.first.locator("th").inner_text()
    expect(pending.locator("li", has_text=re.compile(rf"^{re.escape(finished)}( \(running\))?$"))).to_have_count(0)
    shot(page, "06c-job-partial-plans", full_page=False)
    page.get_by_role("button", name="Cancel job").click()
    final = page.get_by_test_id("job-final")
    final.wait_for(timeout=60_000)
    expect(final).to_contain_text("cancelled")
    assert page.get_by_role("button", name="Cancel job").count() == 0


def test_adopt_a_plan_see_the_diff_and_the_apply_commands(page, user, ui_stack, tmp_path):
    from tests.service.conftest import SMALL
    api = ui_stack.client(user)
    cluster = api.post("/api/v1/clusters/import/", json={"scenario": SMALL}).json()
    job = api.post("/api/v1/jobs/", json={"cluster": cluster["id"], "algorithms": ["proposed", "whole-model"],
                                          "options": {"simulate_requests": 500}}).json()
    plans = api.wait_job(job["id"], timeout=120)["plans"]
    first, second = plans[0]["id"], plans[1]["id"]

    page.goto(f"/clusters/{cluster['id']}")
    sign_in(page, user)
    panel = page.locator("[data-testid=replanning]")
    expect(panel.get_by_text("No plan is adopted yet")).to_be_visible()
    panel.get_by_role("button", name=f"Adopt plan {first}").click()
    expect(panel.get_by_text(f"Plan #{first} is now the adopted plan.")).to_be_visible()
    panel.get_by_role("button", name=f"Adopt plan {second}").click()
    expect(panel.get_by_text(f"Plan #{second} is now the adopted plan.")).to_be_visible()
    history = panel.locator("[data-testid=adoptions-table] tbody tr")
    expect(history).to_have_count(2)
    expect(history.first).to_contain_text(user)
    # candidates are grouped by the load they were planned for: a plan for another rate stands apart
    other = api.post("/api/v1/jobs/", json={"cluster": cluster["id"], "algorithms": ["proposed"],
                                            "workload": {"arrival_rate": 0.1}, "options": {"simulate_requests": 500}})
    assert other.status_code == 201, other.text
    assert api.wait_job(other.json()["id"], timeout=120)["status"] == "succeeded"
    page.reload()
    groups = panel.locator("[data-testid=candidate-group]")
    expect(groups).to_have_count(2)
    expect(groups.nth(0).locator("h4")).to_have_text("Planned for 0.5 requests/s — the adopted plan's load")
    expect(groups.nth(0)).to_contain_text(f"#{first}")
    expect(groups.nth(1).locator("h4")).to_contain_text("Planned for 0.1 requests/s — not the adopted plan's load")
    # by link target, not text: a job's number can equal the plan's
    expect(groups.nth(1).locator(f"a[href='/plans/{first}']")).to_have_count(0)
    expect(groups.nth(0).locator(f"a[href='/plans/{first}']")).to_have_count(1)
    # a schedule, added and shown
    panel.get_by_role("button", name="Add schedule").click()
    panel.get_by_label("Kind").select_option("cron")
    panel.get_by_label("Cron (UTC)").fill("0 */6 * * *")
    panel.get_by_role("button", name="Save schedule").click()
    expect(panel.locator("[data-testid=schedules]")).to_contain_text("cron 0 */6 * * *")
    shot(page, "14-replanning")

    panel.get_by_role("link", name="What changed").click()
    page.wait_for_url(re.compile(rf"/plans/{second}/diff/{first}$"))
    rows = page.locator("[data-testid=diff-servers] tbody tr")
    expect(rows.first).to_be_visible()
    diff = api.get(f"/api/v1/plans/diff/?old={first}&new={second}").json()
    assert rows.count() == len(diff["servers"]) > 0
    expect(rows.first).to_contain_text(diff["servers"][0]["server"])
    expect(page.locator("[data-testid=diff-predicted]")).to_contain_text("Simulated p95")
    shot(page, "15-plan-diff")

    page.goto(f"/clusters/{cluster['id']}/apply")
    commands = page.locator("[data-testid=apply-commands]")
    expect(commands).to_contain_text("--block_indices")
    expected = api.get(f"/api/v1/clusters/{cluster['id']}/apply/").json()["petals_commands"]
    assert commands.inner_text().strip() == "\n".join(expected)
    with page.expect_download() as download:
        page.locator("[data-testid=apply-json]").click()
    path = tmp_path / "plan.json"
    download.value.save_as(path)
    assert json.loads(path.read_text())["placement"] == api.get(f"/api/v1/plans/{second}/").json()["document"]["placement"]
    shot(page, "16-apply")
