"""The cluster page's gateway panel in a real browser: base URL and model, a key shown once, listed, revoked.

The key the page issues is used on the stack's own /v1/ with the official `openai` SDK: accepted
while active (the stack's gateway serves no model, so the SDK's models list is empty rather than a
401), refused (401) from the request after the revoke button.
"""

from __future__ import annotations

import json

import pytest

from .conftest import shot, sign_in

expect = pytest.importorskip("playwright.sync_api").expect
openai = pytest.importorskip("openai")

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(600)]


def test_gateway_panel_issues_shows_once_lists_and_revokes_keys(page, user, ui_stack):
    from tests.service.conftest import SMALL
    api = ui_stack.client(user)
    cluster = api.post("/api/v1/clusters/import/", json={"scenario": SMALL}).json()["id"]
    engines = ui_stack.gateway_config.parent / "engines.json"
    engines.write_text(json.dumps({"format": "chainplan-engines/1", "runtime": "vllm", "model": "tiny",
                                   "engines": [{"chain": 0, "servers": ["a"], "url": "http://127.0.0.1:9/v1",
                                                "capacity": 1}]}))
    ui_stack.gateway_config.write_text(json.dumps({"models": [{"name": "tiny", "cluster": cluster,
                                                               "engine": "openai", "engines_file": "engines.json"}]}))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=ui_stack.url)

    page.goto(f"/clusters/{cluster}")
    sign_in(page, user)
    panel = page.locator("[data-testid=gateway-panel]")
    expect(panel.locator("[data-testid=gateway-base-url]")).to_have_text(f"{ui_stack.url}/v1")
    expect(panel.locator("[data-testid=gateway-model]")).to_have_text("tiny")
    expect(panel.get_by_text("No plan is adopted")).to_be_visible()

    panel.get_by_role("button", name="New gateway key").click()
    shown = panel.locator("[data-testid=gateway-new-key] code")
    shown.wait_for()
    key = shown.inner_text().strip()
    assert key.startswith("sk-") and len(key) > 40
    panel.get_by_role("button", name="Copy").click()
    expect(panel.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    rows = panel.locator("[data-testid=gateway-key-row]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(key[:8] + "…")
    expect(rows.first).to_contain_text("active")
    shot(page, "17-gateway-keys")

    client = openai.OpenAI(base_url=f"{ui_stack.url}/v1", api_key=key, max_retries=0)
    assert [m.id for m in client.models.list()] == []          # accepted: this cluster's models (none served here)

    panel.get_by_role("button", name=f"Revoke key {key[:8]}…").click()
    expect(rows.first).to_contain_text("revoked")
    expect(panel.locator("[data-testid=gateway-new-key]")).to_have_count(0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()

    page.reload()
    expect(panel.locator("[data-testid=gateway-key-row]")).to_have_count(1)
    assert key not in page.content()                            # shown once: never again
