"""Number bounds the trigger form cannot clamp, and the check that refuses conf keys no Param declares."""

from __future__ import annotations

from types import SimpleNamespace

import pendulum
import pytest
from airflow.sdk import DAG, Param
from airflow.sdk.exceptions import AirflowFailException, ParamValidationError

from mlk8s_airflow.dag_params import (
    CONF_CHECK_TASK_ID,
    ConfCheckOperator,
    number_param,
    unknown_conf_keys,
    unknown_keys_message,
)


def test_bounds_live_where_the_trigger_form_does_not_clamp() -> None:
    param = number_param(5, description="Epochs.", minimum=1, maximum=10)
    # The form's NumberInput gets min/max from these two top-level keys only; they must be absent.
    assert "minimum" not in param.schema and "maximum" not in param.schema
    assert param.schema["type"] == "integer"
    assert param.description == "Epochs. (>= 1, <= 10)"


@pytest.mark.parametrize(("value", "message"), [(-1, "less than the minimum of 1"), (11, "greater than the maximum")])
def test_out_of_range_values_are_refused_with_the_bound(value: int, message: str) -> None:
    param = number_param(5, description="Epochs.", minimum=1, maximum=10)
    with pytest.raises(ParamValidationError, match=message):
        param.resolve(value)
    assert param.resolve(1) == 1 and param.resolve(10) == 10


def test_number_params_take_fractions_and_exclusive_bounds() -> None:
    param = number_param(0.5, description="Fraction.", integer=False, exclusive_minimum=0, maximum=1)
    assert param.resolve(1) == 1 and param.resolve(0.25) == 0.25
    with pytest.raises(ParamValidationError, match="less than or equal to the minimum of 0"):
        param.resolve(0)
    with pytest.raises(ParamValidationError, match="not of type 'integer'"):
        number_param(1, description="x", minimum=0).resolve(1.5)
    assert param.description == "Fraction. (> 0, <= 1)"


def test_a_default_outside_the_bounds_fails_at_parse_time() -> None:
    with pytest.raises(ParamValidationError):
        number_param(0, description="x", minimum=1)


def test_unknown_keys_are_found_and_named_with_the_closest_declared_one() -> None:
    assert unknown_conf_keys({"epochs": 1, "seed": 0}, ["epochs", "seed"]) == []
    assert unknown_conf_keys(None, ["epochs"]) == []
    assert unknown_conf_keys({"epoch": 1, "zzz": 2}, ["epochs", "seed"]) == ["epoch", "zzz"]
    message = unknown_keys_message("nightly_retrain", ["epoch", "zzz"], ["seed", "epochs"])
    assert "'epoch' (did you mean 'epochs'?)" in message and "'zzz'," not in message
    assert "declares epochs, seed" in message


def _check_op(dag_params: dict[str, Param]) -> ConfCheckOperator:
    with DAG("conf_check_unit", schedule=None, start_date=pendulum.datetime(2025, 1, 1), params=dag_params):
        return ConfCheckOperator()


def test_the_check_fails_the_run_without_spending_a_retry_on_an_unknown_key() -> None:
    op = _check_op({"epochs": Param(1, type="integer")})
    assert op.task_id == CONF_CHECK_TASK_ID
    with pytest.raises(AirflowFailException, match="'epoch' \\(did you mean 'epochs'\\?\\)"):
        op.execute({"dag_run": SimpleNamespace(conf={"epoch": 3})})  # type: ignore[arg-type]
    op.execute({"dag_run": SimpleNamespace(conf={"epochs": 3})})  # type: ignore[arg-type]
    op.execute({"dag_run": SimpleNamespace(conf=None)})  # type: ignore[arg-type]
