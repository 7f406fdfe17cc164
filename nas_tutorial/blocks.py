r"""Candidate blocks of the layer-wise (macro) search spaces, in one registry, and a counter of
parameters and multiply-adds.

The cell papers (DARTS, ENAS, PNAS, NAO) search operations on the edges of a cell
(:mod:`nas_tutorial.ops`); FBNet and SPOS (its ShuffleNetV2 choice blocks ``shuffle3x3``,
``shuffle5x5``, ``shuffle7x7`` and ``xception``, at the end of this module) search one *block* per
layer of a fixed chain of layers. A block maps ``(B, C_in, H, W)`` to
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

from .ops import depthwise_conv2d
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



# =========================================================================================================
# SPOS (Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020):
# four ShuffleNetV2 choice blocks whose middle width is searched by slicing weights allocated at the
# largest width. Appended after FBNet's blocks, which are unchanged.
#
# A choice block is a ShuffleNetV2 unit (Ma et al., ECCV 2018) with one of four main branches:
#
# | name | main branch (``m`` = middle width, the searched one) |
# | --- | --- |
# | ``shuffle3x3`` | 1x1 conv to m, BN, ReLU; 3x3 depthwise conv (stride), BN; 1x1 conv, BN, ReLU |
# | ``shuffle5x5`` | the same with a 5x5 depthwise conv |
# | ``shuffle7x7`` | the same with a 7x7 depthwise conv |
# | ``xception``   | 3x3 depthwise (stride), BN; 1x1 to m, BN, ReLU; twice more: 3x3 depthwise, BN; 1x1, BN, ReLU |
#
# Two kinds of unit, as in ShuffleNetV2 and the authors' code (megvii-model/SinglePathOneShot, blocks.py):
#
# - *split* unit (the shape is kept: stride 1 and ``C_in == C_out``): the channels are split, the even
#   ones pass by untouched and the odd ones go through the main branch (``C/2 -> m -> C/2``); the two
#   halves are concatenated. Taking even and odd channels is the channel shuffle of ShuffleNetV2 (the
#   authors do it at the start of a unit instead of the end of the one before).
# - *two-branch* unit (any other shape, e.g. the first unit of a stage, stride 2): a projection branch
#   (``K x K`` depthwise conv with the stride, BN, 1x1 conv, BN, ReLU; ``C_in -> C_in``; 3x3 for
#   ``xception``) beside the main branch (``C_in -> m -> C_out - C_in``); concatenated: ``C_out``.
#
# Channel search (the paper's "channel number search"): every convolution whose input or output is the
# middle width is allocated at the largest middle width and run on the leading slice
# ``weight[:c_out, :c_in]`` of its weight (:class:`SlicedConv2d`); a block's input and output widths are
# fixed. Batch norm follows the authors' supernet: ``affine=False`` (no learned scale or shift), batch
# statistics in training, so it is correct for any width; its running statistics are allocated at the
# largest width and sliced like the weights (:class:`SlicedBatchNorm2d`): they are meaningless for a
# single path until recomputed on training batches (SPOS's BN recalibration). The stand-alone network
# (the authors' evaluation network) uses ``affine=True``.
# =========================================================================================================
def channel_split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ShuffleNetV2's channel split as the SPOS code does it: ``(B, C, H, W)`` -> the even channels
    (which pass by) and the odd ones (which go through the main branch), each ``(B, C/2, H, W)``.

    It equals :func:`channel_shuffle` with ``C/2`` groups followed by cutting the result in halves.

    Raises:
        ValueError: an odd number of channels.
    """
    if x.dim() != 4 or x.shape[1] % 2:
        raise ValueError(f"channel_split needs a (B, C, H, W) tensor with an even C, got shape {tuple(x.shape)}")
    return x[:, 0::2], x[:, 1::2]  # (B, C/2, H, W) each


class SlicedConv2d(nn.Conv2d):
    r"""A convolution (no bias, "same" padding) allocated at its largest widths and run on a leading slice.

    ``forward(x, out_channels)`` reads ``c_in = x.shape[1]`` and convolves with ``weight[:c_out, :c_in]``
    (a depthwise one with ``weight[:c_in]`` and ``c_in`` groups), so every width shares the weights of
    the narrower ones: the paper's channel-search choice block. At the allocated widths it is an
    ``nn.Conv2d``. :func:`profile` counts it at its allocated width, so count a narrow path on its
    stand-alone network (where allocated and used widths agree).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *,
                 depthwise: bool = False):
        _check_channels(in_channels, out_channels, stride)
        if depthwise and in_channels != out_channels:
            raise ValueError(f"a depthwise convolution keeps its width: in_channels={in_channels} must equal "
                             f"out_channels={out_channels}")
        super().__init__(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                         groups=in_channels if depthwise else 1, bias=False)
        self.depthwise = depthwise

    def widths(self, in_channels: int, out_channels: int | None = None) -> tuple[int, int]:
        """The ``(c_in, c_out)`` a call with an input of ``in_channels`` runs at (checked against the allocation)."""
        c_out = in_channels if self.depthwise else (self.out_channels if out_channels is None else out_channels)
        if self.depthwise and out_channels not in (None, in_channels):
            raise ValueError(f"a depthwise convolution keeps its width: asked for {out_channels} output channels "
                             f"from {in_channels}")
        if not 1 <= in_channels <= self.in_channels or not 1 <= c_out <= self.out_channels:
            raise ValueError(f"widths {in_channels} -> {c_out} exceed this layer's allocation "
                             f"{self.in_channels} -> {self.out_channels}")
        return in_channels, c_out

    def region(self, in_channels: int, out_channels: int | None = None) -> tuple[slice, ...]:
        """The index of the weight entries a call at these widths uses: ``[:c_out, :c_in]`` (depthwise ``[:c]``)."""
        c_in, c_out = self.widths(in_channels, out_channels)
        return (slice(0, c_out),) if self.depthwise else (slice(0, c_out), slice(0, c_in))

    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        c_in, c_out = self.widths(x.shape[1], out_channels)
        weight = self.weight[:c_out] if self.depthwise else self.weight[:c_out, :c_in]  # (c_out, c_in / g, K, K)
        if self.depthwise:  # PyTorch's CPU backward is slow for 5x5 and 7x7: ops.depthwise_conv2d's is not
            return depthwise_conv2d(x, weight, self.stride[0], self.padding[0], self.dilation[0])  # (B, c, H/s, W/s)
        return nn.functional.conv2d(x, weight, None, self.stride, self.padding, self.dilation)  # (B, c_out, ...)


class SlicedBatchNorm2d(nn.BatchNorm2d):
    """Batch norm allocated for ``num_features`` channels, applied to the first ``C <= num_features``.

    Its running statistics (and its scale and shift when ``affine``) are sliced ``[:C]``: a narrow
    width reads and updates only its own leading entries. At ``C = num_features`` it computes exactly
    what ``nn.BatchNorm2d`` does (``momentum=None``: a cumulative average, as for recalibration).
    """

    def region(self, channels: int) -> tuple[slice, ...]:
        if not 1 <= channels <= self.num_features:
            raise ValueError(f"{channels} channels exceed this batch norm's allocation of {self.num_features}")
        return (slice(0, channels),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        self.region(c)
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or self.running_mean is None
        running = self.running_mean is not None and (not self.training or self.track_running_stats)
        return nn.functional.batch_norm(
            x, self.running_mean[:c] if running else None, self.running_var[:c] if running else None,
            self.weight[:c] if self.affine else None, self.bias[:c] if self.affine else None,
            use_batch_stats, factor, self.eps)  # updates the views [:c] of the running statistics in place


class SlicedConvBN(nn.Module):
    """:class:`SlicedConv2d`, :class:`SlicedBatchNorm2d` and, optionally, ReLU: one layer of a choice block."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *,
                 depthwise: bool = False, relu: bool = True, affine: bool = True):
        super().__init__()
        self.conv = SlicedConv2d(in_channels, out_channels, kernel_size, stride, depthwise=depthwise)
        self.bn = SlicedBatchNorm2d(out_channels, affine=affine)
        self.relu = relu

    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        x = self.bn(self.conv(x, out_channels))
        return nn.functional.relu(x) if self.relu else x

    def regions(self, in_channels: int, out_channels: int | None = None) -> dict[nn.Parameter, tuple[slice, ...]]:
        """Every parameter's used entries at these widths (``{parameter: index}``)."""
        c_in, c_out = self.conv.widths(in_channels, out_channels)
        out = {self.conv.weight: self.conv.region(c_in, c_out)}
        if self.bn.affine:
            out[self.bn.weight] = out[self.bn.bias] = self.bn.region(c_out)
        return out

    def extra_repr(self) -> str:
        return f"relu={self.relu}"


class ShuffleChoiceBlock(nn.Module):
    r"""One SPOS choice block: a ShuffleNetV2 unit with a ``K x K`` or an Xception-like main branch
    whose middle width is chosen at each call (see the SPOS section above for the structure).

    Args:
        in_channels, out_channels, stride: the unit's fixed shape (a *split* unit exactly when the
            shape is kept; otherwise ``out_channels > in_channels``: the main branch adds the rest).
        kernel_size: 3, 5 or 7 (depthwise kernel of the ShuffleNetV2 branch; ``xception`` uses 3).
        xception: the Xception-like branch (three 3x3 depthwise convolutions).
        mid_channels: the allocated (largest) middle width; default ``out_channels // 2`` (scale 1.0).
        affine: batch norm with a learned scale and shift (the stand-alone network) or without (the
            authors' supernet).

    ``forward(x, mid_channels=None)`` runs at a middle width up to the allocated one (default: all of it).

    Attributes:
        split: whether half the input passes by (stride 1 and ``in_channels == out_channels``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, kernel_size: int = 3,
                 xception: bool = False, mid_channels: int | None = None, affine: bool = True):
        super().__init__()
        _check_channels(in_channels, out_channels, stride)
        if kernel_size not in (3, 5, 7):
            raise ValueError(f"kernel_size must be 3, 5 or 7, got {kernel_size!r}")
        mid = out_channels // 2 if mid_channels is None else mid_channels
        if not isinstance(mid, int) or isinstance(mid, bool) or mid < 1:
            raise ValueError(f"mid_channels must be a positive integer, got {mid!r}")
        self.split = stride == 1 and in_channels == out_channels
        if self.split and in_channels % 2:
            raise ValueError(f"a unit that keeps its shape splits its channels in halves: in_channels={in_channels} "
                             "must be even")
        if not self.split and out_channels <= in_channels:
            raise ValueError(f"a unit that changes its shape concatenates its input's projection ({in_channels} "
                             f"channels) with the main branch: out_channels={out_channels} must exceed "
                             f"in_channels={in_channels}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.kernel_size, self.xception, self.mid_channels = (3 if xception else kernel_size), xception, mid
        branch_in = in_channels // 2 if self.split else in_channels  # what the main branch reads
        branch_out = out_channels - branch_in  # what it adds
        k = self.kernel_size
        if xception:  # (dw, pw) three times: branch_in -> m -> m -> branch_out
            layers = [SlicedConvBN(branch_in, branch_in, 3, stride, depthwise=True, relu=False, affine=affine),
                      SlicedConvBN(branch_in, mid, 1, affine=affine),
                      SlicedConvBN(mid, mid, 3, depthwise=True, relu=False, affine=affine),
                      SlicedConvBN(mid, mid, 1, affine=affine),
                      SlicedConvBN(mid, mid, 3, depthwise=True, relu=False, affine=affine),
                      SlicedConvBN(mid, branch_out, 1, affine=affine)]
            #: the output width of each layer: "mid" (searched), None (depthwise: its input's) or fixed
            self._plan = (None, "mid", None, "mid", None, branch_out)
        else:  # pw, dw (stride), pw-linear: branch_in -> m -> m -> branch_out
            layers = [SlicedConvBN(branch_in, mid, 1, affine=affine),
                      SlicedConvBN(mid, mid, k, stride, depthwise=True, relu=False, affine=affine),
                      SlicedConvBN(mid, branch_out, 1, affine=affine)]
            self._plan = ("mid", None, branch_out)
        self.main = nn.ModuleList(layers)
        self.proj = None if self.split else nn.ModuleList([
            SlicedConvBN(in_channels, in_channels, k, stride, depthwise=True, relu=False, affine=affine),
            SlicedConvBN(in_channels, in_channels, 1, affine=affine)])

    def _mid(self, mid_channels: int | None) -> int:
        mid = self.mid_channels if mid_channels is None else mid_channels
        if not isinstance(mid, int) or isinstance(mid, bool) or not 1 <= mid <= self.mid_channels:
            raise ValueError(f"mid_channels must be an integer in 1..{self.mid_channels} (the allocated width), "
                             f"got {mid!r}")
        return mid

    def _main_widths(self, mid: int) -> list[tuple[SlicedConvBN, int, int]]:
        """``(layer, c_in, c_out)`` of each main-branch layer at middle width ``mid`` (forward and regions agree)."""
        out, c_in = [], self.main[0].conv.in_channels
        for layer, planned in zip(self.main, self._plan):
            c_out = mid if planned == "mid" else (c_in if planned is None else planned)
            out.append((layer, c_in, c_out))
            c_in = c_out
        return out

    def forward(self, x: torch.Tensor, mid_channels: int | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        mid = self._mid(mid_channels)
        if self.split:
            keep, x = channel_split(x)  # (B, C/2, H, W) each
        else:
            keep = self.proj[1](self.proj[0](x))  # (B, C_in, H/s, W/s)
        for layer, _, c_out in self._main_widths(mid):
            x = layer(x, c_out)
        return torch.cat([keep, x], 1)  # (B, C_out, H/s, W/s)

    def regions(self, mid_channels: int | None = None) -> dict[nn.Parameter, tuple[slice, ...]]:
        """``{parameter: index}`` of the entries a call at ``mid_channels`` uses (the rest get no gradient)."""
        out: dict[nn.Parameter, tuple[slice, ...]] = {}
        for layer, c_in, c_out in self._main_widths(self._mid(mid_channels)):
            out.update(layer.regions(c_in, c_out))
        for layer in self.proj or ():
            out.update(layer.regions(self.in_channels, self.in_channels))
        return out

    def extra_repr(self) -> str:
        kind = "xception" if self.xception else f"k={self.kernel_size}"
        return f"{kind}, mid={self.mid_channels}, split={self.split}"


@torch.no_grad()
def copy_leading_slices(source: nn.Module, target: nn.Module) -> None:
    """Copy every parameter and buffer of ``source`` into ``target`` (same structure, each tensor of
    ``target`` no larger), taking the leading corner ``source_tensor[:n0, :n1, ...]`` of each: a
    narrow block inherits the weights of a wide one exactly as a sliced call uses them.

    Raises:
        ValueError: the two modules have different tensors, or a target tensor is larger.
    """
    theirs = dict(source.state_dict(keep_vars=True))
    mine = target.state_dict(keep_vars=True)
    if set(theirs) != set(mine):
        raise ValueError(f"modules differ: {sorted(set(theirs) ^ set(mine))[:5]} ...")
    for name, tensor in mine.items():
        big = theirs[name]
        if tensor.dim() != big.dim() or any(a > b for a, b in zip(tensor.shape, big.shape)):
            raise ValueError(f"{name}: target shape {tuple(tensor.shape)} does not fit in {tuple(big.shape)}")
        tensor.copy_(big[tuple(slice(0, n) for n in tensor.shape)])


#: The SPOS choice blocks, in the authors' order (their block indices 0, 1, 2, 3).
SPOS_BLOCKS = ("shuffle3x3", "shuffle5x5", "shuffle7x7", "xception")

FAMILIES.update({
    "shufflenet": lambda spec, c_in, c_out, stride: ShuffleChoiceBlock(c_in, c_out, stride,
                                                                       kernel_size=spec.kernel_size),
    "shuffle_xception": lambda spec, c_in, c_out, stride: ShuffleChoiceBlock(c_in, c_out, stride, xception=True),
})
BLOCKS.update({"shuffle3x3": BlockSpec("shufflenet", 3), "shuffle5x5": BlockSpec("shufflenet", 5),
               "shuffle7x7": BlockSpec("shufflenet", 7), "xception": BlockSpec("shuffle_xception", 3)})


def make_choice_block(name: str, in_channels: int, out_channels: int, stride: int = 1, *,
                      mid_channels: int | None = None, affine: bool = True) -> ShuffleChoiceBlock:
    """SPOS choice block ``name`` (one of :data:`SPOS_BLOCKS`) with its middle width allocated at
    ``mid_channels`` (default ``out_channels // 2``)."""
    if name not in SPOS_BLOCKS:
        raise ValueError(f"unknown SPOS choice block {name!r}; choose one of: {', '.join(SPOS_BLOCKS)}")
    spec = BLOCKS[name]
    return ShuffleChoiceBlock(in_channels, out_channels, stride, kernel_size=spec.kernel_size or 3,
                              xception=spec.family == "shuffle_xception", mid_channels=mid_channels, affine=affine)
