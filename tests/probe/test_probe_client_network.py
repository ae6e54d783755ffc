"""Upload client and round-trip timing against a local HTTP server."""

from __future__ import annotations

import socket

import pytest

from gpu_probe.client import ProbeClientError, post_report
from gpu_probe.network import http_get_rtt, measure_network, split_target, tcp_connect_rtt


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                       # nothing listens there now
    return port


def test_post_sends_token_and_body(fake_service):
    answer = post_report(fake_service.url + "/", "secret", {"cluster": 1, "server": "s1", "x": [1, 2]})
    assert answer == {"id": 7, "accepted": True}
    (req,) = fake_service.requests
    assert req["path"] == "/api/v1/probe/reports/"
    assert req["headers"]["Authorization"] == "Probe secret"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["body"] == {"cluster": 1, "server": "s1", "x": [1, 2]}


@pytest.mark.parametrize("status,needle", [(400, "rejected the report: HTTP 400"), (403, "another server"),
                                           (500, "failed: HTTP 500")])
def test_http_errors_become_clear_messages(fake_service, status, needle):
    fake_service.status, fake_service.answer = status, {"detail": "nope", "errors": [
        {"field": "derived.block_time_s", "message": "must be > 0"}]}
    with pytest.raises(ProbeClientError) as err:
        post_report(fake_service.url, "t", {})
    assert needle in str(err.value) and err.value.status == status
    assert "derived.block_time_s: must be > 0" in str(err.value)


def test_unreachable_service_is_a_clear_error():
    with pytest.raises(ProbeClientError, match="cannot reach"):
        post_report(f"http://127.0.0.1:{_closed_port()}", "t", {}, timeout=2)


def test_round_trips_to_local_server(fake_service):
    _, host, port, _ = split_target(fake_service.url)
    tcp = tcp_connect_rtt(host, port, samples=5)
    assert tcp.samples == 5 and tcp.error is None and 0 < tcp.min_ms <= tcp.median_ms <= tcp.max_ms
    http = http_get_rtt(fake_service.url + "/api/v1/", samples=4)   # a 404 still is a round trip
    assert http.samples == 4 and http.median_ms > 0
    net = measure_network(fake_service.url, [f"127.0.0.1:{port}"], samples=3)
    assert net.rtt_ms == net.orchestrator[0].median_ms and len(net.peers) == 1


def test_unreachable_peer_reports_error_not_time():
    rt = tcp_connect_rtt("127.0.0.1", _closed_port(), samples=2, timeout=1)
    assert rt.median_ms is None and rt.samples == 0 and "Error" in rt.error


def test_split_target():
    assert split_target("https://svc.example:8443/x") == ("https", "svc.example", 8443, "/x")
    assert split_target("10.0.0.2:31337")[1:3] == ("10.0.0.2", 31337)
    assert split_target("http://svc")[2] == 80
