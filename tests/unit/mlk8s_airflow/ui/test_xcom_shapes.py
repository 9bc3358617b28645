"""The XCom shapes: a value of the wrong shape is a message naming the field, never an exception."""

from __future__ import annotations

from mlk8s_airflow.ui.xcom_shapes import PoolPoint, SensorError, TrainingResult, parse, parse_list


def test_a_training_result_with_history_parses_and_ignores_unknown_fields() -> None:
    result, problem = parse(
        TrainingResult,
        {
            "steps": 10,
            "relaunches": 1,
            "weights_sha256": "ab",  # not read by the page: ignored
            "history": {"loss": [{"step": 5, "epoch": 0, "loss": 0.5}], "checkpoints": [], "resumes": []},
        },
        "result",
    )
    assert problem is None and result is not None
    assert result.relaunches == 1 and result.history is not None and result.history.loss[0].loss == 0.5


def test_a_wrong_field_is_named_with_its_path() -> None:
    result, problem = parse(TrainingResult, {"history": {"loss": [{"step": 1}, {"step": "x"}]}}, "result")
    assert result is None
    assert problem is not None and problem.startswith("result history.loss.1.step:")


def test_no_value_is_no_problem() -> None:
    assert parse(TrainingResult, None, "result") == (None, None)
    assert parse_list(PoolPoint, None, "h") == ([], None)


def test_a_list_keeps_its_good_items_and_names_the_first_bad_one() -> None:
    items, problem = parse_list(
        SensorError, [{"t": 1, "message": "a"}, {"t": 2}, {"t": 3, "message": "c"}], "ray_pool_errors"
    )
    assert [e.message for e in items] == ["a", "c"]
    assert problem is not None and problem.startswith("ray_pool_errors[1] message:")


def test_a_list_xcom_that_is_not_a_list_says_so() -> None:
    assert parse_list(PoolPoint, {"t": 1}, "ray_pool_history") == ([], "ray_pool_history: expected a list, found dict")
