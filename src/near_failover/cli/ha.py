"""The automatic mode's commands: `agent`, `guard`, `pause`, `resume`, `alert test`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import typer

from near_failover.cli.common import (
    InventoryOption,
    JsonOption,
    LogFormatOption,
    LogLevelOption,
    app,
    deliver_alert,
    err,
    journal_or_fail,
    load_inventory_or_fail,
    log_to_stderr,
    out,
    print_json,
)
from near_failover.cli_errors import EXIT_REFUSED, fail
from near_failover.console import plain
from near_failover.ha.alerts import AlertEvent, AlertKind
from near_failover.logs import LogFormat, LogLevel, settings_summary

alert_app = typer.Typer(help="Check the alert targets of an inventory.", no_args_is_help=True, rich_markup_mode=None)


@app.command("agent")
def agent(
    inventory: Path = InventoryOption,
    node: str = typer.Option(..., "--node", help="The node this agent runs beside."),
    log_format: LogFormat = LogFormatOption,
    log_level: LogLevel = LogLevelOption,
) -> None:
    """Run the automatic-mode agent beside one neard: renew the lease while healthy, fence itself
    before it can expire, promote the best standby when the leader is gone. Serves its API on the
    node's `api` address when the inventory gives one."""
    import signal as signals

    from near_failover.api.client import api_verify
    from near_failover.ha.agent import Agent, AgentError, agent_state_dir, load_token
    from near_failover.ha.lease import LeaseStoreError, lease_clock
    from near_failover.ha.locks import LockHeld, take_agent_lock
    from near_failover.ha.sdnotify import supervise
    from near_failover.ha.stores import open_lease_store
    from near_failover.inventory import InventoryError

    log_to_stderr(log_format, log_level, export=True)
    inv = load_inventory_or_fail(inventory)
    try:
        spec = inv.node(node)
        store = open_lease_store(inv, spec.name)
        token, verify = load_token(inv), api_verify(inv)
    except (InventoryError, LeaseStoreError) as exc:  # an unknown node, unusable [lease] settings
        fail(str(exc))
    try:  # before the API binds: a second agent is refused with the running one named
        lock = take_agent_lock(agent_state_dir(inv), spec.host, str(spec.home), spec.name, spec.api)
    except LockHeld as held:
        fail(str(held), EXIT_REFUSED)
    log_agent_settings(inv, spec.name, log_format, log_level)
    server = _api_server(spec)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGTERM, signals.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with store:
            with journal_or_fail(inv) as journal:
                the_agent = Agent(inv, spec.name, store, journal, token=token, api_verify=verify, lock=lock)
                ready = asyncio.Event()
                tasks = [asyncio.create_task(the_agent.run(stop, ready))]
                # systemd's Type=notify and WatchdogSec=: READY once the agent's watchdog watches,
                # WATCHDOG=1 while its loop beats (a loop legitimately takes up to a ttl).
                def last_beat() -> float | None:
                    return the_agent.heartbeat.last["at"] if the_agent.heartbeat.last else None

                pings = asyncio.create_task(supervise(ready, last_beat, lease_clock, stale_after=the_agent.settings.ttl))
                if server is not None:
                    from near_failover.api.app import create_app

                    server.app = create_app(the_agent, the_agent.token)
                    tasks.append(asyncio.create_task(server.run()))
                done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                stop.set()
                for task in pending:
                    if task is not tasks[0]:
                        task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                pings.cancel()
                for task in done:
                    task.result()

    try:
        asyncio.run(go())
    except AgentError as exc:
        fail(str(exc), EXIT_REFUSED)


@app.command("watchdog")
def watchdog(
    inventory: Path = InventoryOption,
    node: str = typer.Option(..., "--node", help="The node whose agent this watchdog guards."),
) -> None:
    """Run the agent's watchdog on its own (deploy/systemd/near-failover-watchdog.service), so a
    crashed, killed or restarted agent does not take it along: it fences neard at the lease's end
    if the agent stops renewing, and waits for the next agent. The agent uses it, instead of a
    child of its own, when its environment has NEAR_FAILOVER_WATCHDOG=unit."""
    import sys

    from near_failover.ha.watchdog import FenceTarget, target_path, watchdog_argv
    from near_failover.ha.watchdog_unit import heartbeat_path, watchdog_reserve
    from near_failover.inventory import InventoryError

    inv = load_inventory_or_fail(inventory)
    try:
        spec = inv.node(node)
    except InventoryError as exc:
        fail(str(exc))
    beats = heartbeat_path(inv, spec.name)
    target = target_path(beats)
    try:
        beats.parent.mkdir(parents=True, exist_ok=True)
        FenceTarget.of(inventory, spec).write(target)
    except OSError as exc:
        fail(f"watchdog: cannot write the node to fence to {target} ({exc.strerror}): the [journal] path's folder must be writable")
    # The watchdog runs as long as neard: this process, which loaded the CLI and the inventory,
    # becomes the light one (same pid: systemd's NotifyAccess=main still knows it).
    argv = watchdog_argv("near_failover.ha.watchdog_unit", target, inventory, spec.name, beats, watchdog_reserve(inv))
    sys.stdout.flush()
    os.execv(argv[0], argv)


def log_agent_settings(inventory: Any, node: str, fmt: LogFormat, level: LogLevel) -> None:
    """One line at the agent's start with what it runs with, before its loop logs anything."""
    import structlog

    structlog.get_logger("near_failover.agent").info("agent starting", **settings_summary(inventory, node, fmt, level))


def _api_server(spec: Any) -> Any:
    """The node's agent API, bound (with its TLS files loaded) before the agent starts, so a busy
    port or a wrong certificate stops the agent at once with the address or the file named."""
    if not spec.api:
        return None
    from urllib.parse import urlsplit

    from near_failover.api.server import ApiServer, ApiServerError, ServerTls

    where = urlsplit(spec.api)
    tls = ServerTls(spec.api_cert_file, spec.api_key_file) if spec.api_cert_file and spec.api_key_file else None
    try:
        return ApiServer(None, where.hostname or "127.0.0.1", where.port or (443 if tls else 8008), tls)
    except ApiServerError as exc:
        fail(f"node {spec.name}: {exc}")


def _set_paused(inventory: Path, paused: bool, as_json: bool) -> None:
    from near_failover.ha.lease import LeaseStoreError
    from near_failover.ha.stores import open_lease_store

    inv = load_inventory_or_fail(inventory)

    async def go() -> None:
        async with open_lease_store(inv) as store:
            await store.set_paused(paused)

    try:
        asyncio.run(go())
    except LeaseStoreError as exc:
        fail(str(exc), EXIT_REFUSED)
    if as_json:
        print_json({"validator": inv.validator.account_id, "store": inv.lease.store if inv.lease else "sqlite", "paused": paused})
    else:
        out.print("automatic decisions paused: agents keep renewing but never promote" if paused else "automatic decisions resumed")


@alert_app.command("test")
def alert_test(inventory: Path = InventoryOption, as_json: bool = JsonOption) -> None:
    """Send a test message to every alert target of the inventory; exit 1 if any of them fails."""
    import socket

    inv = load_inventory_or_fail(inventory)
    if not inv.alerts:
        fail(f"{inv.source}: no alert target: add an alert table (kind = json|slack|telegram|apprise), see deploy/inventory.example.toml")
    event = AlertEvent.condition(AlertKind.TEST, inv.validator.account_id, socket.gethostname(),
                                 "a test sent by `near-failover alert test`: this target receives near-failover's alerts")
    results = asyncio.run(deliver_alert(inv, event))
    if as_json:
        print_json([{"target": r.target, "ok": r.ok, "status": r.status, "error": r.error, "attempts": r.attempts} for r in results])
    else:
        for r in results:
            out.print(plain(f"{'ok' if r.ok else 'FAILED'}: {r.target}" + ("" if r.ok else f" ({r.error})")), highlight=False, soft_wrap=True)
    if not all(r.ok for r in results):
        raise typer.Exit(EXIT_REFUSED)


@app.command("pause")
def pause(inventory: Path = InventoryOption, as_json: bool = JsonOption) -> None:
    """Stop automatic promotions for this validator (maintenance); leaders keep their lease."""
    _set_paused(inventory, True, as_json)


@app.command("resume")
def resume(inventory: Path = InventoryOption, as_json: bool = JsonOption) -> None:
    """Restart automatic decisions after `pause`."""
    _set_paused(inventory, False, as_json)


@app.command("guard")
def guard(
    inventory: Path = InventoryOption,
    node: str = typer.Option(..., "--node", help="The node whose neard is about to start."),
    log_format: LogFormat = LogFormatOption,
    log_level: LogLevel = LogLevelOption,
    as_json: bool = JsonOption,
) -> None:
    """Boot guard for systemd's ExecStartPre: refuse (exit 1) to let neard start with the key in
    its home unless this node holds the lease."""
    from near_failover.ha.guard import boot_guard
    from near_failover.ha.lease import LeaseStoreError
    from near_failover.ha.stores import open_lease_store
    from near_failover.inventory import InventoryError

    log_to_stderr(log_format, log_level)
    inv = load_inventory_or_fail(inventory)
    try:
        node = inv.node(node).name
        store = open_lease_store(inv, node)
    except (InventoryError, LeaseStoreError) as exc:  # an unknown node, unusable [lease] settings: neard does not start
        fail(str(exc))

    async def go() -> Any:
        async with store:
            return await boot_guard(inv, node, store)

    verdict = asyncio.run(go())
    if as_json:
        print_json({"node": node, "allowed": verdict.allowed, "reason": verdict.reason})
    else:
        (out if verdict.allowed else err).print(plain(("ok: " if verdict.allowed else "refused: ") + verdict.reason), highlight=False, soft_wrap=True)
    if not verdict.allowed:
        raise typer.Exit(EXIT_REFUSED)

