"""Candidate operations of the cell-based NAS papers, in one registry.

Every operation maps ``(B, C, H, W)`` to ``(B, C, H / stride, W / stride)``, so any of them can sit
on any edge of a cell. Names follow the DARTS code base (Liu et al., 2019); ENAS, PNAS and NAO-WS
use subsets of the same set, plus ``sep_conv_7x7`` and ``conv_7x1_1x7`` (PNAS); NAO's main CIFAR-10
space (NAONet, :data:`nas_tutorial.nao.NAONET_OPS`) adds plain convolutions and more pooling sizes.

| name | what it is | used by |
| --- | --- | --- |
| ``none`` | the zero operation (no edge) | DARTS |
| ``skip_connect`` | identity (factorized reduction when stride 2) | DARTS, ENAS, PNAS, NAO |
| ``max_pool_3x3`` / ``avg_pool_3x3`` | 3x3 pooling | all |
| ``sep_conv_3x3/5x5/7x7`` | (ReLU, depthwise, pointwise, BN) applied twice | all |
| ``dil_conv_3x3/5x5`` | ReLU, dilated depthwise (dilation 2), pointwise, BN | DARTS, PNAS |
| ``conv_7x1_1x7`` | ReLU, 1x7 then 7x1 convolution, BN | PNAS |
| ``conv_1x1`` / ``conv_3x3`` | ReLU, convolution, BN | NAO |
| ``conv_1x3_3x1`` / ``conv_1x7_7x1`` | ReLU, 1xk convolution, BN, ReLU, kx1 convolution, BN | NAO |
| ``max_pool_2x2`` / ``avg_pool_2x2`` | zero row and column appended, then 2x2 pooling | NAO |
| ``max_pool_5x5`` / ``avg_pool_5x5`` | 5x5 pooling (the average counts the padding) | NAO |

The NAO operations follow the authors' PyTorch code (renqianluo/NAO_pytorch, ``NAO_V1``:
``operations.py`` and ``Node`` in ``model.py``); where that differs from the DARTS operations of a
similar name or from the authors' TensorFlow code (renqianluo/NAO), their docstrings say so.

The end of the module computes one operation for several modules on the same input at once
(:func:`apply_many`, with :func:`depthwise_conv2d`, :func:`batch_norm_concat` and
:func:`batch_norm_shared`): the supernet's fast path, equal to calling the modules one by one.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

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
    "conv_1x1": "conv",
    "conv_3x3": "conv",
    "conv_1x3_3x1": "factorized",
    "conv_1x7_7x1": "factorized",
    "max_pool_2x2": "pool",
    "avg_pool_2x2": "pool",
    "max_pool_5x5": "pool",
    "avg_pool_5x5": "pool",
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


class FactorizedConv(nn.Sequential):
    """NAO's ``conv_1xk_kx1``: ReLU, 1xk convolution, BN, then ReLU, kx1 convolution, BN (``k`` odd).

    As the authors' PyTorch code (``Conv`` with a tuple kernel): the stride is split, ``(1, s)`` on
    the 1xk and ``(s, 1)`` on the kx1 convolution. Unlike PNAS's :class:`Conv7x1x1x7` it is two
    ReLU-conv-BN units (two batch norms, ``2 k C^2 + 4 C`` parameters); the TensorFlow code puts the
    whole stride on the first convolution (same parameters, other sampling of the rows).
    """

    def __init__(self, channels, kernel_size, stride, affine=True):
        if kernel_size % 2 == 0:
            raise ValueError(f"FactorizedConv needs an odd kernel_size, got {kernel_size}")
        pad = kernel_size // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, (1, kernel_size), stride=(1, stride), padding=(0, pad), bias=False),
            nn.BatchNorm2d(channels, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, (kernel_size, 1), stride=(stride, 1), padding=(pad, 0), bias=False),
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


def _nao_pool(kind: str, kernel_size: int, stride: int) -> nn.Module:
    """NAO's pooling, as the authors' PyTorch code builds it (``Node`` in ``NAO_V1/model.py``).

    ``5x5``: padding 2; the average *counts* the zero padding (PyTorch's default), unlike the DARTS
    ``avg_pool_3x3`` above and the TensorFlow code's ``SAME`` pooling, which both average the
    pixels inside the image only. ``2x2``: an even kernel cannot be centred, so a zero row and
    column are appended (bottom, right) and the 2x2 window pools without padding: at stride 1 the
    last row and column see that zero (a max of at least 0, an average with a 0 in it), at stride 2
    on an even size the zeros are never read. The TensorFlow code pads the same side but leaves
    the padding out of the max and the average.
    """
    padding = kernel_size // 2 if kernel_size % 2 else 0
    if kind == "max":
        pool = nn.MaxPool2d(kernel_size, stride=stride, padding=padding)  # padding never wins a max
    else:
        pool = nn.AvgPool2d(kernel_size, stride=stride, padding=padding, count_include_pad=True)
    if kernel_size % 2:
        return pool
    return nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), pool)  # (B, C, H + 1, W + 1), then (B, C, H / s, W / s)


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
    # NAO (NAONet's space): plain convolutions, factorized pairs, 2x2 and 5x5 pooling
    "conv_1x1": lambda c, s, affine: ReLUConvBN(c, c, 1, s, 0, affine),
    "conv_3x3": lambda c, s, affine: ReLUConvBN(c, c, 3, s, 1, affine),
    "conv_1x3_3x1": lambda c, s, affine: FactorizedConv(c, 3, s, affine),
    "conv_1x7_7x1": lambda c, s, affine: FactorizedConv(c, 7, s, affine),
    "max_pool_2x2": lambda c, s, affine: _nao_pool("max", 2, s),
    "avg_pool_2x2": lambda c, s, affine: _nao_pool("avg", 2, s),
    "max_pool_5x5": lambda c, s, affine: _nao_pool("max", 5, s),
    "avg_pool_5x5": lambda c, s, affine: _nao_pool("avg", 5, s),
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


# -- The same operations, many at once (the supernet's fast path) -----------------------------------
# A supernet edge applies every candidate to the same input, and the edges that leave one node all
# read that node. The functions below compute "module m applied to x" for several modules of one
# operation (each with its own weights) and one input in a few large kernels instead of many tiny
# ones; each equals the modules called one by one (tests/test_darts.py checks it in float64).
# Measured on a 2-core CPU, one thread: see benchmarks/README.md.


class _DepthwiseConv2d(torch.autograd.Function):
    """``F.conv2d(x, weight, groups=C)`` with the faster backward of :func:`depthwise_conv2d`."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding, dilation)
        return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        need_x, need_w = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled():  # a graph of the backward is wanted (double backward): PyTorch's own
            grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [stride] * 2, [padding] * 2, [dilation] * 2, False, [0, 0], x.shape[1],
                [need_x, need_w, False])
            return grad_x, grad_w, None, None, None
        grad_x = _depthwise_input_grad(grad, x, weight, stride, padding, dilation) if need_x else None
        grad_w = _depthwise_weight_grad(grad, x, weight, stride, padding, dilation) if need_w else None
        return grad_x, grad_w, None, None, None


def _depthwise_input_grad(grad, x, weight, stride, padding, dilation):
    k = weight.shape[-1]
    if stride == 1 and dilation * (k - 1) >= padding:
        # the adjoint of a correlation is the correlation with the flipped kernel ("full" padding
        # minus the forward's): one more forward convolution
        return F.conv2d(grad, weight.flip(-2, -1), None, 1, dilation * (k - 1) - padding, dilation, x.shape[1])
    return torch.ops.aten.convolution_backward(grad, x, weight, None, [stride] * 2, [padding] * 2, [dilation] * 2,
                                               False, [0, 0], x.shape[1], [True, False, False])[0]


def _depthwise_weight_grad(grad, x, weight, stride, padding, dilation):
    k = weight.shape[-1]
    # dL/dw[c, i, j] = sum_{b,h,w} g[b,c,h,w] * xp[b,c, s h + d i, s w + d j]  (xp: the padded input)
    batch, channels, out_h, out_w = grad.shape
    xp = F.pad(x, (padding,) * 4)
    width = xp.shape[-1]
    sb, sc, sh, sw = xp.stride()
    rows = xp.as_strided((channels, batch, out_h, k, width), (sc, sb, stride * sh, dilation * sh, sw))
    # m[c, w, i, u] = sum_{b,h} g[b,c,h,w] xp[b,c, s h + d i, u]: one batched matrix product over channels
    m = torch.bmm(grad.permute(1, 3, 0, 2).reshape(channels, out_w, batch * out_h),
                  rows.reshape(channels, batch * out_h, k * width))  # (C, W', k * Wp)
    # dL/dw[c, i, j] = sum_w m[c, w, i, s w + d j]: a sum along strided diagonals of m
    diagonals = m.as_strided((channels, k, k, out_w), (out_w * k * width, width, dilation, k * width + stride))
    return diagonals.sum(-1).unsqueeze(1)  # (C, 1, k, k)


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> torch.Tensor:
    r"""A depthwise convolution, ``F.conv2d(x, weight, None, stride, padding, dilation, groups=C)``, with
    a faster backward on the CPU.

    The forward is PyTorch's. PyTorch's CPU backward of a depthwise convolution is fast only for
    the undilated 3x3 kernel (used as it is); for 5x5 and dilated kernels it costs 10-30 times the
    forward (benchmarks/README.md). Here the input gradient of a stride-1 convolution is the forward
    convolution of the output gradient with the flipped kernel, and the weight gradient,
    :math:`\partial L / \partial w_{c,i,j} = \sum_{b,h,w} g_{b,c,h,w}\, x^{pad}_{b,c,sh+di,sw+dj}`,
    is one batched matrix product followed by sums along diagonals. On other devices, and when
    the backward itself must be differentiable (``create_graph=True``), PyTorch's own is used.

    Args:
        x: ``(B, C, H, W)``.
        weight: ``(C, 1, k, k)``.
    """
    if x.device.type != "cpu" or (weight.shape[-1] == 3 and dilation == 1):  # PyTorch's is fast there
        return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1])
    return _DepthwiseConv2d.apply(x, weight, stride, padding, dilation)


def _check_norms(norms) -> None:
    first = norms[0]
    for bn in norms:
        if bn.affine or not bn.track_running_stats or bn.momentum is None or (bn.eps, bn.momentum) != (
                first.eps, first.momentum):
            raise ValueError("batched batch norm needs non-affine BatchNorm2d modules with running statistics, "
                             "one eps and one (not None) momentum")


def batch_norm_concat(x: torch.Tensor, norms: list[nn.BatchNorm2d]) -> torch.Tensor:
    """``torch.cat([bn(part) for bn, part in zip(norms, x.split(sizes, 1))], 1)`` in one kernel.

    The channels of ``x`` are those of the modules one after the other (``sizes``: their
    ``num_features``); in training mode each module's running statistics are updated as its own
    call would update them. Non-affine modules only (the supernet's). ``(B, sum C_i, H, W)`` in and out.
    """
    first = norms[0]
    if len(norms) == 1:
        return first(x)
    _check_norms(norms)
    means, variances = [bn.running_mean for bn in norms], [bn.running_var for bn in norms]
    mean, var = torch.cat(means), torch.cat(variances)  # the batch norm below updates these copies
    y = F.batch_norm(x, mean, var, None, None, first.training, first.momentum, first.eps)
    if first.training:
        with torch.no_grad():
            sizes = [bn.num_features for bn in norms]
            torch._foreach_copy_(means, list(mean.split(sizes)))
            torch._foreach_copy_(variances, list(var.split(sizes)))
            torch._foreach_add_([bn.num_batches_tracked for bn in norms], 1)
    return y


def batch_norm_shared(x: torch.Tensor, norms: list[nn.BatchNorm2d]) -> torch.Tensor:
    """``torch.stack([bn(x) for bn in norms], 1)`` for modules that normalise the same ``x``.

    In training mode the outputs are equal (batch statistics), so one is computed and returned
    as ``(B, 1, C, H, W)``, and every module's running statistics are updated as its own call
    would; in eval mode each module uses its own statistics: ``(B, len(norms), C, H, W)``.
    """
    first = norms[0]
    if not first.training:
        y = batch_norm_concat(x.repeat(1, len(norms), 1, 1), norms)
        return y.view(x.shape[0], len(norms), *x.shape[1:])
    if len(norms) == 1:
        return first(x).unsqueeze(1)
    _check_norms(norms)
    y, mean, invstd = torch.native_batch_norm(x, None, None, None, None, True, 0.0, first.eps)
    with torch.no_grad():
        n = x.numel() // x.shape[1]
        unbiased_var = (invstd.pow(-2) - first.eps) * (n / max(n - 1, 1))  # what nn.BatchNorm2d keeps
        for running, batch in ((
                [bn.running_mean for bn in norms], mean), ([bn.running_var for bn in norms], unbiased_var)):
            torch._foreach_mul_(running, 1.0 - first.momentum)
            torch._foreach_add_(running, [batch] * len(norms), alpha=first.momentum)
        torch._foreach_add_([bn.num_batches_tracked for bn in norms], 1)
    return y.unsqueeze(1)


def _dil_conv_many(modules: list[DilConv], x_relu: torch.Tensor) -> torch.Tensor:
    """E :class:`DilConv` modules after their activation (ReLU): ``x_relu`` is ``(B, E * C, H, W)``, module ``e``
    reading channels ``e * C .. (e + 1) * C``; returns ``(B, E * C_out, H', W')`` in the same order."""
    depthwise, pointwise = modules[0][1], modules[0][2]
    weight = torch.cat([m[1].weight for m in modules])  # (E * C, 1, k, k)
    y = depthwise_conv2d(x_relu, weight, depthwise.stride[0], depthwise.padding[0], depthwise.dilation[0])
    batch, _, height, width = y.shape
    # the E pointwise (1x1) convolutions as one batched matrix product
    mixing = torch.stack([m[2].weight.flatten(1) for m in modules])  # (E, C_out, C)
    y = torch.matmul(mixing, y.view(batch, len(modules), pointwise.in_channels, height * width))  # (B, E, C_out, HW)
    return batch_norm_concat(y.view(batch, -1, height, width), [m[3] for m in modules])


def _factorized_reduce_many(modules: list[FactorizedReduce], x_relu: torch.Tensor) -> torch.Tensor:
    """E :class:`FactorizedReduce` modules after their ReLU, on one ``(B, C, H, W)``: ``(B, E * C_out, H/2, W/2)``."""
    batch, channels = x_relu.shape[:2]
    even = x_relu[:, :, ::2, ::2]  # what the 1x1 stride-2 convolution conv_a reads
    odd = F.pad(x_relu[:, :, 1:, 1:], (0, 1, 0, 1))[:, :, ::2, ::2]  # and conv_b, on the shifted input
    height, width = even.shape[-2:]
    halves = [torch.matmul(torch.stack([getattr(m, name).weight.flatten(1) for m in modules]),  # (E, C_out/2, C)
                           part.reshape(batch, 1, channels, height * width))  # -> (B, E, C_out/2, HW)
              for name, part in (("conv_a", even), ("conv_b", odd))]
    y = torch.cat(halves, 2)  # (B, E, C_out, HW): conv_a's channels, then conv_b's, for each module
    return batch_norm_concat(y.view(batch, -1, height, width), [m.bn for m in modules])


def _run_pool(pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``pool(x)``; a stride-1 max pooling on the CPU runs in channels-last memory order, 1.5-4x faster there."""
    if isinstance(pool, nn.MaxPool2d) and pool.stride in (1, (1, 1)) and x.device.type == "cpu":
        return pool(x.contiguous(memory_format=torch.channels_last)).contiguous()
    return pool(x)


def apply_many(modules: list[nn.Module], x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
    r"""``torch.stack([m(x) for m in modules], 1)`` for modules of one operation of :data:`OPS`, each
    with its own weights, all reading the same ``x``: ``(B, C, H, W) -> (B, E, C, H', W')``.

    Separable and dilated convolutions and factorized reductions of the E modules run as one
    depthwise convolution, one batched matrix product and one batch norm per stage, after one
    activation (the modules' own ReLU, or whatever replaced it). A parameter-free operation
    (pooling, identity) gives the same output for every module: it is computed once and returned
    with ``E = 1`` (broadcastable), also through a following batch norm in training mode
    (:func:`batch_norm_shared`). ``cache`` (a dict kept for one ``x``) shares the activation of
    ``x`` between the calls of different operations on that ``x``. Any other module, or modules
    whose activations differ, are called one by one.
    """
    cache = {} if cache is None else cache
    first = modules[0]

    def activated(activation: nn.Module, repeat: int = 1):  # activation(x), repeated along channels, once per x
        key = (repr(activation), repeat)
        if key not in cache:
            cache[key] = activation(x) if repeat == 1 else activated(activation).repeat(1, repeat, 1, 1)
        return cache[key]

    def out(y):  # (B, E * C, H', W') -> (B, E, C, H', W')
        return y.view(y.shape[0], len(modules), -1, *y.shape[2:])

    if isinstance(first, nn.Identity):
        return x.unsqueeze(1)
    if isinstance(first, (nn.MaxPool2d, nn.AvgPool2d)):
        return _run_pool(first, x).unsqueeze(1)
    if (isinstance(first, nn.Sequential) and len(first) == 2 and isinstance(first[0], (nn.MaxPool2d, nn.AvgPool2d))
            and isinstance(first[1], nn.BatchNorm2d)):  # pooling, then a batch norm (the supernet's)
        return batch_norm_shared(_run_pool(first[0], x), [m[1] for m in modules])
    activations = {SepConv: lambda m: (m[0][0], m[1][0]), DilConv: lambda m: (m[0],),
                   FactorizedReduce: lambda m: (m.relu,)}  # the activation(s) each kind applies to its input
    kind = type(first)
    if kind in activations and len({tuple(map(repr, activations[kind](m))) for m in modules}) == 1:
        if kind is SepConv:
            y = _dil_conv_many([m[0] for m in modules], activated(first[0][0], len(modules)))
            return out(_dil_conv_many([m[1] for m in modules], first[1][0](y)))
        if kind is DilConv:
            return out(_dil_conv_many(modules, activated(first[0], len(modules))))
        return out(_factorized_reduce_many(modules, activated(first.relu)))
    return torch.stack([m(x) for m in modules], 1)
