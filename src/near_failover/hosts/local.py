"""This machine as a Host: plain syscalls in a worker thread, subprocesses without a shell."""

from __future__ import annotations

import asyncio
import errno
import os
import signal as _signal
import stat as _stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TypeVar

from near_failover.hosts.base import (
    CommandResult,
    CommandTimeout,
    FileStat,
    Host,
    HostError,
    HostFileExists,
    HostFileNotFound,
    HostPermissionDenied,
    NoSuchProcess,
    PathLike,
    parse_proc_stat,
    signal_name,
)
from near_failover.limits import ANY_FILE, FileLimit, read_regular_file

T = TypeVar("T")


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` on this machine started (clock ticks since boot); None once it has exited
    (a zombie included: it cannot sign) or without /proc. Tells a pid from a reused one."""
    try:
        state, ticks = parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None
    return None if state in ("Z", "X", "x") else ticks


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this machine; without /proc (not Linux) only whether it exists."""
    if pid <= 0:
        return False
    if Path("/proc/self/stat").exists():
        return process_start_ticks(pid) is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def proc_links_text_sync(pid: int | None, with_tcp: bool = True) -> str:
    """Host.proc_links_text's format from this machine's /proc."""
    lines = ["@tcp"]
    for table in ("/proc/net/tcp", "/proc/net/tcp6") if with_tcp else ():
        try:
            lines.append(Path(table).read_text().rstrip("\n"))
        except OSError:
            pass
    lines.append("@links")
    pids = [str(pid)] if pid is not None else [d for d in os.listdir("/proc") if d.isdigit()]
    for p in pids:
        base = f"/proc/{p}"
        try:
            lines.append(f"{base}/cwd\t{os.readlink(base + '/cwd')}")
        except FileNotFoundError:
            continue  # exited meanwhile
        except OSError:
            lines.append(f"{base}/cwd\t")  # another user's: unreadable
            continue
        try:
            fds = os.listdir(base + "/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                lines.append(f"{base}/fd/{fd}\t{os.readlink(f'{base}/fd/{fd}')}")
            except OSError:
                pass
    return "\n".join(lines) + "\n"


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (the directory entry itself must reach the disk)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic_sync(path: Path, data: bytes, mode: int) -> None:
    """Temp file created with ``mode`` (and fchmod'ed against the umask) before any byte is written,
    fsync, rename over ``path``, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp-{os.urandom(6).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def move_sync(src: Path, dst: Path, overwrite: bool) -> None:
    """Atomic rename. Without ``overwrite``, link+unlink refuses an existing ``dst`` atomically
    (as OpenSSH's sftp-server does); folders fall back to check-then-rename."""
    if overwrite:
        os.replace(src, dst)
    elif src.is_dir() and not src.is_symlink():
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "destination exists", str(dst))
        os.rename(src, dst)
    else:
        os.link(src, dst, follow_symlinks=False)
        os.unlink(src)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


class LocalHost(Host):
    """The machine this tool runs on."""

    def __init__(self, label: str = "local") -> None:
        self.label = label

    def _error(self, exc: OSError, what: str) -> HostError:
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileNotFoundError):
            return HostFileNotFound(self.label, f"{what}: no such file or directory")
        if isinstance(exc, PermissionError):
            return HostPermissionDenied(self.label, f"{what}: permission denied")
        if isinstance(exc, FileExistsError):
            return HostFileExists(self.label, f"{what}: the destination already exists")
        if exc.errno == errno.EXDEV:
            return HostError(
                self.label,
                f"{what}: source and destination are on different filesystems; an atomic move "
                "needs both on one filesystem (put key_store on the filesystem of neard's home)",
            )
        return HostError(self.label, f"{what}: {reason}")

    async def _io(self, what: str, fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as exc:
            raise self._error(exc, what) from None

    async def read_bytes(self, path: PathLike, limit: FileLimit = ANY_FILE) -> bytes:
        return await self._io(f"read {path}", read_regular_file, Path(path), limit)

    async def write_atomic(self, path: PathLike, data: bytes | str, mode: int = 0o600) -> None:
        payload = data.encode() if isinstance(data, str) else data
        await self._io(f"write {path}", write_atomic_sync, Path(path), payload, mode)

    async def move(self, src: PathLike, dst: PathLike, overwrite: bool = False) -> None:
        await self._io(f"move {src} -> {dst}", move_sync, Path(src), Path(dst), overwrite)

    async def remove(self, path: PathLike, missing_ok: bool = False) -> None:
        def _remove() -> None:
            p = Path(path)
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            else:
                p.unlink(missing_ok=missing_ok)

        await self._io(f"remove {path}", _remove)

    async def real_path(self, path: PathLike) -> PurePosixPath:
        return PurePosixPath(os.path.realpath(path))

    async def exists(self, path: PathLike) -> bool:
        return await self._io(f"check {path}", os.path.lexists, Path(path))

    async def stat(self, path: PathLike) -> FileStat:
        st = await self._io(f"stat {path}", os.stat, Path(path))
        return FileStat(
            mode=_stat.S_IMODE(st.st_mode),
            size=st.st_size,
            is_dir=_stat.S_ISDIR(st.st_mode),
            is_file=_stat.S_ISREG(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            mtime=st.st_mtime,
        )

    async def chmod(self, path: PathLike, mode: int) -> None:
        await self._io(f"chmod {path}", os.chmod, Path(path), mode)

    async def mkdir(self, path: PathLike, mode: int = 0o700, parents: bool = True, exist_ok: bool = True) -> None:
        def _mkdir() -> None:
            Path(path).mkdir(mode=mode, parents=parents, exist_ok=exist_ok)

        await self._io(f"mkdir {path}", _mkdir)

    async def run(self, argv: list[str], timeout: float = 30.0, input: bytes | None = None) -> CommandResult:
        if not argv:
            raise ValueError("run needs a non-empty argv")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # so a timeout can kill the whole process group
            )
        except FileNotFoundError:
            return CommandResult(list(argv), 127, "", f"{argv[0]}: command not found")
        except PermissionError:
            return CommandResult(list(argv), 126, "", f"{argv[0]}: permission denied")
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(input), timeout)
        except TimeoutError:
            try:
                os.killpg(proc.pid, _signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()
            raise CommandTimeout(
                self.label, f"`{argv[0]}` did not finish within {timeout:g}s and was killed"
            ) from None
        except asyncio.CancelledError:
            try:
                os.killpg(proc.pid, _signal.SIGKILL)
            except ProcessLookupError:
                pass
            raise
        assert proc.returncode is not None
        return CommandResult(
            list(argv), proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")
        )

    async def signal(self, pid: int, sig: int | _signal.Signals) -> None:
        if pid <= 0:
            raise ValueError(f"refusing to signal pid {pid}: it would reach a process group")
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            raise NoSuchProcess(self.label, f"kill -{signal_name(sig)} {pid}: no such process") from None
        except PermissionError:
            raise HostPermissionDenied(
                self.label, f"kill -{signal_name(sig)} {pid}: not permitted (run as neard's user)"
            ) from None

    async def pid_alive(self, pid: int) -> bool:
        return process_alive(pid)

    async def proc_links_text(self, pid: int | None = None, timeout: float = 15.0, with_tcp: bool = True) -> str:
        """As the base class prints it, read in this process: no fork, so a fence on a loaded
        machine does not wait for a shell to be scheduled before it may signal."""
        return await asyncio.wait_for(asyncio.to_thread(proc_links_text_sync, pid, with_tcp), timeout)
