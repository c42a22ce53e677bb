"""Batch Renormalization (Ioffe, NeurIPS 2017): BN whose training forward is pulled toward the
running statistics by the clipped corrections r and d."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .running_stats import check_momentum, update_running_stats

__all__ = ["BatchRenorm", "BatchRenorm1d", "BatchRenorm2d", "BatchRenorm3d", "RenormSchedule"]


class RenormSchedule:
    r"""Warm-up of Batch Renorm's clipping bounds as a function of the training step ``t``.

    The BR paper keeps :math:`r_\max = 1, d_\max = 0` (plain BN) for the first ``start``
    steps, then relaxes both linearly:

    .. math::

        r_\max(t) = 1 + (r_\max^{\text{final}} - 1)\,
            \mathrm{clip}\Big(\frac{t - t_0}{t_r - t_0}, 0, 1\Big),\qquad
        d_\max(t) = d_\max^{\text{final}}\,
            \mathrm{clip}\Big(\frac{t - t_0}{t_d - t_0}, 0, 1\Big)

    with :math:`t_0` = ``start``, :math:`t_r` = ``r_end``, :math:`t_d` = ``d_end``. The paper's
    Inception run used ``RenormSchedule(3.0, 5.0, start=5000, r_end=40000, d_end=25000)``;
    :meth:`paper` rescales those steps to a shorter run.
    """

    def __init__(
        self, r_max: float = 3.0, d_max: float = 5.0,
        start: int = 5000, r_end: int = 40000, d_end: int = 25000,
    ) -> None:
        _check_bounds(r_max, d_max)
        for name, v in (("start", start), ("r_end", r_end), ("d_end", d_end)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative int step, got {v!r}")
        if r_end <= start or d_end <= start:
            raise ValueError(
                f"the ramps must end after they start: start={start}, r_end={r_end}, d_end={d_end}"
            )
        self.r_max, self.d_max = float(r_max), float(d_max)
        self.start, self.r_end, self.d_end = start, r_end, d_end

    @classmethod
    def paper(cls, total_steps: int, r_max: float = 3.0, d_max: float = 5.0) -> "RenormSchedule":
        """The BR paper's warm-up (5k / 25k / 40k of 40k steps) rescaled to ``total_steps``."""
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 8:
            raise ValueError(f"total_steps must be an int >= 8, got {total_steps!r}")
        return cls(r_max, d_max, start=total_steps // 8, r_end=total_steps,
                   d_end=max(total_steps * 5 // 8, total_steps // 8 + 1))

    def _ramp(self, step: int, end: int) -> float:
        return min(max((step - self.start) / (end - self.start), 0.0), 1.0)

    def __call__(self, step: int) -> tuple[float, float]:
        """``(r_max, d_max)`` at training step ``step`` (0-based count of training batches)."""
        return (1.0 + (self.r_max - 1.0) * self._ramp(step, self.r_end),
                self.d_max * self._ramp(step, self.d_end))

    def __repr__(self) -> str:
        return (f"RenormSchedule(r_max={self.r_max}, d_max={self.d_max}, start={self.start}, "
                f"r_end={self.r_end}, d_end={self.d_end})")


def _check_bounds(r_max: Any, d_max: Any) -> None:
    for name, v in (("r_max", r_max), ("d_max", d_max)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    if not r_max >= 1.0:
        raise ValueError(f"r_max must be >= 1 (r is clipped to [1/r_max, r_max]), got {r_max}")
    if not d_max >= 0.0:
        raise ValueError(f"d_max must be >= 0 (d is clipped to [-d_max, d_max]), got {d_max}")


class BatchRenorm(nn.Module):
    r"""Batch Renormalization (Ioffe 2017), any number of spatial dims: the base class of
    :class:`BatchRenorm1d`, :class:`BatchRenorm2d` (documented there) and :class:`BatchRenorm3d`
    (use it in ``isinstance`` checks, e.g. to find every layer with running statistics)."""

    _expected_dims: tuple[int, ...] = ()
    __constants__ = ["num_features", "eps", "momentum", "affine"]

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        r_max: float | RenormSchedule = 1.0,
        d_max: float = 0.0,
        affine: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int):
            raise TypeError(f"num_features must be an int, got {type(num_features).__name__}")
        if num_features <= 0:
            raise ValueError(f"num_features must be positive, got {num_features}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        if isinstance(r_max, RenormSchedule):
            if d_max != 0.0:
                raise ValueError(
                    "pass d_max inside the RenormSchedule, not next to it "
                    f"(got d_max={d_max} and {r_max!r})"
                )
            self.schedule: RenormSchedule | None = r_max
        else:
            _check_bounds(r_max, d_max)
            self.schedule = None
            self._r_max, self._d_max = float(r_max), float(d_max)
        self.num_features = num_features
        self.eps = eps
        self.momentum = check_momentum(momentum)
        self.affine = affine
        factory = {"device": device, "dtype": dtype}
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory))
            self.bias = nn.Parameter(torch.empty(num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        # Same buffer names as nn.BatchNorm2d, so state_dicts and diagnostics carry over.
        self.register_buffer("running_mean", torch.zeros(num_features, **factory))
        self.register_buffer("running_var", torch.ones(num_features, **factory))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long,
                                                                 device=device))
        #: r and d of the last training batch (detached, shape (C,)); None before the first.
        self.last_r: Tensor | None = None
        self.last_d: Tensor | None = None
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """mu = 0, sigma^2 = 1, step count 0."""
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Running statistics reset; gamma = 1, beta = 0."""
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    @property
    def bounds(self) -> tuple[float, float]:
        """``(r_max, d_max)`` used by the next training step (follows the schedule, if any)."""
        if self.schedule is not None:
            return self.schedule(int(self.num_batches_tracked.item()))
        return self._r_max, self._d_max

    @property
    def r_max(self) -> float:
        return self.bounds[0]

    @property
    def d_max(self) -> float:
        return self.bounds[1]

    def _check_input(self, x: Any) -> None:
        name = self.__class__.__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() not in self._expected_dims:
            dims = " or ".join(f"{d}D" for d in self._expected_dims)
            raise ValueError(
                f"{name} expects a {dims} input of shape (N, C, ...), got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(
                f"{name} expects a floating-point input, got dtype {x.dtype}; "
                f"convert it first, e.g. x.float()"
            )
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{name} was built for num_features={self.num_features} but got an input "
                f"with {x.shape[1]} channels (shape {tuple(x.shape)}); build it with "
                f"num_features={x.shape[1]} or check the layer before it"
            )

    def forward(self, x: Tensor) -> Tensor:
        r"""Training: Eq. (BR) with batch statistics, r and d; eval: the inference formula."""
        self._check_input(x)
        C = self.num_features
        shape = (1, C) + (1,) * (x.dim() - 2)
        if not self.training:
            # y = gamma (x - mu) / sigma + beta, folded into one scale and one shift
            scale = torch.rsqrt(self.running_var + self.eps)
            shift = -self.running_mean * scale
            if self.affine:
                scale, shift = scale * self.weight, shift * self.weight + self.bias
            return x * scale.reshape(shape) + shift.reshape(shape)

        dims = [0] + list(range(2, x.dim()))
        m = x.numel() // C
        if m < 2:
            raise ValueError(
                f"{self.__class__.__name__} needs more than 1 value per channel when training "
                f"(got input shape {tuple(x.shape)}); use a batch of >= 2 samples or eval mode"
            )
        mean_b = x.sum(dim=dims) / m                                  # mu_B
        xc = x - mean_b.reshape(shape)
        var_b = (xc * xc).sum(dim=dims) / m                           # sigma_B^2 (biased)
        std_b = torch.sqrt(var_b + self.eps)                          # sigma_B
        r_max, d_max = self.bounds
        with torch.no_grad():                                         # stop_gradient
            std = torch.sqrt(self.running_var + self.eps)             # sigma
            r = (std_b / std).clamp(1.0 / r_max, r_max)
            d = ((mean_b - self.running_mean) / std).clamp(-d_max, d_max)
            # running statistics: mu += a (mu_B - mu), sigma^2 += a (unbiased sigma_B^2 - sigma^2)
            update_running_stats(self, mean_b, var_b * (m / (m - 1)))
        self.last_r, self.last_d = r.detach().clone(), d.detach().clone()
        scale = r / std_b                                             # x_hat = xc * r/sigma_B + d
        shift = d
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        return xc * scale.reshape(shape) + shift.reshape(shape)

    def extra_repr(self) -> str:
        s = f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
        if self.schedule is not None:
            s += f"schedule={self.schedule!r}"
        else:
            s += f"r_max={self._r_max}, d_max={self._d_max}"
        return s + f", affine={self.affine}"


class BatchRenorm1d(BatchRenorm):
    """:class:`BatchRenorm2d` for ``(N, C)`` or ``(N, C, L)`` inputs."""

    _expected_dims = (2, 3)


class BatchRenorm2d(BatchRenorm):
    r"""Batch Renormalization (Ioffe 2017) for ``(N, C, H, W)`` inputs.

    Per channel, with batch statistics :math:`\mu_B, \sigma_B = \sqrt{\sigma_B^2+\epsilon}`
    (biased variance, as BN) and running statistics :math:`\mu, \sigma = \sqrt{\sigma^2+\epsilon}`:

    .. math::

        r = \mathrm{sg}\Big(\mathrm{clip}_{[1/r_\max,\ r_\max]}\frac{\sigma_B}{\sigma}\Big),\qquad
        d = \mathrm{sg}\Big(\mathrm{clip}_{[-d_\max,\ d_\max]}\frac{\mu_B - \mu}{\sigma}\Big)

        \hat x = \frac{x - \mu_B}{\sigma_B}\,r + d,\qquad y = \gamma\,\hat x + \beta   \tag{BR}

    (:math:`\mathrm{sg}` = stop gradient: r and d are constants for the backward). Then
    :math:`\mu \mathrel{+}= \alpha(\mu_B - \mu)`,
    :math:`\sigma^2 \mathrel{+}= \alpha(\tfrac{m}{m-1}\sigma_B^2 - \sigma^2)` with
    ``momentum`` :math:`\alpha` (the unbiased variance, as :class:`torch.nn.BatchNorm2d`).
    In eval mode :math:`y = \gamma (x-\mu)/\sigma + \beta`: the formula that training
    approximates when r and d are not clipped, so training and inference agree.
    With ``r_max=1, d_max=0`` the layer is exactly :class:`torch.nn.BatchNorm2d`.

    Args:
        num_features: ``C``.
        eps: added to both variances inside the square root.
        momentum: :math:`\alpha`, weight of the new batch in the running statistics, or
            ``None`` for their cumulative average (:mod:`gnlib.norms.running_stats`).
        r_max: a number >= 1, or a :class:`RenormSchedule` (then ``d_max`` comes from it
            and the bounds follow ``num_batches_tracked``). The GN paper compared against
            BR with ``r_max=1.5, d_max=0.5``; the BR paper warmed up to 3 and 5
            (``RenormSchedule.paper(total_steps)``).
        d_max: a number >= 0.
        affine: learn per-channel ``gamma`` (init 1) and ``beta`` (init 0).

    ``last_r`` / ``last_d`` hold the (C,) values of r and d of the last training batch.

    Shape:
        - Input: :math:`(N, C, H, W)`; Output: the same shape.

    Examples::

        >>> br = BatchRenorm2d(4, r_max=1.5, d_max=0.5)
        >>> x = torch.randn(8, 4, 5, 5) * 3 + 1
        >>> br(x).shape                               # training: Eq. (BR)
        torch.Size([8, 4, 5, 5])
        >>> br.last_r, br.last_d                      # sigma_B/sigma ~ 3, mu_B - mu ~ 1: clipped
        (tensor([1.5000, 1.5000, 1.5000, 1.5000]), tensor([0.5000, 0.5000, 0.5000, 0.5000]))
        >>> plain = BatchRenorm2d(4)                  # r_max=1, d_max=0: exactly BN
        >>> torch.allclose(plain(x), torch.nn.BatchNorm2d(4)(x), atol=1e-5)
        True
    """

    _expected_dims = (4,)


class BatchRenorm3d(BatchRenorm):
    """:class:`BatchRenorm2d` for ``(N, C, D, H, W)`` inputs."""

    _expected_dims = (5,)


_BATCH_RENORMS = {1: BatchRenorm1d, 2: BatchRenorm2d, 3: BatchRenorm3d}
