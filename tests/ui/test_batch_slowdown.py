"""A server's batch slowdown in a real browser (see conftest.py): typed in the cluster editor as
"1:1, 8:1.5, 64:4", a bad entry named beside the field, the saved curve read back through the API; then
a plan of that cluster shows its saturation rate with its meaning, and the "Slots left empty on purpose"
table exactly when the plan has batch_capacity notes (issue 21).
"""

from __future__ import annotations

import pytest
expect = pytest.importorskip("playwright.sync_api").expect

from .conftest import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(600)]

# gpu-0 holds the whole model with room for 90 jobs; the four small servers hold one block each
SCENARIO = {
    "name": "batch-slowdown",
    "model": {"name": "toy-4", "num_blocks": 4, "block_size_gb": 1.0, "cache_size_gb": 0.1},
    "servers": [{"id": "gpu-0", "memory_gb": 40, "comm_time_s": 0.01, "block_time_s": 0.01}]
    + [{"id": f"small-{i}", "memory_gb": 3, "comm_time_s": 0.02, "block_time_s": 0.05} for i in range(4)],
    "workload": {"arrival_rate": 5.0},
}


def _rate(text: str) -> float:
    """"1,234 /s" -> 1234.0 (fmtNum's en-US grouping)."""
    return float(text.replace("/s", "").replace(",", "").strip())


def test_batch_slowdown_is_edited_saved_and_planned_with(page, user, ui_stack):
    api = ui_stack.client(user)
    cluster = api.post("/api/v1/clusters/import/", json={"scenario": SCENARIO})
    assert cluster.status_code == 201, cluster.text
    cluster_id = cluster.json()["id"]
    page.goto(f"/clusters/{cluster_id}")
    sign_in(page, user)
    curve = page.get_by_label("Batch slowdown of gpu-0")
    expect(curve).to_have_value("")

    # a factor below 1: the message beside the field names the entry, and nothing is saved
    curve.fill("1:1, 8:0.5")
    expect(curve).to_have_attribute("aria-invalid", "true")
    message = page.locator(f"#{curve.get_attribute('aria-describedby')}")
    expect(message).to_contain_text("entry 2 (8:0.5)")
    expect(message).to_contain_text("factor must be at least 1")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(message).to_be_visible()
    expect(page.get_by_text("Saved.")).to_have_count(0)
    gpu = next(s for s in api.get(f"/api/v1/clusters/{cluster_id}/").json()["servers"] if s["server_id"] == "gpu-0")
    assert not gpu.get("batch_slowdown")
    shot(page, "28-batch-slowdown-error", full_page=False)

    # fixed and saved: the API holds the pairs, and the editor shows them again after a reload
    curve.fill("1:1, 8:1.5, 64:4")
    expect(curve).not_to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_text("Saved.").wait_for()
    servers = {s["server_id"]: s for s in api.get(f"/api/v1/clusters/{cluster_id}/").json()["servers"]}
    assert servers["gpu-0"]["batch_slowdown"] == [[1, 1], [8, 1.5], [64, 4]]
    assert not any(servers[f"small-{i}"].get("batch_slowdown") for i in range(4))
    page.reload()
    expect(page.get_by_label("Batch slowdown of gpu-0")).to_have_value("1:1, 8:1.5, 64:4")

    # a plan of the saved cluster: its saturation rate, with what it means, on the plan page
    job = api.post("/api/v1/jobs/", json={"cluster": cluster_id, "algorithms": ["proposed"],
                                          "options": {"simulate_requests": 500, "seed": 1}})
    assert job.status_code == 201, job.text
    done = api.wait_job(job.json()["id"], timeout=180)
    assert done["status"] == "succeeded", done
    plan = api.get(f"/api/v1/plans/{done['plans'][0]['id']}/").json()
    doc = plan["document"]
    saturation = doc["saturation_rate_rps"]
    # gpu-0's 90 jobs run 4x+ slower than one: the plan carries fewer requests per second than its batch-1 rate
    assert saturation < doc["total_service_rate"]
    page.goto(f"/plans/{plan['id']}")
    shown = page.get_by_test_id("saturation-rate")
    expect(shown).to_contain_text("/s")
    assert _rate(shown.inner_text()) == pytest.approx(saturation, rel=5e-3)
    stat = page.get_by_test_id("plan-stats").locator(".stat", has_text="Saturation rate")
    expect(stat).to_have_attribute("title", "The most requests per second this plan can carry: every planned slot "
                                            "busy, each server slowed by its batch slowdown")
    expect(page.get_by_test_id("plan-stats")).to_contain_text("Load λ/saturation")

    # the held-back slots table: one row per batch_capacity note, or none at all
    table = page.get_by_test_id("batch-capacity")
    notes = doc.get("batch_capacity") or []
    if notes:
        expect(table.get_by_role("heading", name="Slots left empty on purpose")).to_be_visible()
        rows = table.locator("tbody tr")
        expect(rows).to_have_count(len(notes))
        for i, note in enumerate(notes):
            expect(rows.nth(i)).to_contain_text(note["server"])
            expect(rows.nth(i)).to_contain_text(f"{note['more_jobs']} more")
            expect(rows.nth(i)).to_contain_text(note["text"])
    else:
        expect(table).to_have_count(0)
        expect(page.get_by_text("Slots left empty on purpose")).to_have_count(0)
    shot(page, "29-plan-saturation-rate", full_page=False)
