"""How near-failover's processes log: one structlog setup for the CLI, the agent, the boot guard
and the watchdog.

Three formats: ``console`` for a person at a terminal, ``json`` (one object a line) and
``logfmt`` for journald, Loki or grep. Colour codes are written only to a terminal, never into a
file or journald. Every event passes the one redaction rule set (near_failover.redact) before it
is rendered, and tracebacks never show local variables (a password or a key being parsed can be
among them).

The agent exports its choice in the environment (``NEAR_FAILOVER_LOG_FORMAT``,
``NEAR_FAILOVER_LOG_LEVEL``), so the watchdog it spawns logs the same way by calling
``configure_from_env()`` first.
"""

from __future__ import annotations

import logging
import os
import sys
from enum import Enum
from typing import Any, TextIO

import structlog

from near_failover.redact import redact_log_event

ENV_FORMAT = "NEAR_FAILOVER_LOG_FORMAT"
ENV_LEVEL = "NEAR_FAILOVER_LOG_LEVEL"


class LogFormat(str, Enum):
    CONSOLE = "console"
    JSON = "json"
    LOGFMT = "logfmt"


class LogLevel(str, Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def _renderer(fmt: LogFormat, colours: bool) -> Any:
    if fmt == LogFormat.JSON:
        return structlog.processors.JSONRenderer(sort_keys=False)
    if fmt == LogFormat.LOGFMT:
        return structlog.processors.LogfmtRenderer(key_order=["timestamp", "level", "event"], bool_as_flag=False)
    return structlog.dev.ConsoleRenderer(colors=colours, exception_formatter=structlog.dev.plain_traceback)


def configure_logging(fmt: LogFormat = LogFormat.CONSOLE, level: LogLevel = LogLevel.INFO, stream: TextIO | None = None, export: bool = False) -> None:
    """Log ``fmt`` lines at ``level`` and above to ``stream`` (stdout when None, read at each
    write so a test's capture still sees it); with ``export``, child processes inherit the choice."""
    target = stream if stream is not None else sys.stdout
    colours = fmt == LogFormat.CONSOLE and _isatty(target)
    machine = fmt != LogFormat.CONSOLE
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.format_exc_info,  # the traceback as text, so redaction reads it
            redact_log_event,
            structlog.processors.TimeStamper(fmt="iso", utc=True) if machine else structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            _renderer(fmt, colours),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.value.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    if export:
        os.environ[ENV_FORMAT] = fmt.value
        os.environ[ENV_LEVEL] = level.value


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def configure_from_env(stream: TextIO | None = None) -> None:
    """The format and level a parent (the agent) exported; console/info when none or unknown."""
    try:
        fmt = LogFormat(os.environ.get(ENV_FORMAT, LogFormat.CONSOLE.value))
        level = LogLevel(os.environ.get(ENV_LEVEL, LogLevel.INFO.value))
    except ValueError:
        fmt, level = LogFormat.CONSOLE, LogLevel.INFO
    configure_logging(fmt, level, stream)


def settings_summary(inventory: Any, node: str, fmt: LogFormat, level: LogLevel) -> dict[str, Any]:
    """Pure: what an agent runs with, logged once at its start so a log says how it was set up
    (the store and its endpoints without credentials, the lease timings, this node's place)."""
    from near_failover import __version__
    from near_failover.redact import redact_url

    spec = inventory.node(node)
    lease = inventory.lease
    summary: dict[str, Any] = {
        "version": __version__,
        "node": spec.name,
        "account_id": inventory.validator.account_id,
        "chain_id": inventory.validator.chain_id,
        "control": spec.control,
        "standby": spec.standby,
        "priority": spec.priority,
        "api": spec.api,
        "fence_command": bool(spec.fence_command),
        "nodes": [n.name for n in inventory.nodes],
        "log_format": fmt.value,
        "log_level": level.value,
    }
    if lease is not None:
        summary.update(
            store=lease.store,
            endpoints=[redact_url(e) for e in lease.endpoints] if lease.store == "etcd" else None,
            ttl=lease.ttl,
            loop_wait=lease.loop_wait,
            retry_timeout=lease.retry_timeout,
            unhealthy_loops=lease.unhealthy_loops,
        )
    return summary


# The package imports this module as soon as structlog is loaded (near_failover/__init__.py):
# from then on every event passes the redaction rule, whatever process logs it.
configure_from_env()
