"""A move run through an agent prints as one run here; an agent's error is one sentence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from near_failover.api.client import api_error_text
from near_failover.cli import render
from near_failover.cli.render import print_agent_move, say_step
from near_failover.procedures.move import MoveResult


def test_an_agent_result_prints_steps_seconds_and_missed_duties(capsys) -> None:
    direct = MoveResult(kind="failover", mode="hot-swap", source="val-b", target="val-c", ok=True, outcome="ok", run_id=7,
                        seconds={"fence": 1.25, "activate": 0.5, "total": 2.0}, missed={"blocks": 1, "chunks": 2, "endorsements": 3},
                        notes=["val-b stays fenced"])
    render.print_move(direct)
    here = capsys.readouterr().out
    print_agent_move("val-c", MoveResult.model_validate(direct.to_json()))  # as the agent's answer arrives
    through = capsys.readouterr().out
    assert through == "run 7 was run by val-c's agent\n" + here
    assert "seconds: fence 1.25, activate 0.50, total 2.00" in here and "missed duties: blocks 1, chunks 2, endorsements 3" in here


def test_api_errors_are_one_sentence_never_a_raw_object() -> None:
    assert api_error_text({"error": "move-running", "message": "a move is running"}) == "a move is running"
    assert api_error_text({"detail": "Not authenticated"}) == "Not authenticated"
    assert api_error_text({"detail": [{"msg": "field required"}]}) == "field required"
    assert api_error_text({"unexpected": 1}) == "no reason given"


def test_a_long_step_says_it_is_still_running(capsys, monkeypatch) -> None:
    monkeypatch.setattr(render, "STILL_RUNNING_EVERY", 10.0)
    started = datetime.now(UTC) - timedelta(seconds=25)
    step = {"id": 1, "name": "activate", "started": started.isoformat(), "ended": None, "outcome": None, "evidence": {"phase": "loading memtries"}}
    shown: dict[int, str | None] = {}
    say_step(step, shown)
    say_step(step, shown)  # the same 10 s period: said once
    ended = {**step, "ended": (started + timedelta(seconds=30)).isoformat(), "outcome": "ok"}
    say_step(ended, shown)
    say_step(ended, shown)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["activate...", "activate: still running after 25s (loading memtries)", "activate: ok in 30.00s"]
