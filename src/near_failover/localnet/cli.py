"""`near-failover localnet ...`: start, inspect and stop an emulated localnet."""

import typer

app = typer.Typer(help="An emulated NEAR localnet: chain, neard-like nodes, double-sign ledger.", no_args_is_help=True)
