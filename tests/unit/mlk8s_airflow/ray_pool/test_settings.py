"""The pool loop's settings: every bad argument refused before any work, naming the argument and the fix; plain
JSON both ways; and the DAG's Params schema generated from the one definition of a worker group."""

from __future__ import annotations

from typing import Any

import pytest

from mlk8s.scaling import ResourceDemand, WorkerGroupSpec
from mlk8s_airflow.ray_pool.settings import RayPoolSettings, worker_groups_schema

CPU = {"name": "cpu", "min_workers": 0, "max_workers": 4, "cpus_per_worker": 2}


def settings(**overrides: Any) -> RayPoolSettings:
    return RayPoolSettings.parse({"groups": [CPU], "actuator": "local", "ray_address": "127.0.0.1:6379", **overrides})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"actuator": "kuberay"}, r"actuator='kuberay' is not a known actuator mode; use one of 'kuberay-cooperate'"),
        ({"groups": []}, r"groups is empty; pass one dict per Ray worker group, e.g. \{'name': 'cpu'"),
        ({"groups": [{**CPU, "min_workers": 5}]}, r"groups\[0\]: .*max_workers=4 < min_workers=5; set max_workers >="),
        ({"groups": [{**CPU, "cpu": 2}]}, r"groups\[0\]\.cpu: unknown key; allowed keys are name, min_workers"),
        ({"groups": [{**CPU, "cpus_per_worker": -1}]}, r"groups\[0\]: .*cpus_per_worker=-1.0; set it to the CPUs"),
        ({"policy": {"scale_down_windw_s": 5}}, r"policy\.scale_down_windw_s: unknown key; .*scale_down_window_s"),
        ({"actuator": "kuberay-own"}, "actuator='kuberay-own' needs raycluster_name and namespace"),
        ({"ray_address": "auto"}, r"ray_address='auto': pass the Ray GCS address as host:port"),
        ({"interval_s": 0}, r"interval_s=0: Input should be greater than 0"),
        ({"history_length": 0}, r"history_length=0: Input should be greater than or equal to 1"),
        ({"pool": ""}, r"pool='': String should have at least 1 character"),
        (
            {"queue_pools": {"ray-gpu": {"gpu": 1}}},
            r"queue_pools\['ray-gpu'\]\.gpu: unknown key; allowed keys are cpus",
        ),
        ({"bogus": 1}, r"bogus: unknown key; allowed keys are groups, actuator"),
    ],
)
def test_bad_settings_are_refused_naming_the_argument_and_the_fix(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings(**overrides)


def test_settings_round_trip_through_json_into_the_policys_own_types() -> None:
    original = settings(
        policy={"scale_down_window_s": 60, "prewarm_s": 300, "prewarm_demand": [{"cpus": 2, "count": 3}]},
        queue_pools={"ray-gpu": {"cpus": 1, "gpus": 1}},
        prewarm_dag_ids=["nightly"],
    )
    again = RayPoolSettings.parse(original.to_json())
    assert again == original
    assert again.policy.prewarm_demand == (ResourceDemand(cpus=2, count=3),)
    assert again.queue_pools["ray-gpu"] == ResourceDemand(cpus=1, gpus=1)
    assert again.groups == (WorkerGroupSpec("cpu", 0, 4, 2.0),)


def test_the_groups_params_schema_is_the_worker_group_definition() -> None:
    schema = worker_groups_schema()
    item = schema["items"]
    # Every field of the one definition, required exactly where the dataclass has no default.
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(WorkerGroupSpec)}
    assert set(item["properties"]) == set(fields)
    assert set(item["required"]) == {n for n, f in fields.items() if f.default is dataclasses.MISSING}
    assert item["additionalProperties"] is False and schema["minItems"] == 1
    # ... and what the schema accepts, the settings accept (and the other way round for an unknown key).
    import jsonschema

    jsonschema.validate([CPU], schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{**CPU, "cpu": 2}], schema)
    settings(groups=[CPU])
