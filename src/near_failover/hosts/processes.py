"""Which processes on a host serve a neard home, found from /proc by what they serve.

A pid file, a systemd unit or a stop command can name the wrong process, or none, while neard
still runs; neard may also run without ``--home`` on its command line. What cannot be wrong is
what the kernel shows: a socket listening on the node's RPC port (/proc/net/tcp and tcp6, whose
inode is one of the process's /proc/<pid>/fd links), or a cwd or an open file under the home's
``data/`` (RocksDB keeps its LOCK file there open for as long as neard runs). One command reads
it all, so a scan costs one round trip on an SSH host and works the same on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from near_failover.hosts.base import Host, HostError, PathLike

LISTEN_STATE = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column (include/net/tcp_states.h)

@dataclass(frozen=True)
class ServingProcess:
    """A process that serves the home, and what showed it (its port, its cwd, an open file)."""

    pid: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ProcessScan:
    """What /proc on one host shows about a neard home at one instant."""

    ports: tuple[int, ...]
    listening: bool  # a socket listens on one of the ports, whoever owns it
    processes: tuple[ServingProcess, ...]
    unreadable_pids: int  # processes whose links we may not read (another user's, without root)

    @property
    def serving(self) -> bool:
        """Whether anything on the host still serves the home (a listener counts even when its
        process could not be identified)."""
        return self.listening or bool(self.processes)

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(p.pid for p in self.processes)

    def evidence(self) -> dict[str, object]:
        return {
            "ports": list(self.ports),
            "port_listening": self.listening,
            "pids": {str(p.pid): list(p.reasons) for p in self.processes},
            "unreadable_pids": self.unreadable_pids,
        }


def listening_inodes(tables: str, ports: tuple[int, ...]) -> set[int]:
    """Socket inodes in LISTEN state on one of ``ports``, from /proc/net/tcp{,6} text."""
    inodes: set[int] = set()
    for line in tables.splitlines():
        fields = line.split()
        if len(fields) < 10 or ":" not in fields[1] or fields[3] != LISTEN_STATE:
            continue  # the header, or a socket that is not listening
        try:
            port = int(fields[1].rsplit(":", 1)[1], 16)
            inode = int(fields[9])
        except ValueError:
            continue
        if port in ports:
            inodes.add(inode)
    return inodes


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def serving_processes(links: str, inodes: set[int], data_dir: str) -> tuple[tuple[ServingProcess, ...], int]:
    """The processes whose fd links hold one of ``inodes`` or whose cwd or fd links are under
    ``data_dir``, from "<path>\\t<target>" lines; and how many processes could not be read."""
    reasons: dict[int, list[str]] = {}
    unreadable: set[int] = set()
    sockets = {f"socket:[{inode}]" for inode in inodes}
    for line in links.splitlines():
        path, _, target = line.partition("\t")
        parts = path.split("/")  # "", "proc", pid, "cwd" | "fd" [, n]
        if len(parts) < 4 or not parts[2].isdigit():
            continue
        pid, kind = int(parts[2]), parts[3]
        if kind == "cwd" and not target:
            unreadable.add(pid)
            continue
        if not target or (kind == "fd" and len(parts) == 4):
            continue  # the fd folder itself
        why = None
        if target in sockets:
            why = "listens on the RPC port"
        elif _under(target, data_dir):
            why = f"cwd {target}" if kind == "cwd" else f"has {target} open"
        if why and why not in reasons.setdefault(pid, []):
            reasons[pid].append(why)
    found = tuple(ServingProcess(pid, tuple(why)) for pid, why in sorted(reasons.items()) if why)
    return found, len(unreadable)


async def scan_processes(
    host: Host, home: PathLike, ports: tuple[int, ...], pid: int | None = None, timeout: float = 15.0, with_tcp: bool = True
) -> ProcessScan:
    """The processes on ``host`` that serve ``home`` (all of them, or only ``pid``); without
    ``with_tcp``, found by cwd and open files only (the kernel's TCP table is slow to read on a
    host with many sockets)."""
    data_dir = str(PurePosixPath(home) / "data")
    tables, _, links = (await host.proc_links_text(pid, timeout, with_tcp)).partition("@links\n")
    if not tables.startswith("@tcp"):
        raise HostError(host.label, "reading /proc printed no TCP table: cannot tell whether neard's RPC port is open")
    inodes = listening_inodes(tables, ports)
    processes, unreadable = serving_processes(links, inodes, data_dir)
    return ProcessScan(tuple(ports), listening=bool(inodes), processes=processes, unreadable_pids=unreadable)


async def process_serves(host: Host, pid: int, home: PathLike, ports: tuple[int, ...]) -> ServingProcess | None:
    """``pid`` as a process serving ``home``, or None when it runs but serves something else
    (a pid file naming an unrelated process must never be signalled)."""
    for with_tcp in (False, True):  # its open data/ files first: they need no TCP table
        scan = await scan_processes(host, home, ports, pid=pid, with_tcp=with_tcp)
        if found := next((p for p in scan.processes if p.pid == pid), None):
            return found
    return None


async def process_command(host: Host, pid: int) -> tuple[list[str], str | None]:
    """``pid``'s argv and cwd (empty and None when it is gone or unreadable)."""
    script = 'tr "\\0" "\\n" < "/proc/$1/cmdline" 2>/dev/null; echo "@cwd"; readlink "/proc/$1/cwd" 2>/dev/null; exit 0'
    result = await host.run(["sh", "-c", script, "sh", str(pid)], timeout=15)
    argv_text, _, cwd = result.stdout.partition("@cwd\n")
    return [a for a in argv_text.split("\n") if a], cwd.strip() or None
