r"""The batch statistics of real activations: what BN normalizes with, slice by slice.

The picture behind the paper's Figure 1. In training, BN normalizes channel :math:`c` of every
image with the mean :math:`\mu_B` and the (biased) variance :math:`\sigma_B^2` of its device's
**slice** of :math:`s` images; at test time it uses running averages that stand for the
population's :math:`\mu, \sigma^2`. The fewer images in a slice, the more :math:`\mu_B` and
:math:`\sigma_B^2` scatter, and the lower :math:`\sigma_B^2` lies on average (a slice of one
image misses the variance *between* images). GN's statistics never leave the image.

* :func:`load_trained_bn`: the committed BN network (``results/models/bn32_seed0.pt``, float16
  on disk, float32 in memory), trained with statistics over all 32 images per step;
* :class:`ActivationMoments`: one pass over a fixed set of test images with forward hooks on
  every BN layer (eval mode, the model is not changed) keeps, per layer, the per-image mean
  and mean square of every channel and the full input of one example image;
* :meth:`ActivationMoments.view`: for a layer, a channel and a slice size, the slice
  statistics of many random slices (disjoint slices of seeded permutations, as in an epoch),
  the population's statistics, the running averages, and the example image normalized by BN
  with its slice's statistics and by GN (:func:`gnlib.group_norm`, no affine) — all as plain
  numbers (:class:`SliceView`), computed from the kept moments without running the model.

Slice statistics come from per-image moments: with :math:`m_i, q_i` the mean of :math:`x` and
of :math:`x^2` over image :math:`i`'s :math:`H\cdot W` positions, a slice :math:`B` has
:math:`\mu_B = \operatorname{mean}_{i\in B} m_i` and
:math:`\sigma_B^2 = \operatorname{mean}_{i\in B} q_i - \mu_B^2` (float64).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["BN32_MODEL", "ActivationMoments", "LayerMoments", "SliceView", "load_trained_bn",
           "test_images"]

#: The committed BN network of the figure-1 grid (statistics over all 32 images, seed 0).
BN32_MODEL = Path(__file__).resolve().parent.parent / "results" / "models" / "bn32_seed0.pt"


def load_trained_bn(path: str | Path = BN32_MODEL) -> nn.Module:
    """The trained BN model (``build_model("bn")``), float32, in eval mode."""
    from .models import load_trained

    return load_trained(path, "bn")


def test_images(n: int = 1024) -> Tensor:
    """The first ``n`` Fashion-MNIST test images as float tensors (the course's scaling)."""
    from .data import load_fashion_mnist, to_float

    _, _, xte, _ = load_fashion_mnist()
    return to_float(xte[:n])


@dataclass(frozen=True)
class LayerMoments:
    """What one pass kept of one BN layer's input (eval mode)."""

    name: str               # module name in the model, e.g. "stages.0.norm1"
    shape: tuple[int, int, int]   # (C, H, W) of the input
    mean: Tensor            # (N, C) float64: per image and channel, the mean over H x W
    sq: Tensor              # (N, C) float64: ... the mean of x^2
    example: Tensor         # (C, H, W) float32: the example image's input
    running_mean: Tensor    # (C,) the layer's running averages (what eval mode uses)
    running_var: Tensor
    eps: float

    @property
    def label(self) -> str:
        C, H, W = self.shape
        return f"{self.name} ({C} channels, {H}x{W})"


@dataclass(frozen=True)
class SliceView:
    """Everything the batch-statistics figure shows, as numbers (numpy / floats)."""

    layer: str
    channel: int
    slice_size: int
    n_images: int
    slice_means: np.ndarray     # mu_B of each slice
    slice_vars: np.ndarray      # sigma_B^2 of each slice (biased, as BN normalizes)
    population_mean: float      # mu over all n_images x H x W values of the channel
    population_var: float
    running_mean: float
    running_var: float
    example_index: int
    example_slice_mean: float   # the statistics of the example image's slice
    example_slice_var: float
    bn_example: np.ndarray      # (H, W): BN's x_hat of the example with its slice's statistics
    gn_example: np.ndarray      # (H, W): GN's x_hat of the example (G = groups)
    groups: int

    @property
    def mean_spread(self) -> float:
        """Standard deviation of mu_B over slices, in units of the population sigma."""
        return float(self.slice_means.std() / math.sqrt(self.population_var))

    @property
    def var_ratio(self) -> float:
        """Mean of sigma_B^2 over slices divided by the population variance."""
        return float(self.slice_vars.mean() / self.population_var)

    @property
    def text(self) -> str:
        """The numbers under the figure, plain text, rounded."""
        s = self.slice_size
        return "\n".join([
            f"{self.layer}, channel {self.channel}: {len(self.slice_means)} slices of {s} "
            f"image{'s' * (s > 1)} from {self.n_images} test images",
            f"population: mu = {self.population_mean:+.4f}, sigma^2 = {self.population_var:.4f}"
            f"   running averages: {self.running_mean:+.4f}, {self.running_var:.4f}",
            f"slice means mu_B: mean {self.slice_means.mean():+.4f}, spread (sd) "
            f"{self.mean_spread:.3f} sigma",
            f"slice variances sigma_B^2: mean {self.slice_vars.mean():.4f} = "
            f"{self.var_ratio:.3f} x sigma^2",
            f"example image {self.example_index}: its slice has mu_B = "
            f"{self.example_slice_mean:+.4f}, sigma_B^2 = {self.example_slice_var:.4f}",
        ])


class ActivationMoments:
    """Per-image moments of every BN layer's input over the images ``x`` (one eval pass).

    ``example``: the index of the image whose full input is kept (for the normalized images).
    """

    def __init__(self, model: nn.Module, x: Tensor, example: int = 0, batch_size: int = 256):
        from .diagnostics import bn_layers, collect_inputs

        if not 0 <= example < len(x):
            raise ValueError(f"example must index one of the {len(x)} images, got {example}")
        layers = bn_layers(model)
        if not layers:
            raise ValueError("the model has no BN layer (no running statistics)")
        names = {m: n for n, m in model.named_modules()}
        self.n_images, self.example = len(x), example
        sums: list[list[tuple[Tensor, Tensor]]] = [[] for _ in layers]
        kept: dict[int, Tensor] = {}
        seen = [0] * len(layers)                                 # images before this batch

        def hook(i: int, inp: Tensor) -> None:
            v = inp.detach().double().flatten(2)                 # (n, C, H*W)
            sums[i].append((v.mean(2), (v * v).mean(2)))
            j = example - seen[i]
            if 0 <= j < len(inp):
                kept[i] = inp[j].detach().float().contiguous().clone()
            seen[i] += len(inp)

        collect_inputs(model, layers, x, batch_size, hook)
        self.layers = [
            LayerMoments(names[m], tuple(kept[i].shape), torch.cat([s[0] for s in sums[i]]),
                         torch.cat([s[1] for s in sums[i]]), kept[i],
                         m.running_mean.detach().double().clone(),
                         m.running_var.detach().double().clone(), float(m.eps))
            for i, m in enumerate(layers)]

    def between_image_share(self, layer: int) -> np.ndarray:
        """Per channel of ``layer``: the share of the population variance that lies
        *between* images (the variance of the per-image means over the population variance):
        what a slice of one image cannot see, and how much its variance falls short on average
        (law of total variance)."""
        L = self.layers[layer]
        mu = L.mean.mean(0)
        var = (L.sq.mean(0) - mu ** 2).clamp_min(1e-30)
        return (L.mean.var(0, unbiased=False) / var).numpy()

    def most_between(self) -> tuple[int, int]:
        """``(layer, channel)``: the layer whose channels have the largest median share of
        variance between images, and its channel with the largest share."""
        shares = [np.median(self.between_image_share(i)) for i in range(len(self.layers))]
        layer = int(np.argmax(shares))
        return layer, int(np.argmax(self.between_image_share(layer)))

    def slices(self, slice_size: int, n_slices: int = 1024, seed: int = 0) -> Tensor:
        """``(k, slice_size)`` image indices: the disjoint slices of seeded permutations of
        the images (as an epoch cuts its shuffled batches), enough permutations for at least
        ``n_slices`` slices."""
        N = self.n_images
        if not 1 <= slice_size <= N:
            raise ValueError(f"slice_size must be in 1..{N} (the images kept), got {slice_size}")
        per = N // slice_size
        g = torch.Generator().manual_seed(seed)
        perms = [torch.randperm(N, generator=g)[: per * slice_size]
                 for _ in range(math.ceil(n_slices / per))]
        return torch.cat(perms).view(-1, slice_size)

    def example_slice(self, slice_size: int, seed: int = 0) -> Tensor:
        """The indices of the example image's slice: the example and ``slice_size - 1``
        other images (seeded)."""
        g = torch.Generator().manual_seed(seed + 1)
        others = [i for i in torch.randperm(self.n_images, generator=g).tolist()
                  if i != self.example][: slice_size - 1]
        return torch.tensor([self.example] + others)

    def view(self, layer: int, channel: int, slice_size: int, n_slices: int = 1024,
             groups: int = 32, seed: int = 0) -> SliceView:
        """The numbers of the figure for ``layer`` (index into :attr:`layers`), ``channel``
        and slices of ``slice_size`` images."""
        from .norms import group_norm

        if not 0 <= layer < len(self.layers):
            raise ValueError(f"layer must be in 0..{len(self.layers) - 1}, got {layer}")
        L = self.layers[layer]
        C = L.shape[0]
        if not 0 <= channel < C:
            raise ValueError(f"channel must be in 0..{C - 1} for {L.name}, got {channel}")
        m, q = L.mean[:, channel], L.sq[:, channel]
        idx = self.slices(slice_size, n_slices, seed)
        mu_b = m[idx].mean(1)
        var_b = (q[idx].mean(1) - mu_b ** 2).clamp_min(0)
        mu = m.mean()
        var = (q.mean() - mu ** 2).clamp_min(0)
        mine = self.example_slice(slice_size, seed)
        ex_mu = m[mine].mean()
        ex_var = (q[mine].mean() - ex_mu ** 2).clamp_min(0)
        xc = L.example[channel].double()
        bn = (xc - ex_mu) / torch.sqrt(ex_var + L.eps)
        gn = group_norm(L.example[None], groups, eps=L.eps)[0, channel]
        return SliceView(L.name, channel, slice_size, self.n_images, mu_b.numpy(), var_b.numpy(),
                         float(mu), float(var), float(L.running_mean[channel]),
                         float(L.running_var[channel]), self.example, float(ex_mu),
                         float(ex_var), bn.float().numpy(), gn.float().numpy(), groups)
