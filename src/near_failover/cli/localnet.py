"""`near-failover localnet ...`: start, inspect and stop an emulated localnet."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from near_failover.cli_errors import fail
from near_failover.console import console, plain, safe

app = typer.Typer(help="An emulated NEAR localnet: chain, neard-like nodes, double-sign ledger.", no_args_is_help=True, rich_markup_mode=None)
out = console()
err = console(stderr=True)

DirOption = typer.Option(..., "--dir", help="The localnet's folder (homes, keys, logs, inventory.toml).")
JsonOption = typer.Option(False, "--json", help="Print JSON for scripts.")


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


@app.command("up")
def up_command(
    directory: Path = DirOption,
    block_time: float = typer.Option(0.6, "--block-time", min=0.05, help="Seconds per block (0.05 or more)."),
    chain_id: str = typer.Option("localnet", "--chain-id", help="localnet, testnet or mainnet (mainnet/testnet enable neard's public-chain checks)."),
    profile: str = typer.Option("fast", "--profile", help="Timings of the emulated neard: fast (tests, demo) or mainnet (figures from nearcore and operators)."),
    memtrie_load: Optional[float] = typer.Option(None, "--memtrie-load", help="Seconds a node with memtries spends loading them at each start, in total (RPC closed meanwhile); default: the profile's (fast 1, mainnet 30 per shard loaded)."),
    stop_time: Optional[float] = typer.Option(None, "--stop-time", help="Seconds from SIGTERM to exit (store shutdown); default: the profile's (fast 0.1, mainnet 20)."),
    reload_delay: Optional[float] = typer.Option(None, "--reload-delay", help="Seconds from SIGHUP until the new key is in use; default: the profile's (fast 0.1, mainnet 1)."),
    state_sync: Optional[float] = typer.Option(None, "--state-sync", help="Seconds to state-sync a shard the node starts to care about; default: the profile's (fast 5 blocks, mainnet 900)."),
    routing_lag: Optional[float] = typer.Option(None, "--routing-lag", help="Seconds after the key moves to another node before its endorsements count; default: the profile's (fast 0, mainnet 60)."),
    sync_rate: Optional[float] = typer.Option(None, "--sync-rate", help="Blocks per second a node behind the network catches up at; default: the profile's (fast 200, mainnet 5)."),
    epoch_length: int = typer.Option(300, "--epoch-length", help="Blocks per epoch."),
    seed: Optional[str] = typer.Option(None, "--seed", help="Seed of the duty schedule (default: random); same seed, same duties."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for every node to be ready (plus the memtrie load)."),
    reset: bool = typer.Option(False, "--reset", help="Delete a stopped localnet already in --dir and start a new one."),
    kickout: str = typer.Option("80,80,70", "--kickout-thresholds", help="Block, chunk and chunk-validator-only kickout thresholds in percent (mainnet: 80,80,70)."),
    as_json: bool = JsonOption,
) -> None:
    """Create the homes and start the chain and three nodes: val-a (validator, holds the pool key),
    val-b (Option 2 hot-swap standby), val-c (Option 1 rpc standby). Returns when all are ready."""
    from near_failover.localnet.profile import timings as profile_timings
    from near_failover.localnet.supervisor import LocalnetError, up

    try:
        timings = profile_timings(
            profile, block_time, memtrie_load=memtrie_load, stop_time=stop_time, reload_delay=reload_delay,
            state_sync=state_sync, routing_lag=routing_lag, sync_blocks_per_second=sync_rate,
        )
    except ValueError as exc:
        fail(f"--profile {profile}: {exc}", 2)
    if chain_id not in ("localnet", "testnet", "mainnet"):
        fail(f"--chain-id {chain_id!r}: use localnet, testnet or mainnet", 2)
    try:
        b, c, e = (int(x) for x in kickout.split(","))
    except ValueError:
        fail(f"--kickout-thresholds {kickout!r}: expected three percentages such as 80,80,70", 2)
        return
    say = (lambda m: err.print(plain(m, "dim"), highlight=False)) if as_json else (lambda m: out.print(f"[cyan]>[/] {safe(m)}", highlight=False))
    try:
        result = up(directory, block_time, chain_id, timings, epoch_length, seed, timeout, reset, progress=say, thresholds=(b, c, e))
    except LocalnetError as exc:
        fail(str(exc), 1)
        return
    except OSError as exc:  # --dir cannot hold the homes: not a directory, read-only, ...
        fail(f"--dir {directory}: cannot create the localnet there ({exc.strerror}); pass a directory this user can write", 2)
        return
    if as_json:
        _print_json(result)
    else:
        _print_status(result)
        out.print(plain(f"inventory: {directory.resolve() / 'inventory.toml'}"))


@app.command("status")
def status_command(directory: Path = DirOption, as_json: bool = JsonOption) -> None:
    """Chain url, pid and height; each node's home, RPC, pid and whether it runs."""
    from near_failover.localnet.supervisor import LocalnetError, status

    try:
        result = status(directory)
    except LocalnetError as exc:
        fail(str(exc), 1)
        return
    if as_json:
        _print_json(result)
    else:
        _print_status(result)


@app.command("ledger")
def ledger_command(
    directory: Path = DirOption,
    epoch: Optional[int] = typer.Option(None, "--epoch", help="Epoch index (default: the current one)."),
    as_json: bool = JsonOption,
) -> None:
    """The chain's ledger: produced/expected per account this epoch, double signs, rejections."""
    from near_failover.localnet.supervisor import LocalnetError, ledger

    try:
        book = ledger(directory, epoch)
    except LocalnetError as exc:
        fail(str(exc), 1)
        return
    if as_json:
        _print_json(book)
        return
    table = Table(title=f"epoch {book['epoch_height']} from height {book['epoch_start_height']}, at height {book['height']}")
    for col in ("account", "blocks", "chunks", "endorsements"):
        table.add_column(col)
    for account, row in book["accounts"].items():
        cells = [f"{row[k]['produced']}/{row[k]['expected']}" for k in ("blocks", "chunks", "endorsements")]
        table.add_row(plain(account + (" *" if row.get("external") else "")), *cells)
    out.print(table)
    colour = "green" if book["double_signs"] == 0 else "red"
    out.print(f"[{colour}]double signs: {book['double_signs']}[/]")
    for event in book["double_sign_events"]:
        nodes = ", ".join(n["name"] for n in event["nodes"])
        out.print(plain(f"  {event['account_id']} {event['kind']} shard {event['shard']} at height {event['height']}: {nodes}", "red"))
    for account, reasons in book["rejected"].items():
        out.print(plain(f"rejected signatures for {account}: " + ", ".join(f"{r} {n}" for r, n in reasons.items())))


@app.command("down")
def down_command(
    directory: Path = DirOption,
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for each process after SIGTERM before SIGKILL (the mainnet profile's store shutdown takes 20)."),
    as_json: bool = JsonOption,
) -> None:
    """Stop the nodes and the chain this localnet started (pids from its own files), and wait."""
    from near_failover.localnet.supervisor import LocalnetError, down

    try:
        report = down(directory, timeout)
    except LocalnetError as exc:
        fail(str(exc), 1)
        return
    if as_json:
        _print_json(report)
    else:
        for name, entry in report.items():
            out.print(plain(f"{name}: {entry['result']}" + (f" (pid {entry['pid']})" if entry["pid"] else "")))


@app.command("node")
def node_command(home: Path = typer.Option(..., "--home", help="The neard home: config.json, node_key.json, genesis.json.")) -> None:
    """Run one emulated neard in the foreground (what the inventory's `start` runs)."""
    from near_failover.localnet.node_main import run_node

    raise typer.Exit(run_node(home))


@app.command("chain", hidden=True)
def chain_command(directory: Path = DirOption) -> None:
    """Run the chain process in the foreground (started by `up`)."""
    from near_failover.localnet.chain_server import run_chain

    raise typer.Exit(run_chain(directory))


def _print_status(result: dict) -> None:
    chain = result["chain"]
    out.print(plain(f"chain: {chain['url']} pid {chain['pid']} height {chain['height']}"))
    table = Table()
    for col in ("node", "rpc", "pid", "alive", "home"):
        table.add_column(col)
    for n in result["nodes"]:
        table.add_row(plain(n["name"]), plain(n["rpc"]), str(n["pid"]), "[green]yes[/]" if n["alive"] else "[red]no[/]", plain(n["home"]))
    out.print(table)
