"""The gateway's Prometheus metrics (GET /v1/metrics), read as text from the real gateway process while the
official SDK sends it requests that run on the real engines: each test reads the metrics before and after
and checks what moved, and by how much.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import CHAINS, CLUSTER, KEY, NO_PLAN_CLUSTER, OTHER_KEY

pytestmark = pytest.mark.timeout(120)

# the plan's chains as the metrics label them: index in the plan, servers in order
PLAN_CHAINS = {(str(i), ",".join(servers)) for i, (servers, *_rest) in enumerate(CHAINS)}
P = "chainplan_gateway_"


class Scrape:
    def __init__(self, text: str):
        families = list(text_string_to_metric_families(text))
        self.families = {fam.name: fam.type for fam in families}
        self.samples = [(s.name, s.labels, s.value) for fam in families for s in fam.samples]

    def total(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels``."""
        return sum(v for n, lab, v in self.samples
                   if n == name and all(lab.get(k) == want for k, want in labels.items()))

    def label_sets(self, name: str) -> list[dict[str, str]]:
        return [lab for n, lab, _ in self.samples if n == name]


def scrape(gateway, url: str | None = None) -> Scrape:
    r = httpx.get(url or gateway.base_url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    return Scrape(r.text)


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.total(name, **labels) - before.total(name, **labels)


TINY = {"cluster": str(CLUSTER), "model": "tiny"}


@pytest.fixture
def client(gateway):
    with openai.OpenAI(base_url=gateway.base_url, api_key=KEY, max_retries=0) as c:
        yield c
    gateway.wait_idle()


def test_metrics_are_served_at_v1_and_at_the_root(gateway):
    v1, root = scrape(gateway), scrape(gateway, gateway.base_url.removesuffix("/v1") + "/metrics")
    for s in (v1, root):
        for name in ("time_to_first_token_seconds", "inter_token_latency_seconds", "e2e_request_latency_seconds",
                     "queue_wait_seconds", "output_tokens_per_second"):
            assert s.families[P + name] == "histogram"
        assert s.families[P + "requests"] == s.families[P + "errors"] == "counter"
    # no key needed (no metrics token configured), and the scrape itself is no request
    assert moved(v1, scrape(gateway), P + "requests_total") == 0


def test_a_streamed_request_adds_ttft_itl_e2e_queue_and_tokens_on_its_chain(gateway, client):
    before = scrape(gateway)
    t0 = time.perf_counter()
    chunks = list(client.completions.create(model="tiny", prompt="Metrics", max_tokens=32, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    took = time.perf_counter() - t0
    after = scrape(gateway)
    pieces = sum(1 for c in chunks if c.choices and c.choices[0].text)
    usage = chunks[-1].usage
    assert usage.completion_tokens == 32 and pieces >= 2, [c.choices[0].text if c.choices else None for c in chunks]

    # exactly one chain of the plan got it, labelled as the dispatcher names it
    used = [(lab["chain"], lab["servers"]) for lab in after.label_sets(P + "e2e_request_latency_seconds_count")
            if lab["model"] == "tiny" and lab["cluster"] == str(CLUSTER)
            and moved(before, after, P + "e2e_request_latency_seconds_count", **lab) == 1]
    assert len(used) == 1 and used[0] in PLAN_CHAINS, used
    on = {**TINY, "chain": used[0][0], "servers": used[0][1]}

    assert moved(before, after, P + "time_to_first_token_seconds_count", **on) == 1
    assert moved(before, after, P + "inter_token_latency_seconds_count", **on) == pieces - 1
    assert moved(before, after, P + "queue_wait_seconds_count", **on) == 1
    assert moved(before, after, P + "output_tokens_per_second_count", **on) == 1
    assert moved(before, after, P + "output_tokens_total", **on) == 32
    assert moved(before, after, P + "prompt_tokens_total", **on) == usage.prompt_tokens
    assert moved(before, after, P + "requests_total", **on, endpoint="completions", outcome="ok") == 1
    assert moved(before, after, P + "errors_total") == 0

    # the sums are times inside what the client measured, in order: first token before the end
    ttft = moved(before, after, P + "time_to_first_token_seconds_sum", **on)
    itl = moved(before, after, P + "inter_token_latency_seconds_sum", **on)
    e2e = moved(before, after, P + "e2e_request_latency_seconds_sum", **on)
    queue = moved(before, after, P + "queue_wait_seconds_sum", **on)
    assert 0 < queue < ttft and 0 < itl and ttft + itl <= e2e <= took
    tps = moved(before, after, P + "output_tokens_per_second_sum", **on)
    assert tps == pytest.approx(32 / e2e, rel=1e-6)
    # a histogram's +Inf bucket counts every observation
    assert moved(before, after, P + "time_to_first_token_seconds_bucket", **on, le="+Inf") == 1
    assert after.total(P + "requests_in_flight", **TINY) == 0


def test_a_whole_answer_is_timed_from_the_engines_stream_too(gateway, client):
    before = scrape(gateway)
    done = client.completions.create(model="tiny", prompt="Metrics", max_tokens=32, temperature=0)
    after = scrape(gateway)
    assert done.choices[0].text          # some text came: so a first token was timed
    assert moved(before, after, P + "requests_total", **TINY, endpoint="completions", outcome="ok") == 1
    assert moved(before, after, P + "time_to_first_token_seconds_count", **TINY) == 1
    assert moved(before, after, P + "e2e_request_latency_seconds_count", **TINY) == 1
    assert moved(before, after, P + "output_tokens_total", **TINY) == done.usage.completion_tokens == 32


def test_errors_are_counted_by_status_type_and_code(gateway):
    before = scrape(gateway)
    msgs = [{"role": "user", "content": "x"}]
    with openai.OpenAI(base_url=gateway.base_url, api_key=KEY, max_retries=0) as c:
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="tiny", messages=msgs, logprobs=True)
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="gpt-4o", messages=msgs)
    with openai.OpenAI(base_url=gateway.base_url, api_key="sk-wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            c.completions.create(model="tiny", prompt="x")
    with openai.OpenAI(base_url=gateway.base_url, api_key=OTHER_KEY, max_retries=0) as c:
        with pytest.raises(openai.InternalServerError):
            c.completions.create(model="tiny", prompt="x")
    httpx.post(gateway.base_url + "/embeddings", json={}, timeout=10)
    after = scrape(gateway)

    def errors(**labels: str) -> float:
        return moved(before, after, P + "errors_total", **labels)

    # before the model is known no model label is set (a client's made-up name never becomes one)
    none = {"cluster": "", "model": "", "chain": "", "servers": ""}
    assert errors(**none, endpoint="chat", status="400", type="invalid_request_error", code="unsupported_parameter") == 1
    assert errors(**none, endpoint="chat", status="404", type="not_found_error", code="model_not_found") == 1
    assert errors(**none, endpoint="completions", status="401", type="authentication_error", code="invalid_api_key") == 1
    assert errors(cluster=str(NO_PLAN_CLUSTER), model="tiny", chain="", servers="", endpoint="completions",
                  status="503", type="service_unavailable", code="no_adopted_plan") == 1
    assert errors(**none, endpoint="other", status="404", code="unknown_url") == 1
    assert errors() == 5
    # the four generation requests ended as errors; the unknown URL is no generation request
    assert moved(before, after, P + "requests_total", outcome="error") == 4
    assert moved(before, after, P + "requests_total", outcome="ok") == 0
    assert moved(before, after, P + "time_to_first_token_seconds_count") == 0
    assert moved(before, after, P + "e2e_request_latency_seconds_count") == 0


def test_a_429_counts_as_a_rate_limit_error_with_no_chain(gateway):
    from serving.dispatch import RedisDispatchClient
    from tests.dispatch.conftest import REDIS_URL
    held = RedisDispatchClient(REDIS_URL, CLUSTER, prefix=gateway.store.prefix)
    leases = [held.acquire_lease(wait_s=0) for _ in range(3)]
    try:
        before = scrape(gateway)
        r = httpx.post(gateway.base_url + "/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 2},
                       headers={"authorization": f"Bearer {KEY}"}, timeout=30)
        after = scrape(gateway)
    finally:
        for lease in leases:
            held.release(lease)
        held.close()
    assert r.status_code == 429
    assert moved(before, after, P + "errors_total", **TINY, chain="", status="429", type="rate_limit_error",
                 code="no_free_chain") == 1
    assert moved(before, after, P + "queue_wait_seconds_count") == 0       # no lease was granted
    gateway.wait_idle()


def test_a_client_gone_mid_stream_is_counted_and_leaves_nothing_in_flight(gateway):
    before = scrape(gateway)
    body = {"model": "tiny", "prompt": "The", "max_tokens": 480, "stream": True}
    with httpx.stream("POST", gateway.base_url + "/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {KEY}"}) as resp:
        lines = resp.iter_lines()      # held: dropping the iterator would close the connection here
        assert next(line for line in lines if line.startswith("data:"))
        assert scrape(gateway).total(P + "requests_in_flight", **TINY) == 1
    gateway.wait_idle()
    deadline = time.monotonic() + 2
    while (after := scrape(gateway)).total(P + "requests_in_flight", **TINY) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert after.total(P + "requests_in_flight", **TINY) == 0
    assert moved(before, after, P + "requests_total", **TINY, outcome="client_gone") == 1
    assert moved(before, after, P + "time_to_first_token_seconds_count", **TINY) == 1
    # an answer cut short has no end-to-end time and no tokens-per-second figure
    assert moved(before, after, P + "e2e_request_latency_seconds_count", **TINY) == 0
    assert moved(before, after, P + "errors_total") == 0
