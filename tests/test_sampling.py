"""gnlib.sampling: i.i.d. and non-i.i.d. batch index samplers."""
from __future__ import annotations

import pytest
import torch

from gnlib.sampling import non_iid_batches, shuffled_batches
from helpers import SAMPLING_MODES, batch_class_sets, make_batches


def _labels(n_per_class=(13, 7, 10, 9, 11), seed=0) -> torch.Tensor:
    y = torch.cat([torch.full((k,), c) for c, k in enumerate(n_per_class)])
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _covers(batches, n):
    allidx = torch.cat(batches)
    return torch.equal(torch.sort(allidx).values, torch.arange(n))


def test_shuffled_batches_cover_every_sample_once():
    b = shuffled_batches(23, 5, _gen())
    assert [len(x) for x in b] == [5, 5, 5, 5, 3]
    assert _covers(b, 23)
    assert all(x.dtype == torch.int64 for x in b)
    full = shuffled_batches(23, 5, _gen(), drop_last=True)
    assert [len(x) for x in full] == [5] * 4
    assert len(set(torch.cat(full).tolist())) == 20


@pytest.mark.parametrize("cpb", [1, 2])
def test_non_iid_class_sets_and_coverage(cpb):
    y = _labels()
    batches = non_iid_batches(y, 4, classes_per_batch=cpb, generator=_gen())
    sets = batch_class_sets(y, batches)
    assert all(1 <= len(s) <= cpb for s in sets)
    assert _covers(batches, len(y))                       # every sample exactly once
    assert all(len(b) <= 4 for b in batches)
    if cpb == 2:
        # the pairing is a partition of the classes: each class belongs to one group
        assert sum(len(s) == 2 for s in sets) > 0         # some batches do mix two classes
        owner = {}
        for s in sets:
            for c in s:
                owner.setdefault(c, set()).update(s)
        assert all(len(v) <= 2 for v in owner.values())   # a class only meets its partner
        assert sorted(owner) == list(range(5))


def test_non_iid_single_class_with_drop_last_gives_full_batches():
    y = _labels()
    batches = non_iid_batches(y, 4, 1, _gen(), drop_last=True)
    assert all(len(b) == 4 for b in batches)
    assert sum(len(b) for b in batches) == sum(k // 4 * 4 for k in (13, 7, 10, 9, 11))
    assert len(set(torch.cat(batches).tolist())) == sum(len(b) for b in batches)
    assert all(len(s) == 1 for s in batch_class_sets(y, batches))


def test_non_iid_order_shuffled_or_class_by_class():
    y = _labels()
    ordered = non_iid_batches(y, 3, 1, _gen(), shuffle_order=False)
    first = [min(s) for s in batch_class_sets(y, ordered)]
    assert first == sorted(first)                         # class 0 first, then 1, ...
    shuffled = non_iid_batches(y, 3, 1, _gen())
    assert [min(s) for s in batch_class_sets(y, shuffled)] != first


@pytest.mark.parametrize("mode", SAMPLING_MODES)
def test_determinism_with_a_seed(mode):
    y = _labels()
    a = make_batches(mode, y, 4, _gen(7))
    b = make_batches(mode, y, 4, _gen(7))
    c = make_batches(mode, y, 4, _gen(8))
    assert len(a) == len(b) and all(torch.equal(p, q) for p, q in zip(a, b))
    assert not (len(a) == len(c) and all(torch.equal(p, q) for p, q in zip(a, c)))
    # the generator advances: two epochs from one generator differ
    g = _gen(7)
    e1, e2 = make_batches(mode, y, 4, g), make_batches(mode, y, 4, g)
    assert not all(torch.equal(p, q) for p, q in zip(e1, e2))


def test_fashion_mnist_sized_labels_are_fast_and_balanced():
    y = torch.arange(10).repeat_interleave(6000)
    batches = non_iid_batches(y, 32, 2, _gen(), drop_last=True)
    assert all(len(s) <= 2 for s in batch_class_sets(y, batches))
    assert len(batches) == 5 * (12000 // 32)


def test_clear_errors():
    y = _labels()
    with pytest.raises(ValueError, match="classes_per_batch must be 1 or 2"):
        non_iid_batches(y, 4, classes_per_batch=3)
    with pytest.raises(TypeError, match="integer tensor"):
        non_iid_batches(y.float(), 4)
    with pytest.raises(ValueError, match="1-D"):
        non_iid_batches(y.view(5, -1), 4)
    with pytest.raises(TypeError, match="labels must be a torch.Tensor"):
        non_iid_batches([0, 1], 4)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        shuffled_batches(10, 0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        shuffled_batches(10, 2.0)
    with pytest.raises(ValueError, match="exceeds the number of samples"):
        shuffled_batches(3, 5, drop_last=True)
    with pytest.raises(ValueError, match="leaves no full batch"):
        non_iid_batches(y, 100, drop_last=True)
    with pytest.raises(ValueError, match="unknown sampling mode 'iid'"):
        make_batches("iid", y, 4)
