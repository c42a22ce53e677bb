r"""Model solutions of notebook 03's exercises (peek only after trying!).

Exercise 1, the forward pass (Eq. (1)-(2), (6) and the set (7) of Wu & He), for one set
:math:`S_i` of :math:`m = |S_i|` values, with :math:`\sigma_i^2` the variance itself:

.. math::

    \mu_i = \frac1m\sum_{k\in S_i} x_k,\quad
    \sigma_i^2 = \frac1m\sum_{k\in S_i}(x_k-\mu_i)^2 \quad (2),\qquad
    \hat x_i = \frac{x_i-\mu_i}{\sqrt{\sigma_i^2+\epsilon}} \quad (1),\qquad
    y_i = \gamma_{i_C}\hat x_i + \beta_{i_C} \quad (6)

Exercise 2a, the Jacobian of one set :math:`S` of :math:`m` values with mean :math:`\mu` and
variance :math:`\sigma^2 = \frac1D\sum_{j\in S}(x_j-\mu)^2` (:math:`D = m`, or :math:`m - 1`
unbiased), :math:`r = (\sigma^2+\epsilon)^{-1/2}` and :math:`\hat x = (x-\mu)\,r`
(:data:`BACKWARD_DERIVATION` derives it; notebook 03 reveals it after the exercise):

.. math::

    \frac{\partial\hat x_k}{\partial x_j} = r\Big(\delta_{kj} - \frac1m
        - \frac{\hat x_k\,\hat x_j}{D}\Big)

Exercise 2b, the backward pass (notebook 03's (B1)-(B2), biased :math:`D = m`), with
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

__all__ = ["BACKWARD_DERIVATION", "d_xhat_d_x", "group_norm_backward", "group_norm_forward"]


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
    """Exercise 2b: ``(dL/dx, dL/dgamma, dL/dbeta)`` from ``dy = dL/dy`` and the forward's
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


def d_xhat_d_x(k: int, j: int, x_hat: Tensor, r: float, m: int, D: int) -> Tensor:
    """Exercise 2a: the entry ``(k, j)`` of the Jacobian of one set, d x_hat_k / d x_j."""
    delta = 1.0 if k == j else 0.0                          # direct path: x_k itself
    return r * (delta - 1 / m                               # path through mu: d mu/d x_j = 1/m
                - x_hat[k] * x_hat[j] / D)                  # path through sigma: 1/D, as sigma^2


#: Notebook 03's derivation of (B1)-(B2) (Markdown), revealed once Exercise 2a has passed.
BACKWARD_DERIVATION = r"""**The derivation.** Every $x_j$ of the set influences $\hat x_k = (x_k-\mu)\,r$ three ways:
directly, through $\mu$ and through $\sigma$.

* Directly: $\partial x_k/\partial x_j = \delta_{kj}$ (1 if $k = j$, else 0), which gives $r\,\delta_{kj}$.
* Through the mean: $\dfrac{\partial \mu}{\partial x_j} = \dfrac1m$, which gives $-\dfrac{r}{m}$.
* Through the variance: $\dfrac{\partial \sigma^2}{\partial x_j} = \dfrac{2}{D}(x_j-\mu)
  - \dfrac{2}{D}\dfrac1m\sum_k (x_k-\mu) = \dfrac{2}{D}(x_j-\mu)$, since $\sum_k (x_k-\mu)=0$. So
  $\dfrac{\partial r}{\partial x_j} = -\tfrac12 (\sigma^2+\epsilon)^{-3/2}\dfrac{\partial\sigma^2}{\partial x_j}
  = -\dfrac{r^3 (x_j-\mu)}{D}$, and $(x_k-\mu)\,\dfrac{\partial r}{\partial x_j} = -\dfrac{r\,\hat x_k\,\hat x_j}{D}$.
* Together, with $\hat x = (x-\mu) r$:
  $\dfrac{\partial \hat x_k}{\partial x_j} = r\Big(\delta_{kj} - \dfrac1m - \dfrac{\hat x_k\,\hat x_j}{D}\Big)$.

Summing over $k$ with the chain rule, $\partial L/\partial x_j = \sum_{k\in S} g_k\,\partial \hat x_k/\partial x_j$,
gives the gradients of the layer:

$$\frac{\partial L}{\partial x_j} = r\Big(g_j - \frac1m\sum_{k\in S} g_k - \hat x_j\,\frac1D\sum_{k\in S} g_k\hat x_k\Big) \qquad (B1)$$

$$\frac{\partial L}{\partial \gamma_c} = \sum_{k:\,k_C=c}\frac{\partial L}{\partial y_k}\,\hat x_k, \qquad
\frac{\partial L}{\partial \beta_c} = \sum_{k:\,k_C=c}\frac{\partial L}{\partial y_k} \qquad (B2)$$

**Biased vs unbiased.** The denominator $D$ appears only in the path through $\sigma$, and it must be
the *same* $D$ as in the forward: $D=m$ for the default (biased) variance, $D=m-1$ with
`unbiased=True`. The middle term always has $1/m$: the mean divides by $m$ either way.
"""
