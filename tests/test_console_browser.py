"""The operator console in a real headless browser: Debian's chromium driven by Playwright.

A server (the MCP app, ``/metrics`` and ``/console``, as ``serve --http`` builds it) runs on
127.0.0.1 over a service on a fake kernel; the browser logs in with the token, approves one
change and denies another, and after each click the test checks the approval store, the audit
log and what the server does with the decision. Under ``CI=true`` a missing Playwright or
chromium fails these tests (``.ci/run`` installs both); elsewhere they skip and say why.
Set ``LUMOS_CONSOLE_SCREENSHOT=FILE`` to keep a screenshot of the page (the README's).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from lumos_mcp.audit import iter_records
from lumos_mcp.errors import ApprovalRequiredError
from lumos_mcp.http_auth import auth_settings
from lumos_mcp.http_server import HttpLimits, build_app
from lumos_mcp.server import build_server
from lumos_mcp.service import Service
from lumos_mcp.web import operator_routes
from tests.http_helpers import free_port

POLICY = str(Path(__file__).parent / "data" / "policy-test.toml")
TOKEN = "console-test-token-0123456789"
CHROMIUM = os.environ.get("LUMOS_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.slow


def _need_browser() -> None:
    missing = None
    if importlib.util.find_spec("playwright") is None:
        missing = "playwright is not installed (pip install -e '.[test]')"
    elif not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        missing = f"no chromium at {CHROMIUM} (apt-get install chromium)"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {missing}")
        pytest.skip(missing)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for the module (starting it is most of these tests' time)."""
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def served(make_service: Callable[..., Service]) -> Iterator[tuple[Service, str]]:
    """A started service with two changes awaiting approval and one armed, served on 127.0.0.1."""
    _need_browser()
    service = make_service(policy=POLICY)
    port = free_port()
    verifier, auth = auth_settings(TOKEN, "127.0.0.1", port)
    app = build_app(
        build_server(service, token_verifier=verifier, auth=auth),
        "127.0.0.1",
        HttpLimits(),
        extra_routes=operator_routes(service, TOKEN, "127.0.0.1", port),
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        started = threading.Event()
        for _ in range(200):  # server.started flips once uvicorn listens
            if server.started:
                started.set()
                break
            thread.join(0.05)
        assert started.is_set(), "uvicorn did not start"
        yield service, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def decisions(service: Service) -> list[dict[str, Any]]:
    return [r for r in iter_records(service.audit.path) if r["event"] in ("approval_granted", "approval_denied")]


def test_an_operator_logs_in_approves_one_change_and_denies_another_in_a_real_browser(
    served: tuple[Service, str], browser: Any
) -> None:
    from playwright.sync_api import expect

    service, base = served
    kept = service.stage({"cgroup.batch.cpu_weight": 150}, rationale="the api group waits behind batch")
    dropped = service.stage({"cgroup.batch.cpu_weight": 120}, rationale="a smaller step, in case")
    first = service.request_approval(kept.tx.id)
    second = service.request_approval(dropped.tx.id)
    armed = service.stage({"vm.swappiness": 20}, confirm_within_s=300)
    service.apply(armed.tx.id)

    context = browser.new_context(viewport={"width": 1100, "height": 1400})
    try:
        page = context.new_page()
        failed_requests: list[str] = []
        page.on("requestfailed", lambda r: failed_requests.append(r.url))
        page.on("request", lambda r: None if r.url.startswith(base) else failed_requests.append(r.url))

        page.goto(f"{base}/console")
        page.fill("#token", "not-the-token-0123456789")
        page.click("#login")
        expect(page.locator("#token")).to_be_visible()  # still the login page
        page.fill("#token", TOKEN)
        page.click("#login")

        card = page.locator(f'.approval[data-approval="{first.id}"]')
        expect(card).to_be_visible()
        expect(card.locator(".diff")).to_contain_text("cgroup.batch.cpu_weight")
        expect(card.locator(".after")).to_contain_text("150")
        expect(card.locator(".rationale")).to_contain_text("the api group waits behind batch")
        expect(card.locator(".verdict")).to_contain_text("allowed with approval")
        expect(card.locator(".expiry")).to_have_text(re.compile(r"^\d+:\d\d$"))
        expect(page.locator(f'.armed[data-tx="{armed.tx.id}"] .deadline')).to_have_text(re.compile(r"^[45]:\d\d$"))
        expect(page.locator('svg[data-knob="vm.swappiness"] .mark.apply')).to_have_count(1)
        expect(page.locator("#telemetry")).not_to_be_empty()
        shot = os.environ.get("LUMOS_CONSOLE_SCREENSHOT")
        if shot:
            page.screenshot(path=shot, full_page=True)

        # a POST without the page's CSRF token is refused, whatever the cookie
        status = page.evaluate(
            """async (id) => (await fetch(`/console/api/approvals/${id}/approve`, {method: "POST",
                headers: {"Content-Type": "application/json"}, body: JSON.stringify({digest: "x"})})).status""",
            first.id,
        )
        assert status == 403
        assert service.approvals.list(status="pending") != []
        assert decisions(service) == []

        card.locator(".note").fill("checked the run queue")
        card.locator("button.approve").click()
        expect(page.locator("#message")).to_contain_text("granted")
        expect(card).to_have_count(0)
        granted = next(a for a in service.approvals.list(status=None) if a.id == first.id)
        assert (granted.status, granted.decided_by, granted.note) == ("granted", "console", "checked the run queue")
        (record,) = decisions(service)
        assert (record["event"], record["approval"], record["digest"]) == (
            "approval_granted",
            first.id,
            kept.tx.digest,
        )
        assert (record["via"], record["by"]) == ("operator", "console")

        page.locator(f'.approval[data-approval="{second.id}"] button.deny').click()
        expect(page.locator("#message")).to_contain_text("denied")
        expect(page.locator(".approval")).to_have_count(0)
        denied = next(a for a in service.approvals.list(status=None) if a.id == second.id)
        assert denied.status == "denied"
        assert [r["event"] for r in decisions(service)] == ["approval_granted", "approval_denied"]

        assert failed_requests == []  # no external asset, nothing failed to load
    finally:
        context.close()

    # the decisions bind: the approved change applies, the denied one cannot
    service.apply(kept.tx.id)
    assert service.backend.read("cgroup.batch.cpu_weight").value == 150
    service.revert(kept.tx.id)
    with pytest.raises(ApprovalRequiredError):
        service.apply(dropped.tx.id)


def test_the_console_refuses_a_stale_digest_and_unauthenticated_calls(
    served: tuple[Service, str], browser: Any
) -> None:
    service, base = served
    staged = service.stage({"cgroup.batch.cpu_weight": 150})
    approval = service.request_approval(staged.tx.id)
    context = browser.new_context()
    try:
        page = context.new_page()
        assert page.request.get(f"{base}/console/api/state").status == 401
        assert page.request.get(f"{base}/metrics").status == 401
        page.goto(f"{base}/console")
        page.fill("#token", TOKEN)
        page.click("#login")
        page.wait_for_selector(f'.approval[data-approval="{approval.id}"]')
        status = page.evaluate(
            """async ([id, csrf]) => {
                const state = await (await fetch("/console/api/state")).json();
                return (await fetch(`/console/api/approvals/${id}/approve`, {method: "POST",
                  headers: {"Content-Type": "application/json", "X-CSRF-Token": state.csrf},
                  body: JSON.stringify({digest: "0".repeat(64)})})).status;
            }""",
            [approval.id, ""],
        )
        assert status == 409
        assert [a.status for a in service.approvals.list(status=None)] == ["pending"]
    finally:
        context.close()
