"""Generation claims are atomic: two trainers claiming at the same instant never hold the same generation,
on a local disk (hard-link exclusive create) and on an object store (own object, then a verifying list)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from mlk8s.checkpoint import CheckpointStore, FencedError
from mlk8s.checkpoint.claims import claim_name, parse_claim_name
from mlk8s.storage import resolve
from tests.tally import FAULT, held


def _claim_at_once(stores: list[CheckpointStore]) -> tuple[int | None, ...]:
    """Each store claims on its own thread, released together; a FencedError counts as no generation."""
    barrier = threading.Barrier(len(stores))
    got: list[int | None] = [None] * len(stores)

    def claim(i: int) -> None:
        barrier.wait()
        try:
            got[i] = stores[i].claim_generation()
        except FencedError:
            got[i] = None

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tuple(got)


def _race(store_for: Callable[[int], CheckpointStore], trials: int) -> list[tuple[int | None, ...]]:
    """Two stores claim at the same instant, ``trials`` times; each trial gets a fresh root from ``store_for``."""
    results = []
    for trial in range(trials):
        stores = [store_for(trial), store_for(trial)]
        stores[0].ensure_writable()
        results.append(_claim_at_once(stores))
    return results


def test_two_trainers_claiming_at_once_never_hold_the_same_generation_locally(tmp_path: Path) -> None:
    results = _race(lambda trial: CheckpointStore(str(tmp_path / f"t{trial}")), 40)
    same = [r for r in results if r[0] is not None and r[0] == r[1]]
    for r in results:
        held(FAULT, "two trainers claim at once (local)", not (r[0] is not None and r[0] == r[1]))
    assert not same, f"{len(same)} of 40 trials let two trainers hold one generation"
    assert all(sorted(r) == [1, 2] for r in results), results  # both got one, and the loser moved on


def test_two_trainers_claiming_at_once_on_an_object_store_never_hold_the_same_generation() -> None:
    roots = {}

    def store_for(trial: int) -> CheckpointStore:
        if trial not in roots:
            roots[trial] = resolve(f"mock:///bucket/t{trial}")  # one in-memory, non-local filesystem per trial
        return CheckpointStore(roots[trial])

    results = _race(store_for, 40)
    for r in results:
        held(FAULT, "two trainers claim at once (object store)", r[0] != r[1] and None not in r)
    assert all(r[0] != r[1] and None not in r for r in results), results
    for trial, (a, b) in enumerate(results):  # the lower one is fenced at its first commit
        store = CheckpointStore(roots[trial])
        assert store.claims.newest() == max(a or 0, b or 0)


def test_claim_names_round_trip() -> None:
    assert parse_claim_name(claim_name(3)) == (3, None)
    assert parse_claim_name(claim_name(12, "a" * 32)) == (12, "a" * 32)
    assert parse_claim_name("g-1.json") is None and parse_claim_name("g-00000001-xyz.json") is None


def test_a_claim_goes_above_every_generation_present(tmp_path: Path) -> None:
    (tmp_path / "ckpt-g00000007-s000000000001").mkdir(parents=True)
    store = CheckpointStore(str(tmp_path))
    assert store.claim_generation() == 8
    assert (tmp_path / "generations" / "g-00000008.json").exists()
