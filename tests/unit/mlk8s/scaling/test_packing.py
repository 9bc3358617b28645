"""Bin packing: the group a request grows, and how many new workers hold a demand."""

from __future__ import annotations

import math

from mlk8s.scaling import ResourceDemand, WorkerGroupSpec, group_for, workers_needed

CPU = WorkerGroupSpec("cpu", min_workers=0, max_workers=10, cpus_per_worker=4)
GPU = WorkerGroupSpec("gpu", min_workers=0, max_workers=3, cpus_per_worker=4, gpus_per_worker=1)


def test_group_for_prefers_the_smallest_worker_that_fits() -> None:
    big = WorkerGroupSpec("big", 0, 5, cpus_per_worker=16)
    assert group_for(ResourceDemand(cpus=2), [big, CPU, GPU]) == CPU
    assert group_for(ResourceDemand(cpus=8), [big, CPU, GPU]) == big
    assert group_for(ResourceDemand(cpus=1, gpus=1), [big, CPU, GPU]) == GPU
    assert group_for(ResourceDemand(cpus=1, gpus=2), [big, CPU, GPU]) is None


def test_cpu_work_never_goes_to_a_gpu_group() -> None:
    assert group_for(ResourceDemand(cpus=2), [GPU]) is None


def test_workers_needed_packs_shapes_together() -> None:
    assert workers_needed([ResourceDemand(cpus=1, count=9)], CPU) == 3
    # 3+1 share a worker twice over.
    assert workers_needed([ResourceDemand(cpus=3, count=2), ResourceDemand(cpus=1, count=2)], CPU) == 2
    assert workers_needed([ResourceDemand(cpus=2, gpus=1, count=3)], GPU) == 3
    memory = WorkerGroupSpec("m", 0, 10, cpus_per_worker=8, memory_per_worker=16e9)
    assert workers_needed([ResourceDemand(cpus=1, memory=6e9, count=4)], memory) == 2
    assert workers_needed([ResourceDemand(cpus=1, count=2)], CPU, rooms=[(2.0, 0.0, math.inf)]) == 0


def test_memory_asked_of_a_group_without_a_memory_size_does_not_limit_the_packing() -> None:
    # The group leaves memory unconstrained: only the CPUs count (this raised OverflowError before).
    assert workers_needed([ResourceDemand(cpus=1, memory=2e9, count=7)], CPU) == 2
    # Requests asking only for memory there fit one worker together.
    assert workers_needed([ResourceDemand(cpus=0, memory=2e9, count=7)], CPU) == 1


def test_thousands_of_identical_requests_pack_by_shape() -> None:
    assert workers_needed([ResourceDemand(cpus=1, count=100_000)], CPU) == 25_000
    assert workers_needed([ResourceDemand(cpus=1, count=3)] * 4, CPU, rooms=[(1.0, 0.0, math.inf)] * 4) == 2
