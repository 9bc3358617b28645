"""Which pod endings are disruptions (relaunch, no retry spent) and which are real failures."""

from __future__ import annotations

import signal

import pytest

from mlk8s.disruption import OutcomeKind, classify_exit, classify_pod_status
from mlk8s.pod_contract import EXIT_INTERRUPTED


def _status(
    phase: str,
    *,
    exit_code: int | None = None,
    reason: str | None = None,
    conditions: list[dict] | None = None,
    term_reason: str | None = None,
) -> dict:
    status: dict = {"phase": phase, "reason": reason, "conditions": conditions or []}
    if exit_code is not None:
        status["container_statuses"] = [
            {"name": "base", "state": {"terminated": {"exit_code": exit_code, "reason": term_reason}}},
            {"name": "airflow-xcom-sidecar", "state": {"running": {}}},
        ]
    return status


@pytest.mark.parametrize(
    "reason",
    ["PreemptionByScheduler", "EvictionByEvictionAPI", "DeletionByTaintManager", "TerminationByKubelet"],
)
def test_disruption_target_condition_is_a_disruption(reason: str) -> None:
    cond = [{"type": "DisruptionTarget", "status": "True", "reason": reason}]
    outcome = classify_pod_status(_status("Failed", exit_code=143, conditions=cond))
    assert outcome.kind is OutcomeKind.DISRUPTED
    assert reason in outcome.reason


def test_camel_case_api_json_is_understood() -> None:
    status = {
        "phase": "Failed",
        "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}],
        "containerStatuses": [{"name": "base", "state": {"terminated": {"exitCode": 137}}}],
    }
    outcome = classify_pod_status(status)
    assert outcome.disrupted and outcome.exit_code == 137


def test_evicted_phase_failed_is_a_disruption() -> None:
    outcome = classify_pod_status(_status("Failed", reason="Evicted"))
    assert outcome.disrupted


def test_lost_node_and_vanished_pod_are_disruptions() -> None:
    assert classify_pod_status(_status("Unknown")).disrupted
    assert classify_pod_status(None).disrupted


def test_code_failure_is_a_failure() -> None:
    outcome = classify_pod_status(_status("Failed", exit_code=1))
    assert outcome.kind is OutcomeKind.FAILED and outcome.exit_code == 1


def test_oom_is_a_failure_not_a_disruption() -> None:
    outcome = classify_pod_status(_status("Failed", exit_code=137, term_reason="OOMKilled"))
    assert outcome.kind is OutcomeKind.FAILED
    assert "memory" in outcome.reason


def test_interrupted_exit_code_is_a_disruption_on_kubernetes_too() -> None:
    assert classify_pod_status(_status("Failed", exit_code=EXIT_INTERRUPTED)).disrupted


def test_success_wins_over_a_late_disruption_condition() -> None:
    cond = [{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC"}]
    assert classify_pod_status(_status("Succeeded", exit_code=0, conditions=cond)).kind is OutcomeKind.SUCCEEDED


def test_running_pod_is_not_finished() -> None:
    assert classify_pod_status(_status("Running")).kind is OutcomeKind.RUNNING


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (0, OutcomeKind.SUCCEEDED),
        (-signal.SIGKILL, OutcomeKind.DISRUPTED),
        (-signal.SIGTERM, OutcomeKind.DISRUPTED),
        (-signal.SIGSEGV, OutcomeKind.FAILED),
        (-signal.SIGABRT, OutcomeKind.FAILED),
        (-signal.SIGBUS, OutcomeKind.FAILED),
        (-signal.SIGFPE, OutcomeKind.FAILED),
        (EXIT_INTERRUPTED, OutcomeKind.DISRUPTED),
        (1, OutcomeKind.FAILED),
        (2, OutcomeKind.FAILED),
    ],
)
def test_local_exit_codes(code: int, kind: OutcomeKind) -> None:
    assert classify_exit(code).kind is kind


def test_local_signal_is_named() -> None:
    assert "SIGKILL" in classify_exit(-signal.SIGKILL).reason


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (128 + signal.SIGKILL, OutcomeKind.DISRUPTED),
        (128 + signal.SIGTERM, OutcomeKind.DISRUPTED),
        (128 + signal.SIGSEGV, OutcomeKind.FAILED),
        (128 + signal.SIGABRT, OutcomeKind.FAILED),
    ],
)
def test_a_container_crash_is_a_failure_a_kill_from_outside_a_disruption(code: int, kind: OutcomeKind) -> None:
    assert classify_pod_status(_status("Failed", exit_code=code)).kind is kind


def test_a_local_crash_names_the_signal() -> None:
    outcome = classify_exit(-signal.SIGSEGV)
    assert outcome.kind is OutcomeKind.FAILED and "SIGSEGV" in outcome.reason
