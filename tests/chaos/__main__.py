"""`python -m tests.chaos`: run chaos schedules (what `make chaos` runs).

    python -m tests.chaos [--n N] [--duration SECONDS] [--seed SEED] [--first SEED] [--figures FILE]
    python -m tests.chaos --summarise FILE

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
from typing import Any

from tests.chaos.harness import LIVENESS_BOUND, Outcome, run_schedule
from tests.chaos.schedule import schedule_for


def summary(figures: list[dict[str, Any]]) -> str:
    """The figures the README quotes, from outcomes' JSON (Outcome.to_json): N, the fault mix,
    and the invariants' results."""
    mix: dict[str, int] = {}
    for f in figures:
        for name in f["faults"]:
            mix[name] = mix.get(name, 0) + 1
    stores = {s: sum(f["store"] == s for f in figures) for s in ("sqlite", "etcd")}
    failing = [f for f in figures if not f["ok"]]
    missed = {k: sum(f["missed"].get(k, 0) for f in figures) for k in ("blocks", "chunks", "endorsements")}
    kinds = {kind: sum(any(v.startswith(kind) for v in f["violations"]) for f in figures) for kind in ("safety", "liveness", "traceback", "harness")}
    reasons = [f["status_reason"] for f in figures if f["signed_again_after"] is None]
    fenced = [f for f in figures if f.get("fence_command")]
    lines = [
        f"{len(figures)} schedules ({stores['sqlite']} sqlite, {stores['etcd']} etcd); faults: "
        + ", ".join(f"{k} {v}" for k, v in sorted(mix.items(), key=lambda kv: -kv[1])),
        (f"with a fence_command: {len(fenced)} schedules, {sum(f.get('neard_first_wakes', 0) for f in figures)} neard-first wakes "
         f"(drawn only with one), {sum(len(f.get('powered_off', [])) for f in figures)} machines powered off in "
         f"{sum(bool(f.get('powered_off')) for f in figures)} schedules"),
        f"double signs: {sum(f['double_signs'] for f in figures)} in {kinds['safety']} schedule(s)",
        (f"liveness violations (nobody signed within {LIVENESS_BOUND:g}s of the last fault, no matching reason): "
         f"{kinds['liveness']}; nobody signed in {len(reasons)}, status saying: {sorted(set(map(str, reasons)))}"),
        f"tracebacks: {kinds['traceback']} schedule(s); harness errors: {kinds['harness']}",
        (f"worst no-signer gap: {max((f['worst_gap'] for f in figures), default=0):.1f}s; "
         f"missed duties in all: {missed['blocks']} blocks, {missed['chunks']} chunks, {missed['endorsements']} endorsements"),
        f"failing: {len(failing)}" + "".join(f"\n  {f['replay']}   # {'; '.join(f['violations'])[:240]}" for f in failing),
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
    parser.add_argument("--summarise", type=Path, default=None, metavar="FILE", help="only print the summary of a --figures file")
    args = parser.parse_args()
    if args.summarise:
        print(summary([json.loads(line) for line in args.summarise.read_text().splitlines() if line.strip()]))
        return 0
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
    print(summary([o.to_json() for o in outcomes]), flush=True)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
