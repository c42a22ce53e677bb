"""gnlib.group_norm as robust as torch's: every dtype x memory format x G x affine against
``torch.nn.functional.group_norm``, float16's range, autocast, memory format in and out, what
is saved for the backward, double backward, empty batches, NumPy integers; and the main
comparisons again on CUDA (skipped without a GPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gnlib.norms import GroupNorm, group_norm

C = 12
GROUPS = [1, 4, C]                                    # LN, a middle G, IN
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
FORMATS = {                                           # name -> (shape, memory format)
    "contiguous": ((2, C, 5, 6), torch.contiguous_format),
    "channels_last": ((2, C, 5, 6), torch.channels_last),
    "channels_last_3d": ((2, C, 3, 4, 2), torch.channels_last_3d),
}
#: Allowed difference from native, relative to the values' magnitude: a few rounding steps
#: of the dtype (float16 / bfloat16 results are rounded to 11 / 8 significant bits).
TOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 4 * 2.0 ** -10,
       torch.bfloat16: 4 * 2.0 ** -7}
LOW_PRECISION = [torch.float16, torch.bfloat16]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="CUDA is not available: the GPU comparisons need a GPU")


def _case(fmt: str, dtype: torch.dtype, affine: bool = True, device: str = "cpu", seed: int = 0):
    """``(x, weight, bias, dy)`` in ``dtype`` on ``device``, ``x`` in memory format ``fmt``."""
    shape, memory_format = FORMATS[fmt]
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * 2 + 0.5).to(memory_format=memory_format)
    w = torch.rand(C, generator=g) + 0.5
    b = torch.randn(C, generator=g)
    dy = torch.randn(shape, generator=g)
    to = dict(device=device, dtype=dtype)
    return (x.to(**to), w.to(**to) if affine else None, b.to(**to) if affine else None,
            dy.to(**to))


def _fwd_bwd(fn, x, G, w, b, dy):
    """``(y, grads)`` of ``fn(x, G, w, b)`` for ``dy``, with fresh leaves for x, w, b."""
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (x, w, b)]
    y = fn(leaves[0], G, leaves[1], leaves[2])
    params = [t for t in leaves if t is not None]
    return y, torch.autograd.grad(y, params, dy)


def _close(got, want):
    scale = max(1.0, want.detach().abs().max().item())
    tol = TOL[want.dtype]
    torch.testing.assert_close(got, want, atol=tol * scale, rtol=tol)


def _check_against_native(dtype, fmt, G, affine, device="cpu"):
    x, w, b, dy = _case(fmt, dtype, affine, device)
    y, grads = _fwd_bwd(group_norm, x, G, w, b, dy)
    y_ref, grads_ref = _fwd_bwd(F.group_norm, x, G, w, b, dy)
    assert y.dtype == dtype and y.shape == x.shape and y.device == x.device
    assert y.is_contiguous(memory_format=FORMATS[fmt][1])     # the input's memory format
    _close(y, y_ref)
    for got, want in zip(grads, grads_ref):
        assert got.dtype == want.dtype and got.shape == want.shape
        _close(got, want)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("G", GROUPS)
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_native_in_every_dtype_and_memory_format(dtype, fmt, G, affine):
    _check_against_native(dtype, fmt, G, affine)


@pytest.mark.parametrize("G", GROUPS)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_low_precision_is_as_accurate_as_native(dtype, G):
    """Against float64 truth, gnlib's float16 / bfloat16 output and gradients are at most
    twice as far off as native's (plus one rounding step)."""
    x, w, b, dy = _case("channels_last", dtype)
    ours = _fwd_bwd(group_norm, x, G, w, b, dy)
    native = _fwd_bwd(F.group_norm, x, G, w, b, dy)
    truth = _fwd_bwd(F.group_norm, x.double(), G, w.double(), b.double(), dy.double())
    for got, nat, want in zip([ours[0], *ours[1]], [native[0], *native[1]],
                              [truth[0], *truth[1]]):
        err, err_native = ((t.double() - want).abs().max().item() for t in (got, nat))
        assert err <= 2 * err_native + torch.finfo(dtype).eps * want.abs().max().item()


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_float16_layer_norm_sized_group_does_not_overflow(scale):
    """G = 1 on a (64, 56, 56) sample: sum of squares = 2e5 (2e9 at scale 100) exceeds
    float16's 65504; the statistics must be accumulated in float32."""
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 64, 56, 56, generator=g) * scale).half()
    dy = torch.randn(2, 64, 56, 56, generator=g).half()
    y, (dx,) = _fwd_bwd(lambda x, G, w, b: group_norm(x, G), x, 1, None, None, dy)
    y_ref, (dx_ref,) = _fwd_bwd(lambda x, G, w, b: F.group_norm(x, G), x, 1, None, None, dy)
    assert torch.isfinite(y).all() and torch.isfinite(dx).all()
    _close(y, y_ref)
    _close(dx, dx_ref)


def test_autocast_on_cpu_behaves_like_native():
    """Under bf16 autocast a conv hands GN bfloat16 activations: same output dtype as
    native GN (bfloat16 on CPU), same values within bfloat16 rounding; float32 inputs stay
    float32."""
    conv = torch.nn.Conv2d(3, C, 3, padding=1)
    x = torch.randn(2, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv(x)
        ours, native = GroupNorm(4, C)(h), torch.nn.GroupNorm(4, C)(h)
        x32 = x.repeat(1, 4, 1, 1)                   # float32 (12 channels), not a conv output
        ours32, native32 = group_norm(x32, 4), F.group_norm(x32, 4)
    assert h.dtype == torch.bfloat16
    assert ours.dtype == native.dtype and ours32.dtype == native32.dtype == torch.float32
    _close(ours, native)
    _close(ours32, native32)


def _saved_by(fn, *args):
    """``(data_ptr, shape)`` of every tensor ``fn(*args)`` saves for its backward."""
    saved = []

    def pack(t):
        saved.append((t.data_ptr(), tuple(t.shape)))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(*args)
    return y, saved


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_keeps_the_memory_format_and_saves_only_x_and_group_statistics(fmt):
    """Channels-last in, channels-last out; saved: x itself (same storage: no copy), mean
    and rstd per (n, g), and gamma (a parameter): exactly what native GN saves."""
    x, w, b, _ = _case(fmt, torch.float32)
    x.requires_grad_(), w.requires_grad_(), b.requires_grad_()
    G, N = 4, x.shape[0]
    y, saved = _saved_by(group_norm, x, G, w, b)
    assert y.is_contiguous(memory_format=FORMATS[fmt][1])
    assert (x.data_ptr(), tuple(x.shape)) in saved
    others = sorted(shape for ptr, shape in saved if ptr != x.data_ptr())
    assert others == sorted([(N, G), (N, G), (C,)])
    assert (w.data_ptr(), (C,)) in saved
    _, native = _saved_by(F.group_norm, x, G, w, b)
    assert sorted(s for _, s in saved) == sorted(s for _, s in native)


@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
@pytest.mark.parametrize("affine", [True, False])
def test_double_backward_gradgradcheck(fmt, affine):
    x, w, b, _ = _case(fmt, torch.float64, affine)
    x = x[:, :, :3, :2].contiguous(memory_format=FORMATS[fmt][1]).requires_grad_()
    if affine:
        w, b = w.requires_grad_(), b.requires_grad_()
        assert torch.autograd.gradgradcheck(lambda x, w, b: group_norm(x, 4, w, b), (x, w, b))
    else:
        assert torch.autograd.gradgradcheck(lambda x: group_norm(x, 4), (x,))


@pytest.mark.parametrize("affine", [True, False])
def test_empty_batch_works_as_in_torch(affine):
    """N = 0: an empty output of the input's shape; the backward gives an empty dx and zero
    dgamma / dbeta (sums over no samples), as native does."""
    x = torch.randn(0, C, 4, 4, requires_grad=True)
    w = torch.rand(C, requires_grad=True) if affine else None
    b = torch.randn(C, requires_grad=True) if affine else None
    y = group_norm(x, 4, w, b)
    assert y.shape == x.shape
    params = [t for t in (x, w, b) if t is not None]
    grads = torch.autograd.grad(y.sum(), params)
    native = torch.autograd.grad(F.group_norm(x, 4, w, b).sum(), params)
    assert grads[0].shape == x.shape
    for got, want in zip(grads, native):
        assert got.shape == want.shape and torch.equal(got, want)
        if got.shape == (C,):
            assert torch.equal(got, torch.zeros(C))


def test_numpy_integers_and_isinstance():
    layer = GroupNorm(np.int64(2), np.int64(8))
    assert (layer.num_groups, layer.num_channels) == (2, 8)
    assert type(layer.num_groups) is int and type(layer.num_channels) is int
    assert isinstance(GroupNorm(2, 4), torch.nn.GroupNorm)
    x = torch.randn(3, 8, 2, 2)
    torch.testing.assert_close(layer(x), F.group_norm(x, 2, layer.weight, layer.bias))
    torch.testing.assert_close(group_norm(x, np.int32(4)), F.group_norm(x, 4))


# --------------------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------------------
@needs_cuda
@pytest.mark.parametrize("G", GROUPS)
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_native_on_cuda(dtype, fmt, G):
    _check_against_native(dtype, fmt, G, True, device="cuda")


@needs_cuda
def test_float16_large_group_and_autocast_on_cuda():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 56, 56, generator=g).half().cuda()
    y, y_ref = group_norm(x, 1), F.group_norm(x, 1)
    assert torch.isfinite(y).all()
    _close(y, y_ref)
    conv = torch.nn.Conv2d(3, C, 3, padding=1).cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        h = conv(torch.randn(2, 3, 6, 6, device="cuda"))
        ours, native = group_norm(h, 4), F.group_norm(h, 4)
    assert ours.dtype == native.dtype
    _close(ours, native)
