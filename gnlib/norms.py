r"""Group Normalization written from scratch (Wu & He, ECCV 2018).

The paper's equations (numbered as in the paper), for every feature ``x_i`` with index
``i = (i_N, i_C, i_H, i_W)``; here :math:`\sigma_i^2` is the variance itself (the paper folds
:math:`\epsilon` into :math:`\sigma_i`):

.. math::

    \hat x_i = \frac{x_i - \mu_i}{\sqrt{\sigma_i^2 + \epsilon}},\qquad
    \mu_i = \frac{1}{m}\sum_{k\in S_i} x_k,\qquad
    \sigma_i^2 = \frac{1}{m}\sum_{k\in S_i}(x_k-\mu_i)^2                 \tag{1, 2}

.. math::

    y_i = \gamma_{i_C}\,\hat x_i + \beta_{i_C}                                \tag{6}

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
* :func:`make_norm`: one factory for BN, BR, LN, IN, GN and no normalization;
* beyond the paper: :class:`BatchRenorm2d` (Batch Renormalization, Ioffe 2017) with its
  :class:`RenormSchedule`, and :class:`WSConv2d` / :func:`standardize_weight` /
  :func:`convert_to_ws` (Weight Standardization, Qiao et al. 2019).
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "NORM_KINDS",
    "BatchRenorm",
    "BatchRenorm1d",
    "BatchRenorm2d",
    "BatchRenorm3d",
    "GhostBatchNorm2d",
    "RenormSchedule",
    "WSConv2d",
    "convert_to_ws",
    "standardize_weight",
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
NORM_KINDS = ("bn", "ln", "in", "gn", "none", "br")


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
    is one set :math:`S_i`; then Eq. (2) and (1) over the last axis and Eq. (6) per channel.
    """
    _check_input(x, num_groups)
    N, C = x.shape[:2]
    _check_affine(weight, "weight", C)
    _check_affine(bias, "bias", C)
    xg = x.reshape(N, num_groups, -1)                       # one row per set S_i
    D = _denominator(xg.shape[-1], unbiased)               # |S_i| (biased) or |S_i| - 1
    mean = xg.mean(dim=-1, keepdim=True)                    # mu_i, Eq. (2)
    var = ((xg - mean) ** 2).sum(dim=-1, keepdim=True) / D  # sigma_i^2, Eq. (2)
    x_hat = ((xg - mean) / torch.sqrt(var + eps)).reshape(x.shape)  # Eq. (1)
    shape = (1, C) + (1,) * (x.dim() - 2)                   # broadcast per channel
    if weight is not None:
        x_hat = x_hat * weight.reshape(shape)               # gamma, Eq. (6)
    if bias is not None:
        x_hat = x_hat + bias.reshape(shape)                 # beta, Eq. (6)
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
    :math:`\partial L/\partial x = a_{nc}\,\partial L/\partial y + \kappa_{ng}\,x + c_{ng}`:
    two reductions and two fused passes into one buffer; no ``x_hat`` tensor is kept.
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
        # Eq. (2): mu over S_i. Two passes (mean, then centered squares) stay accurate
        # for inputs far from zero, where E[x^2] - E[x]^2 would cancel catastrophically.
        mean = xg.sum(dim=-1, keepdim=True) / m                       # (N, G, 1)
        # y is a fresh tensor, never a view (in-place ops such as ReLU(inplace) may follow);
        # it first holds x - mu, then the output, so no other full-size buffer is made.
        y = torch.empty_like(x)
        xc = torch.sub(xg, mean, out=y.view(N, G, -1))                # x - mu
        var = torch.linalg.vector_norm(xc, dim=-1, keepdim=True) ** 2 / D  # Eq. (2), one fused pass
        rstd = torch.rsqrt(var + eps)                                 # 1/sqrt(sigma^2+eps)
        # Eq. (1) and (6) fused: y = x_hat * gamma + beta = xc * (rstd * gamma) + beta, per (n, c).
        if weight is None and bias is None:
            xc.mul_(rstd)
        else:
            # per-(n, c) rows: (N*C, L) with (N*C, 1) coefficients is the fast broadcast
            scale = rstd.expand(N, G, C // G).reshape(N, C)
            if weight is not None:
                scale = scale * weight.view(1, C)
            yc = y.view(N * C, -1)
            if bias is not None:
                shift = bias.view(1, C).expand(N, C).reshape(N * C, 1)
                torch.addcmul(shift, yc, scale.view(N * C, 1), out=yc)
            else:
                yc.mul_(scale.view(N * C, 1))
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
        dy2, x2 = dy.view(N * C, -1), x.view(N * C, -1)              # one row per (n, c)
        m = Cg * x2.shape[-1]
        # dx's buffer first holds dL/dy * x, so the backward allocates one full-size tensor.
        dx = torch.empty_like(x)
        dx2 = dx.view(N * C, -1)
        s = torch.mul(dy2, x2, out=dx2).sum(-1).view(N, C)  # s_nc = sum dL/dy * x   (N, C)
        b = dy2.sum(dim=-1).view(N, C)                       # b_nc = sum dL/dy       (N, C)
        mean2, rstd2 = mean.view(N, G), rstd.view(N, G)

        dweight = dbias = None
        if ctx.needs_input_grad[0]:
            gam = weight.view(1, C) if weight is not None else None
            gs, gb = (s * gam, b * gam) if gam is not None else (s, b)
            sum_g = gb.view(N, G, Cg).sum(-1)                              # sum_S g_j
            sum_gx = gs.view(N, G, Cg).sum(-1)                             # sum_S g_j x_j
            sum_gxhat = (sum_gx - mean2 * sum_g) * rstd2                   # sum_S g_j x_hat_j
            c1 = rstd2 * sum_gxhat / D                                     # coefficient of x_hat
            # (B1) = g * r + x * (-r c1) + (mu r c1 - r sum_g / m): the x and constant terms
            # have one coefficient per (n, g), the dL/dy term one per (n, c) (gamma_c r_ng).
            coef_x = -rstd2 * c1                                           # (N, G)
            const = mean2 * rstd2 * c1 - rstd2 * sum_g / m                 # (N, G)
            alpha = rstd2.unsqueeze(-1).expand(N, G, Cg)                   # (N, G, C/G)
            if gam is not None:
                alpha = alpha * gam.view(1, G, Cg)
            dxg, xg = dx.view(N * G, -1), x.view(N * G, -1)               # one row per (n, g)
            torch.addcmul(const.view(N * G, 1), xg, coef_x.view(N * G, 1), out=dxg)
            dx2.addcmul_(dy2, alpha.reshape(N * C, 1))
        else:
            dx = None
        if weight is not None and ctx.needs_input_grad[2]:
            s_hat = s.view(N, G, Cg) - mean2.unsqueeze(-1) * b.view(N, G, Cg)  # sum dL/dy (x - mu)
            dweight = (s_hat * rstd2.unsqueeze(-1)).sum(0).view(C)             # (B2) gamma
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
    r"""Group Normalization of ``x`` of shape ``(N, C, *)`` (Eq. 1-2, 6 and 7 of the paper).

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
    groups of ``C/G`` channels of one sample (Eq. 1-2, 6, 7).

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
    *,
    r_max: "float | RenormSchedule" = 1.5,
    d_max: float = 0.5,
    momentum: float = 0.1,
    splits: int = 1,
) -> nn.Module:
    """Return a normalization layer for ``num_channels`` channels.

    ``kind``:

    * ``"bn"``: Batch Norm, ``S_i = {k | k_C = i_C}`` (``nn.BatchNorm{1,2,3}d``);
    * ``"ln"``: Layer Norm as in the paper, ``S_i = {k | k_N = i_N}`` = GN with ``G = 1``;
    * ``"in"``: Instance Norm, ``S_i = {k | k_N = i_N, k_C = i_C}`` = GN with ``G = C``;
    * ``"gn"``: Group Norm with ``G = min(groups, C)`` (a warning says when that is IN);
    * ``"none"``: ``nn.Identity``;
    * ``"br"``: Batch Renorm (:class:`BatchRenorm2d`, or 1d / 3d by ``spatial_dims``) with
      ``r_max``, ``d_max`` and ``momentum``; the defaults 1.5 and 0.5 are the GN paper's
      setting, ``r_max=RenormSchedule.paper(steps)`` the BR paper's warm-up.

    ``unbiased`` applies to the GN family; BN keeps PyTorch's (biased) batch statistics.
    ``r_max``, ``d_max``, ``momentum`` (keyword-only) apply to ``"br"`` only. ``splits``
    (keyword-only, ``"bn"`` with ``spatial_dims=2`` only): ``splits > 1`` returns a
    :class:`GhostBatchNorm2d` that normalizes each of ``splits`` equal slices of the batch by
    its own statistics, as BN does on each of ``splits`` data-parallel devices.
    """
    kind = kind.lower() if isinstance(kind, str) else kind
    if kind not in NORM_KINDS:
        raise ValueError(f"unknown norm kind {kind!r}; choose one of {NORM_KINDS}")
    if kind == "none":
        return nn.Identity()
    if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
        raise ValueError(f"splits must be a positive int, got {splits!r}")
    if splits > 1 and kind != "bn":
        raise ValueError(f"splits={splits} (per-device statistics) applies to kind 'bn' only, "
                         f"not {kind!r}")
    if kind == "bn":
        if splits > 1:
            if spatial_dims != 2:
                raise ValueError(f"splits > 1 needs spatial_dims=2, got {spatial_dims}")
            return GhostBatchNorm2d(num_channels, splits, eps=eps)
        if spatial_dims not in _BATCH_NORMS:
            raise ValueError(f"spatial_dims must be 1, 2 or 3 for BN, got {spatial_dims}")
        return _BATCH_NORMS[spatial_dims](num_channels, eps=eps)
    if kind == "br":
        if spatial_dims not in _BATCH_RENORMS:
            raise ValueError(f"spatial_dims must be 1, 2 or 3 for BR, got {spatial_dims}")
        if isinstance(r_max, RenormSchedule):
            return _BATCH_RENORMS[spatial_dims](num_channels, eps=eps, momentum=momentum,
                                                r_max=r_max)
        return _BATCH_RENORMS[spatial_dims](num_channels, eps=eps, momentum=momentum,
                                            r_max=r_max, d_max=d_max)
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



# --------------------------------------------------------------------------------------
# Batch Renormalization (Ioffe, NeurIPS 2017)
# --------------------------------------------------------------------------------------
class RenormSchedule:
    r"""Warm-up of Batch Renorm's clipping bounds as a function of the training step ``t``.

    The BR paper keeps :math:`r_\max = 1, d_\max = 0` (plain BN) for the first ``start``
    steps, then relaxes both linearly:

    .. math::

        r_\max(t) = 1 + (r_\max^{\text{final}} - 1)\,
            \mathrm{clip}\Big(\frac{t - t_0}{t_r - t_0}, 0, 1\Big),\qquad
        d_\max(t) = d_\max^{\text{final}}\,
            \mathrm{clip}\Big(\frac{t - t_0}{t_d - t_0}, 0, 1\Big)

    with :math:`t_0` = ``start``, :math:`t_r` = ``r_end``, :math:`t_d` = ``d_end``. The paper's
    Inception run used ``RenormSchedule(3.0, 5.0, start=5000, r_end=40000, d_end=25000)``;
    :meth:`paper` rescales those steps to a shorter run.
    """

    def __init__(
        self, r_max: float = 3.0, d_max: float = 5.0,
        start: int = 5000, r_end: int = 40000, d_end: int = 25000,
    ) -> None:
        _check_bounds(r_max, d_max)
        for name, v in (("start", start), ("r_end", r_end), ("d_end", d_end)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative int step, got {v!r}")
        if r_end <= start or d_end <= start:
            raise ValueError(
                f"the ramps must end after they start: start={start}, r_end={r_end}, d_end={d_end}"
            )
        self.r_max, self.d_max = float(r_max), float(d_max)
        self.start, self.r_end, self.d_end = start, r_end, d_end

    @classmethod
    def paper(cls, total_steps: int, r_max: float = 3.0, d_max: float = 5.0) -> "RenormSchedule":
        """The BR paper's warm-up (5k / 25k / 40k of 40k steps) rescaled to ``total_steps``."""
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 8:
            raise ValueError(f"total_steps must be an int >= 8, got {total_steps!r}")
        return cls(r_max, d_max, start=total_steps // 8, r_end=total_steps,
                   d_end=max(total_steps * 5 // 8, total_steps // 8 + 1))

    def _ramp(self, step: int, end: int) -> float:
        return min(max((step - self.start) / (end - self.start), 0.0), 1.0)

    def __call__(self, step: int) -> tuple[float, float]:
        """``(r_max, d_max)`` at training step ``step`` (0-based count of training batches)."""
        return (1.0 + (self.r_max - 1.0) * self._ramp(step, self.r_end),
                self.d_max * self._ramp(step, self.d_end))

    def __repr__(self) -> str:
        return (f"RenormSchedule(r_max={self.r_max}, d_max={self.d_max}, start={self.start}, "
                f"r_end={self.r_end}, d_end={self.d_end})")


def _check_bounds(r_max: Any, d_max: Any) -> None:
    for name, v in (("r_max", r_max), ("d_max", d_max)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    if not r_max >= 1.0:
        raise ValueError(f"r_max must be >= 1 (r is clipped to [1/r_max, r_max]), got {r_max}")
    if not d_max >= 0.0:
        raise ValueError(f"d_max must be >= 0 (d is clipped to [-d_max, d_max]), got {d_max}")


class BatchRenorm(nn.Module):
    r"""Batch Renormalization (Ioffe 2017), any number of spatial dims: the base class of
    :class:`BatchRenorm1d`, :class:`BatchRenorm2d` (documented there) and :class:`BatchRenorm3d`
    (use it in ``isinstance`` checks, e.g. to find every layer with running statistics)."""

    _expected_dims: tuple[int, ...] = ()
    __constants__ = ["num_features", "eps", "momentum", "affine"]

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        r_max: float | RenormSchedule = 1.0,
        d_max: float = 0.0,
        affine: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int):
            raise TypeError(f"num_features must be an int, got {type(num_features).__name__}")
        if num_features <= 0:
            raise ValueError(f"num_features must be positive, got {num_features}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) \
                or not 0.0 < momentum <= 1.0:
            raise ValueError(
                f"momentum must be a number in (0, 1] (weight of the new batch in the running "
                f"statistics), got {momentum!r}"
            )
        if isinstance(r_max, RenormSchedule):
            if d_max != 0.0:
                raise ValueError(
                    "pass d_max inside the RenormSchedule, not next to it "
                    f"(got d_max={d_max} and {r_max!r})"
                )
            self.schedule: RenormSchedule | None = r_max
        else:
            _check_bounds(r_max, d_max)
            self.schedule = None
            self._r_max, self._d_max = float(r_max), float(d_max)
        self.num_features = num_features
        self.eps = eps
        self.momentum = float(momentum)
        self.affine = affine
        factory = {"device": device, "dtype": dtype}
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory))
            self.bias = nn.Parameter(torch.empty(num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        # Same buffer names as nn.BatchNorm2d, so state_dicts and diagnostics carry over.
        self.register_buffer("running_mean", torch.zeros(num_features, **factory))
        self.register_buffer("running_var", torch.ones(num_features, **factory))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long,
                                                                 device=device))
        #: r and d of the last training batch (detached, shape (C,)); None before the first.
        self.last_r: Tensor | None = None
        self.last_d: Tensor | None = None
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """mu = 0, sigma^2 = 1, step count 0."""
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Running statistics reset; gamma = 1, beta = 0."""
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    @property
    def bounds(self) -> tuple[float, float]:
        """``(r_max, d_max)`` used by the next training step (follows the schedule, if any)."""
        if self.schedule is not None:
            return self.schedule(int(self.num_batches_tracked.item()))
        return self._r_max, self._d_max

    @property
    def r_max(self) -> float:
        return self.bounds[0]

    @property
    def d_max(self) -> float:
        return self.bounds[1]

    def _check_input(self, x: Any) -> None:
        name = self.__class__.__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() not in self._expected_dims:
            dims = " or ".join(f"{d}D" for d in self._expected_dims)
            raise ValueError(
                f"{name} expects a {dims} input of shape (N, C, ...), got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(
                f"{name} expects a floating-point input, got dtype {x.dtype}; "
                f"convert it first, e.g. x.float()"
            )
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{name} was built for num_features={self.num_features} but got an input "
                f"with {x.shape[1]} channels (shape {tuple(x.shape)}); build it with "
                f"num_features={x.shape[1]} or check the layer before it"
            )

    def forward(self, x: Tensor) -> Tensor:
        r"""Training: Eq. (BR) with batch statistics, r and d; eval: the inference formula."""
        self._check_input(x)
        C = self.num_features
        shape = (1, C) + (1,) * (x.dim() - 2)
        if not self.training:
            # y = gamma (x - mu) / sigma + beta, folded into one scale and one shift
            scale = torch.rsqrt(self.running_var + self.eps)
            shift = -self.running_mean * scale
            if self.affine:
                scale, shift = scale * self.weight, shift * self.weight + self.bias
            return x * scale.reshape(shape) + shift.reshape(shape)

        dims = [0] + list(range(2, x.dim()))
        m = x.numel() // C
        if m < 2:
            raise ValueError(
                f"{self.__class__.__name__} needs more than 1 value per channel when training "
                f"(got input shape {tuple(x.shape)}); use a batch of >= 2 samples or eval mode"
            )
        mean_b = x.sum(dim=dims) / m                                  # mu_B
        xc = x - mean_b.reshape(shape)
        var_b = (xc * xc).sum(dim=dims) / m                           # sigma_B^2 (biased)
        std_b = torch.sqrt(var_b + self.eps)                          # sigma_B
        r_max, d_max = self.bounds
        with torch.no_grad():                                         # stop_gradient
            std = torch.sqrt(self.running_var + self.eps)             # sigma
            r = (std_b / std).clamp(1.0 / r_max, r_max)
            d = ((mean_b - self.running_mean) / std).clamp(-d_max, d_max)
            # running statistics: mu += a (mu_B - mu), sigma^2 += a (unbiased sigma_B^2 - sigma^2)
            self.running_mean.add_(mean_b - self.running_mean, alpha=self.momentum)
            self.running_var.add_(var_b * (m / (m - 1)) - self.running_var, alpha=self.momentum)
            self.num_batches_tracked.add_(1)
        self.last_r, self.last_d = r.detach().clone(), d.detach().clone()
        scale = r / std_b                                             # x_hat = xc * r/sigma_B + d
        shift = d
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        return xc * scale.reshape(shape) + shift.reshape(shape)

    def extra_repr(self) -> str:
        s = f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
        if self.schedule is not None:
            s += f"schedule={self.schedule!r}"
        else:
            s += f"r_max={self._r_max}, d_max={self._d_max}"
        return s + f", affine={self.affine}"


class BatchRenorm1d(BatchRenorm):
    """:class:`BatchRenorm2d` for ``(N, C)`` or ``(N, C, L)`` inputs."""

    _expected_dims = (2, 3)


class BatchRenorm2d(BatchRenorm):
    r"""Batch Renormalization (Ioffe 2017) for ``(N, C, H, W)`` inputs.

    Per channel, with batch statistics :math:`\mu_B, \sigma_B = \sqrt{\sigma_B^2+\epsilon}`
    (biased variance, as BN) and running statistics :math:`\mu, \sigma = \sqrt{\sigma^2+\epsilon}`:

    .. math::

        r = \mathrm{sg}\Big(\mathrm{clip}_{[1/r_\max,\ r_\max]}\frac{\sigma_B}{\sigma}\Big),\qquad
        d = \mathrm{sg}\Big(\mathrm{clip}_{[-d_\max,\ d_\max]}\frac{\mu_B - \mu}{\sigma}\Big)

        \hat x = \frac{x - \mu_B}{\sigma_B}\,r + d,\qquad y = \gamma\,\hat x + \beta   \tag{BR}

    (:math:`\mathrm{sg}` = stop gradient: r and d are constants for the backward). Then
    :math:`\mu \mathrel{+}= \alpha(\mu_B - \mu)`,
    :math:`\sigma^2 \mathrel{+}= \alpha(\tfrac{m}{m-1}\sigma_B^2 - \sigma^2)` with
    ``momentum`` :math:`\alpha` (the unbiased variance, as :class:`torch.nn.BatchNorm2d`).
    In eval mode :math:`y = \gamma (x-\mu)/\sigma + \beta`: the formula that training
    approximates when r and d are not clipped, so training and inference agree.
    With ``r_max=1, d_max=0`` the layer is exactly :class:`torch.nn.BatchNorm2d`.

    Args:
        num_features: ``C``.
        eps: added to both variances inside the square root.
        momentum: :math:`\alpha`, weight of the new batch in the running statistics.
        r_max: a number >= 1, or a :class:`RenormSchedule` (then ``d_max`` comes from it
            and the bounds follow ``num_batches_tracked``). The GN paper compared against
            BR with ``r_max=1.5, d_max=0.5``; the BR paper warmed up to 3 and 5
            (``RenormSchedule.paper(total_steps)``).
        d_max: a number >= 0.
        affine: learn per-channel ``gamma`` (init 1) and ``beta`` (init 0).

    ``last_r`` / ``last_d`` hold the (C,) values of r and d of the last training batch.
    """

    _expected_dims = (4,)


class BatchRenorm3d(BatchRenorm):
    """:class:`BatchRenorm2d` for ``(N, C, D, H, W)`` inputs."""

    _expected_dims = (5,)


_BATCH_RENORMS = {1: BatchRenorm1d, 2: BatchRenorm2d, 3: BatchRenorm3d}


# --------------------------------------------------------------------------------------
# BN with per-device statistics ("ghost" batches, Hoffer et al. 2017)
# --------------------------------------------------------------------------------------
class GhostBatchNorm2d(nn.BatchNorm2d):
    r"""BN whose training statistics come from ``splits`` equal slices of the batch.

    A batch of ``N = splits * n`` images is cut into ``splits`` consecutive slices
    :math:`B_1, \dots, B_d` of ``n`` images, and every slice is normalized by its own
    statistics, :math:`S_i = \{k \mid k_C = i_C,\ k_N \in B(i)\}`:

    .. math::

        \hat x_i = \frac{x_i - \mu_{B(i)}}{\sqrt{\sigma^2_{B(i)} + \epsilon}}, \qquad
        y_i = \gamma\,\hat x_i + \beta

    That is what BN computes in data-parallel training with ``n`` images per device (the GN
    paper's setting: statistics per GPU, gradients averaged over all of them), simulated on
    one process: the gradient step sees the whole batch of ``N``, the statistics only ``n``.
    The running statistics are updated once per batch with the slices' averages,
    :math:`\mu \mathrel{+}= \alpha(\bar\mu_B - \mu)`,
    :math:`\sigma^2 \mathrel{+}= \alpha(\overline{\sigma^2_B}\,\tfrac{m}{m-1} - \sigma^2)`
    (``m = n H W``): what averaging the devices' buffers would give. Note that
    :math:`\overline{\sigma^2_B}` is the *within*-slice variance: when a slice holds one class
    (non-i.i.d. devices), the between-class variance never reaches the running statistics.

    With ``splits=1`` it is :class:`torch.nn.BatchNorm2d`; eval mode is always the usual
    inference formula with the running statistics.
    """

    def __init__(self, num_features: int, splits: int, eps: float = 1e-5, momentum: float = 0.1,
                 **kwargs: Any) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, **kwargs)
        if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
            raise ValueError(f"splits must be a positive int, got {splits!r}")
        self.splits = splits

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.splits == 1:
            return super().forward(x)
        if not isinstance(x, Tensor) or x.dim() != 4:
            raise ValueError(f"GhostBatchNorm2d expects (N, C, H, W), got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        N, C, H, W = x.shape
        if C != self.num_features:
            raise ValueError(f"GhostBatchNorm2d was built for num_features={self.num_features} "
                             f"but got {C} channels (shape {tuple(x.shape)})")
        d = self.splits
        if N % d:
            raise ValueError(f"batch of {N} cannot be split into {d} equal slices "
                             f"(per-device statistics need N divisible by splits)")
        m = (N // d) * H * W
        if m < 2:
            raise ValueError(f"each slice has 1 value per channel (input {tuple(x.shape)}, "
                             f"splits={d}): BN needs more than 1 value per channel")
        xs = x.reshape(d, N // d, C, H, W)
        mean = xs.mean(dim=(1, 3, 4), keepdim=True)                     # mu_B per slice
        xc = xs - mean
        var = (xc * xc).mean(dim=(1, 3, 4), keepdim=True)               # biased sigma_B^2
        xhat = (xc * torch.rsqrt(var + self.eps)).reshape(N, C, H, W)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                a = self.momentum if self.momentum is not None else 0.1
                self.running_mean.lerp_(mean.mean(0).flatten(), a)
                self.running_var.lerp_(var.mean(0).flatten() * (m / (m - 1)), a)
                self.num_batches_tracked.add_(1)
        if self.affine:
            return xhat * self.weight.view(1, C, 1, 1) + self.bias.view(1, C, 1, 1)
        return xhat

    def extra_repr(self) -> str:
        return super().extra_repr() + f", splits={self.splits}"


# --------------------------------------------------------------------------------------
# Weight Standardization (Qiao et al. 2019)
# --------------------------------------------------------------------------------------
def standardize_weight(weight: Tensor, eps: float = 1e-5) -> Tensor:
    r"""Standardize a conv weight ``(C_out, C_in/groups, *k)`` per output channel ``o``:

    .. math::

        \hat W_{o,\cdot} = \frac{W_{o,\cdot} - \mu_o}{\sqrt{\sigma_o^2 + \epsilon}},\qquad
        \mu_o = \frac{1}{I}\sum_{i} W_{o,i},\quad
        \sigma_o^2 = \frac{1}{I}\sum_{i} (W_{o,i}-\mu_o)^2                     \tag{WS}

    over the :math:`I = C_{in}/\text{groups}\cdot k_h k_w` weights of each output channel.
    Differentiable (autograd back-propagates through the standardization, as in the paper).
    """
    if not isinstance(weight, Tensor) or weight.dim() < 2:
        raise ValueError(
            "standardize_weight expects a weight tensor of shape (C_out, C_in, *kernel), got "
            + (f"shape {tuple(weight.shape)}" if isinstance(weight, Tensor) else type(weight).__name__)
        )
    if not weight.is_floating_point():
        raise TypeError(f"standardize_weight expects a floating-point weight, got {weight.dtype}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    flat = weight.reshape(weight.shape[0], -1)
    n = flat.shape[1]
    mean = flat.sum(dim=1, keepdim=True) / n
    wc = flat - mean
    var = (wc * wc).sum(dim=1, keepdim=True) / n
    return (wc * torch.rsqrt(var + eps)).reshape(weight.shape)


class WSConv2d(nn.Conv2d):
    r"""A :class:`torch.nn.Conv2d` whose weight is standardized (Eq. WS) in every forward.

    The stored ``weight`` parameter stays unconstrained; the convolution uses
    :func:`standardize_weight` of it, so each output channel's filter has zero mean and
    unit variance. Meant to be followed by GN ("GN+WS", Qiao et al. 2019). Same arguments
    as ``nn.Conv2d`` plus ``eps`` (keyword-only).
    """

    def __init__(self, *args: Any, eps: float = 1e-5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.ws_eps = eps

    def standardized_weight(self) -> Tensor:
        """The weight the convolution actually uses."""
        return standardize_weight(self.weight, self.ws_eps)

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(x, Tensor) and x.dim() in (3, 4) and x.shape[-3] != self.in_channels:
            raise ValueError(
                f"WSConv2d was built for in_channels={self.in_channels} but got an input with "
                f"{x.shape[-3]} channels (shape {tuple(x.shape)})"
            )
        return self._conv_forward(x, self.standardized_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", ws_eps={self.ws_eps}"


def convert_to_ws(module: nn.Module, eps: float = 1e-5) -> nn.Module:
    """Replace every ``nn.Conv2d`` in ``module`` (recursively) by a :class:`WSConv2d` with
    the same configuration and the same parameter values; returns ``module``.

    (How a model becomes "GN+WS": build it with GN, then ``convert_to_ws(model)``.)
    """
    if type(module) is nn.Conv2d:
        return _to_ws(module, eps)
    for name, child in module.named_children():
        if type(child) is nn.Conv2d:
            setattr(module, name, _to_ws(child, eps))
        else:
            convert_to_ws(child, eps)
    return module


def _to_ws(conv: nn.Conv2d, eps: float) -> WSConv2d:
    ws = WSConv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
        padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
        bias=conv.bias is not None, padding_mode=conv.padding_mode, eps=eps,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        ws.weight.copy_(conv.weight)
        if conv.bias is not None:
            ws.bias.copy_(conv.bias)
    ws.train(conv.training)
    return ws
