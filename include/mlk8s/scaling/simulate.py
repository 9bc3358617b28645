"""Replay a task trace against the scaling policy and two baselines; print one JSON object of figures.

``python -m mlk8s.scaling.simulate --trace TRACE.csv [--pod-start-s N]``

The trace format is :mod:`mlk8s.scaling.trace`'s, the replay :mod:`mlk8s.scaling.simulation`'s. The
autoscalers compared (:mod:`mlk8s.scaling.autoscalers`), each on the same trace and cluster:

- ``policy``: :func:`mlk8s.scaling.decide`, fed Ray's pending demand by shape, each worker's free room, and
  Airflow's task counts as one queue snapshot per task shape (as if each shape had its own Airflow pool). A
  task is in Airflow's queue ``--airflow-lead-s`` before Ray sees its work (scheduling, executor and driver
  pod start), so the policy can start workers earlier than a Ray-only autoscaler; ``--airflow-lead-s 0``
  removes that advantage. With ``--dagrun-period-s`` it also gets ``next_dagrun_run_after`` and pre-warms
  ``--prewarm-workers`` CPU workers ``--prewarm-s`` ahead;
- ``fixed_pool``: every group at its max for the whole run (started before the trace, no pod start);
- ``idle_timeout``: like KubeRay's default autoscaler: launch for pending demand, remove a worker once it
  has been idle ``--idle-timeout-s`` seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from mlk8s.scaling.autoscalers import Autoscaler, FixedPool, IdleTimeout, PolicyAutoscaler
from mlk8s.scaling.model import PolicyConfig, ResourceDemand, WorkerGroupSpec
from mlk8s.scaling.simulation import Simulation
from mlk8s.scaling.trace import Task, check_trace_fits, load_trace

FIELDS_HELP = """\
Output: one JSON object.
  trace, tasks, pod_start_s, interval_s, airflow_lead_s, window_s, backlog_grace_workers,
  prewarm_s, prewarm_workers, pending_timeout_s, gpu_capacity, idle_timeout_s,
  warm_pool, cold_start_cost_s            the inputs
  groups                                  the worker groups: name, min, max, cpus, gpus per worker
  policies.<name>                         for each of: policy (ours), fixed_pool, idle_timeout
    worker_hours       sum over workers of (removed or end of run - placed on a node) / 3600; includes
                       the pod start, not time Pending for want of room (--gpu-capacity)
    gpu_worker_hours   the same for workers of GPU groups only
    queue_wait_s.p50   median of (task start - task submit), seconds
    queue_wait_s.p95   95th percentile of the same (linear interpolation)
    queue_wait_s.max   the longest wait
    scale_events       decisions (interval x group) that changed a group's size
    makespan_s         from when Airflow sees the first task to when the last one finishes
    peak_workers       most workers alive at once (pending included)
Bad input (a flag out of range, a trace that cannot be replayed) is one line on stderr and exit status 2.
"""


DAY = 86400.0
WEEK = 7 * DAY
#: At most this many DAG runs in the trace's span (each run is a decision or two when the policy pre-warms).
MAX_DAGRUNS = 100_000


@dataclass(frozen=True)
class Flag:
    """One numeric flag: its type, default and the range that makes sense, which the parser enforces.

    Ranges keep every run finite and meaningful: a run costs steps per task and per decision that changes
    something, so what must be bounded is what multiplies decisions (the interval, the DAG period) and
    what allocates workers (the group sizes).
    """

    name: str
    kind: type[int] | type[float]
    default: float | None
    low: float
    high: float
    help: str
    above_low: bool = False  # the value must be > low rather than >= low

    @property
    def dest(self) -> str:
        return self.name.removeprefix("--").replace("-", "_")

    def check(self, value: float | None) -> None:
        if value is None:
            return
        ok = (value > self.low if self.above_low else value >= self.low) and value <= self.high  # NaN fails
        if not ok:
            what = "an integer" if self.kind is int else "a number"
            low = f"above {self.low:g}" if self.above_low else f"from {self.low:g}"
            raise ValueError(f"{self.name}={value!r} is out of range; pass {what} {low} to {self.high:g}")


FLAGS: tuple[Flag, ...] = (
    Flag("--pod-start-s", float, 60.0, 0, DAY, "seconds from requesting a worker to using it"),
    Flag("--interval-s", float, 10.0, 1, DAY, "seconds between autoscaler decisions (a sensor cycle: >= 1)"),
    Flag("--cpu-min", int, 0, 0, 1000, "CPU group min_workers"),
    Flag("--cpu-max", int, 20, 0, 1000, "CPU group max_workers"),
    Flag("--cpu-worker-cpus", float, 4.0, 0, 1024, "CPUs of one CPU worker", above_low=True),
    Flag("--gpu-min", int, 0, 0, 1000, "GPU group min_workers"),
    Flag("--gpu-max", int, 4, 0, 1000, "GPU group max_workers (0: no GPU group)"),
    Flag("--gpu-worker-cpus", float, 4.0, 0, 1024, "CPUs of one GPU worker", above_low=True),
    Flag("--gpu-worker-gpus", float, 1.0, 0, 64, "GPUs of one GPU worker", above_low=True),
    Flag("--window-s", float, PolicyConfig.scale_down_window_s, 0, WEEK, "our policy's scale_down_window_s"),
    Flag(
        "--airflow-lead-s",
        float,
        30.0,
        0,
        DAY,
        "seconds a task sits in Airflow's queue (seen by our policy only) before Ray sees its work",
    ),
    Flag(
        "--backlog-grace-workers",
        int,
        PolicyConfig.backlog_grace_workers,
        0,
        1000,
        "our policy's backlog_grace_workers",
    ),
    Flag(
        "--dagrun-period-s",
        float,
        None,
        60,
        366 * DAY,
        "the DAG behind the trace runs every this many seconds (gives the policy next_dagrun_run_after)",
    ),
    Flag("--dagrun-first-s", float, 0.0, -1e10, 1e10, "time of its first run (with --dagrun-period-s)"),
    Flag("--prewarm-s", float, 0.0, 0, WEEK, "our policy pre-warms this long before each run"),
    Flag("--prewarm-workers", int, 0, 0, 1000, "CPU workers to have ready for each run"),
    Flag(
        "--pending-timeout-s",
        float,
        PolicyConfig.pending_timeout_s,
        0,
        WEEK,
        "our policy's pending_timeout_s: a group with a pod Pending this long stops growing",
    ),
    Flag(
        "--gpu-capacity",
        int,
        None,
        1,
        1000,
        "at most this many GPU pods fit the cluster at once; the rest stay Pending (default: no limit)",
    ),
    Flag("--idle-timeout-s", float, 60.0, 0, WEEK, "idle_timeout baseline: idleTimeoutSeconds"),
    Flag(
        "--cold-start-cost-s",
        float,
        PolicyConfig.cold_start_cost_s,
        0,
        DAY,
        "our policy's cold_start_cost_s: idle-worker-seconds one cold start is worth to its warm pool",
    ),
)


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line (the flag and the fix), exit status 2, as for every refused value."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m mlk8s.scaling.simulate",
        description=(__doc__ or "").split("\n\n")[0],
        epilog=FIELDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--trace", type=Path, required=True, help="CSV with header submit_s,duration_s,cpus,gpus")
    for f in FLAGS:
        span = f"{'>' if f.above_low else ''}{f.low:g}..{f.high:g}"
        p.add_argument(f.name, type=f.kind, default=f.default, help=f"{f.help} [{span}]")
    p.add_argument(
        "--warm-pool",
        choices=("on", "off"),
        default="on" if PolicyConfig.warm_pool else "off",
        help="our policy's adaptive warm pool (off: the scale-down window alone lets idle workers go)",
    )
    return p


def check_args(args: argparse.Namespace) -> None:
    """Refuse out-of-range flags and flags that contradict each other, naming the flag and the fix."""
    for f in FLAGS:
        f.check(getattr(args, f.dest))
    if args.dagrun_period_s is not None and args.prewarm_s >= args.dagrun_period_s:
        raise ValueError(
            f"--prewarm-s={args.prewarm_s:g} is not shorter than --dagrun-period-s={args.dagrun_period_s:g}; "
            "pre-warm for less than the time between runs"
        )


def check_dagruns(args: argparse.Namespace, tasks: Sequence[Task]) -> None:
    """A DAG period so short that the trace spans more than MAX_DAGRUNS runs is refused (each is a decision)."""
    if args.dagrun_period_s is None:
        return
    runs = (tasks[-1].submit_s - tasks[0].submit_s) / args.dagrun_period_s
    if runs > MAX_DAGRUNS:
        raise ValueError(
            f"--dagrun-period-s={args.dagrun_period_s:g} gives {runs:.3g} DAG runs over the trace's "
            f"{tasks[-1].submit_s - tasks[0].submit_s:g} s; pass a period of at least "
            f"{(tasks[-1].submit_s - tasks[0].submit_s) / MAX_DAGRUNS:.3g} s (at most {MAX_DAGRUNS:,} runs)"
        )


def groups_from_args(args: argparse.Namespace) -> list[WorkerGroupSpec]:
    groups = [WorkerGroupSpec("cpu", args.cpu_min, args.cpu_max, args.cpu_worker_cpus)]
    if args.gpu_max > 0:
        groups.append(WorkerGroupSpec("gpu", args.gpu_min, args.gpu_max, args.gpu_worker_cpus, args.gpu_worker_gpus))
    return groups


def config_from_args(args: argparse.Namespace) -> PolicyConfig:
    prewarm: tuple[ResourceDemand, ...] = ()
    if args.prewarm_workers > 0:
        prewarm = (ResourceDemand(cpus=args.cpu_worker_cpus, count=args.prewarm_workers),)
    return PolicyConfig(
        scale_down_window_s=args.window_s,
        backlog_grace_workers=args.backlog_grace_workers,
        prewarm_s=args.prewarm_s,
        prewarm_demand=prewarm,
        pending_timeout_s=args.pending_timeout_s,
        warm_pool=args.warm_pool == "on",
        cold_start_cost_s=args.cold_start_cost_s,
    )


def report(args: argparse.Namespace) -> dict[str, Any]:
    """Run the three policies on ``args.trace``; the JSON object that ``main`` prints (see FIELDS_HELP)."""
    check_args(args)
    groups = groups_from_args(args)
    config = config_from_args(args)
    tasks = load_trace(args.trace)
    check_trace_fits(tasks, groups)
    check_dagruns(args, tasks)
    schedule = None
    if args.dagrun_period_s is not None:
        schedule = (args.dagrun_first_s, args.dagrun_period_s)
    runs: dict[str, tuple[Autoscaler, Callable[[WorkerGroupSpec], int]]] = {
        "policy": (PolicyAutoscaler(config), lambda g: g.min_workers),
        "fixed_pool": (FixedPool(), lambda g: g.max_workers),
        "idle_timeout": (IdleTimeout(args.idle_timeout_s), lambda g: g.min_workers),
    }
    out: dict[str, Any] = {
        "trace": str(args.trace),
        "tasks": len(tasks),
        "pod_start_s": args.pod_start_s,
        "interval_s": args.interval_s,
        "airflow_lead_s": args.airflow_lead_s,
        "window_s": args.window_s,
        "backlog_grace_workers": args.backlog_grace_workers,
        "prewarm_s": args.prewarm_s,
        "prewarm_workers": args.prewarm_workers,
        "pending_timeout_s": args.pending_timeout_s,
        "gpu_capacity": args.gpu_capacity,
        "idle_timeout_s": args.idle_timeout_s,
        "warm_pool": args.warm_pool,
        "cold_start_cost_s": args.cold_start_cost_s,
        "groups": [
            {
                "name": g.name,
                "min": g.min_workers,
                "max": g.max_workers,
                "cpus": g.cpus_per_worker,
                "gpus": g.gpus_per_worker,
            }
            for g in groups
        ],
        "policies": {},
    }
    for name, (autoscaler, initial) in runs.items():
        result = Simulation(
            tasks,
            groups,
            autoscaler,
            pod_start_s=args.pod_start_s,
            interval_s=args.interval_s,
            airflow_lead_s=args.airflow_lead_s,
            dagrun_schedule=schedule,
            gpu_capacity=args.gpu_capacity,
            initial=initial,
        ).run()
        out["policies"][name] = result.to_json()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = report(args)
    except ValueError as e:  # TraceError and PolicyInputError included: bad input, named, before any work
        parser.error(str(e))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
