"""`python -m near_failover.localnet ...`: the localnet commands, with a lean path for processes.

`node --home DIR` and `chain --dir DIR` are dispatched without importing typer/rich, so each
emulated neard starts fast and stays small; everything else goes to the typer app.
"""

import sys


def main() -> int:
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "node" and args[1] == "--home":
        from pathlib import Path

        from near_failover.localnet.node_main import run_node

        return run_node(Path(args[2]))
    if len(args) == 3 and args[0] == "chain" and args[1] == "--dir":
        from pathlib import Path

        from near_failover.localnet.chain_server import run_chain

        return run_chain(Path(args[2]))
    from near_failover.cli.localnet import app

    app(prog_name="near-failover localnet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
