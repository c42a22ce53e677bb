r"""Data augmentation on in-memory image tensors: random crop with zero padding and horizontal
flip, drawn once per epoch from a seeded generator and applied per batch by one gather
(no per-sample Python, no DataLoader).

For image ``k`` of an epoch, offsets :math:`(o_y, o_x) \in \{0, \dots, 2p\}^2` and a flip bit
:math:`f` give the ``28 x 28`` crop of the image padded by ``p`` pixels of black:

.. math::

    \tilde x_k[i, j] = x^{\text{pad}}_k[o_y + i,\ o_x + (27 - j \text{ if } f \text{ else } j)]

so every run with the same seed sees the same crops and flips, whatever its normalization.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Augmentation"]


class Augmentation:
    """Random crop (``pad`` pixels) + horizontal flip of a ``(n, 1, H, W)`` float tensor.

    Args:
        images: the training images, normalized floats; padded once here.
        pad_value: the normalized value of a black pixel (what torchvision's
            ``RandomCrop(padding=pad)`` pads with before normalization).
        pad: the padding ``p``; crops are offset by ``0 .. 2p`` pixels.

    Examples::

        >>> aug = Augmentation(torch.zeros(10, 1, 28, 28), pad_value=-1.0)
        >>> aug.new_epoch(torch.Generator().manual_seed(0))
        >>> aug.batch(torch.arange(4)).shape
        torch.Size([4, 1, 28, 28])
    """

    def __init__(self, images: Tensor, pad_value: float, pad: int = 2) -> None:
        if images.dim() != 4:
            raise ValueError(f"images must be (n, C, H, W), got shape {tuple(images.shape)}")
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        self.pad = pad
        self.size = images.shape[-2:]
        self.padded = F.pad(images, (pad, pad, pad, pad), value=pad_value)
        self.offsets: Tensor | None = None
        self.flips: Tensor | None = None

    def new_epoch(self, generator: torch.Generator) -> None:
        """Draw every image's crop offsets and flip bit for one epoch."""
        n = len(self.padded)
        self.offsets = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=generator)
        self.flips = torch.rand(n, generator=generator) < 0.5

    def batch(self, idx: Tensor) -> Tensor:
        """The augmented images ``idx`` (a 1-D index tensor) of the current epoch."""
        if self.offsets is None:
            raise RuntimeError("call new_epoch(generator) before batch(idx)")
        dev = self.padded.device
        idx_c = idx.cpu()
        H, W = self.size
        rows = self.offsets[idx_c, 0, None] + torch.arange(H)                  # (B, H)
        cols = self.offsets[idx_c, 1, None] + torch.arange(W)                  # (B, W)
        cols = torch.where(self.flips[idx_c, None], cols.flip(-1), cols)       # mirror j
        x = self.padded[idx.to(dev)[:, None, None], :, rows.to(dev)[:, :, None],
                        cols.to(dev)[:, None, :]]                            # (B, H, W, C)
        return x.permute(0, 3, 1, 2)
