"""near-failover: fenced, verified, journaled failover for NEAR Protocol validators."""

# Every entry point (the CLI, the agent, the watchdog) imports this package first, so every
# process logs through near_failover.logs from its start: tracebacks without local variables, the
# one redaction rule set on every event, and no colour codes unless the output is a terminal.
# The format and level an agent exported reach the watchdog it spawns the same way.
from near_failover.logs import configure_from_env as _configure_from_env

__version__ = "0.1.0"

_configure_from_env()


def installed_version() -> str:
    """The version pip or pipx installed (the wheel's metadata), else this tree's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("near-failover")
    except PackageNotFoundError:
        return __version__
