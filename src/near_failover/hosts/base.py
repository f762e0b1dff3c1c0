"""The one interface every way of reaching a node's machine offers (local, SSH).

Procedures speak only to this interface, so a fence or an activation runs the same code whether the
node is this machine or one across the network. Commands are argv lists, never shell strings: a
remote host receives them quoted with ``shlex.join``, so no value from an inventory or an RPC
answer can inject a command.
"""

from __future__ import annotations

import signal as _signal
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from types import TracebackType
from typing import Self

from near_failover.limits import ANY_FILE, PROC_FILE, FileLimit

PathLike = str | PurePosixPath

# The script that starts a program detached from us. `setsid -f` forks it into a new session
# (it survives our exit and our terminal, and is never our zombie); the child prints its own pid
# on fd 3 (our pipe) and closes it as it execs the program, so our read ends exactly when the
# program runs. It is started as a foreground command, not a shell `&` job, because sh makes `&`
# jobs ignore SIGINT/SIGQUIT and that would be inherited. "$@" carries the argv as separate
# words: nothing in it is interpreted by the shell. Output is appended to the log.
DETACH_SCRIPT = (
    'log="$1"; dir="$2"; shift 2; cd "$dir" || exit 125; exec 3>&1; '
    "setsid -f sh -c 'echo \"$$\" >&3; exec \"$@\" 3>&-' sh \"$@\" >>\"$log\" 2>&1 </dev/null"
)

# What proc_links_text runs (hosts/processes.py parses its output): prints the TCP tables, then
# every cwd and fd link of the processes matched by $1 (a pid, or every pid), as
# "<path>\t<link target>"; an unreadable link prints an empty target. find exits 1 when a
# process vanished or a link was unreadable during the walk: that is a normal scan.
SCAN_SCRIPT = (
    'echo "@tcp"; [ "$2" = notcp ] || cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; echo "@links"; '
    'pat="${1:-[0-9]*}"; '
    "find /proc/$pat/cwd /proc/$pat/fd -maxdepth 1 -printf '%p\\t%l\\n' 2>/dev/null; "
    's=$?; [ "$s" -le 1 ] || exit "$s"'
)


class HostError(Exception):
    """A failure on a host; the message names the host, the operation and, when known, the fix."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host


class HostUnreachable(HostError):
    """The host cannot be connected to (refused, timeout, DNS)."""


class HostKeyUnknown(HostError):
    """The SSH host key is not in known_hosts, or does not match what is there."""


class HostAuthFailed(HostError):
    """The SSH server refused our keys."""


class HostFileNotFound(HostError, FileNotFoundError):
    """A path does not exist on the host."""

    def __init__(self, host: str, message: str) -> None:
        HostError.__init__(self, host, message)


class HostPermissionDenied(HostError, PermissionError):
    """The host's user may not do this."""

    def __init__(self, host: str, message: str) -> None:
        HostError.__init__(self, host, message)


class HostFileExists(HostError, FileExistsError):
    """The destination already exists and overwriting was not asked for."""

    def __init__(self, host: str, message: str) -> None:
        HostError.__init__(self, host, message)


class NoSuchProcess(HostError, ProcessLookupError):
    """A signal was sent to a pid that does not exist."""

    def __init__(self, host: str, message: str) -> None:
        HostError.__init__(self, host, message)


class CommandTimeout(HostError):
    """A command did not finish within its timeout (it was killed)."""


class CommandFailed(HostError):
    """A command exited non-zero where success was required."""

    def __init__(self, host: str, result: CommandResult) -> None:
        detail = (result.stderr or result.stdout).strip().splitlines()
        tail = detail[-1] if detail else "no output"
        super().__init__(host, f"`{result.command_text}` exited {result.exit_code}: {tail}")
        self.result = result


@dataclass(frozen=True)
class CommandResult:
    """What a command did. ``exit_code`` is negative (-signal) when a signal ended it."""

    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def command_text(self) -> str:
        import shlex

        return shlex.join(self.argv)


@dataclass(frozen=True)
class FileStat:
    """The facts procedures need about a path: permission bits, kind, owner, size."""

    mode: int  # permission bits only (st_mode & 0o7777)
    size: int
    is_dir: bool
    is_file: bool
    uid: int
    gid: int
    mtime: float = field(default=0.0)


def signal_name(sig: int | _signal.Signals) -> str:
    """``SIGHUP`` -> ``HUP``, as kill(1) takes it."""
    return _signal.Signals(sig).name.removeprefix("SIG")


def parse_proc_stat(text: str) -> tuple[str, int]:
    """(state, start time in clock ticks) from /proc/<pid>/stat; comm may contain spaces/parens."""
    rest = text[text.rindex(")") + 2 :].split()
    return rest[0], int(rest[19])


class Host(ABC):
    """A machine that runs neard: file operations, commands and signals, all async."""

    #: Names the host in every message: "local" or "ssh://user@host:port", with the node's name.
    label: str

    # --- files ---

    @abstractmethod
    async def read_bytes(self, path: PathLike, limit: FileLimit = ANY_FILE) -> bytes:
        """The bytes of ``path``: a regular file (symlinks followed) of at most ``limit`` bytes;
        a FIFO, a device, a folder or a larger file is a HostError naming the path and the limit."""

    async def read_text(self, path: PathLike, limit: FileLimit = ANY_FILE, encoding: str = "utf-8") -> str:
        data = await self.read_bytes(path, limit)
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise HostError(self.label, f"{path} is not {encoding} text: {exc.reason}") from None

    @abstractmethod
    async def write_atomic(self, path: PathLike, data: bytes | str, mode: int = 0o600) -> None:
        """Write through a temp file in the same folder (mode set before any byte), fsync, rename.

        A reader sees the old content or the new one, never a part, and a secret written with
        mode 0600 is never readable by others, not even for an instant.
        """

    @abstractmethod
    async def move(self, src: PathLike, dst: PathLike, overwrite: bool = False) -> None:
        """Atomic rename on one filesystem. Without ``overwrite`` an existing ``dst`` is an error
        (checked atomically for files), so a move can never silently destroy a key."""

    @abstractmethod
    async def remove(self, path: PathLike, missing_ok: bool = False) -> None: ...

    @abstractmethod
    async def exists(self, path: PathLike) -> bool: ...

    @abstractmethod
    async def stat(self, path: PathLike) -> FileStat: ...

    async def real_path(self, path: PathLike) -> PurePosixPath:
        """``path`` with every symlink resolved on this host (the last parts may not exist yet)."""
        result = await self.run_checked(["realpath", "-m", "--", str(path)], timeout=30)
        return PurePosixPath(result.stdout.rstrip("\n"))

    async def stat_mode(self, path: PathLike) -> int:
        """Permission bits of ``path`` (e.g. 0o600)."""
        return (await self.stat(path)).mode

    @abstractmethod
    async def chmod(self, path: PathLike, mode: int) -> None: ...

    @abstractmethod
    async def mkdir(self, path: PathLike, mode: int = 0o700, parents: bool = True, exist_ok: bool = True) -> None: ...

    # --- processes ---

    @abstractmethod
    async def run(
        self, argv: list[str], timeout: float = 30.0, input: bytes | None = None
    ) -> CommandResult:
        """Run ``argv`` (no shell) and wait at most ``timeout`` seconds; on timeout the command is
        killed and CommandTimeout raised."""

    async def run_checked(self, argv: list[str], timeout: float = 30.0, input: bytes | None = None) -> CommandResult:
        """``run`` that raises CommandFailed on a non-zero exit."""
        result = await self.run(argv, timeout=timeout, input=input)
        if not result.ok:
            raise CommandFailed(self.label, result)
        return result

    async def spawn_detached(self, argv: list[str], log: PathLike, cwd: PathLike = "/", timeout: float = 15.0) -> int:
        """Start ``argv`` in a new session, output appended to ``log``; returns its pid.

        It is not our child, so it outlives this tool and is never left as our zombie.
        """
        if not argv:
            raise ValueError("spawn_detached needs a non-empty argv")
        result = await self.run_checked(
            ["sh", "-c", DETACH_SCRIPT, "sh", str(log), str(cwd), *argv], timeout=timeout
        )
        try:
            return int(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise HostError(self.label, f"starting {argv[0]} printed no pid: {result.stdout!r}") from None

    async def proc_links_text(self, pid: int | None = None, timeout: float = 15.0, with_tcp: bool = True) -> str:
        """"@tcp", /proc/net/tcp and tcp6, "@links", then "<path>\\t<link target>" for the cwd and
        fd links of ``pid`` (or of every process); an unreadable link has an empty target. Read
        by one command (hosts/processes.py parses it)."""
        argv = ["sh", "-c", SCAN_SCRIPT, "sh", str(pid) if pid is not None else "", "" if with_tcp else "notcp"]
        result = await self.run(argv, timeout=timeout)
        if not result.ok:
            raise HostError(self.label, f"cannot read /proc to find neard's processes: {result.stderr.strip() or result.exit_code} (needs Linux and GNU find)")
        return result.stdout

    @abstractmethod
    async def signal(self, pid: int, sig: int | _signal.Signals) -> None:
        """Send ``sig`` to ``pid``; NoSuchProcess if it does not exist."""

    async def pid_alive(self, pid: int) -> bool:
        """Whether ``pid`` runs. A zombie (exited, not yet reaped) counts as gone: it cannot sign."""
        try:
            text = await self.read_text(f"/proc/{pid}/stat", PROC_FILE)
        except HostFileNotFound:
            if await self.exists("/proc/self/stat"):
                return False
            # No /proc on this host: never conclude "gone" from a missing file; ask kill(1).
            result = await self.run(["kill", "-0", str(pid)], timeout=30)
            return result.ok or "not permitted" in result.stderr.lower()
        state, _ = parse_proc_stat(text)
        return state not in ("Z", "X", "x")

    async def process_start_ticks(self, pid: int) -> int | None:
        """When ``pid`` started (clock ticks since boot), to tell a pid from a reused one."""
        try:
            text = await self.read_text(f"/proc/{pid}/stat", PROC_FILE)
        except HostFileNotFound:
            return None
        return parse_proc_stat(text)[1]

    async def process_started_at(self, pid: int) -> float | None:
        """When ``pid`` started, as a Unix time (boot time + start ticks at USER_HZ = 100, which
        Linux fixes for every architecture's /proc); None if it does not run."""
        ticks = await self.process_start_ticks(pid)
        if ticks is None:
            return None
        for line in (await self.read_text("/proc/stat", PROC_FILE)).splitlines():
            if line.startswith("btime "):
                return int(line.split()[1]) + ticks / 100
        return None

    # --- lifecycle ---

    async def close(self) -> None:
        """Release connections; the host can be used again afterwards (it reconnects)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"
