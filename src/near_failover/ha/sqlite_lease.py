"""The embedded lease store: the etcd store's semantics in one SQLite file, for agents on one host.

Every decision (is the key absent? is it still mine?) is read and written inside one
``BEGIN IMMEDIATE`` transaction, so two processes can never both see "absent" and both create the
key. The generation is a counter in the file that only grows.

Expiry uses the host's boot-time clock (``CLOCK_BOOTTIME``), not the wall clock: an NTP step of
the wall clock forward would make a standby take a lease the leader still believes it holds (two
signers), a step back would keep a dead leader's lease. CLOCK_BOOTTIME is one clock for every
process on the host and never jumps (``lease_clock``, the holders' clock too); the file records
the kernel's boot id, and leases written during an earlier boot count as expired. Only agents on
this one host can share this clock, which is why ``for_inventory`` refuses nodes on several hosts.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from pydantic import ValidationError

from near_failover.ha.lease import (
    ClusterView,
    Handover,
    LeaderInfo,
    LeaderLease,
    LeaseConfigError,
    LeaseStore,
    LeaseStoreUnavailable,
    MemberRecord,
    default_sqlite_path,
    lease_clock,
)

if TYPE_CHECKING:
    from near_failover.inventory import Inventory

log = structlog.get_logger(__name__)

_T = TypeVar("_T")
_BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lease_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL,
    boot_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leader (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    member TEXT NOT NULL,
    generation INTEGER NOT NULL,
    ttl REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    expires_at REAL
);
CREATE TABLE IF NOT EXISTS handover (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    to_member TEXT NOT NULL,
    from_member TEXT NOT NULL,
    generation INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS flags (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@functools.cache
def current_boot_id() -> str:
    """This boot's id, read once: no process outlives its boot (every transaction asks)."""
    try:
        return _BOOT_ID_FILE.read_text().strip()
    except OSError:
        return "unknown-boot"


def host_identity(host: str) -> str:
    """``local`` for this machine (``local`` or an SSH loopback address), else the host name."""
    if host == "local":
        return "local"
    from near_failover.inventory import parse_host

    spec = parse_host(host)
    name = (spec.hostname or "").lower()
    return "local" if name in _LOOPBACK_NAMES else name


class SqliteLeaseStore(LeaseStore):
    """Agents on one host sharing one file; ``busy_timeout`` bounds every wait for the file lock."""

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout: float = 2.0,
        clock: Callable[[], float] = lease_clock,
        boot_id: Callable[[], str] = current_boot_id,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._clock = clock
        self._boot_id = boot_id
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def for_inventory(cls, inventory: Inventory) -> SqliteLeaseStore:
        """The store for ``inventory``; refuses nodes on several hosts (one file, one clock)."""
        where = f"{inventory.source}: " if inventory.source else ""
        settings = inventory.lease
        if settings is not None and settings.store != "sqlite":
            raise LeaseConfigError(f'{where}[lease] store is "{settings.store}", not "sqlite"')
        hosts: dict[str, list[str]] = {}
        for node in inventory.nodes:
            hosts.setdefault(host_identity(node.host), []).append(f"{node.name} ({node.host})")
        if len(hosts) > 1:
            listing = "; ".join(f"{host}: {', '.join(names)}" for host, names in hosts.items())
            raise LeaseConfigError(
                f'{where}the sqlite lease store keeps the lease in one file on one host, but the '
                f"nodes are on {len(hosts)} hosts ({listing}); agents on different hosts cannot "
                'share it: set [lease] store = "etcd" with endpoints = ["http://host:2379", ...]'
            )
        path = settings.path if settings is not None and settings.path else None
        account = inventory.validator.account_id
        timeout = settings.retry_timeout if settings is not None else 2.0
        return cls(path or default_sqlite_path(account), busy_timeout=timeout)

    @property
    def where(self) -> str:
        return str(self.path)

    # --- plumbing --------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Created 0600 before sqlite opens it (sqlite gives its -wal and -shm files the
            # database's mode): the lease decides who may sign, nobody else may write it.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                # A generation must never be handed out twice, even after a power cut.
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _transaction(self, body: Callable[[sqlite3.Connection, float], _T]) -> _T:
        """Run ``body(conn, now)`` inside BEGIN IMMEDIATE; sqlite errors become Unavailable.

        "Locked" is retried until busy_timeout: sqlite's own wait does not cover every case
        (a new file switched to WAL by several connections at once answers "locked" at once)."""
        deadline = time.monotonic() + self.busy_timeout
        with self._lock:
            while True:
                try:
                    return self._attempt(body)
                except sqlite3.OperationalError as exc:
                    cause = str(exc)
                    if "locked" not in cause and "busy" not in cause:
                        raise LeaseStoreUnavailable([str(self.path)], cause) from None
                    if time.monotonic() < deadline:
                        time.sleep(0.02)
                        continue
                    raise LeaseStoreUnavailable([str(self.path)], f"{cause} (held by another process for over {self.busy_timeout:g}s)") from None
                except sqlite3.DatabaseError as exc:
                    raise LeaseStoreUnavailable([str(self.path)], f"{type(exc).__name__}: {exc}") from None
                except OSError as exc:
                    raise LeaseStoreUnavailable([str(self.path)], f"cannot open the file: {exc}") from None

    def _attempt(self, body: Callable[[sqlite3.Connection, float], _T]) -> _T:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = self._clock()
            self._forget_earlier_boot(conn)
            result = body(conn, now)
            conn.execute("COMMIT")
            return result
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def _run(self, body: Callable[[sqlite3.Connection, float], _T]) -> _T:
        return await asyncio.to_thread(self._transaction, body)

    def _forget_earlier_boot(self, conn: sqlite3.Connection) -> None:
        """Leases are timed on this boot's clock: those from an earlier boot have expired."""
        boot = self._boot_id()
        row = conn.execute("SELECT boot_id FROM lease_meta WHERE id = 1").fetchone()
        if row is None:
            conn.execute("INSERT INTO lease_meta (id, generation, boot_id) VALUES (1, 0, ?)", (boot,))
        elif row[0] != boot:
            conn.execute("DELETE FROM leader")
            conn.execute("DELETE FROM handover")
            conn.execute("DELETE FROM members WHERE expires_at IS NOT NULL")
            conn.execute("UPDATE lease_meta SET boot_id = ? WHERE id = 1", (boot,))

    @staticmethod
    def _live_leader(conn: sqlite3.Connection, now: float) -> tuple[Any, ...] | None:
        row = conn.execute(
            "SELECT member, generation, ttl, expires_at FROM leader WHERE id = 1"
        ).fetchone()
        return row if row is not None and row[3] > now else None

    @staticmethod
    def _live_handover(conn: sqlite3.Connection, now: float) -> Handover | None:
        row = conn.execute(
            "SELECT to_member, from_member, generation, expires_at FROM handover WHERE id = 1"
        ).fetchone()
        return Handover(row[0], row[1], int(row[2])) if row is not None and row[3] > now else None

    # --- leader ----------------------------------------------------------------------------------

    async def acquire_leader(self, member: str, ttl: float) -> LeaderLease | None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        sent = lease_clock()

        def body(conn: sqlite3.Connection, now: float) -> int | None:
            if self._live_leader(conn, now) is not None:
                return None
            handover = self._live_handover(conn, now)
            if handover is not None and handover.to != member:
                return None  # reserved for another member by the last holder
            conn.execute("DELETE FROM handover")
            conn.execute("UPDATE lease_meta SET generation = generation + 1 WHERE id = 1")
            (generation,) = conn.execute("SELECT generation FROM lease_meta WHERE id = 1").fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO leader (id, member, generation, ttl, expires_at) "
                "VALUES (1, ?, ?, ?, ?)",
                (member, generation, ttl, now + ttl),
            )
            return int(generation)

        generation = await self._run(body)
        if generation is None:
            return None
        log.info("leader lease acquired", member=member, generation=generation, ttl=ttl)
        return LeaderLease(member, generation, float(ttl), sent + ttl, str(generation))

    async def renew(self, lease: LeaderLease) -> bool:
        sent = lease_clock()

        def body(conn: sqlite3.Connection, now: float) -> bool:
            row = self._live_leader(conn, now)
            if row is None or row[0] != lease.member or row[1] != lease.generation:
                return False
            conn.execute("UPDATE leader SET expires_at = ? WHERE id = 1", (now + lease.ttl,))
            return True

        if not await self._run(body):
            return False
        lease.valid_until = sent + lease.ttl
        return True

    async def release(self, lease: LeaderLease) -> None:
        def body(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                "DELETE FROM leader WHERE id = 1 AND member = ? AND generation = ?",
                (lease.member, lease.generation),
            )

        await self._run(body)
        lease.valid_until = lease_clock()

    async def hand_over(self, lease: LeaderLease, to: str) -> bool:
        def body(conn: sqlite3.Connection, now: float) -> bool:
            row = self._live_leader(conn, now)
            if row is None or row[0] != lease.member or row[1] != lease.generation:
                return False
            conn.execute("DELETE FROM leader WHERE id = 1")
            conn.execute(
                "INSERT OR REPLACE INTO handover (id, to_member, from_member, generation, expires_at) "
                "VALUES (1, ?, ?, ?, ?)",
                (to, lease.member, lease.generation, now + lease.ttl),
            )
            return True

        handed = await self._run(body)
        if handed:
            lease.valid_until = lease_clock()
            log.info("leader lease handed over", member=lease.member, to=to, generation=lease.generation)
        return handed

    @classmethod
    def _leader_info(cls, conn: sqlite3.Connection, now: float) -> LeaderInfo | None:
        row = cls._live_leader(conn, now)
        if row is None:
            return None
        member, generation, ttl, expires_at = row
        return LeaderInfo(member, int(generation), ttl_left=expires_at - now, ttl=float(ttl))

    async def leader(self) -> LeaderInfo | None:
        return await self._run(self._leader_info)

    async def view(self, with_ttl: bool = False) -> ClusterView:
        """Leader, members and pause flag in one transaction: one consistent cluster."""
        def body(conn: sqlite3.Connection, now: float) -> tuple[LeaderInfo | None, list[tuple[str, str]], bool, Handover | None]:
            return self._leader_info(conn, now), self._member_rows(conn, now), self._paused(conn), self._live_handover(conn, now)

        leader, rows, paused, handover = await self._run(body)
        return ClusterView(leader, tuple(self._records(rows)), paused, handover=handover)

    # --- members ---------------------------------------------------------------------------------

    async def put_member(self, record: MemberRecord, ttl: float | None) -> None:
        text = record.model_dump_json()

        def body(conn: sqlite3.Connection, now: float) -> None:
            expires = None if ttl is None else now + ttl
            conn.execute(
                "INSERT OR REPLACE INTO members (name, record, expires_at) VALUES (?, ?, ?)",
                (record.name, text, expires),
            )

        await self._run(body)

    async def delete_member(self, name: str) -> None:
        await self._run(lambda conn, now: conn.execute("DELETE FROM members WHERE name = ?", (name,)))

    @staticmethod
    def _member_rows(conn: sqlite3.Connection, now: float) -> list[tuple[str, str]]:
        conn.execute("DELETE FROM members WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        return conn.execute("SELECT name, record FROM members ORDER BY name").fetchall()

    async def members(self) -> list[MemberRecord]:
        return self._records(await self._run(self._member_rows))

    def _records(self, rows: list[tuple[str, str]]) -> list[MemberRecord]:
        records = []
        for name, text in rows:
            try:
                records.append(MemberRecord.model_validate_json(text))
            except ValidationError as exc:
                log.warning("unreadable member record skipped", member=name, file=str(self.path),
                            error=str(exc))
        return records

    # --- pause -----------------------------------------------------------------------------------

    async def set_paused(self, paused: bool) -> None:
        def body(conn: sqlite3.Connection, now: float) -> None:
            if paused:
                conn.execute("INSERT OR REPLACE INTO flags (name, value) VALUES ('paused', '1')")
            else:
                conn.execute("DELETE FROM flags WHERE name = 'paused'")

        await self._run(body)

    @staticmethod
    def _paused(conn: sqlite3.Connection, now: float = 0.0) -> bool:
        return conn.execute("SELECT 1 FROM flags WHERE name = 'paused'").fetchone() is not None

    async def paused(self) -> bool:
        return await self._run(self._paused)

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
