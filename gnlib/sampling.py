r"""Batch index samplers over in-memory label tensors: i.i.d. shuffled vs non-i.i.d. batches.

An epoch is a list of int64 index tensors (one per batch) into the training tensors, so a
training loop does ``for idx in batches: xb, yb = x[idx], y[idx]``.

* :func:`shuffled_batches`: the usual i.i.d. epoch, slices of one random permutation.
* :func:`non_iid_batches`: every batch holds samples of **one** class
  (``classes_per_batch=1``) or of **at most two** classes (``classes_per_batch=2``: the
  classes are paired at random each epoch and a pair's samples are shuffled together), as a
  stream in continual learning or the data of one federated client looks. The batch order
  is shuffled (``shuffle_order=False`` keeps class order: a class-incremental stream).

Why it matters for BN: with batches from one class, the batch statistics
:math:`\mu_B, \sigma_B^2` are class statistics. Training normalizes each class by itself,
while the running averages converge to :math:`\mathbb E_B[\mu_B]` and
:math:`\mathbb E_B[\sigma_B^2]`, which misses the between-class variance
:math:`\mathrm{Var}_c(\mu_c)`; eval mode then sees other statistics than training did.
GN's statistics never leave the sample, so it is unaffected.

Every sample is used exactly once per epoch when ``drop_last=False`` (the last batch of a
class / pair / epoch may then be smaller than ``batch_size``). ``drop_last=True`` keeps only
full batches (as :mod:`gnlib.train` does: every step sees exactly ``B`` images); then fewer
than ``batch_size`` samples per class (or pair, or epoch) are left out. All randomness comes
from ``generator`` (seeded ``torch.Generator``), so an epoch is reproducible.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["non_iid_batches", "shuffled_batches"]


def _check_positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def _chunks(idx: Tensor, batch_size: int, drop_last: bool) -> list[Tensor]:
    n = len(idx) - (len(idx) % batch_size if drop_last else 0)
    return [idx[i:i + batch_size] for i in range(0, n, batch_size)]


def shuffled_batches(
    n: int, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False,
) -> list[Tensor]:
    """One i.i.d. epoch over ``n`` samples: a random permutation cut into batches."""
    _check_positive_int(n, "n")
    _check_positive_int(batch_size, "batch_size")
    if drop_last and batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the number of samples {n} "
                         "(drop_last=True would give an empty epoch)")
    return _chunks(torch.randperm(n, generator=generator), batch_size, drop_last)


def _check_labels(labels: Any) -> None:
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dim() != 1 or labels.numel() == 0:
        raise ValueError(f"labels must be a non-empty 1-D tensor, got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor of class ids, got dtype {labels.dtype}")


def non_iid_batches(
    labels: Tensor,
    batch_size: int,
    classes_per_batch: int = 1,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    shuffle_order: bool = True,
) -> list[Tensor]:
    """One non-i.i.d. epoch: each batch from one class, or from one random pair of classes.

    Args:
        labels: ``(n,)`` integer class ids (e.g. the training targets).
        batch_size: samples per batch.
        classes_per_batch: 1 (single-class batches) or 2 (each epoch pairs the classes at
            random; a batch holds samples of its pair only; with an odd number of classes
            one class stays alone).
        generator: source of all randomness (within-class order, pairing, batch order).
        drop_last: keep only full batches (see the module docstring).
        shuffle_order: shuffle the order of the batches; ``False`` gives class by class.
    """
    _check_labels(labels)
    _check_positive_int(batch_size, "batch_size")
    if classes_per_batch not in (1, 2) or isinstance(classes_per_batch, bool):
        raise ValueError(f"classes_per_batch must be 1 or 2, got {classes_per_batch!r}")
    labels = labels.cpu()
    classes = torch.unique(labels)                      # sorted class ids
    if classes_per_batch == 2:
        classes = classes[torch.randperm(len(classes), generator=generator)]
        groups = [classes[i:i + 2] for i in range(0, len(classes), 2)]
    else:
        groups = [classes[i:i + 1] for i in range(len(classes))]
    batches: list[Tensor] = []
    for group in groups:
        idx = torch.nonzero(torch.isin(labels, group)).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        batches.extend(_chunks(idx, batch_size, drop_last))
    if not batches:
        raise ValueError(
            f"batch_size {batch_size} with drop_last=True leaves no full batch: every class "
            f"group has fewer samples (largest: {max(int(torch.isin(labels, g).sum()) for g in groups)})"
        )
    if shuffle_order:
        order = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[i] for i in order]
    return batches
