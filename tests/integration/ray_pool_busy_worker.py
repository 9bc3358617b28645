"""Keeps one worker node of the local Ray pool busy, for the make-up test of the Ray pool autoscaler.

``python tests/integration/ray_pool_busy_worker.py STATE_DIR NODE_ID MARK_DIR`` connects to the pool as a
driver (its token, from the pool's state) and runs one 1-CPU task pinned to NODE_ID (hard affinity). The task
touches ``MARK_DIR/running`` once it runs and holds its CPU until ``MARK_DIR/release`` exists (at most 600 s).
On success it prints the node the task ran on: a node removed while busy fails the task, and this script.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(state_dir: str, node_id: str, mark_dir: str) -> int:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from mlk8s.local_ray import LocalRayCluster
    from mlk8s.local_ray.pool import LocalRayPool

    state = json.loads(LocalRayPool(state_dir).state_path.read_text())
    cluster = LocalRayCluster.from_state(state["cluster"])
    cluster.enable_auth_in_this_process()
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)

    @ray.remote(num_cpus=1, max_retries=0)
    def hold(marks: str) -> str:
        (Path(marks) / "running").touch()
        deadline = time.monotonic() + 600
        while not (Path(marks) / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        return str(ray.get_runtime_context().get_node_id())

    strategy = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
    ran_on = ray.get(hold.options(scheduling_strategy=strategy).remote(mark_dir))
    print(ran_on, flush=True)
    ray.shutdown()
    return 0 if ran_on == node_id else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
