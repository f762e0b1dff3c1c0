"""`python -m near_failover` is the `near-failover` command."""

from near_failover.cli import app

app(prog_name="near-failover")
