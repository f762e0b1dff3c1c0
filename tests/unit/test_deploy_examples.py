"""The shipped examples stay loadable as the inventory format evolves."""

from __future__ import annotations

from pathlib import Path

from near_failover.inventory import load_inventory

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_example_inventory_loads():
    inventory = load_inventory(DEPLOY / "inventory.example.toml")
    assert inventory.names == ["val-a", "val-b", "rpc-1"]
    assert inventory.lease is not None and inventory.lease.store == "etcd"
    assert {n.standby for n in inventory.nodes} == {"hot-swap", "rpc"}


def test_neard_unit_runs_the_boot_guard_first():
    unit = (DEPLOY / "systemd" / "neard.service").read_text()
    assert "ExecStartPre=/usr/local/bin/near-failover guard" in unit
