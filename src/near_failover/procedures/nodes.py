"""One handle per inventory node: its host, its neard control and its RPC, opened together.

The inventory (pydantic) and the RPC client (httpx) load only where a handle is opened with
them: a fence on the node's own machine (the watchdog) uses ``NodeOnHost`` and the standard
library alone."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, AsyncIterator, Protocol

from near_failover.control import control_for
from near_failover.control.base import ControlError, NeardControl
from near_failover.hosts import Host, HostError, host_for
from near_failover.hosts.home import home_config, home_rpc_ports, home_validator_key_path
from near_failover.procedures.errors import Refused

if TYPE_CHECKING:
    from near_failover.inventory import Inventory, Node
    from near_failover.neard.rpc import NeardRpc, StatusResponse

# A status call that does not answer within this is treated as "RPC unreachable" by the
# procedures (a SIGSTOPped or overloaded neard); it is short so a dead node costs little.
STATUS_TIMEOUT = 2.0


class NodePlace(Protocol):
    """Where a node lives on its machine: an inventory Node, or the watchdog's FenceTarget."""

    @property
    def name(self) -> str: ...
    @property
    def home(self) -> PurePosixPath: ...
    @property
    def key_store(self) -> PurePosixPath: ...
    @property
    def rpc(self) -> str: ...


@dataclass
class NodeOnHost:
    """A node on its host, through its control, without its RPC client: what a fence on the
    node's own machine acts with."""

    spec: NodePlace
    host: Host
    control: NeardControl

    @property
    def name(self) -> str:
        return self.spec.name

    async def home_config(self) -> dict:
        return await home_config(self.host, self.spec.home)

    async def validator_key_path(self) -> PurePosixPath:
        """Where this node's neard loads the validator key (config.json's validator_key_file)."""
        return await home_validator_key_path(self.host, self.spec.home)

    async def rpc_ports(self) -> tuple[int, ...]:
        return await home_rpc_ports(self.host, self.spec.home, self.spec.rpc)

    async def key_in_home(self) -> bool:
        return await self.host.exists(await self.validator_key_path())


@dataclass
class NodeAccess(NodeOnHost):
    spec: Node
    rpc: NeardRpc

    async def status_or_none(self) -> StatusResponse | None:
        from near_failover.neard.rpc import RpcError

        try:
            return await asyncio.wait_for(self.rpc.status(), STATUS_TIMEOUT + 0.5)
        except (RpcError, asyncio.TimeoutError):
            return None


async def control_misses_neard(node: NodeAccess) -> str | None:
    """Why ``node``'s control would miss the neard that answers on its RPC, or None when it finds
    it running: a stop, a SIGHUP or a restart goes through that control, and a restart would start
    a second neard beside the one that answers. Asked once the RPC has answered."""
    try:
        if await node.control.is_active():
            return None
    except (ControlError, HostError) as exc:
        return f"{node.name}'s control cannot tell whether neard runs: {exc}"
    return f"{node.name}'s neard answers on {node.spec.rpc}, but its control ({node.control.describe()}) does not find it running"


async def layout_problems_on(nodes: dict[str, NodeAccess], node: NodeAccess) -> list[str]:
    """Homes and key stores of the nodes on ``node``'s machine, by the real paths it resolves
    (a key_store symlinked into a home, two nodes on one home): see inventory.layout_problems."""
    from near_failover.inventory import NodePaths, layout_problems, machine_of

    machine = machine_of(node.spec)
    group = [n.spec for n in nodes.values() if machine_of(n.spec) == machine]
    paths = [
        NodePaths(n.name, await node.host.real_path(n.home), await node.host.real_path(n.key_store))
        for n in group
    ]
    return layout_problems(paths, machine)


async def refuse_layout_problems(nodes: dict[str, NodeAccess], node: NodeAccess) -> None:
    """Refused when ``layout_problems_on`` finds any, or when the host cannot resolve the paths:
    before a key is staged or given, a key store that resolves into a home must not be used."""
    try:
        problems = await layout_problems_on(nodes, node)
    except HostError as exc:
        raise Refused(f"cannot resolve the homes and key stores on {node.name}'s host: {exc}") from exc
    if problems:
        raise Refused("; ".join(problems))


@asynccontextmanager
async def open_nodes(inventory: Inventory) -> AsyncIterator[dict[str, NodeAccess]]:
    """Handles for every node of the inventory; hosts connect lazily and close on exit."""
    from near_failover.neard.rpc import NeardRpc

    async with AsyncExitStack() as stack:
        nodes: dict[str, NodeAccess] = {}
        for spec in inventory.nodes:
            host = host_for(spec, inventory.ssh_for(spec))
            stack.push_async_callback(host.close)
            rpc = NeardRpc(spec.rpc, name=spec.name, timeout=STATUS_TIMEOUT)
            await stack.enter_async_context(rpc)
            nodes[spec.name] = NodeAccess(spec, host, control_for(spec, host), rpc)
        yield nodes
