"""The jobs API's ``options.placement``: plan on a layout someone already runs, with the CLI's checks."""

from __future__ import annotations

import pytest

from .conftest import run_queued

pytestmark = pytest.mark.django_db

V1 = "/api/v1"
# SMALL (conftest): 10 blocks; a holds the whole model, b + c a second chain
ROWS = [{"server": "a", "start_block": 0, "num_blocks": 10},
        {"server": "b", "start_block": 0, "num_blocks": 5},
        {"server": "c", "start_block": 5, "num_blocks": 5}]


def fields(response) -> dict[str, str]:
    return {e["field"]: e["message"] for e in response.json()["errors"]}


def test_a_job_plans_on_the_given_placement(api, small_doc):
    r = api.post(f"{V1}/jobs/", {"scenario": small_doc, "algorithms": ["proposed", "search", "optimal-allocation"],
                                 "options": {"placement": ROWS, "simulate_requests": 0}}, format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["options"]["placement"] == ROWS            # recorded, so the job can be reproduced
    assert run_queued() == ["done"]
    job = api.get(f"{V1}/jobs/{r.json()['id']}/").json()
    assert job["status"] == "succeeded", job["error"]
    for summary in job["plans"]:
        doc = api.get(f"{V1}/plans/{summary['id']}/").json()["document"]
        assert sorted((p["server"], p["start_block"], p["num_blocks"]) for p in doc["placement"]) == \
            sorted((p["server"], p["start_block"], p["num_blocks"]) for p in ROWS), summary["algorithm"]


@pytest.mark.parametrize("options, algorithms, field, words", [
    ({"placement": [{"server": "zz", "start_block": 0, "num_blocks": 10}]}, None,
     "options.placement[0].server", "unknown server 'zz'"),
    ({"placement": ROWS + [ROWS[1]]}, None, "options.placement[3].server", "listed twice"),
    ({"placement": [ROWS[0], {"server": "b", "start_block": 8, "num_blocks": 5}]}, None,
     "options.placement[1].start_block", "0..9"),
    ({"placement": [ROWS[1], {"server": "c", "start_block": 6, "num_blocks": 4}]}, None,
     "options.placement", "block 5 is held by no server"),
    ({"placement": [{"server": "b", "start_block": 0, "num_blocks": 10}]}, None,
     "options.placement[0].num_blocks", "one job"),
    ({"placement": ROWS}, ["petals"], "options.placement", "not 'petals'"),
    ({"placement": ROWS, "c": 2}, None, "options.placement", "c fixes"),
    ({"placement": []}, None, "options.placement", ""),
    ({"placement": "a:0-9"}, None, "options.placement", ""),
])
def test_bad_placements_are_400_naming_the_row(api, small_doc, options, algorithms, field, words):
    body = {"scenario": small_doc, "options": options}
    if algorithms:
        body["algorithms"] = algorithms
    r = api.post(f"{V1}/jobs/", body, format="json")
    assert r.status_code == 400
    errors = fields(r)
    assert field in errors and words in errors[field], errors
