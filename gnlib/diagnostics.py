r"""Diagnostics of batch-dependent normalization: how BN's statistics in training and at test
time differ.

* :func:`bn_statistics_gap`: are the **running** statistics good estimates of the statistics
  of the data (what eval mode assumes)? Recorded every epoch by :func:`gnlib.train.train`.
* :func:`batch_statistics_deviation`: how far the **batch** statistics that training
  normalizes with (per device slice, shuffled or non-i.i.d.) are from the data's statistics.
* :func:`layer_report`: both, per layer, in one pass; :func:`precise_bn`: the running
  statistics recomputed as the average over many training batches (PreciseBN, Wu & Johnson
  2021); :func:`bn_final_report`: what :func:`gnlib.train.train` records at the end of a BN
  run (eval with running averages, with PreciseBN, with train-mode statistics; per layer).

They read the inputs of BN-family layers through forward hooks; the model is not changed.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["batch_statistics_deviation", "bn_final_report", "bn_layers", "bn_statistics_gap",
           "collect_inputs", "evaluate", "layer_report", "norm_input_shapes", "precise_bn"]


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000,
             train_mode: bool = False) -> float:
    """Error (%) of ``model`` on ``(x, y)``.

    ``train_mode=False``: eval mode (BN uses running statistics). ``train_mode=True``: a copy of
    the model in train mode, so BN normalizes each test batch of ``batch_size`` (per device
    slice, for per-device BN) with its own statistics; ``model`` is not touched.
    """
    if train_mode:
        model = copy.deepcopy(model).train()
    was = model.training
    model.train(train_mode)
    wrong, seen = 0, 0
    n = len(x) - (len(x) % batch_size if train_mode else 0)   # full batches only in train mode
    for i in range(0, n, batch_size):
        pred = model(x[i:i + batch_size]).argmax(1)
        wrong += (pred != y[i:i + batch_size]).sum().item()
        seen += len(pred)
    model.train(was)
    return 100.0 * wrong / max(seen, 1)


def bn_layers(model: nn.Module) -> list[nn.Module]:
    """The norm layers of ``model`` with running statistics (BN, ghost BN, Batch Renorm)."""
    from .models import norm_layers

    return [m for m in norm_layers(model) if getattr(m, "running_mean", None) is not None]


def collect_inputs(model: nn.Module, layers: list[nn.Module], x: Tensor, batch_size: int,
                   reduce) -> None:
    """Run ``model`` in eval mode, without gradients, over ``x`` in batches of ``batch_size``
    and call ``reduce(layer_index, input)`` with the input of each of ``layers``, batch by
    batch in order (the model's mode is restored and the hooks removed afterwards)."""
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

    collect_inputs(model, layers, x, batch_size, add)
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
    collect_inputs(model, layers[layer:layer + 1], x, 1000, lambda i, v: feats.append(v))
    f = torch.cat(feats).double()                                   # (n, C, H, W)
    mu = f.mean(dim=(0, 2, 3))
    var = f.var(dim=(0, 2, 3), unbiased=False)
    sl = f[batches.reshape(-1)].reshape(steps * devices, B // devices, *f.shape[1:])
    mu_s = sl.mean(dim=(1, 3, 4))                                   # (slices, C)
    var_s = sl.var(dim=(1, 3, 4), unbiased=False)
    return {"mean_dev": ((mu_s - mu).abs() / var.sqrt()).mean(1).float(),
            "var_ratio": (var_s / var).mean(1).float()}


@torch.no_grad()
def precise_bn(model: nn.Module, x: Tensor, batch_size: int) -> nn.Module:
    r"""A copy of ``model`` whose BN running statistics are the plain average of the batch
    statistics of ``x`` in batches of ``batch_size`` (train-mode forwards, so per-device BN
    averages its slices' statistics), instead of the exponential moving average that training
    left: :math:`\hat\mu = \frac1T\sum_t \mu_{B_t}`,
    :math:`\hat\sigma^2 = \frac1T\sum_t \frac{m}{m-1}\sigma^2_{B_t}` (PreciseBN). Returns
    the copy in eval mode."""
    m = copy.deepcopy(model)
    layers = bn_layers(m)
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None                        # cumulative average (running_stats.py)
    m.train()
    for i in range(0, len(x) - batch_size + 1, batch_size):
        m(x[i:i + batch_size])
    for layer, orig in zip(layers, bn_layers(model)):
        layer.momentum = orig.momentum
    return m.eval()


@torch.no_grad()
def layer_report(model: nn.Module, x: Tensor, slice_size: int,
                 batch_size: int = 1024) -> dict[str, list[float]]:
    r"""Per BN layer, over the images ``x`` in eval mode (what inference computes), the
    population statistics :math:`\mu_c, \sigma_c^2` of the layer's input against

    * the running statistics the layer normalizes with at inference:
      ``running_mean_gap`` :math:`= \overline{|\hat\mu_c - \mu_c| / \sigma_c}` and
      ``running_var_ratio`` :math:`= \overline{\hat\sigma_c^2 / \sigma_c^2}`;
    * the statistics of slices of ``slice_size`` consecutive images (what training normalized
      with): ``slice_mean_dev`` :math:`= \overline{|\mu_{s,c} - \mu_c| / \sigma_c}` and
      ``slice_var_ratio`` :math:`= \overline{\sigma^2_{s,c} / \sigma_c^2}` (biased
      :math:`\sigma^2_{s,c}`: the within-slice variance; between-slice variance is missing).

    Averages run over channels (and slices). Each list has one value per layer, in order.
    """
    layers = bn_layers(model)
    batch = slice_size * max(1, batch_size // slice_size)
    x = x[: len(x) - len(x) % slice_size]
    acc: dict[int, dict[str, Any]] = {i: {"s1": 0.0, "s2": 0.0, "n": 0, "mu": [], "var": []}
                                      for i in range(len(layers))}

    def add(i: int, v: Tensor) -> None:
        v = v.double()
        a, (b, C) = acc[i], v.shape[:2]
        per = v.reshape(b // slice_size, slice_size, C, -1)
        a["s1"] = a["s1"] + v.sum((0, 2, 3)); a["s2"] = a["s2"] + (v * v).sum((0, 2, 3))
        a["n"] += v.numel() // C
        a["mu"].append(per.mean((1, 3))); a["var"].append(per.var((1, 3), unbiased=False))

    collect_inputs(model, layers, x, batch, add)
    out: dict[str, list[float]] = {k: [] for k in ("running_mean_gap", "running_var_ratio",
                                                   "slice_mean_dev", "slice_var_ratio")}
    for i, layer in enumerate(layers):
        a = acc[i]
        mu = a["s1"] / a["n"]
        var = (a["s2"] / a["n"] - mu * mu).clamp_min(1e-12)
        mu_s, var_s = torch.cat(a["mu"]), torch.cat(a["var"])
        vals = ((layer.running_mean.double().cpu() - mu.cpu()).abs() / var.sqrt().cpu(),
                layer.running_var.double().cpu() / var.cpu(),
                ((mu_s - mu).abs() / var.sqrt()).cpu(), (var_s / var).cpu())
        for k, v in zip(out, vals):
            out[k].append(round(v.mean().item(), 5))
    return out


def bn_final_report(model: nn.Module, batch_size: int, xtr: Tensor, xte: Tensor, yte: Tensor,
                    precise: bool = True, precise_images: int = 10000,
                    report_images: int = 2048) -> dict[str, Any]:
    """What a BN run records at its end: the test error with train-mode statistics of test
    slices (``test_error_train_mode``), with PreciseBN over ``precise_images`` training images
    (``test_error_precise_bn``), and ``bn_layers``: :func:`layer_report` for the running
    averages and, as ``precise_mean_gap`` / ``precise_var_ratio``, for PreciseBN's."""
    splits = getattr(bn_layers(model)[0], "splits", 1)
    s = batch_size // splits                                  # images per device slice
    out: dict[str, Any] = {
        "test_error_train_mode": round(evaluate(model, xte, yte, batch_size, train_mode=True), 3)}
    layers = layer_report(model, xtr[:report_images], s)
    if precise:
        pm = precise_bn(model, xtr[:precise_images], batch_size)
        out["test_error_precise_bn"] = round(evaluate(pm, xte, yte), 3)
        p = layer_report(pm, xtr[:report_images], s)
        layers["precise_mean_gap"], layers["precise_var_ratio"] = (p["running_mean_gap"],
                                                                  p["running_var_ratio"])
    out["bn_layers"] = layers
    return out


@torch.no_grad()
def norm_input_shapes(model: nn.Module, image_size: tuple[int, ...] = (1, 28, 28)) -> list[tuple]:
    """``(C, H, W)`` of the input of every norm layer of ``model`` (in order), from one
    eval-mode forward of a blank image: how many values per channel a statistic sees."""
    from .models import norm_layers

    shapes: list[tuple] = []
    layers = norm_layers(model)
    collect_inputs(model, layers, torch.zeros(1, *image_size), 1,
                    lambda i, v: shapes.append(tuple(v.shape[1:])))
    return shapes
