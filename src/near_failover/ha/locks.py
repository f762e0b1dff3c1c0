"""One agent and one watchdog per node: flocks that say who holds them.

Two agents beside one neard (a second inventory, a unit started twice) would both decide for
it, and two watchdogs would both write its markers and fence it on different deadlines. Each
takes an exclusive flock, held for as long as its process lives (the kernel drops it when the
process dies, however it dies), and writes into the locked file who it is, so the one refused
can name the one running:
- the agent's lock is named after the real path of the node's home (a host and a path for an
  SSH node), so another inventory naming the same neard, even under another name, meets it;
- the watchdog's lock sits beside the heartbeat it watches.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote


class LockHeld(Exception):
    """The lock is another process's (the message names it)."""


@dataclass
class Flock:
    """An exclusive flock on ``path``, kept while this object (its descriptor) lives."""

    path: Path
    fd: int

    @classmethod
    def take(cls, path: Path, holder: dict[str, object]) -> Flock:
        """Lock ``path`` and write ``holder`` into it; LockHeld with the holder's own words if taken."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(json.dumps(read_holder(path) or {})) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def read_holder(path: Path) -> dict | None:
    """What the lock's holder (or a marker's writer) wrote into it (None: nothing readable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_held(path: Path) -> bool:
    """Whether some process holds the flock on ``path`` now (a moment's probe of our own)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def agent_lock_path(state_dir: Path, host: str, home: str) -> Path:
    """The agent's lock for the neard whose home is ``home`` on ``host``: the real path on this
    machine (symlinks resolved), as given on an SSH host."""
    where = os.path.realpath(home) if host == "local" else f"{host}{home}"
    return state_dir / f"agent-{quote(where, safe='')}.lock"


def take_agent_lock(state_dir: Path, host: str, home: str, node: str, api: str | None) -> Flock:
    """This agent's lock on its node; LockHeld naming the running agent (pid, API) if another holds it."""
    path = agent_lock_path(state_dir, host, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return Flock.take(path, {"pid": os.getpid(), "api": api, "node": node})
    except LockHeld:
        running = read_holder(path) or {}
        raise LockHeld(f"{node}: another agent runs for this node's neard (pid {running.get('pid', '?')}, API {running.get('api') or 'none'}, "
                       f"as node {running.get('node', '?')}; lock {path}): stop it first, one agent per node") from None


def watchdog_lock_path(heartbeat: Path) -> Path:
    return heartbeat.with_name(heartbeat.name + ".watchdog.lock")


def running_watchdog(heartbeat: Path) -> int | None:
    """The pid of the watchdog that holds this heartbeat's lock, None when none runs."""
    path = watchdog_lock_path(heartbeat)
    if not is_held(path):
        return None
    pid = (read_holder(path) or {}).get("pid")
    return pid if isinstance(pid, int) else None


@dataclass
class AdoptedWatchdog:
    """A watchdog an earlier agent of this node started and that still runs (it outlived a
    killed agent, as it must): the new agent watches with it instead of starting a second one
    beside it. Not our child: alive while it holds its lock; a stuck one is killed by pid."""

    pid: int
    heartbeat: Path
    returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and running_watchdog(self.heartbeat) != self.pid:
            self.returncode = 0  # gone (its exit code was its parent's to read)
        return self.returncode

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)
        return self.returncode
