r"""Typical *wrong* sets :math:`S_i`, to name a mistake (notebooks 01 and 02).

For a norm ``kind`` and a pixel ``index`` of a tensor ``(N, C, *)``, :func:`mistaken_sets`
builds the sets a student typically takes instead of :math:`S_i` (another norm's set, GN's
channels grouped the wrong way, one H·W position only, ...), each with the sentence that
names the mistake. A checker compares the student's set (or its statistics) with each of
them; :func:`describe_difference` explains any other wrong mask voxel by voxel.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..sets import normalization_set

__all__ = ["NAMES", "channel_mask", "describe_difference", "mistaken_sets", "where"]

NAMES = {"bn": "Batch Norm", "ln": "Layer Norm", "in": "Instance Norm", "gn": "Group Norm"}

#: What a set is, in words, and the sentence for a student who took it instead of S_i.
_OTHER_NORM = {
    "bn": "your set includes other samples: channel i_C in all N samples is Batch Norm's set",
    "ln": "your set is the whole sample i_N, all C channels: that is Layer Norm's set",
    "in": "your set is a single channel i_C of sample i_N: that is Instance Norm's set",
    "gn": "your set is the group of C/G channels of i_C in sample i_N: that is Group Norm's set",
}
_CORRECT = {
    "bn": "BN's S_i = {k | k_C = i_C}: channel i_C, every sample, every H·W position",
    "ln": "LN's S_i = {k | k_N = i_N}: sample i_N, every channel, every H·W position",
    "in": "IN's S_i = {k | k_N = i_N, k_C = i_C}: one channel of one sample, every H·W position",
    "gn": "GN's S_i: sample i_N, the C/G consecutive channels c with c // (C/G) == "
          "i_C // (C/G), every H·W position",
}


def _view(t: Tensor, shape: Sequence[int], axis: int) -> Tensor:
    """``t`` (1D) shaped to broadcast along ``axis`` of ``shape``."""
    return t.view([-1 if a == axis else 1 for a in range(len(shape))])


def channel_mask(shape: Sequence[int], i_N: int | None, channels: Tensor) -> Tensor:
    """Mask of the given channels (bool over C) in sample ``i_N`` (``None``: every sample)."""
    shape = tuple(shape)
    samples = torch.ones(shape[0], dtype=torch.bool)
    if i_N is not None:
        samples = torch.arange(shape[0]) == i_N
    return (_view(samples, shape, 0) & _view(channels, shape, 1)).expand(shape).clone()


def _same_position(shape: Sequence[int], index: Sequence[int]) -> Tensor:
    """True at the H·W position of the pixel (every sample and channel)."""
    mask = torch.ones(tuple(shape), dtype=torch.bool)
    for axis in range(2, len(shape)):
        mask &= _view(torch.arange(shape[axis]) == index[axis], shape, axis)
    return mask


def _gn_mistakes(shape: Sequence[int], index: Sequence[int], groups: int) -> list:
    C, i_N, i_C = shape[1], index[0], index[1]
    c = torch.arange(C)
    per_group = C // groups
    return [
        (channel_mask(shape, i_N, c % groups == i_C % groups),
         "your group takes every G-th channel (c % G == i_C % G), not C/G consecutive ones"),
        (channel_mask(shape, i_N, c // groups == i_C // groups),
         "your groups hold G channels each (c // G == i_C // G); GN has G groups of C/G"),
        (channel_mask(shape, None, c // per_group == i_C // per_group),
         "your set includes other samples: the group's channels in all N samples. GN never "
         "mixes samples: keep k_N = i_N"),
    ]


def mistaken_sets(kind: str, shape: Sequence[int], index: Sequence[int],
                  groups: int | None = None) -> list[tuple[Tensor, str]]:
    """``[(mask, what the mistake is), ...]``, each different from the correct set."""
    shape, index = tuple(int(s) for s in shape), tuple(int(i) for i in index)
    correct = normalization_set(kind, shape, index, groups)
    others = [k for k in ("bn", "ln", "in", "gn") if k != kind and (k != "gn" or groups)]
    found = [(normalization_set(k, shape, index, groups), _OTHER_NORM[k]) for k in others]
    if kind == "gn":
        found += _gn_mistakes(shape, index, groups)
    found += [(torch.ones(shape, dtype=torch.bool),
               "your set is the whole tensor: all samples and all channels"),
              (correct & _same_position(shape, index),
               "your set holds only the H·W position of the pixel; S_i holds every H·W "
               "position of its channels")]
    unique: list[tuple[Tensor, str]] = []
    for mask, hint in found:
        if not torch.equal(mask, correct) and not any(torch.equal(mask, m) for m, _ in unique):
            unique.append((mask, f"{hint}. {_CORRECT[kind]}"))
    return unique


def where(mask: Tensor, axis: int) -> list[int]:
    """The indices along ``axis`` where ``mask`` has any True."""
    dims = tuple(a for a in range(mask.dim()) if a != axis)
    return mask.any(dim=dims).nonzero().flatten().tolist() if dims else \
        mask.nonzero().flatten().tolist()


def describe_difference(got: Tensor, expected: Tensor, index: Sequence[int]) -> str:
    """What is too much and what is missing in ``got``, by samples, channels, positions."""
    problems = []
    if not bool(got[tuple(index)]):
        problems.append("it does not contain the pixel i itself")
    for what, mask in (("includes", got & ~expected), ("misses", expected & ~got)):
        if mask.any():
            problems.append(f"it {what} {int(mask.sum())} value(s) in sample(s) "
                            f"{where(mask, 0)}, channel(s) {where(mask, 1)}")
    return "; ".join(problems)
