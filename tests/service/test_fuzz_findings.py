"""Regression tests for what the long Schemathesis run found (bench/results/schemathesis.md).

On the live stack (uvicorn, a Celery worker, PostgreSQL, Redis), each with the request the
fuzzer sent:

- ``POST /api/v1/clusters/{id}/dispatch/acquire/`` (no body) answered 503 once the fuzzer held
  every slot of the adopted plan: the dispatcher's documented back-pressure answer, not a
  fault. It must stay exactly that ({"queued": false, "detail"} with Retry-After, as the schema
  says) and the fuzzer's check (st_hooks.py) must accept only that 503.
- ``GET /api/v1/jobs/?9h=false`` was reported as an accepted schema-violating request: the
  fuzzer had learnt from our 400 for ``?algorithm=`` ("must not be empty") that ``algorithm``
  is required, which it is not. An unknown query parameter is ignored, and an optional filter
  given without a value is a 400 that does not call the parameter required.
"""

from __future__ import annotations

import re

import pytest
import requests

from .conftest import SMALL
from .live import wait_for
from .st_hooks import ACQUIRE, is_backpressure

pytestmark = pytest.mark.services

# wordings that read as "this parameter is required" (as Schemathesis's error feedback reads them)
SAYS_REQUIRED = re.compile(r"\b(?:(?:must|shall) not be (?:blank|null|empty)|can(?:not|'?t) be (?:blank|empty|null)"
                           r"|must be filled|is required)\b", re.IGNORECASE)


def test_unknown_query_parameter_ignored_and_empty_filter_not_called_required(live):
    client = live.client("fuzz-findings-query")
    job = client.post("/api/v1/jobs/", json={"scenario": SMALL})
    assert job.status_code == 201, job.text
    client.wait_job(job.json()["id"], timeout=120)

    # the fuzzer's request: valid by the schema (algorithm is optional), so the whole list
    got = client.get("/api/v1/jobs/?9h=false")
    assert got.status_code == 200, got.text
    assert got.json() == client.get("/api/v1/jobs/").json()
    assert got.json()["count"] == 1

    # every optional query parameter of every list operation, given without a value
    schema = requests.get(live.url + "/api/v1/schema/?format=json", timeout=30).json()
    checked = 0
    for path, item in schema["paths"].items():
        op = item.get("get")
        if "{" in path or not op or not path.startswith("/api/v1/"):
            continue
        for param in op.get("parameters", []):
            if param.get("in") != "query" or param.get("required"):
                continue
            r = client.get(f"{path}?{param['name']}=")
            assert r.status_code in (200, 400), (path, param["name"], r.status_code, r.text)
            if r.status_code == 400:
                for error in r.json()["errors"]:
                    if error["field"] != param["name"]:
                        continue            # e.g. /plans/diff/?old= without its required "new"
                    assert not SAYS_REQUIRED.search(error["message"]), (path, param["name"], error)
                checked += 1
    assert checked >= 10, checked          # the list filters (jobs, plans, clusters, ...) are among them
    r = client.get("/api/v1/jobs/?algorithm=")
    assert r.status_code == 400
    assert r.json()["errors"] == [{"field": "algorithm",
                                   "message": "given without a value: give one, or leave the parameter out to "
                                              "not filter"}]


def test_acquire_answers_documented_503_when_every_slot_is_held(live):
    client = live.client("fuzz-findings-acquire")
    cid, plan = client.import_adopted(SMALL)
    url = f"{live.url}/api/v1/clusters/{cid}/dispatch/"
    auth = {"Authorization": client.headers["Authorization"]}          # the owner's token, as the fuzzer's

    def state():
        return requests.get(url + "state/", headers=auth, timeout=10).json()

    wait_for(lambda: state()["plan"] == plan["id"], 20, "the adopted plan in the dispatcher")
    capacity = sum(c["capacity"] for c in state()["chains"])
    leases = []
    for _ in range(capacity):
        r = requests.post(url + "acquire/", json={"wait_s": 0}, headers=auth, timeout=10)
        assert r.status_code == 200, r.text
        leases.append(r.json()["lease"])

    # every slot is held: the fuzzer's request (no body: the default wait) ends the same way, sooner here
    for body in ({"wait_s": 0}, {"wait_s": 0.5}):
        r = requests.post(url + "acquire/", json=body, headers=auth, timeout=10)
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1"
        assert r.json()["queued"] is False and "free slot" in r.json()["detail"]
        assert is_backpressure("POST", ACQUIRE[1], r.status_code, {k.lower(): [v] for k, v in r.headers.items()},
                               r.content)

    # the answer is the one the schema documents for acquire's 503
    schema = requests.get(live.url + "/api/v1/schema/?format=json", timeout=30).json()
    doc = schema["paths"][ACQUIRE[1]]["post"]["responses"]["503"]
    assert "Retry-After" in doc["headers"]
    ref = doc["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(schema["components"]["schemas"][ref]["properties"]) == set(r.json())

    # the fuzzer's check lets through that 503 and nothing else
    headers = {"retry-after": ["1"], "content-type": ["application/json"]}
    outage = b'{"detail": "the dispatcher\'s store is unavailable; retry shortly"}'
    assert not is_backpressure("POST", ACQUIRE[1], 503, headers, outage)                 # store down
    assert not is_backpressure("POST", ACQUIRE[1], 500, headers, r.content)
    assert not is_backpressure("POST", ACQUIRE[1], 503, {}, r.content)                  # no Retry-After
    assert not is_backpressure("POST", "/api/v1/clusters/{id}/dispatch/renew/", 503, headers, r.content)
    assert not is_backpressure("POST", ACQUIRE[1], 503, headers, b"<html>")

    # releasing one slot serves the next request
    r = requests.post(url + "release/", json={"lease": leases.pop()}, headers=auth, timeout=10)
    assert r.status_code == 200 and r.json() == {"released": True}
    r = requests.post(url + "acquire/", json={"wait_s": 0}, headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    for lease in [*leases, r.json()["lease"]]:
        requests.post(url + "release/", json={"lease": lease}, headers=auth, timeout=10)
    assert all(c["in_progress"] == 0 for c in state()["chains"])
