r"""Typical *wrong* Group Norm forwards and backwards (notebook 03), to name a mistake.

:func:`forward_variant`, :func:`dxhat_variant` and :func:`dx_variant` compute Eq. (1)-(2), (6),
the Jacobian :math:`\partial\hat x_k/\partial x_j` and the backward (B1) with one deliberate
deviation each (statistics per channel, over the whole sample, unbiased variance, eps outside the
square root, a forgotten path through mu, a missing Kronecker delta, ...). A checker compares the
student's output with each variant: a match names the mistake (``FORWARD_HINTS``,
``DXHAT_HINTS``, ``DX_HINTS``).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["DXHAT_HINTS", "DX_HINTS", "FORWARD_HINTS", "dx_variant", "dxhat_variant", "forward_variant",
           "grouped", "per_channel"]


# --------------------------------------------------------------------------------------
# Wrong variants: what typical mistakes compute, to recognize them by their output
# --------------------------------------------------------------------------------------
def grouped(x: Tensor, groups: int, grouping: str) -> tuple[Tensor, tuple[int, ...]]:
    """``x`` viewed so that the sets of ``grouping`` are reduced over the returned dims."""
    N, C = x.shape[:2]
    if grouping == "group":
        return x.reshape(N, groups, -1), (2,)
    if grouping == "channel":
        return x.reshape(N, C, -1), (2,)
    if grouping == "sample":
        return x.reshape(N, 1, -1), (2,)
    if grouping == "batch":
        return x.reshape(N, groups, -1), (0, 2)
    if grouping == "interleaved":
        return x.reshape(N, C // groups, groups, -1), (1, 3)
    raise ValueError(grouping)


def per_channel(t: Tensor, dim: int) -> Tensor:
    return t.reshape((1, -1) + (1,) * (dim - 2))


def forward_variant(
    x: Tensor, groups: int, weight: Tensor, bias: Tensor, eps: float, *,
    grouping: str = "group", correction: int = 0, eps_mode: str = "inside",
    center: bool = True, affine: str = "both",
) -> Tensor:
    """Eq. (1)-(2), (6) with one deliberate deviation (the defaults are the correct GN)."""
    xv, dims = grouped(x, groups, grouping)
    m = 1
    for d in dims:
        m *= xv.shape[d]
    mean = xv.mean(dims, keepdim=True)
    var = ((xv - mean) ** 2).sum(dims, keepdim=True) / (m - correction)
    num = xv - mean if center else xv
    den = {"inside": torch.sqrt(var + eps), "outside": torch.sqrt(var) + eps,
           "none": torch.sqrt(var), "variance": var + eps}[eps_mode]
    y = (num / den).reshape(x.shape)
    if affine in ("both", "weight"):
        y = y * per_channel(weight, x.dim())
    if affine in ("both", "bias"):
        y = y + per_channel(bias, x.dim())
    return y


FORWARD_HINTS: tuple[tuple[dict[str, Any], str], ...] = (
    (dict(grouping="channel"),
     "wrong axis of reduction: your mean/variance are taken per channel (like Instance Norm). "
     "GN pools the C/G channels of a group: reshape x to (N, G, -1) and reduce the last axis."),
    (dict(grouping="sample"),
     "wrong axis of reduction: your mean/variance are taken over the whole sample, all C "
     "channels (like Layer Norm). Use G groups: reshape x to (N, G, -1)."),
    (dict(grouping="batch"),
     "wrong axis of reduction: your statistics also average over the batch axis N (like Batch "
     "Norm). GN never mixes samples: reduce only the last axis of x.reshape(N, G, -1)."),
    (dict(grouping="interleaved"),
     "wrong grouping: your groups take every G-th channel (reshape(N, C//G, G, ...)). A group "
     "is C/G consecutive channels: reshape(N, G, C//G, ...), i.e. x.reshape(N, G, -1)."),
    (dict(correction=1),
     "biased/unbiased mix-up: the variance divides by m = |S_i|, not m - 1 (torch.var "
     "defaults to m - 1: pass unbiased=False or correction=0)."),
    (dict(eps_mode="outside"),
     "eps outside the square root: use (x - mu) / sqrt(var + eps), not / (sqrt(var) + eps)."),
    (dict(eps_mode="none"),
     "eps is missing: divide by sqrt(var + eps)."),
    (dict(eps_mode="variance"),
     "divided by the variance instead of the standard deviation: use sqrt(var + eps)."),
    (dict(center=False),
     "the mean is not subtracted: x_hat = (x - mu) / sqrt(var + eps)."),
    (dict(affine="none"),
     "missing gamma and beta: y = weight * x_hat + bias, one weight and bias per channel, "
     "shaped (1, C, 1, ...) to broadcast."),
    (dict(affine="bias"),
     "missing gamma: multiply x_hat by weight (one value per channel) before adding bias."),
    (dict(affine="weight"),
     "missing beta: add bias (one value per channel) after multiplying by weight."),
)


def dx_variant(
    dy: Tensor, x: Tensor, groups: int, weight: Tensor, eps: float, *,
    grouping: str = "group", mu_path: bool = True, sigma_path: bool = True,
    correction: int = 0, gamma: bool = True, sigma_sign: float = 1.0,
) -> Tensor:
    r"""(B1) :math:`r(g - \overline{g} - \hat x\,\overline{g\hat x})` with one deviation."""
    xv, _ = grouped(x, groups, grouping)  # "group", "channel" or "sample": sets on axis 2
    m = xv.shape[-1]
    mean = xv.mean(-1, keepdim=True)
    rstd = torch.rsqrt(((xv - mean) ** 2).mean(-1, keepdim=True) + eps)
    x_hat = (xv - mean) * rstd
    g = (dy * per_channel(weight, x.dim()) if gamma else dy).reshape(xv.shape)
    dx = g.clone()
    if mu_path:
        dx = dx - g.mean(-1, keepdim=True)
    if sigma_path:
        dx = dx - sigma_sign * x_hat * (g * x_hat).sum(-1, keepdim=True) / (m - correction)
    return (rstd * dx).reshape(x.shape)


DX_HINTS: tuple[tuple[dict[str, Any], str], ...] = (
    (dict(mu_path=False, sigma_path=False),
     "mu and sigma are treated as constants: dx = r * g misses both paths through the "
     "statistics; every x_k moves mu and sigma of its group."),
    (dict(mu_path=False),
     "the path through mu is missing: subtract (1/m) sum_S g_j (d mu / d x_k = 1/m)."),
    (dict(sigma_path=False),
     "the path through sigma is missing: subtract x_hat_k (1/m) sum_S g_j x_hat_j."),
    (dict(sigma_sign=-1.0),
     "sign error in the path through sigma: dx = r (g - mean(g) - x_hat mean(g x_hat))."),
    (dict(correction=1),
     "biased/unbiased mix-up: the forward divides by m, so d sigma^2 / d x_k = 2 (x_k - mu)/m "
     "and the last term is x_hat_k (1/m) sum_S g_j x_hat_j, not 1/(m - 1)."),
    (dict(gamma=False),
     "gamma is missing: the gradient reaching x_hat is g = weight * dy (per channel)."),
    (dict(grouping="channel"),
     "wrong axis of reduction: the sums in dx run per channel; they must run over the "
     "group S_i (reshape to (N, G, -1))."),
    (dict(grouping="sample"),
     "wrong axis of reduction: the sums in dx run over the whole sample; they must run over "
     "the group S_i (reshape to (N, G, -1))."),
)




def dxhat_variant(
    x_hat: Tensor, r: float, m: int, D: int, *,
    direct: str = "delta", mu_path: bool = True, sigma_path: bool = True,
    mean_denominator: str = "m", sigma_denominator: str = "D", sigma_sign: float = 1.0,
    sigma_factor: float = 1.0, sigma_r_power: int = 1, overall_r: bool = True,
) -> Tensor:
    r"""The Jacobian :math:`\partial\hat x_k/\partial x_j = r(\delta_{kj} - 1/m - \hat x_k\hat x_j/D)`
    of one set, as a matrix ``J[k, j]``, with one deliberate deviation (defaults: correct)."""
    size = {"m": m, "D": D}
    eye = torch.eye(m, dtype=x_hat.dtype)
    J = {"delta": eye, "one": torch.ones_like(eye), "zero": torch.zeros_like(eye)}[direct].clone()
    if mu_path:
        J = J - 1 / size[mean_denominator]
    if sigma_path:
        outer = torch.outer(x_hat, x_hat) * r ** (sigma_r_power - 1)
        J = J - sigma_sign * sigma_factor * outer / size[sigma_denominator]
    return r * J if overall_r else J


DXHAT_HINTS: tuple[tuple[dict[str, Any], str], ...] = (
    (dict(mu_path=False, sigma_path=False),
     "mu and sigma are treated as constants: r delta_kj is only the direct path. Every x_j of "
     "the set also moves mu and sigma, so every entry (k, j) gets two more terms."),
    (dict(mu_path=False),
     "the path through mu is missing: mu = (1/m) sum_j x_j, so d mu / d x_j = 1/m, and every "
     "entry (k, j) gets a term -r/m."),
    (dict(sigma_path=False),
     "the path through sigma is missing: r = (sigma^2 + eps)^(-1/2) depends on x_j too "
     "(d sigma^2 / d x_j = 2 (x_j - mu) / D); that term is proportional to x_hat_k x_hat_j."),
    (dict(sigma_denominator="m"),
     "m where D belongs: the path through sigma comes from sigma^2 = (1/D) sum (x - mu)^2, so it "
     "divides by D (here the unbiased D = m - 1), not by m. Only the path through mu has 1/m."),
    (dict(mean_denominator="D"),
     "D where m belongs: the mean always divides by m (mu = (1/m) sum x), also with the unbiased "
     "variance; only the path through sigma has 1/D."),
    (dict(mean_denominator="D", sigma_denominator="m"),
     "m and D are swapped: the path through mu has 1/m (the mean divides by m), the path "
     "through sigma has 1/D (the variance divides by D)."),
    (dict(direct="one"),
     "the Kronecker delta is missing: x_hat_k depends on x_j directly only when k = j, so the "
     "direct term r delta_kj sits on the diagonal only; you put r in every entry."),
    (dict(direct="zero"),
     "the direct term is missing: x_hat_k = (x_k - mu) r contains x_k itself, which gives "
     "r delta_kj (delta_kj = 1 if k == j else 0; in Python, (k == j))."),
    (dict(sigma_sign=-1.0),
     "sign error in the path through sigma: a larger |x_j - mu| raises sigma and shrinks r, so "
     "the term is -r x_hat_k x_hat_j / D."),
    (dict(sigma_factor=2.0),
     "a factor 2 too many in the path through sigma: d (v^(-1/2)) / dv = -(1/2) v^(-3/2) cancels "
     "the 2 of d sigma^2 / d x_j = 2 (x_j - mu) / D."),
    (dict(sigma_factor=0.5),
     "a factor 1/2 too few in the path through sigma: the 1/2 of d (v^(-1/2)) / dv cancels "
     "against the 2 of d sigma^2 / d x_j = 2 (x_j - mu) / D."),
    (dict(sigma_r_power=3),
     "x_hat where x - mu belongs: d r / d x_j = -r^3 (x_j - mu) / D, and r^3 (x_k - mu)(x_j - mu) "
     "= r x_hat_k x_hat_j; with x_hat in place of x - mu, drop two factors of r."),
    (dict(overall_r=False),
     "the overall factor r is missing: x_hat = (x - mu) r, so every term carries r."),
)
