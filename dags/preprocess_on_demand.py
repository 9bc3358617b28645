"""Preprocess documents on demand, from the trigger form: pick the input, a pipeline, embeddings on or off,
a sample fraction and where the output goes.

The pipeline is one of the built-ins (``documents``: HTML to text, clean text, features, drop empty
documents; ``text_only``: without the features) or your own spec (``pipeline`` = ``spec`` and the spec in
``pipeline_spec``). ``embeddings`` adds the embedding step to a built-in; ``sample_fraction`` keeps that part
of the rows, chosen by id, the same rows on every rerun. The spec is composed and checked before anything
runs: a bad one fails the run at ``pipeline`` with the field named. With no ``input_uri``, the run writes
``sample_documents`` sample documents of its own first. Output is committed exactly once (a rerun replaces
it) under ``output_uri`` or, if that is empty, under this run's own key. This file only wires tasks.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from mlk8s.preprocessing.builtin_pipelines import NAMES as PIPELINES
from mlk8s_airflow.dag_params import ConfCheckOperator, number_param
from mlk8s_airflow.operators.pod import PodTaskOperator
from mlk8s_airflow.operators.preprocessing import PreprocessingOperator
from mlk8s_airflow.run_keys import RUN_KEY_FILTERS

DATA_ROOT = os.environ.get("MLK8S_DATA_ROOT", "s3://mlk8s-data")
IMAGE = os.environ.get("MLK8S_IMAGE", "ghcr.io/mlk8s/mlk8s:0.1.0")

RUN_DIR = f"{DATA_ROOT}/preprocess_on_demand/runs/" + "{{ run_id | run_key }}"
SAMPLES = f"{RUN_DIR}/input/documents.parquet"
#: The same run directory as a Jinja expression, for fields that default to it when their Param is empty.
_RUN_DIR_EXPR = json.dumps(f"{DATA_ROOT}/preprocess_on_demand/runs/") + " ~ (run_id | run_key)"


@dag(
    dag_id="preprocess_on_demand",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["mlk8s", "ray", "preprocessing"],
    default_args={"retries": 1, "retry_delay": pendulum.duration(minutes=1), "image": IMAGE},
    user_defined_filters=RUN_KEY_FILTERS,
    params={
        "input_uri": Param(
            None,
            # Nullable: the trigger form disables its button while a required (non-null) field is empty.
            type=["null", "string"],
            pattern=r"^\S*$",
            description="Documents to preprocess: a file or directory of Parquet, JSON lines or text/HTML files "
            "(a path, s3:// or gs:// URI). Empty: this run writes sample documents of its own first.",
        ),
        "sample_documents": number_param(
            200, minimum=1, maximum=1_000_000, description="How many sample documents to write when input_uri is empty."
        ),
        "pipeline": Param(
            "documents",
            enum=list(PIPELINES),
            description="documents: HTML to text, clean text, features, drop empty documents; text_only: the same "
            "without features; spec: your own spec, given in pipeline_spec.",
        ),
        "pipeline_spec": Param(
            {},
            type="object",
            description='Only with pipeline = spec: {"steps": [{"use": "clean_text"}, ...], "schema": ...} '
            "(see python -m mlk8s.preprocessing --help).",
        ),
        "embeddings": Param(
            True, type="boolean", description="Add 384-dim sentence embeddings (column embedding) to a built-in."
        ),
        "sample_fraction": number_param(
            1.0,
            integer=False,
            exclusive_minimum=0,
            maximum=1,
            description="The part of the input rows to keep, chosen by id (the same rows on every rerun).",
        ),
        "output_uri": Param(
            None,
            # Nullable: the trigger form disables its button while a required (non-null) field is empty.
            type=["null", "string"],
            pattern=r"^\S*$",
            description="Where the output is committed (replaced by a rerun). Empty: under this run's own "
            f"directory in {DATA_ROOT}/preprocess_on_demand/runs/.",
        ),
    },
    doc_md=__doc__,
)
def preprocess_on_demand() -> None:
    check = ConfCheckOperator()

    @task
    def pipeline() -> dict[str, Any]:
        """The spec for the form's choices, checked here so a bad one fails before any Ray work."""
        from mlk8s.preprocessing.builtin_pipelines import compose
        from mlk8s.preprocessing.spec import SpecError

        params = get_current_context()["params"]
        try:
            return compose(
                params["pipeline"],
                embeddings=bool(params["embeddings"]),
                sample_fraction=float(params["sample_fraction"]),
                spec=params["pipeline_spec"],
            )
        except SpecError as exc:
            raise AirflowFailException(f"Params pipeline/pipeline_spec: {exc}") from None

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def needs_samples() -> bool:
        """Skips the sample writer when the form names an input."""
        return not get_current_context()["params"]["input_uri"]

    samples = PodTaskOperator(
        task_id="write_samples",
        cmds=["python", "-m", "mlk8s.preprocessing.samples"],
        arguments=["--output", SAMPLES, "--rows", "{{ params.sample_documents }}"],
        do_xcom_push=False,
    )
    spec = pipeline()
    preprocess = PreprocessingOperator(
        task_id="preprocess",
        input_uri="{{ params.input_uri or (" + _RUN_DIR_EXPR + " ~ '/input/documents.parquet') }}",
        output_uri="{{ params.output_uri or (" + _RUN_DIR_EXPR + " ~ '/output') }}",
        pipeline=spec,  # type: ignore[arg-type]  # an XComArg: the dict, when the task runs
        trigger_rule="none_failed",
    )
    gate = needs_samples()
    # The spec is checked before any sample is written: a bad one leaves nothing behind in the data root.
    check >> spec >> gate >> samples >> preprocess
    spec >> preprocess


preprocess_on_demand()
