"""The time series and the error records the sensor keeps for the UI."""

from __future__ import annotations

from mlk8s.ray_gcs import RayState
from mlk8s.scaling import Decision, QueueSnapshot, ResourceDemand
from mlk8s_airflow.ray_pool.history import ERROR_CHARS, append_bounded, error_record, time_series_point


def test_a_point_shows_the_queue_against_the_pool_and_why() -> None:
    decisions = [
        Decision("cpu", current=1, target=3, remove=(), reason="scale up 1 -> 3; backlog"),
        Decision("gpu", current=0, target=0, remove=(), reason="hold 0"),
    ]
    ray = RayState(demand=(ResourceDemand(cpus=1, count=4),), nodes=())
    queues = [QueueSnapshot(queued=4, scheduled=2, running=1), QueueSnapshot(queued=1)]
    assert time_series_point(12.5, queues, ray, decisions) == {
        "t": 12.5,
        "queued": 7,
        "running": 1,
        "ray_pending": 4,
        "pool": 1,
        "target": 3,
        "groups": {"cpu": [1, 3], "gpu": [0, 0]},
        "reason": "cpu: scale up 1 -> 3; backlog",
    }
    assert time_series_point(1.0, queues, None, decisions)["ray_pending"] is None


def test_an_error_record_is_one_short_line_with_its_time_and_cycle() -> None:
    record = error_record(99.1234, 7, ConnectionError("GCS unreachable\nTraceback ..."))
    assert record == {"t": 99.123, "cycle": 7, "message": "ConnectionError: GCS unreachable"}
    assert len(error_record(1.0, 1, RuntimeError("x" * 5000))["message"]) == ERROR_CHARS
    assert error_record(1.0, 1, KeyError())["message"] == "KeyError"


def test_lists_keep_the_newest() -> None:
    assert append_bounded([1, 2, 3, 4, 5], [6, 7], limit=3) == [5, 6, 7]
