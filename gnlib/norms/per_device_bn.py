r"""BN with per-device statistics: what data-parallel training computes when every device
normalizes with the statistics of its own images (the GN paper's setting: statistics per GPU).

:class:`GhostBatchNorm2d` simulates ``splits`` devices in one process (Hoffer et al. 2017 call
the slices "ghost batches"): the gradient step sees the whole batch, the statistics one slice.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .running_stats import update_running_stats

__all__ = ["GhostBatchNorm2d", "device_slices"]


def device_slices(x: Tensor, splits: int) -> tuple[Tensor, tuple[int, int], tuple[int, ...]]:
    """``x`` of shape ``(N, C, H, W)`` as a view with one axis per device slice, no copy:
    ``(d, n, C, H W)`` when ``x`` is contiguous, ``(d, n H W, C, 1)`` when it is channels-last
    (``N = d n``). Returns ``(view, set_axes, channel_shape)``: the statistics of slice ``k``
    and channel ``c`` reduce ``set_axes`` at fixed ``(k, c)``; ``channel_shape`` broadcasts a
    ``(C,)`` vector over the view."""
    N, C, H, W = x.shape
    if x.is_contiguous():
        return x.view(splits, N // splits, C, H * W), (1, 3), (1, 1, C, 1)
    return x.permute(0, 2, 3, 1).reshape(splits, -1, C, 1), (1, 3), (1, 1, C, 1)


class GhostBatchNorm2d(nn.BatchNorm2d):
    r"""BN whose training statistics come from ``splits`` equal slices of the batch.

    A batch of ``N = splits * n`` images is cut into ``splits`` consecutive slices
    :math:`B_1, \dots, B_d` of ``n`` images, and every slice is normalized by its own
    statistics, :math:`S_i = \{k \mid k_C = i_C,\ k_N \in B(i)\}`:

    .. math::

        \hat x_i = \frac{x_i - \mu_{B(i)}}{\sqrt{\sigma^2_{B(i)} + \epsilon}}, \qquad
        y_i = \gamma\,\hat x_i + \beta

    That is what BN computes in data-parallel training with ``n`` images per device, simulated
    on one process: the gradient step sees the whole batch of ``N``, the statistics only ``n``.
    The running statistics (:func:`~gnlib.norms.running_stats.update_running_stats`) take the
    slices' average :math:`\bar\mu_B` and :math:`\overline{\sigma^2_B}\,\tfrac{m}{m-1}`
    (``m = n H W``): what averaging the devices' buffers would give. :math:`\overline{\sigma^2_B}`
    is the *within*-slice variance: the variance between slices (between images when ``n = 1``,
    between classes when a slice holds one class) never reaches the running statistics.

    With ``splits=1`` it is :class:`torch.nn.BatchNorm2d`; eval mode is always the usual
    inference formula with the running statistics. Channels-last inputs are not copied.

    Args:
        num_features: ``C``.
        splits: ``d``, the number of simulated devices; must divide the batch.
        eps, momentum, affine, track_running_stats: as :class:`torch.nn.BatchNorm2d`
            (``momentum=None``: cumulative average).

    Shape:
        - Input: :math:`(N, C, H, W)` with ``N`` divisible by ``splits``; Output: the same.

    Examples::

        >>> bn = GhostBatchNorm2d(8, splits=4)
        >>> x = torch.randn(8, 8, 5, 5)
        >>> y = bn(x)                          # 4 slices of 2 images, each normalized alone
        >>> y[:2].mean(dim=(0, 2, 3)).abs().max() < 1e-5
        tensor(True)
    """

    def __init__(self, num_features: int, splits: int, eps: float = 1e-5,
                 momentum: float | None = 0.1, **kwargs: Any) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, **kwargs)
        if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
            raise ValueError(f"splits must be a positive int, got {splits!r}")
        self.splits = splits

    def _check(self, x: Any) -> None:
        if not isinstance(x, Tensor) or x.dim() != 4:
            raise ValueError(f"GhostBatchNorm2d expects (N, C, H, W), got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        N, C, H, W = x.shape
        if C != self.num_features:
            raise ValueError(f"GhostBatchNorm2d was built for num_features={self.num_features} "
                             f"but got {C} channels (shape {tuple(x.shape)})")
        if N % self.splits:
            raise ValueError(f"batch of {N} cannot be split into {self.splits} equal slices "
                             f"(per-device statistics need N divisible by splits)")
        if N // self.splits * H * W < 2:
            raise ValueError(f"each slice has 1 value per channel (input {tuple(x.shape)}, "
                             f"splits={self.splits}): BN needs more than 1 value per channel")

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.splits == 1:
            return super().forward(x)
        self._check(x)
        xs, S, cshape = device_slices(x, self.splits)
        m = xs.shape[S[0]] * xs.shape[S[1]]                              # n H W
        mean = xs.sum(S, keepdim=True) / m                               # mu_B per slice
        xc = xs - mean
        var = (xc * xc).sum(S, keepdim=True) / m                         # biased sigma_B^2
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            y = torch.addcmul(self.bias.view(cshape), xc, scale * self.weight.view(cshape))
        else:
            y = xc * scale
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                update_running_stats(self, mean.mean(0).flatten(),
                                     var.mean(0).flatten() * (m / (m - 1)))
        return _unslice(y, x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", splits={self.splits}"


def _unslice(y: Tensor, like: Tensor) -> Tensor:
    """The inverse of :func:`device_slices`: ``y`` back to ``like``'s shape and memory format."""
    N, C, H, W = like.shape
    if like.is_contiguous():
        return y.view(N, C, H, W)
    return y.view(N, H, W, C).permute(0, 3, 1, 2)
