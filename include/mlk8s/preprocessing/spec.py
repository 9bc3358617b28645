"""The pipeline spec: which transforms run, in which order, and the schema the output must have.

A spec is JSON or YAML (a file, a pyarrow.fs URI, or an inline JSON object). Everything in it is checked
here, before any Ray work starts: the structure, that every ``use`` names a built-in or an importable
callable, that each step's ``args`` fit the callable's signature, and that every declared type parses.

Example::

    steps:
      - use: html_to_text
      - use: clean_text
      - use: text_features
      - use: non_empty_text            # built-in filter
      - use: mycompany.rules.drop_spam   # a user filter: fn(table, **args) -> boolean mask
        kind: filter
        args: {threshold: 0.8}
      - use: embed                     # built-in actor transform (the model loads once per actor)
        args: {batch_size: 64}
        concurrency: 2
    schema:
      fields: {id: string, label: int64, text: string, embedding: "list<float32>"}
      extra: keep                      # keep undeclared columns after the declared ones (default: drop)
      evolve: false                    # true: a run may add columns to the existing output table
    batch_size: 4096                   # rows per batch for maps/filters that come after an actor step

Maps and filters before the first actor step run on whole work units (a Parquet row group, a byte range
of a JSON lines file, a chunk of raw files); an actor step's own ``batch_size`` (default 256) sets its batches.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from mlk8s.preprocessing.errors import SpecError
from mlk8s.preprocessing.schema import parse_fields

Kind = Literal["map", "filter", "actor"]
KINDS: tuple[str, ...] = ("map", "filter", "actor")
TOP_LEVEL_KEYS = ("version", "steps", "schema", "batch_size")
STEP_KEYS = ("use", "kind", "args", "batch_size", "concurrency", "num_cpus", "num_gpus")
SCHEMA_KEYS = ("fields", "extra", "evolve")

#: The document pipeline that runs with no ``--pipeline``.
DEFAULT_SPEC: dict[str, Any] = {
    "version": 1,
    "steps": [
        {"use": "html_to_text"},
        {"use": "clean_text"},
        {"use": "text_features"},
        {"use": "non_empty_text"},
        {"use": "embed"},
    ],
}


@dataclass(frozen=True)
class Step:
    index: int
    use: str
    kind: Kind
    args: dict[str, Any]
    fn: Any = field(compare=False, repr=False)
    batch_size: int | None = None
    concurrency: int | None = None
    num_cpus: float | None = None
    num_gpus: float | None = None

    @property
    def where(self) -> str:
        return f"steps[{self.index}] ({self.use})"


@dataclass(frozen=True)
class PipelineSpec:
    steps: tuple[Step, ...]
    schema: pa.Schema | None = None
    schema_extra: str = "drop"
    batch_size: int | None = None
    #: ``schema.evolve``: a run may add columns to an existing output table (any other change is refused).
    schema_evolve: bool = False
    source: str = "default"
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def digest(self) -> str:
        """A stable hash of what the spec says (recorded in the commit: which pipeline made the output)."""
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()

    def has_actor_steps(self) -> bool:
        return any(step.kind == "actor" for step in self.steps)


# -- resolving ``use`` ----------------------------------------------------------------------------------------


def _resolve(index: int, use: str, kind: str | None) -> tuple[Any, Kind]:
    from mlk8s.preprocessing import transforms

    where = f"steps[{index}].use"
    builtin_kind: Kind | None = None
    obj: Any = None
    if use in transforms.MAPS:
        obj, builtin_kind = transforms.MAPS[use], "map"
    elif use in transforms.FILTERS:
        obj, builtin_kind = transforms.FILTERS[use], "filter"
    elif use in transforms.ACTORS:
        obj, builtin_kind = transforms.ACTORS[use], "actor"
    if builtin_kind is not None:
        if kind is not None and kind != builtin_kind:
            raise SpecError(f"steps[{index}].kind: built-in {use!r} is a {builtin_kind}; remove 'kind: {kind}'")
        return obj, builtin_kind
    if "." not in use and ":" not in use:
        names = sorted([*transforms.MAPS, *transforms.FILTERS, *transforms.ACTORS])
        raise SpecError(
            f"{where}: unknown transform {use!r}. Use a built-in ({', '.join(names)}) or the dotted path of "
            "your own function, e.g. mycompany.transforms.drop_spam"
        )
    try:
        obj = pkgutil.resolve_name(use)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SpecError(
            f"{where}: cannot import {use!r} ({type(exc).__name__}: {exc}). Fix the dotted path, or make the "
            "module importable where the pipeline runs (installed in the image / on PYTHONPATH of the driver "
            "and the Ray workers)"
        ) from None
    resolved_kind = kind or ("actor" if inspect.isclass(obj) else "map")
    if resolved_kind not in KINDS:
        raise SpecError(f"steps[{index}].kind: {kind!r} is not one of {', '.join(KINDS)}")
    if resolved_kind == "actor" and not inspect.isclass(obj):
        raise SpecError(f"{where}: kind 'actor' needs a class (constructed once per actor); {use!r} is not one")
    if not callable(obj):
        raise SpecError(f"{where}: {use!r} is not callable; name a function fn(table, **args)")
    return obj, resolved_kind  # type: ignore[return-value]


def _check_args(index: int, use: str, kind: Kind, fn: Any, args: dict[str, Any]) -> None:
    target = fn.__init__ if kind == "actor" else fn
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return  # builtins without signatures: checked by the dry run
    try:
        if kind == "actor":
            signature.bind(None, **args)
        else:
            signature.bind(pa.table({}), **args)
    except TypeError as exc:
        params = [p for p in signature.parameters if p not in ("self", "table")]
        raise SpecError(
            f"steps[{index}].args: {use!r} does not accept these args ({exc}); its parameters are {params}"
        ) from None


def _positive_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(f"{where} must be a positive integer, got {value!r}")
    return value


def _non_negative(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SpecError(f"{where} must be a number >= 0, got {value!r}")
    return float(value)


def parse_spec(raw: Any, source: str = "inline") -> PipelineSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"pipeline spec ({source}) must be a mapping with a 'steps' list, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise SpecError(f"pipeline spec: unknown key(s) {unknown}; allowed: {list(TOP_LEVEL_KEYS)}")
    version = raw.get("version", 1)
    if version != 1:
        raise SpecError(f"version: only version 1 is supported, got {version!r}")
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise SpecError("steps: must be a non-empty list of {use: NAME_OR_DOTTED_PATH, ...} entries")
    steps = tuple(_parse_step(index, item) for index, item in enumerate(steps_raw))
    schema, extra, evolve = _parse_schema(raw.get("schema"))
    batch_size = _positive_int(raw.get("batch_size"), "batch_size")
    return PipelineSpec(steps, schema, extra, batch_size, schema_evolve=evolve, source=source, raw=raw)


def _parse_step(index: int, item: Any) -> Step:
    if isinstance(item, str):
        item = {"use": item}
    if not isinstance(item, dict):
        raise SpecError(f"steps[{index}]: must be a mapping like {{use: clean_text}}, got {item!r}")
    unknown = sorted(set(item) - set(STEP_KEYS))
    if unknown:
        raise SpecError(f"steps[{index}]: unknown key(s) {unknown}; allowed: {list(STEP_KEYS)}")
    use = item.get("use")
    if not isinstance(use, str) or not use.strip():
        raise SpecError(f"steps[{index}].use: required; the name of a built-in or a dotted path")
    kind = item.get("kind")
    if kind is not None and kind not in KINDS:
        raise SpecError(f"steps[{index}].kind: {kind!r} is not one of {', '.join(KINDS)}")
    args = item.get("args", {}) or {}
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise SpecError(f"steps[{index}].args: must be a mapping of keyword arguments, got {args!r}")
    fn, resolved = _resolve(index, use.strip(), kind)
    _check_args(index, use, resolved, fn, args)
    if use == "to_schema":
        parse_fields(args.get("fields"), where=f"steps[{index}].args.fields")
    return Step(
        index=index,
        use=use.strip(),
        kind=resolved,
        args=dict(args),
        fn=fn,
        batch_size=_positive_int(item.get("batch_size"), f"steps[{index}].batch_size"),
        concurrency=_positive_int(item.get("concurrency"), f"steps[{index}].concurrency"),
        num_cpus=_non_negative(item.get("num_cpus"), f"steps[{index}].num_cpus"),
        num_gpus=_non_negative(item.get("num_gpus"), f"steps[{index}].num_gpus"),
    )


def _parse_schema(schema_raw: Any) -> tuple[pa.Schema | None, str, bool]:
    if schema_raw is None:
        return None, "drop", False
    if not isinstance(schema_raw, dict):
        raise SpecError("schema: must be a mapping {fields: {name: type}, extra: drop|keep, evolve: true|false}")
    unknown = sorted(set(schema_raw) - set(SCHEMA_KEYS))
    if unknown:
        raise SpecError(f"schema: unknown key(s) {unknown}; allowed: {list(SCHEMA_KEYS)}")
    evolve = schema_raw.get("evolve", False)
    if not isinstance(evolve, bool):
        raise SpecError(f"schema.evolve: must be true or false, got {evolve!r}")
    # With evolve alone, the output keeps the types the pipeline produces; fields pins them.
    schema = parse_fields(schema_raw["fields"]) if "fields" in schema_raw or not evolve else None
    extra = schema_raw.get("extra", "drop")
    if extra not in ("drop", "keep"):
        raise SpecError(f"schema.extra: must be 'drop' or 'keep', got {extra!r}")
    return schema, extra, evolve


def load_spec(source: str | None) -> PipelineSpec:
    """The spec from a file path, a pyarrow.fs URI or inline JSON; the default pipeline when ``None``."""
    if source is None:
        return parse_spec(DEFAULT_SPEC, "default")
    text = source.strip()
    if text.startswith("{"):
        return parse_spec(_parse_text(text, "inline JSON", json_only=True), "inline")
    content = _read_text(source)
    return parse_spec(_parse_text(content, source, json_only=source.lower().endswith(".json")), source)


def _read_text(source: str) -> str:
    if "://" not in source:
        path = Path(source)
        if not path.is_file():
            raise SpecError(f"--pipeline: no such file {source!r}; pass the path of a JSON or YAML spec")
        return path.read_text()
    import pyarrow.fs as pafs

    try:
        fs, path_in_fs = pafs.FileSystem.from_uri(source)
        with fs.open_input_stream(path_in_fs) as stream:
            return bytes(stream.read()).decode()
    except (OSError, pa.ArrowException) as exc:
        raise SpecError(f"--pipeline: cannot read {source!r} ({exc})") from None


def _parse_text(content: str, source: str, *, json_only: bool) -> Any:
    try:
        return json.loads(content)
    except json.JSONDecodeError as exc:
        if json_only:
            raise SpecError(f"pipeline spec {source}: invalid JSON ({exc})") from None
    import yaml

    try:
        return yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise SpecError(f"pipeline spec {source}: neither valid JSON nor valid YAML ({exc})") from None
