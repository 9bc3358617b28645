"""The built-in embedding step: token-sized batches, one model per process, torch threads from the worker's
CPUs, and vectors equal to sentence-transformers' own ``encode`` of the same texts."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest

from mlk8s.preprocessing.embedding import EMBEDDING_DIM, Embedder, load_model, token_batches, torch_threads
from mlk8s.preprocessing.samples import documents


def test_token_batches_hold_every_row_once_longest_first_within_the_budget() -> None:
    lengths = [5, 40, 12, 300, 7, 40, 1, 90, 33, 0]
    batches = list(token_batches(lengths, max_tokens=100, max_rows=4))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [3]  # longer than the budget: alone
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) <= 4 and (len(batch) == 1 or len(batch) * longest <= 100), batch
        assert lengths[batch[0]] == longest  # a batch's first row is its longest
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)


def test_a_full_enough_batch_ends_where_rows_get_shorter_instead_of_padding_them() -> None:
    lengths = [50, 50, 50, *[10] * 10]
    # Within the 1000-token budget, but the ten short rows would be padded to 50 tokens each.
    assert list(token_batches(lengths, max_tokens=1000, min_tokens=100)) == [[0, 1, 2], list(range(3, 13))]
    # A batch under min_tokens keeps taking rows (padded ones count): tiny batches cost more than padding.
    assert list(token_batches(lengths, max_tokens=1000, min_tokens=200)) == [[0, 1, 2, 3], list(range(4, 13))]
    assert list(token_batches(lengths, max_tokens=1000, min_tokens=1000)) == [list(range(13))]
    # The default floor is a quarter of the budget.
    assert list(token_batches(lengths, max_tokens=400)) == [[0, 1, 2], list(range(3, 13))]


@pytest.fixture
def threads() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_torch_gets_the_reserved_cpus_rounded_up(threads: None) -> None:
    assert torch_threads(1.5) == 2
    assert torch_threads(1.0) == 1


def test_a_second_embedder_reuses_the_process_model() -> None:
    first, second = Embedder(), Embedder(column="other")
    assert first.model is second.model is load_model("cpu", 256, "float32")


def test_vectors_equal_sentence_transformers_encode_and_empty_text_gets_null() -> None:
    texts = [t for t in documents(60, seed=3).column("text").to_pylist() if t][:40]
    embedder = Embedder(max_tokens=512)  # several batches of different row counts
    table = embedder(pa.table({"text": [*texts, "", None]}))
    got = table.column("embedding").to_pylist()
    assert got[-2:] == [None, None]
    want = embedder.model.encode(texts, batch_size=8, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(np.array(got[:-2], dtype=np.float32), want, atol=2e-5)
    assert table.schema.field("embedding").type == pa.list_(pa.float32()) and len(got[0]) == EMBEDDING_DIM


def test_an_unknown_precision_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="precision 'float8' is not one of"):
        Embedder(precision="float8")
