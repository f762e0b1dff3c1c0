"""The status page in a real browser (Debian's chromium driven by Playwright), served by real
`near-failover agent` processes on an emulated localnet, with a webhook on loopback receiving
their alerts.

`make screenshots` runs this module with NEAR_FAILOVER_SCREENSHOTS=docs: the leader's and the
fenced member's pages are then written to docs/ at 1400x900."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from near_failover.inventory import load_inventory
from tests.integration.agent_cluster import AgentCluster, start_agent_cluster, stop_agent_cluster
from tests.integration.localnet_support import wait_for
from tests.integration.webhook_server import WebhookServer, running_webhook

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
# The system browser, never a downloaded one; no network beyond loopback, no background traffic.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WAIT_MS = 10_000
SCREEN = {"width": 1400, "height": 900}


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookServer]:
    with running_webhook() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, webhook: WebhookServer) -> Iterator[AgentCluster]:
    running = start_agent_cluster(tmp_path_factory.mktemp("page"), alerts=[{"kind": "json", "url": webhook.url("/hook")}])
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


def screenshot_dir(tmp_path: Path) -> Path:
    """docs/ under `make screenshots`, else the test's own directory."""
    chosen = os.environ.get("NEAR_FAILOVER_SCREENSHOTS")
    return Path(chosen) if chosen else tmp_path


def events(webhook: WebhookServer, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [body for got in list(webhook.received) if (body := got.json())["event"] == kind]


def test_page_shows_role_leader_members_and_production(cluster: AgentCluster, browser: object, tmp_path: Path) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    leader, generation = cluster.leader()
    (standby,) = [n for n in cluster.apis if n != leader]
    chain_id = load_inventory(cluster.net.inventory).validator.chain_id

    for node, role in ((leader, "leader"), (standby, "standby")):
        origin = cluster.apis[node]
        page = browser.new_page(viewport=SCREEN)
        requests: list[str] = []
        problems: list[str] = []
        page.on("request", lambda r, seen=requests: seen.append(r.url))
        page.on("console", lambda m, seen=problems: m.type == "error" and seen.append(m.text))
        page.on("pageerror", lambda e, seen=problems: seen.append(str(e)))
        try:
            page.goto(origin + "/", timeout=WAIT_MS)
            expect(page.locator("#role")).to_have_text(role, timeout=WAIT_MS)
            expect(page.locator("#pool")).to_have_text(cluster.net.pool())
            expect(page.locator("#chain")).to_have_text(chain_id)
            expect(page.locator("#leader")).to_have_text(leader, timeout=WAIT_MS)
            expect(page.locator("#generation")).to_contain_text(f"generation {generation}", timeout=WAIT_MS)
            expect(page.locator("#node")).to_have_text(node)
            expect(page).to_have_title(re.compile(rf"^{node}: {role}"))
            expect(page.locator("#readiness")).to_have_text("signs for the pool" if role == "leader" else "ready to take over")
            for member, member_role in ((leader, "leader"), (standby, "standby")):
                row = page.locator(f'#members tr[data-member="{member}"]')
                expect(row).to_contain_text(member_role, timeout=WAIT_MS)
                expect(row).to_contain_text("healthy")
                expect(row.locator("td[data-ready]")).to_have_text("signs for the pool" if member == leader else "ready to take over")
                # Each member's name links to its own agent's page.
                expect(row.locator("a")).to_have_attribute("href", cluster.apis[member] + "/")
                expect(row).not_to_have_class(re.compile(r"\bstale\b"))
            expect(page.locator("#counts")).to_have_text("2 members")
            expect(page.locator("#counts-detail")).to_have_text("2 healthy, 1 standby ready, 0 fenced")
            expect(page.locator("#failovers")).to_have_text("0")
            expect(page.locator("#epoch-text")).to_have_text(re.compile(r"^epoch from height \d+, \d+ blocks: \d+\.\d% elapsed, \d+ blocks left$"), timeout=WAIT_MS)
            for kind in ("blocks", "chunks", "endorsements"):
                threshold = 70 if kind == "endorsements" else 80
                figure = page.locator(f'#production div.num[data-kind="{kind}"]')
                expect(figure).to_have_text(re.compile(rf"^\d+ / \d+ = \d+\.\d% \(kickout below {threshold}%\)$"), timeout=WAIT_MS)
                expect(figure).not_to_have_class(re.compile(r"\bstale\b"))
                expect(page.locator(f'#production div.proj[data-kind="{kind}"]')).to_have_text(
                    re.compile(rf"^projected: \d+\.\d% at the epoch's end; can miss \d+ more {kind} this epoch$"), timeout=WAIT_MS)
            expect(page.locator("#production-age")).to_have_text("")
            expect(page.locator("#paused")).to_have_text("active")
            expect(page.locator("#conn")).to_contain_text("updated")
            expect(page.locator("#history li").first).to_be_visible(timeout=WAIT_MS)
            page.screenshot(path=str(tmp_path / f"status-{node}.png"), full_page=True)
        finally:
            page.close()
        # Self-contained: everything came from the agent, and the inline script ran under the
        # page's Content-Security-Policy without a violation.
        assert requests and all(url.startswith(origin + "/") for url in requests), requests
        assert {u.removeprefix(origin) for u in requests} >= {"/", "/status", "/cluster", "/history?limit=8"}
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


def test_an_unready_standby_says_why_and_is_alerted(cluster: AgentCluster, browser: object, webhook: WebhookServer) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    leader, _ = cluster.leader()
    (standby,) = [n for n in cluster.apis if n != leader]
    key_store = Path(str(load_inventory(cluster.net.inventory).node(standby).key_store))
    aside = key_store.with_name(key_store.name + ".aside")
    page = browser.new_page()
    key_store.rename(aside)
    try:
        page.goto(cluster.apis[standby] + "/", timeout=WAIT_MS)
        expect(page.locator("#readiness")).to_have_text("NOT ready", timeout=WAIT_MS)
        expect(page.locator("#readiness-reason")).to_contain_text("no valid staged key")
        page.goto(cluster.apis[leader] + "/", timeout=WAIT_MS)
        expect(page.locator(f'#members tr[data-member="{standby}"] td[data-ready]')).to_have_text(
            re.compile(r"^NOT ready: no valid staged key"), timeout=WAIT_MS)
        expect(page.locator("#counts-detail")).to_have_text("1 healthy, 0 standby ready, 0 fenced")
        # The agent alerts once the standby has been unready for 3 ttls (12 s here).
        (alert,) = wait_for(lambda: events(webhook, "standby_unready"), 40, "the standby_unready alert")
        assert alert["node"] == standby and "staged key" in alert["reason"]
    finally:
        page.close()
        aside.rename(key_store)
    wait_for(lambda: cluster.get(standby, "/health").status_code == 200, 15, "the standby to be ready again")


def test_a_fenced_members_stale_figures_are_marked(cluster: AgentCluster, browser: object, webhook: WebhookServer, tmp_path: Path) -> None:
    """After a switchover through the API the old leader is fenced: its neard is stopped, so the
    production figures its page last read go stale, and must say so rather than look current."""
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    old, _ = cluster.leader()
    (new,) = [n for n in cluster.apis if n != old]
    answer = cluster.post(old, "/switchover", json={"to": new}, headers=cluster.auth)
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    result = wait_for(lambda: cluster.get(old, f"/runs/{run_id}").json()["result"], 120, "the switchover's result")
    assert result["ok"], result
    wait_for(lambda: cluster.leader()[0] == new, 30, f"{new} to hold the lease")
    (moved,) = wait_for(lambda: events(webhook, "move"), 20, "the move alert")
    assert moved["node"] == new and moved["details"]["from"] == old and moved["details"]["outcome"] == "ok"

    shots = screenshot_dir(tmp_path)
    page = browser.new_page(viewport=SCREEN)
    try:
        page.goto(cluster.apis[old] + "/", timeout=WAIT_MS)
        expect(page.locator("#role")).to_have_text("fenced", timeout=WAIT_MS)
        expect(page.locator("#readiness")).to_have_text("NOT ready")
        expect(page.locator("#readiness-reason")).to_contain_text("unmask it")
        # Ten seconds after the fence its figures are stale: every one of them carries the marker.
        stale = re.compile(r"\bstale\b")
        expect(page.locator("#production-age .stale-mark")).to_have_text(re.compile(r"^stale: \d+\.\d s old$"), timeout=20_000)
        expect(page.locator("#production")).to_have_class(stale)
        expect(page.locator("#epoch")).to_have_class(stale)
        for kind in ("blocks", "chunks", "endorsements"):
            expect(page.locator(f'#production div.num[data-kind="{kind}"]')).to_have_class(stale)
            expect(page.locator(f'#production div.proj[data-kind="{kind}"]')).to_have_class(stale)
        age = float(page.locator("#production-age .stale-mark").get_attribute("data-stale-age") or 0)
        assert age >= 10
        expect(page.locator("#counts-detail")).to_have_text(re.compile(r"^\d healthy, 0 standby ready, 1 fenced$"), timeout=WAIT_MS)
        expect(page.locator('#history li').first).to_contain_text("switchover", timeout=WAIT_MS)
        page.screenshot(path=str(shots / "status-page-fenced.png"))

        page.goto(cluster.apis[new] + "/", timeout=WAIT_MS)
        expect(page.locator("#role")).to_have_text("leader", timeout=WAIT_MS)
        expect(page.locator("#production-age")).to_have_text("", timeout=WAIT_MS)
        expect(page.locator('#production div.num[data-kind="blocks"]')).not_to_have_class(stale)
        expect(page.locator('#history li').first).to_contain_text("switchover", timeout=WAIT_MS)
        page.screenshot(path=str(shots / "status-page-leader.png"))
    finally:
        page.close()
    cluster.net.assert_no_double_sign()
