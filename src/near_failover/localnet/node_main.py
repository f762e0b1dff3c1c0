"""The emulated neard's process entry: a `Node` served by `NodeRpc`.

It lives apart so that node.py (the node's life) and node_rpc.py (its RPC surface, which reads the
node) do not import each other: this module is the one that knows both.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from near_failover.localnet.http import Handler
from near_failover.localnet.node import EARLY_FATAL_SIGNALS, Node, NodeExit
from near_failover.localnet.node_rpc import NodeRpc
from near_failover.localnet.util import Log


def rpc_handler(node: Node) -> Handler:
    return NodeRpc(node).handle


def run_node(home: Path) -> int:
    # Until neard installs its handlers these signals take their default action (they kill it);
    # Python would turn SIGINT into KeyboardInterrupt, and an ignored SIGHUP could be inherited.
    for sig in EARLY_FATAL_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    log = Log()
    node = Node(home.resolve(), log, rpc_handler)

    async def main() -> int:
        try:
            node.load_home()
        except NodeExit as exc:
            return exc.code
        return await node.run()

    try:
        return asyncio.run(main())
    except NodeExit as exc:  # a panic raised inside a task or a signal callback
        return exc.code
