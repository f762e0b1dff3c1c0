"""A real single-member etcd on 127.0.0.1 for tests, with its data in a temporary folder.

Debian's etcd-server (``etcd`` on PATH) must be installed; `make test` installs it. Tests that need
it fail (never skip) when it is missing, so a green run always means etcd was really exercised.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from near_failover.localnet.homes import free_port

INSTALL_HINT = "`make test` installs Debian's etcd-server (or: apt-get install -y etcd-server)"


@dataclass
class EtcdServer:
    """One etcd member serving clients on `host`; `wrapper` runs it elsewhere (a namespace)."""

    directory: Path
    client_port: int
    peer_port: int
    host: str = "127.0.0.1"
    wrapper: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] = field(init=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    def log(self) -> str:
        path = self.directory / "etcd.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def start(self) -> None:
        """Start etcd on this server's ports and data (a restart keeps its keys and leases) and
        wait until it answers /health."""
        peer = f"http://127.0.0.1:{self.peer_port}"
        with (self.directory / "etcd.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *self.wrapper,
                    etcd_binary(),
                    "--name", "test",
                    "--data-dir", str(self.directory / "data"),
                    "--listen-client-urls", self.url,
                    "--advertise-client-urls", self.url,
                    "--listen-peer-urls", peer,
                    "--initial-advertise-peer-urls", peer,
                    "--initial-cluster", f"test={peer}",
                    "--initial-cluster-state", "new",
                    # A short election makes a single member ready sooner; the minimum lease TTL
                    # stays under 2 s (etcd's rule: 1.5 x election timeout, rounded up to a second).
                    "--heartbeat-interval", "50",
                    "--election-timeout", "500",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"etcd exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1, trust_env=False).json().get("health") == "true":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"etcd did not become healthy within 20 s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if etcd has not exited within 10 s."""
        if hasattr(self, "process") and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def etcd_binary() -> str:
    binary = shutil.which("etcd")
    if binary is None:
        pytest.fail(f"etcd not found on PATH; {INSTALL_HINT}")
    return binary


@contextmanager
def running_etcd(directory: Path) -> Iterator[EtcdServer]:
    """Start etcd on free loopback ports, stop it afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    server = EtcdServer(directory, free_port(), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
