"""A real OpenSSH server on 127.0.0.1 for tests: its own host key, config and authorized_keys.

Debian's openssh-server (/usr/sbin/sshd) must be installed; `make test` installs it. Tests that use
it fail (never skip) when it is missing, so a green run always means SSH was really exercised.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from near_failover.hosts.ssh import SshHost
from near_failover.localnet.homes import free_port

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
SFTP_SERVER_CANDIDATES = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server")
INSTALL_HINT = "`make test` installs Debian's openssh-server (or: apt-get install -y openssh-server)"


@dataclass
class SshdServer:
    """A running sshd and what a client needs to reach it."""

    directory: Path
    port: int
    user: str
    user_key: Path
    known_hosts: Path
    host_key_pub: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def host(self, **overrides: object) -> SshHost:
        options: dict[str, object] = {
            "hostname": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "known_hosts": self.known_hosts,
            "identity": [self.user_key],
            "connect_timeout": 5.0,
        }
        options.update(overrides)
        return SshHost(**options)  # type: ignore[arg-type]

    def log(self) -> str:
        path = self.directory / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _require(path_candidates: tuple[str, ...], what: str) -> str:
    for candidate in path_candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"{what} not found (looked in {', '.join(path_candidates)}); {INSTALL_HINT}")


def _keygen(path: Path) -> None:
    ssh_keygen = shutil.which("ssh-keygen")
    if ssh_keygen is None:
        pytest.fail(f"ssh-keygen not found; {INSTALL_HINT}")
    subprocess.run(
        [ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", "near-failover-test", "-f", str(path)],
        check=True,
        timeout=30,
    )


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def running_sshd(
    directory: Path, start_timeout: float = 15.0, user: str | None = None, wrap: list[str] | None = None
) -> Iterator[SshdServer]:
    """Start sshd in the foreground (-D -e) on a free loopback port; stop it on exit. ``user``: the
    one user it lets in (default: ours); ``wrap``: an argv that runs sshd's (e.g. in a namespace)."""
    sshd = _require(SSHD_CANDIDATES, "OpenSSH server (sshd)")
    sftp_server = _require(SFTP_SERVER_CANDIDATES, "OpenSSH sftp-server")
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "ssh_host_ed25519_key"
    user_key = directory / "id_ed25519"
    _keygen(host_key)
    _keygen(user_key)
    authorized_keys = directory / "authorized_keys"
    authorized_keys.write_text((directory / "id_ed25519.pub").read_text())
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        # sshd's privilege-separation folder; Debian's service creates it at boot (RuntimeDirectory).
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    user = user or getpass.getuser()
    process: subprocess.Popen[bytes] | None = None
    port = 0
    for _attempt in range(3):  # a free port can be taken between probing and binding
        port = free_port()
        config = directory / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"PidFile {directory / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized_keys}",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    f"AllowUsers {user}",
                    f"Subsystem sftp {sftp_server}",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        log = open(directory / "sshd.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen([*(wrap or []), sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline and process.poll() is None and not _listening(port):
            time.sleep(0.05)
        if process.poll() is None and _listening(port):
            break
        process.kill()
        process.wait(timeout=10)
    else:
        text = (directory / "sshd.log").read_text(errors="replace")
        pytest.fail(f"sshd did not start on 127.0.0.1; its log:\n{text}")
    assert process is not None
    host_key_pub = directory / "ssh_host_ed25519_key.pub"
    known_hosts = directory / "known_hosts"
    key_type, key_data = host_key_pub.read_text().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{port} {key_type} {key_data}\n")
    server = SshdServer(directory, port, user, user_key, known_hosts, host_key_pub, process)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
