"""How a process authenticates to a Ray cluster: token auth, the token from the environment or a file.

Ray 2.60 reads ``RAY_AUTH_MODE=token`` and the token from ``RAY_AUTH_TOKEN``, then ``RAY_AUTH_TOKEN_PATH``,
then ``~/.ray/auth_token``. The shared default file is never used here (other people's clusters on this
machine use it). Ray caches the mode and the token per process, so one process that starts several local
clusters gives them all one token (:func:`process_token`); our own GCS client takes the token as an argument
instead and needs none of this.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"  # noqa: S105 - a variable name, not a secret
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"  # noqa: S105 - a variable name
ADDRESS_ENV = "RAY_ADDRESS"

_token_lock = threading.Lock()
_process_token: str | None = None


def process_token() -> str:
    """The token every cluster started by this process accepts: the one this process was given
    (``RAY_AUTH_TOKEN``, or the file at ``RAY_AUTH_TOKEN_PATH``), else a new one."""
    global _process_token
    with _token_lock:
        if _process_token is None:
            _process_token = token_from_env() or secrets.token_hex(32)
        return _process_token


def token_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The token a Ray client of this process would send: ``RAY_AUTH_TOKEN``, else the file at
    ``RAY_AUTH_TOKEN_PATH``; None when neither is set (never the shared ``~/.ray`` file)."""
    env = os.environ if environ is None else environ
    if env.get(AUTH_TOKEN_ENV):
        return env[AUTH_TOKEN_ENV].strip()
    path = env.get(AUTH_TOKEN_PATH_ENV)
    if path:
        return Path(path).read_text().strip() or None
    return None


def write_token_file(path: Path, token: str) -> Path:
    """Write ``token`` to ``path`` readable by this user only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return path


def enable_token_auth(token: str | None = None) -> None:
    """Turn token auth on for this process's own Ray (``ray.init``) and its children, with ``token``.

    Ray reads ``RAY_AUTH_MODE`` into a cached config when it is imported; the cache is refreshed here so
    the mode applies even when ``ray`` was imported first (an inherited ``RAY_AUTH_MODE=disabled`` included).
    """
    os.environ[AUTH_MODE_ENV] = "token"
    os.environ[AUTH_TOKEN_ENV] = token or process_token()
    if "ray" in sys.modules:
        with contextlib.suppress(Exception):
            from mlk8s import compat

            compat.get("ray.Config").initialize("")
            compat.get("ray.AuthenticationTokenLoader").instance().reset_cache()
