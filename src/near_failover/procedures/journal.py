"""The journal: every run and step of a procedure, written to SQLite as it happens.

It is what an operator reads after a crash to know where a move stopped, so it is written before
and after each step (not at the end), and it is also the lock that keeps two moves of one validator
from running at once. Evidence never holds key material: anything that looks like a 64-byte
ed25519 secret is replaced before it is stored (near_failover.redact).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from near_failover.hosts.local import process_alive, process_start_ticks
from near_failover.redact import redact_record, redact_text

SCHEMA_VERSION = 1

IN_PROGRESS = "in-progress"
INTERRUPTED = "interrupted"
TAKEN_OVER = "taken-over"  # an interrupted run closed by the agent holding a newer lease, its target proven fenced

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    validator   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    mode        TEXT,
    from_node   TEXT,
    to_node     TEXT,
    started     TEXT NOT NULL,
    ended       TEXT,
    outcome     TEXT,
    detail      TEXT NOT NULL DEFAULT '{}',
    owner_pid   INTEGER NOT NULL,
    owner_host  TEXT NOT NULL,
    owner_start INTEGER
);
CREATE INDEX IF NOT EXISTS runs_validator ON runs (validator, id);
CREATE TABLE IF NOT EXISTS steps (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id   INTEGER NOT NULL REFERENCES runs (id),
    name     TEXT NOT NULL,
    started  TEXT NOT NULL,
    ended    TEXT,
    outcome  TEXT,
    evidence TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS steps_run ON steps (run_id, id);
"""


class JournalError(Exception):
    """The journal cannot be used as asked; the message names the file or the run."""


class RunInProgress(JournalError):
    """Another run for the same validator is in progress: two moves at once could double-sign."""

    def __init__(self, run: Run, message: str) -> None:
        super().__init__(message)
        self.run = run


class RunInterrupted(JournalError):
    """A run for the validator never finished and its process is gone: someone must look first."""

    def __init__(self, run: Run, message: str) -> None:
        super().__init__(message)
        self.run = run


def _evidence_json(value: Mapping[str, Any] | None) -> str:
    return json.dumps(redact_record(dict(value or {})), sort_keys=True)


# --- records -------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _own_start_ticks() -> int | None:
    return process_start_ticks(os.getpid())


def initiator() -> str:
    """Who starts a run from this process, for `history`: the user, and the command (an
    agent names its node, so an automatic move says which agent made it)."""
    import getpass
    import sys

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    args = sys.argv[1:]
    if args[:1] == ["agent"] and "--node" in args[:-1]:
        command = f"the agent of {args[args.index('--node') + 1]}"
    elif args and not args[0].startswith("-"):
        command = f"near-failover {args[0]}"
    else:
        command = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return f"{command}, by {user} on {socket.gethostname()}"


@dataclass(frozen=True)
class Step:
    id: int
    run_id: int
    name: str
    started: datetime
    ended: datetime | None
    outcome: str | None  # None while running (or if the tool died during it)
    evidence: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat() if self.ended else None,
            "outcome": self.outcome,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Run:
    id: int
    validator: str
    kind: str
    mode: str | None
    from_node: str | None
    to_node: str | None
    started: datetime
    ended: datetime | None
    outcome: str | None
    detail: dict[str, Any]
    owner_pid: int
    owner_host: str
    state: str = field(default=IN_PROGRESS)  # the outcome, or "in-progress" / "interrupted"

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    def describe(self) -> str:
        move = f"{self.kind}"
        if self.mode:
            move += f" ({self.mode})"
        if self.from_node or self.to_node:
            move += f" {self.from_node or '?'} -> {self.to_node or '?'}"
        return f"run {self.id} [{move}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "validator": self.validator,
            "kind": self.kind,
            "mode": self.mode,
            "from": self.from_node,
            "to": self.to_node,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat() if self.ended else None,
            "outcome": self.outcome,
            "state": self.state,
            "detail": self.detail,
            "owner_pid": self.owner_pid,
            "owner_host": self.owner_host,
        }


# --- the journal ---------------------------------------------------------------------------------


class StepRecorder:
    """Records one step: started on enter, ended with its outcome on exit (sync or async ``with``).

    ``add(**evidence)`` is written at once, so a crash mid-step keeps what was known. The outcome
    is "ok" unless set (``recorder.outcome = "skipped"``) or an exception ends it ("failed", with
    the error in the evidence; "cancelled" for a cancellation or Ctrl-C).
    """

    def __init__(self, journal: Journal, run_id: int, name: str, evidence: Mapping[str, Any] | None) -> None:
        self._journal = journal
        self.run_id = run_id
        self.name = name
        self.evidence: dict[str, Any] = redact_record(dict(evidence or {}))
        self.outcome: str | None = None
        self.id: int | None = None

    def add(self, **evidence: Any) -> None:
        self.evidence.update(redact_record(evidence))
        if self.id is not None:
            self._journal._update_step(self.id, evidence=self.evidence)

    def __enter__(self) -> Self:
        self.id = self._journal._insert_step(self.run_id, self.name, self.evidence)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.id is not None
        if exc is not None:
            self.evidence["error"] = redact_text(f"{type(exc).__name__}: {exc}")
            outcome = "failed" if isinstance(exc, Exception) else "cancelled"
        else:
            outcome = self.outcome or "ok"
        self._journal._update_step(self.id, evidence=self.evidence, outcome=outcome, ended=_now())

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def _wal_mode(db: sqlite3.Connection, busy_timeout: float) -> None:
    """Switch to WAL, waiting as long as any other lock: SQLite answers a switch it cannot make
    at once with "database is locked" without calling the busy handler, which is what happens
    when agents open a new journal together."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class Journal:
    """A SQLite file shared by every near-failover process on this machine."""

    def __init__(self, path: Path | str, busy_timeout: float = 10.0) -> None:
        self.path = Path(path).expanduser()
        self._host = socket.gethostname()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            created = not self.path.exists()
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
            if created:
                os.chmod(self.path, 0o600)
            _wal_mode(self._db, busy_timeout)
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._transaction():
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise JournalError(
                        f"{self.path}: journal schema {version} is newer than this near-failover "
                        f"understands ({SCHEMA_VERSION}); upgrade near-failover"
                    )
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: cannot open the journal: {exc}") from None
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot create the journal: {exc.strerror or exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: the write lock is taken before anything is read, so a check and the
        insert that depends on it are one atomic step across processes."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    # --- runs ---

    def _owner_alive(self, row: sqlite3.Row | tuple[Any, ...]) -> bool:
        pid, host, start = row
        if host != self._host:
            return True  # another machine's process: it cannot be checked from here; assume alive
        if not process_alive(pid):
            return False
        return start is None or process_start_ticks(pid) in (None, start)

    def _run_from_row(self, row: tuple[Any, ...]) -> Run:
        (rid, validator, kind, mode, from_node, to_node, started, ended, outcome, detail, pid, host, start) = row
        if outcome is not None:
            state = outcome
        else:
            state = IN_PROGRESS if self._owner_alive((pid, host, start)) else INTERRUPTED
        return Run(
            id=rid,
            validator=validator,
            kind=kind,
            mode=mode,
            from_node=from_node,
            to_node=to_node,
            started=_parse_time(started),  # type: ignore[arg-type]
            ended=_parse_time(ended),
            outcome=outcome,
            detail=json.loads(detail),
            owner_pid=pid,
            owner_host=host,
            state=state,
        )

    _RUN_COLUMNS = (
        "id, validator, kind, mode, from_node, to_node, started, ended, outcome, detail, "
        "owner_pid, owner_host, owner_start"
    )

    def start_run(
        self,
        validator: str,
        kind: str,
        mode: str | None = None,
        from_node: str | None = None,
        to_node: str | None = None,
        detail: Mapping[str, Any] | None = None,
        take_over_interrupted: bool = False,
    ) -> int:
        """Record a new run and return its id, unless another run for ``validator`` is unfinished.

        Raises RunInProgress when its process still runs, RunInterrupted when it died (the operator
        must look at the nodes first); with ``take_over_interrupted`` such runs are marked
        "interrupted" and this run starts.
        """
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {self._RUN_COLUMNS} FROM runs WHERE validator = ? AND outcome IS NULL ORDER BY id",
                (validator,),
            ).fetchall()
            open_runs = [self._run_from_row(row) for row in rows]
            for run in open_runs:
                if run.state == IN_PROGRESS:
                    where = "this host" if run.owner_host == self._host else f"host {run.owner_host}"
                    raise RunInProgress(
                        run,
                        f"{self.path}: {run.describe()} for {validator} is in progress since "
                        f"{run.started:%Y-%m-%d %H:%M:%S} UTC, run by pid {run.owner_pid} on {where}; "
                        "wait for it to finish (`near-failover history` shows its steps) or stop "
                        "that process first",
                    )
            interrupted = [run for run in open_runs if run.state == INTERRUPTED]
            if interrupted and not take_over_interrupted:
                run = interrupted[-1]
                last = self._last_step_text(run.id)
                raise RunInterrupted(
                    run,
                    f"{self.path}: {run.describe()} for {validator}, started "
                    f"{run.started:%Y-%m-%d %H:%M:%S} UTC by pid {run.owner_pid}, was interrupted "
                    f"(that process is gone) {last}. Check each node's state "
                    "(`near-failover status`, `near-failover history`), finish or revert by hand, "
                    "then take the interrupted run over to start a new one",
                )
            now = _now()
            for run in interrupted:
                db.execute(
                    "UPDATE runs SET outcome = ?, ended = ?, detail = ? WHERE id = ?",
                    (INTERRUPTED, now, json.dumps({**run.detail, "taken_over_at": now}), run.id),
                )
            cursor = db.execute(
                "INSERT INTO runs (validator, kind, mode, from_node, to_node, started, detail, "
                "owner_pid, owner_host, owner_start) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    validator,
                    kind,
                    mode,
                    from_node,
                    to_node,
                    now,
                    _evidence_json({"initiator": initiator(), **(detail or {})}),
                    os.getpid(),
                    self._host,
                    _own_start_ticks(),
                ),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def record_event(self, validator: str, kind: str, node: str, evidence: Mapping[str, Any] | None = None) -> int:
        """Record something that already happened on ``node`` (an agent's self-fence) as a finished
        one-step run. It is not a move, so it neither waits for nor blocks one: an agent on a host
        whose journal another agent is writing a promotion into still gets its event recorded."""
        now = _now()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs (validator, kind, from_node, started, ended, outcome, detail, owner_pid, owner_host, owner_start) "
                "VALUES (?, ?, ?, ?, ?, 'ok', ?, ?, ?, ?)",
                (validator, kind, node, now, now, _evidence_json({"initiator": initiator()}), os.getpid(), self._host, _own_start_ticks()),
            )
            assert cursor.lastrowid is not None
            db.execute(
                "INSERT INTO steps (run_id, name, started, ended, outcome, evidence) VALUES (?, ?, ?, ?, 'ok', ?)",
                (cursor.lastrowid, kind, now, now, _evidence_json(evidence)),
            )
            return cursor.lastrowid

    def _last_step_text(self, run_id: int) -> str:
        steps = self.steps(run_id)
        if not steps:
            return "before its first step"
        last = steps[-1]
        return f"at step {last.name!r} ({last.outcome or 'still running when it stopped'})"

    def update_run(self, run_id: int, detail: Mapping[str, Any]) -> None:
        """Merge ``detail`` into the run's detail now (e.g. the commands that would revert it)."""
        with self._transaction() as db:
            run = self.run(run_id)
            merged = {**run.detail, **redact_record(dict(detail))}
            db.execute("UPDATE runs SET detail = ? WHERE id = ?", (_evidence_json(merged), run_id))

    def take_over(self, run_id: int, detail: Mapping[str, Any]) -> None:
        """Close an interrupted run as "taken-over" (by an agent holding a newer lease that proved
        the run's target fenced); JournalError unless it is still open and its process is gone."""
        with self._transaction() as db:
            run = self.run(run_id)
            if run.state != INTERRUPTED:
                raise JournalError(f"{self.path}: {run.describe()} is {run.state}, not interrupted: it cannot be taken over")
            merged = {**run.detail, **redact_record(dict(detail)), "taken_over_at": _now()}
            db.execute("UPDATE runs SET outcome = ?, ended = ?, detail = ? WHERE id = ?",
                       (TAKEN_OVER, _now(), _evidence_json(merged), run_id))

    def finish_run(self, run_id: int, outcome: str, detail: Mapping[str, Any] | None = None) -> None:
        """Close the run with ``outcome`` ("ok", "failed", "rolled-back", ...)."""
        if not outcome or outcome in (IN_PROGRESS,):
            raise ValueError(f"not a final outcome: {outcome!r}")
        with self._transaction() as db:
            run = self.run(run_id)
            if run.finished:
                raise JournalError(f"{self.path}: {run.describe()} already finished ({run.outcome})")
            merged = {**run.detail, **redact_record(dict(detail or {}))}
            db.execute(
                "UPDATE runs SET outcome = ?, ended = ?, detail = ? WHERE id = ?",
                (outcome, _now(), _evidence_json(merged), run_id),
            )

    def run(self, run_id: int) -> Run:
        row = self._db.execute(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise JournalError(f"{self.path}: no run with id {run_id}")
        return self._run_from_row(row)

    def runs(self, validator: str | None = None, limit: int = 20, kinds: list[str] | None = None, since: datetime | None = None) -> list[Run]:
        """The latest runs first; only ``kinds`` and runs started at or after ``since`` if given."""
        where, args = [], []
        if validator is not None:
            where.append("validator = ?")
            args.append(validator)
        if kinds:
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args += kinds
        if since is not None:
            where.append("started >= ?")
            args.append(since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._db.execute(f"SELECT {self._RUN_COLUMNS} FROM runs {clause}ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [self._run_from_row(row) for row in rows]

    def last_interrupted(self, validator: str) -> Run | None:
        """The latest run of ``validator`` that never finished because its process died (whether
        or not it was taken over since)."""
        rows = self._db.execute(
            f"SELECT {self._RUN_COLUMNS} FROM runs WHERE validator = ? "
            "AND (outcome IS NULL OR outcome = ?) ORDER BY id DESC",
            (validator, INTERRUPTED),
        ).fetchall()
        for row in rows:
            run = self._run_from_row(row)
            if run.state == INTERRUPTED:
                return run
        return None

    def stop_times(self, node: str, limit: int = 20) -> list[float]:
        """Seconds each journaled fence or self-fence took to stop `node`'s running neard,
        latest first (the evidence a stop leaves: `node` and `stop.seconds`)."""
        rows = self._db.execute(
            "SELECT json_extract(evidence, '$.stop.seconds') FROM steps WHERE outcome = 'ok' "
            "AND json_extract(evidence, '$.node') = ? AND json_extract(evidence, '$.stop.was_running') "
            "AND json_extract(evidence, '$.stop.seconds') IS NOT NULL ORDER BY id DESC LIMIT ?",
            (node, limit),
        ).fetchall()
        return [float(seconds) for (seconds,) in rows]

    # --- steps ---

    def step(self, run_id: int, name: str, evidence: Mapping[str, Any] | None = None) -> StepRecorder:
        """A context manager (``with`` or ``async with``) recording one step of ``run_id``."""
        return StepRecorder(self, run_id, name, evidence)

    def _insert_step(self, run_id: int, name: str, evidence: Mapping[str, Any]) -> int:
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise JournalError(f"{self.path}: no run with id {run_id}")
            cursor = db.execute(
                "INSERT INTO steps (run_id, name, started, evidence) VALUES (?, ?, ?, ?)",
                (run_id, name, _now(), _evidence_json(evidence)),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def _update_step(
        self, step_id: int, evidence: Mapping[str, Any], outcome: str | None = None, ended: str | None = None
    ) -> None:
        with self._transaction() as db:
            if outcome is None:
                db.execute("UPDATE steps SET evidence = ? WHERE id = ?", (_evidence_json(evidence), step_id))
            else:
                db.execute(
                    "UPDATE steps SET evidence = ?, outcome = ?, ended = ? WHERE id = ?",
                    (_evidence_json(evidence), outcome, ended, step_id),
                )

    def steps(self, run_id: int) -> list[Step]:
        """The run's steps in the order they started."""
        rows = self._db.execute(
            "SELECT id, run_id, name, started, ended, outcome, evidence FROM steps "
            "WHERE run_id = ? ORDER BY id",
            (run_id,),
        ).fetchall()
        return [
            Step(
                id=sid,
                run_id=rid,
                name=name,
                started=_parse_time(started),  # type: ignore[arg-type]
                ended=_parse_time(ended),
                outcome=outcome,
                evidence=json.loads(evidence),
            )
            for (sid, rid, name, started, ended, outcome, evidence) in rows
        ]

    def history(self, validator: str, limit: int = 20, kinds: list[str] | None = None, since: datetime | None = None) -> list[HistoryEntry]:
        """The latest runs first, each with its steps: what `history` and the demo show."""
        return [HistoryEntry(run, self.steps(run.id)) for run in self.runs(validator, limit, kinds, since)]


@dataclass(frozen=True)
class HistoryEntry:
    """One run with its steps, and what a person asks of it: how long, why, who, what it cost."""

    run: Run
    steps: list[Step]

    def to_json(self) -> dict[str, Any]:
        return {**self.run.to_json(), "steps": [s.to_json() for s in self.steps]}

    @property
    def seconds(self) -> float | None:
        return (self.run.ended - self.run.started).total_seconds() if self.run.ended else None

    @property
    def reason(self) -> str | None:
        """Why it ended as it did: a move's message, or the reason an event (a self-fence) gave."""
        message = self.run.detail.get("message")
        if message:
            return str(message)
        for step in self.steps:
            if step.evidence.get("reason"):
                return str(step.evidence["reason"])
        return None

    @property
    def missed(self) -> dict[str, int] | None:
        missed = self.run.detail.get("missed")
        return missed if isinstance(missed, dict) else None

    @property
    def initiator(self) -> str:
        return str(self.run.detail.get("initiator") or f"pid {self.run.owner_pid} on {self.run.owner_host}")
