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
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlk8s.scaling.autoscalers import Autoscaler, FixedPool, IdleTimeout, PolicyAutoscaler
from mlk8s.scaling.model import PolicyConfig, ResourceDemand, WorkerGroupSpec
from mlk8s.scaling.simulation import Simulation
from mlk8s.scaling.trace import check_trace_fits, load_trace

FIELDS_HELP = """\
Output: one JSON object.
  trace, tasks, pod_start_s, interval_s, airflow_lead_s, window_s, backlog_grace_workers,
  prewarm_s, prewarm_workers, pending_timeout_s, gpu_capacity, idle_timeout_s   the inputs
  groups                                  the worker groups: name, min, max, cpus, gpus per worker
  policies.<name>                         for each of: policy (ours), fixed_pool, idle_timeout
    worker_hours       sum over workers of (removed or end of run - placed on a node) / 3600; includes
                       the pod start, not time Pending for want of room (--gpu-capacity)
    gpu_worker_hours   the same for workers of GPU groups only
    queue_wait_s.p50   median of (task start - task submit), seconds
    queue_wait_s.p95   95th percentile of the same (linear interpolation)
    queue_wait_s.max   the longest wait
    scale_events       decisions (interval x group) that changed a group's size
    makespan_s         when the last task finished (the end of the run)
    peak_workers       most workers alive at once (pending included)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mlk8s.scaling.simulate",
        description=(__doc__ or "").split("\n\n")[0],
        epilog=FIELDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--trace", type=Path, required=True, help="CSV with header submit_s,duration_s,cpus,gpus")
    p.add_argument("--pod-start-s", type=float, default=60.0, help="seconds from requesting a worker to using it")
    p.add_argument("--interval-s", type=float, default=10.0, help="seconds between autoscaler decisions")
    p.add_argument("--cpu-min", type=int, default=0, help="CPU group min_workers")
    p.add_argument("--cpu-max", type=int, default=20, help="CPU group max_workers")
    p.add_argument("--cpu-worker-cpus", type=float, default=4.0, help="CPUs of one CPU worker")
    p.add_argument("--gpu-min", type=int, default=0, help="GPU group min_workers")
    p.add_argument("--gpu-max", type=int, default=4, help="GPU group max_workers (0: no GPU group)")
    p.add_argument("--gpu-worker-cpus", type=float, default=4.0, help="CPUs of one GPU worker")
    p.add_argument("--gpu-worker-gpus", type=float, default=1.0, help="GPUs of one GPU worker")
    p.add_argument(
        "--window-s", type=float, default=PolicyConfig.scale_down_window_s, help="our policy's scale_down_window_s"
    )
    p.add_argument(
        "--airflow-lead-s",
        type=float,
        default=30.0,
        help="seconds a task sits in Airflow's queue (seen by our policy only) before Ray sees its work",
    )
    p.add_argument(
        "--backlog-grace-workers",
        type=int,
        default=PolicyConfig.backlog_grace_workers,
        help="our policy's backlog_grace_workers",
    )
    p.add_argument(
        "--dagrun-period-s",
        type=float,
        default=None,
        help="the DAG behind the trace runs every this many seconds (gives the policy next_dagrun_run_after)",
    )
    p.add_argument("--dagrun-first-s", type=float, default=0.0, help="time of its first run (with --dagrun-period-s)")
    p.add_argument("--prewarm-s", type=float, default=0.0, help="our policy pre-warms this long before each run")
    p.add_argument("--prewarm-workers", type=int, default=0, help="CPU workers to have ready for each run")
    p.add_argument(
        "--pending-timeout-s",
        type=float,
        default=PolicyConfig.pending_timeout_s,
        help="our policy's pending_timeout_s: a group with a pod Pending this long stops growing",
    )
    p.add_argument(
        "--gpu-capacity",
        type=int,
        default=None,
        help="at most this many GPU pods fit the cluster at once; the rest stay Pending (default: no limit)",
    )
    p.add_argument("--idle-timeout-s", type=float, default=60.0, help="idle_timeout baseline: idleTimeoutSeconds")
    return p


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
    )


def report(args: argparse.Namespace) -> dict[str, Any]:
    """Run the three policies on ``args.trace``; the JSON object that ``main`` prints (see FIELDS_HELP)."""
    for name in ("pod_start_s", "window_s", "idle_timeout_s", "airflow_lead_s", "prewarm_s", "pending_timeout_s"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"--{name.replace('_', '-')}={value}: pass seconds >= 0")
    if args.interval_s <= 0 or not math.isfinite(args.interval_s):
        raise ValueError(f"--interval-s={args.interval_s}: pass seconds > 0")
    if args.dagrun_period_s is not None and args.dagrun_period_s <= 0:
        raise ValueError(f"--dagrun-period-s={args.dagrun_period_s}: pass seconds > 0, or leave it out")
    if args.prewarm_workers < 0:
        raise ValueError(f"--prewarm-workers={args.prewarm_workers}: pass a count >= 0")
    groups = groups_from_args(args)
    config = config_from_args(args)
    tasks = load_trace(args.trace)
    check_trace_fits(tasks, groups)
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
