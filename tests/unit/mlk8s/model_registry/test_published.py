"""The pointer moves by compare-and-swap, atomically, with history; republishing the live model is a no-op."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from mlk8s.model_registry.model_files import read_model
from mlk8s.model_registry.published import Registry, RegistryError

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_nothing_is_live_in_a_new_registry(tmp_path: Path) -> None:
    assert Registry(str(tmp_path / "reg")).published() is None


def test_publish_moves_the_pointer_and_records_history(trained: dict[str, Path], tmp_path: Path) -> None:
    registry = Registry(str(tmp_path / "reg"))
    weak, strong = read_model(str(trained["weak"])), read_model(str(trained["strong"]))
    live, moved = registry.publish(weak, expect_live=None, task_options={"hidden": "8"}, run_key="r1", now=T0)
    assert moved and live.weights_sha256 == weak.sha256 and live.run_key == "r1"
    assert registry.published() == live
    live2, moved2 = registry.publish(
        strong, expect_live=weak.sha256, task_options={}, run_key="r2", now=T0 + dt.timedelta(days=1)
    )
    assert moved2 and live2.replaces_sha256 == weak.sha256
    assert registry.published() == live2
    history = sorted((tmp_path / "reg" / "history").iterdir())
    assert [json.loads(p.read_text())["run_key"] for p in history] == ["r1", "r2"]
    assert not [p for p in (tmp_path / "reg").rglob(".*tmp*")]  # no temporary files left behind


def test_republishing_the_live_model_is_a_no_op(trained: dict[str, Path], tmp_path: Path) -> None:
    registry = Registry(str(tmp_path / "reg"))
    weak = read_model(str(trained["weak"]))
    first, _ = registry.publish(weak, expect_live=None, task_options={}, run_key="r1", now=T0)
    again, moved = registry.publish(weak, expect_live=None, task_options={}, run_key="r1-rerun")
    assert not moved and again == first
    assert len(list((tmp_path / "reg" / "history").iterdir())) == 1


def test_a_pointer_moved_since_evaluation_is_not_overwritten(trained: dict[str, Path], tmp_path: Path) -> None:
    registry = Registry(str(tmp_path / "reg"))
    weak, strong = read_model(str(trained["weak"])), read_model(str(trained["strong"]))
    registry.publish(weak, expect_live=None, task_options={}, run_key="other-run", now=T0)
    before = (tmp_path / "reg" / "published.json").read_bytes()
    with pytest.raises(RegistryError, match="live model changed since the candidate was evaluated"):
        registry.publish(strong, expect_live=None, task_options={}, run_key="late")
    assert (tmp_path / "reg" / "published.json").read_bytes() == before


def test_a_damaged_pointer_says_where_history_is(tmp_path: Path) -> None:
    (tmp_path / "reg").mkdir()
    (tmp_path / "reg" / "published.json").write_text("{}")
    with pytest.raises(RegistryError, match="restore it from the newest entry under"):
        Registry(str(tmp_path / "reg")).published()
