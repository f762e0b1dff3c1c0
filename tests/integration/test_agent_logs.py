"""An agent's log, in JSON, read back after an automatic failover: its settings at start, and one
decision line, with its reason, per loop that decided something (the "decision" event: fields
kind, reason, phase)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.integration.agent_cluster import start_agent_cluster, stop_agent_cluster
from tests.integration.localnet_support import wait_for


def events(path: Path) -> list[dict]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{path.name}: a line that is not JSON: {line!r}") from None
    return parsed


def test_a_failover_logged_in_json_has_one_decision_line_with_a_reason_per_deciding_loop(tmp_path: Path) -> None:
    cluster = start_agent_cluster(tmp_path, ("val-a", "val-b"), agent_args=("--log-format", "json"))
    try:
        assert cluster.leader()[0] == "val-a"
        cluster.net.signal("val-a", signal.SIGKILL)
        wait_for(lambda: cluster.leader()[0] == "val-b", 60, "val-b to take the lease")
        wait_for(lambda: cluster.status("val-b")["role"] == "leader", 30, "val-b to lead")
    finally:
        stop_agent_cluster(cluster)
    logs = {name: events(tmp_path / f"agent-{name}.log") for name in ("val-a", "val-b")}
    for name, log in logs.items():
        start = log[0]
        assert (start["event"], start["node"], start["log_format"]) == ("agent starting", name, "json"), start
        assert start["store"] == "sqlite" and start["ttl"] == 4.0
        assert all("\x1b[" not in json.dumps(e) for e in log)
    for name, log in logs.items():
        decisions = [e for e in log if e["event"] == "decision"]
        assert decisions, f"agent {name} logged no decision line: {[e['event'] for e in log]}"
        for d in decisions:
            assert d["kind"] and d["reason"] and d["phase"], d
