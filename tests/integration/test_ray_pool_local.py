"""The local actuator on a real local Ray cluster: queued work adds a worker, a busy worker survives even a
removal decided on a stale view, and an idle pool shrinks after the scale-down window.

Uses the session's shared cluster (head 1 CPU + one unlabelled 1-CPU worker, which the sensor ignores: it
sizes only nodes of its own groups). The work asks for 2 CPUs, so nothing but a worker of our 2-CPU group
can run it: it stays pending until the loop adds one.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from mlk8s.local_ray import LocalRayCluster
from mlk8s.scaling import Decision, PolicyState, QueueSnapshot, Worker
from mlk8s_airflow.actuators.local import register_cluster, unregister_cluster
from mlk8s_airflow.triggers.ray_pool import RayPoolLoop, RayPoolSettings

pytest_plugins = ["tests.integration.ray_fixtures"]
pytestmark = [pytest.mark.slow, pytest.mark.ray]

GROUP = {"name": "big", "min_workers": 0, "max_workers": 2, "cpus_per_worker": 2}


class QueueFedLoop(RayPoolLoop):
    """The loop with the Airflow queue given by the test (the REST reader has its own test against the
    real API app); everything else is real: Ray's demand from the GCS, real nodes started and stopped."""

    queue = QueueSnapshot()

    def read_queue(self, now: float) -> list[QueueSnapshot]:
        return [self.queue]


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_queued_work_adds_a_worker_a_busy_one_survives_a_stale_removal_and_an_idle_pool_shrinks(
    ray_cluster: LocalRayCluster, ray_client: Any
) -> None:
    ray = ray_client
    register_cluster(ray_cluster)
    settings = RayPoolSettings(
        groups=(GROUP,),
        actuator="local",
        ray_address=ray_cluster.address,
        policy={"scale_down_window_s": 30.0, "cpus_per_task": 2.0},
    )
    loop = QueueFedLoop(settings, run_key="test/local")
    before = set(ray_cluster.worker_ids())
    try:

        @ray.remote(num_cpus=2)
        def work(seconds: float) -> str:
            time.sleep(seconds)
            return ray.get_runtime_context().get_node_id()

        ref = work.remote(6.0)
        loop.queue = QueueSnapshot(queued=0, running=1)  # the Airflow task that submitted it is running
        wait_for(lambda: loop.ray_reader.read().pending_requests >= 1, 30, "Ray to report the pending task")

        t0 = time.time()
        grow = loop.cycle(PolicyState(), seq=1, now=t0)
        assert [(d.current, d.target) for d in grow.decisions] == [(0, 1)], grow.decisions[0].reason
        assert grow.applied[0].applied
        added = set(ray_cluster.worker_ids()) - before
        assert len(added) == 1
        (node_id,) = added

        # A removal decided on a stale view ("idle") while the worker runs the work: the GCS refuses to
        # drain a busy node, so the actuator keeps it.
        wait_for(lambda: any(n.busy for n in loop.ray_reader.read().nodes), 30, "the worker to get busy")
        stale = [Worker(id=node_id, group="big", busy=False, started_at=0.0, idle_since=0.0)]
        kept = loop.actuator.apply(
            [Decision("big", current=1, target=0, remove=(node_id,), reason="stale")], stale, "stale-1"
        )
        assert not kept[0].applied and "kept" in kept[0].note
        assert node_id in ray_cluster.worker_ids()
        assert ray.get(ref, timeout=60) == node_id  # the new worker ran the queued work to the end

        # Drained: the worker is idle and nothing is queued. Within the scale-down window it stays ...
        loop.queue = QueueSnapshot()
        wait_for(lambda: all(not n.busy for n in loop.ray_reader.read().nodes), 30, "the worker to go idle")
        hold = loop.cycle(grow.state, seq=2, now=t0 + 10)
        assert [(d.current, d.target) for d in hold.decisions] == [(1, 1)]
        assert "window" in hold.decisions[0].reason, hold.decisions[0].reason
        # ... and after the window it goes.
        shrink = loop.cycle(hold.state, seq=3, now=t0 + 45)
        assert [(d.current, d.target, d.remove) for d in shrink.decisions] == [(1, 0, (node_id,))]
        assert node_id not in ray_cluster.worker_ids()
        assert node_id not in {n.node_id for n in ray_cluster.nodes()}
        assert shrink.point["pool"] == 1 and shrink.point["target"] == 0
    finally:
        for extra in set(ray_cluster.worker_ids()) - before:
            ray_cluster.remove_worker(extra, force=True)
        unregister_cluster(ray_cluster)
