"""Mobile navigation at 390x844 and the health banner, in a real browser (see conftest.py).

The health test kills the stack's real Celery worker (SIGKILL, as a crash would) and starts a new
one at the end, so the tests after it find a working stack again.
"""

from __future__ import annotations

import re
import time

import pytest
expect = pytest.importorskip("playwright.sync_api").expect

from .conftest import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(600)]

SMALL = {
    "name": "small",
    "model": {"name": "toy-12", "num_blocks": 12, "block_size_gb": 1.0, "cache_size_gb": 0.05},
    "servers": [{"id": f"node-{i}", "memory_gb": 10, "comm_time_s": 0.2, "block_time_s": 0.04} for i in range(4)],
    "workload": {"arrival_rate": 2.0},
}


def no_sideways_scroll(page, width: int = 390) -> None:
    page.wait_for_load_state("networkidle")
    wide = page.evaluate("document.documentElement.scrollWidth")
    culprits = page.evaluate("""w => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > w + 0.5 && getComputedStyle(e).position !== 'absolute')
        .slice(0, 6).map(e => e.tagName.toLowerCase() + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))""", width)
    assert wide <= width, f"{page.url}: the page is {wide} px wide at a {width} px viewport: {culprits}"


def test_mobile_navigation_without_overflow(phone, user, ui_stack):
    api = ui_stack.client(user)
    job = api.post("/api/v1/jobs/", json={"scenario": SMALL, "algorithms": ["search", "petals"],
                                          "options": {"simulate_requests": 500}}).json()
    done = api.wait_job(job["id"], timeout=180)
    assert done["status"] == "succeeded", done
    plan = done["plans"][0]["id"]
    cluster = api.post("/api/v1/clusters/import/", json={"scenario": SMALL}).json()

    page = phone
    page.goto("/")
    sign_in(page, user)
    menu = page.get_by_role("button", name="Menu")
    expect(menu).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "false")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav).to_be_hidden()
    no_sideways_scroll(page)

    menu.click()
    expect(nav).to_be_visible()
    expect(page.get_by_role("button", name="Close")).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    no_sideways_scroll(page)
    shot(page, "21-mobile-menu", full_page=False)
    nav.get_by_role("link", name="Jobs").click()
    page.wait_for_url(re.compile(r"/jobs$"))
    expect(nav).to_be_hidden()                  # the menu closes after navigating
    page.get_by_test_id("jobs-table").wait_for()
    no_sideways_scroll(page)

    for path, ready in ((f"/jobs/{job['id']}", "plans-table"), (f"/plans/{plan}", "placement-diagram"),
                        ("/clusters", None), (f"/clusters/{cluster['id']}", "servers-table"), ("/models/new", None),
                        ("/jobs/new", None),
                        (f"/jobs/{job['id']}/compare", "compare-table")):
        page.goto(path)
        if ready:
            page.get_by_test_id(ready).wait_for()
        else:
            page.locator("#page-title").wait_for()
        no_sideways_scroll(page)
        if path.startswith("/plans/"):
            shot(page, "22-mobile-plan", full_page=False)

    # a wide screen shows the navigation itself and no menu button
    page.set_viewport_size({"width": 1280, "height": 800})
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()


def _workers(stack):
    return [p for p in stack.procs if p.poll() is None and "worker" in p.args]


def test_health_banner_when_no_worker_is_alive(page, user, ui_stack):
    api = ui_stack.client(user)
    page.goto("/jobs")
    sign_in(page, user)
    page.locator("#page-title").wait_for()
    assert page.get_by_test_id("health-banner").count() == 0      # the worker is alive: no banner

    # a job long enough to be caught running: many simulated requests
    job = api.post("/api/v1/jobs/", json={"scenario": SMALL, "algorithms": ["search", "random", "jsq"],
                                          "options": {"simulate_requests": 2_000_000}}).json()
    api.wait_job(job["id"], timeout=120, until=("running",))
    workers = _workers(ui_stack)
    assert workers
    try:
        for proc in workers:
            ui_stack.kill(proc)
        page.goto(f"/jobs/{job['id']}")
        banner = page.get_by_test_id("health-banner")
        expect(banner).to_contain_text("No worker is alive", timeout=30_000)
        # each web process caches its answer for a few seconds: the API says 503 within that
        deadline = time.monotonic() + 20
        while api.get("/api/v1/health/").status_code != 503:
            assert time.monotonic() < deadline, "/api/v1/health/ still 200 with no worker alive"
            time.sleep(0.5)
        # the job still reads "running" in the database; the page says its progress is stale
        expect(page.get_by_test_id("job-stale")).to_contain_text("progress is stale", timeout=20_000)
        shot(page, "23-health-banner", full_page=False)
        # the banner is on every page, not only the job's
        page.goto("/clusters")
        # a fresh page asks again; with no worker the ask waits out the whole health timeout (3 s here)
        # before it answers, on top of the page load, so allow more than Playwright's 5 s default
        expect(page.get_by_test_id("health-banner")).to_be_visible(timeout=20_000)
        api.post(f"/api/v1/jobs/{job['id']}/cancel/")
    finally:
        ui_stack.start_worker(f"ui-{int(time.time())}", concurrency=2)
    # a worker again: the banner goes away by itself
    expect(page.get_by_test_id("health-banner")).to_have_count(0, timeout=30_000)
