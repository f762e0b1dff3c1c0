"""Switchover and failover end to end on an emulated localnet, checked against the chain's ledger.

Every test asserts zero double signs and a bound on the pool's missed duties. The bounds are
stated in blocks of the localnet (0.2 s here): a hot swap costs the fence (SIGTERM) plus one
SIGHUP; a failover adds the detection the test itself does (a kill, an unreachable host).
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.integration.localnet_harness import CLI, Localnet, cli
from tests.integration.webhook_server import running_webhook

# Missed duties allowed per move, in the localnet's blocks/chunks/endorsements.
HOT_SWAP_BOUND = {"blocks": 4, "chunks": 12, "endorsements": 40}


def move(net: Localnet, kind: str, to: str, *extra: str, check: bool = True, input: str | None = None) -> dict:
    done = cli(kind, "-c", net.inventory, "--to", to, "--yes", "--json", *extra, check=False, input=input)
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    if check:
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    report["_exit"] = done.returncode
    report["_stderr"] = done.stderr
    return report


def assert_missed_within(report: dict, bound: dict[str, int]) -> None:
    missed = report["missed"]
    assert missed is not None
    for kind, limit in bound.items():
        assert missed[kind] <= limit, (kind, missed)


def assert_signer(net: Localnet, name: str) -> None:
    status = net.rpc_status(name)
    assert status["validator_account_id"] == net.pool()


def test_switchover_hot_swap(net: Localnet):
    with running_webhook() as webhook:
        net.edit_inventory(alert=[{"kind": "json", "url": webhook.url("/hook")}])
        report = move(net, "switchover", "val-b", "--mode", "hot-swap")
        assert report["ok"] and report["from"] == "val-a"
        # A manual move is announced like an automatic one, once it is over.
        (got,) = webhook.received
        body = got.json()
        assert (body["event"], body["node"], body["account_id"]) == ("move", "val-b", net.pool())
        assert body["details"]["outcome"] == "ok" and body["details"]["from"] == "val-a"
        assert body["details"]["missed"] == report["missed"]
        assert "manual switchover done" in body["text"]
    assert_signer(net, "val-b")
    assert not (net.directory / "val-a" / "validator_key.json").exists()
    net.wait_height(5)
    assert_missed_within(report, HOT_SWAP_BOUND)
    net.assert_no_double_sign()


def test_switchover_rpc_restarts_through_memtrie_load(net: Localnet):
    pid_before = net.pid("val-c")
    config_path = net.directory / "val-c" / "config.json"
    config_path.write_text("// the operator's note\n" + config_path.read_text())
    report = move(net, "switchover", "val-c", "--mode", "rpc")
    assert report["ok"]
    assert any("had comments" in note and ".bak" in note for note in report["notes"]), report["notes"]
    assert net.pid("val-c") != pid_before  # Option 1 restarts neard (tracking changes only at start)
    config = json.loads((net.directory / "val-c" / "config.json").read_text())
    assert config["tracked_shards_config"] == "NoShards"
    assert config["store"]["load_mem_tries_for_tracked_shards"] is True
    # The CLI's backup name (neard_config.backup_name): config.json.<YYYYmmddTHHMMSSffffffZ>.bak
    [backup] = (net.directory / "val-c").glob("config.json.*.bak")
    assert re.fullmatch(r"config\.json\.\d{8}T\d{12}Z\.bak", backup.name), backup.name
    assert_signer(net, "val-c")
    net.wait_height(5)
    net.assert_no_double_sign()


def test_failover_hot_swap_after_primary_killed(net: Localnet):
    net.signal("val-a", signal.SIGKILL)
    report = move(net, "failover", "val-b")
    assert report["ok"] and report["from"] == "val-a"
    assert_signer(net, "val-b")
    net.wait_height(5)
    net.assert_no_double_sign()


def _unreachable_host(net: Localnet, node: str, rpc: str | None = None) -> None:
    """Rewrite the inventory as if `node`'s machine were cut off: its SSH port refuses and,
    optionally, its RPC URL points at `rpc`."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    closed_port = sock.getsockname()[1]
    sock.close()
    net.edit_inventory(node, host=f"ssh://near@127.0.0.1:{closed_port}", **({"rpc": rpc} if rpc else {}))


class BlackHole:
    """A TCP port that accepts connections and never answers: an RPC blocked by a firewall."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


def test_failover_with_unreachable_primary_proceeds_on_chain_silence(net: Localnet):
    net.signal("val-a", signal.SIGSTOP)  # frozen: its RPC hangs, it signs nothing
    _unreachable_host(net, "val-a")
    try:
        report = move(net, "failover", "val-b")
        assert report["ok"], report
        assert report["checks"]["source"]["reachable"] is False
        history = json.loads(cli("history", "-c", net.inventory, "--json").stdout)
        fence = next(s for s in history[0]["steps"] if s["name"] == "fence")
        assert fence["evidence"]["proof"] == "chain-silence"
        assert_signer(net, "val-b")
        # Loud, journaled, with the commands for when val-a's host answers again.
        key = str(net.directory / "val-a" / "validator_key.json")
        [left] = report["keys_left_behind"]
        assert left["node"] == "val-a" and left["path"] == key
        assert history[0]["detail"]["keys_left_behind"] == [left]
        move_cmd = shlex.split(left["commands"][-1])[-1]  # what `ssh ... '<command>'` runs on val-a
        assert shlex.split(move_cmd)[:3] == ["mv", "--backup=numbered", key]
        # The host returns: status flags the key left in val-a's home while val-b signs.
        net.edit_inventory("val-a", host="local")
        flagged = json.loads(cli("status", "-c", net.inventory, "--json", check=False).stdout)
        assert flagged["keys_left_in_home"] == ["val-a"] and flagged["signers"] == ["val-b"]
        assert "val-a has the pool's key in its home while val-b signs" in cli("status", "-c", net.inventory, check=False).stdout
        subprocess.run(["sh", "-c", move_cmd], check=True)
        assert json.loads(cli("status", "-c", net.inventory, "--json", check=False).stdout)["keys_left_in_home"] == []
        net.wait_height(5)
        net.assert_no_double_sign()
    finally:
        net.signal("val-a", signal.SIGKILL)  # it still holds the key: never let it wake up


def test_failover_refused_while_unreachable_primary_still_signs(net: Localnet):
    hole = BlackHole()
    try:
        _unreachable_host(net, "val-a", rpc=hole.url)
        report = move(net, "failover", "val-b", check=False)
        assert report["_exit"] == 1
        assert report["outcome"] == "refused" and "still signing" in report["message"]
        assert net.rpc_status("val-b")["validator_account_id"] is None
        assert not (net.directory / "val-b" / "validator_key.json").exists()
        assert net.rpc_status("val-a")["validator_account_id"] == net.pool()
        net.assert_no_double_sign()
    finally:
        hole.close()


def test_switchover_refused_when_primary_is_down(net: Localnet):
    net.signal("val-a", signal.SIGKILL)
    report = move(net, "switchover", "val-b", check=False)
    assert report["_exit"] == 1 and "failover" in report["message"]
    assert net.rpc_status("val-b")["validator_account_id"] is None


def test_dry_run_changes_nothing(net: Localnet):
    with running_webhook() as webhook:
        net.edit_inventory(alert=[{"kind": "json", "url": webhook.url("/hook")}])
        report = move(net, "switchover", "val-b", "--dry-run")
        assert webhook.received == []  # nothing happened: nothing to announce
    assert report["outcome"] == "dry-run"
    assert report["checks"]["staged_key"]["matches_on_chain"] is True
    assert net.rpc_status("val-a")["validator_account_id"] == net.pool()
    assert net.rpc_status("val-b")["validator_account_id"] is None
    assert json.loads(cli("history", "-c", net.inventory, "--json").stdout) == []


def test_tool_killed_mid_run_leaves_history_with_recovery_commands(net: Localnet):
    proc = subprocess.Popen([*CLI, "switchover", "-c", str(net.inventory), "--to", "val-c", "--mode", "rpc", "--yes"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    for line in proc.stderr:
        if line.strip().startswith("activate..."):
            break
        assert time.monotonic() < deadline
    proc.kill()
    proc.wait(10)
    history = json.loads(cli("history", "-c", net.inventory, "--json").stdout)
    run = history[0]
    assert run["state"] == "interrupted"
    assert run["steps"][-1]["name"] in ("activate", "verify")
    assert run["detail"]["recovery"]["revert"] and run["detail"]["recovery"]["finish"]
    text = cli("history", "-c", net.inventory).stdout
    assert "interrupted" in text and "to revert:" in text
    # A new run is refused until the operator has looked at the interrupted one.
    again = move(net, "switchover", "val-b", check=False)
    assert again["_exit"] == 1
    net.assert_no_double_sign()


async def _move_with_hook(net: Localnet, to: str, mode: str, on_activate) -> tuple:
    """Run a switchover in-process; `on_activate` runs when the activate step begins, after the
    fence (it stands for whatever breaks between the checks and the key's arrival)."""
    from near_failover.inventory import load_inventory
    from near_failover.procedures.journal import Journal
    from near_failover.procedures.move import Move, MoveRequest
    from near_failover.procedures.nodes import open_nodes
    from near_failover.procedures.plan import MoveKind, MoveOptions

    inventory = load_inventory(net.inventory)

    def progress(message: str) -> None:
        if message == "activate...":
            on_activate()

    async with open_nodes(inventory) as nodes:
        with Journal(Path(inventory.journal.path)) as journal:
            result = await Move(inventory, nodes, journal, MoveRequest(MoveKind.SWITCHOVER, MoveOptions(to, mode), progress=progress)).run()
            steps = journal.steps(result.run_id)
    return result, steps


async def test_rollback_when_the_staged_key_breaks_after_preflight(net: Localnet):
    store = net.directory / "keys" / "val-b" / "validator_key.json"

    def corrupt() -> None:
        store.write_text(store.read_text().replace('"secret_key": "ed25519:', '"secret_key": "ed25519:0'))

    result, steps = await _move_with_hook(net, "val-b", "hot-swap", corrupt)
    assert not result.ok and result.outcome == "rolled-back", result.message
    assert [s.name for s in steps][-2:] == ["activate", "rollback"]
    # The run executed the plan --dry-run prints: its steps in its order with its deadlines.
    planned = [(p.name, p.deadline) for p in result.plan.steps]
    assert [(s.name, s.evidence["deadline"]) for s in steps[:-1]] == planned[:len(steps) - 1]
    assert steps[-2].outcome == "failed" and "invalid" in steps[-2].evidence["error"]
    assert net.rpc_status("val-a")["validator_account_id"] == net.pool()  # the old primary signs again
    assert net.rpc_status("val-b")["validator_account_id"] is None
    assert not (net.directory / "val-b" / "validator_key.json").exists()
    net.wait_height(5)
    net.assert_no_double_sign()
    secret = json.loads((net.directory / "keys" / "val-a" / "validator_key.json").read_text())["secret_key"]
    assert secret.split(":")[1][:20] not in json.dumps([s.to_json() for s in steps])


async def test_rollback_when_neard_rejects_the_reload(net: Localnet):
    config = net.directory / "val-b" / "config.json"

    def break_config() -> None:
        # A semantic error neard checks on every SIGHUP: the whole reload fails, no key is loaded.
        cfg = json.loads(config.read_text())
        cfg["tracked_shards"] = [0]
        config.write_text(json.dumps(cfg, indent=2))

    result, steps = await _move_with_hook(net, "val-b", "hot-swap", break_config)
    assert result.outcome == "rolled-back", result.message
    assert "near_config_correct" in steps[-2].evidence["error"]
    assert net.rpc_status("val-a")["validator_account_id"] == net.pool()
    assert net.rpc_status("val-b")["validator_account_id"] is None
    net.wait_height(5)
    net.assert_no_double_sign()


def test_keys_stage_checks_the_on_chain_key(net: Localnet, tmp_path: Path):
    store = net.directory / "keys" / "val-c" / "validator_key.json"
    store.unlink()
    refused = move(net, "failover", "val-c", "--dry-run", check=False)
    assert refused["_exit"] == 1 and "keys stage" in refused["message"]
    wrong = tmp_path / "wrong.json"
    from near_failover.neard.keys import KeyFile, write_key_file

    write_key_file(wrong, KeyFile.generate(net.pool()))
    bad = cli("keys", "stage", "-c", net.inventory, "--to", "val-c", "--from", wrong, check=False)
    assert bad.returncode == 1 and "chain expects" in bad.stderr and not store.exists()
    staged = json.loads(cli("keys", "stage", "-c", net.inventory, "--to", "val-c", "--json").stdout)
    assert staged["matches_on_chain"] and staged["from"].startswith("val-")
    assert store.stat().st_mode & 0o777 == 0o600
    assert "secret" not in json.dumps(staged)
    # A source key others can read is staged (0600) with a warning naming the file and the fix.
    readable = tmp_path / "readable.json"
    readable.write_bytes(store.read_bytes())
    readable.chmod(0o644)
    store.unlink()
    warned = cli("keys", "stage", "-c", net.inventory, "--to", "val-c", "--from", readable, "--json")
    assert json.loads(warned.stdout)["warnings"] and f"{readable} is readable by every user" in warned.stderr
    assert f"chmod 600 {readable}" in warned.stderr and store.stat().st_mode & 0o777 == 0o600


def test_status_shows_roles_and_production(net: Localnet):
    view = json.loads(cli("status", "-c", net.inventory, "--json").stdout)
    roles = {n["name"]: (n["role"], n["standby_mode"]) for n in view["nodes"]}
    assert roles == {"val-a": ("signer", "hot-swap"), "val-b": ("standby", "hot-swap"), "val-c": ("standby", "rpc")}
    b = next(n for n in view["nodes"] if n["name"] == "val-b")
    assert b["tracking"] == {"ShadowValidator": net.pool()} and b["memtries"] is True and b["key_staged"] and not b["key_in_home"]
    production = view["production"]
    assert production["blocks"]["kickout_threshold"] == 80 and production["endorsements"]["kickout_threshold"] == 70
    assert production["blocks"]["expected"] >= production["blocks"]["produced"] >= 0
    text = cli("status", "-c", net.inventory).stdout
    assert "signer" in text and "kickout" in text
