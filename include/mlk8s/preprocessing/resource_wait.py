"""A bounded wait for steps that ask for more than any Ray node has (``num_cpus: 64`` on a pool of 4-CPU nodes).

Ray queues such a request for ever, and the driver would wait with it. While the job runs, a watchdog thread
looks at the alive nodes every second; when a step still fits no node after ``wait_s``, it stops the driver's
main thread with :class:`ResourceWaitError` naming the step. A pool that grows a big enough node in time
lets the job go on. Ray has no such bound of its own for Ray Data's actor pools.
"""

from __future__ import annotations

import _thread
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from mlk8s.preprocessing.errors import ResourceWaitError
from mlk8s.preprocessing.spec import PipelineSpec, Step

logger = logging.getLogger(__name__)

#: The signal whose Python handler the watchdog runs in the main thread (no OS signal is sent).
WAKE_SIGNAL = signal.SIGUSR2

Demand = dict[str, float]


def step_demands(spec: PipelineSpec) -> list[tuple[Step, Demand]]:
    """What each step with its own resource request asks one Ray worker for (the actor steps' num_cpus and
    num_gpus; maps and filters run with one CPU)."""
    demands = []
    for step in spec.steps:
        if step.kind != "actor" or (step.num_cpus is None and step.num_gpus is None):
            continue
        demand = {"CPU": step.num_cpus if step.num_cpus is not None else 1.0}
        if step.num_gpus:
            demand["GPU"] = step.num_gpus
        demands.append((step, demand))
    return demands


def unfit(demands: list[tuple[Step, Demand]], nodes: list[Demand]) -> list[tuple[Step, Demand]]:
    """The demands no single node can hold (a Ray worker runs on one node)."""
    return [
        (step, demand)
        for step, demand in demands
        if not any(all(node.get(name, 0.0) >= amount for name, amount in demand.items()) for node in nodes)
    ]


def alive_nodes() -> list[Demand]:
    import ray

    return [{k: float(v) for k, v in node.get("Resources", {}).items()} for node in ray.nodes() if node.get("Alive")]


def describe(step: Step, demand: Demand, nodes: list[Demand]) -> str:
    largest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)), default={})
    asks = ", ".join(f"{k}={v:g}" for k, v in demand.items())
    has = ", ".join(f"{k}={largest.get(k, 0.0):g}" for k in demand)
    return f"{step.where} asks for {asks} per worker, but no Ray node has that much (the largest has {has})"


class ResourceWatch:
    """Context manager around the Ray job: raises :class:`ResourceWaitError` in the main thread on a timeout."""

    def __init__(
        self,
        spec: PipelineSpec,
        wait_s: float,
        *,
        poll_s: float = 1.0,
        nodes: Callable[[], list[Demand]] = alive_nodes,
    ) -> None:
        self.demands = step_demands(spec)
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.nodes = nodes
        self.message: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="mlk8s-resource-wait", daemon=True)
        self._previous: Any = None

    def __enter__(self) -> ResourceWatch:
        if self.demands:
            self._previous = signal.signal(WAKE_SIGNAL, self._raise)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
        if self._previous is not None:
            signal.signal(WAKE_SIGNAL, self._previous)

    def _raise(self, signum: int, frame: object) -> None:
        raise ResourceWaitError(self.message or "a step's resources did not fit the Ray pool")

    def _watch(self) -> None:
        deadline = time.monotonic() + self.wait_s
        warned = False
        while not self._stop.is_set():
            nodes = self.nodes()
            missing = unfit(self.demands, nodes)
            if not missing:
                deadline = time.monotonic() + self.wait_s  # it fits now; a node that goes away starts a new wait
                warned = False
            elif time.monotonic() >= deadline:
                self.message = (
                    f"{describe(*missing[0], nodes)}; waited {self.wait_s:g} s for one (--resource-wait-s). Lower "
                    "the step's num_cpus/num_gpus, or give the pool a node that large"
                )
                _thread.interrupt_main(WAKE_SIGNAL)
                return
            elif not warned:
                logger.warning("%s: waiting up to %g s for one", describe(*missing[0], nodes), self.wait_s)
                warned = True
            self._stop.wait(self.poll_s)
