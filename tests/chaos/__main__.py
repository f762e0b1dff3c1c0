"""`python -m tests.chaos`: run chaos schedules (what `make chaos` runs).

    python -m tests.chaos [--n N] [--duration SECONDS] [--seed SEED] [--first SEED] [--figures FILE]

--seed replays one schedule (a number or a named schedule); otherwise N random schedules from
--first on (default: a seed from the clock, printed), stopping early when --duration runs out.
Every failing schedule prints its replay command; the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos.harness import LIVENESS_BOUND, Outcome, run_schedule
from tests.chaos.schedule import schedule_for


def summary(outcomes: list[Outcome]) -> str:
    """The figures the README quotes: N, the fault mix, and the invariants' results."""
    mix: dict[str, int] = {}
    for o in outcomes:
        for f in o.schedule.faults:
            mix[f.name.value] = mix.get(f.name.value, 0) + 1
    stores = {s: sum(o.schedule.store == s for o in outcomes) for s in ("sqlite", "etcd")}
    failing = [o for o in outcomes if not o.ok]
    missed = {k: sum(o.missed.get(k, 0) for o in outcomes) for k in ("blocks", "chunks", "endorsements")}
    lines = [
        f"{len(outcomes)} schedules ({stores['sqlite']} sqlite, {stores['etcd']} etcd); faults: "
        + ", ".join(f"{k} {v}" for k, v in sorted(mix.items(), key=lambda kv: -kv[1])),
        f"double signs: {sum(o.double_signs for o in outcomes)} in {sum(bool(o.double_signs) for o in outcomes)} schedule(s)",
        (f"liveness violations (nobody signed within {LIVENESS_BOUND:g}s of the last fault, no matching reason): "
         f"{sum(o.liveness_violation for o in outcomes)}"),
        f"tracebacks: {sum(bool(o.tracebacks) for o in outcomes)} schedule(s)",
        (f"worst no-signer gap: {max((o.worst_gap for o in outcomes), default=0):.1f}s; "
         f"missed duties in all: {missed['blocks']} blocks, {missed['chunks']} chunks, {missed['endorsements']} endorsements"),
        f"failing: {len(failing)}" + "".join(f"\n  {o.schedule.replay}   # {'; '.join(o.violations)[:240]}" for o in failing),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--duration", type=float, default=3600.0, help="time budget in seconds")
    parser.add_argument("--seed", default="", help="replay this one schedule")
    parser.add_argument("--first", type=int, default=None, help="the first random seed")
    parser.add_argument("--figures", type=Path, default=None, help="append each outcome as a JSON line")
    parser.add_argument("--keep", action="store_true", help="keep the directories of passing runs too")
    args = parser.parse_args()
    if args.seed:
        seeds = [args.seed]
    else:
        first = args.first if args.first is not None else int(time.time()) % 1_000_000
        print(f"seeds {first}..{first + args.n - 1} (replay all: make chaos N={args.n} FIRST={first})", flush=True)
        seeds = [str(first + i) for i in range(args.n)]
    try:
        schedules = [schedule_for(s) for s in seeds]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    outcomes: list[Outcome] = []
    start = time.monotonic()
    for schedule in schedules:
        if outcomes and time.monotonic() - start > args.duration:
            print(f"time budget of {args.duration:g}s used: stopping after {len(outcomes)} schedules", flush=True)
            break
        directory = Path(tempfile.mkdtemp(prefix=f"chaos-{schedule.seed}-"))
        outcome = run_schedule(schedule, directory)
        outcomes.append(outcome)
        print(outcome.report(), flush=True)
        if args.figures:
            with args.figures.open("a") as out:
                out.write(json.dumps(outcome.to_json()) + "\n")
        if outcome.ok and not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    print(summary(outcomes), flush=True)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
