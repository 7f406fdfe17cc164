r"""The discrete-cell evaluation network: any :class:`~nas_tutorial.genotypes.Genotype`, trained from scratch.

A search method (DARTS, ENAS, PNAS, NAO) ends with a genotype; this module turns it into the network
the papers retrain and report (Liu et al., 2019, Sec. 3.2; Zoph et al., 2018):

* **stem**: a 3x3 convolution to ``stem_multiplier * channels`` channels, batch norm;
* **cells**: ``layers`` cells; the ones at 1/3 and 2/3 of the depth are *reduction* cells (stride 2
  on the edges that read the two cell inputs, channels doubled), the others are *normal* cells.
  Cell ``k`` reads the outputs of cells ``k - 2`` and ``k - 1`` (after a 1x1 ``ReLUConvBN``, or a
  :class:`~nas_tutorial.ops.FactorizedReduce` when cell ``k - 1`` halved the resolution);
  intermediate node ``j`` sums the two operations of its genotype edges; the cell output
  concatenates the nodes listed in ``*_concat``;
* **auxiliary head** (Szegedy et al., 2015) on the output of the cell at 2/3 of the depth, used in
  training mode only (its loss is added with weight 0.4 in the papers);
* **drop-path** (Larsson et al., 2017): in training, each non-identity edge output is zeroed with
  probability ``drop_path_prob`` per example (and the survivors scaled by ``1 / (1 - p)``);
* global average pooling and a linear classifier.

At the paper's setting (36 channels, 20 cells) the DARTS (second order) cell has 3.3M parameters
without the auxiliary head, as the paper counts (:func:`parameter_count`).

| symbol | code | what it is | shape |
| --- | --- | --- | --- |
| :math:`C` | ``channels`` | channels of a node in the first cells | int (36 in the paper) |
| :math:`L` | ``layers`` | number of cells | int (20 in the paper) |
| :math:`s_{k-2}, s_{k-1}` | ``s0``, ``s1`` | the two inputs of cell ``k`` | ``(B, C_in, H, W)`` |
| :math:`x_j` | ``states[j]`` | intermediate node ``j`` of a cell | ``(B, C_k, H / s, W / s)`` |
| :math:`p` | ``drop_path_prob`` | drop-path probability | float |

:func:`stack_cells` (the stack of cells, reductions at 1/3 and 2/3 of the depth) and
:func:`make_stem` are shared with the search networks (DARTS's supernet; ENAS, PNAS and NAO next).
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn

from .genotypes import Genotype
from .ops import FactorizedReduce, ReLUConvBN, make_op
from .utils import count_parameters


def reduction_layers(layers: int) -> tuple[int, int]:
    """Indices of the two reduction cells: at 1/3 and 2/3 of the depth (``layers // 3``, ``2 * layers // 3``)."""
    if layers < 1:
        raise ValueError(f"layers must be positive, got {layers}")
    return layers // 3, 2 * layers // 3


def stack_cells(make_cell: Callable[..., nn.Module], *, channels: int, layers: int,
                stem_channels: int) -> nn.ModuleList:
    """The cells of the cell papers' CIFAR network, shared by the search and evaluation networks.

    Cell ``i`` is ``make_cell(in_channels_prev_prev, in_channels_prev, channels_i, reduction=...,
    reduction_prev=...)``; it must have an ``out_channels`` attribute. The cells at 1/3 and 2/3 of the
    depth are reductions and double the channels; the first cell reads the stem output twice.
    """
    if channels < 1:
        raise ValueError(f"channels must be positive, got {channels}")
    reductions = reduction_layers(layers)
    prev_prev, prev, current = stem_channels, stem_channels, channels
    cells = nn.ModuleList()
    reduction_prev = False
    for i in range(layers):
        reduction = i in reductions
        if reduction:
            current *= 2
        cell = make_cell(prev_prev, prev, current, reduction=reduction, reduction_prev=reduction_prev)
        cells.append(cell)
        reduction_prev = reduction
        prev_prev, prev = prev, cell.out_channels
    return cells


def make_stem(in_channels: int, stem_channels: int) -> nn.Sequential:
    """The stem of the cell papers' CIFAR network: a 3x3 convolution and batch norm."""
    return nn.Sequential(nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False), nn.BatchNorm2d(stem_channels))


def drop_path(x: torch.Tensor, drop_prob: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Zero whole examples of ``x`` with probability ``drop_prob``; scale the rest by ``1 / (1 - p)``.

    The expectation is unchanged: :math:`E[\text{drop\_path}(x)] = x`. Out of place (the DARTS code
    scales and masks in place, which breaks autograd when ``x`` is needed elsewhere).
    """
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
    if drop_prob == 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.rand((x.shape[0], 1, 1, 1), generator=generator, device="cpu" if generator is not None else x.device)
    mask = (mask < keep).to(device=x.device, dtype=x.dtype)  # (B, 1, 1, 1): 1 keeps the example
    return x * mask / keep


class Cell(nn.Module):
    """One discrete cell of a genotype: two preprocessed inputs, ``n`` nodes of two edges, concatenation.

    Args:
        genotype: the architecture; ``reduction`` picks its ``reduce`` or ``normal`` cell.
        in_channels_prev_prev: channels of ``s_{k-2}`` (output of the cell before the previous one).
        in_channels_prev: channels of ``s_{k-1}`` (output of the previous cell).
        channels: channels of every node in this cell.
        reduction: whether this cell halves the resolution (stride 2 on edges from the inputs).
        reduction_prev: whether the previous cell halved it (then ``s_{k-2}`` is twice as large).
    """

    def __init__(self, genotype: Genotype, in_channels_prev_prev: int, in_channels_prev: int, channels: int, *,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        genotype.validate()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(in_channels_prev_prev, channels)
        else:
            self.preprocess0 = ReLUConvBN(in_channels_prev_prev, channels, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(in_channels_prev, channels, 1, 1, 0)
        edges, concat = genotype.cell("reduce" if reduction else "normal")
        self.sources = tuple(source for _, source in edges)
        self.concat = tuple(concat)
        self.num_nodes = len(edges) // 2
        self.ops = nn.ModuleList(
            make_op(op, channels, stride=2 if reduction and source < 2 else 1) for op, source in edges
        )
        self.out_channels = len(self.concat) * channels
        self.drop_path_prob = 0.0

    def forward(self, s0, s1):  # (B, C_pp, H', W'), (B, C_p, H, W) -> (B, len(concat) * C, H / s, W / s)
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # both (B, C, H, W)
        for j in range(self.num_nodes):
            node = 0
            for position in (2 * j, 2 * j + 1):
                op = self.ops[position]
                h = op(states[self.sources[position]])
                if self.training and self.drop_path_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, self.drop_path_prob)
                node = node + h
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """The CIFAR auxiliary classifier: ReLU, 5x5/3 average pooling (8x8 -> 2x2), 1x1 conv to 128,
    2x2 conv to 768, linear. Feature maps smaller than 5x5 (small test images) are pooled to 2x2
    adaptively instead, so every image size works; the parameter count is the same."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):  # (B, C, H, W) -> (B, num_classes)
        x = torch.relu(x)
        x = self.pool(x) if min(x.shape[-2:]) >= 5 else nn.functional.adaptive_avg_pool2d(x, 2)  # (B, C, h, w)
        x = self.features(x)  # (B, 768, h - 1, w - 1); 1x1 for 8x8 inputs
        return self.classifier(x.flatten(1)) if x.shape[-1] == 1 else self.classifier(x.mean((2, 3)))


class NetworkCIFAR(nn.Module):
    """The evaluation network of the cell papers for 32x32 images, built from any genotype.

    In training mode with ``auxiliary=True``, ``forward`` returns ``(logits, aux_logits)`` (what
    :func:`nas_tutorial.training.train_epoch` expects); otherwise it returns ``logits``.

    Args:
        genotype: the cells.
        channels: initial channels ``C`` (36 in the paper).
        num_classes: output classes.
        layers: number of cells (20 in the paper).
        auxiliary: add the auxiliary head at 2/3 of the depth.
        drop_path_prob: drop-path probability; change it during training with :func:`drop_path_schedule`.
        stem_multiplier: the stem has ``stem_multiplier * channels`` channels (3 in the papers).
        in_channels: image channels.
    """

    def __init__(self, genotype: Genotype, channels: int = 36, num_classes: int = 10, layers: int = 20, *,
                 auxiliary: bool = True, drop_path_prob: float = 0.0, stem_multiplier: int = 3, in_channels: int = 3):
        super().__init__()
        if channels < 1 or num_classes < 1:
            raise ValueError(f"channels and num_classes must be positive, got {channels}, {num_classes}")
        self.genotype = genotype
        self.layers = layers
        stem_channels = stem_multiplier * channels
        self.stem = make_stem(in_channels, stem_channels)
        self.cells = stack_cells(functools.partial(Cell, genotype), channels=channels, layers=layers,
                                 stem_channels=stem_channels)
        self.auxiliary_index = reduction_layers(layers)[1]
        aux_channels = self.cells[self.auxiliary_index].out_channels
        prev = self.cells[-1].out_channels
        self.auxiliary_head = AuxiliaryHead(aux_channels, num_classes) if auxiliary else None
        self.classifier = nn.Linear(prev, num_classes)
        self.drop_path_prob = drop_path_prob

    @property
    def drop_path_prob(self) -> float:
        return self._drop_path_prob

    @drop_path_prob.setter
    def drop_path_prob(self, value: float) -> None:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"drop_path_prob must be in [0, 1), got {value}")
        self._drop_path_prob = float(value)
        for cell in self.cells:
            cell.drop_path_prob = float(value)

    def forward(self, x):  # (B, 3, H, W) -> (B, num_classes) [, (B, num_classes)]
        aux_logits = None
        s0 = s1 = self.stem(x)  # (B, 3C, H, W)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.auxiliary_index and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(s1.mean((2, 3)))  # global average pooling: (B, C_last) -> (B, classes)
        return (logits, aux_logits) if aux_logits is not None else logits


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters without the auxiliary head (how the papers report model size)."""
    return count_parameters(model, exclude="auxiliary")


def drop_path_schedule(max_prob: float) -> Callable[[nn.Module, int, int], None]:
    """An ``epoch_hook`` for :func:`nas_tutorial.training.fit`: drop-path probability rising linearly
    from 0 to ``max_prob`` over training (as in the DARTS code: ``p = max_prob * epoch / epochs``)."""
    if not 0.0 <= max_prob < 1.0:
        raise ValueError(f"max_prob must be in [0, 1), got {max_prob}")

    def hook(model: nn.Module, epoch: int, epochs: int) -> None:
        model.drop_path_prob = max_prob * epoch / epochs

    return hook
