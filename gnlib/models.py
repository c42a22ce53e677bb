r"""Small residual CNNs for 28x28 inputs with a pluggable normalization layer.

:class:`ResNetSmall` is a ResNet (He et al. 2016) shrunk for Fashion-MNIST on a CPU::

    stem   conv3x3(1 -> w0, stride s) - norm - ReLU
    stage  i = 0..k-1: blocks[i] x BasicBlock(w_i), the first block of stages i > 0 has stride 2
    head   global average pool - Linear(w_{k-1} -> 10)

    BasicBlock:  y = ReLU( norm2(conv3x3(ReLU(norm1(conv3x3(x))))) + shortcut(x) )

``shortcut`` is the identity, or ``norm(conv1x1(x))`` when the shape changes. Every norm is
``make_norm(kind, C, groups)`` from :mod:`gnlib.norms`, so BN / LN / IN / GN / BR / none plug
in without touching the model. ``"gn+ws"`` is GN with every convolution a
:class:`~gnlib.norms.WSConv2d` (Weight Standardization, Qiao et al. 2019), and ``bn_splits > 1``
gives BN with per-device statistics (:class:`~gnlib.norms.GhostBatchNorm2d`).

Initialisation as in the GN paper: He (Kaiming) normal for convolutions (fan-out, ReLU gain
:math:`\sqrt{2/\text{fan}_\text{out}}`), :math:`\gamma = 1, \beta = 0` for every norm except the
last norm of each residual block, whose :math:`\gamma = 0` (each block starts as the identity).

The default set-up of the course (:data:`DEFAULT_ARCH`: ``widths=(64, 128)``,
``blocks=(1, 1)``, ``stem_stride=2``, ``strides=(2, 2)``) runs at 7x7 then 4x4 after a
14x14 stem:

====================  ====================  =====================
layer                 output (C x H x W)    GN with G=32: C/G
====================  ====================  =====================
stem (stride 2)       64 x 14 x 14          2
block 1 (stride 2)    64 x 7 x 7            2, 2, shortcut 2
block 2 (stride 2)    128 x 4 x 4           4, 4, shortcut 4
====================  ====================  =====================

so GN with G=32 keeps >= 2 channels per group in every layer (it never silently becomes IN).
It has 0.31 M parameters, 7 norm layers and 7.6 M multiply-accumulates (MACs) per 28x28
image forward (:func:`count_macs`; fwd + bwd is about 3x that). Widths and groups are
configurable; ``channels_per_group`` fixes ``C/G`` instead of ``G`` (the paper's Table 3,
second row).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .norms import BatchRenorm, RenormSchedule, convert_to_ws, make_norm

#: The ``norm`` names :class:`ResNetSmall` accepts.
MODEL_NORMS = ("bn", "ln", "in", "gn", "gn+ws", "br", "none")

__all__ = ["DEFAULT_ARCH", "MODEL_NORMS", "BasicBlock", "ResNetSmall", "build_model", "count_macs", "load_trained",
           "count_params", "norm_layers", "residual_last_norms"]

#: The architecture used by the experiments unless a config says otherwise.
DEFAULT_ARCH: dict = {"widths": (64, 128), "blocks": (1, 1), "stem_stride": 2, "strides": (2, 2)}


class NormFactory:
    """``factory(C)`` returns the norm layer for ``C`` channels.

    ``groups`` is ``G`` (GN only); with ``channels_per_group`` set, ``G = max(1, C // cpg)``
    per layer instead (then ``C / G`` is the same in every layer that is wide enough).
    """

    def __init__(self, kind: str, groups: int = 32, channels_per_group: int | None = None,
                 bn_splits: int = 1, renorm: "RenormSchedule | None" = None):
        self.kind = kind
        self.renorm = renorm
        self.bn_splits = bn_splits
        self.groups = groups
        self.channels_per_group = channels_per_group
        if channels_per_group is not None and channels_per_group <= 0:
            raise ValueError(f"channels_per_group must be positive, got {channels_per_group}")

    def __call__(self, channels: int) -> nn.Module:
        groups = self.groups
        if self.kind == "gn" and self.channels_per_group is not None:
            groups = max(1, channels // self.channels_per_group)
        if self.kind == "bn" and self.bn_splits > 1:
            return make_norm("bn", channels, splits=self.bn_splits)
        if self.kind == "br" and self.renorm is not None:
            return make_norm("br", channels, r_max=self.renorm)
        return make_norm(self.kind, channels, groups=groups)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (the norm that follows has a beta)."""
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection; ``norm2`` is the block's last norm."""

    def __init__(self, cin: int, cout: int, stride: int, norm: NormFactory):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.norm1 = norm(cout)
        self.conv2 = conv3x3(cout, cout)
        self.norm2 = norm(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), norm(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetSmall(nn.Module):
    """A residual CNN for ``(N, in_channels, 28, 28)`` inputs; see the module docstring.

    Args:
        norm: ``"bn"``, ``"ln"``, ``"in"``, ``"gn"``, ``"br"``, ``"none"`` (passed to
            ``make_norm``) or ``"gn+ws"`` (GN, and Weight Standardization in every conv).
        widths: channels of each stage; stage ``i > 0`` halves the resolution.
        blocks: residual blocks per stage.
        groups: ``G`` for GN.
        channels_per_group: if set, GN uses ``G = C // channels_per_group`` per layer.
        stem_stride: 1 keeps 28x28 after the stem, 2 gives 14x14 (4x cheaper).
        strides: stride of the first block of each stage (default 1, 2, 2, ...).
        bn_splits: BN only: normalize each of ``bn_splits`` equal slices of a training batch by
            its own statistics (BN on ``bn_splits`` data-parallel devices).
        renorm: BR only: a :class:`~gnlib.norms.RenormSchedule` (the BR paper's warm-up of
            r_max and d_max); ``None``: the GN paper's fixed r_max = 1.5, d_max = 0.5.
    """

    def __init__(
        self,
        norm: str = "gn",
        widths: Sequence[int] = DEFAULT_ARCH["widths"],
        blocks: Sequence[int] = DEFAULT_ARCH["blocks"],
        groups: int = 32,
        channels_per_group: int | None = None,
        stem_stride: int = DEFAULT_ARCH["stem_stride"],
        strides: Sequence[int] | None = DEFAULT_ARCH["strides"],
        num_classes: int = 10,
        in_channels: int = 1,
        bn_splits: int = 1,
        renorm: "RenormSchedule | None" = None,
    ):
        super().__init__()
        if norm not in MODEL_NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose one of {MODEL_NORMS}")
        if bn_splits != 1 and norm != "bn":
            raise ValueError(f"bn_splits={bn_splits} applies to norm 'bn' only, not {norm!r}")
        if len(widths) != len(blocks) or not widths:
            raise ValueError(f"widths {widths} and blocks {blocks} need the same, non-zero length")
        strides = tuple(strides) if strides is not None else (1,) + (2,) * (len(widths) - 1)
        if len(strides) != len(widths):
            raise ValueError(f"strides {strides} must have one entry per stage {widths}")
        ws = norm == "gn+ws"
        if renorm is not None and norm != "br":
            raise ValueError(f"renorm applies to norm 'br' only, not {norm!r}")
        factory = NormFactory("gn" if ws else norm, groups, channels_per_group, bn_splits, renorm)
        self.norm_kind = norm
        self.stem = nn.Sequential(
            conv3x3(in_channels, widths[0], stem_stride), factory(widths[0]), nn.ReLU(inplace=True)
        )
        layers: list[nn.Module] = []
        cin = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):  # noqa: B007
            for j in range(n):
                layers.append(BasicBlock(cin, w, strides[i] if j == 0 else 1, factory))
                cin = w
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        if ws:
            convert_to_ws(self)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He init for convs, N(0, 0.01) for the classifier, gamma=0 on each block's last norm."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif getattr(m, "weight", None) is not None and m in set(norm_layers(self)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)
        for m in residual_last_norms(self):
            if getattr(m, "weight", None) is not None:
                nn.init.zeros_(m.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def norm_layers(model: nn.Module) -> list[nn.Module]:
    """Every normalization layer of ``model`` (BN, BR or GN family), in order."""
    from torch.nn.modules.batchnorm import _BatchNorm

    from .norms import GroupNorm

    return [m for m in model.modules() if isinstance(m, (_BatchNorm, BatchRenorm, GroupNorm, nn.GroupNorm))]


def residual_last_norms(model: nn.Module) -> list[nn.Module]:
    """The last norm of each residual block (the ones initialised with gamma = 0)."""
    return [b.norm2 for b in model.modules() if isinstance(b, BasicBlock)]


def build_model(norm: str = "gn", **arch) -> ResNetSmall:
    """:class:`ResNetSmall` with :data:`DEFAULT_ARCH` overridden by ``arch``."""
    kwargs = {**DEFAULT_ARCH, **arch}
    kwargs["widths"] = tuple(kwargs["widths"])
    kwargs["blocks"] = tuple(kwargs["blocks"])
    return ResNetSmall(norm, **kwargs)


def load_trained(path, norm: str, **arch) -> ResNetSmall:
    """A committed trained network (``results/models/*.pt``): :func:`build_model` ``(norm,
    **arch)`` with the saved ``state_dict`` (floats stored as float16) cast to float32, in eval
    mode."""
    state = torch.load(path, map_location="cpu")
    model = build_model(norm, **arch)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval()


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_size: tuple[int, ...] = (1, 1, 28, 28)) -> int:
    """Multiply-accumulates of one forward pass of conv and linear layers (per input batch).

    A conv costs ``H_out * W_out * C_out * (C_in / groups) * k_h * k_w`` MACs, a linear layer
    ``in * out``; norms, ReLUs and pooling are O(activations) and left out.
    """
    total = 0

    def hook(m: nn.Module, inp: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total += out.numel() * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
