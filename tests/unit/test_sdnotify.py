"""sd_notify over a datagram socket the test creates, as systemd's NOTIFY_SOCKET would be."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from near_failover.ha.sdnotify import beat_is_fresh, notify, notify_address, supervise, watchdog_interval
from near_failover.ha.watchdog import ExternalWatchdog, start_watchdog
from near_failover.ha.watchdog_unit import nothing_to_guard


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    yield sock, {"NOTIFY_SOCKET": str(tmp_path / "notify")}
    sock.close()


def test_notify_sends_one_datagram(listener: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = listener
    assert notify("READY=1", env)
    assert sock.recv(64) == b"READY=1"


def test_notify_to_an_abstract_socket() -> None:
    name = f"near-failover-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(64) == b"WATCHDOG=1"


def test_a_reader_that_falls_behind_never_blocks_the_sender(listener: tuple[socket.socket, dict[str, str]]) -> None:
    """The unread queue fills (max_dgram_qlen): notify then says False at once, never waits."""
    _, env = listener
    sent: list[bool] = []
    sender = threading.Thread(target=lambda: sent.extend(notify("WATCHDOG=1", env) for _ in range(5000)), daemon=True)
    sender.start()
    sender.join(20)
    assert not sender.is_alive(), f"notify blocked after {len(sent)} datagrams"
    assert sent[0] and not sent[-1]


def test_without_systemd_nothing_is_sent(tmp_path: Path) -> None:
    assert notify_address({}) is None and not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})  # no exception either
    assert notify_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None


def test_watchdog_interval_is_half_of_watchdog_sec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=1) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None  # meant for another process
    assert watchdog_interval({}) is None and watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_beat_freshness() -> None:
    assert beat_is_fresh(10.0, 12.0, 4.0) and not beat_is_fresh(10.0, 15.0, 4.0) and not beat_is_fresh(None, 1.0, 4.0)


async def test_supervise_says_ready_then_pings_only_while_the_loop_beats(listener: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = listener
    sock.setblocking(False)
    env = {**env, "WATCHDOG_USEC": "100000"}  # pings every 0.05 s
    now = [100.0]
    beat: list[float | None] = [None]
    ready = asyncio.Event()
    task = asyncio.create_task(supervise(ready, lambda: beat[0], lambda: now[0], stale_after=1.0, environ=env))
    await asyncio.sleep(0.2)
    with pytest.raises(BlockingIOError):
        sock.recv(64)  # nothing before ready
    ready.set()
    beat[0] = 100.0
    await asyncio.sleep(0.2)
    got = []
    while True:
        try:
            got.append(sock.recv(64))
        except BlockingIOError:
            break
    assert got[0] == b"READY=1" and got.count(b"WATCHDOG=1") >= 2, got
    now[0] = 102.0  # the loop's last beat is 2 s old: a hung loop gets no ping
    await asyncio.sleep(0.1)
    while True:
        try:
            sock.recv(64)
        except BlockingIOError:
            break
    await asyncio.sleep(0.2)
    with pytest.raises(BlockingIOError):
        sock.recv(64)
    task.cancel()


def test_nothing_to_guard() -> None:
    armed = {"armed": True, "generation": 7, "valid_until": 50.0, "agent_pid": 1}
    assert nothing_to_guard(None, None, agent_alive=False)
    assert not nothing_to_guard(armed, None, agent_alive=True)
    assert not nothing_to_guard(armed, None, agent_alive=False)  # a dead leader's lease: fence it
    assert not nothing_to_guard(armed, {"generation": 6, "valid_until": 40.0}, agent_alive=False)
    assert nothing_to_guard(armed, {"generation": 7, "valid_until": 50.0}, agent_alive=False)
    assert nothing_to_guard({**armed, "armed": False}, None, agent_alive=False)


def test_the_agent_uses_the_units_watchdog_when_told(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEAR_FAILOVER_WATCHDOG", "unit")
    watchdog = start_watchdog(tmp_path / "inventory.toml", "val-a", tmp_path / "hb", 0.5)
    assert isinstance(watchdog, ExternalWatchdog) and watchdog.poll() is None
