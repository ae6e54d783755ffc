"""Editors in a real browser (see conftest.py): the cluster's default workload (PATCH), with
validation messages next to the fields they concern.
"""

from __future__ import annotations

import pytest
expect = pytest.importorskip("playwright.sync_api").expect

from .conftest import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(600)]

SCENARIO = {
    "name": "workload-edit",
    "model": {"name": "toy-12", "num_blocks": 12, "block_size_gb": 1.0, "cache_size_gb": 0.05},
    "servers": [{"id": f"node-{i}", "memory_gb": 10, "comm_time_s": 0.2, "block_time_s": 0.04} for i in range(3)],
    "workload": {"arrival_rate": 2.0, "output_tokens": 64},
}


def test_default_workload_editor(page, user, ui_stack):
    api = ui_stack.client(user)
    cluster = api.post("/api/v1/clusters/import/", json={"scenario": SCENARIO}).json()
    page.goto(f"/clusters/{cluster['id']}")
    sign_in(page, user)
    editor = page.get_by_test_id("workload-editor")
    rate = editor.get_by_label("Arrival rate (requests/s)")
    expect(rate).to_have_value("2")
    expect(editor.get_by_label("Output tokens")).to_have_value("64")

    # bad values: each message next to its field, and nothing is sent
    rate.fill("-1")
    load = editor.get_by_label("Target load")
    load.fill("1.5")
    editor.get_by_label("Max tokens").fill("2.5")
    editor.get_by_role("button", name="Save workload").click()
    for field, message in ((rate, "must be > 0"), (load, "between 0 and 1"), (editor.get_by_label("Max tokens"), "whole number")):
        expect(field).to_have_attribute("aria-invalid", "true")
        expect(page.locator(f"#{field.get_attribute('aria-describedby').split()[-1]}")).to_contain_text(message)
    assert api.get(f"/api/v1/clusters/{cluster['id']}/").json()["default_workload"]["arrival_rate"] == 2.0
    shot(page, "25-workload-editor-errors", full_page=False)

    # fixed: saved with PATCH, and there after a reload
    rate.fill("3.5")
    load.fill("0.6")
    editor.get_by_label("Max tokens").fill("2048")
    editor.get_by_role("button", name="Save workload").click()
    expect(editor.get_by_text("Default workload saved.")).to_be_visible()
    stored = api.get(f"/api/v1/clusters/{cluster['id']}/").json()["default_workload"]
    assert stored["arrival_rate"] == 3.5 and stored["target_load"] == 0.6 and stored["max_tokens"] == 2048
    assert stored["output_tokens"] == 64                # fields not changed are kept
    page.reload()
    expect(page.get_by_test_id("workload-editor").get_by_label("Arrival rate (requests/s)")).to_have_value("3.5")
    # the servers table's Save (PUT) leaves the workload alone
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_text("Saved.").wait_for()
    assert api.get(f"/api/v1/clusters/{cluster['id']}/").json()["default_workload"]["arrival_rate"] == 3.5
    shot(page, "26-workload-editor-saved", full_page=False)
