"""Write the task traces that benchmarks/scaling_simulate.py replays (seeded, so every run writes the same).

``python benchmarks/scaling_traces.py [--out benchmarks/traces]``

Four days in the life of a shared Ray pool (4-CPU CPU workers, 1-GPU workers): a steady stream, business
hours with fan-out bursts, a quiet day with a nightly batch spike, and a trickle of ad-hoc runs triggered
from the UI. Durations are log-normal (most tasks are short, a few run for many minutes), shapes are mostly
1 CPU with some 2-CPU and some 1-GPU tasks.
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable
from pathlib import Path

HEADER = "submit_s,duration_s,cpus,gpus"
HOUR = 3600.0
Row = tuple[float, float, float, float]


def _task(rng: random.Random, submit: float, median_s: float = 60.0, gpu_share: float = 0.05) -> Row:
    r = rng.random()
    if r < gpu_share:
        cpus, gpus, median = 2.0, 1.0, median_s * 2
    elif r < gpu_share + 0.10:
        cpus, gpus, median = 2.0, 0.0, median_s
    else:
        cpus, gpus, median = 1.0, 0.0, median_s
    duration = min(30 * 60.0, max(1.0, rng.lognormvariate(math.log(median), 0.8)))
    return (round(submit, 1), round(duration, 1), cpus, gpus)


def _poisson(rng: random.Random, start: float, end: float, rate: Callable[[float], float]) -> list[float]:
    """Arrival times of a Poisson process with a piecewise rate (thinning against the rate's maximum)."""
    peak = max(rate(start + i * 60.0) for i in range(int((end - start) / 60.0) + 1))
    out: list[float] = []
    t = start
    while True:
        t += rng.expovariate(peak)
        if t >= end:
            return out
        if rng.random() < rate(t) / peak:
            out.append(t)


def steady(rng: random.Random) -> list[Row]:
    """Eight hours of a constant 0.2 tasks/s: ~5,800 tasks, about a third of the pool busy on average."""
    return [_task(rng, t) for t in _poisson(rng, 0.0, 8 * HOUR, lambda t: 0.2)]


def business(rng: random.Random) -> list[Row]:
    """A day: quiet nights, a working-day stream from 9:00 to 17:00, and ~10 fan-out bursts of 100-250 tasks."""

    def rate(t: float) -> float:
        return 0.08 if 9 * HOUR <= t % (24 * HOUR) < 17 * HOUR else 0.005

    rows = [_task(rng, t) for t in _poisson(rng, 0.0, 24 * HOUR, rate)]
    t = 9 * HOUR + rng.uniform(0, 1800)
    while t < 17 * HOUR:
        burst = rng.randint(100, 250)
        rows += [_task(rng, t + rng.uniform(0, 60.0), median_s=45.0) for _ in range(burst)]
        t += rng.uniform(1800, 4800)
    return rows


def nightly(rng: random.Random) -> list[Row]:
    """A quiet day (0.005 tasks/s) and a nightly batch at 02:00 fanning out 2,000 tasks within 5 minutes."""
    rows = [_task(rng, t) for t in _poisson(rng, 0.0, 24 * HOUR, lambda t: 0.005)]
    spike = 2 * HOUR
    rows += [_task(rng, spike + rng.uniform(0, 300.0), median_s=90.0, gpu_share=0.08) for _ in range(2000)]
    return rows


def adhoc(rng: random.Random) -> list[Row]:
    """A day of runs triggered by hand from the UI: people iterate in sessions (a run every one to five
    minutes, one to three pool tasks each) with pauses of about half an hour between sessions from 8:00 to
    18:00, and a stray run every hour or two at night: ~150 tasks in ~100 runs, minutes apart, never a burst."""
    rows: list[Row] = []
    t = 8 * HOUR + rng.uniform(0, 900)
    while t < 18 * HOUR:
        for _ in range(rng.randint(3, 8)):  # one session
            rows += [_task(rng, t + rng.uniform(0, 5.0), median_s=90.0) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
            t += rng.uniform(60, 300)
        t += rng.expovariate(1 / 1800)
    night = [x for x in _poisson(rng, 0.0, 24 * HOUR, lambda x: 1 / 5400) if not 8 * HOUR <= x < 18 * HOUR]
    rows += [_task(rng, x, median_s=90.0) for x in night]
    return rows


TRACES: dict[str, Callable[[random.Random], list[Row]]] = {
    "steady": steady,
    "business": business,
    "nightly": nightly,
    "adhoc": adhoc,
}
#: Each trace's seed (fixed per name, so adding a trace leaves the others byte for byte the same).
SEEDS = {"business": 1, "nightly": 2, "steady": 3, "adhoc": 4}


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in sorted(TRACES.items()):
        rows = sorted(make(random.Random(SEEDS[name])))
        path = out / f"{name}.csv"
        with path.open("w") as f:
            f.write(HEADER + "\n")
            for row in rows:
                f.write(",".join(f"{v:g}" for v in row) + "\n")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "traces")
    for path in write(parser.parse_args().out):
        print(path, sum(1 for _ in path.open()) - 1, "tasks")


if __name__ == "__main__":
    main()
