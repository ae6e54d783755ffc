"""Gateway keys issued and revoked through the API, used on the service's own /v1/ with the official `openai` SDK.

In process: Django's test database, this deployment's dispatcher store (memory, or Redis when
configured) and the ASGI app planner_app.asgi builds (gateway under /v1/, dispatcher, Django).
The cluster has no adopted plan, so an accepted key gets the gateway's OpenAI-shaped
"no adopted plan" (503) and a refused one 401: the engine path itself is tests/gateway's.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from planner_app.dispatch.store import sync_store
from planner_app.gateway import services
from planner_app.gateway.models import GatewayKey
from serving.gateway.keys import key_digest

V1 = "/api/v1"
MODEL = "toy"


def import_cluster(client, doc) -> int:
    r = client.post(f"{V1}/clusters/import/", {"scenario": doc}, format="json")
    assert r.status_code == 201, r.content
    cid = r.json()["id"]
    sync_store().set_plan(cid, None)        # ids repeat between tests; the store may remember an older plan
    return cid


@pytest.fixture
def cluster(api, small_doc) -> int:
    return import_cluster(api, small_doc)


@pytest.fixture
def gateway_config(tmp_path, settings, cluster):
    """The mounted gateway serves MODEL for ``cluster`` (an openai-kind engine that is never reached)."""
    (tmp_path / "engines.json").write_text(json.dumps({
        "format": "chainplan-engines/1", "runtime": "vllm", "model": MODEL,
        "engines": [{"chain": 0, "servers": ["a"], "url": "http://127.0.0.1:9/v1", "capacity": 1}]}))
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({"models": [{"name": MODEL, "cluster": cluster, "engine": "openai",
                                            "engines_file": "engines.json"}]}))
    settings.GATEWAY_CONFIG = str(path)
    return path


class Service:
    """planner_app.asgi's whole app, built as the service builds it, driven on one event loop
    (a Redis store's connections belong to the loop that opened them)."""

    def __init__(self):
        from planner_app import asgi
        self.app = asgi.with_gateway(asgi.build_gateway(), asgi.mount(asgi.dispatcher_application,
                                                                      asgi.django_application))
        self.loop = asyncio.new_event_loop()

    def run(self, coro_fn):
        async def body():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://svc") as http:
                return await coro_fn(http)
        return self.loop.run_until_complete(body())

    def chat(self, key: str, model: str = MODEL):
        """The SDK's chat completion with ``key``: the answer, or the SDK's exception."""
        async def call(http):
            client = openai.AsyncOpenAI(base_url="http://svc/v1", api_key=key, http_client=http, max_retries=0)
            try:
                return await client.chat.completions.create(model=model, max_tokens=4,
                                                            messages=[{"role": "user", "content": "Hi"}])
            except openai.APIStatusError as exc:
                return exc
        return self.run(call)

    def models(self, key: str) -> list[str]:
        async def call(http):
            client = openai.AsyncOpenAI(base_url="http://svc/v1", api_key=key, http_client=http, max_retries=0)
            return [m.id async for m in client.models.list()]
        return self.run(call)

    def dispatch_state(self, cluster: int, credential: str) -> int:
        async def call(http):
            r = await http.get(f"{V1}/clusters/{cluster}/dispatch/state/", headers={"Authorization": credential})
            return r.status_code
        return self.run(call)


@pytest.fixture
def service(gateway_config):
    s = Service()
    yield s
    s.loop.close()


def issue(client, cluster: int, capture) -> dict:
    with capture(execute=True):
        r = client.post(f"{V1}/clusters/{cluster}/gateway/keys/", {}, format="json")
    assert r.status_code == 201, r.content
    return r.json()


def listed(client, cluster: int) -> list[dict]:
    r = client.get(f"{V1}/clusters/{cluster}/gateway/keys/")
    assert r.status_code == 200, r.content
    return r.json()["results"]


def assert_no_adopted_plan(answer) -> None:
    # the key was accepted: the gateway went on to ask the dispatcher, which has no plan for the cluster
    assert isinstance(answer, openai.APIStatusError), answer
    assert answer.status_code == 503 and answer.body["code"] == "no_adopted_plan", answer.body
    assert answer.response.headers["retry-after"]


def assert_refused(answer) -> None:
    assert isinstance(answer, openai.AuthenticationError), answer
    assert answer.status_code == 401 and answer.body["code"] == "invalid_api_key", answer.body
    assert set(answer.response.json()["error"]) == {"message", "type", "param", "code"}


def test_a_key_works_on_v1_at_once_and_is_refused_from_the_request_after_revocation(
        api, cluster, service, django_capture_on_commit_callbacks):
    first = issue(api, cluster, django_capture_on_commit_callbacks)
    second = issue(api, cluster, django_capture_on_commit_callbacks)
    assert first["key"].startswith("sk-") and first["hint"] == first["key"][:8]
    row = GatewayKey.objects.get(pk=first["id"])
    assert row.digest == key_digest(first["key"]) and first["key"] not in row.digest

    # the list shows first characters only: neither the key nor its digest ever again
    rows = listed(api, cluster)
    assert [r["id"] for r in rows] == [second["id"], first["id"]]          # newest first
    assert [r["hint"] for r in rows] == [second["hint"], first["hint"]]
    assert all(r["active"] and r["revoked_at"] is None and "digest" not in r for r in rows)
    assert first["key"] not in json.dumps(rows) and row.digest not in json.dumps(rows)

    assert service.models(first["key"]) == [MODEL]
    assert_no_adopted_plan(service.chat(first["key"]))

    with django_capture_on_commit_callbacks(execute=True):
        r = api.delete(f"{V1}/clusters/{cluster}/gateway/keys/{first['id']}/")
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["revoked_at"]
    assert_refused(service.chat(first["key"]))                            # the very next request
    assert_no_adopted_plan(service.chat(second["key"]))                   # the other key still works
    assert api.delete(f"{V1}/clusters/{cluster}/gateway/keys/{first['id']}/").status_code == 200   # harmless twice
    assert api.delete(f"{V1}/clusters/{cluster}/gateway/keys/999999/").status_code == 404
    assert [r["active"] for r in listed(api, cluster)] == [True, False]
    assert_refused(service.chat("sk-never-issued"))


def test_another_owner_cannot_touch_the_keys_nor_use_theirs_on_this_cluster(
        api, other_api, cluster, small_doc, service, django_capture_on_commit_callbacks):
    mine = issue(api, cluster, django_capture_on_commit_callbacks)
    url = f"{V1}/clusters/{cluster}/gateway/keys/"
    assert other_api.post(url, {}, format="json").status_code == 404
    assert other_api.get(url).status_code == 404
    assert other_api.delete(f"{url}{mine['id']}/").status_code == 404
    assert other_api.get(f"{V1}/clusters/{cluster}/gateway/").status_code == 404
    assert GatewayKey.objects.get(pk=mine["id"]).revoked_at is None

    # bob's key belongs to bob's cluster: the model served for alice's cluster does not exist for it
    theirs = issue(other_api, import_cluster(other_api, small_doc), django_capture_on_commit_callbacks)
    answer = service.chat(theirs["key"])
    assert isinstance(answer, openai.NotFoundError) and answer.body["code"] == "model_not_found", answer
    assert service.models(theirs["key"]) == []
    assert_no_adopted_plan(service.chat(mine["key"]))


def test_gateway_keys_and_dispatch_tokens_are_never_taken_for_one_another(
        api, cluster, service, django_capture_on_commit_callbacks):
    key = issue(api, cluster, django_capture_on_commit_callbacks)["key"]
    with django_capture_on_commit_callbacks(execute=True):
        token = api.post(f"{V1}/clusters/{cluster}/dispatch/tokens/", {}, format="json").json()["token"]
    assert service.dispatch_state(cluster, f"Dispatch {token}") == 200
    assert_refused(service.chat(token))
    # the string whose plain SHA-256 is the key's hash must not pass the dispatcher as a dispatch token
    assert service.dispatch_state(cluster, f"Dispatch chainplan-gateway-key:{key}") == 401
    assert service.dispatch_state(cluster, f"Dispatch {key}") == 401


def test_full_sync_restores_lost_keys_and_drops_revoked_ones_again(
        api, cluster, service, django_capture_on_commit_callbacks):
    from planner_app import asgi
    assert "sync_keys" in [fn.__name__ for _, fn in asgi.dispatcher_application._background]
    live = issue(api, cluster, django_capture_on_commit_callbacks)
    gone = issue(api, cluster, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        api.delete(f"{V1}/clusters/{cluster}/gateway/keys/{gone['id']}/")
    store = sync_store()
    store.drop_token(key_digest(live["key"]))              # as if the store had lost it (a restart)
    store.put_token(key_digest(gone["key"]), cluster)      # as if the drop had been lost
    assert_refused(service.chat(live["key"]))
    assert services.sync_keys_with_database() >= 2
    assert_no_adopted_plan(service.chat(live["key"]))
    assert_refused(service.chat(gone["key"]))


def test_deleting_the_cluster_drops_its_keys_from_the_store(api, cluster, service, django_capture_on_commit_callbacks):
    key = issue(api, cluster, django_capture_on_commit_callbacks)["key"]
    assert sync_store().token_cluster(key_digest(key)) == cluster
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"{V1}/clusters/{cluster}/").status_code == 204
    assert not GatewayKey.objects.filter(cluster_id=cluster).exists()
    assert sync_store().token_cluster(key_digest(key)) is None
    assert_refused(service.chat(key))


def test_the_panel_names_the_base_path_the_models_and_the_live_keys(
        api, cluster, gateway_config, settings, django_capture_on_commit_callbacks):
    issue(api, cluster, django_capture_on_commit_callbacks)
    panel = api.get(f"{V1}/clusters/{cluster}/gateway/").json()
    assert panel == {"cluster": cluster, "adopted_plan": None, "base_path": "/v1", "models": [MODEL],
                     "error": None, "keys": 1}
    settings.GATEWAY_CONFIG = ""
    panel = api.get(f"{V1}/clusters/{cluster}/gateway/").json()
    assert panel["models"] == [] and "CHAINPLAN_GATEWAY_CONFIG" in panel["error"]
    settings.GATEWAY_CONFIG = str(gateway_config.parent / "missing.json")
    panel = api.get(f"{V1}/clusters/{cluster}/gateway/").json()
    assert panel["models"] == [] and "missing.json" in panel["error"]


def test_the_key_endpoints_are_described_in_the_schema(api):
    schema = api.get(f"{V1}/schema/?format=json").json()
    keys = schema["paths"]["/api/v1/clusters/{id}/gateway/keys/"]
    assert {"get", "post"} <= set(keys) and "Shown once" in keys["post"]["description"]
    assert "delete" in schema["paths"]["/api/v1/clusters/{id}/gateway/keys/{key_id}/"]
    assert "get" in schema["paths"]["/api/v1/clusters/{id}/gateway/"]


def test_the_mounted_gateway_reports_its_metrics_at_v1_metrics_behind_the_metrics_token(
        api, cluster, settings, gateway_config, django_capture_on_commit_callbacks):
    settings.METRICS_TOKEN = "metrics-secret"
    service = Service()            # built after the token is set, as the service builds it at start
    try:
        key = issue(api, cluster, django_capture_on_commit_callbacks)["key"]
        assert_no_adopted_plan(service.chat(key))

        def scrape(headers):
            async def call(http):
                return await http.get("/v1/metrics", headers=headers)
            return service.run(call)

        refused = scrape({})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_metrics_token"
        assert scrape({"Authorization": "Bearer wrong"}).status_code == 401
        got = scrape({"Authorization": "Bearer metrics-secret"})
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/plain")
        line = (f'chainplan_gateway_errors_total{{chain="",cluster="{cluster}",code="no_adopted_plan",'
                f'endpoint="chat",model="{MODEL}",servers="",status="503",type="service_unavailable"}} 1.0')
        assert line in got.text.splitlines(), got.text
    finally:
        service.loop.close()
