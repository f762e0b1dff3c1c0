"""near-failover: fenced, verified, journaled failover for NEAR Protocol validators."""

import structlog as _structlog

from near_failover.redact import redact_log_event as _redact_log_event

__version__ = "0.1.0"


def installed_version() -> str:
    """The version pip or pipx installed (the wheel's metadata), else this tree's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("near-failover")
    except PackageNotFoundError:
        return __version__

# structlog's default renderer prints every frame's local variables with a traceback; a password
# (etcd), a token or a key being parsed can be among them. Every entry point (the CLI, the agent,
# the watchdog) imports this package first, so tracebacks never show locals. Every event, the
# text of its exception included, then passes the one redaction rule set (near_failover.redact).
_structlog.configure(
    processors=[
        _structlog.contextvars.merge_contextvars,
        _structlog.processors.add_log_level,
        _structlog.processors.StackInfoRenderer(),
        _structlog.dev.set_exc_info,
        _structlog.processors.format_exc_info,
        _redact_log_event,
        _structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
        _structlog.dev.ConsoleRenderer(exception_formatter=_structlog.dev.RichTracebackFormatter(show_locals=False)),
    ]
)
