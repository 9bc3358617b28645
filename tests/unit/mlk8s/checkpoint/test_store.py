"""The checkpoint store: atomic commit, verification with fallback, retention, fencing, URIs, heartbeats."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from mlk8s.checkpoint import MANIFEST, CheckpointError, CheckpointStore, FencedError, checkpoint_name
from mlk8s.storage import Location, resolve
from tests.tally import FAULT, held

FILES = {"state.safetensors": os.urandom(4096), "state.json": b'{"step": 1}'}


def files_for(step: int) -> dict[str, bytes]:
    return {"state.safetensors": os.urandom(1024) + step.to_bytes(4, "big"), "state.json": json.dumps(step).encode()}


def fresh(root: Path | Location, keep_last: int = 3) -> CheckpointStore:
    store = CheckpointStore(root if isinstance(root, Location) else str(root), keep_last=keep_last)
    store.ensure_writable()
    store.claim_generation()
    return store


# -- setup -----------------------------------------------------------------------------------------------


def test_unwritable_root_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(CheckpointError, match="cannot write"):
        CheckpointStore(str(blocker / "ckpts")).ensure_writable()
    assert blocker.read_text() == "not a directory"


# -- commit and load -------------------------------------------------------------------------------------


def test_commit_then_load_round_trips_bytes_and_meta(tmp_path: Path) -> None:
    store = fresh(tmp_path)
    info = store.commit(7, FILES, {"epoch": 2})
    assert info.name == checkpoint_name(1, 7)
    loaded = store.load_latest()
    assert loaded is not None
    assert loaded.files == FILES and loaded.meta == {"epoch": 2} and loaded.info.step == 7
    manifest = json.loads((tmp_path / info.name / MANIFEST).read_text())
    assert set(manifest["files"]) == set(FILES)


def test_empty_store_loads_nothing(tmp_path: Path) -> None:
    assert fresh(tmp_path).load_latest() is None


def test_commit_works_on_an_object_store_style_filesystem() -> None:
    loc = resolve("mock:///bucket/ckpts")  # in-memory, non-local: exercises the plain-PUT path
    store = fresh(loc)
    store.commit(1, FILES, {})
    store.commit(2, FILES, {})
    loaded = CheckpointStore(loc).load_latest()
    assert loaded is not None and loaded.info.step == 2 and loaded.files == FILES


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("truncate", "truncated file"),
        ("flip", "bad checksum"),
        ("no-marker", "missing commit marker"),
        ("garbage-marker", "unreadable commit marker"),
        ("missing-file", "missing file"),
    ],
)
def test_damaged_latest_falls_back_to_previous_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str, reason: str
) -> None:
    store = fresh(tmp_path)
    good = files_for(10)
    store.commit(10, good, {"epoch": 1})
    bad = store.commit(20, files_for(20), {"epoch": 2})
    target = tmp_path / bad.name / "state.safetensors"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[50] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "no-marker":
        (tmp_path / bad.name / MANIFEST).unlink()
    elif damage == "garbage-marker":
        (tmp_path / bad.name / MANIFEST).write_text('{"files": ')
    else:
        target.unlink()
    with caplog.at_level(logging.WARNING, logger="mlk8s.checkpoint.store"):
        loaded = CheckpointStore(str(tmp_path)).load_latest()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    ok = loaded is not None and loaded.info.step == 10 and loaded.files == good
    assert held(FAULT, f"checkpoint damaged: {damage}", ok and any(bad.name in w and reason in w for w in warnings))


def test_all_damaged_loads_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = fresh(tmp_path)
    info = store.commit(1, FILES, {})
    (tmp_path / info.name / MANIFEST).unlink()
    with caplog.at_level(logging.WARNING):
        assert store.load_latest() is None
    assert "missing commit marker" in caplog.text


def test_invalid_file_names_are_refused_before_writing(tmp_path: Path) -> None:
    store = fresh(tmp_path)
    for name in (MANIFEST, "sub/dir", ".hidden"):
        with pytest.raises(CheckpointError, match="invalid checkpoint file name"):
            store.commit(1, {name: b"x"}, {})
    assert store.list_checkpoints() == []


# -- retention -------------------------------------------------------------------------------------------


def test_retention_keeps_last_k_and_the_protected_one(tmp_path: Path) -> None:
    store = fresh(tmp_path, keep_last=2)
    infos = [store.commit(step, files_for(step), {}) for step in (10, 20, 30, 40, 50)]
    removed = store.prune(protect=frozenset({infos[0].name}))
    assert sorted(removed) == sorted(i.name for i in infos[1:3])
    assert [i.step for i in store.list_checkpoints()] == [10, 40, 50]
    store.prune()
    assert [i.step for i in store.list_checkpoints()] == [40, 50]


def test_retention_leaves_a_partial_write_newer_than_the_latest_commit(tmp_path: Path) -> None:
    store = fresh(tmp_path, keep_last=1)
    store.commit(10, FILES, {})
    old_partial = store.commit(15, FILES, {})
    (tmp_path / old_partial.name / MANIFEST).unlink()
    store.commit(20, FILES, {})
    in_flight = tmp_path / checkpoint_name(1, 30)
    in_flight.mkdir()
    (in_flight / "state.json").write_text("{}")
    store.prune()
    names = [i.name for i in store.list_checkpoints()]
    assert names == [checkpoint_name(1, 20), checkpoint_name(1, 30)]


# -- fencing ---------------------------------------------------------------------------------------------


def test_zombie_cannot_commit_or_prune_after_a_newer_claim(tmp_path: Path) -> None:
    zombie = fresh(tmp_path)
    zombie.commit(100, files_for(100), {})
    successor = fresh(tmp_path)
    assert (zombie.generation, successor.generation) == (1, 2)
    with pytest.raises(FencedError, match="generation 1 is fenced off"):
        zombie.commit(150, files_for(150), {})
    with pytest.raises(FencedError):
        zombie.prune()
    assert not (tmp_path / checkpoint_name(1, 150)).exists()
    successor.commit(120, files_for(120), {})
    loaded = CheckpointStore(str(tmp_path)).load_latest()
    assert loaded is not None and (loaded.info.generation, loaded.info.step) == (2, 120)


def test_newer_generation_wins_over_a_higher_step(tmp_path: Path) -> None:
    old = fresh(tmp_path)
    old.commit(500, FILES, {})
    new = fresh(tmp_path)
    new.commit(300, FILES, {})
    loaded = CheckpointStore(str(tmp_path)).load_latest()
    assert loaded is not None and loaded.info.generation == 2 and loaded.info.step == 300


def test_commit_without_claim_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path))
    with pytest.raises(CheckpointError, match="claim_generation"):
        store.commit(1, FILES, {})


def test_keep_last_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="keep_last"):
        CheckpointStore(str(tmp_path), keep_last=0)


# -- progress heartbeat ----------------------------------------------------------------------------------


def test_progress_heartbeats_per_generation_skip_torn_files(tmp_path: Path) -> None:
    first = fresh(tmp_path)
    first.write_progress({"step": 42})
    second = fresh(tmp_path)
    second.write_progress({"step": 50})
    (tmp_path / "progress" / "g-00000009.json").write_text('{"step": ')
    progress = CheckpointStore(str(tmp_path)).read_progress()
    assert progress == {1: {"step": 42, "generation": 1}, 2: {"step": 50, "generation": 2}}


# -- generations: atomic claims, strays, lost claims --------------------------------------------------------


def test_a_copied_in_higher_generation_is_never_resumed_nor_outranks_new_commits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = fresh(tmp_path, keep_last=1)
    first.commit(10, files_for(10), {})
    stray = tmp_path / checkpoint_name(9, 5)
    shutil.copytree(tmp_path / checkpoint_name(1, 10), stray)  # a checkpoint of another run, copied in
    manifest = json.loads((stray / MANIFEST).read_text())
    (stray / MANIFEST).write_text(json.dumps({**manifest, "generation": 9, "step": 5}))
    with caplog.at_level(logging.WARNING):
        loaded = CheckpointStore(str(tmp_path)).load_latest()
    assert loaded is not None and loaded.info.step == 10 and "ignoring 1 checkpoint" in caplog.text
    second = fresh(tmp_path, keep_last=1)
    assert second.generation == 10, "a new claim is numbered above every generation present"
    info = second.commit(20, files_for(20), {})
    second.prune()
    names = [i.name for i in second.list_checkpoints()]
    assert info.name in names and stray.name in names and checkpoint_name(1, 10) not in names
    latest = CheckpointStore(str(tmp_path)).load_latest()
    assert held(FAULT, "higher-generation checkpoint copied in", latest is not None and latest.info == info)


def test_lost_claims_make_old_checkpoints_strays_and_the_next_claim_goes_above_them(tmp_path: Path) -> None:
    first = fresh(tmp_path)
    first.commit(10, files_for(10), {})
    first.write_progress({"step": 12})
    shutil.rmtree(tmp_path / "generations")
    assert CheckpointStore(str(tmp_path)).load_latest() is None
    second = fresh(tmp_path)
    assert second.generation == 2
    second.commit(3, files_for(3), {})
    ok = (tmp_path / checkpoint_name(1, 10)).exists()
    assert held(FAULT, "generations/ lost", ok), "retention never deletes what it cannot vouch for"
    with pytest.raises(FencedError, match="generation 1 is fenced off"):
        first.commit(11, files_for(11), {})


def test_a_writer_whose_claim_vanished_stops_committing(tmp_path: Path) -> None:
    store = fresh(tmp_path)
    store.commit(1, files_for(1), {})
    shutil.rmtree(tmp_path / "generations")
    with pytest.raises(FencedError, match="gone or no longer ours"):
        store.commit(2, files_for(2), {})


def test_a_checkpoint_written_under_another_claim_of_the_same_generation_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = fresh(tmp_path)
    store.commit(10, files_for(10), {})
    bad = store.commit(20, files_for(20), {})
    marker = tmp_path / bad.name / MANIFEST
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "claim_nonce": "f" * 32}))
    with caplog.at_level(logging.WARNING):
        loaded = CheckpointStore(str(tmp_path)).load_latest()
    assert loaded is not None and loaded.info.step == 10
    assert "written under another claim" in caplog.text


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda m: {**m, "format": 99}, "newer mlk8s"),
        (lambda m: {**m, "files": {"state.json": 5}}, "must be an object"),
        (lambda m: {**m, "files": {"../escape": {"size": 1, "sha256": "0" * 64}}}, "invalid checkpoint file name"),
        (lambda m: {**m, "files": {"state.json": {"size": "big", "sha256": "0" * 64}}}, "non-negative integer"),
        (lambda m: {**m, "meta": []}, "'meta' must be an object"),
        (lambda m: {**m, "step": 7}, "not the directory's"),
        (lambda m: [m], "not a JSON object"),
        (lambda m: {**m, "files": {}}, "non-empty"),
    ],
)
def test_a_malformed_or_newer_manifest_falls_back_to_the_older_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, edit: object, reason: str
) -> None:
    store = fresh(tmp_path)
    good = files_for(10)
    store.commit(10, good, {"epoch": 1})
    bad = store.commit(20, files_for(20), {"epoch": 2})
    marker = tmp_path / bad.name / MANIFEST
    marker.write_text(json.dumps(edit(json.loads(marker.read_text()))))  # type: ignore[operator]
    with caplog.at_level(logging.WARNING):
        loaded = CheckpointStore(str(tmp_path)).load_latest()
    ok = loaded is not None and loaded.info.step == 10 and loaded.files == good and reason in caplog.text
    assert held(FAULT, "malformed or newer manifest", ok), caplog.text
    fresh(tmp_path).commit(30, files_for(30), {})  # and the next writer is not blocked by it
