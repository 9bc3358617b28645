"""Models are scored through their task on the held-out rows of the split seed: the candidate's own numbers come
back, and a model that does not fit the task's shapes is reported as incomparable."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlk8s.model_registry.model_files import read_model
from mlk8s.model_registry.scoring import Scorer

OPTIONS = {"layers": "1", "shifts": "0"}


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer(data=None, seed=0)


def test_scores_reproduce_what_training_reported(trained: dict[str, Path], scorer: Scorer) -> None:
    for name in ("weak", "strong"):
        model = read_model(str(trained[name]))
        score = scorer.score(model, {**OPTIONS, "hidden": "8"})
        assert score.incomparable is None
        assert score.metrics["held_out_accuracy"] == pytest.approx(model.info.metrics["held_out_accuracy"])
        assert score.task_info["held_out_rows"] == 359


def test_weights_of_other_shapes_are_incomparable(trained: dict[str, Path], scorer: Scorer) -> None:
    wide = read_model(str(trained["wide"]))
    score = scorer.score(wide, {**OPTIONS, "hidden": "8"})  # built with 8 units, the weights have 16
    assert score.metrics == {}
    assert score.incomparable and "do not fit the model the task builds here" in score.incomparable


def test_a_model_trained_on_other_classes_is_incomparable(
    trained: dict[str, Path], scorer: Scorer, tmp_path: Path
) -> None:
    import json
    import shutil

    copy = tmp_path / "strings"
    shutil.copytree(trained["weak"], copy)
    info = json.loads((copy / "model.json").read_text())
    info["task_info"]["class_names"] = ["cooking", "sports"]
    (copy / "model.json").write_text(json.dumps(info))
    score = scorer.score(read_model(str(copy)), {**OPTIONS, "hidden": "8"})
    assert score.incomparable and "trained on classes ['cooking', 'sports']" in score.incomparable
