"""A real single-member etcd on 127.0.0.1 for tests, with its data in a temporary folder.

Debian's etcd-server (``etcd`` on PATH) must be installed; `make test` installs it. Tests that need
it fail (never skip) when it is missing, so a green run always means etcd was really exercised.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

INSTALL_HINT = "`make test` installs Debian's etcd-server (or: apt-get install -y etcd-server)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class EtcdServer:
    directory: Path
    client_port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def log(self) -> str:
        path = self.directory / "etcd.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if etcd has not exited within 10 s."""
        if self.process.poll() is None:
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
    """Start etcd, wait until it answers /health, stop it afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    client_port, peer_port = free_port(), free_port()
    peer = f"http://127.0.0.1:{peer_port}"
    client = f"http://127.0.0.1:{client_port}"
    log = (directory / "etcd.log").open("wb")
    process = subprocess.Popen(
        [
            etcd_binary(),
            "--name", "test",
            "--data-dir", str(directory / "data"),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"test={peer}",
            "--initial-cluster-state", "new",
            # A short election makes a single member ready sooner; the minimum lease TTL stays
            # under 2 s (etcd's rule: 1.5 x election timeout, rounded up to a second).
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = EtcdServer(directory, client_port, process)
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                pytest.fail(f"etcd exited with {process.returncode}:\n{server.log()}")
            try:
                if httpx.get(client + "/health", timeout=1, trust_env=False).json().get("health") == "true":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"etcd did not become healthy within 20 s:\n{server.log()}")
            time.sleep(0.05)
        yield server
    finally:
        server.stop()
        log.close()
