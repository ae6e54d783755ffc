"""Upload a report to the chainplan service (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

REPORTS_PATH = "/api/v1/probe/reports/"


class ProbeClientError(Exception):
    """A failure to report, with a message fit for the operator (no traceback)."""

    def __init__(self, message: str, status: int | None = None, body: object = None):
        super().__init__(message)
        self.status = status
        self.body = body


def _describe(body: object) -> str:
    if isinstance(body, dict):
        parts = [str(body.get("detail") or "")]
        for err in body.get("errors") or []:
            if isinstance(err, dict):
                parts.append(f"{err.get('field', '?')}: {err.get('message', '')}")
        text = "; ".join(x for x in parts if x)
        return text or json.dumps(body)[:500]
    return str(body)[:500]


def post_report(server_url: str, token: str, report: dict, timeout: float = 30.0) -> dict:
    """POST the report; returns the service's JSON answer (``{"id", "accepted"}``)."""
    url = server_url.rstrip("/") + REPORTS_PATH
    data = json.dumps(report).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json",
        "Authorization": f"Probe {token}", "User-Agent": "chainplan-gpu-probe"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        kind = "rejected the report" if 400 <= exc.code < 500 else "failed"
        hint = {401: " (is the probe token right?)", 403: " (the token may be for another server)",
                413: " (report too large)"}.get(exc.code, "")
        raise ProbeClientError(f"service {kind}: HTTP {exc.code}{hint}: {_describe(body)}",
                               status=exc.code, body=body) from None
    except urllib.error.URLError as exc:
        raise ProbeClientError(f"cannot reach {url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:       # timeouts, malformed URL
        raise ProbeClientError(f"cannot reach {url}: {exc}") from None
    try:
        return json.loads(raw) if raw else {"status": status}
    except ValueError:
        raise ProbeClientError(f"service answered HTTP {status} with non-JSON body: {raw[:200]!r}",
                               status=status) from None
