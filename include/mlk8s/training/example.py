"""The built-in task: an MLP classifier over feature vectors.

With no ``--data`` it trains on scikit-learn's bundled digits (8x8 images, 10 classes), so the demo and the
tests need no download. With ``--data`` it reads Parquet (a file or a directory of files, any pyarrow.fs URI)
with a list<float> column ``embedding`` and an integer or string column ``label``: the shape the preprocessing
pipeline writes. Options (``--task-option KEY=VALUE``): hidden (units per layer, 256), layers (hidden layers,
2), dropout (0.1), held-out (fraction kept for evaluation, 0.2), shifts (digits only: 1 adds the training
images moved by one pixel in each direction, 5x the rows per epoch; 0 turns that off).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlk8s.training.task import TaskContext, TaskUsageError, TrainingTask

if TYPE_CHECKING:
    import numpy as np
    import torch

    from mlk8s.storage import Location

EMBEDDING_COLUMN = "embedding"
LABEL_COLUMN = "label"
#: What ``python -m mlk8s.preprocessing`` commits last; its parts live under ``_attempts/`` and are read through it.
PREPROCESSING_MANIFEST = "_manifest.json"


def load_parquet_features(uri: str) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Features, integer labels and (for string labels) the class names, in a stable file and row order."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    from mlk8s.storage import UriError, resolve

    try:
        loc = resolve(uri)
    except UriError as exc:
        raise TaskUsageError("--data", str(exc)) from exc
    info = loc.fs.get_file_info(loc.path)
    if info.type == pafs.FileType.NotFound:
        raise TaskUsageError("--data", f"{uri} does not exist; point it at a Parquet file or directory")
    columns = [EMBEDDING_COLUMN, LABEL_COLUMN]
    try:
        files = _parquet_files(uri, loc)
        if not files:
            raise TaskUsageError("--data", f"{uri} holds no Parquet files (nor a committed preprocessing output)")
        schema = pads.dataset(files[0].path, filesystem=files[0].fs, format="parquet").schema
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise TaskUsageError(
                "--data",
                f"{uri} lacks column(s) {', '.join(missing)} (has {', '.join(schema.names)}); the example task "
                f"needs a list<float> column {EMBEDDING_COLUMN!r} and an int or string column {LABEL_COLUMN!r}",
            )
        # Files in a fixed order, rows in file order: the same data order on every relaunch.
        table = pa.concat_tables(
            [pads.dataset(f.path, filesystem=f.fs, format="parquet").to_table(columns=columns) for f in files]
        )
    except (OSError, ValueError, pa.ArrowException) as exc:
        if isinstance(exc, TaskUsageError):
            raise
        raise TaskUsageError("--data", f"{uri} is not readable Parquet: {exc}") from exc
    if table.num_rows == 0:
        raise TaskUsageError("--data", f"{uri} has no rows")
    emb = table.column(EMBEDDING_COLUMN).combine_chunks()
    if not (pa.types.is_list(emb.type) or pa.types.is_large_list(emb.type) or pa.types.is_fixed_size_list(emb.type)):
        raise TaskUsageError("--data", f"column {EMBEDDING_COLUMN!r} has type {emb.type}, expected list<float>")
    lengths = pc.list_value_length(emb).to_numpy(zero_copy_only=False)
    if emb.null_count or len(set(lengths.tolist())) != 1 or lengths[0] == 0:
        raise TaskUsageError("--data", f"column {EMBEDDING_COLUMN!r} must hold non-empty vectors of one length")
    features = emb.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(emb), int(lengths[0]))
    labels_col = table.column(LABEL_COLUMN).combine_chunks()
    if labels_col.null_count:
        raise TaskUsageError("--data", f"column {LABEL_COLUMN!r} has {labels_col.null_count} null values")
    names: list[str] | None = None
    if pa.types.is_integer(labels_col.type):
        labels = labels_col.to_numpy().astype(np.int64)
        if labels.min() < 0:
            raise TaskUsageError("--data", f"column {LABEL_COLUMN!r} has negative class ids")
    elif pa.types.is_string(labels_col.type) or pa.types.is_large_string(labels_col.type):
        raw = labels_col.to_pylist()
        names = sorted(set(raw))
        index = {n: i for i, n in enumerate(names)}
        labels = np.array([index[v] for v in raw], dtype=np.int64)
    else:
        raise TaskUsageError("--data", f"column {LABEL_COLUMN!r} has type {labels_col.type}, expected int or string")
    return features, labels, names


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


def _parquet_files(uri: str, loc: Location) -> list[Location]:
    """The Parquet files behind ``uri``: the file itself, the files a preprocessing output commits (a Delta
    table's current version, or an old manifest's), or every
    ``*.parquet`` under a directory (names starting with ``.`` or ``_`` skipped, as pyarrow does), sorted."""
    import pyarrow.fs as pafs

    from mlk8s.storage import resolve

    if loc.fs.get_file_info(loc.path).type == pafs.FileType.File:
        return [loc]
    committed = loc.fs.get_file_info([loc.child(PREPROCESSING_MANIFEST).path, loc.child("_delta_log").path])
    if committed[0].type == pafs.FileType.File or committed[1].type == pafs.FileType.Directory:
        from mlk8s.preprocessing.output import committed_files

        try:
            return [resolve(f) for f in committed_files(uri)]
        except Exception as exc:  # CommitError and friends: the manifest is there but unusable
            raise TaskUsageError("--data", f"cannot read the preprocessing output at {uri}: {exc}") from exc
    found = []
    for info in loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True)):
        relative = info.path[len(loc.path.rstrip("/")) + 1 :]
        hidden = any(part.startswith((".", "_")) for part in relative.split("/"))
        if info.type == pafs.FileType.File and info.path.endswith(".parquet") and not hidden:
            found.append(loc.child(relative))
    return sorted(found, key=lambda f: f.path)


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

        if self.context.data is None:
            pixels, labels = load_digits_arrays()
            features = (pixels / 16.0).astype(np.float32)
            self.source = "sklearn:digits"
        else:
            features, labels, self.class_names = load_parquet_features(self.context.data)
            self.source = self.context.data
        # The split depends only on the seed (its own generator), never on the global RNG state.
        order = np.random.default_rng(np.random.SeedSequence([self.context.seed, 0x5E1D])).permutation(len(labels))
        n_held = round(len(labels) * self.held_out)
        if len(labels) - n_held < 1:
            raise TaskUsageError("--data", f"only {len(labels)} rows: nothing left to train on after the split")
        held, train = order[:n_held], order[n_held:]
        train_x, train_y = features[train], labels[train]
        if self.context.data is None and self.shifts:
            train_x, train_y = shifted_digits(train_x, train_y)
        device = self.context.device
        self.x = torch.from_numpy(train_x).to(device)
        self.y = torch.from_numpy(train_y).to(device)
        self.x_held = torch.from_numpy(features[held]).to(device)
        self.y_held = torch.from_numpy(labels[held]).to(device)
        self.num_features = int(features.shape[1])
        self.num_classes = int(labels.max()) + 1 if self.class_names is None else len(self.class_names)

    def train_size(self) -> int:
        return int(self.x.shape[0])

    def get_batch(self, indices: torch.Tensor) -> Any:
        if self.x.device.type != "cpu":
            indices = indices.to(self.x.device, non_blocking=True)
        return self.x[indices], self.y[indices]

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

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        import torch

        def score(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
            if len(y) == 0:
                return float("nan"), float("nan")
            logits = model(x).float()
            loss = torch.nn.functional.cross_entropy(logits, y).item()
            return loss, (logits.argmax(dim=1) == y).float().mean().item()

        train_loss, train_acc = score(self.x, self.y)
        held_loss, held_acc = score(self.x_held, self.y_held)
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
            "held_out_rows": int(self.y_held.shape[0]),
            "hidden": self.hidden,
            "layers": self.layers,
            "dropout": self.dropout,
        }
