"""Browser end-to-end fixtures: the built web UI served by a real stack, driven by Debian's chromium.

The stack is the one of tests/service/live.py (uvicorn + a Celery worker on a
fresh PostgreSQL database and a Redis queue of its own); the UI is built with
`npm run build` into a temporary folder that Django serves at "/".  Chromium is
Debian's (/usr/bin/chromium); no browser is downloaded.  Locally a missing
chromium, npm, PostgreSQL or Redis skips these tests; under CI=true it fails them.

Every page collects browser console errors and uncaught exceptions; a test
fails if any were seen.  Screenshots go to a temporary folder, or to
bench/results/ui/ (the recorded ones) with CHAINPLAN_UI_SHOTS=bench/results/ui.
"""

from __future__ import annotations

import os
import tempfile
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.service.live import PgDatabase, Stack, require_services

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"
# screenshots land in bench/results/ui (the recorded ones) only when asked for, so that
# running the suite leaves the tracked pictures alone: CHAINPLAN_UI_SHOTS=bench/results/ui
SHOTS = Path(os.environ.get("CHAINPLAN_UI_SHOTS") or Path(tempfile.gettempdir()) / "chainplan-ui-shots")
CHROMIUM = os.environ.get("CHAINPLAN_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "ui-test-pw-1"


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _missing(f"chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the playwright Python package is not installed")
    return CHROMIUM


@pytest.fixture(scope="session")
def ui_dist(tmp_path_factory) -> Path:
    """The web UI built from the working tree (not a stale frontend/dist)."""
    npm = shutil.which("npm")
    if npm is None:
        _missing("npm not found: cannot build the web UI")
    if not (FRONTEND / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, check=True, timeout=600)
    out = tmp_path_factory.mktemp("ui-dist")
    build = subprocess.run([npm, "run", "build", "--", "--outDir", str(out), "--emptyOutDir"], cwd=FRONTEND,
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, f"npm run build failed:\n{build.stdout}\n{build.stderr}"
    assert (out / "index.html").is_file()
    return out


@pytest.fixture(scope="session")
def ui_stack(chromium_path, ui_dist, tmp_path_factory):
    """uvicorn + a Celery worker on a fresh PostgreSQL database, serving the built UI."""
    require_services()
    database = PgDatabase()
    tmp = tmp_path_factory.mktemp("ui-stack")
    # the gateway's model list, read by the API's gateway panel on every request (a test names its cluster there)
    gateway_config = tmp / "gateway.json"
    gateway_config.write_text('{"models": []}')
    # a generous health timeout: on a loaded 2-core machine a worker may take over a second to answer the ping
    stack = Stack(tmp, database.url, CHAINPLAN_FRONTEND_DIST=str(ui_dist),
                  CHAINPLAN_HEALTH_TIMEOUT_S="3", CHAINPLAN_GATEWAY_CONFIG=str(gateway_config))
    stack.gateway_config = gateway_config
    try:
        stack.manage("migrate", "--noinput", "-v", "0")
        stack.start_web()
        stack.start_worker("ui", concurrency=2)
        yield stack
    finally:
        stack.stop()
        database.drop()


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def user(ui_stack) -> str:
    """A fresh user (with a password) of its own, so tests do not see each other's objects."""
    name = f"ui-{uuid.uuid4().hex[:8]}"
    ui_stack.manage("create_api_user", name, "--password", PASSWORD)
    return name


class ConsoleLog:
    """Console errors and uncaught exceptions of a page.

    A 503 of /api/v1/health/ is not an error of the UI: it is how the service says that no
    worker is alive (the UI then shows its banner), and the browser logs every 5xx it fetches.
    """

    def __init__(self):
        self.errors: list[str] = []

    def _console(self, msg) -> None:
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url", "")
        if "status of 503" in msg.text and url.endswith("/api/v1/health/"):
            return
        self.errors.append(f"console: {msg.text} ({msg.location})")

    def attach(self, page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))


def _page(browser, ui_stack, viewport):
    context = browser.new_context(viewport=viewport, base_url=ui_stack.url, accept_downloads=True)
    context.set_default_timeout(20_000)
    log = ConsoleLog()
    pg = context.new_page()
    log.attach(pg)
    pg.console_log = log
    return context, pg, log


@pytest.fixture
def page(browser, ui_stack):
    """A 1366x768 page on the stack; fails the test on any console error or uncaught exception."""
    context, pg, log = _page(browser, ui_stack, {"width": 1366, "height": 768})
    yield pg
    context.close()
    assert not log.errors, "browser console errors:\n" + "\n".join(log.errors)


@pytest.fixture
def phone(browser, ui_stack):
    """A 390x844 page (a phone held upright), with the same console checks."""
    context, pg, log = _page(browser, ui_stack, {"width": 390, "height": 844})
    yield pg
    context.close()
    assert not log.errors, "browser console errors:\n" + "\n".join(log.errors)


def shot(page, name: str, full_page: bool = True) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def sign_in(page, username: str, password: str = PASSWORD) -> None:
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("header.topbar")
