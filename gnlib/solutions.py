r"""Model solutions of notebook 03's exercises (peek only after trying!).

Exercise 1, the forward pass (Eq. (1)-(2), (6) and the set (7) of Wu & He), for one set
:math:`S_i` of :math:`m = |S_i|` values, with :math:`\sigma_i^2` the variance itself:

.. math::

    \mu_i = \frac1m\sum_{k\in S_i} x_k,\quad
    \sigma_i^2 = \frac1m\sum_{k\in S_i}(x_k-\mu_i)^2 \quad (2),\qquad
    \hat x_i = \frac{x_i-\mu_i}{\sqrt{\sigma_i^2+\epsilon}} \quad (1),\qquad
    y_i = \gamma_{i_C}\hat x_i + \beta_{i_C} \quad (6)

Exercise 2, the backward pass (notebook 03's (B1)-(B2)), for one set :math:`S` with mean
:math:`\mu` and variance :math:`\sigma^2`, :math:`r = (\sigma^2+\epsilon)^{-1/2}` and
:math:`g_k = \gamma_{k_C}\,\partial L/\partial y_k`:

.. math::

    \frac{\partial L}{\partial x_k} = r\Big(g_k - \frac1m\sum_{j\in S} g_j
        - \hat x_k\,\frac1m\sum_{j\in S} g_j\hat x_j\Big),\quad
    \frac{\partial L}{\partial\gamma_c} = \sum_{k_C=c}\frac{\partial L}{\partial y_k}\hat x_k,\quad
    \frac{\partial L}{\partial\beta_c} = \sum_{k_C=c}\frac{\partial L}{\partial y_k}
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["group_norm_backward", "group_norm_forward"]


def group_norm_forward(
    x: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Exercise 1: Group Norm of ``x`` of shape ``(N, C, *)``, biased variance."""
    N, C = x.shape[:2]
    xg = x.reshape(N, num_groups, -1)                       # one row per set S_i
    mean = xg.mean(dim=-1, keepdim=True)                    # Eq. (2), mu_i
    var = ((xg - mean) ** 2).mean(dim=-1, keepdim=True)     # Eq. (2), sigma_i^2: 1/m
    x_hat = ((xg - mean) / torch.sqrt(var + eps)).reshape(x.shape)  # Eq. (1)
    shape = (1, C) + (1,) * (x.dim() - 2)                   # one gamma, beta per channel
    if weight is not None:
        x_hat = x_hat * weight.reshape(shape)               # Eq. (6), gamma
    if bias is not None:
        x_hat = x_hat + bias.reshape(shape)                 # Eq. (6), beta
    return x_hat


def group_norm_backward(
    dy: Tensor,
    x: Tensor,
    mean: Tensor,
    rstd: Tensor,
    num_groups: int,
    weight: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Exercise 2: ``(dL/dx, dL/dgamma, dL/dbeta)`` from ``dy = dL/dy`` and the forward's
    per-group ``mean`` and ``rstd = 1/sqrt(var + eps)``, both of shape ``(N, G)``."""
    N, C = x.shape[:2]
    shape = (1, C) + (1,) * (x.dim() - 2)
    mean, rstd = mean.reshape(N, num_groups, 1), rstd.reshape(N, num_groups, 1)
    x_hat = (x.reshape(N, num_groups, -1) - mean) * rstd              # (N, G, m)
    g = (dy * weight.reshape(shape)).reshape(N, num_groups, -1)       # gamma * dL/dy
    dx = rstd * (g - g.mean(-1, keepdim=True)                          # path through mu
                 - x_hat * (g * x_hat).mean(-1, keepdim=True))         # path through sigma
    per_channel = [0] + list(range(2, x.dim()))                       # all axes but C
    dweight = (dy * x_hat.reshape(x.shape)).sum(per_channel)
    dbias = dy.sum(per_channel)
    return dx.reshape(x.shape), dweight, dbias
