"""Round-trip times from this server to the orchestrator and to peers.

Two probes per target:
* TCP connect: the SYN / SYN-ACK exchange is one network round trip with no
  server-side work, so its median is the ``rtt_ms`` the planner uses.
* HTTP GET on a kept-alive connection (orchestrator only): one request/response
  round trip including the service's handling time; reported for context.
Any HTTP status counts as an answer: only the round trip is measured.
"""

from __future__ import annotations

import http.client
import socket
import statistics
import time
from urllib.parse import urlsplit

from .report import Network, RoundTrip


def split_target(target: str, default_port: int = 80) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of a URL or a bare host[:port]."""
    if "://" not in target:
        target = "tcp://" + target
    parts = urlsplit(target)
    if not parts.hostname:
        raise ValueError(f"no host in {target!r}")
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme, default_port)
    return scheme, parts.hostname, port, parts.path or "/"


def _summary(target: str, method: str, samples_ms: list[float], wanted: int, error: str | None) -> RoundTrip:
    if not samples_ms:
        return RoundTrip(target, method, None, None, None, 0, error or "no successful round trip")
    return RoundTrip(target, method, statistics.median(samples_ms), min(samples_ms), max(samples_ms),
                     len(samples_ms), error if len(samples_ms) < wanted else None)


def tcp_connect_rtt(host: str, port: int, samples: int = 10, timeout: float = 3.0) -> RoundTrip:
    times, error = [], None
    for _ in range(samples):
        t0 = time.perf_counter()
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
            continue
        times.append((time.perf_counter() - t0) * 1e3)
        sock.close()
    return _summary(f"{host}:{port}", "tcp_connect", times, samples, error)


def http_get_rtt(url: str, samples: int = 10, timeout: float = 5.0) -> RoundTrip:
    scheme, host, port, path = split_target(url)
    cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    times, error = [], None
    conn = None
    try:
        for i in range(samples + 1):              # the first request opens the connection: untimed
            if conn is None:
                conn = cls(host, port, timeout=timeout)
                conn.connect()
            t0 = time.perf_counter()
            try:
                conn.request("GET", path, headers={"User-Agent": "chainplan-gpu-probe"})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = None
                continue
            if i > 0:
                times.append((time.perf_counter() - t0) * 1e3)
            if resp.will_close:
                conn.close()
                conn = None
    except (OSError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if conn is not None:
            conn.close()
    return _summary(f"{host}:{port}", "http_get", times, samples, error)


def measure_network(server_url: str | None, peers: list[str] = (), samples: int = 10,
                    timeout: float = 3.0) -> Network:
    net = Network()
    if server_url:
        _, host, port, _ = split_target(server_url)
        tcp = tcp_connect_rtt(host, port, samples, timeout)
        api = server_url.rstrip("/") + "/api/v1/"
        net.orchestrator = [tcp, http_get_rtt(api, samples, timeout)]
        net.rtt_ms = tcp.median_ms
    for peer in peers:
        _, host, port, _ = split_target(peer)
        net.peers.append(tcp_connect_rtt(host, port, samples, timeout))
    return net
