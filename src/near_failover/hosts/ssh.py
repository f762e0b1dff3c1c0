"""A node's machine over SSH (asyncssh): files through SFTP, commands through exec, quoted.

Host keys are always checked against a known_hosts file; there is deliberately no way to turn that
off, because a fence or a key move sent to an impostor is exactly the failure this tool prevents.
"""

from __future__ import annotations

import asyncio
import posixpath
import secrets
import shlex
import signal as _signal
import stat as _stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncssh

from near_failover.hosts.base import (
    CommandResult,
    CommandTimeout,
    FileStat,
    Host,
    HostAuthFailed,
    HostError,
    HostFileExists,
    HostFileNotFound,
    HostKeyUnknown,
    HostPermissionDenied,
    HostUnreachable,
    NoSuchProcess,
    PathLike,
    signal_name,
)
from near_failover.limits import ANY_FILE, FileLimit, FileRejected, check_regular

T = TypeVar("T")
_READ_CHUNK = 64 * 1024
# Prints the shell's pid (the command's, after exec) on the first line of stdout.
_PID_WRAPPER = 'echo "$$"; exec "$@"'


class SshHost(Host):
    """One SSH endpoint; connects on first use, reuses the connection, reconnects after a loss."""

    def __init__(
        self,
        hostname: str,
        port: int = 22,
        user: str | None = None,
        known_hosts: Path | str = "~/.ssh/known_hosts",
        identity: list[Path] | None = None,
        connect_timeout: float = 10.0,
        label: str | None = None,
    ) -> None:
        self.hostname = hostname
        self.port = port
        self.user = user
        self.known_hosts = Path(known_hosts).expanduser()
        self.identity = [Path(p).expanduser() for p in identity] if identity else None
        self.connect_timeout = connect_timeout
        target = f"[{hostname}]" if ":" in hostname else hostname
        self.url = f"ssh://{user + '@' if user else ''}{target}:{port}"
        self.label = label or self.url
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()

    # --- connection -------------------------------------------------------------------------------

    @property
    def _known_hosts_pattern(self) -> str:
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def _keyscan_fix(self) -> str:
        port = f" -p {self.port}" if self.port != 22 else ""
        return (
            f"check the server's key fingerprint out of band (ssh-keygen -lf on the server), then "
            f"add it: ssh-keyscan{port} {self.hostname} >> {self.known_hosts}"
        )

    def _known_entries(self) -> tuple[bool, bool, bool]:
        """(a plain key, a @cert-authority key, a @revoked key) recorded for this host."""
        try:
            known = asyncssh.read_known_hosts(str(self.known_hosts))
            trusted, trusted_ca, *_ = known.match(self.hostname, self.hostname, self.port)
            # match() drops @revoked entries when nothing is trusted for host:port (it retries
            # without the port), so those are looked up on their own.
            revoked = any(
                line.split()[0] == "@revoked" and self._known_hosts_pattern in line.split()[1].split(",")
                for line in self.known_hosts.read_text().splitlines()
                if len(line.split()) > 2
            )
        except (OSError, ValueError, asyncssh.Error):
            return False, False, False
        return bool(trusted), bool(trusted_ca), revoked

    def _host_key_error(self, reason: str = "") -> HostKeyUnknown:
        """Tell an unknown key (add it) from a changed one (investigate before trusting), a revoked
        one (never trust it) and a certificate signed by a CA known_hosts does not trust."""
        trusted, trusted_ca, revoked = self._known_entries()
        if "revoked" in reason.lower() or (revoked and not (trusted or trusted_ca)):
            return HostKeyUnknown(
                self.label,
                f"the server's host key (or its CA) is marked @revoked for {self._known_hosts_pattern} "
                f"in {self.known_hosts}: it presents a key you revoked. Do not connect until the "
                "server has a new key, verified out of band",
            )
        if trusted_ca and not trusted:
            return HostKeyUnknown(
                self.label,
                f"the server's host certificate is not signed by the @cert-authority recorded for "
                f"{self._known_hosts_pattern} in {self.known_hosts} ({reason or 'not trusted'}); "
                "check the server's HostCertificate and the CA key",
            )
        if trusted or trusted_ca:
            return HostKeyUnknown(
                self.label,
                f"the host key does NOT match the one recorded in {self.known_hosts} for "
                f"{self._known_hosts_pattern}: the host was reinstalled, or someone is in the "
                "middle. Verify the new key out of band, then replace it: "
                f"ssh-keygen -R '{self._known_hosts_pattern}' -f {self.known_hosts} && "
                + self._keyscan_fix().split("then add it: ", 1)[1],
            )
        return HostKeyUnknown(
            self.label,
            f"host key of {self._known_hosts_pattern} is not in {self.known_hosts}; "
            + self._keyscan_fix(),
        )

    def _certificate_only_error(self) -> HostKeyUnknown | None:
        """known_hosts trusts only a @cert-authority for this host, so only a host certificate is
        accepted; a server without one ends the key exchange (seen as a reset), which says nothing."""
        trusted, trusted_ca, _ = self._known_entries()
        if not trusted_ca or trusted:
            return None
        return HostKeyUnknown(
            self.label,
            f"{self.known_hosts} trusts only a @cert-authority for {self._known_hosts_pattern}, so "
            "only a host certificate signed by it is accepted, and the server offered none; give "
            "sshd a HostCertificate signed by that CA, or record its plain host key: "
            + self._keyscan_fix().split("then add it: ", 1)[1],
        )

    async def _connect(self) -> asyncssh.SSHClientConnection:
        if not self.known_hosts.is_file():
            raise HostKeyUnknown(
                self.label,
                f"known_hosts file {self.known_hosts} does not exist, so the host key cannot be "
                f"checked; {self._keyscan_fix()} (or set [ssh] known_hosts in the inventory)",
            )
        options: dict[str, object] = {
            "known_hosts": str(self.known_hosts),
            "password_auth": False,
            "kbdint_auth": False,
            "connect_timeout": self.connect_timeout,
            "login_timeout": self.connect_timeout,
            "keepalive_interval": 15,
        }
        if self.user:
            options["username"] = self.user
        if self.identity is not None:
            for key_path in self.identity:
                if not key_path.is_file():
                    raise HostAuthFailed(
                        self.label, f"identity file {key_path} does not exist; fix [ssh] identity"
                    )
            options["client_keys"] = [str(p) for p in self.identity]
            options["agent_path"] = None
        try:
            return await asyncio.wait_for(
                asyncssh.connect(self.hostname, self.port, **options),
                self.connect_timeout + 1,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise self._host_key_error(exc.reason) from None
        except asyncssh.PermissionDenied:
            who = self.user or "the default user"
            keys = ", ".join(str(p) for p in self.identity) if self.identity else "the ssh-agent and ~/.ssh/id_*"
            raise HostAuthFailed(
                self.label,
                f"authentication refused for {who} with {keys}; add the public key to "
                f"~{self.user or ''}/.ssh/authorized_keys on {self.hostname}, or set [ssh] identity "
                "to a key the server accepts",
            ) from None
        except asyncssh.KeyImportError as exc:
            raise HostAuthFailed(self.label, f"cannot load an identity key: {exc}; fix [ssh] identity") from None
        except (TimeoutError, asyncio.TimeoutError):
            raise HostUnreachable(
                self.label,
                f"no SSH answer from {self.hostname}:{self.port} within {self.connect_timeout:g}s; "
                "check that the machine is up, sshd runs and no firewall drops the port",
            ) from None
        except ConnectionRefusedError:
            raise HostUnreachable(
                self.label,
                f"connection to {self.hostname}:{self.port} refused; is sshd running on that port?",
            ) from None
        except (OSError, asyncssh.Error) as exc:
            if (certificate_only := self._certificate_only_error()) is not None:
                raise certificate_only from None
            if isinstance(exc, OSError):
                raise HostUnreachable(
                    self.label, f"cannot reach {self.hostname}:{self.port}: {exc.strerror or exc}"
                ) from None
            raise HostUnreachable(self.label, f"SSH connection failed: {exc.reason}") from None

    async def _connection(self) -> asyncssh.SSHClientConnection:
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                self._sftp = None
                self._conn = await self._connect()
            return self._conn

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        conn = await self._connection()
        async with self._lock:
            if self._sftp is None:
                try:
                    self._sftp = await conn.start_sftp_client()
                except asyncssh.Error as exc:
                    raise HostError(
                        self.label,
                        f"the SSH server offers no SFTP ({exc.reason}); enable "
                        "`Subsystem sftp internal-sftp` in sshd_config",
                    ) from None
            return self._sftp

    def _forget_connection(self) -> None:
        self._sftp = None
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    async def close(self) -> None:
        async with self._lock:
            if self._sftp is not None:
                self._sftp.exit()
                self._sftp = None
            if self._conn is not None:
                self._conn.close()
                await self._conn.wait_closed()
                self._conn = None

    # --- file operations --------------------------------------------------------------------------

    async def _file_op(self, what: str, op: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        sftp = await self._sftp_client()
        try:
            return await op(sftp)
        except asyncssh.SFTPNoSuchFile:
            raise HostFileNotFound(self.label, f"{what}: no such file or directory") from None
        except asyncssh.SFTPPermissionDenied:
            raise HostPermissionDenied(self.label, f"{what}: permission denied") from None
        except asyncssh.SFTPFileAlreadyExists:
            raise HostFileExists(self.label, f"{what}: the destination already exists") from None
        except asyncssh.SFTPError as exc:
            raise HostError(self.label, f"{what}: {exc.reason}") from None
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError) as exc:
            self._forget_connection()
            raise HostUnreachable(self.label, f"{what}: connection lost ({exc})") from None
        except (FileRejected, IsADirectoryError) as exc:  # from check_regular
            raise HostError(self.label, f"{what}: {exc.strerror or exc}") from None

    async def read_bytes(self, path: PathLike, limit: FileLimit = ANY_FILE) -> bytes:
        async def _read(sftp: asyncssh.SFTPClient) -> bytes:
            # The type is checked before the open: sftp-server opens without O_NONBLOCK, so a
            # FIFO would hang it (stat follows symlinks: a link to /dev/zero is a device).
            attrs = await sftp.stat(str(path))
            check_regular(path, attrs.permissions or 0, attrs.size or 0, limit)
            # Read in chunks to EOF: /proc files report size 0, so "read to size" would be empty.
            chunks: list[bytes] = []
            total = 0
            async with sftp.open(str(path), "rb") as f:
                while chunk := await f.read(_READ_CHUNK):
                    total += len(chunk)
                    if total > limit.max_bytes:
                        raise FileRejected(path, f"grew past {limit.describe()} while read")
                    assert isinstance(chunk, bytes)  # opened "rb": asyncssh's types say str | bytes
                    chunks.append(chunk)
            return b"".join(chunks)

        return await self._file_op(f"read {path}", _read)

    async def write_atomic(self, path: PathLike, data: bytes | str, mode: int = 0o600) -> None:
        payload = data.encode() if isinstance(data, str) else data
        target = str(path)
        tmp = posixpath.join(
            posixpath.dirname(target), f".{posixpath.basename(target)}.tmp-{secrets.token_hex(6)}"
        )

        async def _write(sftp: asyncssh.SFTPClient) -> None:
            attrs = asyncssh.SFTPAttrs(permissions=mode)
            pflags = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_EXCL
            try:
                async with sftp.open(tmp, pflags, attrs, encoding=None) as f:
                    await f.chmod(mode)  # the server's umask applied to open; fix it before data
                    await f.write(payload)
                    await f.fsync()
                await sftp.posix_rename(tmp, target)
            except BaseException:
                try:
                    await sftp.remove(tmp)
                except (asyncssh.Error, OSError):
                    pass
                raise

        await self._file_op(f"write {path}", _write)

    async def move(self, src: PathLike, dst: PathLike, overwrite: bool = False) -> None:
        async def _move(sftp: asyncssh.SFTPClient) -> None:
            if overwrite:
                await sftp.posix_rename(str(src), str(dst))
                return
            try:
                # SFTP rename refuses an existing destination (sftp-server: link + unlink).
                await sftp.rename(str(src), str(dst))
            except asyncssh.SFTPFailure:
                if await sftp.exists(str(dst)):
                    raise asyncssh.SFTPFileAlreadyExists("destination exists") from None
                raise

        await self._file_op(f"move {src} -> {dst}", _move)

    async def remove(self, path: PathLike, missing_ok: bool = False) -> None:
        async def _remove(sftp: asyncssh.SFTPClient) -> None:
            try:
                attrs = await sftp.lstat(str(path))
            except asyncssh.SFTPNoSuchFile:
                if missing_ok:
                    return
                raise
            if attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
                await sftp.rmdir(str(path))
            else:
                await sftp.remove(str(path))

        await self._file_op(f"remove {path}", _remove)

    async def exists(self, path: PathLike) -> bool:
        async def _exists(sftp: asyncssh.SFTPClient) -> bool:
            try:
                await sftp.lstat(str(path))
            except asyncssh.SFTPNoSuchFile:
                return False
            return True

        return await self._file_op(f"check {path}", _exists)

    async def stat(self, path: PathLike) -> FileStat:
        attrs = await self._file_op(f"stat {path}", lambda sftp: sftp.stat(str(path)))
        permissions = attrs.permissions or 0
        return FileStat(
            mode=_stat.S_IMODE(permissions),
            size=attrs.size or 0,
            is_dir=_stat.S_ISDIR(permissions),
            is_file=_stat.S_ISREG(permissions),
            uid=attrs.uid if attrs.uid is not None else -1,
            gid=attrs.gid if attrs.gid is not None else -1,
            mtime=float(attrs.mtime or 0),
        )

    async def chmod(self, path: PathLike, mode: int) -> None:
        await self._file_op(f"chmod {path}", lambda sftp: sftp.chmod(str(path), mode))

    async def mkdir(self, path: PathLike, mode: int = 0o700, parents: bool = True, exist_ok: bool = True) -> None:
        async def _mkdir(sftp: asyncssh.SFTPClient) -> None:
            attrs = asyncssh.SFTPAttrs(permissions=mode)
            if parents:
                await sftp.makedirs(str(path), attrs, exist_ok=exist_ok)
                return
            try:
                await sftp.mkdir(str(path), attrs)
            except asyncssh.SFTPFailure:
                if exist_ok and await sftp.isdir(str(path)):
                    return
                if await sftp.exists(str(path)):
                    raise asyncssh.SFTPFileAlreadyExists("exists") from None
                raise

        await self._file_op(f"mkdir {path}", _mkdir)

    # --- processes --------------------------------------------------------------------------------

    async def run(self, argv: list[str], timeout: float = 30.0, input: bytes | None = None) -> CommandResult:
        if not argv:
            raise ValueError("run needs a non-empty argv")
        # The remote shell sees exactly these words (shlex.join), nothing more. The wrapper first
        # prints its pid, so a command that outlives its timeout can be killed on the host:
        # closing the channel alone leaves it running there.
        command = shlex.join(["sh", "-c", _PID_WRAPPER, "sh", *argv])
        conn = await self._connection()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            process = await conn.create_process(command, encoding=None)
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, OSError) as exc:
            self._forget_connection()
            raise HostUnreachable(self.label, f"`{argv[0]}`: connection lost ({exc})") from None
        except asyncssh.ChannelOpenError as exc:
            raise HostError(self.label, f"`{argv[0]}`: cannot open a session: {exc.reason}") from None
        remote_pid: int | None = None
        try:
            if input is not None:
                process.stdin.write(input)
            process.stdin.write_eof()
            pid_line = await asyncio.wait_for(process.stdout.readline(), max(deadline - loop.time(), 0.01))
            remote_pid = int(pid_line.strip()) if pid_line.strip().isdigit() else None
            completed = await process.wait(timeout=max(deadline - loop.time(), 0.01))
        except (asyncssh.TimeoutError, TimeoutError):
            process.close()
            killed = await self._kill_remote(remote_pid)
            raise CommandTimeout(
                self.label,
                f"`{argv[0]}` did not finish within {timeout:g}s"
                + ("; it was killed" if killed else "; it may still run on the host"),
            ) from None
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError) as exc:
            self._forget_connection()
            raise HostUnreachable(self.label, f"`{argv[0]}`: connection lost ({exc})") from None
        finally:
            process.close()
        if completed.exit_status is not None and completed.exit_status >= 0:
            exit_code = completed.exit_status
        elif completed.exit_signal:
            try:
                exit_code = -_signal.Signals["SIG" + completed.exit_signal[0]].value
            except KeyError:
                exit_code = -1
        else:
            exit_code = -1
        stdout = completed.stdout or b""
        stderr = completed.stderr or b""
        return CommandResult(
            list(argv),
            exit_code,
            stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout,
            stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr,
        )

    async def _kill_remote(self, pid: int | None) -> bool:
        """SIGKILL a timed-out command's process group (or the process) through a new channel."""
        if pid is None or pid <= 1:
            return False
        script = 'kill -s KILL -- "-$1" 2>/dev/null || kill -s KILL "$1"'
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            result = await asyncio.wait_for(
                conn.run(shlex.join(["sh", "-c", script, "sh", str(pid)]), check=False),
                self.connect_timeout,
            )
        except (asyncssh.Error, OSError, TimeoutError):
            return False
        return result.exit_status == 0

    async def signal(self, pid: int, sig: int | _signal.Signals) -> None:
        if pid <= 0:
            raise ValueError(f"refusing to signal pid {pid}: it would reach a process group")
        name = signal_name(sig)
        result = await self.run(["kill", "-s", name, str(pid)], timeout=self.connect_timeout)
        if result.ok:
            return
        text = (result.stderr + result.stdout).lower()
        if "no such process" in text:
            raise NoSuchProcess(self.label, f"kill -{name} {pid}: no such process")
        if "not permitted" in text:
            raise HostPermissionDenied(
                self.label, f"kill -{name} {pid}: not permitted (log in as neard's user)"
            )
        raise HostError(self.label, f"kill -{name} {pid} failed: {result.stderr.strip() or result.exit_code}")
