"""The automatic mode's commands: `agent`, `guard`, `pause`, `resume`, `alert test`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

from near_failover.cli.common import (
    InventoryOption,
    JsonOption,
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

alert_app = typer.Typer(help="Check the alert targets of an inventory.", no_args_is_help=True, rich_markup_mode=None)


@app.command("agent")
def agent(
    inventory: Path = InventoryOption,
    node: str = typer.Option(..., "--node", help="The node this agent runs beside."),
) -> None:
    """Run the automatic-mode agent beside one neard: renew the lease while healthy, fence itself
    before it can expire, promote the best standby when the leader is gone. Serves its API on the
    node's `api` address when the inventory gives one."""
    import signal as signals

    from near_failover.api.client import api_verify
    from near_failover.ha.agent import Agent, AgentError, load_token
    from near_failover.ha.lease import LeaseStoreError, open_lease_store
    from near_failover.inventory import InventoryError

    log_to_stderr()
    inv = load_inventory_or_fail(inventory)
    try:
        spec = inv.node(node)
        store = open_lease_store(inv, spec.name)
        token, verify = load_token(inv), api_verify(inv)
    except (InventoryError, LeaseStoreError) as exc:  # an unknown node, unusable [lease] settings
        fail(str(exc))
    server = _api_server(spec)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGTERM, signals.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with store:
            with journal_or_fail(inv) as journal:
                the_agent = Agent(inv, spec.name, store, journal, token=token, api_verify=verify)
                tasks = [asyncio.create_task(the_agent.run(stop))]
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
                for task in done:
                    task.result()

    try:
        asyncio.run(go())
    except AgentError as exc:
        fail(str(exc), EXIT_REFUSED)


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


def _set_paused(inventory: Path, paused: bool) -> None:
    from near_failover.ha.lease import LeaseStoreError, open_lease_store

    inv = load_inventory_or_fail(inventory)

    async def go() -> None:
        async with open_lease_store(inv) as store:
            await store.set_paused(paused)

    try:
        asyncio.run(go())
    except LeaseStoreError as exc:
        fail(str(exc), EXIT_REFUSED)
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
def pause(inventory: Path = InventoryOption) -> None:
    """Stop automatic promotions for this validator (maintenance); leaders keep their lease."""
    _set_paused(inventory, True)


@app.command("resume")
def resume(inventory: Path = InventoryOption) -> None:
    """Restart automatic decisions after `pause`."""
    _set_paused(inventory, False)


@app.command("guard")
def guard(
    inventory: Path = InventoryOption,
    node: str = typer.Option(..., "--node", help="The node whose neard is about to start."),
) -> None:
    """Boot guard for systemd's ExecStartPre: refuse (exit 1) to let neard start with the key in
    its home unless this node holds the lease."""
    from near_failover.ha.guard import boot_guard
    from near_failover.ha.lease import LeaseStoreError, open_lease_store
    from near_failover.inventory import InventoryError

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
    (out if verdict.allowed else err).print(plain(("ok: " if verdict.allowed else "refused: ") + verdict.reason), highlight=False, soft_wrap=True)
    if not verdict.allowed:
        raise typer.Exit(EXIT_REFUSED)

