"""The watchdog stays light (issue 13, part 3): its process loads only what a fence on its own
machine needs, and still builds its control from the same settings as every other fence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path, PurePosixPath

from near_failover.control import ControlSettings, PidfileControl, SystemdControl
from near_failover.control.command import CommandControl
from near_failover.ha.watchdog import FenceTarget, check_every
from near_failover.hosts.local import LocalHost

HEAVY = ("asyncssh", "httpx", "pydantic", "rich", "structlog", "cryptography")


def loaded_by(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, env=os.environ.copy())
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_watchdog_entry_imports_no_ssh_http_pydantic_or_logging_library() -> None:
    modules = loaded_by("import near_failover.ha.watchdog")
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY) == []


def test_other_processes_still_log_through_the_redacting_configuration() -> None:
    """The package configures structlog the moment it is imported, so no process logs unredacted,
    whichever module loads structlog first, and whether before or after the package."""
    for first in ("import near_failover, structlog", "import near_failover.logs", "import near_failover.ha.agent",
                  "import structlog, near_failover"):
        out = subprocess.run([sys.executable, "-c", f"{first}\nimport structlog\n"
                              "print([getattr(p, '__name__', '') for p in structlog.get_config()['processors']])"],
                             capture_output=True, text=True, check=True)
        assert "redact_log_event" in out.stdout, first


def test_a_fence_target_goes_through_its_file_unchanged_and_private(tmp_path: Path) -> None:
    control = ControlSettings("val-a", "command", "/srv/a", "http://127.0.0.1:3030",
                              commands={"stop": ["stop-it", "--token-file", "/etc/t"], "is_active": ["is-it"]})
    target = FenceTarget("val-a", PurePosixPath("/srv/a"), PurePosixPath("/srv/keys/a.json"), "http://127.0.0.1:3030",
                         control, "/etc/inventory.toml")
    path = tmp_path / "hb.target"
    target.write(path)
    assert FenceTarget.read(path) == target
    assert path.stat().st_mode & 0o777 == 0o600
    assert isinstance(FenceTarget.read(path).control.build(LocalHost()), CommandControl)


def test_control_settings_build_each_kind_of_control() -> None:
    host = LocalHost()
    systemd = ControlSettings("val-a", "systemd", "/srv/a", "http://127.0.0.1:3030", unit="neard.service", sudo=True)
    pidfile = ControlSettings("val-a", "pidfile", "/srv/a", "http://127.0.0.1:3030", pidfile="/srv/a/neard.pid",
                              start=["neard", "run"], log_path="/srv/a/neard.log")
    assert isinstance(ControlSettings.from_json(systemd.to_json()).build(host), SystemdControl)
    assert isinstance(ControlSettings.from_json(pidfile.to_json()).build(host), PidfileControl)


def test_the_heartbeat_is_read_often_enough_to_see_each_beat_before_it_falls_due() -> None:
    # a beat falls due at least `reserve` after it is written (the agent's fence margin)
    for reserve in (0.1, 0.2, 0.5, 1.0, 5.0):
        assert check_every(reserve) < reserve
    assert check_every(1.0) == 0.25  # the default lease: four reads a second, not twenty
