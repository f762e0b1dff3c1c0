"""One handle per inventory node: its host, its neard control and its RPC, opened together."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import AsyncIterator

from near_failover.control import control_for
from near_failover.control.base import NeardControl
from near_failover.hosts import Host, host_for
from near_failover.hosts.home import home_config, home_rpc_ports, home_validator_key_path
from near_failover.inventory import Inventory, Node
from near_failover.neard.rpc import NeardRpc, RpcError, StatusResponse

# A status call that does not answer within this is treated as "RPC unreachable" by the
# procedures (a SIGSTOPped or overloaded neard); it is short so a dead node costs little.
STATUS_TIMEOUT = 2.0


@dataclass
class NodeAccess:
    spec: Node
    host: Host
    control: NeardControl
    rpc: NeardRpc

    @property
    def name(self) -> str:
        return self.spec.name

    async def status_or_none(self) -> StatusResponse | None:
        try:
            return await asyncio.wait_for(self.rpc.status(), STATUS_TIMEOUT + 0.5)
        except (RpcError, asyncio.TimeoutError):
            return None

    async def home_config(self) -> dict:
        return await home_config(self.host, self.spec.home)

    async def validator_key_path(self) -> PurePosixPath:
        """Where this node's neard loads the validator key (config.json's validator_key_file)."""
        return await home_validator_key_path(self.host, self.spec.home)

    async def rpc_ports(self) -> tuple[int, ...]:
        return await home_rpc_ports(self.host, self.spec.home, self.spec.rpc)

    async def key_in_home(self) -> bool:
        return await self.host.exists(await self.validator_key_path())


@asynccontextmanager
async def open_nodes(inventory: Inventory) -> AsyncIterator[dict[str, NodeAccess]]:
    """Handles for every node of the inventory; hosts connect lazily and close on exit."""
    async with AsyncExitStack() as stack:
        nodes: dict[str, NodeAccess] = {}
        for spec in inventory.nodes:
            host = host_for(spec, inventory.ssh_for(spec))
            stack.push_async_callback(host.close)
            rpc = NeardRpc(spec.rpc, name=spec.name, timeout=STATUS_TIMEOUT)
            await stack.enter_async_context(rpc)
            nodes[spec.name] = NodeAccess(spec, host, control_for(spec, host), rpc)
        yield nodes
