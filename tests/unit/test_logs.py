"""The logging setup: formats, levels, no colour codes off a terminal, redaction, and what the
agent says about itself at start."""

from __future__ import annotations

import io
import json
import os

import pytest

from near_failover.logs import (
    ENV_FORMAT,
    ENV_LEVEL,
    LogFormat,
    LogLevel,
    configure_from_env,
    configure_logging,
    settings_summary,
)

ANSI = "\x1b["


@pytest.fixture(autouse=True)
def restore_logging():
    saved = {k: os.environ.get(k) for k in (ENV_FORMAT, ENV_LEVEL)}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    configure_from_env()


def emit(fmt: LogFormat, level: LogLevel = LogLevel.INFO) -> str:
    import structlog

    stream = io.StringIO()
    configure_logging(fmt, level, stream)
    log = structlog.get_logger("test")
    log.debug("hidden at info")
    log.info("promoting", node="val-b", reason="no leader for 2 ttls", password="hunter2-secret")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("loop failed")
    return stream.getvalue()


def test_json_is_one_object_a_line_redacted_without_colours():
    text = emit(LogFormat.JSON)
    lines = [json.loads(line) for line in text.splitlines()]
    assert [e["event"] for e in lines] == ["promoting", "loop failed"]
    assert lines[0]["reason"] == "no leader for 2 ttls" and lines[0]["level"] == "info" and lines[0]["timestamp"].endswith("Z")
    assert "hunter2-secret" not in text and "RuntimeError: boom" in lines[1]["exception"]
    assert ANSI not in text


def test_logfmt_and_console_carry_no_colour_codes_off_a_terminal():
    logfmt = emit(LogFormat.LOGFMT)
    assert logfmt.splitlines()[0].startswith("timestamp=") and 'event=promoting' in logfmt and 'reason="no leader for 2 ttls"' in logfmt
    console = emit(LogFormat.CONSOLE)
    assert "promoting" in console and "RuntimeError: boom" in console
    for text in (logfmt, console):
        assert ANSI not in text and "hidden at info" not in text and "hunter2-secret" not in text


def test_debug_level_shows_debug_lines():
    assert "hidden at info" in emit(LogFormat.JSON, LogLevel.DEBUG)


def test_an_exported_format_reaches_a_child_through_the_environment():
    configure_logging(LogFormat.LOGFMT, LogLevel.WARNING, io.StringIO(), export=True)
    assert (os.environ[ENV_FORMAT], os.environ[ENV_LEVEL]) == ("logfmt", "warning")


def test_settings_summary_names_the_store_and_timings(tmp_path):
    from near_failover.inventory import load_inventory

    inventory = tmp_path / "inventory.toml"
    inventory.write_text(f"""
[validator]
account_id = "pool.poolv1.near"
chain_id = "localnet"

[[node]]
name = "val-a"
host = "local"
home = "{tmp_path}/a"
rpc = "http://127.0.0.1:3030"
control = "systemd:neard.service"
key_store = "{tmp_path}/keys/a.json"
standby = "hot-swap"

[lease]
store = "etcd"
endpoints = ["http://127.0.0.1:2379"]
""")
    summary = settings_summary(load_inventory(inventory), "val-a", LogFormat.JSON, LogLevel.INFO)
    assert summary["store"] == "etcd" and summary["endpoints"] == ["http://127.0.0.1:2379"]
    assert (summary["node"], summary["ttl"], summary["log_format"]) == ("val-a", 10, "json")
