"""Bearer tokens that map to users, the way the API server's token authenticators do.

The test set-up mints one token per identity (:meth:`Tokens.issue`): the admin (group ``system:masters``,
what ``kubeadm``'s admin.conf is) and ServiceAccounts (``system:serviceaccount:<ns>:<name>``), as a
TokenRequest would. A ServiceAccount's token authenticates only while that ServiceAccount exists in the
server (the real authenticator looks it up too). A request with no ``Authorization`` header is
``system:anonymous`` (group ``system:unauthenticated``), which RBAC grants nothing; an unknown token is 401.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Any

import yaml

from tests.k8s_api.rbac import UserInfo

ADMIN = UserInfo("kubernetes-admin", ("system:masters", "system:authenticated"))
ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))


class Tokens:
    """Token -> user; thread-safe."""

    def __init__(self) -> None:
        self._users: dict[str, UserInfo] = {}
        self._lock = threading.Lock()

    def issue(self, user: UserInfo) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._users[token] = user
        return token

    def register(self, token: str, user: UserInfo) -> None:
        """Accept a token chosen by the caller (a static token file entry)."""
        with self._lock:
            self._users[token] = user

    def lookup(self, authorization: str | None) -> UserInfo | None:
        """The user of an ``Authorization`` header value; ANONYMOUS when absent, None when not valid."""
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        with self._lock:
            return self._users.get(token.strip())


def kubeconfig(server_url: str, token: str | None, namespace: str, user_name: str = "mock") -> dict[str, Any]:
    """A kubeconfig dict for one identity (``KubernetesHook(config_file=...)``, ``kubernetes.config``)."""
    user: dict[str, Any] = {"token": token} if token else {}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "mock", "cluster": {"server": server_url}}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": "mock", "context": {"cluster": "mock", "user": user_name, "namespace": namespace}}],
        "current-context": "mock",
    }


def write_kubeconfig(path: Path, config: dict[str, Any]) -> Path:
    """Write a kubeconfig readable by its owner only (it holds a bearer token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(yaml.safe_dump(config))
    return path
