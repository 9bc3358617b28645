"""The local actuator on a real local Ray pool: queued work adds a worker, a busy worker survives even a
removal decided on a stale view, and an idle pool shrinks after the scale-down window.

The session's shared cluster (head 1 CPU + one unlabelled 1-CPU worker, which the loop ignores: it sizes only
nodes of its own groups) is served as a local pool from a state dir of this test, as ``make up``'s pool is. The
work asks for 2 CPUs, so nothing but a worker of our 2-CPU group can run it: it stays pending until the loop
adds one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlk8s.local_ray import LocalRayCluster
from mlk8s.local_ray.pool import LocalRayPool
from mlk8s.scaling import Decision, PolicyState, QueueSnapshot, Worker
from mlk8s_airflow.ray_pool.loop import RayPoolLoop
from mlk8s_airflow.ray_pool.settings import RayPoolSettings

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


@pytest.fixture
def pool(ray_cluster: LocalRayCluster, tmp_path: Path) -> Iterator[LocalRayPool]:
    """The session cluster served as a pool; workers a test added are removed after it."""
    served = LocalRayPool(tmp_path / "pool")
    before = {r.node_id for r in served.adopt(ray_cluster).workers}
    try:
        yield served
    finally:
        for record in served.running().workers:
            if record.node_id not in before:
                served.remove_worker(record.node_id, force=True)


def test_queued_work_adds_a_worker_a_busy_one_survives_a_stale_removal_and_an_idle_pool_shrinks(
    pool: LocalRayPool, ray_client: Any
) -> None:
    ray = ray_client
    settings = RayPoolSettings.parse(
        {
            "groups": [GROUP],
            "actuator": "local",
            "ray_address": pool.running().address,
            "local_pool_dir": str(pool.state_dir),
            "policy": {"scale_down_window_s": 30.0, "cpus_per_task": 2.0},
        }
    )
    loop = QueueFedLoop(settings, run_key="test/local")
    workers_of_group = lambda: [r.node_id for r in pool.running().workers if r.spec.labels]  # noqa: E731

    @ray.remote(num_cpus=2)
    def work(seconds: float) -> str:
        time.sleep(seconds)
        return ray.get_runtime_context().get_node_id()

    ref = work.remote(6.0)
    loop.queue = QueueSnapshot(queued=0, running=1)  # the Airflow task that submitted it is running
    wait_for(lambda: loop.gcs.cluster_state().pending_requests >= 1, 30, "Ray to report the pending task")

    t0 = time.time()
    grow = loop.cycle(PolicyState(), seq=1, now=t0)
    assert [(d.current, d.target) for d in grow.decisions] == [(0, 1)], grow.decisions[0].reason
    assert grow.applied[0].applied
    (node_id,) = workers_of_group()

    # A removal decided on a stale view ("idle") while the worker runs the work: the GCS refuses to drain a
    # busy node, so the actuator keeps it.
    wait_for(lambda: any(n.busy for n in loop.gcs.cluster_state().nodes), 30, "the worker to get busy")
    stale = [Worker(id=node_id, group="big", busy=False, started_at=0.0, idle_since=0.0)]
    kept = loop.actuator.apply([Decision("big", current=1, target=0, remove=(node_id,), reason="stale")], stale, "s-1")
    assert not kept[0].applied and "kept" in kept[0].note
    assert workers_of_group() == [node_id]
    assert ray.get(ref, timeout=60) == node_id  # the new worker ran the queued work to the end

    # Drained: the worker is idle and nothing is queued. Within the scale-down window it stays ...
    loop.queue = QueueSnapshot()
    wait_for(lambda: all(not n.busy for n in loop.gcs.cluster_state().nodes), 30, "the worker to go idle")
    hold = loop.cycle(grow.state, seq=2, now=t0 + 10)
    assert [(d.current, d.target) for d in hold.decisions] == [(1, 1)]
    assert "window" in hold.decisions[0].reason, hold.decisions[0].reason
    # ... and after the window it goes.
    shrink = loop.cycle(hold.state, seq=3, now=t0 + 45)
    assert [(d.current, d.target, d.remove) for d in shrink.decisions] == [(1, 0, (node_id,))]
    assert workers_of_group() == []
    with loop.gcs as gcs:
        assert node_id not in {n.node_id for n in gcs.nodes()}
    assert shrink.point["pool"] == 1 and shrink.point["target"] == 0


def test_the_actuator_refuses_a_pool_other_than_the_one_the_loop_reads(pool: LocalRayPool) -> None:
    from mlk8s_airflow.actuators.base import ActuatorError

    settings = RayPoolSettings.parse(
        {"groups": [GROUP], "actuator": "local", "ray_address": "127.0.0.1:1", "local_pool_dir": str(pool.state_dir)}
    )
    with pytest.raises(
        ActuatorError, match=r"runs at 127\.0\.0\.1:\d+, but the sensor reads Ray's demand from 127\.0\.0\.1:1"
    ):
        RayPoolLoop(settings, "k").actuator.members()
