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


LLAMA_2_7B = {  # meta-llama/Llama-2-7b-hf's config.json, as published
    "_name_or_path": "meta-llama/Llama-2-7b-hf", "architectures": ["LlamaForCausalLM"], "bos_token_id": 1,
    "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": None, "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.31.0",
    "use_cache": True, "vocab_size": 32000,
}
MIXTRAL = {"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
           "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8, "num_experts_per_tok": 2,
           "vocab_size": 32000, "torch_dtype": "bfloat16", "max_position_embeddings": 32768}


def test_model_from_a_hugging_face_config_json(page, user, ui_stack, tmp_path):
    import json
    api = ui_stack.client(user)
    expected = api.post("/api/v1/models/derive/", json={"hf_config": LLAMA_2_7B})
    assert expected.status_code == 200, expected.text
    expected = expected.json()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(LLAMA_2_7B))

    page.goto("/models/new")
    sign_in(page, user)
    page.set_input_files("[data-testid=hf-config-file]", str(config))
    expect(page.get_by_test_id("hf-config-loaded")).to_contain_text("llama")
    sizes = page.get_by_test_id("hf-derived-sizes")
    # 202,383,360 parameters per block (attention, SwiGLU FFN and the two RMSNorm weights) in fp16: 0.405 GB
    params = expected["hf_config"]["params_per_block"]
    assert params == 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096
    assert abs(expected["block_size_gb"] - params * 2 / 1e9) < 1e-9
    expect(sizes).to_contain_text("0.405 GB")
    expect(sizes).to_contain_text(f"{params:,}")
    expect(page.get_by_label("Name")).to_have_value("Llama-2-7b-hf")
    shot(page, "27-model-from-hf-config", full_page=False)
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(lambda url: "/models/new" not in url and "/models/" in url)
    model_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    model = api.get(f"/api/v1/models/{model_id}/").json()
    assert model["num_blocks"] == 32
    assert abs(model["block_size_gb"] - expected["block_size_gb"]) < 1e-9
    assert abs(model["cache_size_gb"] - expected["cache_size_gb"]) < 1e-9
    # opened again, the model is shown as read from its config.json
    page.reload()
    expect(page.get_by_test_id("hf-config-loaded")).to_be_visible()
    expect(page.get_by_test_id("hf-derived-sizes")).to_contain_text("0.405 GB")

    # a mixture-of-experts config is refused with the server's reason, next to the upload
    page.goto("/models/new")
    moe = tmp_path / "mixtral.json"
    moe.write_text(json.dumps(MIXTRAL))
    page.set_input_files("[data-testid=hf-config-file]", str(moe))
    expect(page.get_by_test_id("hf-config").get_by_role("alert")).to_contain_text("This config.json cannot be used")
    # a file that is not a config.json at all is named as such in the browser
    junk = tmp_path / "notes.json"
    junk.write_text('{"hello": 1}')
    page.set_input_files("[data-testid=hf-config-file]", str(junk))
    expect(page.get_by_test_id("hf-config").get_by_role("alert")).to_contain_text('no "model_type"')
    # the refusal above is the API's 400 (the browser logs every 4xx it fetches): expected, not a UI error
    page.console_log.errors[:] = [e for e in page.console_log.errors
                                  if not ("status of 400" in e and "/api/v1/models/derive/" in e)]
