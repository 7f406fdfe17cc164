r"""Candidate blocks of the layer-wise (macro) search spaces, in one registry, and a counter of
parameters and multiply-adds.

The cell papers (DARTS, ENAS, PNAS, NAO) search operations on the edges of a cell
(:mod:`nas_tutorial.ops`); FBNet (and SPOS, whose ShuffleNetV2 blocks will join this module)
search one *block* per layer of a fixed chain of layers. A block maps ``(B, C_in, H, W)`` to
``(B, C_out, H / stride, W / stride)``; :func:`make_block` builds one by name.

The FBNet block (Wu et al., CVPR 2019, Figure 3; MobileNetV2's inverted residual with optional
group convolutions): 1x1 group convolution expanding ``C_in`` to ``e * C_in`` channels, batch norm,
ReLU, channel shuffle (only when grouped), ``K x K`` depthwise convolution with the layer's
stride, batch norm, ReLU, 1x1 group convolution to ``C_out``, batch norm (no ReLU), and the input
added to the output exactly when the two have the same shape (stride 1 and ``C_in == C_out``).

| name | kernel :math:`K` | expansion :math:`e` | groups | family |
| --- | --- | --- | --- | --- |
| ``k3_e1`` | 3 | 1 | 1 | inverted residual |
| ``k3_e1_g2`` | 3 | 1 | 2 | inverted residual |
| ``k3_e3`` | 3 | 3 | 1 | inverted residual |
| ``k3_e6`` | 3 | 6 | 1 | inverted residual |
| ``k5_e1`` | 5 | 1 | 1 | inverted residual |
| ``k5_e1_g2`` | 5 | 1 | 2 | inverted residual |
| ``k5_e3`` | 5 | 3 | 1 | inverted residual |
| ``k5_e6`` | 5 | 6 | 1 | inverted residual |
| ``skip`` | - | - | - | identity (1x1 convolution where the shape changes) |

``skip`` is the identity where input and output shapes match. Where they differ (a layer that
changes the width or the resolution) the paper says nothing; the authors' builder
(``maskrcnn-benchmark``'s ``fbnet_builder.Identity``) uses a 1x1 convolution with the layer's stride,
batch norm and ReLU, and so does :class:`Skip`, so that every layer keeps all nine candidates.

Counting convention (:func:`profile`): multiply-adds of *one image* through the convolutions and
linear layers that actually run in a forward pass (forward hooks on ``nn.Conv2d`` and
``nn.Linear``); batch norm, ReLU, pooling, the residual addition and channel shuffle are not
counted. A ``K x K`` convolution with ``g`` groups producing ``C_out x H' x W'`` costs
``C_out * H' * W' * (C_in / g) * K * K``. This is the "FLOPs" of the mobile papers (MobileNetV2's
300M, FBNet's results table), which count a multiply-add as one operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .utils import count_parameters


# -- channel shuffle (ShuffleNet, Zhang et al. 2018): FBNet's grouped blocks, and SPOS later ----------
def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups, so the next group convolution mixes them.

    ``(B, C, H, W)`` -> the same shape; channel ``g * (C / groups) + j`` moves to ``j * groups + g``.

    Raises:
        ValueError: ``groups`` does not divide the number of channels.
    """
    b, c, h, w = x.shape
    if groups < 1 or c % groups:
        raise ValueError(f"channel_shuffle: groups={groups} must be a positive divisor of the {c} channels")
    x = x.view(b, groups, c // groups, h, w)  # (B, g, C/g, H, W)
    return x.transpose(1, 2).reshape(b, c, h, w)  # (B, C/g, g, H, W) -> (B, C, H, W)


class ChannelShuffle(nn.Module):
    """:func:`channel_shuffle` as a module (so it shows in ``print(model)``)."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *, groups: int = 1,
            relu: bool = True) -> nn.Sequential:
    """Convolution (no bias, "same" padding), batch norm and, optionally, ReLU."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
              nn.BatchNorm2d(out_channels)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _check_channels(in_channels: int, out_channels: int, stride: int) -> None:
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride!r}")


# -- the blocks -----------------------------------------------------------------------------------------
class InvertedResidual(nn.Module):
    r"""The FBNet block (Fig. 3 of the paper): 1x1 group conv (x e), BN, ReLU, [shuffle], KxK depthwise
    conv (stride), BN, ReLU, 1x1 group conv, BN, plus the input when shapes match.

    Attributes:
        residual: whether the input is added (stride 1 and ``in_channels == out_channels``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, kernel_size: int = 3,
                 expansion: int = 1, groups: int = 1):
        super().__init__()
        _check_channels(in_channels, out_channels, stride)
        mid = in_channels * expansion
        if in_channels % groups or mid % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels}, the expanded width {mid} and "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.kernel_size, self.expansion, self.groups = kernel_size, expansion, groups
        self.expand = conv_bn(in_channels, mid, 1, groups=groups)  # (B, C_in, H, W) -> (B, e C_in, H, W)
        self.shuffle = ChannelShuffle(groups) if groups > 1 else nn.Identity()
        self.depthwise = conv_bn(mid, mid, kernel_size, stride, groups=mid)  # -> (B, e C_in, H/s, W/s)
        self.project = conv_bn(mid, out_channels, 1, groups=groups, relu=False)  # -> (B, C_out, H/s, W/s)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.shuffle(self.expand(x))))
        return out + x if self.residual else out

    def extra_repr(self) -> str:
        return f"k={self.kernel_size}, e={self.expansion}, g={self.groups}, residual={self.residual}"


class Skip(nn.Module):
    """``skip``: the identity where the shape is kept; else 1x1 conv (stride), BN, ReLU (the authors' builder)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        _check_channels(in_channels, out_channels, stride)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.residual = False  # nothing is added: the block *is* the input when shapes match
        self.identity = stride == 1 and in_channels == out_channels
        self.conv = None if self.identity else conv_bn(in_channels, out_channels, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.conv is None else self.conv(x)


# -- the registry -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockSpec:
    """What a block name stands for: its family (a key of :data:`FAMILIES`) and the family's settings
    (for inverted residuals: kernel size ``K``, expansion ``e`` and groups)."""

    family: str
    kernel_size: int | None = None
    expansion: int | None = None
    groups: int = 1

    def build(self, in_channels: int, out_channels: int, stride: int = 1) -> nn.Module:
        return FAMILIES[self.family](self, in_channels, out_channels, stride)


#: How each family of blocks is built from its spec: ``(spec, in_channels, out_channels, stride) -> module``.
FAMILIES: dict[str, Callable[[BlockSpec, int, int, int], nn.Module]] = {
    "inverted_residual": lambda spec, c_in, c_out, stride: InvertedResidual(
        c_in, c_out, stride, kernel_size=spec.kernel_size, expansion=spec.expansion, groups=spec.groups),
    "skip": lambda spec, c_in, c_out, stride: Skip(c_in, c_out, stride),
}


#: Every block by name (SPOS's ShuffleNetV2 blocks will join them here, with a family of their own).
BLOCKS: dict[str, BlockSpec] = {
    "k3_e1": BlockSpec("inverted_residual", 3, 1),
    "k3_e1_g2": BlockSpec("inverted_residual", 3, 1, 2),
    "k3_e3": BlockSpec("inverted_residual", 3, 3),
    "k3_e6": BlockSpec("inverted_residual", 3, 6),
    "k5_e1": BlockSpec("inverted_residual", 5, 1),
    "k5_e1_g2": BlockSpec("inverted_residual", 5, 1, 2),
    "k5_e3": BlockSpec("inverted_residual", 5, 3),
    "k5_e6": BlockSpec("inverted_residual", 5, 6),
    "skip": BlockSpec("skip"),
}

#: FBNet's nine candidates (the paper's table of block configurations), in the order of θ's columns.
FBNET_BLOCKS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")


def check_block_name(name: str) -> str:
    """Return ``name`` if it is a registered block, else raise a ``ValueError`` listing them."""
    if not isinstance(name, str) or name not in BLOCKS:
        raise ValueError(f"unknown block {name!r}; choose one of: {', '.join(BLOCKS)} "
                         "(or register one in nas_tutorial.blocks.BLOCKS)")
    return name


def make_block(name: str, in_channels: int, out_channels: int, stride: int = 1) -> nn.Module:
    """Build block ``name`` from ``in_channels`` to ``out_channels`` channels with the given stride."""
    return BLOCKS[check_block_name(name)].build(in_channels, out_channels, stride)


# -- counting parameters and multiply-adds ---------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """What :func:`profile` counts.

    Attributes:
        params: every trainable parameter of the model (batch-norm scales and shifts included).
        conv_linear_params: parameters (weights and biases) of the ``Conv2d`` and ``Linear`` layers
            that ran in the forward pass.
        macs: multiply-adds of one image through those layers.
    """

    params: int
    conv_linear_params: int
    macs: int


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        per_output = (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
        return output[0].numel() * per_output  # one image: C_out * H' * W' outputs
    return output[0].numel() * module.in_features  # Linear: out_features (x any extra dims) outputs


@torch.no_grad()
def profile(model: nn.Module, input_size: tuple[int, ...], *, forward: Callable[[nn.Module, torch.Tensor], object]
            | None = None) -> Profile:
    """Parameters and multiply-adds of ``model`` for one input of ``input_size`` (``(C, H, W)``).

    Runs one forward pass in eval mode on a zero batch of one image (on the model's device),
    counting with forward hooks on ``nn.Conv2d`` and ``nn.Linear``; see the module docstring for
    the convention. ``forward(model, x)`` replaces ``model(x)`` when the model needs more arguments.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    counts = {"macs": 0, "params": 0}
    seen: set[int] = set()

    def hook(module, inputs, output):
        counts["macs"] += _macs(module, output)
        if id(module) not in seen:  # a layer called twice has its parameters once
            seen.add(id(module))
            counts["params"] += sum(p.numel() for p in module.parameters(recurse=False))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        x = torch.zeros(1, *input_size, device=device, dtype=dtype)
        (forward or (lambda m, inp: m(inp)))(model, x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return Profile(params=count_parameters(model), conv_linear_params=counts["params"], macs=counts["macs"])


def block_macs(name: str, in_channels: int, out_channels: int, stride: int, height: int, width: int) -> int:
    """Multiply-adds of one image through block ``name`` at input ``(in_channels, height, width)``."""
    return profile(make_block(name, in_channels, out_channels, stride), (in_channels, height, width)).macs

