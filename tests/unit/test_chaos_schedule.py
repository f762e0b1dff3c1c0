"""The chaos suite's pure parts: schedules from seeds, and the judgements on a run's figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import Sample, reason_from_status, tracebacks_in, worst_gap
from tests.chaos.schedule import ETCD_FAULTS, NAMED, random_schedule, schedule_for


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
