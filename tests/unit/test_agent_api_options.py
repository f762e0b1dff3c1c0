"""The agent API's options, its TLS settings in the inventory, and the operator's decisions."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from near_failover.api.app import FailoverRequest, SwitchoverRequest
from near_failover.api.client import api_verify
from near_failover.ha.lease import LeaderInfo, MemberRecord, MemberRole
from near_failover.ha.operator import (
    failover_refusal,
    failover_start_refusal,
    handover_to_another,
    leader_problem,
    manual_move_route,
    standby_problem,
)
from near_failover.inventory import InventoryError, load_inventory
from near_failover.procedures.plan import MoveKind, MoveOptions

POOL = "pool.poolv1.near"
INVENTORY = """
[validator]
account_id = "pool.poolv1.near"
chain_id = "localnet"

[[node]]
name = "val-a"
home = "/srv/val-a"
rpc = "http://127.0.0.1:3030"
control = "systemd:neard.service"
key_store = "/etc/nf/val-a.json"
standby = "hot-swap"
{node}

[lease]
store = "sqlite"
path = "lease.sqlite"
{lease}
"""


def inventory(tmp_path: Path, node: str = "", lease: str = "") -> Path:
    path = tmp_path / "inventory.toml"
    path.write_text(INVENTORY.format(node=node, lease=lease))
    return path


def test_tls_fields_resolve_and_go_with_an_https_api(tmp_path: Path) -> None:
    inv = load_inventory(inventory(tmp_path, 'api = "https://127.0.0.1:8008"\napi_cert_file = "tls/a.pem"\napi_key_file = "tls/a-key.pem"',
                                   'api_ca_file = "tls/ca.pem"'))
    node = inv.node("val-a")
    assert (node.api_cert_file, node.api_key_file) == (tmp_path / "tls/a.pem", tmp_path / "tls/a-key.pem")
    assert inv.lease is not None and inv.lease.api_ca_file == tmp_path / "tls/ca.pem"


@pytest.mark.parametrize(("node", "expected"), [
    ('api = "https://127.0.0.1:8008"', "api https://127.0.0.1:8008 is https: set api_cert_file and api_key_file"),
    ('api = "http://127.0.0.1:8008"\napi_cert_file = "a.pem"\napi_key_file = "k.pem"', "are for an https:// api"),
    ('api = "https://127.0.0.1:8008"\napi_cert_file = "a.pem"', "api_cert_file and api_key_file go together"),
])
def test_tls_mistakes_are_named(tmp_path: Path, node: str, expected: str) -> None:
    path = inventory(tmp_path, node)
    with pytest.raises(InventoryError) as err:
        load_inventory(path)
    assert str(path) in str(err.value) and 'node "val-a"' in str(err.value) and expected in str(err.value), err.value


def test_api_ca_file_that_is_no_certificate_is_named(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    inv = load_inventory(inventory(tmp_path, lease='api_ca_file = "ca.pem"'))
    with pytest.raises(InventoryError, match=r"\[lease\] api_ca_file .*ca.pem: cannot load it as a CA certificate"):
        api_verify(inv)
    assert api_verify(load_inventory(inventory(tmp_path))) is True  # no file: the system's CAs


def test_request_bodies_carry_the_cli_options() -> None:
    assert SwitchoverRequest(to="val-b", in_window=True, take_over_interrupted=True).options() == MoveOptions("val-b", None, in_window=True, take_over_interrupted=True)
    assert FailoverRequest(to="val-c", mode="rpc", force=True, confirm=POOL).options() == MoveOptions("val-c", "rpc", force=True)
    for body, field in (({"to": "val-b", "force": True}, "force"), ({"to": "val-b", "in_window": True}, "in_window")):
        with pytest.raises(ValidationError, match=field):
            (SwitchoverRequest if "force" in body else FailoverRequest).model_validate(body)
    with pytest.raises(ValidationError, match="confirm goes with force"):
        FailoverRequest(to="val-c", confirm=POOL)


def test_failover_refusals_follow_the_cli() -> None:
    asked = MoveOptions("val-c")
    assert failover_refusal("val-c", POOL, asked, None, holds_lease=False, busy=False) is None
    assert "send it to val-c's agent" in (failover_refusal("val-a", POOL, asked, None, False, False) or "")
    forced = MoveOptions("val-c", force=True)
    assert "set confirm to the pool id" in (failover_refusal("val-c", POOL, forced, None, False, False) or "")
    assert "set confirm to the pool id" in (failover_refusal("val-c", POOL, forced, "other.pool", False, False) or "")
    assert failover_refusal("val-c", POOL, forced, POOL, False, False) is None
    assert "holds the lease already" in (failover_refusal("val-c", POOL, asked, None, True, False) or "")
    assert "already moving" in (failover_refusal("val-c", POOL, asked, None, False, True) or "")

    leader = LeaderInfo(member="val-b", generation=7, ttl_left=3.0)
    assert "val-b holds the lease (generation 7)" in (failover_start_refusal("val-c", leader, True, False, False, True) or "")
    assert "does not answer" in (failover_start_refusal("val-c", None, False, False, False, True) or "")
    assert "key loaded already" in (failover_start_refusal("val-c", None, True, True, False, True) or "")
    assert "fenced" in (failover_start_refusal("val-c", None, True, False, True, True) or "")
    assert "watchdog" in (failover_start_refusal("val-c", None, True, False, False, False) or "")
    assert failover_start_refusal("val-c", None, True, False, False, True) is None


def test_leader_and_standby_checks() -> None:
    assert leader_problem("val-a", POOL, 3.0, True, POOL) is None
    assert "does not hold the lease" in (leader_problem("val-a", POOL, None, True, POOL) or "")
    assert "run out" in (leader_problem("val-a", POOL, 0.0, True, POOL) or "")
    assert "does not answer" in (leader_problem("val-a", POOL, 3.0, False, None) or "")
    assert "no validator key loaded" in (leader_problem("val-a", POOL, 3.0, True, None) or "")

    assert standby_problem("val-b", POOL, MemberRole.STANDBY, False, None, []) is None
    assert "not a standby" in (standby_problem("val-b", POOL, MemberRole.FENCED, False, None, []) or "")
    assert "the leader" in (standby_problem("val-b", POOL, MemberRole.LEADER, True, POOL, []) or "")
    assert "key loaded" in (standby_problem("val-b", POOL, MemberRole.STANDBY, False, POOL, []) or "")
    assert "no valid staged key" in (standby_problem("val-b", POOL, MemberRole.STANDBY, False, None, ["no valid staged key"]) or "")


def test_a_standby_leaves_the_lease_of_a_switchover_to_its_target() -> None:
    leader = MemberRecord(name="val-a", role=MemberRole.FENCED, healthy=False, priority=100, details={"handover_to": "val-b"})
    standby = MemberRecord(name="val-c", role=MemberRole.STANDBY, healthy=True, priority=50)
    assert handover_to_another("val-c", [leader, standby]) == "val-b"
    assert handover_to_another("val-b", [leader, standby]) is None
    assert handover_to_another("val-c", [standby]) is None


APIS = {"val-a": "http://127.0.0.1:8008", "val-b": "http://127.0.0.1:8009", "val-c": None}
LEADER_A = LeaderInfo(member="val-a", generation=4, ttl_left=5.0)


@pytest.mark.parametrize(("kind", "target", "leader", "runner", "refusal", "here_if_stopped"), [
    # No manual failover while a leader holds the lease: the agents fail over on their own.
    (MoveKind.FAILOVER, "val-b", LEADER_A, None, "val-a holds the lease (generation 4): the agents fail over on their own", False),
    # A switchover goes to the leader's agent, which hands the lease over.
    (MoveKind.SWITCHOVER, "val-b", LEADER_A, "val-a", None, False),
    # No leader: a switchover runs from the CLI; a failover through the target's agent, or from the
    # CLI when that agent is stopped or the target has no api.
    (MoveKind.SWITCHOVER, "val-b", None, None, None, False),
    (MoveKind.FAILOVER, "val-b", None, "val-b", None, True),
    (MoveKind.FAILOVER, "val-c", None, None, None, False),
    # A leader without an api cannot be asked: the switchover is refused rather than run around it.
    (MoveKind.SWITCHOVER, "val-b", LeaderInfo(member="val-c", generation=2), None, "val-c holds the lease but has no `api`", False),
])
def test_a_manual_move_never_goes_around_the_agents(kind: MoveKind, target: str, leader: LeaderInfo | None, runner: str | None,
                                                    refusal: str | None, here_if_stopped: bool) -> None:
    route = manual_move_route(kind, target, leader, APIS)
    assert (route.runner, route.here_if_agent_stopped) == (runner, here_if_stopped)
    if refusal is None:
        assert route.refusal is None
    else:
        assert route.refusal is not None and route.refusal.startswith(refusal)
