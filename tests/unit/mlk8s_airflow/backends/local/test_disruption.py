"""The local backend's simulated eviction settings: a clear error for each bad one."""

from __future__ import annotations

import pytest

from mlk8s_airflow.backends.local.disruption import LocalDisruption
from mlk8s_airflow.backends.podspec import PodSpecError


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"signal": "SIGSTOP", "after_s": 1}, "signal is .SIGSTOP."),
        ({"signal": "SIGINT", "after_s": 1}, "signal is .SIGINT."),
        ({"signal": "SIGKILL"}, "needs after_log"),
        ({"after_log": "(", "signal": "SIGKILL"}, "not a valid regex"),
        ({"after_s": 1, "when": "now"}, "unknown keys"),
    ],
)
def test_bad_disruption_settings(raw: dict, match: str) -> None:
    with pytest.raises(PodSpecError, match=match):
        LocalDisruption.from_dict(raw)


def test_disabled_by_a_rendered_template() -> None:
    assert LocalDisruption.from_dict({"enabled": "False", "after_s": 1}) is None
    assert LocalDisruption.from_dict({"enabled": "true", "after_s": 1}) == LocalDisruption(after_s=1.0)
