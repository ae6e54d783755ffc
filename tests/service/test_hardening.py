"""Regression tests for what a schema-driven fuzzer and a hostile tester found (issue 12)."""

from __future__ import annotations

import pytest
import requests

V1 = "/api/v1"
TOO_BIG = "9223372036854775808"       # 2**63: one past the largest id the database can hold


def fields(response):
    return {e["field"] for e in response.json()["errors"]}


def test_patch_with_a_server_lacking_server_id_is_a_400_naming_it(api, small_doc):
    cluster = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json").json()
    r = api.patch(f"{V1}/clusters/{cluster['id']}/", {"servers": [{"memory_gb": 8}]}, format="json")
    assert r.status_code == 400, r.content
    assert fields(r) == {"servers[0].server_id"}
    r = api.patch(f"{V1}/clusters/{cluster['id']}/", {"servers": [{"server_id": "x"}]}, format="json")
    assert r.status_code == 400 and fields(r) == {"servers[0].memory_gb"}
    # the cluster is untouched
    assert api.get(f"{V1}/clusters/{cluster['id']}/").json()["server_count"] == 3


@pytest.mark.parametrize("url,param", [
    ("/plans/", "cluster"), ("/plans/", "job"), ("/jobs/", "cluster"), ("/jobs/", "model"), ("/clusters/", "model"),
])
def test_integer_list_filters_refuse_ids_out_of_range(api, url, param):
    for value in (TOO_BIG, "0", "-1", "abc"):
        r = api.get(f"{V1}{url}?{param}={value}")
        assert r.status_code == 400, (url, param, value, r.content)
        assert fields(r) == {param}
    # an id in range that is not the user's matches nothing (not an error)
    r = api.get(f"{V1}{url}?{param}=123456789")
    assert r.status_code == 200 and r.json()["results"] == []


@pytest.mark.parametrize("query,field", [("page_size=abc", "page_size"), ("page_size=0", "page_size"),
                                         ("page_size=501", "page_size"), ("page=last", "page"),
                                         ("page=0", "page"), (f"page={TOO_BIG}", "page")])
def test_pagination_parameters_are_checked_not_guessed(api, query, field):
    r = api.get(f"{V1}/jobs/?{query}")
    assert r.status_code == 400 and fields(r) == {field}, r.content
    assert api.get(f"{V1}/jobs/?page=2").status_code == 404       # past the last page


def test_export_of_a_cluster_without_model_matches_its_schema(api):
    server = {"server_id": "a", "memory_gb": 8, "comm_time_s": 0.5, "block_time_s": 0.1}
    r = api.post(f"{V1}/clusters/", {"name": "bare", "servers": [server]}, format="json")
    assert r.status_code == 201, r.content
    doc = api.get(f"{V1}/clusters/{r.json()['id']}/export/").json()
    assert "model" not in doc and doc["servers"] == [{"id": "a", "memory_gb": 8, "comm_time_s": 0.5,
                                                      "block_time_s": 0.1}]
    schema = api.get(f"{V1}/schema/?format=json").json()
    op = schema["paths"]["/api/v1/clusters/{id}/export/"]["get"]
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "model" not in schema["components"]["schemas"][ref].get("required", [])


def test_export_with_another_model_of_the_user(api, small_doc):
    cluster = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json").json()
    other = api.post(f"{V1}/models/", {"name": "other", "num_blocks": 4, "block_size_gb": 2.0,
                                       "cache_size_gb": 0.2}, format="json").json()
    r = api.get(f"{V1}/clusters/{cluster['id']}/export/?model={other['id']}")
    assert r.status_code == 200, r.content
    assert r.json()["model"]["name"] == "other" and r.json()["model"]["num_blocks"] == 4
    r = api.get(f"{V1}/clusters/{cluster['id']}/export/?model={TOO_BIG}")
    assert r.status_code == 400 and fields(r) == {"model"}


def test_export_of_another_users_model_is_refused(api, other_api, small_doc):
    cluster = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json").json()
    theirs = other_api.post(f"{V1}/models/", {"name": "theirs", "num_blocks": 4, "block_size_gb": 2.0,
                                              "cache_size_gb": 0.2}, format="json").json()
    r = api.get(f"{V1}/clusters/{cluster['id']}/export/?model={theirs['id']}")
    assert r.status_code == 400 and fields(r) == {"model"}


@pytest.mark.parametrize("path", ["/auth/token/", "/auth/login/"])
def test_password_checks_are_throttled_with_a_documented_429(db, path):
    from django.conf import settings
    from rest_framework.test import APIClient

    client = APIClient()      # no CSRF enforcement in the test client: the login view's body check runs
    limit = int(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["login"].split("/")[0])
    # every attempt counts, a malformed one too (and it skips the slow password hash here)
    codes = [client.post(f"{V1}{path}", {"username": "nobody"}, format="json").status_code for _ in range(limit)]
    assert 429 not in codes
    r = client.post(f"{V1}{path}", {"username": "nobody", "password": "x"}, format="json")
    assert r.status_code == 429 and int(r["Retry-After"]) > 0
    assert "throttled" in r.json()["detail"]
    schema = APIClient().get(f"{V1}/schema/?format=json").json()
    assert "429" in schema["paths"][f"{V1}{path}"]["post"]["responses"]


@pytest.mark.services
def test_chunked_bodies_are_read_within_the_limit(stack_factory):
    stack = stack_factory(MAX_REQUEST_BYTES="200000")
    stack.start_web(workers=1, threads=2)
    client = stack.client("chunk-alice")
    body = b'{"name": "chunked", "num_blocks": 4, "block_size_gb": 2.0, "cache_size_gb": 0.2}'

    def chunks(data, size=7):
        for i in range(0, len(data), size):
            yield data[i:i + size]

    r = client.post("/api/v1/models/", data=chunks(body), headers={"Content-Type": "application/json"})
    assert r.request.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in r.request.headers
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "chunked"

    big = (b" " * 65536 for _ in range(200000 // 65536 + 2))
    try:
        r = client.post("/api/v1/models/", data=big, headers={"Content-Type": "application/json"})
    except requests.ConnectionError:    # the server may close before taking the rest of an oversized body
        return
    assert r.status_code == 413, r.text
