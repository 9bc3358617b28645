"""The built-in task: an MLP classifier over feature vectors.

With no ``--data`` it trains on scikit-learn's bundled digits (8x8 images, 10 classes), so the demo and the
tests need no download. With ``--data`` it reads a Delta table (a version, optionally one partition), Parquet
files or an old-layout preprocessing output (mlk8s.training.data) with a list<float> column ``embedding`` and an
integer or string column ``label``: the shape the preprocessing pipeline writes. The rows are copied batch by
batch into a memory-mapped cache (mlk8s.training.features) and each step gathers its batch from it.
Options (``--task-option KEY=VALUE``): hidden (units per layer, 256), layers (hidden layers,
2), dropout (0.1), held-out (fraction kept for evaluation, 0.2), shifts (digits only: 1 adds the training
images moved by one pixel in each direction, 5x the rows per epoch; 0 turns that off).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mlk8s.training.features import in_memory_features, read_features
from mlk8s.training.task import TaskContext, TaskUsageError, TrainingTask

if TYPE_CHECKING:
    import numpy as np
    import torch

#: Rows per forward pass when evaluating (a bound on evaluation memory, whatever the dataset size).
EVAL_ROWS = 65536


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (1797 x 64 pixels in 0..16, labels 0..9).

    Read straight from the CSV that scikit-learn ships, because importing ``sklearn.datasets`` costs seconds
    of pod start-up (scipy and friends) on every relaunch; falls back to the public loader if the file moved.
    """
    import importlib.util
    from pathlib import Path

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            raw = np.loadtxt(path, delimiter=",", dtype=np.float64)
            return raw[:, :-1], raw[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.asarray(digits.data, dtype=np.float64), np.asarray(digits.target, dtype=np.int64)


def shifted_digits(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training images plus copies moved one pixel up, down, left and right (zero-filled).

    A classic augmentation for digits: it helps held-out accuracy, and it gives the example epochs long enough
    (7,185 rows) that an epoch-end checkpoint is small next to the epoch, as it is in real training.
    """
    import numpy as np

    images = features.reshape(-1, 8, 8)
    copies = [images]
    for axis, shift in ((1, -1), (1, 1), (2, -1), (2, 1)):
        moved = np.roll(images, shift, axis=axis)
        edge = 0 if shift == 1 else -1
        if axis == 1:
            moved[:, edge, :] = 0.0
        else:
            moved[:, :, edge] = 0.0
        copies.append(moved)
    return np.concatenate(copies).reshape(-1, features.shape[1]), np.tile(labels, len(copies))


class ClassifierTask(TrainingTask):
    options = ("hidden", "layers", "dropout", "held-out", "shifts")

    def __init__(self, context: TaskContext) -> None:
        super().__init__(context)
        self.hidden = context.int_option("hidden", 256, minimum=1)
        self.layers = context.int_option("layers", 2, minimum=0)
        self.dropout = context.float_option("dropout", 0.1)
        self.held_out = context.float_option("held-out", 0.2)
        if not 0.0 <= self.dropout < 1.0:
            raise TaskUsageError("--task-option", f"dropout={self.dropout} must be in [0, 1)")
        if not 0.0 <= self.held_out < 1.0:
            raise TaskUsageError("--task-option", f"held-out={self.held_out} must be in [0, 1)")
        self.shifts = context.int_option("shifts", 1, minimum=0)
        if self.shifts > 1:
            raise TaskUsageError("--task-option", f"shifts={self.shifts} must be 0 or 1")
        if "shifts" in context.options and context.data is not None:
            raise TaskUsageError("--task-option", "shifts applies to the built-in digits only; drop it with --data")
        self.class_names: list[str] | None = None

    def setup(self) -> None:
        import numpy as np
        import torch

        self.fingerprint: dict[str, Any]
        if self.context.data is None:
            pixels, labels = load_digits_arrays()
            self.features = in_memory_features(pixels / 16.0, labels)
            self.fingerprint = {"kind": "builtin", "uri": "sklearn:digits"}
            self.source = "sklearn:digits"
        else:
            from mlk8s.training.data import open_source

            source = open_source(
                self.context.data,
                partition=self.context.data_partition,
                version=self.context.data_version,
                timeout_s=self.context.storage_timeout_s,
            )
            self.features = read_features(source)
            self.fingerprint = source.identity()
            self.source = self.context.data
        self.fingerprint |= {"rows": self.features.rows, "content_sha256": self.features.content_sha256}
        self.class_names = self.features.class_names
        n = self.features.rows
        # The split depends only on the seed (its own generator), never on the global RNG state.
        order = np.random.default_rng(np.random.SeedSequence([self.context.seed, 0x5E1D])).permutation(n)
        n_held = round(n * self.held_out)
        if n - n_held < 1:
            raise TaskUsageError("--data", f"only {n} rows: nothing left to train on after the split")
        held, train = order[:n_held], order[n_held:]
        device = self.context.device
        if self.context.data is None:
            train_x, train_y = self.features.x[train], self.features.y[train]
            if self.shifts:
                train_x, train_y = shifted_digits(train_x, train_y)
            # Small and in memory: whole tensors on the device, indexed there.
            self.x: torch.Tensor | None = torch.from_numpy(train_x).to(device)
            self.y: torch.Tensor | None = torch.from_numpy(train_y).to(device)
            self.train_rows: np.ndarray | None = None
        else:
            self.x = self.y = None
            self.train_rows = train
        self.held_rows = held
        self.num_features = int(self.features.x.shape[1])
        labels = self.features.y
        self.num_classes = len(self.class_names) if self.class_names is not None else int(labels.max()) + 1

    def train_size(self) -> int:
        if self.x is not None:
            return int(self.x.shape[0])
        assert self.train_rows is not None
        return len(self.train_rows)

    def get_batch(self, indices: torch.Tensor) -> Any:
        import torch

        if self.x is not None and self.y is not None:
            if self.x.device.type != "cpu":
                indices = indices.to(self.x.device, non_blocking=True)
            return self.x[indices], self.y[indices]
        assert self.train_rows is not None
        return self._gather(self.train_rows[indices.numpy()], torch)

    def _gather(self, rows: np.ndarray, torch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.context.device
        x = torch.from_numpy(self.features.x[rows]).to(device, non_blocking=True)
        y = torch.from_numpy(self.features.y[rows]).to(device, non_blocking=True)
        return x, y

    def data_fingerprint(self) -> dict[str, Any]:
        return dict(self.fingerprint)

    def build_model(self) -> torch.nn.Module:
        import torch

        layers: list[torch.nn.Module] = []
        width = self.num_features
        for _ in range(self.layers):
            layers += [torch.nn.Linear(width, self.hidden), torch.nn.ReLU(), torch.nn.Dropout(self.dropout)]
            width = self.hidden
        layers.append(torch.nn.Linear(width, self.num_classes))
        return torch.nn.Sequential(*layers)

    def training_step(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        import torch

        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y)

    def build_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        import torch

        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))

    def _chunks(self, rows: np.ndarray | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Evaluation batches of at most EVAL_ROWS: the in-memory training tensors, or rows of the features."""
        import torch

        if rows is None:
            assert self.x is not None and self.y is not None
            for start in range(0, len(self.y), EVAL_ROWS):
                yield self.x[start : start + EVAL_ROWS], self.y[start : start + EVAL_ROWS]
            return
        for start in range(0, len(rows), EVAL_ROWS):
            yield self._gather(rows[start : start + EVAL_ROWS], torch)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        import torch

        def score(chunks: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
            total, correct, n = 0.0, 0.0, 0
            for x, y in chunks:
                logits = model(x).float()
                total += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
                correct += (logits.argmax(dim=1) == y).float().sum().item()
                n += len(y)
            return (total / n, correct / n) if n else (float("nan"), float("nan"))

        train_loss, train_acc = score(self._chunks(self.train_rows))
        held_loss, held_acc = score(self._chunks(self.held_rows))
        return {
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "held_out_loss": held_loss,
            "held_out_accuracy": held_acc,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "data": self.source,
            "num_features": self.num_features,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "train_rows": self.train_size(),
            "held_out_rows": len(self.held_rows),
            "hidden": self.hidden,
            "layers": self.layers,
            "dropout": self.dropout,
        }
