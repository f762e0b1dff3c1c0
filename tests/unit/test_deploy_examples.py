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
    # "+": the guard reads root-only secrets while neard itself runs as User=near.
    assert "ExecStartPre=+/usr/local/bin/near-failover guard" in unit
    assert "\nUser=near\n" in unit


def test_shipped_sudoers_file_is_the_rules_a_fence_and_an_activation_run() -> None:
    """deploy/sudoers/near-failover allows exactly what SystemdControl runs through sudo for the
    example inventory's user and unit, and sudo's own parser accepts it."""
    import shutil
    import subprocess

    from near_failover.control.privilege import sudoers_text

    shipped = DEPLOY / "sudoers" / "near-failover"
    assert shipped.read_text() == sudoers_text("near", "neard.service")
    visudo = shutil.which("visudo") or "/usr/sbin/visudo"
    done = subprocess.run([visudo, "-cf", str(shipped)], check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_dashboard_is_importable():
    """Grafana imports it as is: one datasource variable, unique ids, panels inside the 24-column
    grid without overlap, a query on every panel. (Which metrics exist is checked against a
    running agent and neard in tests/integration/test_api.py.)"""
    import json

    dashboard = json.loads((DEPLOY / "grafana" / "near-failover.json").read_text())
    assert dashboard["uid"] == "near-failover" and dashboard["title"]
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource", "account_id"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] != "row":
            assert panel["description"] and panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
            assert all(t["expr"] and t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]


def test_drill_suggests_timeouts_from_the_slowest_figure_with_room() -> None:
    from near_failover.procedures.drill import NodeFigures, suggest_timeouts

    figures = {"a": NodeFigures(stop_seconds=20.0, restart_seconds=100.0, sighup_to_first_duty_seconds=4.0),
               "b": NodeFigures(stop_seconds=5.0, restart_seconds=None, sighup_to_first_duty_seconds=1.0)}
    assert suggest_timeouts(figures) == {"fence": 60.0, "activate_rpc": 180.0, "activate_hot_swap": 12.0, "verify": 12.0}
    assert suggest_timeouts({"a": NodeFigures(stop_seconds=0.5)}) == {"fence": 10.0}  # never below 10 s
    assert suggest_timeouts({}) == {}
