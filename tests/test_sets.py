"""gnlib.sets: the S_i masks follow the paper's definitions and reproduce the fast layers."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gnlib.norms import group_norm
from gnlib.sets import normalization_set, normalize_with_sets, set_ids, set_size, set_statistics

SHAPE = (3, 6, 2, 2)


def _brute_force(kind, shape, index, groups):
    """Enumerate every k and test the paper's condition literally."""
    N, C, H, W = shape
    mask = torch.zeros(shape, dtype=torch.bool)
    i_N, i_C = index[:2]
    for k in torch.cartesian_prod(*(torch.arange(s) for s in shape)).tolist():
        k_N, k_C = k[:2]
        member = {
            "bn": k_C == i_C,
            "ln": k_N == i_N,
            "in": k_N == i_N and k_C == i_C,
            "gn": k_N == i_N and k_C // (C // (groups or 1)) == i_C // (C // (groups or 1)),
        }[kind]
        mask[tuple(k)] = member
    return mask


@pytest.mark.parametrize("kind", ["bn", "ln", "in", "gn"])
@pytest.mark.parametrize("index", [(0, 0, 0, 0), (2, 5, 1, 0), (1, 3, 0, 1)])
def test_masks_follow_definitions(kind, index):
    groups = 3 if kind == "gn" else None
    mask = normalization_set(kind, SHAPE, index, groups)
    assert mask.dtype == torch.bool and mask.shape == SHAPE
    assert torch.equal(mask, _brute_force(kind, SHAPE, index, groups))
    assert mask[index]  # i is in its own set
    assert int(mask.sum()) == set_size(kind, SHAPE, groups)


def test_gn_extremes_are_ln_and_in():
    idx = (1, 4, 1, 1)
    assert torch.equal(normalization_set("gn", SHAPE, idx, 1), normalization_set("ln", SHAPE, idx))
    assert torch.equal(normalization_set("gn", SHAPE, idx, 6), normalization_set("in", SHAPE, idx))


def test_set_sizes():
    assert set_size("bn", SHAPE) == 3 * 4
    assert set_size("ln", SHAPE) == 6 * 4
    assert set_size("in", SHAPE) == 4
    assert set_size("gn", SHAPE, 3) == 2 * 4


def test_set_ids_group_pixels_sharing_statistics():
    ids = set_ids("gn", SHAPE, 3)
    for index in [(0, 0, 0, 0), (2, 3, 1, 1)]:
        mask = normalization_set("gn", SHAPE, index, 3)
        assert torch.equal(ids == ids[index], mask)
    assert set_ids("bn", SHAPE).unique().numel() == 6
    assert set_ids("in", SHAPE).unique().numel() == 18


@pytest.mark.parametrize("unbiased", [False, True])
def test_slow_normalizer_equals_fast_layers(unbiased):
    x = torch.randn(SHAPE, dtype=torch.float64)
    torch.testing.assert_close(
        normalize_with_sets(x, "gn", groups=3, unbiased=unbiased),
        group_norm(x, 3, unbiased=unbiased), atol=1e-10, rtol=0)
    if not unbiased:
        torch.testing.assert_close(normalize_with_sets(x, "bn"),
                                   F.batch_norm(x, None, None, training=True), atol=1e-10, rtol=0)
        torch.testing.assert_close(normalize_with_sets(x, "ln"),
                                   F.layer_norm(x, x.shape[1:]), atol=1e-10, rtol=0)
        torch.testing.assert_close(normalize_with_sets(x, "in"), F.instance_norm(x),
                                   atol=1e-10, rtol=0)


def test_set_statistics():
    x = torch.arange(72, dtype=torch.float64).reshape(SHAPE)
    mu, sigma, m = set_statistics(x, "in", (0, 0, 0, 0))
    assert (mu, m) == (1.5, 4)
    assert sigma == pytest.approx(torch.tensor([0.0, 1, 2, 3]).std(unbiased=False).item())
    _, sigma_u, _ = set_statistics(x, "in", (0, 0, 0, 0), unbiased=True)
    assert sigma_u == pytest.approx(torch.tensor([0.0, 1, 2, 3]).std().item())


def test_errors():
    with pytest.raises(ValueError, match="needs groups"):
        normalization_set("gn", SHAPE, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="not divisible"):
        normalization_set("gn", SHAPE, (0, 0, 0, 0), groups=4)
    with pytest.raises(ValueError, match="not a valid pixel"):
        normalization_set("bn", SHAPE, (3, 0, 0, 0))
    with pytest.raises(ValueError, match="unknown kind"):
        set_size("xx", SHAPE)
