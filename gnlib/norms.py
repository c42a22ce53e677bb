r"""Group Normalization written from scratch (Wu & He, ECCV 2018).

The paper's two equations, for every feature ``x_i`` with index ``i = (i_N, i_C, i_H, i_W)``:

.. math::

    \hat x_i = \frac{x_i - \mu_i}{\sqrt{\sigma_i^2 + \epsilon}},\qquad
    \mu_i = \frac{1}{m}\sum_{k\in S_i} x_k,\qquad
    \sigma_i^2 = \frac{1}{m}\sum_{k\in S_i}(x_k-\mu_i)^2                 \tag{1, 2}

.. math::

    y_i = \gamma_{i_C}\,\hat x_i + \beta_{i_C}                                \tag{3}

with ``m = |S_i|``. Group Norm takes the set

.. math::

    S_i = \{k \mid k_N = i_N,\ \lfloor k_C / (C/G) \rfloor = \lfloor i_C / (C/G) \rfloor\}  \tag{7}

so ``G = 1`` is Layer Norm and ``G = C`` is Instance Norm.

This module holds

* :func:`group_norm`: the fast functional form, a :class:`torch.autograd.Function` with a
  hand-derived backward;
* :func:`group_norm_reference`: the plain, readable autograd version (teaching and test oracle);
* :class:`GroupNorm`: the ``nn.Module`` (same interface and ``state_dict`` keys as
  :class:`torch.nn.GroupNorm`);
* :func:`make_norm`: one factory for BN, LN, IN, GN and no normalization.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "NORM_KINDS",
    "GroupNorm",
    "GroupNormFunction",
    "channels_per_group",
    "check_groups",
    "group_norm",
    "group_norm_reference",
    "make_norm",
    "valid_groups",
]

#: The kinds :func:`make_norm` understands.
NORM_KINDS = ("bn", "ln", "in", "gn", "none")


# --------------------------------------------------------------------------------------
# Argument checks shared by the functional form, the reference and the module
# --------------------------------------------------------------------------------------
def valid_groups(num_channels: int) -> list[int]:
    """All group counts ``G`` that divide ``num_channels`` (the valid choices for GN)."""
    return [g for g in range(1, num_channels + 1) if num_channels % g == 0]


def check_groups(num_groups: int, num_channels: int) -> None:
    """Raise a clear error unless ``num_groups`` is a positive divisor of ``num_channels``."""
    if isinstance(num_groups, bool) or not isinstance(num_groups, int):
        raise TypeError(f"num_groups must be an int, got {type(num_groups).__name__}")
    if isinstance(num_channels, bool) or not isinstance(num_channels, int):
        raise TypeError(f"num_channels must be an int, got {type(num_channels).__name__}")
    if num_channels <= 0:
        raise ValueError(f"num_channels must be positive, got {num_channels}")
    if num_groups <= 0:
        raise ValueError(
            f"num_groups must be positive, got {num_groups}; "
            f"valid choices for C={num_channels} are {valid_groups(num_channels)}"
        )
    if num_channels % num_groups != 0:
        raise ValueError(
            f"num_channels={num_channels} is not divisible by num_groups={num_groups}: "
            f"GN splits the C channels into G groups of C/G channels each. "
            f"Valid num_groups for C={num_channels}: {valid_groups(num_channels)}"
        )


def _check_input(x: Any, num_groups: int) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"group_norm expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(
            f"group_norm expects an input of shape (N, C, *) with at least 2 dims, "
            f"got shape {tuple(x.shape)}; add a batch dimension with x.unsqueeze(0)"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"group_norm expects a floating-point input, got dtype {x.dtype}; "
            f"convert it first, e.g. x.float()"
        )
    check_groups(num_groups, x.shape[1])


def _check_affine(t: Tensor | None, name: str, num_channels: int) -> None:
    if t is not None and (t.dim() != 1 or t.shape[0] != num_channels):
        raise ValueError(
            f"{name} must have shape (C,) = ({num_channels},), got {tuple(t.shape)}"
        )


def _denominator(m: int, unbiased: bool) -> int:
    """``|S_i|`` for the biased variance, ``|S_i| - 1`` for the unbiased one."""
    if unbiased and m < 2:
        raise ValueError(
            "unbiased=True needs at least 2 elements per group (|S_i| - 1 > 0), "
            f"got |S_i| = {m}"
        )
    return m - 1 if unbiased else m


# --------------------------------------------------------------------------------------
# The readable reference: reshape, mean, var (autograd does the backward)
# --------------------------------------------------------------------------------------
def group_norm_reference(
    x: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    unbiased: bool = False,
) -> Tensor:
    r"""Group Norm as the paper's Figure 3 writes it; autograd derives the backward.

    ``x`` of shape ``(N, C, *)`` is reshaped to ``(N, G, C/G * prod(*))`` so that each row
    is one set :math:`S_i`; then Eq. (1)-(2) over the last axis and Eq. (3) per channel.
    """
    _check_input(x, num_groups)
    N, C = x.shape[:2]
    _check_affine(weight, "weight", C)
    _check_affine(bias, "bias", C)
    xg = x.reshape(N, num_groups, -1)                       # one row per set S_i
    _denominator(xg.shape[-1], unbiased)
    mean = xg.mean(dim=-1, keepdim=True)                    # mu_i, Eq. (1)
    var = xg.var(dim=-1, unbiased=unbiased, keepdim=True)   # sigma_i^2, Eq. (2)
    x_hat = ((xg - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    shape = (1, C) + (1,) * (x.dim() - 2)                   # broadcast per channel
    if weight is not None:
        x_hat = x_hat * weight.reshape(shape)               # gamma, Eq. (3)
    if bias is not None:
        x_hat = x_hat + bias.reshape(shape)                 # beta, Eq. (3)
    return x_hat


# --------------------------------------------------------------------------------------
# The fast version: a custom autograd.Function with a hand-derived backward
# --------------------------------------------------------------------------------------
class GroupNormFunction(torch.autograd.Function):
    r"""Group Norm with a hand-derived backward.

    Notation per set :math:`S` (one sample ``n``, one group ``g``), :math:`m=|S|`,
    :math:`D = m` (biased) or :math:`D = m - 1` (unbiased), :math:`r = (\sigma^2+\epsilon)^{-1/2}`,
    upstream gradient :math:`\partial L/\partial y`, and :math:`g_k = \gamma_{k_C}\,\partial L/\partial y_k`:

    .. math::

        \frac{\partial L}{\partial x_k} = r\Big(g_k - \frac{1}{m}\sum_{j\in S} g_j
            - \hat x_k \frac{1}{D}\sum_{j\in S} g_j \hat x_j\Big)                 \tag{B1}

        \frac{\partial L}{\partial \gamma_c} = \sum_{k:\,k_C=c} \frac{\partial L}{\partial y_k}\hat x_k,\qquad
        \frac{\partial L}{\partial \beta_c} = \sum_{k:\,k_C=c} \frac{\partial L}{\partial y_k}   \tag{B2}

    (B1) follows from :math:`\partial\mu/\partial x_k = 1/m` and
    :math:`\partial r/\partial x_k = -r^3 (x_k-\mu)/D`.

    Implementation: only ``x`` and the per-group ``mean`` and ``rstd`` are saved. With the
    per-(n, c) sums :math:`s_{nc} = \sum \partial L/\partial y\cdot x` and
    :math:`b_{nc} = \sum \partial L/\partial y`, (B1) becomes
    :math:`\partial L/\partial x = \alpha_{nc}\,\partial L/\partial y + \beta_{ng}\,x + c_{ng}`:
    two reductions and one fused pass, no ``x_hat`` tensor is kept.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        num_groups: int,
        weight: Tensor | None,
        bias: Tensor | None,
        eps: float,
        unbiased: bool,
    ) -> Tensor:
        x = x.contiguous()
        N, C = x.shape[:2]
        G = num_groups
        xg = x.view(N, G, -1)
        m = xg.shape[-1]
        D = _denominator(m, unbiased)
        # Eq. (1): mu over S_i. Two passes (mean, then centred squares) stay accurate
        # for inputs far from zero, where E[x^2] - E[x]^2 would cancel catastrophically.
        mean = xg.sum(dim=-1, keepdim=True) / m                       # (N, G, 1)
        xc = xg - mean                                                # x - mu
        var = torch.linalg.vecdot(xc, xc, dim=-1).unsqueeze(-1) / D   # Eq. (2)
        rstd = torch.rsqrt(var + eps)                                 # 1/sqrt(sigma^2+eps)
        # Eq. (3) fused: y = x_hat * gamma + beta = xc * (rstd * gamma) + beta, per (n, c).
        y = torch.empty_like(x)  # a fresh tensor, never a view (in-place ops may follow)
        if weight is None and bias is None:
            torch.mul(xc, rstd, out=y.view(N, G, -1))
        else:
            scale = rstd.expand(N, G, C // G).reshape(N, C, 1)
            if weight is not None:
                scale = scale * weight.view(1, C, 1)
            shift = bias.view(1, C, 1) if bias is not None else torch.zeros((), dtype=x.dtype)
            torch.addcmul(shift, xc.view(N, C, -1), scale, out=y.view(N, C, -1))
        ctx.save_for_backward(x, mean, rstd, weight)
        ctx.groups, ctx.D = G, D
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, mean, rstd, weight = ctx.saved_tensors
        G, D = ctx.groups, ctx.D
        N, C = x.shape[:2]
        Cg = C // G
        dy = dy.contiguous()
        dy3, x3 = dy.view(N, C, -1), x.view(N, C, -1)
        m = Cg * x3.shape[-1]
        s = torch.linalg.vecdot(dy3, x3, dim=-1)     # s_nc = sum dL/dy * x     (N, C)
        b = dy3.sum(dim=-1)                           # b_nc = sum dL/dy         (N, C)
        mean2, rstd2 = mean.view(N, G), rstd.view(N, G)

        dx = dweight = dbias = None
        if ctx.needs_input_grad[0]:
            gam = weight.view(1, C) if weight is not None else None
            gs, gb = (s * gam, b * gam) if gam is not None else (s, b)
            sum_g = gb.view(N, G, Cg).sum(-1)                              # sum_S g_j
            sum_gx = gs.view(N, G, Cg).sum(-1)                             # sum_S g_j x_j
            sum_gxhat = (sum_gx - mean2 * sum_g) * rstd2                   # sum_S g_j x_hat_j
            c1 = rstd2 * sum_gxhat / D                                     # coefficient of x_hat
            # (B1) = g * r + x * (-r c1) + (mu r c1 - r sum_g / m)
            coef_x = (-rstd2 * c1).repeat_interleave(Cg, dim=1).unsqueeze(-1)
            const = (mean2 * rstd2 * c1 - rstd2 * sum_g / m).repeat_interleave(Cg, dim=1)
            alpha = rstd2.repeat_interleave(Cg, dim=1)
            if gam is not None:
                alpha = alpha * gam
            dx = torch.empty_like(x)
            dx3 = dx.view(N, C, -1)
            torch.addcmul(const.unsqueeze(-1), dy3, alpha.unsqueeze(-1), out=dx3)
            dx3.addcmul_(x3, coef_x)
        if weight is not None and ctx.needs_input_grad[2]:
            mean_c = mean2.repeat_interleave(Cg, dim=1)
            rstd_c = rstd2.repeat_interleave(Cg, dim=1)
            dweight = ((s - mean_c * b) * rstd_c).sum(0)                   # (B2) gamma
        if ctx.has_bias and ctx.needs_input_grad[3]:
            dbias = b.sum(0)                                               # (B2) beta
        return dx, None, dweight, dbias, None, None


def group_norm(
    x: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    unbiased: bool = False,
) -> Tensor:
    r"""Group Normalization of ``x`` of shape ``(N, C, *)`` (Eq. 1-3 and 7 of the paper).

    Args:
        x: input of shape ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        num_groups: ``G``, a positive divisor of ``C``.
        weight, bias: per-channel ``gamma`` and ``beta`` of shape ``(C,)``, or ``None``.
        eps: added to the variance inside the square root.
        unbiased: divide the squared deviations by ``|S_i| - 1`` instead of ``|S_i|``
            (the default, biased form matches the paper's code and PyTorch).

    The backward is hand-derived (see :class:`GroupNormFunction`).
    """
    _check_input(x, num_groups)
    C = x.shape[1]
    _check_affine(weight, "weight", C)
    _check_affine(bias, "bias", C)
    return GroupNormFunction.apply(x, num_groups, weight, bias, float(eps), bool(unbiased))


# --------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------
class GroupNorm(nn.Module):
    r"""Group Normalization layer: :math:`y = \gamma\,\hat x + \beta` with :math:`\hat x` over
    groups of ``C/G`` channels of one sample (Eq. 1-3, 7).

    Same constructor, attributes and ``state_dict`` keys (``weight``, ``bias``) as
    :class:`torch.nn.GroupNorm`, plus ``unbiased`` to choose the variance estimator.

    Args:
        num_groups: ``G``; must divide ``num_channels``. ``G=1`` is LN, ``G=C`` is IN.
        num_channels: ``C``, the number of channels expected in the input.
        eps: value added to the variance for numerical stability.
        affine: learn per-channel ``gamma`` (init 1) and ``beta`` (init 0).
        unbiased: use ``1/(|S_i|-1)`` in the variance instead of ``1/|S_i|``.
    """

    __constants__ = ["num_groups", "num_channels", "eps", "affine", "unbiased"]

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        unbiased: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_groups(num_groups, num_channels)
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        self.unbiased = unbiased
        if affine:
            self.weight = nn.Parameter(torch.empty(num_channels, device=device, dtype=dtype))
            self.bias = nn.Parameter(torch.empty(num_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """gamma = 1, beta = 0: the layer starts as pure normalization."""
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(x, Tensor) and x.dim() >= 2 and x.shape[1] != self.num_channels:
            raise ValueError(
                f"{self.__class__.__name__} was built for num_channels={self.num_channels} "
                f"but got an input with {x.shape[1]} channels (shape {tuple(x.shape)}); "
                f"build it with num_channels={x.shape[1]} or check the layer before it"
            )
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps, self.unbiased)

    def extra_repr(self) -> str:
        s = "{num_groups}, {num_channels}, eps={eps}, affine={affine}".format(**self.__dict__)
        return s + (", unbiased=True" if self.unbiased else "")


# --------------------------------------------------------------------------------------
# One factory for every normalization in the paper's comparison
# --------------------------------------------------------------------------------------
_BATCH_NORMS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def make_norm(
    kind: str,
    num_channels: int,
    groups: int = 32,
    eps: float = 1e-5,
    unbiased: bool = False,
    spatial_dims: int = 2,
) -> nn.Module:
    """Return a normalization layer for ``num_channels`` channels.

    ``kind``:

    * ``"bn"``: Batch Norm, ``S_i = {k | k_C = i_C}`` (``nn.BatchNorm{1,2,3}d``);
    * ``"ln"``: Layer Norm as in the paper, ``S_i = {k | k_N = i_N}`` = GN with ``G = 1``;
    * ``"in"``: Instance Norm, ``S_i = {k | k_N = i_N, k_C = i_C}`` = GN with ``G = C``;
    * ``"gn"``: Group Norm with ``G = min(groups, C)`` (a warning says when that is IN);
    * ``"none"``: ``nn.Identity``.

    ``unbiased`` applies to the GN family; BN keeps PyTorch's (biased) batch statistics.
    """
    kind = kind.lower() if isinstance(kind, str) else kind
    if kind not in NORM_KINDS:
        raise ValueError(f"unknown norm kind {kind!r}; choose one of {NORM_KINDS}")
    if kind == "none":
        return nn.Identity()
    if kind == "bn":
        if spatial_dims not in _BATCH_NORMS:
            raise ValueError(f"spatial_dims must be 1, 2 or 3 for BN, got {spatial_dims}")
        return _BATCH_NORMS[spatial_dims](num_channels, eps=eps)
    if kind == "ln":
        g = 1
    elif kind == "in":
        g = num_channels
    else:
        g = min(groups, num_channels)
        if g < groups and g > 1:
            warnings.warn(
                f"GN with groups={groups} on {num_channels} channels uses G={g}=C, "
                "which is Instance Norm (one channel per group)",
                stacklevel=2,
            )
    return GroupNorm(g, num_channels, eps=eps, unbiased=unbiased)


def channels_per_group(layer: nn.Module) -> int | None:
    """``C/G`` of a GroupNorm layer (``None`` for other layers)."""
    if isinstance(layer, (GroupNorm, nn.GroupNorm)):
        return layer.num_channels // layer.num_groups
    return None

