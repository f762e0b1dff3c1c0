"""The agent's REST API, served by real `near-failover agent` processes on an emulated localnet.

The tests run in file order on one cluster (val-a and val-b, sqlite lease): reads first, then the
token rules and pause/resume, a standby that loses its staged key, a switchover through the API,
and last the failsafe under a lease-store outage (which may leave the cluster without a leader).
"""

from __future__ import annotations

import asyncio
import json
import re
import select
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from near_failover.api.app import create_app
from near_failover.api.server import ApiServer, ApiServerError, serve
from near_failover.ha.agent import Agent
from near_failover.ha.stores import open_lease_store
from near_failover.inventory import load_inventory
from near_failover.procedures.journal import Journal
from tests.integration.agent_cluster import AgentCluster, free_port, start_agent_cluster, stop_agent_cluster
from tests.integration.localnet_support import wait_for

pytestmark = pytest.mark.integration

SNAPSHOT_KEYS = {
    "node", "role", "leader", "generation", "healthy", "problems", "head", "paused", "failovers_total",
    "last_failover_seconds", "lease_remaining", "updated_at", "production", "account_id", "chain_id", "signing",
    "store_up", "watchdog_up", "failsafe_active", "epoch", "production_at", "phase", "last_decision",
}
POSTS: list[tuple[str, dict[str, Any] | None]] = [
    ("/pause", None), ("/resume", None), ("/switchover", {"to": "val-b"}), ("/failsafe", {"leader": "val-a", "generation": 1}),
    ("/handover", {"source": "val-a", "generation": 1}),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentCluster]:
    running = start_agent_cluster(tmp_path_factory.mktemp("api"))
    try:
        yield running
    finally:
        stop_agent_cluster(running)


def roles(c: AgentCluster) -> tuple[str, str]:
    leader, _ = c.leader()
    (other,) = [n for n in c.apis if n != leader]
    return leader, other


def metric_values(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


AGENT_SERIES: set[str] = set()  # every series name the agents exported after a test of this module


@pytest.fixture(autouse=True)
def scrape_the_agents_after_each_test(cluster: AgentCluster) -> Iterator[None]:
    yield
    for node in cluster.apis:
        try:
            AGENT_SERIES.update(series_names(cluster.get(node, "/metrics").text))
        except httpx.HTTPError:
            continue  # an agent a test stopped


def test_status_health_cluster_metrics_of_leader_and_standby(cluster: AgentCluster) -> None:
    leader, standby = roles(cluster)
    _, generation = cluster.leader()

    lead = cluster.status(leader)
    assert set(lead) == SNAPSHOT_KEYS
    assert (lead["node"], lead["role"], lead["leader"], lead["generation"]) == (leader, "leader", leader, generation)
    assert lead["healthy"] is True and lead["problems"] == []
    assert lead["lease_remaining"] > 0 and lead["head"] > 0
    assert set(lead["production"]) == {"blocks", "chunks", "endorsements"}
    # Why the last loop did what it did: a leader claimed the lease or renews it, a standby waits.
    assert lead["phase"] == "leader" and lead["last_decision"]["kind"] in ("claim", "renew") and lead["last_decision"]["reason"]
    assert 0 < time.time() - lead["last_decision"]["at"] < 60
    stand = cluster.status(standby)
    assert (stand["node"], stand["role"], stand["leader"], stand["generation"], stand["lease_remaining"]) == (standby, "standby", leader, generation, None)
    assert stand["phase"] == "standby" and stand["last_decision"]["kind"] == "wait" and stand["last_decision"]["reason"]

    for node in (leader, standby):
        health = cluster.get(node, "/health")
        assert health.status_code == 200, health.text
        assert set(health.json()) == SNAPSHOT_KEYS and health.json()["node"] == node

        view = cluster.cluster(node)
        assert view["leader"]["member"] == leader and view["leader"]["generation"] == generation
        assert view["paused"] is False
        members = {m["name"]: m for m in view["members"]}
        assert set(members) == {leader, standby}
        assert members[leader]["role"] == "leader" and members[standby]["role"] == "standby"
        assert members[standby]["api_url"] == cluster.apis[standby]

        scrape = cluster.get(node, "/metrics")
        assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
        values = metric_values(scrape.text)
        role = "leader" if node == leader else "standby"
        me = (("account_id", cluster.net.pool()), ("node", node))
        assert values["near_failover_role"][(*me, ("role", role))] == 1.0
        assert sum(values["near_failover_role"].values()) == 1.0
        assert values["near_failover_lease_generation"][me] == generation
        for name, value in (("healthy", 1.0), ("paused", 0.0), ("automatic_failovers_total", 0.0), ("lease_store_up", 1.0),
                            ("watchdog_up", 1.0), ("failsafe_active", 0.0), ("neard_signing", float(node == leader))):
            assert values[f"near_failover_{name}"][me] == value, name
        assert values.get("near_failover_standby_ready", {}).get(me) == (None if node == leader else 1.0)
        (info,) = values["near_failover_validator_info"]
        assert dict(info)["chain_id"] == cluster.status(node)["chain_id"]
        assert ("near_failover_lease_remaining_seconds" in values) == (node == leader)

    history = cluster.get(leader, "/history?limit=5")
    assert history.status_code == 200 and isinstance(history.json()["runs"], list)
    for bad in ("0", "100000", "x"):
        refused = cluster.get(leader, f"/history?limit={bad}")
        assert refused.status_code == 422 and "limit" in refused.json()["message"], refused.text
    unknown = cluster.get(leader, "/nope")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not-found"


def test_posts_need_the_bearer_token(cluster: AgentCluster) -> None:
    leader, standby = roles(cluster)
    wrong = [{}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {cluster.token}"}, {"Authorization": f"Bearer {cluster.token}x"}]
    for path, body in POSTS:
        for headers in wrong:
            answer = cluster.post(leader, path, json=body, headers=headers)
            assert answer.status_code == 401, (path, headers, answer.text)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert answer.json()["error"] in ("unauthorized", "invalid-token")
            assert "api_token_file" in answer.json()["message"]
            assert cluster.token not in answer.text
    # A malformed body without the token is refused for the token, before the body is read.
    assert cluster.post(leader, "/failsafe", json={"nonsense": True}).status_code == 401
    # Nothing of the refused requests happened.
    assert cluster.cluster(leader)["paused"] is False
    assert cluster.cluster(leader)["leader"]["member"] == leader

    paused = cluster.post(standby, "/pause", headers=cluster.auth)
    assert paused.status_code == 200 and paused.json() == {"paused": True}
    for node in (leader, standby):
        assert cluster.cluster(node)["paused"] is True
        wait_for(lambda n=node: cluster.status(n)["paused"] is True, 10, f"{node} to see the pause")
    assert metric_values(cluster.get(leader, "/metrics").text)["near_failover_paused"][(("account_id", cluster.net.pool()), ("node", leader))] == 1.0

    resumed = cluster.post(leader, "/resume", headers=cluster.auth)
    assert resumed.status_code == 200 and resumed.json() == {"paused": False}
    wait_for(lambda: not any(cluster.status(n)["paused"] for n in (leader, standby)), 10, "both agents to see the resume")

    # A switchover must be sent to the leader: the standby's agent refuses it, saying so.
    refused = cluster.post(standby, "/switchover", json={"to": standby}, headers=cluster.auth)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "refused" and "not the leader" in refused.json()["message"]
    for target, why in (("val-z", "no node named 'val-z'"), (leader, "already holds the validator")):
        wrong = cluster.post(leader, "/switchover", json={"to": target}, headers=cluster.auth)
        assert wrong.status_code == 409 and wrong.json()["error"] == "refused" and why in wrong.json()["message"], wrong.text
    invalid = cluster.post(leader, "/switchover", json={"to": standby, "mode": "teleport"}, headers=cluster.auth)
    assert invalid.status_code == 422 and "mode" in invalid.json()["message"], invalid.text
    assert cluster.cluster(leader)["leader"]["member"] == leader


def _raw_post(url: str, head: bytes, chunk: bytes, most: int) -> tuple[bytes, int]:
    """Send a request by hand (so the body can be huge or chunked), a chunk at a time until the
    server answers or ``most`` bytes went; return the answer's head and how many body bytes went."""
    parts = urlsplit(url)
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
        conn.sendall(head)
        while sent < most and not select.select([conn], [], [], 0.01)[0]:
            try:
                conn.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer and (data := conn.recv(65536)):
            answer += data
    return answer, sent


def test_a_huge_body_is_refused_with_413_before_it_is_read(cluster: AgentCluster) -> None:
    """200 MB declared with a valid token: 413 at once, after a small part was sent (the old agent
    read it whole, to 700 MB); a chunked body without a length is cut at 64 KiB the same way."""
    leader, _ = roles(cluster)
    url = cluster.apis[leader]
    auth = b"Authorization: " + cluster.auth["Authorization"].encode() + b"\r\nContent-Type: application/json\r\n"
    declared = 200 * 1024 * 1024
    head = b"POST /pause HTTP/1.1\r\nHost: agent\r\n" + auth + b"Content-Length: %d\r\n\r\n" % declared
    answer, sent = _raw_post(url, head, b"{" * (1024 * 1024), declared)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < declared // 4, sent
    chunked = b"POST /pause HTTP/1.1\r\nHost: agent\r\n" + auth + b"Transfer-Encoding: chunked\r\n\r\n"
    answer, sent = _raw_post(url, chunked, b"%x\r\n" % (64 * 1024) + b"[" * (64 * 1024) + b"\r\n", declared)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < declared // 4, sent
    refused = cluster.post(leader, "/pause", json={"padding": "x" * 100_000}, headers=cluster.auth)
    assert refused.status_code == 413 and refused.json()["error"] == "body-too-large", refused.text
    assert "64 KiB" in refused.json()["message"]
    assert cluster.status(leader)["paused"] is False  # nothing was acted on


async def test_an_agent_without_a_token_refuses_posts_and_stops_cleanly(cluster: AgentCluster) -> None:
    """A real Agent (its loop not running, so it is still "starting") served by `serve` without a token."""
    inventory = load_inventory(cluster.net.inventory)
    port = free_port()
    with Journal(inventory.journal.path) as journal:
        agent = Agent(inventory, "val-a", open_lease_store(inventory), journal, state_dir=cluster.net.directory / "no-token-agent")
        ready, stop = asyncio.Event(), asyncio.Event()
        server = asyncio.create_task(serve(create_app(agent, None), "127.0.0.1", port, ready=ready, stop=stop))
        await asyncio.wait_for(ready.wait(), 10)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False) as client:
            for path, body in POSTS:
                for headers in ({}, {"Authorization": f"Bearer {cluster.token}"}):
                    answer = await client.post(path, json=body, headers=headers)
                    assert answer.status_code == 403, answer.text
                    assert answer.json()["error"] == "no-token-configured"
                    assert "api_token_file" in answer.json()["message"]
            health = await client.get("/health")
            assert health.status_code == 503 and health.json()["role"] == "starting"
            # A second server on the same address is refused with a clear error, not sys.exit.
            with pytest.raises(ApiServerError, match=f"127.0.0.1:{port}"):
                ApiServer(create_app(agent, None), "127.0.0.1", port)
        stop.set()
        await asyncio.wait_for(server, 10)
    async with httpx.AsyncClient(timeout=2, trust_env=False) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/status")


def test_health_is_503_while_the_standby_has_no_staged_key(cluster: AgentCluster) -> None:
    _, standby = roles(cluster)
    spec = load_inventory(cluster.net.inventory).node(standby)
    key_store = Path(str(spec.key_store))
    aside = key_store.with_name(key_store.name + ".aside")
    key_store.rename(aside)
    try:
        answer = wait_for(lambda: (a := cluster.get(standby, "/health")).status_code == 503 and a, 15, "the standby's health to fail")
        body = answer.json()
        assert body["healthy"] is False and body["role"] == "standby"
        assert any("staged key" in p for p in body["problems"]), body["problems"]
        values = metric_values(cluster.get(standby, "/metrics").text)
        me = (("account_id", cluster.net.pool()), ("node", standby))
        assert values["near_failover_healthy"][me] == 0.0 and values["near_failover_standby_ready"][me] == 0.0
        assert values["near_failover_health_problem"][(*me, ("problem", "staged_key_missing"))] == 1.0
    finally:
        aside.rename(key_store)
    wait_for(lambda: cluster.get(standby, "/health").status_code == 200, 15, "the standby to be healthy again")


def test_switchover_through_the_api_then_history(cluster: AgentCluster) -> None:
    old, new = roles(cluster)
    _, generation = cluster.leader()

    moved = cluster.post(old, "/switchover", json={"to": new, "mode": "hot-swap"}, headers=cluster.auth)
    assert moved.status_code == 202, moved.text
    run_id = moved.json()["run_id"]
    result = wait_for(lambda: cluster.get(old, f"/runs/{run_id}").json()["result"], 120, "the switchover's result")
    assert (result["ok"], result["kind"], result["from"], result["to"]) == (True, "switchover", old, new)

    wait_for(lambda: cluster.leader()[0] == new, 20, f"{new} to hold the lease")
    assert cluster.leader()[1] > generation
    wait_for(lambda: cluster.get(new, "/health").status_code == 200 and cluster.status(new)["role"] == "leader", 20, f"{new} healthy as leader")
    fenced = wait_for(lambda: (a := cluster.get(old, "/health")).status_code == 503 and a.json()["role"] == "fenced" and a, 20, f"{old} fenced")
    assert fenced.json()["healthy"] is False

    runs = cluster.get(old, "/history?limit=1").json()["runs"]
    assert len(runs) == 1
    run = runs[0]
    assert (run["kind"], run["from"], run["to"], run["outcome"], run["id"]) == ("switchover", old, new, "ok", result["run_id"])
    steps = [s["name"] for s in run["steps"]]
    assert {"preflight", "fence", "activate", "verify"} <= set(steps), steps
    assert all(s["outcome"] == "ok" for s in run["steps"])
    # The journal is shared by the agents on this host: the new leader's API tells the same story.
    assert cluster.get(new, "/history?limit=1").json()["runs"][0]["id"] == run["id"]

    values = metric_values(cluster.get(new, "/metrics").text)
    me = (("account_id", cluster.net.pool()), ("node", new))
    assert values["near_failover_role"][(*me, ("role", "leader"))] == 1.0
    assert values["near_failover_lease_generation"][me] == cluster.leader()[1]
    # The move just made, from the journal: how long it took and what the pool missed.
    assert 0 < values["near_failover_last_move_duration_seconds"][tuple(sorted((*me, ("move", "switchover"))))] < 600
    assert {dict(k)["kind"]: v for k, v in values["near_failover_last_move_missed_duties"].items()} == result["missed"]
    cluster.net.assert_no_double_sign()


def test_failsafe_confirmation(cluster: AgentCluster) -> None:
    leader, other = roles(cluster)
    _, generation = cluster.leader()
    ask = {"leader": leader, "generation": generation}

    assert cluster.post(other, "/failsafe", json=ask).status_code == 401
    invalid = cluster.post(other, "/failsafe", json={"leader": leader}, headers=cluster.auth)
    assert invalid.status_code == 422 and "generation" in invalid.json()["message"]
    # With the store answering, nobody confirms: the leader must renew through the store.
    answer = cluster.post(other, "/failsafe", json=ask, headers=cluster.auth)
    assert answer.status_code == 200 and answer.json() == {"confirmed": False}

    # The lease store goes away (another process holds its file's write lock): the member that
    # sees the outage confirms the leader it knew, and only at that generation.
    store = sqlite3.connect(cluster.lease_file, isolation_level=None, timeout=10)
    try:
        store.execute("BEGIN EXCLUSIVE")
        deadline = time.monotonic() + 20
        while True:
            answer = cluster.post(other, "/failsafe", json=ask, headers=cluster.auth)
            assert answer.status_code == 200, answer.text
            if answer.json()["confirmed"] is True:
                break
            assert time.monotonic() < deadline, "the member never confirmed the leader during the outage"
            time.sleep(0.2)
        for wrong in ({"leader": other, "generation": generation}, {"leader": leader, "generation": generation + 1}):
            assert cluster.post(other, "/failsafe", json=wrong, headers=cluster.auth).json() == {"confirmed": False}
        outage = cluster.get(other, "/cluster")
        assert outage.status_code == 503, outage.text
        assert outage.json()["error"] == "lease-store-unavailable"
        assert str(cluster.lease_file) in outage.json()["message"] and "Traceback" not in outage.text
    finally:
        store.execute("ROLLBACK")
        store.close()
    wait_for(lambda: cluster.get(other, "/cluster").status_code == 200, 15, "the lease store to answer again")


ROOT = Path(__file__).resolve().parents[2]
METRIC_NAME = re.compile(r"\bnear_[A-Za-z0-9_:]+")
SERIES = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*")


def monitored_metrics() -> dict[str, set[str]]:
    """Every metric name a dashboard panel (or annotation) or an alert rule reads -> where."""
    used: dict[str, set[str]] = {}
    dashboard = json.loads((ROOT / "deploy/grafana/near-failover.json").read_text())
    exprs = [(f"panel {p['title']!r}", t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [(f"annotation {a['name']!r}", a["expr"]) for a in dashboard["annotations"]["list"] if "expr" in a]
    exprs += [(f"variable {v['name']!r}", v["definition"]) for v in dashboard["templating"]["list"] if "definition" in v]
    rules = [r for g in yaml.safe_load((ROOT / "deploy/prometheus/near-failover.rules.yml").read_text())["groups"] for r in g["rules"]]
    exprs += [(f"rule {r.get('alert') or r.get('record')!r}", r["expr"]) for r in rules]
    recorded = {r["record"] for r in rules if "record" in r}
    for where, expr in exprs:
        for name in METRIC_NAME.findall(expr):
            if name not in recorded:
                used.setdefault(name, set()).add(where)
    return used


def series_names(exposition: str) -> set[str]:
    """The sample names as Prometheus stores them: the raw text's (a parser would rename
    neard's counter near_build_info, which has no _total)."""
    return {m.group() for line in exposition.splitlines() if not line.startswith("#") and (m := SERIES.match(line))}


def test_every_metric_the_dashboard_and_the_rules_use_is_scraped(cluster: AgentCluster) -> None:
    """A panel or an alert on a misspelt or vanished metric shows nothing and never fires: each
    name must be in a scrape of a running agent or of an emulated neard (neard's own names)."""
    used = monitored_metrics()
    assert {"near_failover_neard_signing", "near_validators_blocks_expected", "near_block_height_head"} <= set(used)
    # Series exist in some states only (a leader's lease left, a last move, a health problem):
    # the agents' series seen after every test of this module count, with the scrape of now.
    scraped = set(AGENT_SERIES)
    for node in cluster.apis:
        scraped |= series_names(cluster.get(node, "/metrics").text)
    neards = 0
    # Every neard of the localnet, val-c's too: earlier tests of this module may have fenced the
    # agents' nodes (a switchover, a failsafe round that ended in a self-fence).
    for node in cluster.net.status()["nodes"]:
        try:
            neard = httpx.get(node["rpc"] + "/metrics", timeout=10, trust_env=False)
        except httpx.ConnectError:
            continue
        neards += 1
        scraped |= series_names(neard.text)
    assert neards
    missing = {name: sorted(where) for name, where in used.items() if name not in scraped}
    assert missing == {}, f"used but exported by neither the agents nor neard: {missing}"
