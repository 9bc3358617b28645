"""The first process of a container: builds its root filesystem, drops to its user, execs its command.

Run by the process kubelet (tests/k8s_api/containers.py) as root, already inside the pod's network
namespace and in fresh mount, PID and UTS namespaces (``unshare --fork``: this process is PID 1 there),
as ``python container_init.py <spec.json>``. Standard library only, and run by path, so it imports nothing
of the test package. What it does is what a container runtime does for one container:

1. an overlay of the host's ``/`` (read-only lower layer, a per-container ``volatile`` upper layer: never synced,
   thrown away with the container): the container sees
   this machine's files, its writes stay its own, ``readOnlyRootFilesystem`` makes it read-only;
2. its own ``/proc`` (its PID namespace: ``pgrep``, ``kill 1`` and psutil see only the container), a
   minimal ``/dev`` (null, zero, full, random, urandom, tty, a 64 MiB ``/dev/shm``), ``/sys`` read-only,
   a private ``/tmp``, the kubelet-managed ``/etc/hosts``, ``/etc/resolv.conf`` and ``/etc/hostname``;
3. the pod's volumes bind-mounted at their ``mountPath``\\ s (``readOnly`` honoured), so an emptyDir shared by
   two containers is one directory and a volume of another pod is out of sight;
4. directories on the way to the project's interpreter made traversable in the overlay (``/root`` is 0700
   on this machine), as an image's would be;
5. hostname = the pod's, then ``chroot``, ``chdir`` to ``workingDir``, supplementary groups, gid, uid, and
   ``execvpe`` of the command with the resolved environment.

Progress and failures are written as one line each to the status file descriptor the kubelet passes:
``exec`` just before exec, or ``error <message>`` (and exit 128, the runtime's StartError).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import shutil
import socket
import sys

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(value: str | None) -> bytes | None:
        return value.encode() if value is not None else None

    if _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target} ({fstype or 'bind'}): {os.strerror(err)}")


def inside(root: str, path: str, depth: int = 0) -> str:
    """``path`` as seen from the container: each symlink resolved within ``root`` (``/var/run`` -> ``/run``).

    Joining naively would follow an absolute symlink out to the host (and mount there).
    """
    if depth > 40:
        raise OSError(f"too many levels of symbolic links in {path}")
    current = root
    parts = [p for p in path.split("/") if p and p != "."]
    for i, part in enumerate(parts):
        if part == "..":
            current = os.path.dirname(current) if current != root else root
            continue
        candidate = os.path.join(current, part)
        if os.path.islink(candidate):
            target = os.readlink(candidate)
            rest = "/".join(parts[i + 1 :])
            base = "/" if target.startswith("/") else os.path.relpath(current, root)
            return inside(root, os.path.join(base, target, rest), depth + 1)
        current = candidate
    return current


def bind(source: str, target: str, *, readonly: bool = False, recursive: bool = False) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "a").close()
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if readonly:
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def build_dev(root: str, shm: str | None) -> None:
    dev = os.path.join(root, "dev")
    os.makedirs(dev, exist_ok=True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=65536k")
    for node in ("null", "zero", "full", "random", "urandom", "tty"):
        bind(f"/dev/{node}", os.path.join(dev, node))
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, os.path.join(dev, name))
    os.makedirs(os.path.join(dev, "shm"))
    if shm is None:
        mount("shm", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k")
    os.makedirs(os.path.join(dev, "pts"))


def make_traversable(root: str, path: str) -> None:
    """Add o+x to every directory on the way to ``path`` inside the overlay (a copy-up: the host is untouched)."""
    current = "/"
    for part in os.path.realpath(path).split("/")[1:-1]:
        current = os.path.join(current, part)
        inside = os.path.join(root, current.lstrip("/"))
        try:
            mode = os.stat(inside).st_mode
        except OSError:
            return
        if not mode & 0o001:
            os.chmod(inside, (mode & 0o7777) | 0o011)


def setup(spec: dict) -> str:
    """Build the container's filesystem and identity; returns the resolved executable."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = spec["rootfs"]
    mount("overlay", root, "overlay", 0, f"lowerdir=/,upperdir={spec['upper']},workdir={spec['work']},volatile")
    for path in spec.get("traversable", []):
        make_traversable(root, path)
    volume_targets = {m["target"] for m in spec["mounts"]}
    build_dev(root, "/dev/shm" if "/dev/shm" in volume_targets else None)
    os.makedirs(os.path.join(root, "proc"), exist_ok=True)
    mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    try:
        mount("sysfs", os.path.join(root, "sys"), "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        bind("/sys", os.path.join(root, "sys"), readonly=True, recursive=True)
    for item in sorted(spec["mounts"], key=lambda m: m["target"].count("/")):
        bind(item["source"], inside(root, item["target"]), readonly=bool(item.get("readonly")))
    if spec.get("read_only_root"):
        mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    os.chroot(root)
    os.chdir(spec.get("working_dir") or "/")
    socket.sethostname(spec["hostname"])
    env = spec["env"]
    argv = spec["argv"]
    if not argv:
        raise OSError("no command specified")
    exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH", os.defpath))
    if exe is None or not os.path.exists(exe):
        raise OSError(f'exec: "{argv[0]}": executable file not found in $PATH')
    # containerd gives every container 1048576 open files (KubeRay's command runs ``ulimit -n 65536``); here
    # the soft limit is raised to this machine's hard limit, the most a process may have.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.setgroups(spec.get("groups", []))
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    home = env.get("HOME")
    if home and home.startswith("/tmp/"):
        os.makedirs(home, exist_ok=True)
    if not os.access(exe, os.X_OK):
        raise OSError(f'exec: "{argv[0]}": permission denied')
    return exe


def main() -> None:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    status = os.fdopen(int(spec["status_fd"]), "w", buffering=1)
    try:
        exe = setup(spec)
    except Exception as exc:  # reported to the kubelet as the runtime's StartError
        status.write(f"error {exc}\n")
        status.flush()
        os._exit(128)
    status.write("exec\n")
    status.flush()
    os.set_inheritable(status.fileno(), False)
    os.umask(0o022)
    try:
        os.execve(exe, spec["argv"], spec["env"])
    except OSError as exc:
        status.write(f"error {exc}\n")
        status.flush()
        os._exit(128)


if __name__ == "__main__":
    main()
