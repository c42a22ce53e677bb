r"""Diagnostics of batch-dependent normalization: how BN's statistics in training and at test
time differ.

* :func:`bn_statistics_gap`: are the **running** statistics good estimates of the statistics
  of the data (what eval mode assumes)? Recorded every epoch by :func:`gnlib.train.train`.
* :func:`batch_statistics_deviation`: how far the **batch** statistics that training
  normalizes with (per device slice, shuffled or non-i.i.d.) are from the data's statistics.

Both read the inputs of BN-family layers through forward hooks; nothing is trained or updated.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["batch_statistics_deviation", "bn_layers", "bn_statistics_gap"]


def bn_layers(model: nn.Module) -> list[nn.Module]:
    """The norm layers of ``model`` with running statistics (BN, ghost BN, Batch Renorm)."""
    from .models import norm_layers

    return [m for m in norm_layers(model) if getattr(m, "running_mean", None) is not None]


def _collect_inputs(model: nn.Module, layers: list[nn.Module], x: Tensor, batch_size: int,
                    reduce) -> None:
    """Run ``model`` in eval mode over ``x`` and call ``reduce(layer_index, input)``."""
    handles = [m.register_forward_hook(lambda m, inp, out, i=i: reduce(i, inp[0]))
               for i, m in enumerate(layers)]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                model(x[i:i + batch_size])
    finally:
        model.train(was)
        for h in handles:
            h.remove()


@torch.no_grad()
def bn_statistics_gap(model: nn.Module, x: Tensor, batch_size: int = 1000) -> dict[str, float]:
    r"""How well the running statistics of every BN / BR layer describe the data ``x``.

    In eval mode (the network inference runs), hooks collect each layer's input over ``x`` and
    compute the per-channel population statistics :math:`\mu_c, \sigma_c^2`; against the
    layer's running :math:`\hat\mu_c, \hat\sigma_c^2` this returns, averaged over the layers'
    channels, ``"mean_gap"`` :math:`= |\hat\mu_c - \mu_c| / \sigma_c` and ``"var_ratio"``
    :math:`= \hat\sigma_c^2 / \sigma_c^2` (1 and 0 when the running statistics are exact).
    """
    layers = bn_layers(model)
    if not layers:
        return {}
    sums: dict[int, list] = {}

    def add(i: int, v: Tensor) -> None:
        v = v.double()
        s = sums.setdefault(i, [0.0, 0.0, 0])
        dims = [0] + list(range(2, v.dim()))
        s[0] = s[0] + v.sum(dims); s[1] = s[1] + (v * v).sum(dims)
        s[2] += v.numel() // v.shape[1]

    _collect_inputs(model, layers, x, batch_size, add)
    gaps, ratios = [], []
    for i, m in enumerate(layers):
        s1, s2, n = sums[i]
        mu = s1 / n
        var = (s2 / n - mu * mu).clamp_min(1e-12)
        gaps.append(((m.running_mean.double() - mu).abs() / var.sqrt()).mean())
        ratios.append((m.running_var.double() / var).mean())
    return {"mean_gap": round(torch.stack(gaps).mean().item(), 5),
            "var_ratio": round(torch.stack(ratios).mean().item(), 5)}



def batch_statistics_deviation(model: nn.Module, x: Tensor, batches: Tensor, devices: int = 1,
                               layer: int = 0) -> dict[str, Tensor]:
    r"""The statistics BN layer ``layer`` normalizes with in training, against the data's.

    ``batches`` is a ``(steps, B)`` index tensor into ``x`` (e.g. from
    :func:`gnlib.train.epoch_batches`); each batch is cut into ``devices`` slices. For every
    slice :math:`s` and channel :math:`c` it compares the slice statistics
    :math:`\mu_{s,c}, \sigma^2_{s,c}` of the layer's input (eval-mode forward, so earlier
    layers are fixed) with the statistics :math:`\mu_c, \sigma^2_c` of that input over all of
    ``x``, and returns ``(steps * devices,)`` tensors averaged over channels:
    ``"mean_dev"`` :math:`= |\mu_{s,c} - \mu_c| / \sigma_c` and
    ``"var_ratio"`` :math:`= \sigma^2_{s,c} / \sigma^2_c`.
    Large values mean training normalizes with statistics that inference never uses.
    """
    layers = bn_layers(model)
    if not layers:
        raise ValueError("model has no BN layer with running statistics")
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer must be in [0, {len(layers)}), got {layer}")
    steps, B = batches.shape
    if B % devices:
        raise ValueError(f"batch {B} cannot be split into {devices} equal slices")
    feats: list[Tensor] = []
    _collect_inputs(model, layers[layer:layer + 1], x, 1000, lambda i, v: feats.append(v))
    f = torch.cat(feats).double()                                   # (n, C, H, W)
    mu = f.mean(dim=(0, 2, 3))
    var = f.var(dim=(0, 2, 3), unbiased=False)
    sl = f[batches.reshape(-1)].reshape(steps * devices, B // devices, *f.shape[1:])
    mu_s = sl.mean(dim=(1, 3, 4))                                   # (slices, C)
    var_s = sl.var(dim=(1, 3, 4), unbiased=False)
    return {"mean_dev": ((mu_s - mu).abs() / var.sqrt()).mean(1).float(),
            "var_ratio": (var_s / var).mean(1).float()}
