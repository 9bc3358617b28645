"""The live model of a registry: ``published.json``, moved only by a compare-and-swap, with a history entry per move.

The pointer is one small object written atomically (``mlk8s.storage.write_atomic``), so a reader sees the old
live model or the new one, never half. A publication names the live model it replaces (the one the candidate
was evaluated against); if another run moved the pointer in between, it is refused rather than overwriting a
model nobody compared against. A second publication of the live model is a no-op, so reruns are idempotent.
"""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, ValidationError

from mlk8s.model_registry.model_files import ModelFiles
from mlk8s.storage import Location, read_bytes, resolve, write_atomic

POINTER_FILE = "published.json"
HISTORY_DIR = "history"
CANDIDATES_DIR = "candidates"


class RegistryError(RuntimeError):
    """The registry cannot be read or moved as asked; the message says why and what to do."""


class PublishedModel(BaseModel):
    """What ``published.json`` holds: the live model's files, checksum, how it was trained and scored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_dir: str
    weights_sha256: str
    task: str
    task_options: dict[str, str] = {}
    seed: int
    run_key: str | None = None
    metrics: dict[str, float | None] = {}
    published_at: str
    replaces_sha256: str | None = None


class Registry:
    """A registry root; raises ``mlk8s.storage.UriError`` for a URI that names no place we can use."""

    def __init__(self, uri: str) -> None:
        self.root: Location = resolve(uri)
        self.uri = self.root.uri

    def candidate_uri(self, run_key: str) -> str:
        return self.root.child(CANDIDATES_DIR).child(run_key).uri

    def published(self) -> PublishedModel | None:
        """The live model, or None when nothing is published yet."""
        loc = self.root.child(POINTER_FILE)
        if self.root.fs.get_file_info(loc.path).type != pafs.FileType.File:
            return None
        try:
            return PublishedModel.model_validate(json.loads(read_bytes(loc)))
        except (ValueError, ValidationError) as exc:
            raise RegistryError(
                f"{loc.uri} is not a valid pointer ({exc}); restore it from the newest entry under "
                f"{self.root.child(HISTORY_DIR).uri}"
            ) from exc

    def publish(
        self,
        candidate: ModelFiles,
        *,
        expect_live: str | None,
        task_options: dict[str, str],
        run_key: str | None,
        now: dt.datetime | None = None,
    ) -> tuple[PublishedModel, bool]:
        """Make ``candidate`` live if the live model is still ``expect_live`` (a sha256, None = nothing live).

        Returns the live model and whether the pointer moved (False: the candidate was live already).
        """
        current = self.published()
        if current is not None and current.weights_sha256 == candidate.sha256:
            return current, False
        current_sha = current.weights_sha256 if current else None
        if current_sha != expect_live:
            raise RegistryError(
                f"the live model changed since the candidate was evaluated (evaluated against "
                f"{expect_live or 'no model'}, live now {current_sha or 'no model'}, published "
                f"{current.published_at if current else '-'}): evaluate the candidate again"
            )
        stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        entry = PublishedModel(
            model_dir=candidate.directory.uri,
            weights_sha256=candidate.sha256,
            task=candidate.info.task,
            task_options=dict(sorted(task_options.items())),
            seed=candidate.info.seed,
            run_key=run_key,
            metrics=dict(candidate.info.metrics),
            published_at=stamp,
            replaces_sha256=current_sha,
        )
        body = json.dumps(entry.model_dump(), sort_keys=True, indent=2).encode()
        history = self.root.child(HISTORY_DIR)
        history.fs.create_dir(history.path, recursive=True)
        write_atomic(history.child(f"{stamp.replace(':', '')}-{candidate.sha256[:12]}.json"), body)
        write_atomic(self.root.child(POINTER_FILE), body)  # last: the pointer moves only once history holds it
        return entry, True
