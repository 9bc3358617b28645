"""Connect this process to a Ray pool as a driver (the preprocessing pod's side of the Ray connection).

``ray.init(address="head:6379")`` only works where a raylet of that cluster runs on the same host: the driver
looks for a local raylet and its object store. A KubernetesPodOperator pod runs none, so the driver first joins
the pool as a **zero-resource Ray node** of its own (``ray start --address=... --num-cpus=0 --num-gpus=0
--block``, its own temp dir, token auth, SIGTERMed by the kernel when the driver dies, stopped by pid on exit)
and then attaches to it. Where a raylet of the cluster already runs here (the local backend: pods are processes
beside the local cluster's nodes) it attaches directly. Ray Data then runs exactly as on a Ray node: results
come back through the pod's own object store, with no job-submission hop in between.

Why not the Ray Jobs API: a submitted job runs its driver on the head, outside the pod, so the pod's image,
environment, SIGTERM handling (exit 75 on eviction) and XCom result file would all have to be re-created on
the far side and the job reattached after a relaunch; a zero-resource node keeps the driver in the pod, so
the pod contract holds unchanged.

Bounded waits: the pool must answer within ``connect_timeout_s`` (flag/env ``MLK8S_RAY_CONNECT_TIMEOUT_S``) or
:class:`RayPoolUnreachable` says so in one line; a head that goes away mid-run makes Ray end the driver once its
GCS reconnect timeout (``head_lost_timeout_s``, env ``MLK8S_RAY_HEAD_LOST_TIMEOUT_S``, Ray's
``RAY_gcs_rpc_server_reconnect_timeout_s``) has passed, never a hang. The pool is named explicitly
(``RAY_ADDRESS``, the token from ``RAY_AUTH_TOKEN``); without one, a private local cluster is started, never an
existing one attached to by accident.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlk8s.net import is_loopback, local_addresses
from mlk8s.ray_auth import enable_token_auth, token_from_env, write_token_file
from mlk8s.ray_gcs import GcsClient, GcsError, GcsNode, check_address

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_ENV = "MLK8S_RAY_CONNECT_TIMEOUT_S"
HEAD_LOST_TIMEOUT_ENV = "MLK8S_RAY_HEAD_LOST_TIMEOUT_S"
DEFAULT_CONNECT_TIMEOUT_S = 60.0
#: Ray's own default for how long a driver waits for a GCS that went away.
DEFAULT_HEAD_LOST_TIMEOUT_S = 60.0
RAY_RECONNECT_TIMEOUT_ENV = "RAY_gcs_rpc_server_reconnect_timeout_s"
#: The driver's own node holds the results Ray Data hands back; small, pods share /dev/shm with nothing else.
DRIVER_OBJECT_STORE_BYTES = 512 * 1024**2


class RayPoolUnreachable(RuntimeError):
    """The named pool did not answer in time (or refused the token); the message is one line."""


def positive_seconds(value: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: give a finite number of seconds > 0")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection's bounds as flags of a driver's command line, defaulting to their environment variables."""
    parser.add_argument(
        "--ray-connect-timeout-s",
        type=positive_seconds,
        default=os.environ.get(CONNECT_TIMEOUT_ENV, str(DEFAULT_CONNECT_TIMEOUT_S)),
        metavar="S",
        help=f"how long to wait for the Ray pool to answer (default: ${CONNECT_TIMEOUT_ENV} or "
        f"{DEFAULT_CONNECT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--ray-head-lost-timeout-s",
        type=positive_seconds,
        default=os.environ.get(HEAD_LOST_TIMEOUT_ENV, str(DEFAULT_HEAD_LOST_TIMEOUT_S)),
        metavar="S",
        help="how long a run waits for a Ray head that went away before it fails (default: "
        f"${HEAD_LOST_TIMEOUT_ENV} or {DEFAULT_HEAD_LOST_TIMEOUT_S:g})",
    )


def wait_for_pool(address: str, token: str | None, timeout_s: float) -> list[GcsNode]:
    """The pool's alive nodes once its GCS answers; :class:`RayPoolUnreachable` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    with GcsClient(address, token=token) as gcs:
        while True:
            left = deadline - time.monotonic()
            try:
                return gcs.nodes(timeout_s=max(0.5, min(5.0, left)))
            except GcsError as exc:
                last = exc
                if "UNAUTHENTICATED" in str(exc):
                    break  # a wrong token does not get better by waiting
            if time.monotonic() + 1.0 > deadline:
                break
            time.sleep(1.0)
    reason = str(last).split(": ", 1)[-1] if last else "no answer"
    raise RayPoolUnreachable(
        f"cannot reach the Ray pool at {address} within {timeout_s:g} s ({reason}); check RAY_ADDRESS (the head "
        f"service's GCS host:port), RAY_AUTH_TOKEN, and that the pool runs (raise {CONNECT_TIMEOUT_ENV} to wait longer)"
    )


def raylet_here(nodes: list[GcsNode]) -> GcsNode | None:
    """A node of the cluster whose address is one of this host's (or this pod's network namespace's)."""
    mine = local_addresses()
    return next((node for node in nodes if node.ip in mine), None)


@contextlib.contextmanager
def connect(
    address: str | None,
    local_cpus: int | None,
    *,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    head_lost_timeout_s: float = DEFAULT_HEAD_LOST_TIMEOUT_S,
) -> Iterator[None]:
    """``ray.init`` into the named pool (joining it as a zero-resource node when no raylet of it runs here), or
    into a private local cluster; everything started is stopped on exit, ``ray.shutdown()`` included."""
    import ray

    os.environ[RAY_RECONNECT_TIMEOUT_ENV] = str(max(1, round(head_lost_timeout_s)))
    with contextlib.ExitStack() as stack:
        if address:
            kwargs = _join_pool(check_address(address, "RAY_ADDRESS/--ray-address"), connect_timeout_s, stack)
        else:
            address, kwargs = _private_cluster(local_cpus, stack)
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True, **kwargs)
        stack.callback(ray.shutdown)
        yield


def _join_pool(address: str, timeout_s: float, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Make ``ray.init(address)`` work here; returns the extra ``ray.init`` arguments that pick our node."""
    from mlk8s.local_ray.nodes import NodeSettings, NodeSpec, retry_start, start_node, stop_node
    from mlk8s.local_ray.ray_start import keep_loopback

    token = token_from_env()
    if token:
        enable_token_auth(token)
    logger.info("connecting to ray pool %s (token auth %s)", address, "on" if token else "off")
    started = time.monotonic()
    nodes = wait_for_pool(address, token, timeout_s)
    if is_loopback(address.rpartition(":")[0]):
        keep_loopback()
    local = raylet_here(nodes)
    if local is not None:
        logger.info("a raylet of the pool runs on this host (%s): attaching to it", local.ip)
        return {}
    temp_dir = Path(tempfile.mkdtemp(prefix="rd-", dir="/tmp"))
    stack.callback(shutil.rmtree, temp_dir, True)
    token_path = write_token_file(temp_dir / "auth_token", token or "")
    settings = NodeSettings(
        temp_dir=temp_dir,
        token_path=token_path,
        host=None,  # Ray picks the address this pod reaches the head from
        object_store_bytes=DRIVER_OBJECT_STORE_BYTES,
        extra_env={RAY_RECONNECT_TIMEOUT_ENV: os.environ[RAY_RECONNECT_TIMEOUT_ENV]},
    )
    left = max(5.0, timeout_s - (time.monotonic() - started))
    with GcsClient(address, token=token) as gcs:
        try:
            record = retry_start(
                lambda: start_node(
                    settings,
                    "driver",
                    NodeSpec(0, 0),
                    [f"--address={address}"],
                    gcs,
                    timeout_s=left,
                    die_with_parent=True,
                ),
                "driver",
            )
        except Exception as exc:
            first = str(exc).splitlines()[0]
            raise RayPoolUnreachable(f"cannot join the Ray pool at {address} as a zero-resource node: {first}") from exc
        node_ip = next(n.ip for n in gcs.nodes() if n.node_id == record.node_id)
    stack.callback(stop_node, record, grace_s=10.0)
    logger.info("joined ray pool %s as zero-resource node %s (%s)", address, record.node_id[:8], node_ip)
    return {"_node_ip_address": node_ip, "_temp_dir": str(temp_dir)}


def _private_cluster(local_cpus: int | None, stack: contextlib.ExitStack) -> tuple[str, dict[str, Any]]:
    from mlk8s.local_ray import LocalRayCluster
    from mlk8s.local_ray.ray_start import keep_loopback

    temp_dir = tempfile.mkdtemp(prefix="rl-", dir="/tmp")
    stack.callback(shutil.rmtree, temp_dir, True)
    cpus = local_cpus if local_cpus is not None else (os.cpu_count() or 1)
    logger.info("no RAY_ADDRESS: starting a private local ray cluster (%d CPUs, temp dir %s)", cpus, temp_dir)
    cluster = LocalRayCluster(temp_dir, head_cpus=cpus, drain_timeout_s=1.0)
    stack.callback(cluster.stop)
    cluster.start()
    cluster.enable_auth_in_this_process()
    keep_loopback()
    return cluster.address, {}
