"""The Ray Dataset plan: which stages run as fused tasks on long-lived workers, which as actor pools, and how
big each pool is. The dataset's rows describe the written parts (one row per part).

Fused (read -> every step -> write in one call on a long-lived worker) unless a step needs its own pool: a
step on GPUs, or an actor step with its own ``concurrency``. The built-in embedding is fused on CPU pools: one
worker per node, reserving the node's CPUs, its torch using all of them (fewer, bigger workers: one model load
and one copy of the weights per node, and no block travels through the object store between the cleaning and
the model). A GPU step gets one actor per GPU, asked for even when no GPU node is up yet (a worker group scaled
to zero): see :mod:`.worker_sizing`.
"""

from __future__ import annotations

from typing import Any

from mlk8s.preprocessing.parts import PartWriter
from mlk8s.preprocessing.sources import InputSource
from mlk8s.preprocessing.spec import PipelineSpec, Step
from mlk8s.preprocessing.stages import ActorStage, Stage, TaskStage, plan_stages
from mlk8s.preprocessing.worker_sizing import PoolShape, pool_shape

#: Rows per call to an actor pool's step when the spec sets none; a GPU wants bigger batches.
CPU_ACTOR_BATCH_ROWS = 256
GPU_ACTOR_BATCH_ROWS = 2048
#: A pool that can scale without bound still gets a bounded actor pool.
MAX_ACTORS = 256


def build_dataset(spec: PipelineSpec, source: InputSource, writer: PartWriter) -> Any:
    """The lazy Ray Dataset whose rows describe the parts ``writer`` wrote (one row per part)."""
    from mlk8s.preprocessing.work_units import ray_dataset

    shape = pool_shape()
    ds = ray_dataset(source, shape.cpus_now)
    actors = [step for step in spec.steps if step.kind == "actor"]
    gpus = {step.index: step_gpus(step, shape) for step in actors}
    if not any(gpus.values()) and not any(step.concurrency for step in actors):
        return _fused(ds, list(spec.steps), source, writer, shape)
    stages = plan_stages(spec)
    if stages[0].kind == "actor":
        stages.insert(0, Stage("task", []))  # something has to read the work units
    # Tasks keep Ray's default of 3 retries after a worker dies; actors restart (Ray Data's default).
    for index, stage in enumerate(stages):
        last = index == len(stages) - 1
        if stage.kind == "task":
            fn = TaskStage(stage.steps, source=source if index == 0 else None, writer=writer if last else None)
            # The first stage gets one planned task (a block) per call; later ones the spec's batch size.
            batch_size = None if index == 0 else spec.batch_size
            ds = ds.map_batches(fn, batch_format="pyarrow", batch_size=batch_size, zero_copy_batch=True)
            continue
        ds = _actor_pool(ds, stage.steps[0], gpus[stage.steps[0].index], shape)
        if last:
            # An actor stage ends the pipeline: a task stage with no steps unwraps its rows and writes them.
            ds = ds.map_batches(TaskStage([], writer=writer), batch_format="pyarrow", batch_size=None)
    return ds


def _fused(ds: Any, steps: list[Step], source: InputSource, writer: PartWriter, shape: PoolShape) -> Any:
    """The whole pipeline as one read -> steps -> write function on a pool of long-lived workers.

    Each worker holds a second call in its queue: a Ray Data *task* costs ~0.15 s of idle CPU between one task
    and the next (measured on a 2-CPU machine, ~10% of a 1.4 s task), a queued call on a running worker almost
    nothing. Ray Data restarts a worker that dies and retries its calls; a retried call writes a new part, and
    only the parts reported back are committed.
    """
    import ray.data

    cpus = worker_cpus(steps, shape)
    return ds.map_batches(
        TaskStage,
        fn_constructor_kwargs={"steps": steps, "source": source, "writer": writer},
        batch_format="pyarrow",
        batch_size=None,
        zero_copy_batch=True,
        compute=ray.data.ActorPoolStrategy(
            min_size=1, initial_size=max(1, int(shape.cpus_now // cpus)), max_tasks_in_flight_per_actor=2
        ),
        num_cpus=cpus,
    )


def worker_cpus(steps: list[Step], shape: PoolShape) -> float:
    """CPUs one fused worker reserves: the most an actor step asks for (``num_cpus``); else a node's worth for
    the built-in embedding (its torch uses them all); else 1 (maps and filters run in one Python thread)."""
    from mlk8s.preprocessing.embedding import Embedder

    actors = [s for s in steps if s.kind == "actor"]
    asked = [float(s.num_cpus) for s in actors if s.num_cpus is not None]
    if asked:
        return max(asked)
    if any(s.fn is Embedder for s in actors):
        return shape.cpus_per_node
    return 1.0


def step_gpus(step: Step, shape: PoolShape) -> float:
    """GPUs per actor of ``step``: the spec's ``num_gpus``; else one for the built-in embedding when the pool has
    a GPU or can scale to one; else none."""
    from mlk8s.preprocessing.embedding import Embedder

    if step.num_gpus is not None:
        return float(step.num_gpus)
    return 1.0 if step.fn is Embedder and shape.max_gpus >= 1 else 0.0


def _actor_pool(ds: Any, step: Step, num_gpus: float, shape: PoolShape) -> Any:
    import ray.data

    if step.concurrency is not None:
        pool = ray.data.ActorPoolStrategy(size=step.concurrency)
    elif num_gpus > 0:
        most = max(1, int(min(shape.max_gpus, MAX_ACTORS) // num_gpus))
        pool = ray.data.ActorPoolStrategy(min_size=1, max_size=most)
    else:
        pool = ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, min(int(shape.cpus_now), MAX_ACTORS)))
    return ds.map_batches(
        ActorStage,
        fn_constructor_kwargs={"step": step},
        batch_format="pyarrow",
        batch_size=step.batch_size or (GPU_ACTOR_BATCH_ROWS if num_gpus > 0 else CPU_ACTOR_BATCH_ROWS),
        compute=pool,
        num_cpus=step.num_cpus if step.num_cpus is not None else 1,
        num_gpus=num_gpus,
    )
