"""The Ray Dataset plan: how big each worker is (no Ray needed), and, on a real local Ray cluster, that a fused
pipeline, one with a fused actor step and one with an actor pool of its own all describe the parts they wrote,
one row per part, with every input row counted."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

from mlk8s.preprocessing import worker_sizing
from mlk8s.preprocessing.dataset_plan import build_dataset, step_gpus, worker_cpus
from mlk8s.preprocessing.parts import PartWriter
from mlk8s.preprocessing.samples import write_documents
from mlk8s.preprocessing.sources import open_input
from mlk8s.preprocessing.spec import load_spec, parse_spec
from mlk8s.preprocessing.worker_sizing import PoolShape

pytest_plugins = ["tests.integration.ray_fixtures"]

USER = "tests.unit.mlk8s.preprocessing.user_transforms"
FOUR_CPU_NODES = PoolShape(cpus_now=8, max_gpus=0, cpus_per_node=4)


def test_the_embedding_worker_reserves_a_node_and_other_workers_one_cpu() -> None:
    embedding = list(load_spec(None).steps)
    assert worker_cpus(embedding, FOUR_CPU_NODES) == 4
    assert worker_cpus(list(parse_spec({"steps": ["clean_text"]}).steps), FOUR_CPU_NODES) == 1
    assert worker_cpus(list(parse_spec({"steps": ["clean_text", f"{USER}.Tagger"]}).steps), FOUR_CPU_NODES) == 1
    asked = parse_spec({"steps": ["clean_text", {"use": "embed", "num_cpus": 3}]})
    assert worker_cpus(list(asked.steps), FOUR_CPU_NODES) == 3


def test_the_embedding_asks_for_a_gpu_the_pool_can_scale_to() -> None:
    embed = load_spec(None).steps[-1]
    tagger = parse_spec({"steps": [f"{USER}.Tagger"]}).steps[0]
    assert step_gpus(embed, FOUR_CPU_NODES) == 0
    assert step_gpus(embed, PoolShape(cpus_now=2, max_gpus=2, cpus_per_node=4)) == 1
    assert step_gpus(tagger, PoolShape(cpus_now=2, max_gpus=2, cpus_per_node=4)) == 0  # user code: only if asked
    assert step_gpus(parse_spec({"steps": [{"use": "embed", "num_gpus": 0}]}).steps[0], PoolShape(2, 2, 4)) == 0


def _group(max_count: int, **resources: float) -> SimpleNamespace:
    return SimpleNamespace(max_count=max_count, resources=resources)


def test_the_pool_shape_comes_from_the_autoscaler_config_when_groups_are_scaled_to_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    config = SimpleNamespace(
        node_group_configs=[_group(1), _group(10, CPU=4), _group(2, CPU=8, GPU=1), _group(0, CPU=1)]
    )
    state = SimpleNamespace(
        get_cluster_config=lambda: config, get_max_resources_from_cluster_config=lambda: {"CPU": 56, "GPU": 2}
    )
    monkeypatch.setattr(worker_sizing, "_state", lambda: state)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"memory": 1e9})  # a zero-CPU head, nothing else up
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"memory": 1e9}}])
    # The head's group (no CPU), the GPU group and a group that may not scale are not CPU worker sizes.
    assert worker_sizing.pool_shape() == PoolShape(cpus_now=1.0, max_gpus=2.0, cpus_per_node=4.0)


def test_without_an_autoscaler_the_alive_nodes_give_the_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    state = SimpleNamespace(get_cluster_config=lambda: None, get_max_resources_from_cluster_config=lambda: None)
    monkeypatch.setattr(worker_sizing, "_state", lambda: state)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 3.0})
    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": True, "Resources": {"CPU": 1.0}}]
    monkeypatch.setattr(ray, "nodes", lambda: [*nodes, {"Alive": False, "Resources": {"CPU": 0.5}}])
    assert worker_sizing.pool_shape() == PoolShape(cpus_now=3.0, max_gpus=0.0, cpus_per_node=1.0)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize(
    "steps",
    [["clean_text"], ["clean_text", f"{USER}.Tagger"], ["clean_text", {"use": f"{USER}.Tagger", "concurrency": 1}]],
    ids=["fused", "fused-actor", "actor-pool"],
)
def test_the_dataset_rows_describe_the_written_parts(ray_client: Any, tmp_path: Path, steps: list[Any]) -> None:
    source = open_input(str(write_documents(tmp_path / "d.jsonl", rows=90)))
    writer = PartWriter(str(tmp_path / "out"), "run_key=r", "a1", pa.schema([("id", pa.string())]))
    described = [r for b in build_dataset(parse_spec({"steps": steps}), source, writer).iter_batches(
        batch_size=None, batch_format="pyarrow") for r in b.to_pylist()]  # fmt: skip
    assert sum(r["input_rows"] for r in described) == 90 == sum(r["rows"] for r in described)
    assert all((tmp_path / "out" / r["path"]).stat().st_size == r["bytes"] for r in described if r["path"])
