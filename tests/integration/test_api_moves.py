"""Moves through the agent API, over TLS, and the load balancers' checks, end to end.

Three `near-failover agent` processes on an emulated localnet (sqlite lease), their APIs over
https with a CA the test makes; val-c's agent is given another CA, so its own calls to the
others (the failsafe) cannot verify them. In file order on one cluster:
1. /leader and /standby on each member; a wrong CA and plain http refused, the CLI's too;
2. a switchover asked by POST (after an interrupted run, taken over), answered 202 and followed
   by run id while the checks are watched;
3. a paused cluster's leader dies; `near-failover failover` goes through val-c's agent (followed,
   printed), proven by chain silence;
4. a store outage with val-c leading: its failsafe calls fail on the wrong CA and it fences itself;
5. POST /failover with force (and its confirmation) to a standby unfenced by the operator;
6. a store outage: val-b leads on the others' failsafe confirmations over TLS.
Then (marked long: `make test-long`), on a localnet with 0.5 s blocks, `switchover --in-window`
through the agents, whose window the journal records.
Every move is checked against the chain's ledger: zero double signs.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from near_failover.inventory import load_inventory
from near_failover.procedures.nodes import open_nodes
from tests.integration.agent_cluster import AgentCluster, start_agent_cluster, stop_agent_cluster
from tests.integration.etcd_server import TlsFiles, make_tls
from tests.integration.localnet_harness import CLI, cli
from tests.integration.localnet_support import wait_for

pytestmark = pytest.mark.integration

NODES = ("val-a", "val-b", "val-c")
POOL = "pool.poolv1.near"
# A locked sqlite store makes every call wait its whole retry_timeout, and a member confirms a
# leader only once its own call has failed: at ttl 4 s only one failsafe round fits before the
# leader's fence margin, often too early. 8 s leaves several (loop_wait + 2 * retry_timeout < ttl).
TTL = 8.0
Checks = dict[str, tuple[int, int]]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("api-tls"))


@pytest.fixture(scope="module")
def wrong_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tls(tmp_path_factory.mktemp("other-ca")).ca


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles, wrong_ca: Path) -> Iterator[AgentCluster]:
    running = start_agent_cluster(tmp_path_factory.mktemp("api-moves"), NODES, tls=tls, lease_variants={"val-c": {"api_ca_file": str(wrong_ca)}},
                                  lease={"ttl": TTL})
    try:
        yield running
    finally:
        stop_agent_cluster(running)


def checks(c: AgentCluster) -> Checks:
    """Each member's (GET /leader, GET /standby) status codes."""
    return {n: (c.get(n, "/leader").status_code, c.get(n, "/standby").status_code) for n in NODES}


def wait_checks(c: AgentCluster, expected: Checks, what: str) -> None:
    try:
        wait_for(lambda: checks(c) == expected, 30, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {checks(c)}\n{c.agent_logs()}") from None


def assert_one_leader_at_most(samples: list[Checks]) -> None:
    for sample in samples:
        assert sum(code == 200 for code, _ in sample.values()) <= 1, sample
        assert all(not (lead == 200 and ready == 200) for lead, ready in sample.values()), sample


def follow(c: AgentCluster, node: str, run_id: int, samples: list[Checks], timeout: float = 120) -> list[dict[str, Any]]:
    """GET /runs/{id} until the move has ended, sampling every member's checks in between."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        answer = c.get(node, f"/runs/{run_id}")
        assert answer.status_code == 200, answer.text
        seen.append(answer.json())
        if not seen[-1]["active"] and seen[-1]["state"] != "in-progress":
            return seen
        samples.append(checks(c))
        assert time.monotonic() < deadline, f"run {run_id} did not end: {seen[-1]}\n{c.agent_logs()}"


def step(run: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in run["steps"] if s["name"] == name)


def agent_log(c: AgentCluster, node: str) -> str:
    return (c.net.directory / f"agent-{node}.log").read_text(errors="replace")


@contextmanager
def store_outage(c: AgentCluster) -> Iterator[None]:
    """Another process holds the sqlite lease store's write lock: every agent's call fails."""
    store = sqlite3.connect(c.lease_file, isolation_level=None, timeout=10)
    try:
        store.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        store.execute("ROLLBACK")
        store.close()


def while_running(proc: subprocess.Popen[str], each: Callable[[], None], timeout: float = 120) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        each()
        assert time.monotonic() < deadline, "the command did not end"
    return proc.communicate(timeout=10)


def test_leader_and_standby_checks_over_tls_and_a_wrong_ca_is_refused(cluster: AgentCluster, wrong_ca: Path) -> None:
    assert all(url.startswith("https://") for url in cluster.apis.values())
    assert checks(cluster) == {"val-a": (200, 503), "val-b": (503, 200), "val-c": (503, 200)}
    assert cluster.get("val-a", "/leader").json()["check"] == "leader"
    assert "does not hold the lease" in cluster.get("val-b", "/leader").json()["check"]
    assert "the leader" in cluster.get("val-a", "/standby").json()["check"]

    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(cluster.apis["val-a"] + "/leader", verify=ssl.create_default_context(cafile=str(wrong_ca)), trust_env=False)
    with pytest.raises(httpx.HTTPError):
        httpx.get(cluster.apis["val-a"].replace("https://", "http://") + "/leader", trust_env=False, timeout=5)

    # The CLI with val-c's inventory (the wrong api_ca_file) does not send the token or the move.
    refused = cli("switchover", "-c", cluster.net.directory / "inventory-val-c.toml", "--to", "val-b", "--yes", check=False)
    assert refused.returncode == 1, refused
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    assert cluster.leader()[0] == "val-a" and cluster.get("val-a", "/history").json()["runs"] == []


def test_switchover_through_the_api_followed_by_run_id(cluster: AgentCluster) -> None:
    _, generation = cluster.leader()
    # A run whose process died: the agent refuses to start over it, as the CLI does, until told.
    journal = load_inventory(cluster.net.inventory).journal.path
    subprocess.run([sys.executable, "-c", "import sys; from near_failover.procedures.journal import Journal; "
                    "Journal(sys.argv[1]).start_run(sys.argv[2], 'switchover', 'hot-swap', 'val-a', 'val-b')", str(journal), POOL], check=True)
    body = {"to": "val-b", "mode": "hot-swap"}
    refused = cluster.post("val-a", "/switchover", json=body, headers=cluster.auth)
    assert refused.status_code == 409 and "interrupted" in refused.json()["message"], refused.text

    samples: list[Checks] = []
    started = cluster.post("val-a", "/switchover", json={**body, "take_over_interrupted": True}, headers=cluster.auth)
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    assert started.json()["run"] == f"/runs/{run_id}"
    busy = cluster.post("val-a", "/switchover", json=body, headers=cluster.auth)
    assert busy.status_code == 409 and busy.json()["error"] == "move-running" and f"/runs/{run_id}" in busy.json()["message"], busy.text
    seen = follow(cluster, "val-a", run_id, samples)

    # The steps appeared as they happened: some while the move was in progress, one still running.
    assert any(r["state"] == "in-progress" and 0 < len(r["steps"]) < 6 and r["steps"][-1]["outcome"] is None for r in seen[:-1]), seen[:3]
    run, result = seen[-1], seen[-1]["result"]
    assert (result["ok"], result["kind"], result["from"], result["to"], result["run_id"]) == (True, "switchover", "val-a", "val-b", run_id), result
    assert (run["kind"], run["state"]) == ("switchover", "ok")
    assert [s["name"] for s in run["steps"]] == ["preflight", "stage", "fence", "activate", "verify", "settle"]
    assert [r["state"] for r in cluster.get("val-a", "/history").json()["runs"]][1] == "interrupted"
    assert cluster.get("val-a", "/runs/99999").status_code == 404

    wait_checks(cluster, {"val-a": (503, 503), "val-b": (200, 503), "val-c": (503, 200)}, "val-b to lead, val-a fenced")
    assert cluster.leader()[1] > generation
    assert_one_leader_at_most(samples)
    cluster.net.assert_no_double_sign()


def test_failover_through_the_target_agent_by_the_cli_without_force(cluster: AgentCluster) -> None:
    assert cluster.post("val-a", "/pause", headers=cluster.auth).status_code == 200
    wait_for(lambda: all(cluster.status(n)["paused"] for n in NODES), 10, "every agent to see the pause")
    assert cluster.post("val-c", "/failover", json={"to": "val-c"}).status_code == 401
    # While a leader holds the lease, the agents fail over on their own: refused, as by the CLI.
    held = cluster.post("val-c", "/failover", json={"to": "val-c"}, headers=cluster.auth)
    assert held.status_code == 409 and "val-b holds the lease" in held.json()["message"], held.text

    cluster.net.signal("val-b", signal.SIGKILL)
    wait_for(lambda: cluster.cluster("val-c")["leader"] is None and cluster.status("val-b")["role"] == "fenced", 20, "val-b to fence itself")
    wait_checks(cluster, {"val-a": (503, 503), "val-b": (503, 503), "val-c": (503, 200)}, "no leader; val-c a ready standby")

    for node, body, status, why in (
        ("val-a", {"to": "val-c"}, 409, "send it to val-c's agent"),
        ("val-c", {"to": "val-c", "force": True}, 409, f"set confirm to the pool id '{POOL}'"),
        ("val-c", {"to": "val-c", "force": True, "confirm": "another.pool"}, 409, "nothing changed"),
        ("val-c", {"to": "val-c", "confirm": POOL}, 422, "confirm goes with force"),
    ):
        answer = cluster.post(node, "/failover", json=body, headers=cluster.auth)
        assert answer.status_code == status and why in answer.json()["message"], (body, answer.text)

    samples: list[Checks] = []
    proc = subprocess.Popen([*CLI, "failover", "-c", str(cluster.net.inventory), "--to", "val-c", "--yes"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    stdout, stderr = while_running(proc, lambda: samples.append(checks(cluster)))
    assert proc.returncode == 0, f"{stdout}\n{stderr}\n{cluster.agent_logs()}"
    text = " ".join(stderr.split())
    assert "started by val-c's agent" in text and "preflight..." in text and "fence: ok" in text, stderr
    assert "(fence proven: chain-silence)" in text and "verify: ok" in text, stderr
    # The result prints as a move run here: outcome, seconds per phase, missed duties.
    shown = " ".join(stdout.split())
    assert "was run by val-c's agent" in shown and "ok: failover (rpc) " in shown and "-> val-c" in shown, stdout
    assert "seconds: " in shown and "fence " in shown and "missed duties: blocks " in shown, stdout
    assert "None" not in stdout and "{" not in stdout, stdout

    run = cluster.get("val-c", "/history?limit=1").json()["runs"][0]
    assert (run["kind"], run["to"], run["state"], step(run, "fence")["evidence"]["proof"]) == ("failover", "val-c", "ok", "chain-silence"), run
    wait_checks(cluster, {"val-a": (503, 503), "val-b": (503, 503), "val-c": (200, 503)}, "val-c to lead")
    assert_one_leader_at_most(samples)
    cluster.net.assert_no_double_sign()


def test_failsafe_with_a_wrong_ca_gets_no_confirmation_and_the_leader_fences_itself(cluster: AgentCluster) -> None:
    assert cluster.leader()[0] == "val-c"
    with store_outage(cluster):
        wait_for(lambda: cluster.status("val-c")["role"] == "fenced", 15, "val-c to fence itself")
    assert "failsafe: no confirmation" in agent_log(cluster, "val-c") and "CERTIFICATE_VERIFY_FAILED" in agent_log(cluster, "val-c")
    fences = [r for r in cluster.get("val-a", "/history").json()["runs"] if r["kind"] == "self-fence" and r["from"] == "val-c"]
    # Nobody confirmed it (renewal-isolated): it fenced itself at its first unanswered renewal.
    assert fences and "no member confirmed" in step(fences[0], "self-fence")["evidence"]["reason"], fences
    wait_for(lambda: cluster.cluster("val-a")["leader"] is None, 15, "the lease to be free")
    assert all(cluster.get(n, "/leader").status_code == 503 for n in NODES)
    cluster.net.assert_no_double_sign()


async def unfence(inventory: Path, node: str) -> None:
    """What the operator does to make a fenced node a standby again: unmask, start without the key."""
    async with open_nodes(load_inventory(inventory)) as nodes:
        assert not await nodes[node].key_in_home()
        await nodes[node].control.unmask()
        await nodes[node].control.start()


def test_failover_with_force_through_the_api(cluster: AgentCluster) -> None:
    asyncio.run(unfence(cluster.net.inventory, "val-b"))
    wait_checks(cluster, {"val-a": (503, 503), "val-b": (503, 200), "val-c": (503, 503)}, "val-b a ready standby again")

    samples: list[Checks] = []
    started = cluster.post("val-b", "/failover", json={"to": "val-b", "force": True, "confirm": POOL}, headers=cluster.auth)
    assert started.status_code == 202, started.text
    seen = follow(cluster, "val-b", started.json()["run_id"], samples)
    run, result = seen[-1], seen[-1]["result"]
    assert result["ok"] and result["to"] == "val-b", result
    assert (run["kind"], step(run, "fence")["evidence"]["proof"]) == ("failover", "forced"), run
    wait_checks(cluster, {"val-a": (503, 503), "val-b": (200, 503), "val-c": (503, 503)}, "val-b to lead")
    assert_one_leader_at_most(samples)
    assert cluster.post("val-b", "/resume", headers=cluster.auth).status_code == 200
    cluster.net.assert_no_double_sign()


def test_failsafe_over_tls_keeps_the_leader_through_a_store_outage(cluster: AgentCluster) -> None:
    """Last on the cluster: sqlite ends the lease while it is locked, so once the store is back
    the leader loses it (etcd, restarted, gives it its ttl again; test_ha covers that)."""
    assert cluster.leader()[0] == "val-b"
    with store_outage(cluster):
        began = time.monotonic()
        wait_for(lambda: any("failsafe confirmation" in p for p in cluster.status("val-b")["problems"]), 15,
                 "val-b to be kept by the others' failsafe confirmations")
        time.sleep(max(0.0, began + TTL + 1.0 - time.monotonic()))  # past the lease it held when the store went away
        assert cluster.get("val-b", "/leader").status_code == 200, cluster.agent_logs()
        assert cluster.status("val-b")["role"] == "leader"
    assert "failsafe: no confirmation" not in agent_log(cluster, "val-b")
    cluster.net.assert_no_double_sign()


# A hot swap needs ceil(1.5 s / block time) + 1 free blocks: at 0.2 s blocks, 9, which the
# localnet pool (20 % of the stake) never has; at 0.5 s, 4, every 25-60 blocks for this seed.
WINDOW_BLOCK_TIME = 0.5


@pytest.fixture
def slow_cluster(tmp_path: Path) -> Iterator[AgentCluster]:
    running = start_agent_cluster(tmp_path / "window", ("val-a", "val-b"), block_time=WINDOW_BLOCK_TIME)
    try:
        yield running
    finally:
        stop_agent_cluster(running)


@pytest.mark.long  # about 80 s: a localnet of its own, and up to 60 blocks of 0.5 s until a gap
def test_switchover_in_window_through_the_agents_records_its_window(slow_cluster: AgentCluster) -> None:
    done = cli("switchover", "-c", slow_cluster.net.inventory, "--to", "val-b", "--in-window", "--yes", timeout=240)
    assert "started by val-a's agent" in done.stderr and "preflight: ok" in done.stderr, done.stderr
    run = slow_cluster.get("val-a", "/history?limit=1").json()["runs"][0]
    assert (run["kind"], run["to"], run["state"]) == ("switchover", "val-b", "ok"), run
    window = step(run, "preflight")["evidence"]["window"]
    assert window["expected_missed"] == 0 and window["window"][0] <= window["head"] + 1 and window["blocks_needed"] == 4, window
    wait_for(lambda: slow_cluster.get("val-b", "/leader").status_code == 200, 30, "val-b to lead")
    slow_cluster.net.assert_no_double_sign()
