r"""The running statistics of every BN variant, updated by one rule.

After each training batch, with batch mean :math:`\mu_B` and *unbiased* batch variance
:math:`\tfrac{m}{m-1}\sigma_B^2` (as :class:`torch.nn.BatchNorm2d` does):

.. math::

    \hat\mu \leftarrow \hat\mu + a\,(\mu_B - \hat\mu),\qquad
    \hat\sigma^2 \leftarrow \hat\sigma^2 + a\,(\tfrac{m}{m-1}\sigma_B^2 - \hat\sigma^2)

with :math:`a` = ``momentum``, or :math:`a = 1/t` after the ``t``-th batch when ``momentum`` is
``None``: the cumulative average of all batches so far (PyTorch's rule, and PreciseBN's).
"""
from __future__ import annotations

from torch import Tensor, nn

__all__ = ["check_momentum", "update_running_stats"]


def check_momentum(momentum: float | None) -> float | None:
    """``momentum`` in (0, 1], or ``None`` for the cumulative average."""
    if momentum is None:
        return None
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) \
            or not 0.0 < momentum <= 1.0:
        raise ValueError(f"momentum must be a number in (0, 1] (weight of the new batch in the "
                         f"running statistics) or None (cumulative average), got {momentum!r}")
    return float(momentum)


def update_running_stats(layer: nn.Module, mean: Tensor, var_unbiased: Tensor) -> None:
    """Move ``layer.running_mean`` / ``running_var`` toward one batch's ``(C,)`` statistics and
    count the batch in ``num_batches_tracked`` (call under ``torch.no_grad()``)."""
    layer.num_batches_tracked.add_(1)
    a = layer.momentum if layer.momentum is not None else 1.0 / int(layer.num_batches_tracked)
    layer.running_mean.lerp_(mean.to(layer.running_mean.dtype), a)
    layer.running_var.lerp_(var_unbiased.to(layer.running_var.dtype), a)
