"""The built-in task: digits with shifted copies, Parquet and old-layout preprocessing outputs, string labels."""

from __future__ import annotations

import json
from pathlib import Path

from mlk8s.pod_contract import EXIT_OK
from tests.unit.mlk8s.training.runs import config, train


def test_parquet_embeddings_with_string_labels(tmp_path: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    data = tmp_path / "embedded"
    data.mkdir()
    for part in range(2):
        emb = rng.normal(size=(40, 6)).astype(np.float32)
        labels = np.where(emb[:, 0] > 0, "pos", "neg")
        table = pa.table({"id": np.arange(40), "embedding": list(emb), "label": labels})
        pq.write_table(table, data / f"part-{part}.parquet")
    (data / "_SUCCESS").write_text("")
    cfg = config(tmp_path, data=str(data), batch_size=16, epochs=2, task_options={"hidden": "8"})
    outcome = train(cfg)
    assert outcome.exit_code == EXIT_OK
    info = json.loads((tmp_path / "out" / "model.json").read_text())
    assert info["task_info"]["class_names"] == ["neg", "pos"]
    assert info["task_info"]["num_features"] == 6
    assert info["task_info"]["train_rows"] + info["task_info"]["held_out_rows"] == 80


def test_trains_on_a_committed_preprocessing_output(tmp_path: Path) -> None:
    """The nightly DAG's shape: a Delta table; only the files its log commits are read (not a killed run's)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import write_deltalake

    rng = np.random.default_rng(1)
    output = str(tmp_path / "embedded")
    for _ in range(2):
        emb = rng.normal(size=(30, 5)).astype(np.float32)
        table = pa.table(
            {"id": [str(i) for i in range(30)], "label": (emb[:, 1] > 0).astype(np.int64), "embedding": list(emb)}
        )
        write_deltalake(output, table, mode="append")
    pq.write_table(table, tmp_path / "embedded" / "part-of-a-killed-run.parquet")  # never committed
    outcome = train(config(tmp_path, data=output, batch_size=16, epochs=1, task_options={"hidden": "8"}))
    assert outcome.exit_code == EXIT_OK
    info = json.loads((tmp_path / "out" / "model.json").read_text())
    assert info["task_info"]["train_rows"] + info["task_info"]["held_out_rows"] == 60
    assert info["task_info"]["num_classes"] == 2


def test_shifted_digits_adds_four_one_pixel_moves() -> None:
    import numpy as np

    from mlk8s.training.example import shifted_digits

    image = np.zeros((1, 64), dtype=np.float32)
    image[0, 3 * 8 + 4] = 1.0  # row 3, column 4
    features, labels = shifted_digits(image, np.array([7]))
    assert features.shape == (5, 64) and labels.tolist() == [7] * 5
    lit = sorted(divmod(int(np.flatnonzero(f)[0]), 8) for f in features)
    assert lit == [(2, 4), (3, 3), (3, 4), (3, 5), (4, 4)]
