"""The Ray Dataset plan: which stages run as fused tasks on long-lived workers, which as actor pools, and how
big each pool is. The dataset's rows describe the written parts (one row per part).
"""

from __future__ import annotations

from typing import Any

from mlk8s.preprocessing.parts import PartWriter
from mlk8s.preprocessing.sources import InputSource
from mlk8s.preprocessing.spec import PipelineSpec
from mlk8s.preprocessing.stages import ActorStage, Stage, TaskStage, plan_stages


def _cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def build_dataset(spec: PipelineSpec, source: InputSource, writer: PartWriter) -> Any:
    """The lazy Ray Dataset whose rows describe the parts ``writer`` wrote (one row per part)."""
    import ray.data

    from mlk8s.preprocessing.work_units import ray_dataset

    cpus = _cluster_cpus()
    ds = ray_dataset(source, cpus)
    stages = plan_stages(spec)
    if stages[0].kind == "actor":
        stages.insert(0, Stage("task", []))  # something has to read the work units
    if len(stages) == 1:
        # The whole pipeline is one fused read -> steps -> write function. It runs on a pool of long-lived
        # workers (one per CPU to start with, growing with the cluster) that each hold a second task in
        # their queue: a Ray Data *task* costs ~0.15 s of idle CPU between one task and the next (measured
        # on a 2-CPU machine, ~10% of a 1.4 s task), a queued call on a running worker almost nothing.
        # Ray Data restarts a worker that dies and retries its calls; a retried call writes a new part, and
        # only the parts reported back are committed.
        return ds.map_batches(
            TaskStage,
            fn_constructor_kwargs={"steps": stages[0].steps, "source": source, "writer": writer},
            batch_format="pyarrow",
            batch_size=None,
            zero_copy_batch=True,
            compute=ray.data.ActorPoolStrategy(
                min_size=1, initial_size=max(1, int(cpus)), max_tasks_in_flight_per_actor=2
            ),
            num_cpus=1,
        )
    # Tasks keep Ray's default of 3 retries after a worker dies; actors restart (Ray Data's default).
    gpus = _cluster_gpus() if spec.has_actor_steps() else 0.0
    for index, stage in enumerate(stages):
        last = index == len(stages) - 1
        if stage.kind == "task":
            fn = TaskStage(stage.steps, source=source if index == 0 else None, writer=writer if last else None)
            # The first stage gets one planned task (a block) per call; later ones the spec's batch size.
            batch_size = None if index == 0 else spec.batch_size
            ds = ds.map_batches(fn, batch_format="pyarrow", batch_size=batch_size, zero_copy_batch=True)
            continue
        step = stage.steps[0]
        num_gpus = step.num_gpus if step.num_gpus is not None else (1.0 if gpus >= 1 else 0.0)
        if step.concurrency is not None:
            pool = ray.data.ActorPoolStrategy(size=step.concurrency)
        elif num_gpus > 0:
            pool = ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, int(gpus // num_gpus)))
        else:
            pool = ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, int(cpus)))
        ds = ds.map_batches(
            ActorStage,
            fn_constructor_kwargs={"step": step},
            batch_format="pyarrow",
            batch_size=step.batch_size or 256,
            compute=pool,
            num_cpus=step.num_cpus if step.num_cpus is not None else 1,
            num_gpus=num_gpus,
        )
        if last:
            ds = ds.map_batches(writer, batch_format="pyarrow", batch_size=None)
    return ds


def _cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 1))
