r"""Group Normalization written from scratch (Wu & He, ECCV 2018).

For every feature ``x_i`` with index ``i = (i_N, i_C, i_H, i_W)``, with :math:`\sigma_i^2` the
variance itself (the paper folds :math:`\epsilon` into :math:`\sigma_i`) and ``m = |S_i|``:

.. math::

    \hat x_i = \frac{x_i - \mu_i}{\sqrt{\sigma_i^2 + \epsilon}},\qquad
    \mu_i = \frac{1}{m}\sum_{k\in S_i} x_k,\qquad
    \sigma_i^2 = \frac{1}{m}\sum_{k\in S_i}(x_k-\mu_i)^2                 \tag{1, 2}

    y_i = \gamma_{i_C}\,\hat x_i + \beta_{i_C}                                \tag{6}

    S_i = \{k \mid k_N = i_N,\ \lfloor k_C / (C/G) \rfloor = \lfloor i_C / (C/G) \rfloor\}  \tag{7}

so ``G = 1`` is Layer Norm and ``G = C`` is Instance Norm. This module holds
:func:`group_norm_reference` (readable; autograd derives its backward), :func:`group_norm`
(a :class:`torch.autograd.Function` with the backward derived by hand) and :class:`GroupNorm`
(a drop-in :class:`torch.nn.GroupNorm`). The last two take ``backend``: ``"python"`` (the
default, the PyTorch operations below), ``"cpp"`` (the same algebra in one fused C++ kernel,
``csrc/group_norm.cpp``, :class:`~gnlib.norms.group_norm_cpp.GroupNormCppFunction`) or
``"auto"`` (C++ where it applies).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .checks import check_affine, check_groups, check_input, denominator

__all__ = ["BACKENDS", "GroupNorm", "GroupNormFunction", "group_norm", "group_norm_reference"]

#: The implementations :func:`group_norm` and :class:`GroupNorm` can run: ``"python"`` (PyTorch
#: operations, :class:`GroupNormFunction`; the default), ``"cpp"`` (fused C++ kernel,
#: :class:`~gnlib.norms.group_norm_cpp.GroupNormCppFunction`; CPU float32 / float64, other
#: inputs take the Python path) and
#: ``"auto"`` (the C++ kernel where it applies and could be built, else Python).
BACKENDS = ("python", "cpp", "auto")


def group_norm_reference(x: Tensor, num_groups: int, weight: Tensor | None = None,
                         bias: Tensor | None = None, eps: float = 1e-5,
                         unbiased: bool = False) -> Tensor:
    r"""Group Norm as the paper's Figure 3 writes it; autograd derives the backward.

    ``x`` of shape ``(N, C, *)`` is reshaped to ``(N, G, C/G * prod(*))`` so that each row
    is one set :math:`S_i`; then Eq. (2) and (1) over the last axis and Eq. (6) per channel.
    """
    num_groups = check_input(x, num_groups)
    N, C = x.shape[:2]
    check_affine(weight, "weight", C)
    check_affine(bias, "bias", C)
    xg = x.reshape(N, num_groups, -1)                       # one row per set S_i
    D = denominator(xg.shape[-1], unbiased)                 # |S_i| (biased) or |S_i| - 1
    mean = xg.mean(dim=-1, keepdim=True)                    # mu_i, Eq. (2)
    var = ((xg - mean) ** 2).sum(dim=-1, keepdim=True) / D  # sigma_i^2, Eq. (2)
    x_hat = ((xg - mean) / torch.sqrt(var + eps)).reshape(x.shape)  # Eq. (1)
    shape = (1, C) + (1,) * (x.dim() - 2)                   # broadcast per channel
    if weight is not None:
        x_hat = x_hat * weight.reshape(shape)               # gamma, Eq. (6)
    if bias is not None:
        x_hat = x_hat + bias.reshape(shape)                 # beta, Eq. (6)
    return x_hat


def _dense(x: Tensor) -> Tensor:
    """``x`` itself if it is stored channels-first (contiguous) or channels-last, else a copy."""
    return x if x.is_contiguous() or x.movedim(1, -1).is_contiguous() else x.contiguous()


class _Grouped(NamedTuple):
    """A 4-D view of a dense input with the group as an axis (see :func:`_grouped`)."""

    view: Tensor
    l_axis: int                 # spatial positions of one channel
    c_axis: int                 # the C/G channels of one group
    g_axis: int                 # the G groups
    channel_shape: tuple        # broadcasts a (C,) vector such as gamma over ``view``

    def set_sum(self, t: Tensor) -> Tensor:
        """Sum of ``t`` (shaped like ``view``) over each set S_i, kept as ``(N, G)`` axes: first
        per channel over ``l_axis``, then over the group's channels (fast in both layouts)."""
        return t.sum(self.l_axis, keepdim=True).sum(self.c_axis, keepdim=True)

    def set_sum_sq(self, t: Tensor) -> Tensor:
        """Sum of squares of ``t`` over each set S_i: one fused reduction channels first,
        squares then sums channels last (strided norms are slow there)."""
        if self.l_axis == 3:
            S = (self.c_axis, self.l_axis)
            return torch.linalg.vector_norm(t, dim=S, keepdim=True).square()
        return self.set_sum(t * t)

    def coef(self, t: Tensor) -> Tensor:
        """A per-(n, g) or per-(n, c) coefficient ready to broadcast over ``view``. Channels
        last, it is expanded to one value per (n, c) so that the innermost axis is not a
        broadcast one (elementwise kernels vectorize along it: 5-10x faster)."""
        if self.l_axis == 3:                                          # channels first
            return t
        N, _, G, Cg = self.view.shape
        return t.expand(N, 1, G, Cg).contiguous()

    @property
    def stat_shape(self) -> tuple[int, ...]:
        """Broadcasts an ``(N, G)`` statistic over ``view``."""
        shape = [1, 1, 1, 1]
        shape[0], shape[self.g_axis] = self.view.shape[0], self.view.shape[self.g_axis]
        return tuple(shape)


def _grouped(x: Tensor, G: int) -> _Grouped:
    """``x`` (dense) viewed with the group as an axis, in ``x``'s own memory order, no copy:
    channels first (contiguous) ``(N, G, C/G, L)``; channels last (e.g. ``channels_last``)
    ``(N, L, G, C/G)``, with ``L`` the spatial size. One set :math:`S_i` is the axes
    ``(l_axis, c_axis)`` at fixed ``n`` and ``g``."""
    N, C, L = x.shape[0], x.shape[1], math.prod(x.shape[2:])
    if x.is_contiguous():
        return _Grouped(x.view(N, G, C // G, L), 3, 2, 1, (1, G, C // G, 1))
    return _Grouped(x.movedim(1, -1).view(N, L, G, C // G), 1, 3, 2, (1, 1, G, C // G))


def _low_precision(x: Tensor) -> torch.dtype:
    """The dtype the statistics are accumulated in: float32 for float16 / bfloat16 inputs."""
    return torch.promote_types(x.dtype, torch.float32)


class GroupNormFunction(torch.autograd.Function):
    r"""Group Norm with a hand-derived backward.

    Per set :math:`S` (one sample ``n``, one group ``g``): :math:`m=|S|`, :math:`D = m`
    (biased) or :math:`m - 1` (unbiased), :math:`r = (\sigma^2+\epsilon)^{-1/2}`, and
    :math:`g_k = \gamma_{k_C}\,\partial L/\partial y_k`:

    .. math::

        \frac{\partial L}{\partial x_k} = r\Big(g_k - \frac{1}{m}\sum_{j\in S} g_j
            - \hat x_k \frac{1}{D}\sum_{j\in S} g_j \hat x_j\Big)                 \tag{B1}

        \frac{\partial L}{\partial \gamma_c} = \sum_{k:\,k_C=c} \frac{\partial L}{\partial y_k}\hat x_k,\qquad
        \frac{\partial L}{\partial \beta_c} = \sum_{k:\,k_C=c} \frac{\partial L}{\partial y_k}   \tag{B2}

    Only ``x`` and the per-group ``mean`` :math:`\mu` and ``rstd`` :math:`r` are saved. With the
    per-(n, c) sums :math:`s_{nc} = \sum_l \partial L/\partial y\cdot x` and
    :math:`b_{nc} = \sum_l \partial L/\partial y`, (B1) is one fused pass
    :math:`\partial L/\partial x = a_{nc}\,\partial L/\partial y + \kappa_{ng}\,x + c_{ng}` with
    :math:`a_{nc} = \gamma_c r`, :math:`\kappa_{ng} = -r^2 \sum g\hat x / D` and
    :math:`c_{ng} = -\kappa_{ng}\mu - r\sum g / m`. No :math:`\hat x` tensor is kept.

    Works in the input's memory format (channels-first or channels-last, no copy); float16 and
    bfloat16 inputs are normalized with float32 statistics. Under ``create_graph=True`` the
    backward recomputes the statistics with differentiable operations (double backward).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # as native on CUDA
    def forward(ctx: Any, x: Tensor, G: int, weight: Tensor | None, bias: Tensor | None,
                eps: float, unbiased: bool) -> Tensor:
        x = _dense(x)
        acc = _low_precision(x)
        gx = _grouped(x, G)
        m = gx.view.shape[gx.l_axis] * gx.view.shape[gx.c_axis]      # m = |S_i|
        D = denominator(m, unbiased)
        xs = gx.view.to(acc)
        mu = gx.set_sum(xs) / m                                      # Eq. (2): mu
        y = torch.empty_like(x, dtype=acc)                           # x's memory format, no view
        xc = torch.sub(xs, gx.coef(mu), out=_grouped(y, G).view)     # x - mu, in y's buffer
        var = gx.set_sum_sq(xc) / D                                  # Eq. (2): sigma^2
        r = torch.rsqrt(var + eps)                                   # r = 1/sqrt(sigma^2 + eps)
        a = r if weight is None else r * weight.view(gx.channel_shape)  # a_nc = gamma_c r
        xc.mul_(gx.coef(a))                                          # x_hat gamma: Eq. (1), (6)
        if bias is not None:
            xc.add_(bias.view(gx.channel_shape))                     # + beta: Eq. (6)
        N = x.shape[0]
        ctx.save_for_backward(x, mu.view(N, G), r.view(N, G), weight)
        ctx.G, ctx.D, ctx.eps, ctx.has_bias = G, D, eps, bias is not None
        return y.to(x.dtype)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:
        x, mean, rstd, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[2], ctx.needs_input_grad[3]
        if torch.is_grad_enabled():                                  # create_graph=True
            dx, dw, db = _backward_differentiable(dy, x, ctx.G, weight, ctx.D, ctx.eps)
        else:
            dx, dw, db = _backward(dy, x, mean, rstd, ctx.G, weight, ctx.D, need_x, need_w)
        return (dx if need_x else None, None, dw if need_w else None,
                db if need_b and ctx.has_bias else None, None, None)


def _backward(dy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, G: int, weight: Tensor | None,
              D: int, need_x: bool, need_w: bool) -> tuple[Tensor | None, Tensor | None, Tensor]:
    """(B1)-(B2) in two reductions and three in-place passes (see :class:`GroupNormFunction`)."""
    acc = mean.dtype
    if dy.stride() != x.stride():                                   # dy in x's memory format
        dy = torch.empty_like(x, dtype=dy.dtype).copy_(dy)
    gx = _grouped(x, G)
    l_ax, c_ax = gx.l_axis, gx.c_axis
    xs, dys = gx.view.to(acc), _grouped(dy, G).view.to(acc)
    m = xs.shape[l_ax] * xs.shape[c_ax]
    mu, r = mean.view(gx.stat_shape), rstd.view(gx.stat_shape)
    gamma = weight.view(gx.channel_shape).to(acc) if weight is not None else None
    dx = torch.empty_like(x, dtype=acc)                             # first holds dL/dy * x
    dxs = _grouped(dx, G).view
    s = torch.mul(dys, xs, out=dxs).sum(l_ax, keepdim=True)         # s_nc = sum_l dL/dy x
    b = dys.sum(l_ax, keepdim=True)                                 # b_nc = sum_l dL/dy
    if need_x:
        gs, gb = (s * gamma, b * gamma) if gamma is not None else (s, b)
        sum_g = gb.sum(c_ax, keepdim=True)                          # sum_S g
        sum_g_xhat = (gs.sum(c_ax, keepdim=True) - mu * sum_g) * r  # sum_S g x_hat
        kappa = -r * r * sum_g_xhat / D                             # kappa_ng
        c = -kappa * mu - r * sum_g / m                             # c_ng
        a = r * gamma if gamma is not None else r                   # a_nc = gamma_c r
        torch.mul(xs, gx.coef(kappa), out=dxs).add_(gx.coef(c))    # kappa x + c
        dxs.addcmul_(dys, gx.coef(a))                               # + a dL/dy        (B1)
    dw = (r * (s - mu * b)).sum(0).reshape(-1) if need_w else None  # (B2) gamma
    db = b.sum(0).reshape(-1)                                       # (B2) beta
    cast = weight.dtype if weight is not None else x.dtype
    return (dx.to(x.dtype) if need_x else None,
            dw.to(cast) if dw is not None else None, db.to(cast))


def _backward_differentiable(dy: Tensor, x: Tensor, G: int, weight: Tensor | None, D: int,
                             eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(B1)-(B2) term by term with out-of-place operations and the statistics recomputed from
    ``x``, so that autograd can differentiate the backward itself (double backward)."""
    N, C = x.shape[:2]
    m = C // G * math.prod(x.shape[2:])                             # m = |S|
    xg, dyg = x.reshape(N, G, m), dy.reshape(N, G, m)               # one row per set S
    mu = xg.sum(-1, keepdim=True) / m
    r = torch.rsqrt(((xg - mu) ** 2).sum(-1, keepdim=True) / D + eps)
    x_hat = (xg - mu) * r
    shape = (1, C) + (1,) * (x.dim() - 2)
    g = dy * weight.reshape(shape) if weight is not None else dy
    g = g.reshape(N, G, m)
    dx = r * (g - g.sum(-1, keepdim=True) / m - x_hat * (g * x_hat).sum(-1, keepdim=True) / D)
    axes = [0] + list(range(2, x.dim()))                           # all but C
    dw = (dyg * x_hat).reshape(x.shape).sum(axes)                   # (B2) gamma
    return dx.reshape(x.shape), dw, dy.sum(axes)                    # (B1), (B2) beta


def _check_backend(backend: Any) -> str:
    """``backend`` if it is one of :data:`BACKENDS`, else a ``ValueError`` listing them."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got "
                         f"{backend!r}: 'python' runs PyTorch operations (the default), 'cpp' "
                         "a fused C++ kernel (CPU float32/float64), 'auto' C++ where it applies")
    return backend


def group_norm(x: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5, unbiased: bool = False,
               backend: str = "python") -> Tensor:
    r"""Group Normalization of ``x`` of shape ``(N, C, *)`` (Eq. 1-2, 6 and 7 of the paper).

    Args:
        x: input of shape ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``,
            in any memory format (channels-last inputs are not copied and give a
            channels-last output); float16 / bfloat16 use float32 statistics.
        num_groups: ``G``, a positive divisor of ``C``.
        weight, bias: per-channel ``gamma`` and ``beta`` of shape ``(C,)``, or ``None``.
        eps: added to the variance inside the square root.
        unbiased: divide the squared deviations by ``|S_i| - 1`` instead of ``|S_i|``
            (the default, biased form matches the paper's code and PyTorch).
        backend: ``"python"`` (PyTorch operations, the default), ``"cpp"`` (a fused C++
            kernel, compiled on first use; CPU float32 / float64 inputs, others take the Python
            path; a ``RuntimeError`` if it cannot be built) or ``"auto"`` (the C++ kernel where
            it applies and could be built, else Python). See :data:`BACKENDS`.

    Shape:
        - Input: :math:`(N, C, *)`; Output: the same shape and memory format.

    Examples::

        >>> x = torch.randn(2, 6, 4, 4)
        >>> y = group_norm(x, 3)
        >>> torch.allclose(y, torch.nn.functional.group_norm(x, 3), atol=1e-6)
        True
        >>> y.reshape(2, 3, -1).mean(-1).abs().max() < 1e-6      # zero mean in every set S_i
        tensor(True)
    """
    num_groups = check_input(x, num_groups)
    C = x.shape[1]
    check_affine(weight, "weight", C)
    check_affine(bias, "bias", C)
    if _check_backend(backend) != "python" and _cpp.use_cpp(backend, x, weight, bias):
        return _cpp.GroupNormCppFunction.apply(x, num_groups, weight, bias, float(eps),
                                               bool(unbiased))[0]
    return GroupNormFunction.apply(x, num_groups, weight, bias, float(eps), bool(unbiased))


class GroupNorm(nn.GroupNorm):
    r"""Group Normalization layer: :math:`y = \gamma\,\hat x + \beta`, :math:`\hat x` over groups
    of ``C/G`` channels of one sample (Eq. 1-2, 6, 7), computed by :func:`group_norm`.

    A :class:`torch.nn.GroupNorm` (same constructor, attributes, ``state_dict`` keys and
    ``isinstance``) whose forward is gnlib's, plus ``unbiased`` to choose the variance estimator.

    Args:
        num_groups: ``G``; must divide ``num_channels``. ``G=1`` is LN, ``G=C`` is IN.
        num_channels: ``C``, the number of channels expected in the input.
        eps: value added to the variance for numerical stability.
        affine: learn per-channel ``gamma`` (init 1) and ``beta`` (init 0).
        unbiased: use ``1/(|S_i|-1)`` in the variance instead of ``1/|S_i|``.
        backend: ``"python"`` (default), ``"cpp"`` or ``"auto"``: see :func:`group_norm`.

    Shape:
        - Input: :math:`(N, C, *)`; Output: the same shape and memory format.

    Examples::

        >>> layer = GroupNorm(2, 4)
        >>> layer
        GroupNorm(2, 4, eps=1e-05, affine=True)
        >>> isinstance(layer, torch.nn.GroupNorm)
        True
        >>> layer(torch.randn(3, 4, 5, 5)).shape
        torch.Size([3, 4, 5, 5])
    """

    __constants__ = ["num_groups", "num_channels", "eps", "affine", "unbiased", "backend"]
    backend: str = "python"         # also for layers pickled before backends existed

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 unbiased: bool = False, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, backend: str = "python") -> None:
        num_groups, num_channels = check_groups(num_groups, num_channels)
        super().__init__(num_groups, num_channels, eps=eps, affine=affine, device=device,
                         dtype=dtype)
        self.unbiased = unbiased
        self.backend = _check_backend(backend)

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(x, Tensor) and x.dim() >= 2 and x.shape[1] != self.num_channels:
            raise ValueError(
                f"{self.__class__.__name__} was built for num_channels={self.num_channels} "
                f"but got an input with {x.shape[1]} channels (shape {tuple(x.shape)}); "
                f"build it with num_channels={x.shape[1]} or check the layer before it")
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps, self.unbiased,
                          self.backend)

    def extra_repr(self) -> str:
        s = f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
        s += ", unbiased=True" if self.unbiased else ""
        return s + (f", backend={self.backend!r}" if self.backend != "python" else "")


# Last, as the kernel's module imports this one's helpers (_dense, _backward_differentiable).
from . import group_norm_cpp as _cpp  # noqa: E402
