"""Candidate operations of the cell-based NAS papers, in one registry.

Every operation maps ``(B, C, H, W)`` to ``(B, C, H / stride, W / stride)``, so any of them can sit
on any edge of a cell. Names follow the DARTS code base (Liu et al., 2019); ENAS, PNAS and NAO
use subsets of the same set, plus ``sep_conv_7x7`` and ``conv_7x1_1x7``.

| name | what it is | used by |
| --- | --- | --- |
| ``none`` | the zero operation (no edge) | DARTS |
| ``skip_connect`` | identity (factorized reduction when stride 2) | DARTS, ENAS, PNAS, NAO |
| ``max_pool_3x3`` / ``avg_pool_3x3`` | 3x3 pooling | all |
| ``sep_conv_3x3/5x5/7x7`` | (ReLU, depthwise, pointwise, BN) applied twice | all |
| ``dil_conv_3x3/5x5`` | ReLU, dilated depthwise (dilation 2), pointwise, BN | DARTS, PNAS |
| ``conv_7x1_1x7`` | ReLU, 1x7 then 7x1 convolution, BN | PNAS, NAO |
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

#: Operation family of every name: drawings colour operations by family.
OP_FAMILY = {
    "none": "none",
    "skip_connect": "identity",
    "max_pool_3x3": "pool",
    "avg_pool_3x3": "pool",
    "sep_conv_3x3": "separable",
    "sep_conv_5x5": "separable",
    "sep_conv_7x7": "separable",
    "dil_conv_3x3": "dilated",
    "dil_conv_5x5": "dilated",
    "conv_7x1_1x7": "factorized",
}

#: The eight DARTS candidates, in the order of the authors' code (alpha columns follow it).
DARTS_OPS = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution, batch norm: the pre-activation convolution of the cell papers."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
            nn.BatchNorm2d(out_channels, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise convolution (optionally dilated), pointwise convolution, batch norm."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding,
                      dilation=dilation, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two depthwise-separable blocks in a row (the DARTS/NASNet ``sep_conv``); stride on the first."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, affine=True):
        super().__init__(
            DilConv(in_channels, in_channels, kernel_size, stride, padding, 1, affine),
            DilConv(in_channels, out_channels, kernel_size, 1, padding, 1, affine),
        )


class Conv7x1x1x7(nn.Sequential):
    """ReLU, a 1x7 then a 7x1 convolution, batch norm (stride on both axes, split over the two)."""

    def __init__(self, channels, stride, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(channels, channels, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(channels, affine=affine),
        )


class Zero(nn.Module):
    """The ``none`` operation: zeros of the output shape."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):  # (B, C, H, W) -> (B, C, H/s, W/s)
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing half the pixels: two 1x1 stride-2 convolutions, one on
    the input shifted by one pixel, concatenated (Zoph et al., 2018; used by all cell papers)."""

    def __init__(self, in_channels, out_channels, affine=True):
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"FactorizedReduce needs an even out_channels, got {out_channels}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_a = nn.Conv2d(in_channels, out_channels // 2, 1, stride=2, bias=False)
        self.conv_b = nn.Conv2d(in_channels, out_channels // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, affine=affine)

    def forward(self, x):  # (B, C_in, H, W) -> (B, C_out, H/2, W/2)
        x = self.relu(x)
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_a(x), self.conv_b(shifted)], dim=1))


def _pool(kind: str, stride: int) -> nn.Module:
    if kind == "max":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


#: name -> factory(channels, stride, affine) -> module
OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda c, s, affine: Zero(s),
    "skip_connect": lambda c, s, affine: nn.Identity() if s == 1 else FactorizedReduce(c, c, affine),
    "max_pool_3x3": lambda c, s, affine: _pool("max", s),
    "avg_pool_3x3": lambda c, s, affine: _pool("avg", s),
    "sep_conv_3x3": lambda c, s, affine: SepConv(c, c, 3, s, 1, affine),
    "sep_conv_5x5": lambda c, s, affine: SepConv(c, c, 5, s, 2, affine),
    "sep_conv_7x7": lambda c, s, affine: SepConv(c, c, 7, s, 3, affine),
    "dil_conv_3x3": lambda c, s, affine: DilConv(c, c, 3, s, 2, 2, affine),
    "dil_conv_5x5": lambda c, s, affine: DilConv(c, c, 5, s, 4, 2, affine),
    "conv_7x1_1x7": lambda c, s, affine: Conv7x1x1x7(c, s, affine),
}
assert set(OPS) == set(OP_FAMILY)


def check_op_name(name: str) -> str:
    """Return ``name`` if it is a registered operation, else raise a ``ValueError`` listing them."""
    if name not in OPS:
        raise ValueError(
            f"unknown operation {name!r}; choose one of: {', '.join(sorted(OPS))} "
            "(or register a new factory in nas_tutorial.ops.OPS)"
        )
    return name


def make_op(name: str, channels: int, stride: int = 1, affine: bool = True) -> nn.Module:
    """Build the operation ``name`` for ``channels`` channels and the given stride."""
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    return OPS[check_op_name(name)](channels, stride, affine)


def conv_weight_count(in_channels: int, out_channels: int, kernel_size: int) -> int:
    """Weights of a plain ``k x k`` convolution without bias: ``C_in * C_out * k * k``."""
    return in_channels * out_channels * kernel_size * kernel_size


def separable_weight_count(in_channels: int, out_channels: int, kernel_size: int) -> int:
    """Weights of one depthwise-separable convolution: ``C_in * k * k + C_in * C_out``."""
    return in_channels * kernel_size * kernel_size + in_channels * out_channels
