"""The policy's input models: each refuses a bad value with the field and the fix, when it is built."""

from __future__ import annotations

import math

import pytest

from mlk8s.scaling import PolicyConfig, PolicyInputError, QueueSnapshot, ResourceDemand, Worker, WorkerGroupSpec


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: WorkerGroupSpec("cpu", 3, 2, 4), ["max_workers", "min_workers"]),
        (lambda: WorkerGroupSpec("cpu", -1, 2, 4), ["min_workers", ">= 0"]),
        (lambda: WorkerGroupSpec("", 0, 2, 4), ["name"]),
        (lambda: WorkerGroupSpec("cpu", 0, 2, 0), ["cpus_per_worker", "> 0"]),
        (lambda: WorkerGroupSpec("cpu", 0, 2, 4, gpus_per_worker=-1), ["gpus_per_worker"]),
        (lambda: WorkerGroupSpec("cpu", 0, 2, 4, memory_per_worker=math.nan), ["memory_per_worker"]),
        (lambda: Worker("w", "cpu", busy=True, started_at=0, pending=True), ["busy and pending", "busy=False"]),
        (lambda: Worker("w", "cpu", busy=False, started_at=math.inf), ["started_at"]),
        (lambda: Worker("w", "cpu", busy=True, started_at=0, free_cpus=-1), ["free_cpus", ">= 0"]),
        (lambda: QueueSnapshot(queued=-1), ["QueueSnapshot.queued", "int >= 0"]),
        (lambda: QueueSnapshot(running=1.5), ["QueueSnapshot.running"]),  # type: ignore[arg-type]
        (lambda: ResourceDemand(cpus=-1), ["ResourceDemand.cpus", ">= 0"]),
        (lambda: ResourceDemand(cpus=0), ["asks for nothing"]),
        (lambda: ResourceDemand(cpus=1, count=-2), ["ResourceDemand.count"]),
        (lambda: PolicyConfig(scale_down_window_s=-5), ["scale_down_window_s", ">= 0"]),
        (lambda: PolicyConfig(backlog_grace_workers=-1), ["backlog_grace_workers"]),
        (lambda: PolicyConfig(cpus_per_task=-1), ["cpus_per_task"]),
    ],
)
def test_bad_values_are_rejected_with_the_field_and_the_fix(make: object, words: list[str]) -> None:
    with pytest.raises(PolicyInputError) as err:
        make()  # type: ignore[operator]
    for word in words:
        assert word in str(err.value)


def test_the_task_shape_of_the_config_is_none_when_airflow_counts_are_not_used() -> None:
    assert PolicyConfig().task_demand == ResourceDemand(cpus=1.0)
    assert PolicyConfig(cpus_per_task=0).task_demand is None
    assert PolicyConfig(cpus_per_task=0, gpus_per_task=1).task_demand == ResourceDemand(cpus=0, gpus=1)


def test_a_group_with_gpus_is_a_gpu_group_and_gpu_demand_needs_one() -> None:
    assert WorkerGroupSpec("gpu", 0, 1, 4, gpus_per_worker=1).is_gpu
    assert not WorkerGroupSpec("cpu", 0, 1, 4).is_gpu
    assert ResourceDemand(cpus=1, gpus=0.5).needs_gpu and not ResourceDemand(cpus=1).needs_gpu
    assert QueueSnapshot(queued=2, scheduled=3, running=7).backlog == 5
