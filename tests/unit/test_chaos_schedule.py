"""The chaos suite's pure parts: schedules from seeds, and the judgements on a run's figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import Sample, reason_from_status, tracebacks_in, worst_gap
from tests.chaos.schedule import ETCD_FAULTS, NAMED, NEARD_FIRST, FaultName, random_schedule, schedule_for


def test_a_seed_replays_the_same_schedule() -> None:
    assert [random_schedule(s) for s in range(50)] == [random_schedule(s) for s in range(50)]
    assert len({random_schedule(s).describe() for s in range(50)}) == 50


@pytest.mark.parametrize("seed", range(100))
def test_random_schedules_stay_in_their_ranges(seed: int) -> None:
    schedule = random_schedule(seed)
    assert 1 <= len(schedule.faults) <= 4
    assert [f.at for f in schedule.faults] == sorted(f.at for f in schedule.faults)
    assert all(1.0 <= f.at <= 12.0 and f.duration <= 10.0 for f in schedule.faults)
    if schedule.store == "sqlite":
        assert not any(f.name in ETCD_FAULTS for f in schedule.faults)


def test_only_schedules_with_a_fence_command_wake_a_frozen_node_neard_first() -> None:
    """Issue 11's residual risk: without a fence_command nothing stops a neard that wakes before
    its guard, so a random schedule draws a neard-first wake only with one; about half have one."""
    schedules = [random_schedule(s) for s in range(400)]
    fenced = [s for s in schedules if s.fence_command]
    assert 150 <= len(fenced) <= 250
    assert all(s.fence_command for s in schedules if s.neard_first_wakes)
    assert sum(s.neard_first_wakes for s in fenced) >= 5
    assert all(f.option == "together" for s in schedules if not s.fence_command for f in s.faults if f.name is FaultName.FREEZE_NODE)
    # The fence_command has a generator of its own: a seed's faults are those it drew before it,
    # neard-first wakes aside (seed 2047: the leader frozen 8.4 s and woken neard first).
    assert random_schedule(2047).fence_command and random_schedule(2047).faults[0].option == NEARD_FIRST
    assert "fence_command" in random_schedule(2047).describe()


def test_the_named_neard_first_wakes_differ_only_in_the_fence_command() -> None:
    fenced, unfenced = NAMED["neard-first-fenced"], NAMED["neard-first-unfenced"]
    assert fenced.faults == unfenced.faults and fenced.neard_first_wakes == 1
    assert fenced.fence_command and not unfenced.fence_command


def test_seeds_are_numbers_or_names() -> None:
    assert schedule_for("two-signers") is NAMED["two-signers"]
    assert schedule_for("17") == random_schedule(17)
    with pytest.raises(ValueError, match="give a number or one of"):
        schedule_for("seventeen")


def test_status_reasons() -> None:
    assert reason_from_status({"paused": True, "leader": None, "members": []}) == "paused"
    down = [{"name": "val-b", "role": "standby", "healthy": False}, {"name": "val-a", "role": "fenced", "healthy": False}]
    assert reason_from_status({"paused": False, "leader": None, "members": down}) == "no ready standby"
    ready = [{"name": "val-b", "role": "standby", "healthy": True}]
    assert reason_from_status({"paused": False, "leader": None, "members": ready}) is None
    assert reason_from_status(None) is None


def test_worst_gap_is_the_longest_time_without_a_new_signature() -> None:
    samples = [Sample(t, 0, last, "val-a") for t, last in ((0.0, 1), (1.0, 2), (2.0, 2), (4.5, 2), (5.0, 3), (5.5, 3))]
    assert worst_gap(samples) == 3.5
    assert worst_gap([]) == 0.0


def test_tracebacks_are_found_in_every_log_under_the_run(tmp_path: Path) -> None:
    (tmp_path / "net" / "val-a").mkdir(parents=True)
    (tmp_path / "net" / "agent-val-a.log").write_text("started\nall fine\n")
    (tmp_path / "net" / "val-a" / "neard.log").write_text(
        "INFO stopping\nTraceback (most recent call last):\n  File \"x.py\", line 1, in f\n    g()\nKeyError: 'height'\nINFO after\n")
    assert tracebacks_in(tmp_path) == ["net/val-a/neard.log: KeyError: 'height'"]
