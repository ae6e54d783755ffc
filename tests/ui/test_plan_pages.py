"""Plan and compare pages in a real browser (see conftest.py): the explanation panel, bounds shown only
where they apply, overload flagged, the physical limit, log scale and confidence intervals on the
compare charts.  The plans come from a real job run by the stack's worker.
"""

from __future__ import annotations

import uuid

import pytest
expect = pytest.importorskip("playwright.sync_api").expect

from .conftest import PASSWORD, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(600)]

# At 8 requests/s PETALS' per-request routing is overloaded (its simulated mean is tens of seconds)
# while the search plan answers in well under a second: the compare chart must go to a log axis.
# tiny-0 cannot hold one block, so the explanation has an unused server to explain.
SPREAD = {
    "name": "spread",
    "model": {"name": "toy-24", "num_blocks": 24, "block_size_gb": 1.0, "cache_size_gb": 0.05},
    "servers": [
        {"id": "big-0", "memory_gb": 30, "comm_time_s": 0.1, "block_time_s": 0.02},
        {"id": "big-1", "memory_gb": 30, "comm_time_s": 0.1, "block_time_s": 0.02},
        {"id": "mid-0", "memory_gb": 14, "comm_time_s": 0.3, "block_time_s": 0.05},
        {"id": "mid-1", "memory_gb": 14, "comm_time_s": 0.3, "block_time_s": 0.05},
        {"id": "tiny-0", "memory_gb": 0.5, "comm_time_s": 0.3, "block_time_s": 0.05},
        {"id": "slow-0", "memory_gb": 14, "comm_time_s": 2.0, "block_time_s": 0.3},
    ],
    "workload": {"arrival_rate": 8.0},
}


@pytest.fixture(scope="module")
def spread_user(ui_stack) -> str:
    name = f"ui-{uuid.uuid4().hex[:8]}"
    ui_stack.manage("create_api_user", name, "--password", PASSWORD)
    return name


@pytest.fixture(scope="module")
def spread_job(ui_stack, spread_user):
    """One job of three algorithms on SPREAD, shared by the tests of this module (one user)."""
    api = ui_stack.client(spread_user)
    job = api.post("/api/v1/jobs/", json={"scenario": SPREAD, "algorithms": ["search", "petals", "random"],
                                          "options": {"simulate_requests": 3000, "seed": 1}})
    assert job.status_code == 201, job.text
    done = api.wait_job(job.json()["id"], timeout=240)
    assert done["status"] == "succeeded", done
    plans = {p["algorithm"]: api.get(f"/api/v1/plans/{p['id']}/").json() for p in done["plans"]}
    return done, plans


def test_plan_explains_itself(page, spread_user, spread_job):
    user = spread_user
    job, plans = spread_job
    search = plans["search"]
    doc = search["document"]
    page.goto(f"/plans/{search['id']}")
    sign_in(page, user)
    panel = page.get_by_test_id("explanation")
    panel.wait_for()

    # the summary sentences, in words, next to the diagram
    summary = panel.get_by_test_id("explanation-summary").locator("li")
    expect(summary).to_have_count(len(doc["explanation"]["summary"]))
    expect(summary.first).to_have_text(doc["explanation"]["summary"][0])
    # what binds each server that holds blocks
    servers = panel.get_by_test_id("explanation-servers").locator("li")
    expect(servers).to_have_count(len(doc["explanation"]["servers"]))
    labels = {"memory-blocks": "memory for blocks", "memory-cache": "memory for KV cache",
              "communication": "communication", "compute": "compute", "unused": "no chain uses it"}
    for i, row in enumerate(doc["explanation"]["servers"]):
        expect(servers.nth(i)).to_contain_text(row["server"])
        expect(servers.nth(i)).to_contain_text(labels[row["binding"]])
    # why the unused servers are unused: tiny-0 cannot hold one block
    unused = panel.get_by_test_id("explanation-unused")
    expect(unused.locator("li", has_text="tiny-0")).to_contain_text("too small")
    # why this c: the neighbouring values, the chosen one marked
    c = doc["explanation"]["c_choice"]["c"]
    expect(panel.get_by_test_id("c-neighbours").locator("tr.selected")).to_contain_text(f"{c} (chosen)")
    # the bounds apply to the search plan (JFFC over its chains, Poisson arrivals): shown
    assert doc["bounds"]["applies"] is True
    expect(panel.get_by_test_id("bounds-applies")).to_be_visible()
    assert panel.get_by_test_id("bounds-why-not").count() == 0
    # the physical limit and this plan's ratio to it
    expect(panel.get_by_test_id("physical-limit")).to_contain_text("No plan on these servers can answer faster than")
    expect(panel.get_by_test_id("physical-limit")).to_contain_text("× that")
    # the simulated mean carries its confidence interval
    expect(page.get_by_test_id("simulated-mean")).to_contain_text("±")
    assert page.get_by_test_id("overloaded").count() == 0
    shot(page, "18-plan-explanation")

    # PETALS at this rate: overloaded and flagged; its bounds do not apply, and the page says why
    petals = plans["petals"]
    assert petals["document"]["overloaded"] is True and petals["document"]["bounds"]["applies"] is False
    page.goto(f"/plans/{petals['id']}")
    expect(page.get_by_test_id("overloaded")).to_contain_text("Overloaded")
    why = page.get_by_test_id("bounds-why-not")
    expect(why).to_contain_text(petals["document"]["bounds"]["why_not"].split(":")[0])
    assert page.get_by_test_id("bounds-applies").count() == 0
    expect(page.get_by_test_id("plan-stats")).to_contain_text("do not apply")
    shot(page, "19-plan-overloaded")

    # chains dispatched at random: the JFFC bounds describe them not, so no bounds curve either
    rnd = plans["random"]
    assert rnd["document"]["chains"] and rnd["document"]["bounds"]["applies"] is False
    page.goto(f"/plans/{rnd['id']}")
    expect(page.get_by_test_id("curve-why-not")).to_contain_text("not JFFC")
    assert page.get_by_test_id("curve-chart").count() == 0
    expect(page.get_by_test_id("bounds-why-not")).to_contain_text("not JFFC")


def test_compare_log_scale_and_confidence_intervals(page, spread_user, spread_job):
    user = spread_user
    job, plans = spread_job
    means = [p["document"]["simulation"]["mean_response_s"] for p in plans.values()]
    assert max(means) / min(means) > 10            # the premise of the log axis
    page.goto(f"/jobs/{job['id']}/compare")
    sign_in(page, user)
    table = page.get_by_test_id("compare-table")
    table.wait_for()
    # the response-time chart goes to a log axis and says so; the capacity chart stays linear
    response = page.get_by_test_id("compare-response")
    response.locator("canvas").wait_for()
    expect(response).to_have_attribute("data-scale", "log")
    expect(page.get_by_text("Log scale: the values span more than 10×").first).to_be_visible()
    # confidence intervals of the simulated means in the table; the overloaded plan is flagged,
    # and its bounds (which do not apply) are not shown
    petals_row = table.locator("tbody tr", has_text="petals")
    expect(petals_row).to_contain_text("overloaded")
    expect(petals_row).to_contain_text("n/a")
    search_row = table.locator("tbody tr", has_text="search")
    expect(search_row).to_contain_text("±")
    # one 95 % whisker drawn on each simulated mean bar
    with_ci = sum(1 for p in plans.values() if p["feasible"] and p["document"]["simulation"].get("response_ci95_s"))
    assert with_ci == 3
    expect(response.locator("canvas")).to_have_attribute("data-whiskers", str(with_ci))
    shot(page, "20-compare-log-scale")


def huge_scenario(n: int = 20_000) -> dict:
    """n servers of four kinds (80, 40, 24 and 16 GB) for an 80-block model: most of them end up unused."""
    kinds = [(80, 0.05, 0.01), (40, 0.1, 0.02), (24, 0.2, 0.03), (16, 0.3, 0.05)]
    servers = [{"id": f"g{i % 4}-{i:05d}", "memory_gb": kinds[i % 4][0], "comm_time_s": kinds[i % 4][1],
                "block_time_s": kinds[i % 4][2]} for i in range(n)]
    return {"name": "huge", "model": {"name": "toy-80", "num_blocks": 80, "block_size_gb": 1.0, "cache_size_gb": 0.05},
            "servers": servers, "workload": {"arrival_rate": 50.0}}


def test_a_20000_server_plan_is_summarised(page, user, ui_stack):
    api = ui_stack.client(user)
    scenario = huge_scenario()
    job = api.post("/api/v1/jobs/", json={"scenario": scenario, "algorithms": ["proposed"],
                                          "options": {"simulate_requests": 500}})
    assert job.status_code == 201, job.text
    done = api.wait_job(job.json()["id"], timeout=300)
    assert done["status"] == "succeeded", done
    plan = api.get(f"/api/v1/plans/{done['plans'][0]['id']}/").json()
    doc = plan["document"]

    page.goto(f"/plans/{plan['id']}")
    sign_in(page, user)
    groups = page.get_by_test_id("server-groups")
    groups.wait_for(timeout=60_000)
    # no diagram row per server: groups of identical servers, paged
    assert page.locator("g.placement-row").count() == 0
    rows = groups.locator("tbody tr")
    assert 0 < rows.count() <= 50
    expect(page.get_by_test_id("server-groups-summary")).to_contain_text("20,000 servers in")
    used = sum(1 for p in doc["placement"] if p["num_blocks"] > 0)
    expect(page.get_by_test_id("server-groups-summary")).to_contain_text(f"{used:,} hold blocks")
    # the groups on all pages add up to every server
    total = 0
    while True:
        total += sum(int(n) for n in rows.evaluate_all("els => els.map(e => e.dataset.count)"))
        nxt = page.get_by_role("navigation", name="Pages of server groups").get_by_role("button", name="Next →")
        if nxt.count() == 0 or nxt.is_disabled():
            break
        first = rows.first.inner_text()
        nxt.click()
        expect(rows.first).not_to_have_text(first)
    assert total == len(scenario["servers"])
    # the page stays small: far fewer elements than servers, and the explanation lists are paged too
    assert page.evaluate("document.querySelectorAll('*').length") < 6000
    assert page.get_by_test_id("explanation-unused").locator("li").count() <= 25
    shot(page, "24-plan-20000-servers", full_page=False)
