"""Weight Standardization (Qiao et al. 2019): every convolution filter standardized to zero
mean and unit variance per output channel; paired with GN as "GN+WS"."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["WSConv2d", "convert_to_ws", "standardize_weight"]


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

    Shape:
        - Input: :math:`(N, C_{in}, H, W)`; Output: :math:`(N, C_{out}, H_{out}, W_{out})`,
          as :class:`torch.nn.Conv2d`.

    Examples::

        >>> conv = WSConv2d(3, 8, 3, padding=1)
        >>> conv(torch.randn(2, 3, 5, 5)).shape
        torch.Size([2, 8, 5, 5])
        >>> w_hat = conv.standardized_weight().flatten(1)   # one row per output channel
        >>> bool(w_hat.mean(1).abs().max() < 1e-6)          # zero mean ...
        True
        >>> bool((w_hat.var(1, unbiased=False) - 1).abs().max() < 1e-2)   # ... unit variance
        True
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
