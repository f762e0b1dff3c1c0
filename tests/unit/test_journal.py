"""The journal: runs and steps as they happen, one run per validator at a time (across processes),
interrupted runs surfaced rather than taken over, and never a secret key in what it stores."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import base58
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from near_failover.procedures.journal import (
    INTERRUPTED,
    TAKEN_OVER,
    Journal,
    JournalError,
    RunInProgress,
    RunInterrupted,
)
from near_failover.redact import REDACTED

REPO_SRC = Path(__file__).resolve().parents[2] / "src"


def ed25519_key() -> tuple[str, str]:
    """(secret "ed25519:<64 bytes b58>", public "ed25519:<32 bytes b58>"), NEAR's key text."""
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return (
        "ed25519:" + base58.b58encode(seed + public).decode(),
        "ed25519:" + base58.b58encode(public).decode(),
    )


def run_child(code: str, journal: Path, *args: str) -> subprocess.Popen[str]:
    """Another process using the journal (a second operator, or a tool that was killed)."""
    prelude = "import sys, json, os, time\nfrom near_failover.procedures.journal import *\n"
    return subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(code), str(journal), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_SRC)},
    )


def test_run_and_steps_are_recorded(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state" / "journal.sqlite")
    assert oct((tmp_path / "state" / "journal.sqlite").stat().st_mode & 0o777) == "0o600"
    run_id = journal.start_run("pool.near", "switchover", mode="hot-swap", from_node="val-a", to_node="val-b")
    with journal.step(run_id, "preflight", {"target_height": 120}) as step:
        step.add(syncing=False)
        # Written at once: another reader sees the evidence while the step still runs.
        other = Journal(tmp_path / "state" / "journal.sqlite")
        live = other.steps(run_id)[0]
        assert live.outcome is None and live.ended is None
        assert live.evidence == {"target_height": 120, "syncing": False}
        other.close()
    with journal.step(run_id, "stage") as step:
        step.outcome = "skipped"
    with pytest.raises(RuntimeError):
        with journal.step(run_id, "fence"):
            raise RuntimeError("neard pid 42 still runs")
    journal.update_run(run_id, {"recovery": ["near-failover ... unmask"]})
    journal.finish_run(run_id, "failed", {"reason": "fence"})

    steps = journal.steps(run_id)
    assert [(s.name, s.outcome) for s in steps] == [("preflight", "ok"), ("stage", "skipped"), ("fence", "failed")]
    assert steps[2].evidence["error"] == "RuntimeError: neard pid 42 still runs"
    assert all(s.ended is not None and s.ended >= s.started for s in steps)
    (run,) = journal.runs("pool.near")
    assert (run.kind, run.mode, run.from_node, run.to_node, run.outcome, run.state) == (
        "switchover", "hot-swap", "val-a", "val-b", "failed", "failed",
    )
    initiator = run.detail.pop("initiator")
    assert run.detail == {"recovery": ["near-failover ... unmask"], "reason": "fence"}
    assert f"on {socket.gethostname()}" in initiator and ", by " in initiator
    assert run.owner_pid == os.getpid()
    assert run.to_json()["from"] == "val-a"
    with pytest.raises(JournalError):
        journal.finish_run(run_id, "ok")


async def test_async_step(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    run_id = journal.start_run("pool.near", "failover")
    async with journal.step(run_id, "activate") as step:
        step.add(sighup_sent=True)
    with pytest.raises(KeyboardInterrupt):
        async with journal.step(run_id, "verify"):
            raise KeyboardInterrupt
    assert [(s.name, s.outcome) for s in journal.steps(run_id)] == [("activate", "ok"), ("verify", "cancelled")]


def test_second_run_for_the_same_validator_is_refused(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    first = journal.start_run("pool.near", "switchover", from_node="a", to_node="b")
    with pytest.raises(RunInProgress) as err:
        journal.start_run("pool.near", "failover")
    message = str(err.value)
    assert f"run {first}" in message and f"pid {os.getpid()}" in message and "in progress since" in message
    assert err.value.run.id == first
    other = journal.start_run("other.near", "switchover")  # another validator is independent
    journal.finish_run(first, "ok")
    journal.finish_run(other, "ok")
    assert journal.start_run("pool.near", "failover") > other
    assert [r.validator for r in journal.runs(limit=2)] == ["pool.near", "other.near"]
    assert len(journal.runs("pool.near", limit=1)) == 1


def test_concurrent_runs_from_two_processes(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    Journal(db).close()
    go, release = tmp_path / "go", tmp_path / "release"
    code = """
        path, go, release = sys.argv[1:4]
        journal = Journal(path)
        deadline = time.monotonic() + 20
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.001)
        try:
            run_id = journal.start_run("pool.near", "switchover")
        except RunInProgress as exc:
            print(json.dumps({"refused": str(exc), "other": exc.run.id}), flush=True)
            sys.exit(0)
        print(json.dumps({"run": run_id, "pid": os.getpid()}), flush=True)
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
        journal.finish_run(run_id, "ok")
    """
    children = [run_child(code, db, str(go), str(release)) for _ in range(2)]
    go.touch()
    try:
        answers = [json.loads(child.stdout.readline()) for child in children]  # type: ignore[union-attr]
    finally:
        release.touch()
        outputs = [child.communicate(timeout=30) for child in children]
    assert all(child.returncode == 0 for child in children), outputs
    winners = [a for a in answers if "run" in a]
    losers = [a for a in answers if "refused" in a]
    assert len(winners) == 1 and len(losers) == 1, answers
    assert losers[0]["other"] == winners[0]["run"]
    assert f"pid {winners[0]['pid']}" in losers[0]["refused"]
    assert [r.outcome for r in Journal(db).runs("pool.near")] == ["ok"]


def test_interrupted_run_is_reported_not_taken_over(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    code = """
        journal = Journal(sys.argv[1])
        run_id = journal.start_run("pool.near", "failover", mode="rpc", from_node="val-b", to_node="val-c")
        journal.update_run(run_id, {"recovery": ["systemctl unmask neard"]})
        with journal.step(run_id, "preflight"):
            pass
        step = journal.step(run_id, "fence", {"pid": 4242})
        step.__enter__()
        print(run_id, os.getpid(), flush=True)
        os._exit(9)  # the tool is killed in the middle of the fence
    """
    child = run_child(code, db)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 9, err
    run_id, pid = map(int, out.split())

    journal = Journal(db)
    (run,) = journal.runs("pool.near")
    assert run.state == INTERRUPTED and run.outcome is None
    with pytest.raises(RunInterrupted) as exc:
        journal.start_run("pool.near", "failover")
    message = str(exc.value)
    assert f"run {run_id}" in message and f"pid {pid}" in message and "'fence'" in message
    assert "still running when it stopped" in message
    last = journal.last_interrupted("pool.near")
    assert last is not None and last.id == run_id and last.detail["recovery"] == ["systemctl unmask neard"]
    fence = journal.steps(run_id)[-1]
    assert (fence.name, fence.outcome, fence.evidence) == ("fence", None, {"pid": 4242})

    new_id = journal.start_run("pool.near", "failover", take_over_interrupted=True)
    assert journal.run(run_id).outcome == INTERRUPTED and "taken_over_at" in journal.run(run_id).detail
    assert journal.run(new_id).state == "in-progress"
    last = journal.last_interrupted("pool.near")
    assert last is not None and last.id == run_id
    assert journal.last_interrupted("other.near") is None


def test_pid_reused_by_another_process_does_not_hold_the_lock(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    run_id = journal.start_run("pool.near", "switchover")
    with sqlite3.connect(tmp_path / "j.sqlite") as db:  # as if our pid had started at another time
        db.execute("UPDATE runs SET owner_start = owner_start - 1 WHERE id = ?", (run_id,))
    assert journal.run(run_id).state == INTERRUPTED


def test_secret_keys_never_reach_the_journal(tmp_path: Path) -> None:
    secret, public = ed25519_key()
    bare = secret.removeprefix("ed25519:")
    db = tmp_path / "j.sqlite"
    journal = Journal(db)
    run_id = journal.start_run("pool.near", "switchover", detail={"staged": secret, "public_key": public})
    with journal.step(run_id, "stage", {"key_file": {"account_id": "pool.near", "public_key": public, "secret_key": secret}}) as step:
        step.add(
            nested=[{"deep": [f"loaded {secret} from home"]}],
            bare=bare,
            upper=secret.replace("ed25519", "ED25519"),
            json_text=json.dumps({"private_key": secret}),
            raw=base58.b58decode(bare),
            private_key="anything at all",
        )
    with pytest.raises(ValueError):
        with journal.step(run_id, "activate"):
            raise ValueError(f"key {secret} rejected")
    journal.finish_run(run_id, "failed", {"why": f"mismatch {secret}"})
    journal.close()

    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("j.sqlite"))
    assert bare.encode() not in stored
    assert bare[:40].encode() not in stored
    journal = Journal(db)
    everything = json.dumps([journal.run(run_id).to_json(), [s.to_json() for s in journal.steps(run_id)]])
    assert bare not in everything and bare[:40] not in everything
    assert public in everything  # public keys are evidence and stay
    assert everything.count(REDACTED) >= 9


def test_unopenable_journal_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(JournalError) as err:
        Journal(tmp_path / "file" / "journal.sqlite")
    assert str(tmp_path / "file" / "journal.sqlite") in str(err.value)
    (tmp_path / "garbage.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(JournalError) as err:
        Journal(tmp_path / "garbage.sqlite")
    assert "garbage.sqlite" in str(err.value)


def test_time_is_recorded_in_utc(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    before = time.time()
    run_id = journal.start_run("pool.near", "switchover")
    started = journal.run(run_id).started
    assert started.tzinfo is not None and abs(started.timestamp() - before) < 3600


def test_runs_by_kind_and_since(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    with Journal(tmp_path / "j.sqlite") as journal:
        first = journal.start_run("pool.near", "switchover", "hot-swap", "val-a", "val-b")
        journal.finish_run(first, "ok")
        fence = journal.record_event("pool.near", "self-fence", "val-b", {"reason": "neard gone"})
        assert [r.id for r in journal.runs("pool.near", kinds=["self-fence"])] == [fence]
        assert [r.id for r in journal.runs("pool.near", kinds=["switchover", "self-fence"])] == [fence, first]
        assert journal.runs("pool.near", since=datetime.now(UTC) + timedelta(minutes=1)) == []
        assert len(journal.runs("pool.near", since=datetime.now(UTC) - timedelta(minutes=1))) == 2
        assert "initiator" in journal.run(fence).detail


def test_an_interrupted_run_taken_over_is_closed_as_taken_over_and_no_longer_blocks(tmp_path: Path) -> None:
    """Issue 14: the agent holding a newer lease closes an agent's interrupted promotion once its
    target is proven fenced; a later run then starts, and a run not interrupted cannot be taken over."""
    journal = Journal(tmp_path / "j.sqlite")
    run_id = journal.start_run("pool.near", "auto-failover", mode="hot-swap", from_node="val-a", to_node="val-b")
    journal.update_run(run_id, {"lease_generation": 7})
    with pytest.raises(JournalError, match="is in-progress, not interrupted"):
        journal.take_over(run_id, {"taken_over_by": "val-c"})
    with sqlite3.connect(tmp_path / "j.sqlite") as db:  # its process gone (a pid now another process's)
        db.execute("UPDATE runs SET owner_start = owner_start - 1 WHERE id = ?", (run_id,))
    with pytest.raises(RunInterrupted):
        journal.start_run("pool.near", "auto-failover")
    journal.take_over(run_id, {"taken_over_by": "val-c", "target_fenced": {"proof": "observed"}})
    run = journal.run(run_id)
    assert (run.outcome, run.state) == (TAKEN_OVER, TAKEN_OVER)
    assert run.detail["lease_generation"] == 7 and run.detail["taken_over_by"] == "val-c" and "taken_over_at" in run.detail
    assert journal.run(journal.start_run("pool.near", "auto-failover")).state == "in-progress"
    with pytest.raises(JournalError, match="is taken-over, not interrupted"):
        journal.take_over(run_id, {"taken_over_by": "val-c"})


def _open_when_released(path: str, release: Any, errors: Any) -> None:
    release.wait()
    try:
        Journal(path).close()
    except JournalError as exc:
        errors.put(str(exc))


def test_agents_opening_a_new_journal_together_all_open_it(tmp_path: Path) -> None:
    """Agents started together on one machine create the shared journal at once. SQLite refuses
    a switch to WAL it cannot make at once ("database is locked") without waiting; about one
    round in six failed an agent's start before the switch was retried."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for round_ in range(40):
        path = str(tmp_path / f"journal-{round_}.sqlite")
        release, errors = context.Event(), context.Queue()
        openers = [context.Process(target=_open_when_released, args=(path, release, errors)) for _ in range(6)]
        for opener in openers:
            opener.start()
        release.set()
        for opener in openers:
            opener.join(30)
        assert errors.empty(), errors.get()
        assert [opener.exitcode for opener in openers] == [0] * len(openers), "an opener hung or died"
