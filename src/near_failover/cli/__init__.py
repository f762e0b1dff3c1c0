"""The `near-failover` command.

Exit codes: 0 success, 1 a check failed or an operation was refused (or a bug: one line names its
crash log), 2 a usage or input error (cli_errors.py). One module per group of commands; each
registers its commands on the root app of `common.py`.
"""

from near_failover.cli import check, demo, drill, init, moves, rejoin, status  # noqa: F401  (they register their commands)
from near_failover.cli.common import app
from near_failover.cli.config import config_app
from near_failover.cli.ha import alert_app
from near_failover.cli.keys import keys_app
from near_failover.cli.localnet import app as localnet_app

app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
app.add_typer(alert_app, name="alert")
app.add_typer(localnet_app, name="localnet")

__all__ = ["app"]
