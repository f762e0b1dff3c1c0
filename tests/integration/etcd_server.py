"""A real single-member etcd on 127.0.0.1 for tests, with its data in a temporary folder.

Debian's etcd-server (``etcd`` on PATH) must be installed; `make test` installs it. Tests that need
it fail (never skip) when it is missing, so a green run always means etcd was really exercised.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from near_failover.localnet.homes import free_port

ROOT_PASSWORD = "root-password-for-tests"
INSTALL_HINT = "`make test` installs Debian's etcd-server (or: apt-get install -y etcd-server)"


@dataclass(frozen=True)
class TlsFiles:
    """A test CA, etcd's server certificate for 127.0.0.1, and a client certificate, all PEM."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def make_tls(directory: Path, host: str = "127.0.0.1") -> TlsFiles:
    """Create a CA and the server and client certificates it signs (ECDSA P-256, one day)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)

    def issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
              extensions: list[tuple[x509.ExtensionType, bool]]) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer[0] if issuer else name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical)
        return builder.sign(issuer[1] if issuer else key, hashes.SHA256())

    def write(name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        key_path.chmod(0o600)
        return cert_path, key_path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue("near-failover test CA", ca_key, None, [(x509.BasicConstraints(ca=True, path_length=None), True)])
    ca_path, _ = write("ca", ca, ca_key)
    leaf = [(x509.BasicConstraints(ca=False, path_length=None), True)]
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = issue("etcd", server_key, (ca.subject, ca_key), [
        *leaf, (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False),
    ])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = issue("near-failover agent", client_key, (ca.subject, ca_key), [*leaf, (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)])
    return TlsFiles(ca_path, *write("server", server, server_key), *write("client", client, client_key))


@dataclass
class EtcdServer:
    """One etcd member serving clients on `host`; `wrapper` runs it elsewhere (a namespace).
    With `tls`, clients must come over https with a certificate the test CA signed."""

    directory: Path
    client_port: int
    peer_port: int
    host: str = "127.0.0.1"
    wrapper: tuple[str, ...] = ()
    tls: TlsFiles | None = None
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] = field(init=False)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.client_port}"

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
                    *self._tls_args(),
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"etcd exited with {self.process.returncode}:\n{self.log()}")
            try:
                verify = self.tls.client_context() if self.tls else True
                if httpx.get(self.url + "/health", timeout=1, trust_env=False, verify=verify).json().get("health") == "true":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"etcd did not become healthy within 20 s:\n{self.log()}")
            time.sleep(0.05)

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        return ["--cert-file", str(self.tls.server_cert), "--key-file", str(self.tls.server_key),
                "--trusted-ca-file", str(self.tls.ca), "--client-cert-auth"]

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
def running_etcd(directory: Path, tls: TlsFiles | None = None, extra_args: tuple[str, ...] = ()) -> Iterator[EtcdServer]:
    """Start etcd on free loopback ports, stop it afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    server = EtcdServer(directory, free_port(), free_port(), tls=tls, extra_args=extra_args)
    server.start()
    try:
        yield server
    finally:
        server.stop()


NF_ROLE = "near-failover"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def enable_auth(server: EtcdServer, user: str, password: str) -> None:
    """Turn etcd's authentication on: root, and `user` with read-write on /near-failover/ only."""
    for path, body in [
        ("/v3/auth/user/add", {"name": "root", "password": ROOT_PASSWORD}),
        ("/v3/auth/role/add", {"name": "root"}),
        ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
        ("/v3/auth/user/add", {"name": user, "password": password}),
        ("/v3/auth/role/add", {"name": NF_ROLE}),
        ("/v3/auth/role/grant", {"name": NF_ROLE, "perm": {"permType": "READWRITE", "key": _b64("/near-failover/"), "range_end": _b64("/near-failover0")}}),
        ("/v3/auth/user/grant", {"user": user, "role": NF_ROLE}),
        ("/v3/auth/enable", {}),
    ]:
        httpx.post(server.url + path, json=body, timeout=10, trust_env=False).raise_for_status()


def as_root(server: EtcdServer, path: str, body: dict[str, object]) -> None:
    """One request to etcd's gateway as root (what `etcdctl --user root` would send)."""
    token = httpx.post(server.url + "/v3/auth/authenticate", json={"name": "root", "password": ROOT_PASSWORD}, timeout=10, trust_env=False).json()["token"]
    httpx.post(server.url + path, json=body, headers={"Authorization": token}, timeout=10, trust_env=False).raise_for_status()


def revoke_access(server: EtcdServer, user: str) -> None:
    """As root, take the near-failover role away from `user`: etcd answers it, but refuses it."""
    as_root(server, "/v3/auth/user/revoke", {"name": user, "role": NF_ROLE})


def jwt_token_args(directory: Path) -> tuple[str, ...]:
    """etcd's arguments for JWT tokens (production's choice; simple tokens are for testing), signed
    with a new RSA key in `directory`. A JWT token carries the auth store's revision it was issued at."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = directory / "jwt-key.pem", directory / "jwt-pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return ("--auth-token", f"jwt,pub-key={public},priv-key={private},sign-method=RS256,ttl=10m")


def write_password_file(path: Path, password: str, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    os.chmod(path, mode)
    return path
