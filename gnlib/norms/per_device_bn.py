r"""BN across devices: statistics per device, or over the global batch of all devices.

* :class:`GhostBatchNorm2d` is what data-parallel training computes when every device
  normalizes with the statistics of its own images (the GN paper's setting: statistics per
  GPU), simulated with ``splits`` devices in one process (Hoffer et al. 2017 call the slices
  "ghost batches"): the gradient step sees the whole batch, the statistics one slice.
* :class:`GlobalBatchNorm2d` is the opposite, for real processes: statistics over every
  process's batch through ``torch.distributed`` all-reduces (:func:`global_batch_stats`,
  :func:`convert_to_global_bn`), as ``nn.SyncBatchNorm`` computes, on CPU too.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from . import group_norm_cpp as _cpp
from .group_norm import _check_backend
from .running_stats import update_running_stats

__all__ = ["GhostBatchNorm2d", "GlobalBatchNorm2d", "all_reduce_sum", "convert_to_global_bn",
           "device_slices", "global_batch_stats", "world_size"]


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

    In channels-last memory the ``d`` slices, seen as a ``(d, C, n H W, 1)`` tensor, are
    channels-last too, and BN per slice is GN on it with one channel per group (:math:`S_i`
    above is GN's set for sample ``k``, group ``c``): ``backend="cpp"`` / ``"auto"`` computes it
    with :func:`~gnlib.norms.group_norm`'s fused C++ kernel (the same result to float rounding;
    where the kernel is unavailable ``"auto"`` computes it as below).

    Args:
        num_features: ``C``.
        splits: ``d``, the number of simulated devices; must divide the batch.
        eps, momentum, affine, track_running_stats: as :class:`torch.nn.BatchNorm2d`
            (``momentum=None``: cumulative average).
        backend: ``"python"`` (default), ``"cpp"`` or ``"auto"``: the training forward of
            channels-last inputs on the C++ Group Norm kernel (see :func:`~gnlib.norms.group_norm`).

    Shape:
        - Input: :math:`(N, C, H, W)` with ``N`` divisible by ``splits``; Output: the same.

    Examples::

        >>> bn = GhostBatchNorm2d(8, splits=4)
        >>> x = torch.randn(8, 8, 5, 5)
        >>> y = bn(x)                          # 4 slices of 2 images, each normalized alone
        >>> y[:2].mean(dim=(0, 2, 3)).abs().max() < 1e-5
        tensor(True)
    """

    backend: str = "python"         # also for layers pickled before backends existed

    def __init__(self, num_features: int, splits: int, eps: float = 1e-5,
                 momentum: float | None = 0.1, backend: str = "python", **kwargs: Any) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, **kwargs)
        if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
            raise ValueError(f"splits must be a positive int, got {splits!r}")
        self.splits = splits
        self.backend = _check_backend(backend)

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
        if (self.backend != "python" and x.is_contiguous(memory_format=torch.channels_last)
                and _cpp.use_cpp(self.backend, x, self.weight, self.bias)):
            return self._on_group_norm_kernel(x)
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

    def _on_group_norm_kernel(self, x: Tensor) -> Tensor:
        """Channels-last ``x``: the slices as GN's samples, one group per channel (no copy);
        the running averages from the kernel's per-slice statistics."""
        N, C, H, W = x.shape
        xv = x.permute(0, 2, 3, 1).reshape(self.splits, -1, 1, C).permute(0, 3, 1, 2)  # (d, C, nHW, 1)
        y, mean, rstd = _cpp.GroupNormCppFunction.apply(xv, C, self.weight, self.bias,
                                                        float(self.eps), False)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                m = xv.shape[2]                                          # n H W
                var = rstd.double().pow(-2) - self.eps                   # biased sigma_B^2 (d, C)
                update_running_stats(self, mean.mean(0), (var.mean(0) * (m / (m - 1))).to(x.dtype))
        return y.permute(0, 2, 3, 1).reshape(N, H, W, C).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", splits={self.splits}"
                + (f", backend={self.backend!r}" if self.backend != "python" else ""))


def _unslice(y: Tensor, like: Tensor) -> Tensor:
    """The inverse of :func:`device_slices`: ``y`` back to ``like``'s shape and memory format."""
    N, C, H, W = like.shape
    if like.is_contiguous():
        return y.view(N, C, H, W)
    return y.view(N, H, W, C).permute(0, 3, 1, 2)


# --------------------------------------------------------------------------------------
# Global-batch statistics through torch.distributed (BN over every process's batch)
# --------------------------------------------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """``y = sum over processes of x``; backward: the gradient summed over processes too.

    Every process holds the same ``y`` and the total loss is the sum of the processes'
    losses, so ``dL/dx_r = sum_r' dL_r'/dy``: an all-reduce of the incoming gradients.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any) -> Tensor:  # type: ignore[override]
        ctx.group = group
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM, group=group)
        return y

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        g = dy.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM, group=ctx.group)
        return g, None


def all_reduce_sum(x: Tensor, group: Any = None) -> Tensor:
    """Differentiable sum over processes (``dist.all_reduce`` in forward and backward)."""
    return _AllReduceSum.apply(x, group)


def world_size(group: Any = None) -> int:
    """Processes in ``group``; 1 without an initialized process group."""
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


def _sum_over_processes(local: Tensor, group: Any, differentiable: bool) -> Tensor:
    """``local`` summed over the processes of ``group`` (itself when there is one process)."""
    if world_size(group) == 1:
        return local
    if differentiable:
        return all_reduce_sum(local, group)
    total = local.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    return total


def global_batch_stats(
    x: Tensor, group: Any = None, differentiable: bool = False
) -> tuple[Tensor, Tensor, int]:
    r"""Per-channel mean and biased variance of ``x`` ``(N, C, *)`` over the **global** batch.

    Each process contributes its local count :math:`m_r`, sums :math:`s_r = \sum x` and
    sums of squares :math:`q_r = \sum x^2` (in float64); one ``dist.all_reduce`` adds them:

    .. math::

        \mu = \frac{\sum_r s_r}{\sum_r m_r},\qquad
        \sigma^2 = \frac{\sum_r q_r}{\sum_r m_r} - \mu^2

    which is exactly the statistic of BN on the concatenated batch (what SyncBatchNorm
    computes). Without an initialized process group it is the local statistic. Returns
    ``(mean, var, count)`` in ``x``'s dtype; ``differentiable=True`` lets autograd through
    (the backward all-reduces the gradients of the sums).

    Examples::

        >>> x = torch.tensor([[[[1.0]], [[2.0]]], [[[3.0]], [[6.0]]]])   # (N=2, C=2, 1, 1)
        >>> global_batch_stats(x)                    # no process group: this batch's statistics
        (tensor([2., 4.]), tensor([1., 4.]), 2)
    """
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError("global_batch_stats expects a tensor of shape (N, C, *)")
    C = x.shape[1]
    dims = [0] + list(range(2, x.dim()))
    x64 = x.to(torch.float64)
    m_local = x.numel() // C
    local = torch.cat([
        torch.full((1,), float(m_local), dtype=torch.float64, device=x.device),
        x64.sum(dim=dims), (x64 * x64).sum(dim=dims),
    ])
    total = _sum_over_processes(local, group, differentiable)
    count = total[0]
    mean = total[1:C + 1] / count
    var = (total[C + 1:] / count - mean * mean).clamp_min(0.0)
    return mean.to(x.dtype), var.to(x.dtype), int(count.item())


class GlobalBatchNorm2d(nn.BatchNorm2d):
    r"""BatchNorm2d whose training statistics are those of the global batch across processes.

    With ``W`` processes holding batches :math:`B_1, \dots, B_W` (the same layer on each),
    every process normalizes its own images with the statistics of their union
    :math:`B = \bigcup_r B_r` (:func:`global_batch_stats`, one all-reduce):

    .. math::

        \hat x_i = \frac{x_i - \mu_B}{\sqrt{\sigma^2_B + \epsilon}},\qquad
        y_i = \gamma\,\hat x_i + \beta

    so forward and backward (whose all-reduce sums the gradients of the statistics) equal
    BN on the concatenation of every process's batch: the CPU-capable counterpart of
    ``nn.SyncBatchNorm`` (which needs GPU tensors in this PyTorch). The running statistics
    follow :func:`~gnlib.norms.running_stats.update_running_stats` with the global mean and
    unbiased variance :math:`\tfrac{M}{M-1}\sigma^2_B` (:math:`M` = global count per channel),
    the same on every process.

    Without an initialized process group (or in eval mode) it is plain ``nn.BatchNorm2d``.
    Same parameters and buffers (:func:`convert_to_global_bn` swaps it in).

    Args:
        num_features: ``C``.
        eps, affine, track_running_stats: as :class:`torch.nn.BatchNorm2d`.
        momentum: weight :math:`a` of the new batch in the running statistics, or ``None``
            for their cumulative average (:math:`a = 1/t` after the ``t``-th batch).

    Shape:
        - Input: :math:`(N, C, H, W)` on every process (``N`` may differ between processes;
          the global batch needs more than one value per channel); Output: the same.

    Examples::

        >>> gbn = GlobalBatchNorm2d(3)
        >>> x = torch.randn(4, 3, 5, 5)
        >>> torch.allclose(gbn(x), torch.nn.BatchNorm2d(3)(x), atol=1e-6)   # one process: BN
        True
        >>> # under torchrun: every process passes its own slice, the statistics are global
        >>> # model = convert_to_global_bn(model); DistributedDataParallel(model)
    """

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if not (self.training and world_size() > 1):
            return super().forward(x)
        mean, var, count = global_batch_stats(x, differentiable=True)
        if count < 2:
            raise ValueError(f"GlobalBatchNorm2d needs more than 1 value per channel, got {count}")
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                update_running_stats(self, mean.detach(), var.detach() * (count / (count - 1)))
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_to_global_bn(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by a :class:`GlobalBatchNorm2d` with the
    same configuration, parameters and buffers (like ``SyncBatchNorm.convert_sync_batchnorm``);
    returns ``module`` (or the new layer when ``module`` itself is a ``BatchNorm2d``).

    Examples::

        >>> net = convert_to_global_bn(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3),
        ...                                                torch.nn.BatchNorm2d(4)))
        >>> type(net[1]).__name__
        'GlobalBatchNorm2d'
    """
    if type(module) is nn.BatchNorm2d:
        return _to_global_bn(module)
    for name, child in module.named_children():
        setattr(module, name, convert_to_global_bn(child))
    return module


def _to_global_bn(bn: nn.BatchNorm2d) -> GlobalBatchNorm2d:
    ref = bn.weight if bn.affine else bn.running_mean
    new = GlobalBatchNorm2d(bn.num_features, bn.eps, bn.momentum, bn.affine,
                            bn.track_running_stats,
                            device=None if ref is None else ref.device,
                            dtype=None if ref is None else ref.dtype)
    new.load_state_dict(bn.state_dict())
    new.train(bn.training)
    return new
