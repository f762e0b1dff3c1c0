"""The status page in a real browser (Debian's chromium driven by Playwright), served by real
`near-failover agent` processes on an emulated localnet."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agent_cluster import AgentCluster, start_agent_cluster, stop_agent_cluster

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
# The system browser, never a downloaded one; no network beyond loopback, no background traffic.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentCluster]:
    running = start_agent_cluster(tmp_path_factory.mktemp("page"))
    try:
        yield running
    finally:
        stop_agent_cluster(running)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`make system-packages`, or apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield launched
        finally:
            launched.close()


def test_page_shows_role_leader_members_and_production(cluster: AgentCluster, browser: object, tmp_path: Path) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    leader, generation = cluster.leader()
    (standby,) = [n for n in cluster.apis if n != leader]

    for node, role in ((leader, "leader"), (standby, "standby")):
        origin = cluster.apis[node]
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        requests: list[str] = []
        problems: list[str] = []
        page.on("request", lambda r, seen=requests: seen.append(r.url))
        page.on("console", lambda m, seen=problems: m.type == "error" and seen.append(m.text))
        page.on("pageerror", lambda e, seen=problems: seen.append(str(e)))
        try:
            page.goto(origin + "/", timeout=WAIT_MS)
            expect(page.locator("#role")).to_have_text(role, timeout=WAIT_MS)
            expect(page.locator("#leader")).to_have_text(leader, timeout=WAIT_MS)
            expect(page.locator("#generation")).to_contain_text(f"generation {generation}", timeout=WAIT_MS)
            expect(page.locator("#node")).to_have_text(node)
            expect(page).to_have_title(re.compile(rf"^{node}: {role}"))
            for member, member_role in ((leader, "leader"), (standby, "standby")):
                row = page.locator(f'#members tr[data-member="{member}"]')
                expect(row).to_contain_text(member_role, timeout=WAIT_MS)
                expect(row).to_contain_text("healthy")
            for kind in ("blocks", "chunks", "endorsements"):
                threshold = 70 if kind == "endorsements" else 80
                expect(page.locator(f'#production [data-kind="{kind}"]')).to_have_text(
                    re.compile(rf"^\d+ / \d+ = \d+\.\d% \(kickout below {threshold}%\)$"), timeout=WAIT_MS
                )
            expect(page.locator("#paused")).to_have_text("active")
            expect(page.locator("#conn")).to_contain_text("updated")
            page.screenshot(path=str(tmp_path / f"status-{node}.png"), full_page=True)
        finally:
            page.close()
        # Self-contained: everything came from the agent, and the inline script ran under the
        # page's Content-Security-Policy without a violation.
        assert requests and all(url.startswith(origin + "/") for url in requests), requests
        assert {u.removeprefix(origin) for u in requests} >= {"/", "/status", "/cluster"}
        assert problems == []


def test_page_follows_pause_and_resume(cluster: AgentCluster, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    leader, _ = cluster.leader()
    page = browser.new_page()
    try:
        page.goto(cluster.apis[leader] + "/", timeout=WAIT_MS)
        expect(page.locator("#paused")).to_have_text("active", timeout=WAIT_MS)
        assert cluster.post(leader, "/pause", headers=cluster.auth).status_code == 200
        expect(page.locator("#paused")).to_have_text("paused", timeout=WAIT_MS)
        expect(page.locator("#paused-store")).to_contain_text("near-failover resume")
        assert cluster.post(leader, "/resume", headers=cluster.auth).status_code == 200
        expect(page.locator("#paused")).to_have_text("active", timeout=WAIT_MS)
    finally:
        page.close()
