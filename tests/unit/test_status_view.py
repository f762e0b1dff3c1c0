"""The status view's pure parts: projection to the epoch's end, the exit code, and human text."""

from __future__ import annotations

import re

from near_failover.procedures.chain_view import Production
from near_failover.procedures.status import (
    ClusterStatus,
    LeaseStatus,
    NodeStatus,
    Role,
    judge,
    production_view,
    standby_problems,
)

POOL = "pool.poolv1.near"


def sample(height: int, produced: int, expected: int) -> Production:
    return Production(height=height, epoch_start_height=1, blocks_produced=produced, blocks_expected=expected,
                      chunks_produced=produced, chunks_expected=expected, endorsements_produced=produced, endorsements_expected=expected)


def cluster(*nodes: NodeStatus, production: object = None, lease: LeaseStatus | None = None) -> ClusterStatus:
    signers = [n.name for n in nodes if n.role == Role.SIGNER]
    return ClusterStatus(validator=POOL, chain_id="localnet", signers=signers, double_signer_risk=len(signers) > 1,
                         keys_left_in_home=[], nodes=list(nodes), production=production, lease=lease)


def signer(name: str = "val-a") -> NodeStatus:
    return NodeStatus(name=name, host="local", rpc="http://127.0.0.1:1", reachable=True, key_loaded=POOL, head=100, role=Role.SIGNER, standby_mode="hot-swap")


def standby(name: str = "val-b", ready: bool = True) -> NodeStatus:
    return NodeStatus(name=name, host="local", rpc="http://127.0.0.1:2", reachable=True, head=100, role=Role.STANDBY, standby_mode="hot-swap",
                      ready=ready, why=[] if ready else ["syncing"])


def test_projection_is_linear_at_the_rate_of_the_window():
    # 90 of 100 so far; the last 10 blocks produced none of 10 expected; 100 blocks left.
    view = production_view(sample(110, 90, 100), 210, sample(100, 90, 90))
    assert view.rate_blocks == 10 and view.epoch_progress_percent == 52.4
    assert view.blocks.percent == 90.0 and not view.blocks.at_risk
    # (90 + 0) / (100 + 10 * 100 / 10) = 45%
    assert view.blocks.projected_percent == 45.0 and view.blocks.projected_at_risk
    assert view.producing is False
    assert judge(cluster(signer(), standby(), production=view)).exit_code == 1


def test_projection_without_a_window_is_absent():
    view = production_view(sample(110, 90, 100), 210, None)
    assert view.blocks.projected_percent is None and view.rate_blocks is None and view.producing is None


def test_exit_codes_from_the_view():
    healthy = production_view(sample(110, 100, 100), 1000, sample(100, 90, 90))
    assert judge(cluster(signer(), standby(), production=healthy)).exit_code == 0
    assert judge(cluster(signer(), standby(ready=False), production=healthy)) .problems == ["no ready standby"]
    assert judge(cluster(signer(), standby(ready=False), production=healthy)).exit_code == 3
    assert judge(cluster(standby(), production=healthy)).exit_code == 1
    assert judge(cluster(signer(), signer("val-b"), production=healthy)).exit_code == 1
    unreadable = LeaseStatus(store="etcd", error="lease store unavailable")
    assert judge(cluster(signer(), standby(), production=healthy, lease=unreadable)).exit_code == 3
    missing = LeaseStatus(store="sqlite", paused=False, missing_agents=["val-b"])
    assert "agents not running: val-b" in judge(cluster(signer(), standby(), production=healthy, lease=missing)).problems
    down = NodeStatus(name="val-a", host="local", rpc="http://127.0.0.1:1", standby_mode="hot-swap", role=Role.DOWN)
    assert "no node answers" in judge(cluster(down)).problems


def test_standby_readiness_says_why():
    node = standby()
    node.tracking, node.memtries, node.key_staged, node.lag = "AllShards", False, False, 9
    assert standby_problems(node, POOL, 5) == [
        "9 blocks behind", f"tracks AllShards, a hot swap needs ShadowValidator {POOL}", "memtries off", "no staged key"]


def test_status_text_holds_no_python_or_json_literals(capsys):
    from near_failover.cli.render import print_status

    down = NodeStatus(name="val-a", host="local", rpc="http://127.0.0.1:1", standby_mode="hot-swap", role=Role.DOWN,
                      why=["neard is not running"], key_staged=True, key_in_home=False)
    fenced = NodeStatus(name="val-c", host="local", rpc="http://127.0.0.1:3", standby_mode="rpc", role=Role.FENCED, masked=True,
                        why=["masked by a fence"], rejoin="near-failover rejoin -c inv.toml --node val-c")
    view = cluster(down, standby(ready=False), fenced, production=production_view(sample(110, 0, 0), None, None),
                   lease=LeaseStatus(store="sqlite", paused=True))
    view.verdict = judge(view)
    print_status(view)
    text = capsys.readouterr().out
    assert not re.search(r"\b(None|null|True|False)\b", text), text
    assert "val-c: fenced (masked by a fence; rejoin: near-failover rejoin -c inv.toml --node val-c)" in " ".join(text.split())
    assert "val-a: down (neard is not running)" in text and "not ready: syncing" in text
