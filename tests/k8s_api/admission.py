"""Pod Security admission: the namespace's ``pod-security.kubernetes.io/<mode>: <level>`` labels, on pod create.

Why written here: the checks are the Pod Security Standards (k8s.io/pod-security-admission/policy, "latest"),
which exist only in Go. Each check below follows one of that package's, with its forbidden reason and detail
texts, so a refusal reads as a real cluster's:

    pods "train-x" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false
    (container "base" must set securityContext.allowPrivilegeEscalation=false), ...

``enforce`` refuses the pod (403); ``warn`` answers a ``Warning`` header (``299 - "would violate PodSecurity
..."``) and admits it; ``audit`` is recorded by the caller (no audit log here). ``privileged`` (or no label)
checks nothing. Levels are cumulative: restricted = baseline + its own checks. Not modelled: the
``<mode>-version`` labels (every level is "latest"), exemptions, Windows-only fields beyond ``hostProcess``,
user-namespace relaxations (``hostUsers: false``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

LEVELS = ("privileged", "baseline", "restricted")
LABEL_PREFIX = "pod-security.kubernetes.io/"

_BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
_SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
_RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


@dataclass(frozen=True)
class Violation:
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


def _quote(items: Sequence[str]) -> str:
    return ", ".join(f'"{i}"' for i in items)


def _plural(word: str, n: int) -> str:
    return word if n == 1 else f"{word}s"


def _containers(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(group) or []:
            if isinstance(c, Mapping):
                yield c


def _sc(c: Mapping[str, Any]) -> Mapping[str, Any]:
    return c.get("securityContext") or {}


def _named(names: list[str], what: str = "container") -> str:
    return f"{_plural(what, len(names))} {_quote(names)}"


# --- baseline ---------------------------------------------------------------------------------------------------


def _host_process(spec: Mapping[str, Any]) -> Violation | None:
    pod = ((spec.get("securityContext") or {}).get("windowsOptions") or {}).get("hostProcess") is True
    bad = [c["name"] for c in _containers(spec) if (_sc(c).get("windowsOptions") or {}).get("hostProcess") is True]
    if not pod and not bad:
        return None
    who = (["pod"] if pod else []) + ([_named(bad)] if bad else [])
    return Violation("hostProcess", f"{' and '.join(who)} must not set securityContext.windowsOptions.hostProcess=true")


def _host_namespaces(spec: Mapping[str, Any]) -> Violation | None:
    bad = [f"{key}=true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key) is True]
    return Violation("host namespaces", ", ".join(bad)) if bad else None


def _privileged(spec: Mapping[str, Any]) -> Violation | None:
    bad = [c["name"] for c in _containers(spec) if _sc(c).get("privileged") is True]
    return Violation("privileged", f"{_named(bad)} must not set securityContext.privileged=true") if bad else None


def _capabilities_baseline(spec: Mapping[str, Any]) -> Violation | None:
    bad, caps = [], set()
    for c in _containers(spec):
        added = [a for a in (_sc(c).get("capabilities") or {}).get("add") or [] if a not in _BASELINE_CAPABILITIES]
        if added:
            bad.append(c["name"])
            caps.update(added)
    if not bad:
        return None
    return Violation(
        "non-default capabilities",
        f"{_named(bad)} must not include {_quote(sorted(caps))} in securityContext.capabilities.add",
    )


def _volume_type(volume: Mapping[str, Any]) -> str:
    return next((k for k in volume if k != "name"), "")


def _host_path_volumes(spec: Mapping[str, Any]) -> Violation | None:
    bad = [v["name"] for v in spec.get("volumes") or [] if "hostPath" in v]
    return Violation("hostPath volumes", _named(bad, "volume")) if bad else None


def _host_ports(spec: Mapping[str, Any]) -> Violation | None:
    bad, ports = [], []
    for c in _containers(spec):
        used = [str(p["hostPort"]) for p in c.get("ports") or [] if p.get("hostPort")]
        if used:
            bad.append(c["name"])
            ports.extend(used)
    if not bad:
        return None
    return Violation(
        "hostPort",
        f"{_named(bad)} {'uses' if len(bad) == 1 else 'use'} {_plural('hostPort', len(ports))} {', '.join(ports)}",
    )


def _apparmor(spec: Mapping[str, Any], meta: Mapping[str, Any]) -> Violation | None:
    bad = []
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or str(value).startswith("localhost/")
        ):
            bad.append(f"{key}={value!r}".replace("'", '"'))
    profiles = [("pod", spec.get("securityContext") or {})] + [
        (f'container "{c["name"]}"', _sc(c)) for c in _containers(spec)
    ]
    for who, sc in profiles:
        kind = (sc.get("appArmorProfile") or {}).get("type")
        if kind is not None and kind not in ("RuntimeDefault", "Localhost"):
            bad.append(f'{who} must not set securityContext.appArmorProfile.type to "{kind}"')
    return Violation("forbidden AppArmor profile", ", ".join(bad)) if bad else None


def _selinux(spec: Mapping[str, Any]) -> Violation | None:
    bad = []
    profiles = [("pod", spec.get("securityContext") or {})] + [
        (f'container "{c["name"]}"', _sc(c)) for c in _containers(spec)
    ]
    for who, sc in profiles:
        opts = sc.get("seLinuxOptions") or {}
        if opts.get("type", "") not in _SELINUX_TYPES:
            bad.append(f'{who} set forbidden securityContext.seLinuxOptions: type "{opts["type"]}"')
        if opts.get("user") or opts.get("role"):
            bad.append(f"{who} set forbidden securityContext.seLinuxOptions: user or role")
    return Violation("seLinuxOptions", "; ".join(bad)) if bad else None


def _proc_mount(spec: Mapping[str, Any]) -> Violation | None:
    bad = [c["name"] for c in _containers(spec) if _sc(c).get("procMount") not in (None, "Default")]
    if not bad:
        return None
    return Violation("procMount", f'{_named(bad)} must not set securityContext.procMount to "Unmasked"')


def _seccomp_unconfined(spec: Mapping[str, Any]) -> Violation | None:
    pod = ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type") == "Unconfined"
    bad = [c["name"] for c in _containers(spec) if (_sc(c).get("seccompProfile") or {}).get("type") == "Unconfined"]
    if not pod and not bad:
        return None
    who = (["pod"] if pod else []) + ([_named(bad)] if bad else [])
    return Violation(
        "seccompProfile", f'{" and ".join(who)} must not set securityContext.seccompProfile.type to "Unconfined"'
    )


def _sysctls(spec: Mapping[str, Any]) -> Violation | None:
    bad = [
        s.get("name", "")
        for s in (spec.get("securityContext") or {}).get("sysctls") or []
        if s.get("name") not in _SAFE_SYSCTLS
    ]
    return Violation("forbidden sysctls", ", ".join(bad)) if bad else None


# --- restricted -------------------------------------------------------------------------------------------------


def _restricted_volumes(spec: Mapping[str, Any]) -> Violation | None:
    bad, kinds = [], set()
    for v in spec.get("volumes") or []:
        kind = _volume_type(v)
        if kind not in _RESTRICTED_VOLUME_TYPES:
            bad.append(v["name"])
            kinds.add(kind)
    if not bad:
        return None
    verb = "uses" if len(bad) == 1 else "use"
    return Violation(
        "restricted volume types",
        f"{_named(bad, 'volume')} {verb} restricted volume {_plural('type', len(kinds))} {_quote(sorted(kinds))}",
    )


def _allow_privilege_escalation(spec: Mapping[str, Any]) -> Violation | None:
    bad = [c["name"] for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
    if not bad:
        return None
    return Violation(
        "allowPrivilegeEscalation != false", f"{_named(bad)} must set securityContext.allowPrivilegeEscalation=false"
    )


def _run_as_non_root(spec: Mapping[str, Any]) -> Violation | None:
    pod_value = (spec.get("securityContext") or {}).get("runAsNonRoot")
    setters = ["pod"] if pod_value is False else []
    explicit = [c["name"] for c in _containers(spec) if _sc(c).get("runAsNonRoot") is False]
    implicit = [c["name"] for c in _containers(spec) if _sc(c).get("runAsNonRoot") is None and pod_value is not True]
    if explicit:
        setters.append(_named(explicit))
    if setters:
        return Violation(
            "runAsNonRoot != true", f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false"
        )
    if implicit:
        return Violation(
            "runAsNonRoot != true", f"pod or {_named(implicit)} must set securityContext.runAsNonRoot=true"
        )
    return None


def _run_as_user(spec: Mapping[str, Any]) -> Violation | None:
    setters = ["pod"] if (spec.get("securityContext") or {}).get("runAsUser") == 0 else []
    bad = [c["name"] for c in _containers(spec) if _sc(c).get("runAsUser") == 0]
    if bad:
        setters.append(_named(bad))
    return Violation("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0") if setters else None


def _seccomp_restricted(spec: Mapping[str, Any]) -> Violation | None:
    pod_type = ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    valid = ("RuntimeDefault", "Localhost")
    setters, values = [], set()
    if pod_type is not None and pod_type not in valid:
        setters.append("pod")
        values.add(pod_type)
    explicit, implicit = [], []
    for c in _containers(spec):
        kind = (_sc(c).get("seccompProfile") or {}).get("type")
        if kind is not None:
            if kind not in valid:
                explicit.append(c["name"])
                values.add(kind)
        elif pod_type not in valid:
            implicit.append(c["name"])
    if explicit:
        setters.append(_named(explicit))
    if setters:
        return Violation(
            "seccompProfile",
            f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to {_quote(sorted(values))}",
        )
    if implicit:
        return Violation(
            "seccompProfile",
            f'pod or {_named(implicit)} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"',
        )
    return None


def _capabilities_restricted(spec: Mapping[str, Any]) -> Violation | None:
    missing, adding, caps = [], [], set()
    for c in _containers(spec):
        capabilities = _sc(c).get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            missing.append(c["name"])
        added = [a for a in capabilities.get("add") or [] if a != "NET_BIND_SERVICE"]
        if added:
            adding.append(c["name"])
            caps.update(added)
    details = []
    if missing:
        details.append(f'{_named(missing)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(f"{_named(adding)} must not include {_quote(sorted(caps))} in securityContext.capabilities.add")
    return Violation("unrestricted capabilities", "; ".join(details)) if details else None


_SpecCheck = Callable[[Mapping[str, Any]], "Violation | None"]

#: Check id -> check, per level. The API server reports violations in the order of the check ids.
BASELINE: dict[str, _SpecCheck] = {
    "capabilities_baseline": _capabilities_baseline,
    "hostNamespaces": _host_namespaces,
    "hostPathVolumes": _host_path_volumes,
    "hostPorts": _host_ports,
    "privileged": _privileged,
    "procMount": _proc_mount,
    "seLinuxOptions": _selinux,
    "seccompProfile_baseline": _seccomp_unconfined,
    "sysctls": _sysctls,
    "windowsHostProcess": _host_process,
}
RESTRICTED: dict[str, _SpecCheck] = {
    "allowPrivilegeEscalation": _allow_privilege_escalation,
    "capabilities_restricted": _capabilities_restricted,
    "restrictedVolumes": _restricted_volumes,
    "runAsNonRoot": _run_as_non_root,
    "runAsUser": _run_as_user,
    "seccompProfile_restricted": _seccomp_restricted,
}


def violations(pod: Mapping[str, Any], level: str) -> list[Violation]:
    """What keeps ``pod`` from meeting ``level`` (privileged, baseline, restricted), in the server's order."""
    if level not in LEVELS:
        raise ValueError(f"unknown Pod Security level {level!r}; use one of {list(LEVELS)}")
    if level == "privileged":
        return []
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    checks: dict[str, Callable[[], Violation | None]] = {
        check_id: (lambda c=check: c(spec)) for check_id, check in BASELINE.items()
    }
    checks["appArmorProfile"] = lambda: _apparmor(spec, meta)
    if level == "restricted":
        checks.update({check_id: (lambda c=check: c(spec)) for check_id, check in RESTRICTED.items()})
    results = (checks[check_id]() for check_id in sorted(checks))
    return [v for v in results if v is not None]


@dataclass(frozen=True)
class PodSecurityDecision:
    """The outcome of admission for one pod: refused (``forbidden``) or admitted, maybe with warnings."""

    forbidden: str | None = None
    warnings: tuple[str, ...] = ()
    audit: tuple[str, ...] = ()


def namespace_levels(namespace: Mapping[str, Any] | None) -> dict[str, str]:
    """``{"enforce": "baseline", "warn": "restricted", ...}`` from a Namespace's labels."""
    labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    levels = {}
    for mode in ("enforce", "warn", "audit"):
        value = labels.get(LABEL_PREFIX + mode)
        if value is not None:
            levels[mode] = value
    return levels


def admit_pod(pod: Mapping[str, Any], namespace: Mapping[str, Any] | None) -> PodSecurityDecision:
    """Apply the namespace's Pod Security labels to a pod being created."""
    levels = namespace_levels(namespace)
    name = (pod.get("metadata") or {}).get("name", "")

    def text(level: str) -> str | None:
        if level not in LEVELS:
            return None
        found = violations(pod, level)
        return f'PodSecurity "{level}:latest": ' + ", ".join(map(str, found)) if found else None

    forbidden = None
    if "enforce" in levels:
        if levels["enforce"] not in LEVELS:
            forbidden = (
                f'pods "{name}" is forbidden: unknown Pod Security level "{levels["enforce"]}" in namespace label'
            )
        else:
            found = text(levels["enforce"])
            forbidden = f'pods "{name}" is forbidden: violates {found}' if found else None
    warn = text(levels["warn"]) if "warn" in levels else None
    audit = text(levels["audit"]) if "audit" in levels else None
    return PodSecurityDecision(
        forbidden, (f"would violate {warn}",) if warn else (), (f"would violate {audit}",) if audit else ()
    )


def warning_header(message: str) -> str:
    """A ``Warning`` header value (RFC 7234 form the API server sends: ``299 - "<text>"``)."""
    return '299 - "' + message.replace("\\", "\\\\").replace('"', '\\"') + '"'
