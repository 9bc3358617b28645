"""DAGs used by the operator tests (dag.test() needs them in a bundle). One DAG per scenario."""

from __future__ import annotations

import textwrap

import pendulum
from airflow.sdk import DAG

from mlk8s_airflow.operators.pod import PodTaskOperator

IMAGE = "ghcr.io/acme/mlk8s:0.1.0"
SLOW_JOB = textwrap.dedent(
    """
    import time
    from mlk8s.pod_contract import write_result
    print("ready", flush=True)
    time.sleep(2)
    write_result({"done": True})
    """
)
SCENARIOS: dict[str, dict] = {
    "pod_ok": {
        "arguments": ["from mlk8s.pod_contract import write_result; print('working'); write_result({'answer': 42})"]
    },
    "pod_fail": {"arguments": ["import sys; sys.exit(3)"]},
    "pod_evicted_once": {
        "arguments": [SLOW_JOB],
        "local_disruption": {"signal": "SIGKILL", "after_log": "^ready$", "attempts": [1]},
    },
    "pod_evicted_always": {
        "arguments": [SLOW_JOB],
        "max_disruptions": 1,
        "local_disruption": {"signal": "SIGKILL", "after_log": "^ready$", "attempts": [1, 2, 3]},
    },
    "pod_bad_backend": {"arguments": ["open('/tmp/mlk8s-bad-backend-launched', 'w')"], "backend": "docker"},
    # Exit code 2 = the pod rejected its input: failing at once, the 3 retries are not spent.
    "pod_usage_error": {"arguments": ["import sys; print('error: --epochs must be >= 0'); sys.exit(2)"], "retries": 3},
}

for _dag_id, _kwargs in SCENARIOS.items():
    with DAG(_dag_id, schedule=None, start_date=pendulum.datetime(2025, 1, 1), catchup=False, tags=["test"]) as _dag:
        PodTaskOperator(**{"task_id": "pod", "image": IMAGE, "cmds": ["python", "-c"], "retries": 0, **_kwargs})
    globals()[_dag_id] = _dag
