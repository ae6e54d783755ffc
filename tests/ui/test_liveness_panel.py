"""The cluster page's liveness panel in a real browser: a server whose heartbeats stop turns down on the page by
itself (polling), its chains show as masked, and the timeline shows the failure, the mask, the re-plan and its
adoption, then the server's return; the Drain button drains another server, which leaves the plan.

Heartbeats are sent as ``gpu_probe watch`` sends them (POST .../heartbeat/ with the server's probe token); the
dispatcher's store takes a silent server for down after its heartbeat timeout (6 s by default).
"""

from __future__ import annotations

import pytest
import requests

from .conftest import shot, sign_in

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(600)]


def test_liveness_panel_shows_states_masks_and_the_timeline_live(page, user, ui_stack):
    from tests.service.conftest import SMALL
    api = ui_stack.client(user)
    cluster = api.post("/api/v1/clusters/import/", json={"scenario": SMALL}).json()["id"]
    job = api.wait_job(api.post(f"/api/v1/clusters/{cluster}/replan/", json={}).json()["id"], timeout=120)
    assert job["replan_outcome"]["adopted"], job
    doc = api.get(f"/api/v1/plans/{job['plans'][0]['id']}/").json()["document"]
    victim = sorted({p["server"] for p in doc["placement"] if p["num_blocks"] > 0})[-1]
    through = [k for k, ch in enumerate(doc["chains"]) if victim in ch["servers"]]
    token = api.post(f"/api/v1/clusters/{cluster}/servers/{victim}/probe-token/").json()["token"]

    def beat():
        r = requests.post(f"{ui_stack.url}/api/v1/clusters/{cluster}/servers/{victim}/heartbeat/",
                          json={"state": "up", "free_memory_gb": 6.5, "total_memory_gb": 8},
                          headers={"Authorization": f"Probe {token}"}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    page.goto(f"/clusters/{cluster}")
    sign_in(page, user)
    panel = page.locator("[data-testid=liveness-panel]")
    row = panel.locator(f"[data-testid=liveness-server-row][data-server='{victim}']")
    expect(row).to_have_attribute("data-state", "up")
    expect(row).to_contain_text("never reported")
    expect(panel.locator("[data-testid=liveness-summary]")).to_contain_text("All 3 servers are up")

    # healing off for a while, so that the masked chains stay on the page to be seen
    assert api.patch(f"/api/v1/clusters/{cluster}/", json={"replan_on_server_change": False}).status_code == 200
    assert beat()["state"] == "up"
    expect(row).to_contain_text("6.5 of 8 GB free", timeout=15_000)
    # silence: the store takes it for down after its heartbeat timeout, the page follows without a reload
    expect(row).to_have_attribute("data-state", "down", timeout=30_000)
    masked = panel.locator("[data-testid=liveness-masked]")
    for k in through:
        expect(masked).to_contain_text(f"chain {k} ({victim})")
    expect(panel.locator("[data-testid=liveness-summary]")).to_contain_text(f"{victim} down")
    timeline = panel.locator("[data-testid=liveness-timeline]")
    expect(timeline.locator("li[data-kind=failure]").first).to_contain_text(f"{victim} is down")
    expect(timeline.locator("li[data-kind=mask]").first).to_contain_text("masked")
    shot(page, "18-liveness-down-masked")
    # healing on: the next poll re-plans without it, the worker adopts, the masks go with the old plan
    assert api.patch(f"/api/v1/clusters/{cluster}/", json={"replan_on_server_change": True}).status_code == 200
    expect(timeline.locator("li[data-kind=replan]").first).to_contain_text(f"server {victim} down", timeout=30_000)
    expect(timeline.locator("li[data-kind=adoption]").first).to_contain_text("adopted", timeout=120_000)
    expect(row.locator("td").nth(5)).to_have_text("no", timeout=30_000)          # out of the adopted plan
    expect(masked).to_have_count(0)
    shot(page, "19-liveness-healed")

    # it comes back
    assert beat()["state"] == "up"
    expect(row).to_have_attribute("data-state", "up", timeout=15_000)
    expect(timeline.locator("li[data-kind=rejoin]").first).to_contain_text(f"{victim} is back up (was down)")

    # the Drain button of a server in the plan: draining, then drained (nothing in flight) and re-planned
    other = next(s for s in sorted({p["server"] for p in api.get(f"/api/v1/clusters/{cluster}/adopted-plan/")
                                    .json()["plan"]["document"]["placement"] if p["num_blocks"] > 0}) if s != victim)
    panel.get_by_role("button", name=f"Drain {other}").click()
    other_row = panel.locator(f"[data-testid=liveness-server-row][data-server='{other}']")
    expect(other_row).to_have_attribute("data-state", "draining")
    expect(timeline.locator("li[data-kind=drained]").first).to_contain_text(f"{other} drained", timeout=30_000)
    expect(panel.get_by_role("button", name=f"End the drain of {other}")).to_be_visible()
    shot(page, "20-liveness-drained")
    panel.get_by_role("button", name=f"End the drain of {other}").click()
    expect(other_row).to_have_attribute("data-state", "up")
    expect(timeline.locator("li[data-kind=rejoin]").first).to_contain_text(f"{other} is back up (was draining)")
