"""The `near-failover` command."""

from __future__ import annotations

import typer

from near_failover.localnet.cli import app as localnet_app

app = typer.Typer(
    help="Fenced, verified, journaled failover for NEAR validators.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
app.add_typer(localnet_app, name="localnet")
