"""Nightly retrain: documents -> Ray preprocessing (features + embeddings) -> checkpointed torch training.

Runs unchanged on Kubernetes (``[mlk8s] backend = kubernetes``, the Helm values) and locally
(``backend = local``, what ``make demo`` uses): the operators build the same pod specs either way.
This file only wires tasks; everything heavy happens inside the pods.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Asset, Param, dag

from mlk8s_airflow.operators.pod import PodTaskOperator
from mlk8s_airflow.operators.preprocessing import PreprocessingOperator
from mlk8s_airflow.operators.training import TrainingOperator

# Read once at parse time (cheap): where this deployment keeps its data. s3:// or gs:// in a cluster.
DATA_ROOT = os.environ.get("MLK8S_DATA_ROOT", "s3://mlk8s-data")
IMAGE = os.environ.get("MLK8S_IMAGE", "ghcr.io/mlk8s/mlk8s:0.1.0")

FEATURES = Asset(name="document_features", uri=f"{DATA_ROOT}/features")
MODEL = Asset(name="document_classifier", uri=f"{DATA_ROOT}/models/document_classifier")


@dag(
    dag_id="nightly_retrain",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["mlk8s", "training", "ray"],
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=5), "image": IMAGE},
    params={
        "data_root": Param(
            DATA_ROOT,
            type="string",
            minLength=1,
            description="Where raw data, features, checkpoints and models live (a path, s3:// or gs:// URI).",
        ),
        "documents": Param(
            300,
            type="integer",
            minimum=1,
            maximum=10_000_000,
            description="How many sample documents the extract step writes.",
        ),
        "epochs": Param(20, type="integer", minimum=1, maximum=1000, description="Training epochs."),
        "seed": Param(0, type="integer", minimum=0, description="Seed: the same seed and data give the same model."),
        "simulate_eviction": Param(
            False,
            type="boolean",
            description="Local backend only: evict the training pod "
            "once (SIGTERM after its first checkpoint) to show it resume.",
        ),
    },
    doc_md=__doc__,
)
def nightly_retrain() -> None:
    day = "{{ params.data_root }}/{{ ds_nodash }}"
    extract = PodTaskOperator(
        task_id="extract_documents",
        cmds=["python", "-m", "mlk8s.preprocessing.samples"],
        arguments=["--output", f"{day}/raw/documents.parquet", "--rows", "{{ params.documents }}"],
        do_xcom_push=False,
    )
    preprocess = PreprocessingOperator(
        task_id="preprocess",
        input_uri=f"{day}/raw/documents.parquet",
        output_uri=f"{day}/features",
        output_asset=FEATURES,
    )
    train = TrainingOperator(
        task_id="train",
        data_uri=f"{day}/features",
        checkpoint_uri="{{ params.data_root }}/checkpoints/{{ run_id | replace(':', '_') | replace('+', '_') }}",
        output_uri=f"{day}/model",
        epochs="{{ params.epochs }}",
        seed="{{ params.seed }}",
        checkpoint_every_steps=50,
        model_asset=MODEL,
        local_disruption={
            "enabled": "{{ params.simulate_eviction }}",
            "signal": "SIGTERM",
            "after_log": "checkpoint committed step=",
            "attempts": [1],
        },
    )
    extract >> preprocess >> train


nightly_retrain()
