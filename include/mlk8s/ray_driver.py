"""Connect this process to a Ray pool as a driver (the preprocessing pod's side of the Ray connection).

The pool is named explicitly (``RAY_ADDRESS``, the KubeRay head service's GCS address); without one, a private
local cluster is started, never an existing one attached to by accident. Token authentication stays on.
"""

from __future__ import annotations

import logging
import os
import tempfile

logger = logging.getLogger(__name__)


def connect(address: str | None, local_cpus: int | None) -> None:
    """Join the named cluster, or start a private local one (token auth on, own temp dir)."""
    import ray

    if address:
        logger.info("connecting to ray cluster %s (auth mode %s)", address, os.environ.get("RAY_AUTH_MODE", "default"))
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        return
    from mlk8s.local_ray import AUTH_TOKEN_PATH_ENV, enable_token_auth

    # A token of our own, not ~/.ray/auth_token (other people's local clusters use that file).
    if os.environ.get(AUTH_TOKEN_PATH_ENV):
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    else:
        enable_token_auth()
    temp_dir = tempfile.mkdtemp(prefix="rl-", dir="/tmp")
    logger.info("no RAY_ADDRESS: starting a private local ray cluster (temp dir %s, token auth)", temp_dir)
    ray.init(
        address="local",
        num_cpus=local_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        _temp_dir=temp_dir,
        object_store_memory=512 * 1024**2,
    )
