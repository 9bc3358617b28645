"""The local Ray pool as a service process: a ``LocalRayCluster`` head that lives until SIGTERM.

``python -m local_airflow.ray_pool --state FILE --temp-dir DIR --head-cpus N`` starts the head (token auth on,
the token from ``RAY_AUTH_TOKEN``), writes ``{"address", "pid", "head_cpus"}`` to FILE once the head has
registered, and stops the cluster and removes FILE on SIGTERM. Worker nodes are added and removed by the Ray
pool autoscaler through the local actuator.

Ray gives a starting node a fixed 30 s to register with its GCS, which a busy laptop can miss; the start is
tried up to three times (tenacity), each with a clean temp dir, before the service gives up.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

log = logging.getLogger("local_airflow.ray_pool")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_airflow.ray_pool")
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--temp-dir", required=True, type=Path)
    parser.add_argument("--head-cpus", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not os.environ.get("RAY_AUTH_TOKEN"):
        print("ray_pool: error: RAY_AUTH_TOKEN is not set; the pool only starts with token auth", file=sys.stderr)
        return 2

    from mlk8s.local_ray import LocalRayCluster, RayClusterError

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed

    cluster = LocalRayCluster(args.temp_dir, head_cpus=args.head_cpus, drain_timeout_s=5.0)

    def start() -> str:
        cluster.stop()
        shutil.rmtree(args.temp_dir, ignore_errors=True)
        return cluster.start()

    try:
        address = Retrying(
            stop=stop_after_attempt(3),
            wait=wait_fixed(2),
            retry=retry_if_exception_type(RayClusterError),
            before_sleep=lambda state: log.warning(
                "the Ray head did not start (%s); trying again", str(state.outcome.exception()).splitlines()[0]
            ),
            reraise=True,
        )(start)
    except RayClusterError as exc:
        print(f"ray_pool: error: the Ray head did not start in 3 tries: {exc}", file=sys.stderr)
        cluster.stop()
        return 1
    try:
        tmp = args.state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"address": address, "pid": os.getpid(), "head_cpus": args.head_cpus}))
        tmp.replace(args.state)
        log.info("ray pool up at %s (head %d CPUs, temp dir %s)", address, args.head_cpus, args.temp_dir)
        head = cluster.node(next(n.node_id for n in cluster.nodes() if n.head))
        while not stop.wait(2.0):
            if head.process.poll() is not None:
                log.error("the Ray head exited with code %s; stopping the pool", head.process.returncode)
                return 1
        return 0
    finally:
        args.state.unlink(missing_ok=True)
        cluster.stop()
        shutil.rmtree(args.temp_dir, ignore_errors=True)
        log.info("ray pool stopped")


if __name__ == "__main__":
    sys.exit(main())
