"""`status` as a monitor reads it: each exit code produced by a localnet in that state, and text
that a person reads (no None, null, True or False)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

from tests.integration.localnet_harness import CLI, Localnet, cli

NOT_HUMAN = re.compile(r"\b(None|null|True|False)\b")


def status(net: Localnet, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("status", "-c", net.inventory, "--rate-blocks", "3", *extra, check=False)


def assert_human(text: str) -> None:
    assert not NOT_HUMAN.search(text), text


def assert_watch_until_ctrl_c(net: Localnet) -> None:
    watching = subprocess.Popen([*CLI, "status", "-c", str(net.inventory), "--watch", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while seen.count("ok: one node signs") < 2:
            assert time.monotonic() < deadline and watching.poll() is None, seen
            seen += watching.stdout.readline()  # type: ignore[union-attr]
        # The second view projects at the rate the watch itself measured.
        assert "at the rate of the last" in seen
        watching.send_signal(signal.SIGINT)
        assert watching.wait(30) == 0
        assert "Traceback" not in watching.stderr.read()  # type: ignore[union-attr]
    finally:
        if watching.poll() is None:
            watching.kill()


def test_status_exit_codes_roles_and_human_text(net: Localnet):
    assert cli("history", "-c", net.inventory).stdout.strip() == "no runs yet"
    healthy = status(net)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    text = " ".join(healthy.stdout.split())
    assert_human(healthy.stdout)
    assert "hot-swap standby (ready)" in text and "rpc standby (ready)" in text
    assert "at the epoch's end at the rate of the last" in text and "of 3000 blocks" in text
    view = json.loads(status(net, "--json").stdout)
    assert view["verdict"] == {"exit_code": 0, "problems": []}
    b = next(n for n in view["nodes"] if n["name"] == "val-b")
    assert (b["role"], b["ready"], b["key_staged"], b["key_in_home"], b["restart_pending"]) == ("standby", True, True, False, [])

    assert_watch_until_ctrl_c(net)

    # A [lease] whose agents do not run: signing, but degraded (3), and the agents are named.
    plain_inventory = net.inventory.read_text()
    net.edit_inventory(lease={"store": "sqlite", "path": str(net.directory / "lease.sqlite")})
    degraded = status(net)
    assert degraded.returncode == 3, degraded.stdout + degraded.stderr
    assert "agents that should run and do not: val-a, val-b, val-c" in " ".join(degraded.stdout.split())
    assert_human(degraded.stdout)
    # pause, resume and guard answer scripts in JSON too.
    assert json.loads(cli("pause", "-c", net.inventory, "--json").stdout) == {"validator": net.pool(), "store": "sqlite", "paused": True}
    assert "automatic decisions paused" in json.loads(status(net, "--json").stdout)["verdict"]["problems"]
    assert json.loads(cli("resume", "-c", net.inventory, "--json").stdout)["paused"] is False
    allowed = json.loads(cli("guard", "-c", net.inventory, "--node", "val-b", "--json").stdout)
    assert (allowed["node"], allowed["allowed"]) == ("val-b", True) and allowed["reason"]
    net.inventory.write_text(plain_inventory)

    # Usage errors exit 2.
    assert cli("status", check=False).returncode == 2
    assert cli("status", "-c", net.inventory, "--rate-blocks", "-1", check=False).returncode == 2

    # A switchover fences val-a: its role says so and names the command that brings it back;
    # val-b signs and produces, val-c is a ready standby (0). A planned swap costs a few duties
    # only, so no kickout is projected (an outage early in an epoch would: that is exit 1).
    cli("switchover", "-c", net.inventory, "--to", "val-b", "--yes")
    net.wait_height(10)
    after = status(net, "--rate-blocks", "5")
    shown = " ".join(after.stdout.split())
    assert f"rejoin: near-failover rejoin -c {net.inventory} --node val-a" in shown, shown
    assert "fenced (masked by a fence, the key is out of its home" in shown
    assert after.returncode == 0, after.stdout + after.stderr
    assert_human(after.stdout)
    fenced = next(n for n in json.loads(status(net, "--json").stdout)["nodes"] if n["name"] == "val-a")
    assert fenced["role"] == "fenced" and fenced["masked"] is True

    # The signer's neard killed: nobody signs (1), and the text says why it is down.
    net.signal("val-b", signal.SIGKILL)
    down = status(net)
    assert down.returncode == 1, down.stdout + down.stderr
    shown = " ".join(down.stdout.split())
    assert "val-b: down (neard is not running" in shown and "critical: no node signs for the pool" in shown
    assert_human(down.stdout)

    # A switchover needs a signer: refused, and history says why, beside the first one's cost.
    assert cli("switchover", "-c", net.inventory, "--to", "val-c", "--yes", check=False).returncode == 1
    told = cli("history", "-c", net.inventory)
    assert_human(told.stdout)
    refused_run, done_run = " ".join(told.stdout.split()).split("run ")[1:3]
    assert "switchover (rpc) val-b -> val-c: refused in " in refused_run or "switchover (rpc) ? -> val-c: refused in " in refused_run, refused_run
    assert "reason: no reachable node is signing for the pool" in refused_run
    assert "switchover (hot-swap) val-a -> val-b: ok in " in done_run and "missed duties: blocks " in done_run
    assert "started by near-failover switchover, by " in done_run and "fence: ok in " in done_run
    only = json.loads(cli("history", "-c", net.inventory, "--kind", "switchover", "--since", "10m", "--json").stdout)
    assert [r["state"] for r in only] == ["refused", "ok"] and only[0]["steps"][0]["name"] == "preflight"
    assert cli("history", "-c", net.inventory, "--kind", "failover").stdout.strip() == "no runs yet"
    net.assert_no_double_sign()
