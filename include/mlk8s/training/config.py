"""The training settings, declared once: each field of :class:`TrainConfig` carries its flag, help, type, range
and whether a checkpoint must have been written with the same value to be resumed.

The command line (:func:`build_parser`, :func:`parse_config`) and the resume fingerprint
(:meth:`TrainConfig.fingerprint`, :meth:`TrainConfig.mismatch`) are both derived from these declarations, so a
new setting cannot be added to one and forgotten in the other. Dataclass field metadata rather than pydantic:
the checks are a handful of ranges, and the entrypoint of a pod that may be relaunched many times should not pay
for building a model class on every start.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, NoReturn

from mlk8s.training.task import TaskUsageError

DEFAULT_TASK = "mlk8s.training.example:ClassifierTask"
PROG = "python -m mlk8s.training"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class Setting:
    """How one setting appears on the command line and whether it binds a resume."""

    flag: str
    help: str
    #: The checkpoint must have been written with the same value (else a resume is refused, naming the flag).
    resume: bool = False
    minimum: float | None = None
    maximum: float | None = None
    #: The value must be strictly greater than this.
    above: float | None = None
    choices: tuple[str, ...] | None = None
    #: A repeatable ``KEY=VALUE`` flag collected into a dict; the text is the example shown in errors.
    pairs: str | None = None
    metavar: str | None = None


def _meta_of(**kwargs: Any) -> dict[str, Setting]:
    return {"setting": Setting(**kwargs)}


def _setting(default: Any = MISSING, **kwargs: Any) -> Any:
    return field(default=default, metadata=_meta_of(**kwargs))


@dataclass(frozen=True)
class TrainConfig:
    """Every flag of ``python -m mlk8s.training``; one field per flag."""

    checkpoint_uri: str = _setting(flag="--checkpoint-uri", help="where checkpoints live; reuse it to resume")
    output_uri: str = _setting(flag="--output-uri", help="where model.safetensors and model.json are written")
    task: str = _setting(
        DEFAULT_TASK,
        flag="--task",
        resume=True,
        help="dotted path package.module:Class of a mlk8s.training.TrainingTask subclass (model, data, step)",
    )
    data: str | None = _setting(
        None,
        flag="--data",
        resume=True,
        help="data URI for the task: a Delta table, a Parquet file or directory, or a preprocessing output; the "
        "built-in task reads columns 'embedding' (list<float>) and 'label' (int or string), and trains on "
        "scikit-learn's bundled digits when this is omitted",
    )
    data_partition: dict[str, str] = field(
        default_factory=dict,
        metadata=_meta_of(
            flag="--data-partition",
            resume=True,
            pairs="run_key=2026-01-01",
            metavar="KEY=VALUE",
            help="read only this partition of a Delta table --data, repeatable (e.g. run_key=...)",
        ),
    )
    data_version: int | None = _setting(
        None,
        flag="--data-version",
        minimum=0,
        maximum=_MAX_INT,
        help="the Delta table version to read; default: the latest at the first start, then the version recorded "
        "in the checkpoint on every resume",
    )
    task_options: dict[str, str] = field(
        default_factory=dict,
        metadata=_meta_of(
            flag="--task-option",
            resume=True,
            pairs="hidden=128",
            metavar="KEY=VALUE",
            help="a task-specific option, repeatable; the built-in task knows hidden, layers, dropout, held-out, "
            "shifts",
        ),
    )
    epochs: int = _setting(5, flag="--epochs", resume=True, minimum=0, maximum=10**9, help="passes over the data")
    seed: int = _setting(
        0, flag="--seed", resume=True, minimum=0, maximum=_MAX_INT, help="seeds init, dropout, data order and split"
    )
    batch_size: int = _setting(
        32, flag="--batch-size", resume=True, minimum=1, maximum=2**31 - 1, help="examples per step"
    )
    lr: float = _setting(1e-3, flag="--lr", resume=True, above=0.0, help="learning rate")
    checkpoint_every_steps: int = _setting(
        500,
        flag="--checkpoint-every-steps",
        minimum=0,
        maximum=_MAX_INT,
        help="commit a checkpoint every N optimizer steps; 0 turns step checkpoints off",
    )
    checkpoint_every_epochs: int = _setting(
        1,
        flag="--checkpoint-every-epochs",
        minimum=0,
        maximum=_MAX_INT,
        help="commit a checkpoint at the end of every N-th epoch; 0 turns epoch checkpoints off",
    )
    keep_last: int = _setting(
        3, flag="--keep-last", minimum=1, maximum=10**6, help="committed checkpoints to keep, plus the resumed one"
    )
    termination_grace_seconds: float = _setting(
        30.0,
        flag="--termination-grace-seconds",
        minimum=0.0,
        help="the pod's terminationGracePeriodSeconds: on SIGTERM an emergency checkpoint is written only if "
        "its measured save time fits in what is left; 0 never writes one",
    )
    heartbeat_seconds: float = _setting(
        0.25,
        flag="--heartbeat-seconds",
        minimum=0.0,
        help="how often progress is recorded beside the checkpoints (for the work-lost figure); 0 = every step",
    )
    log_every_steps: int = _setting(
        0,
        flag="--log-every-steps",
        minimum=0,
        maximum=_MAX_INT,
        help="also write a progress line every N steps; 0 = by time only (see --log-every-seconds)",
    )
    log_every_seconds: float = _setting(
        30.0,
        flag="--log-every-seconds",
        minimum=0.0,
        help="write a progress line at least this often, besides the end of the first and of the last epoch",
    )
    storage_timeout_seconds: float | None = _setting(
        None,
        flag="--storage-timeout-seconds",
        above=0.0,
        help="seconds one object-store call may take before the run stops with an error naming it (default: "
        "$MLK8S_STORAGE_TIMEOUT_S, else 120)",
    )
    device: str = _setting("auto", flag="--device", choices=("auto", "cpu", "cuda"), help="auto picks cuda if present")
    amp: bool = _setting(
        False, flag="--amp", resume=True, help="mixed precision (float16 + GradScaler on cuda, bfloat16 on cpu)"
    )
    threads: int = _setting(
        1,
        flag="--threads",
        minimum=1,
        maximum=1024,
        help="torch CPU threads; fixed (not the node's core count) so a resume on another node stays bit-exact",
    )
    log_level: str = _setting(
        "INFO",
        flag="--log-level",
        choices=LOG_LEVELS,
        help="log verbosity on stderr (any case); the 'mlk8s: ...' event lines the operator parses are INFO, "
        "and DEBUG adds tracebacks to errors",
    )

    def fingerprint(self) -> dict[str, Any]:
        """The settings that must match for a checkpoint to be resumed exactly (those declared ``resume``)."""
        return {f.name: _canonical(getattr(self, f.name)) for f in _resume_fields()}

    def mismatch(self, recorded: Mapping[str, Any]) -> TaskUsageError | None:
        """The first resume setting that differs from a checkpoint's recorded fingerprint, as a usage error.

        A key missing from an older checkpoint's record counts as that setting's default.
        """
        wanted = self.fingerprint()
        for f in _resume_fields():
            found = recorded.get(f.name, _canonical(_default(f)))
            if found != wanted[f.name]:
                return TaskUsageError(
                    _meta(f).flag,
                    f"is {wanted[f.name]!r} but the checkpoints were written with {found!r}; pass the same value "
                    "to resume, or use a new --checkpoint-uri",
                )
        return None


def _meta(f: Field[Any]) -> Setting:
    setting = f.metadata["setting"]
    assert isinstance(setting, Setting)
    return setting


def _resume_fields() -> list[Field[Any]]:
    return [f for f in fields(TrainConfig) if _meta(f).resume]


def _default(f: Field[Any]) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None if f.default is MISSING else f.default


def _canonical(value: Any) -> Any:
    return dict(sorted(value.items())) if isinstance(value, dict) else value


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line naming the flag (raised, so the caller owns the exit code)."""

    def error(self, message: str) -> NoReturn:
        # One line whatever the user typed: a value with a line break in it is shown escaped.
        message = message.replace("\r", "\\r").replace("\n", "\\n")
        match = re.match(r"argument (--[\w-]+)(?:/-\w+)?: (.*)", message, re.DOTALL)
        if match:
            raise TaskUsageError(match.group(1), match.group(2))
        raise TaskUsageError("usage", message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description=(
            "Train a torch model with checkpoints that survive eviction: every N steps, at epoch ends and on "
            "SIGTERM (or SIGINT); a relaunch with the same flags resumes bit-exactly. Exit codes: 0 done, "
            "75 interrupted (relaunch to resume), 1 error, 2 bad usage. URIs may be plain paths, file://, s3:// "
            "or gs://."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in fields(TrainConfig):
        s = _meta(f)
        kwargs: dict[str, Any] = {"dest": f.name, "help": s.help}
        if f.default is MISSING and f.default_factory is MISSING:
            kwargs["required"] = True
        if f.type == "bool":
            kwargs.update(action="store_true", default=f.default)
        elif s.pairs is not None:
            kwargs.update(action="append", default=[], metavar=s.metavar)
        else:
            kwargs.update(default=f.default, metavar=s.metavar, choices=s.choices)
            kwargs["type"] = {"int": int, "int | None": int, "float": float, "float | None": float}.get(
                str(f.type), str
            )
            if f.name == "log_level":
                kwargs["type"] = str.upper
        p.add_argument(s.flag, **kwargs)
    return p


def _check_range(s: Setting, value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if s.above is not None and not value > s.above:
        return f"must be > {s.above:g}, got {value}"
    if s.minimum is not None and value < s.minimum:
        return f"must be >= {s.minimum:g}, got {value}"
    if s.maximum is not None and value > s.maximum:
        return f"must be <= {s.maximum:g}, got {value}"
    return None


def _pairs(s: Setting, raw: Sequence[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TaskUsageError(s.flag, f"{item!r} is not KEY=VALUE, e.g. {s.flag} {s.pairs}")
        pairs[key.strip()] = value.strip()
    return pairs


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse and range-check the flags; raises :class:`TaskUsageError` naming the first bad flag."""
    args = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    for f in fields(TrainConfig):
        s, value = _meta(f), args[f.name]
        if s.pairs is not None:
            value = _pairs(s, value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            problem = _check_range(s, value)
            if problem:
                raise TaskUsageError(s.flag, problem)
        values[f.name] = value
    config = TrainConfig(**values)
    for flag, given in (("--data-partition", config.data_partition), ("--data-version", config.data_version)):
        if config.data is None and given not in (None, {}):
            raise TaskUsageError(flag, "selects part of a Delta table given with --data, but there is no --data")
    return config
