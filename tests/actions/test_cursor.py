"""The continuation cursor: any split of an epoch into activations visits each sample once."""

from __future__ import annotations

import random

import pytest

from actions.cursor import BatchOrder, permutation
from owtrain.cursor import Cursor
from owtrain.errors import BadRequest


def visit(n: int, batch: int, epochs: int, splits: list[int], seed: int = 3) -> list[list[int]]:
    """Walk `epochs` epochs in activations of `splits[i]` batches each, as the driver would."""
    cursor, seen = Cursor(seed=seed), [[] for _ in range(epochs)]
    for k in splits:
        order = BatchOrder(n, batch)  # a cold container starts with no cached permutation
        for _ in range(k):
            if cursor.epoch >= epochs:
                break
            epoch = cursor.epoch
            idx, cursor = order.next_batch(cursor)
            seen[epoch].extend(int(i) for i in idx)
        cursor = Cursor.from_json(cursor.to_json())  # through JSON, like a real result
    assert cursor.epoch == epochs, "the splits did not cover all epochs"
    return seen


@pytest.mark.parametrize("n,batch", [(10, 3), (12, 4), (7, 10), (1, 1)])
def test_every_sample_once_per_epoch_for_any_split(n, batch):
    rng = random.Random(n * 100 + batch)
    splits = [rng.randint(1, 3) for _ in range(200)]
    for epoch_seen in visit(n, batch, epochs=3, splits=splits):
        assert sorted(epoch_seen) == list(range(n))


def test_order_depends_on_seed_and_epoch_only():
    assert permutation(50, 1, 0).tolist() == permutation(50, 1, 0).tolist()
    assert permutation(50, 1, 0).tolist() != permutation(50, 1, 1).tolist()
    a = visit(20, 3, 2, [100], seed=5)
    b = visit(20, 3, 2, [1] * 100, seed=5)
    assert a == b  # one long activation and many short ones train in the same order


def test_batches_stop_at_the_epoch_boundary():
    order = BatchOrder(10, 4)
    idx, after = order.next_batch(Cursor(offset=8))
    assert len(idx) == 2 and after == Cursor(epoch=1, offset=0)


@pytest.mark.parametrize("bad", [[1], {"epoch": -1}, {"offset": "3"}, {"seq": True}])
def test_bad_cursor_json_is_rejected(bad):
    with pytest.raises(BadRequest, match="cursor"):
        Cursor.from_json(bad)


def test_offset_past_the_shard_is_rejected():
    with pytest.raises(BadRequest, match="past the shard"):
        BatchOrder(10, 4).next_batch(Cursor(offset=10))
