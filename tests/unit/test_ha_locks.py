"""One agent and one watchdog per node (issue 14, part 6): the flocks and what they name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from near_failover.ha.locks import (
    AdoptedWatchdog,
    Flock,
    LockHeld,
    agent_lock_path,
    running_watchdog,
    take_agent_lock,
    watchdog_lock_path,
)


def test_a_second_agent_lock_on_the_same_home_names_the_first(tmp_path: Path) -> None:
    home = tmp_path / "val-a"
    home.mkdir()
    first = take_agent_lock(tmp_path / "state", "local", str(home), "val-a", "http://127.0.0.1:7001")
    try:
        with pytest.raises(LockHeld) as held:
            take_agent_lock(tmp_path / "state", "local", str(home), "val-a", "http://127.0.0.1:7002")
        message = str(held.value)
        assert f"pid {os.getpid()}" in message and "API http://127.0.0.1:7001" in message and "\n" not in message
    finally:
        first.release()
    take_agent_lock(tmp_path / "state", "local", str(home), "val-a", None).release()  # free again once released


def test_the_agent_lock_follows_the_homes_real_path(tmp_path: Path) -> None:
    """Another inventory naming the same neard through a symlink, under another node name, meets the lock."""
    home = tmp_path / "val-a"
    home.mkdir()
    (tmp_path / "link").symlink_to(home)
    assert agent_lock_path(tmp_path, "local", str(tmp_path / "link")) == agent_lock_path(tmp_path, "local", str(home))
    first = take_agent_lock(tmp_path, "local", str(home), "val-a", None)
    try:
        with pytest.raises(LockHeld, match="as node val-a"):
            take_agent_lock(tmp_path, "local", str(tmp_path / "link"), "primary", None)
    finally:
        first.release()
    assert agent_lock_path(tmp_path, "ssh://near@h1:22", "/srv/near") != agent_lock_path(tmp_path, "ssh://near@h2:22", "/srv/near")


def test_the_running_watchdog_is_the_lock_holder(tmp_path: Path) -> None:
    heartbeat = tmp_path / "agent-val-a.heartbeat"
    assert running_watchdog(heartbeat) is None
    lock = Flock.take(watchdog_lock_path(heartbeat), {"pid": os.getpid()})
    adopted = AdoptedWatchdog(os.getpid(), heartbeat)
    assert running_watchdog(heartbeat) == os.getpid() and adopted.poll() is None
    with pytest.raises(LockHeld):
        Flock.take(watchdog_lock_path(heartbeat), {"pid": 1})
    lock.release()
    assert running_watchdog(heartbeat) is None and adopted.poll() == 0 and adopted.wait(0) == 0
