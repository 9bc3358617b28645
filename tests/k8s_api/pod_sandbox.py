"""A pod's sandbox on this machine: its directory, volumes, kubelet-managed /etc files and per-container dirs.

Layout: ``<workdir>/<pod uid>/`` holds ``etc/hosts``, ``etc/resolv.conf``, ``etc/hostname``, ``volumes/<name>``
and ``containers/<name>-<attempt>/`` (overlay upper/work dirs, the private ``/tmp``, the termination log).
Volumes, as the kubelet sets them up:

* ``emptyDir``: a directory, mode 0777 (``medium: Memory``: under /dev/shm, which is tmpfs); with
  ``fsGroup`` its group is the fsGroup and the setgid bit is set;
* ``secret`` / ``configMap``: the keys (or ``items``) written as files with ``defaultMode`` / ``mode``,
  refusing a missing object unless ``optional`` (``MountVolume.SetUp failed ... not found``);
* ``projected``: ServiceAccount tokens (issued by the server for the pod's ServiceAccount), ConfigMap and
  Secret keys, downward API ``fieldRef`` items;
* anything else fails the mount (``FailedMount`` event), so a pod that needs it never starts here.

Not modelled: persistentVolumeClaim and downwardAPI volumes, hostPath (Pod Security baseline
forbids it in our namespaces anyway), subPath, mount propagation.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.k8s_api import pod_dns
from tests.k8s_api.envvars import ObjectSource, field_ref

Obj = dict[str, Any]


class VolumeError(Exception):
    """A volume cannot be set up (the kubelet's FailedMount)."""


class PodSandbox:
    def __init__(self, workdir: Path, pod: Mapping[str, Any], shm_root: Path) -> None:
        meta = pod["metadata"]
        self.uid = meta["uid"]
        self.root = workdir / self.uid
        self.shm_dir = shm_root / self.uid
        self.volumes: dict[str, Path] = {}
        (self.root / "etc").mkdir(parents=True, exist_ok=True)
        (self.root / "containers").mkdir(exist_ok=True)
        security = (pod.get("spec") or {}).get("securityContext") or {}
        self.fs_group: int | None = security.get("fsGroup")

    # --- /etc -------------------------------------------------------------------------------------------------

    @property
    def hosts_path(self) -> Path:
        return self.root / "etc" / "hosts"

    def write_etc(self, pod: Mapping[str, Any], hosts: str) -> None:
        meta = pod["metadata"]
        self.refresh_hosts(hosts)
        (self.root / "etc" / "resolv.conf").write_text(pod_dns.resolv_conf(meta["namespace"]))
        (self.root / "etc" / "hostname").write_text(((pod.get("spec") or {}).get("hostname") or meta["name"]) + "\n")
        for name in ("hosts", "resolv.conf", "hostname"):
            (self.root / "etc" / name).chmod(0o644)

    def refresh_hosts(self, text: str) -> None:
        """Rewrite /etc/hosts in place (same inode: the containers' bind mounts see the new content)."""
        path = self.hosts_path
        if path.exists() and path.read_text() == text:
            return
        with open(path, "a+") as fh:
            fh.seek(0)
            fh.truncate()
            fh.write(text)

    # --- volumes ----------------------------------------------------------------------------------------------

    def _own(self, path: Path, mode: int) -> None:
        if self.fs_group is not None:
            os.chown(path, 0, int(self.fs_group))
            mode |= 0o2000
        path.chmod(mode)

    def prepare_volumes(
        self, pod: Mapping[str, Any], objects: ObjectSource, issue_token: Callable[[], str] | None = None
    ) -> None:
        namespace = pod["metadata"]["namespace"]
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            name = volume["name"]
            if name in self.volumes:
                continue
            if "emptyDir" in volume:
                memory = (volume["emptyDir"] or {}).get("medium") == "Memory"
                path = (self.shm_dir if memory else self.root / "volumes") / name
                path.mkdir(parents=True, exist_ok=True)
                self._own(path, 0o777)
            elif "secret" in volume or "configMap" in volume:
                path = self._key_files(volume, namespace, objects)
            elif "projected" in volume:
                path = self._projected(pod, volume, objects, issue_token)
            else:
                kind = next((k for k in volume if k != "name"), "?")
                raise VolumeError(
                    f'MountVolume.SetUp failed for volume "{name}" : the mock kubelet does not support {kind} volumes'
                )
            self.volumes[name] = path

    def _projected(
        self,
        pod: Mapping[str, Any],
        volume: Mapping[str, Any],
        objects: ObjectSource,
        issue_token: Callable[[], str] | None,
    ) -> Path:
        """A projected volume: ServiceAccount token, ConfigMap and Secret keys, downward API fields."""
        path = self.root / "volumes" / volume["name"]
        path.mkdir(parents=True, exist_ok=True)
        spec = volume["projected"] or {}
        mode = int(spec.get("defaultMode", 0o644))
        namespace = pod["metadata"]["namespace"]
        for source in spec.get("sources") or []:
            if "serviceAccountToken" in source:
                if issue_token is None:
                    raise VolumeError(f'MountVolume.SetUp failed for volume "{volume["name"]}" : no token issuer')
                self._write_file(
                    path / source["serviceAccountToken"].get("path", "token"), issue_token().encode(), mode
                )
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items") or []:
                    value = field_ref(pod, (item.get("fieldRef") or {}).get("fieldPath", ""))
                    self._write_file(path / item["path"], value.encode(), int(item.get("mode", mode)))
            else:
                kind = "secret" if "secret" in source else "configMap"
                inner = {"name": volume["name"], kind: {**source[kind], "defaultMode": mode}}
                if kind == "secret":
                    inner[kind]["secretName"] = source[kind].get("name", "")
                self._key_files(inner, namespace, objects, path)
        path.chmod(0o755)
        return path

    def _write_file(self, target: Path, data: bytes, mode: int) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)
        if self.fs_group is not None:
            os.chown(target, 0, int(self.fs_group))

    def _key_files(
        self, volume: Mapping[str, Any], namespace: str, objects: ObjectSource, into: Path | None = None
    ) -> Path:
        kind = "secret" if "secret" in volume else "configMap"
        source = volume[kind] or {}
        obj_name = source.get("secretName" if kind == "secret" else "name", "")
        obj = objects.get("secrets" if kind == "secret" else "configmaps", obj_name, namespace)
        if obj is None and not source.get("optional"):
            noun = "secret" if kind == "secret" else "configmap"
            raise VolumeError(f'MountVolume.SetUp failed for volume "{volume["name"]}" : {noun} "{obj_name}" not found')
        data: dict[str, bytes] = {}
        if obj is not None:
            for key, value in (obj.get("data") or {}).items():
                data[key] = base64.b64decode(value) if kind == "secret" else str(value).encode()
            for key, value in (obj.get("binaryData") or {}).items():
                data[key] = base64.b64decode(value)
        path = into or self.root / "volumes" / volume["name"]
        path.mkdir(parents=True, exist_ok=True)
        default_mode = int(source.get("defaultMode", 0o644))
        items = source.get("items") or [{"key": k, "path": k} for k in sorted(data)]
        for item in items:
            if item["key"] not in data:
                if source.get("optional"):
                    continue
                raise VolumeError(
                    f'MountVolume.SetUp failed for volume "{volume["name"]}" : configmap references non-existent '
                    f"config key: {item['key']}"
                )
            self._write_file(path / item["path"], data[item["key"]], int(item.get("mode", default_mode)))
        path.chmod(0o755)
        return path

    # --- per container ----------------------------------------------------------------------------------------

    def container_dir(self, name: str, attempt: int) -> Path:
        path = self.root / "containers" / f"{name}-{attempt}"
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / "tmp"
        tmp.mkdir(exist_ok=True)
        tmp.chmod(0o1777)
        return path

    def mounts(self, container: Mapping[str, Any], cdir: Path, uid: int) -> list[dict[str, object]]:
        """The bind mounts of one container run: /tmp, the /etc files, the termination log, its volumes."""
        log = cdir / "termination-log"
        log.touch()
        os.chown(log, uid, -1)
        mounts: list[dict[str, object]] = [
            {"source": str(cdir / "tmp"), "target": "/tmp"},
            {"source": str(self.root / "etc" / "hosts"), "target": "/etc/hosts"},
            {"source": str(self.root / "etc" / "resolv.conf"), "target": "/etc/resolv.conf"},
            {"source": str(self.root / "etc" / "hostname"), "target": "/etc/hostname"},
            {"source": str(log), "target": container.get("terminationMessagePath") or "/dev/termination-log"},
        ]
        for vm in container.get("volumeMounts") or []:
            source = self.volumes.get(vm["name"])
            if source is None:
                raise VolumeError(f'volume "{vm["name"]}" of volumeMount {vm["mountPath"]} is not defined')
            mounts.append({"source": str(source), "target": vm["mountPath"], "readonly": bool(vm.get("readOnly"))})
        return mounts

    def cleanup(self) -> None:
        for path in (self.root, self.shm_dir):
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(path)
