"""`rejoin` end to end on the localnet: the upgrade cycle of docs/upgrade-cycle.md, run as
written, and the refusal of an Option 1 node that validated, each checked against the ledger."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from near_failover.inventory import Inventory, StandbyMode, load_inventory
from near_failover.procedures.journal import Journal
from near_failover.procedures.move import Move, MoveRequest
from near_failover.procedures.nodes import NodeAccess, open_nodes
from near_failover.procedures.plan import MoveKind, MoveOptions
from near_failover.procedures.rejoin import Rejoin
from tests.integration.localnet_harness import Localnet, cli, running

pytestmark = pytest.mark.integration
T = TypeVar("T")
DOC = Path(__file__).resolve().parents[2] / "docs" / "upgrade-cycle.md"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Localnet]:
    """One localnet for both tests (each starts from any signer and ends with a ready cluster):
    its start and stop are a third of this file's time."""
    with running(tmp_path_factory.mktemp("rejoin") / "net") as net:
        yield net


def doc_commands() -> list[list[str]]:
    """The one ```sh block of the upgrade cycle, without its comments."""
    (block,) = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.DOTALL)
    return [shlex.split(line) for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def rejoin(net: Localnet, node: str) -> tuple[int, dict]:
    done = cli("rejoin", "-c", net.inventory, "--node", node, "--timeout", "60", "--json", check=False)
    return done.returncode, json.loads(done.stdout)


def test_upgrade_cycle_as_documented(net: Localnet) -> None:
    commands = doc_commands()
    assert [c[1] for c in commands] == ["switchover", "rejoin", "switchover", "rejoin", "status"]
    for argv in commands:
        assert argv[0] == "near-failover"
        cli(*[str(net.inventory) if a == "inventory.toml" else a for a in argv[1:]])
    assert net.rpc_status("val-a")["validator_account_id"] == net.pool()
    # val-b is a ready hot-swap standby again: running, unmasked, the guide's Option 2 settings.
    config = json.loads((net.directory / "val-b" / "config.json").read_text())
    assert config["tracked_shards_config"] == {"ShadowValidator": net.pool()}
    assert not (net.directory / "val-b" / "validator_key.json").exists()
    assert net.rpc_status("val-b")["validator_account_id"] is None
    runs = json.loads(cli("history", "-c", net.inventory, "--json").stdout)
    assert [(r["kind"], r["from"], r["outcome"]) for r in runs if r["kind"] == "rejoin"][:2] == [
        ("rejoin", "val-b", "ok"), ("rejoin", "val-a", "ok")
    ]
    assert "rejoin (hot-swap) on val-a: ok" in cli("history", "-c", net.inventory).stdout
    net.wait_height(5)
    net.assert_no_double_sign()


async def in_process(net: Localnet, work: Callable[[Inventory, dict[str, NodeAccess], Journal], Awaitable[T]]) -> T:
    """Run procedures in this process (fewer CLI start-ups on a loaded machine); the CLI's own
    exit codes are checked by the calls through it."""
    inventory = load_inventory(net.inventory)
    async with open_nodes(inventory) as nodes:
        with Journal(Path(inventory.journal.path)) as journal:
            return await work(inventory, nodes, journal)


async def test_option1_node_that_validated_is_refused_until_hot_swap(net: Localnet) -> None:
    async def moves(inventory: Inventory, nodes: dict[str, NodeAccess], journal: Journal) -> None:
        for to, mode in (("val-c", "rpc"), ("val-b", "hot-swap")):
            request = MoveRequest(MoveKind.SWITCHOVER, MoveOptions(to, StandbyMode(mode)))
            assert (await Move(inventory, nodes, journal, request).run()).ok

    await in_process(net, moves)
    # As a failover on the chain's silence leaves it: the key back in val-c's home.
    home_key = net.directory / "val-c" / "validator_key.json"
    shutil.copy(net.directory / "keys" / "val-c" / "validator_key.json", home_key)
    home_key.chmod(0o600)
    before = (net.directory / "val-c" / "config.json").read_text()

    code, result = rejoin(net, "val-c")
    assert code == 1 and result["outcome"] == "refused", result
    assert 'standby = "hot-swap"' in result["message"] and "val-c" in result["message"]
    assert not home_key.exists()  # parked first: another node signs
    assert (net.directory / "keys" / "val-c" / "validator_key.json").exists()
    assert (net.directory / "val-c" / "config.json").read_text() == before  # the mode was not changed

    net.edit_inventory("val-c", standby="hot-swap")
    ready = await in_process(net, lambda inventory, nodes, journal: Rejoin(inventory, nodes, "val-c", journal, timeout=60).run())
    assert ready.ready and ready.outcome == "ready", ready
    assert json.loads((net.directory / "val-c" / "config.json").read_text())["tracked_shards_config"] == {"ShadowValidator": net.pool()}
    assert list((net.directory / "val-c").glob("config.json.*.bak"))
    net.wait_height(5)
    net.assert_no_double_sign()


def test_a_standby_without_its_staged_key_is_not_ready(net: Localnet, tmp_path: Path) -> None:
    """Exit 1 with the reason: a standby that could not take over is not called ready. val-c is
    a running standby whichever test ran before (its mode is the inventory's either way)."""
    staged = net.directory / "keys" / "val-c" / "validator_key.json"
    aside = tmp_path / "validator_key.json"
    shutil.move(staged, aside)  # kept: never the last copy
    try:
        code, result = rejoin(net, "val-c")
    finally:
        shutil.move(aside, staged)
    assert code == 1 and result["outcome"] == "not-ready" and not result["ready"], result
    assert f"no valid staged key at val-c:{staged}" in result["message"]
    assert any(f["fix"] == f"run `near-failover keys stage -c {net.inventory} --to val-c`" for f in result["findings"])
    net.assert_no_double_sign()
