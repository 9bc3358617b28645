"""The local backend: a pod's main container, run as a process built from the very same V1Pod."""

from __future__ import annotations

import logging
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from kubernetes.client import models as k8s

from mlk8s.disruption import OutcomeKind
from mlk8s.pod_contract import EXIT_INTERRUPTED
from mlk8s_airflow.backends.local import LocalDisruption, LocalPodProcess, process_spec_from_pod
from mlk8s_airflow.backends.podspec import PodSpecError


class ListLog:
    """Collects what the backend writes to the task log, in order."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _add(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args if args else msg)

    info = warning = error = debug = _add


def make_pod(
    args: list[str],
    *,
    command: list[str] | None = None,
    env: list[k8s.V1EnvVar] | None = None,
    image: str = "ghcr.io/acme/mlk8s:0.1.0",
    working_dir: str | None = None,
    grace: int | None = None,
    resources: k8s.V1ResourceRequirements | None = None,
    env_from: list[k8s.V1EnvFromSource] | None = None,
) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="job-abc", namespace="ml", labels={"team": "search"}),
        spec=k8s.V1PodSpec(
            termination_grace_period_seconds=grace,
            containers=[
                k8s.V1Container(
                    name="base",
                    image=image,
                    command=["python", "-c"] if command is None else command,
                    args=args,
                    env=env,
                    env_from=env_from,
                    working_dir=working_dir,
                    resources=resources,
                ),
                k8s.V1Container(name="airflow-xcom-sidecar", image="alpine", command=["sh"]),
            ],
        ),
    )


def run(pod: k8s.V1Pod, tmp_path: Path, **kw: object) -> tuple[object, ListLog]:
    spec = process_spec_from_pod(
        pod, container_name="base", scratch_dir=tmp_path, worker_env=kw.pop("worker_env", None)
    )  # type: ignore[arg-type]
    log = ListLog()
    result = LocalPodProcess(spec, log=log).run(**kw)  # type: ignore[arg-type]
    return result, log


def test_env_args_and_field_refs_reach_the_process(tmp_path: Path) -> None:
    code = "import os, sys; print(os.environ['GREETING'], os.environ['POD'], os.environ['NS'], os.environ['TEAM'], sys.argv[1:])"
    pod = make_pod(
        [code, "$(GREETING)", "$$(literal)"],
        env=[
            k8s.V1EnvVar(name="WHO", value="world"),
            k8s.V1EnvVar(name="GREETING", value="hello-$(WHO)"),
            k8s.V1EnvVar(
                name="POD",
                value_from=k8s.V1EnvVarSource(field_ref=k8s.V1ObjectFieldSelector(field_path="metadata.name")),
            ),
            k8s.V1EnvVar(
                name="NS",
                value_from=k8s.V1EnvVarSource(field_ref=k8s.V1ObjectFieldSelector(field_path="metadata.namespace")),
            ),
            k8s.V1EnvVar(
                name="TEAM",
                value_from=k8s.V1EnvVarSource(
                    field_ref=k8s.V1ObjectFieldSelector(field_path="metadata.labels['team']")
                ),
            ),
        ],
    )
    result, log = run(pod, tmp_path)
    assert result.returncode == 0
    assert "hello-world job-abc ml search ['hello-world', '$(literal)']" in log.lines


def test_worker_secrets_do_not_leak_into_the_pod(tmp_path: Path) -> None:
    pod = make_pod(["import os; print(sorted(k for k in os.environ if k.startswith('AIRFLOW')))"])
    result, log = run(
        pod,
        tmp_path,
        worker_env={"PATH": "/usr/bin:/bin", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://u:pw@db"},
    )
    assert result.returncode == 0
    assert "[]" in log.lines


def test_secret_backed_env_comes_from_the_worker_env_only_when_named(tmp_path: Path) -> None:
    secret_env = k8s.V1EnvVar(
        name="API_TOKEN",
        value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name="creds", key="token")),
    )
    pod = make_pod(["import os; print(len(os.environ['API_TOKEN']))"], env=[secret_env])
    result, log = run(pod, tmp_path, worker_env={"PATH": "/usr/bin:/bin", "API_TOKEN": "s3cret"})
    assert result.returncode == 0 and "6" in log.lines
    assert not any("s3cret" in line for line in log.lines)


def test_unresolvable_secret_is_a_clear_error_before_launch(tmp_path: Path) -> None:
    secret_env = k8s.V1EnvVar(
        name="API_TOKEN",
        value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name="creds", key="token")),
    )
    with pytest.raises(PodSpecError, match=r"API_TOKEN.*Secret 'creds' key 'token'.*export API_TOKEN"):
        process_spec_from_pod(
            make_pod(["pass"], env=[secret_env]), container_name="base", scratch_dir=tmp_path, worker_env={}
        )
    assert not (tmp_path / "workdir").exists()


def test_env_from_secret_is_refused(tmp_path: Path) -> None:
    pod = make_pod(["pass"], env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name="all-creds"))])
    with pytest.raises(PodSpecError, match="env_from Secret 'all-creds'"):
        process_spec_from_pod(pod, container_name="base", scratch_dir=tmp_path, worker_env={})


def test_resource_field_ref_reads_the_container_limits(tmp_path: Path) -> None:
    limit = k8s.V1EnvVar(
        name="CPUS",
        value_from=k8s.V1EnvVarSource(resource_field_ref=k8s.V1ResourceFieldSelector(resource="limits.cpu")),
    )
    mem = k8s.V1EnvVar(
        name="MEM_MI",
        value_from=k8s.V1EnvVarSource(
            resource_field_ref=k8s.V1ResourceFieldSelector(resource="limits.memory", divisor="1Mi")
        ),
    )
    pod = make_pod(
        ["import os; print(os.environ['CPUS'], os.environ['MEM_MI'])"],
        env=[limit, mem],
        resources=k8s.V1ResourceRequirements(limits={"cpu": "1500m", "memory": "2Gi"}),
    )
    result, log = run(pod, tmp_path)
    assert result.returncode == 0 and "2 2048" in log.lines


@pytest.mark.parametrize("code", [1, 3])
def test_nonzero_exit_is_a_failure(tmp_path: Path, code: int) -> None:
    result, _ = run(make_pod([f"import sys; sys.exit({code})"]), tmp_path)
    assert result.returncode == code
    assert result.outcome.kind is OutcomeKind.FAILED


def test_logs_stream_line_by_line_while_the_process_runs(tmp_path: Path) -> None:
    code = "import time\nfor i in range(3):\n    print(f'step {i}', flush=True)\n    time.sleep(0.3)\n"
    seen: list[tuple[float, str]] = []
    result, log = run(make_pod([code]), tmp_path, on_line=lambda line: seen.append((time.monotonic(), line)))
    assert [line for _, line in seen] == ["step 0", "step 1", "step 2"]
    # Each line arrived when it was printed, not all at the end.
    assert seen[-1][0] - seen[0][0] > 0.4
    assert result.outcome.kind is OutcomeKind.SUCCEEDED


def test_stderr_is_in_the_log_too(tmp_path: Path) -> None:
    _, log = run(make_pod(["import sys; print('oops', file=sys.stderr)"]), tmp_path)
    assert "oops" in log.lines


def test_xcom_written_through_the_pod_contract_becomes_the_result(tmp_path: Path) -> None:
    result, _ = run(make_pod(["from mlk8s.pod_contract import write_result; write_result({'rows': 3})"]), tmp_path)
    assert result.xcom == {"rows": 3}


def test_literal_kpo_xcom_path_is_remapped(tmp_path: Path) -> None:
    code = "import json, sys; open(sys.argv[1], 'w').write(json.dumps([1, 2]))"
    result, _ = run(make_pod([code, "/airflow/xcom/return.json"]), tmp_path)
    assert result.xcom == [1, 2]


def test_no_result_file_means_no_xcom(tmp_path: Path) -> None:
    result, _ = run(make_pod(["print('nothing to return')"]), tmp_path)
    assert result.returncode == 0 and result.xcom is None


SLEEPER = textwrap.dedent(
    """
    import signal, sys, time
    def on_term(signum, frame):
        print("got SIGTERM, checkpointing", flush=True)
        sys.exit(75)
    signal.signal(signal.SIGTERM, on_term)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_sigkill_is_a_disruption(tmp_path: Path) -> None:
    disruption = LocalDisruption(signal="SIGKILL", after_log="^ready$")
    result, _ = run(make_pod([SLEEPER]), tmp_path, disruption=disruption)
    assert result.returncode == -signal.SIGKILL
    assert result.outcome.disrupted and result.disrupted_by_us


def test_sigterm_gives_the_job_its_grace_period(tmp_path: Path) -> None:
    disruption = LocalDisruption(signal="SIGTERM", after_log="^ready$")
    result, log = run(make_pod([SLEEPER], grace=20), tmp_path, disruption=disruption)
    assert result.returncode == EXIT_INTERRUPTED
    assert "got SIGTERM, checkpointing" in log.lines
    assert result.outcome.disrupted


def test_sigterm_then_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    disruption = LocalDisruption(signal="SIGTERM", after_log="^ready$")
    result, _ = run(make_pod([stubborn], grace=1), tmp_path, disruption=disruption)
    assert result.returncode == -signal.SIGKILL


def test_terminate_from_another_thread_stops_the_pod(tmp_path: Path) -> None:
    spec = process_spec_from_pod(make_pod([SLEEPER], grace=5), container_name="base", scratch_dir=tmp_path)
    proc = LocalPodProcess(spec, log=logging.getLogger("test"))
    threading.Timer(1.0, proc.terminate).start()
    result = proc.run()
    assert result.returncode == EXIT_INTERRUPTED


def test_python_means_the_workers_python(tmp_path: Path) -> None:
    spec = process_spec_from_pod(make_pod(["pass"]), container_name="base", scratch_dir=tmp_path)
    assert spec.argv[0] == sys.executable


@pytest.mark.parametrize(
    ("pod_kwargs", "match"),
    [
        ({"command": [], "args": []}, "no command: set cmds"),
        ({"image": ""}, "image is empty"),
        ({"image": "Not An Image"}, "not a valid image reference"),
        ({"image": "repo/{{ params.tag }}"}, "unrendered template"),
        ({"command": ["no-such-binary-mlk8s"]}, "not on PATH"),
        ({"working_dir": "/no/such/dir"}, "working_dir '/no/such/dir' does not exist"),
        ({"env": [k8s.V1EnvVar(name="1BAD", value="x")]}, "env var name '1BAD' is invalid"),
    ],
)
def test_bad_pod_is_refused_before_launch(tmp_path: Path, pod_kwargs: dict, match: str) -> None:
    args = pod_kwargs.pop("args", ["pass"])
    with pytest.raises(PodSpecError, match=match):
        process_spec_from_pod(make_pod(args, **pod_kwargs), container_name="base", scratch_dir=tmp_path)


def test_missing_container_is_named(tmp_path: Path) -> None:
    with pytest.raises(PodSpecError, match="no container named 'main'.*base, airflow-xcom-sidecar"):
        process_spec_from_pod(make_pod(["pass"]), container_name="main", scratch_dir=tmp_path)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"signal": "SIGSTOP", "after_s": 1}, "signal is 'SIGSTOP'"),
        ({"signal": "SIGKILL"}, "needs after_log"),
        ({"after_log": "(", "signal": "SIGKILL"}, "not a valid regex"),
        ({"after_s": 1, "when": "now"}, "unknown keys"),
    ],
)
def test_bad_disruption_settings(raw: dict, match: str) -> None:
    with pytest.raises(PodSpecError, match=match):
        LocalDisruption.from_dict(raw)
