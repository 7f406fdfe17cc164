r"""ENAS's two search spaces (Pham et al., 2018, Sec. 2.3 and 2.4), and the shared-weight networks that run them.

**Macro space** (the whole network, Sec. 2.3). :math:`L` layers in a chain; layer :math:`i` applies
one of six operations to the output of the layer before it and adds the outputs of any subset of
the earlier layers (skip connections). With :math:`h_0` the stem's output and :math:`h_{i+1}` layer
:math:`i`'s, layer :math:`i` reads :math:`h_i` and may add any of :math:`h_0 .. h_{i-1}` (``i`` bits),
so there are :math:`6^L \cdot 2^{L(L-1)/2}` networks (:func:`macro_space_size`).

**Micro space** (cells, Sec. 2.4). A cell has two inputs (nodes 0 and 1: the outputs of the two
cells before it) and :math:`B` blocks (nodes ``2 .. B + 1``). Block :math:`b` picks two inputs among
the nodes before it (the same one may be picked twice), an operation for each from five (identity,
3x3 and 5x5 separable convolution, 3x3 average and max pooling), and adds the two results. The
blocks no other block reads (the *loose ends*) are concatenated into the cell's output. A cell is a
:class:`~nas_tutorial.genotypes.Genotype` whose ``*_concat`` lists its loose ends
(:func:`micro_genotype`), so the genotype's text form, validation, drawing and evaluation network
(:class:`~nas_tutorial.cells.NetworkCIFAR`) are the ones DARTS uses. PNAS and NAO search the same
kind of cell.

| symbol | code | what it is | shape |
| --- | --- | --- | --- |
| :math:`L` | ``num_layers`` | layers of the macro network | int (12 in the search, 24 in the final network) |
| :math:`h_j` | ``h[j]`` | :math:`h_0` the stem output, :math:`h_{j}` layer :math:`j - 1`'s output | ``(N, C, H, W)`` |
| :math:`B` | ``num_blocks`` | blocks per cell | int (5) |
| :math:`C` | ``channels`` | channels of a layer or of a cell's nodes | int |
| :math:`m` | ``arch`` | a sampled child model: :class:`MacroArch` or a ``Genotype`` | |

Where this module follows the authors' code (github.com/melodyguan/enas) rather than the paper,
the docstring says so; the networks are written from the paper and that code's structure, not
copied from it. :class:`MacroNetwork` and :class:`MicroNetwork` are the authors' final networks;
:func:`published_parameter_counts` sets their counts against the paper's Table 2 (the micro figure
reproduces, the macro ones do not; the docstring gives the evidence).
"""

from __future__ import annotations

import ast
import functools
import itertools
import json
import math
from dataclasses import dataclass

import torch
from torch import nn

from .cells import AuxiliaryHead, drop_path, make_stem, parameter_count, stack_cells
from .genotypes import Genotype, _as_index, count_cells
from .ops import FactorizedReduce, ReLUConvBN, make_op

#: The six macro operations, in the authors' code's order (the controller's output order).
MACRO_OPS = ("conv_3x3", "sep_conv_3x3", "conv_5x5", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3")

#: The five cell operations, in the authors' code's order (their architecture strings use it).
ENAS_OPS = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "skip_connect")


# -- the macro space ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MacroArch:
    r"""A network of the macro space: ``ops[i]`` is layer ``i``'s operation, ``skips[i]`` the sorted
    indices ``j < i`` of the outputs :math:`h_j` it adds (:math:`h_0`: the stem's output).

    The text form is ``MacroArch(ops=['conv_3x3', ...], skips=[[], [0], ...])``."""

    ops: tuple[str, ...]
    skips: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        for name in ("ops", "skips"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ValueError(f"field {name!r} must be a list, got {value!r}")
        object.__setattr__(self, "ops", tuple(self.ops))
        skips = []
        for i, s in enumerate(self.skips):
            if isinstance(s, (str, bytes)) or not hasattr(s, "__iter__"):
                raise ValueError(f"field 'skips', layer {i}: must be a list of earlier outputs, got {s!r}")
            skips.append(tuple(_as_index(j) for j in s))
        object.__setattr__(self, "skips", tuple(skips))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad layer and what would be valid."""
        if not self.ops:
            raise ValueError("field 'ops' must name at least one layer's operation, got []")
        if len(self.skips) != len(self.ops):
            raise ValueError(f"field 'skips' must have one list per layer ({len(self.ops)}), got {len(self.skips)}")
        for i, op in enumerate(self.ops):
            if op not in MACRO_OPS:
                raise ValueError(f"field 'ops', layer {i}: unknown operation {op!r}; choose one of {list(MACRO_OPS)}")
            s = self.skips[i]
            if any(not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < i for j in s) \
                    or list(s) != sorted(set(s)):
                raise ValueError(f"field 'skips', layer {i}: must be sorted distinct outputs in 0..{i - 1} "
                                 f"(0 is the stem; layer {i} reads output {i} anyway), got {list(s)}")

    @property
    def num_layers(self) -> int:
        return len(self.ops)

    def __str__(self) -> str:
        return f"MacroArch(ops={list(self.ops)}, skips={[list(s) for s in self.skips]})"

    @classmethod
    def parse(cls, text: str) -> MacroArch:
        """Parse the text form (``str(arch)``)."""
        try:
            tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as err:
            raise ValueError(f"architecture text is not valid Python syntax: {err.msg} in {text!r}") from None
        if not (isinstance(tree, ast.Call) and getattr(tree.func, "id", None) == "MacroArch" and not tree.args):
            raise ValueError(f"architecture text must look like MacroArch(ops=[...], skips=[...]), got {text!r}")
        fields = {kw.arg: ast.literal_eval(kw.value) for kw in tree.keywords}
        return cls.from_dict(fields)

    def to_dict(self) -> dict:
        return {"ops": list(self.ops), "skips": [list(s) for s in self.skips]}

    @classmethod
    def from_dict(cls, fields: dict) -> MacroArch:
        if set(fields) != {"ops", "skips"}:
            raise ValueError(f"architecture fields must be exactly ['ops', 'skips'], got {sorted(fields)}")
        return cls(**fields)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    # the authors' code writes an architecture as integers: per layer, the operation, then i skip bits
    @classmethod
    def from_enas_arc(cls, arc: str | list[int], ops: tuple[str, ...] = MACRO_OPS) -> MacroArch:
        """Decode the authors' code's integer string (layer ``i``: op index, then ``i`` skip bits)."""
        values = [int(v) for v in arc.split()] if isinstance(arc, str) else [int(v) for v in arc]
        layers, position, i = [], 0, 0
        while position < len(values):
            chunk = values[position:position + 1 + i]
            if len(chunk) != 1 + i:
                raise ValueError(f"architecture string ends inside layer {i}: expected {1 + i} numbers, got {chunk}")
            if not 0 <= chunk[0] < len(ops) or any(b not in (0, 1) for b in chunk[1:]):
                raise ValueError(f"layer {i}: {chunk} is not an op index in 0..{len(ops) - 1} and skip bits 0/1")
            layers.append((ops[chunk[0]], tuple(j for j, bit in enumerate(chunk[1:]) if bit)))
            position += 1 + i
            i += 1
        return cls(ops=[op for op, _ in layers], skips=[s for _, s in layers])

    def to_enas_arc(self, ops: tuple[str, ...] = MACRO_OPS) -> list[int]:
        out = []
        for i, (op, s) in enumerate(zip(self.ops, self.skips)):
            out += [ops.index(op)] + [int(j in s) for j in range(i)]
        return out


def macro_space_size(num_layers: int, num_ops: int = len(MACRO_OPS)) -> int:
    r""":math:`K^L \cdot 2^{L(L-1)/2}`: an operation per layer and a bit per pair of layers (Sec. 2.3)."""
    if num_layers < 1 or num_ops < 1:
        raise ValueError(f"num_layers and num_ops must be positive, got {num_layers}, {num_ops}")
    return num_ops**num_layers * 2 ** (num_layers * (num_layers - 1) // 2)


def enumerate_macro(num_layers: int, ops: tuple[str, ...] = MACRO_OPS) -> set[MacroArch]:
    """Every macro network with ``num_layers`` layers, by brute force (small sizes): checks the formula."""
    layer_choices = []
    for i in range(num_layers):
        subsets = [tuple(j for j in range(i) if mask >> j & 1) for mask in range(2**i)]
        layer_choices.append(list(itertools.product(ops, subsets)))
    return {MacroArch(ops=[op for op, _ in c], skips=[s for _, s in c]) for c in itertools.product(*layer_choices)}


# -- the micro space -------------------------------------------------------------------------------------
def loose_ends(edges) -> tuple[int, ...]:
    """The blocks (nodes ``2 .. B + 1``) that no block reads: what a cell concatenates into its output."""
    num_blocks = len(edges) // 2
    used = {source for _, source in edges}
    return tuple(node for node in range(2, 2 + num_blocks) if node not in used)


def micro_genotype(normal, reduce) -> Genotype:
    """A cell pair as a :class:`Genotype` whose outputs are the loose ends of each cell.

    The authors' code also concatenates a cell *input* that no block reads; the paper speaks of the
    blocks only, and so do we (the published cells read both inputs, so they are built alike)."""
    return Genotype(normal=normal, normal_concat=loose_ends(list(normal)), reduce=reduce,
                    reduce_concat=loose_ends(list(reduce)))


def _decode_cell(arc: str | list[int], ops: tuple[str, ...], kind: str) -> list[tuple[str, int]]:
    values = [int(v) for v in arc.split()] if isinstance(arc, str) else [int(v) for v in arc]
    if not values or len(values) % 4:
        raise ValueError(f"{kind} cell: the architecture string needs 4 numbers per block (input, op, input, op), "
                         f"got {len(values)}")
    edges = []
    for b in range(len(values) // 4):
        x, x_op, y, y_op = values[4 * b:4 * b + 4]
        for node, op in ((x, x_op), (y, y_op)):
            if not 0 <= node < b + 2 or not 0 <= op < len(ops):
                raise ValueError(f"{kind} cell, block {b}: input {node} must be in 0..{b + 1} and op {op} in "
                                 f"0..{len(ops) - 1}")
            edges.append((ops[op], node))
    return edges


def from_enas_arc(normal: str | list[int], reduce: str | list[int], ops: tuple[str, ...] = ENAS_OPS) -> Genotype:
    """Decode the authors' code's cell strings: per block ``input op input op`` (ops in ``ENAS_OPS`` order)."""
    return micro_genotype(_decode_cell(normal, ops, "normal"), _decode_cell(reduce, ops, "reduce"))


def to_enas_arc(genotype: Genotype, ops: tuple[str, ...] = ENAS_OPS) -> tuple[list[int], list[int]]:
    """The inverse of :func:`from_enas_arc`."""
    def encode(edges):
        return [v for op, node in edges for v in (node, ops.index(op))]
    return encode(genotype.normal), encode(genotype.reduce)


def cell_space_size(num_blocks: int, num_ops: int = len(ENAS_OPS)) -> int:
    r"""Cells with ``num_blocks`` blocks: block :math:`b` picks each of its two (input, op) pairs in
    :math:`(b + 2) K` ways, :math:`\prod_b ((b + 2) K)^2` (enumerated in the tests)."""
    return count_cells(num_blocks, num_ops, distinct_inputs=False)


def seed_cell_formula(num_blocks: int, num_ops: int = len(ENAS_OPS)) -> int:
    r"""The seed's :math:`[(B + 1)! \cdot K^B]^2` for one cell (it writes :math:`L - 2` for the blocks)."""
    return (math.factorial(num_blocks + 1) * num_ops**num_blocks) ** 2


def paper_network_formula(num_nodes: int = 7) -> int:
    r"""The paper's count of networks (a normal and a reduction cell), :math:`(5 \times (B - 2)!)^4` with
    :math:`B` nodes per cell (the two inputs and the blocks): 1.3e11 for :math:`B = 7` (Sec. 2.4)."""
    return (5 * math.factorial(num_nodes - 2)) ** 4


# -- the published architectures (the authors' scripts cifar10_micro_final.sh, cifar10_macro_final.sh) ------
ENAS_MICRO = from_enas_arc("0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1",
                           "1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1")
"""The ENAS cells for CIFAR-10, as released in the authors' final-training script."""

ENAS_MACRO = MacroArch.from_enas_arc(
    "0 3 0 0 1 0 2 0 0 1 2 0 0 0 0 3 1 1 0 1 0 2 0 0 0 0 0 1 2 0 1 1 0 1 1 1 1 0 1 1 1 0 1 0 1 "
    "0 0 0 0 0 0 0 0 0 0 2 0 0 0 0 0 1 0 0 0 0 0 1 0 0 1 1 0 0 0 0 1 1 2 0 1 0 0 0 0 0 1 0 1 1 0 "
    "1 0 0 1 0 0 0 1 1 1 0 1 0 1 0 1 1 0 1 0 1 0 0 0 0 0 1 0 0 2 0 0 1 0 0 0 0 0 0 0 1 0 1 0 1 "
    "2 0 1 0 0 0 1 0 0 1 1 1 1 0 0 1 0 2 0 0 0 0 1 0 1 0 1 0 0 1 0 1 0 0 1 "
    "3 0 1 1 0 1 0 0 0 0 0 1 0 1 0 1 0 0 0 3 0 1 1 0 0 0 0 0 0 0 0 0 1 1 0 0 0 0 1 "
    "0 1 0 0 1 0 1 1 0 0 0 1 0 0 0 0 0 1 1 0 0 3 0 1 0 1 1 0 0 1 0 1 1 0 1 1 0 1 0 0 1 0 0 "
    "0 1 0 1 0 1 0 0 0 0 0 0 0 0 1 0 1 0 0 1 0 0 0 0 1 1 0 0 0 1 1 1 0 1 0 0 0 1 0 1 0 0 1 1 0 0 0")
"""The ENAS 24-layer macro network for CIFAR-10, as released in the authors' final-training script.

That script trains it with only the first four operations (``--child_num_branches=4``)."""


# -- macro networks -----------------------------------------------------------------------------------------
def _pool(name: str) -> nn.Module:
    if name.startswith("max"):
        return nn.MaxPool2d(3, stride=1, padding=1)
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


def macro_op(name: str, in_channels: int, channels: int, *, separable_as_regular: bool = False) -> nn.Sequential:
    """One macro layer's operation as the authors' code builds it: a 1x1 convolution to ``channels``
    (batch norm, ReLU), then the k x k convolution (plain, or depthwise then pointwise) with batch
    norm and ReLU, or the 3x3 pooling. ``separable_as_regular`` builds the separable ones as plain
    convolutions, as the authors' code does for a fixed architecture."""
    if name not in MACRO_OPS:
        raise ValueError(f"unknown macro operation {name!r}; choose one of {list(MACRO_OPS)}")
    layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
    if "pool" in name:
        return nn.Sequential(*layers, _pool(name))
    k = int(name[-1])
    if name.startswith("sep") and not separable_as_regular:
        layers += [nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels, bias=False),
                   nn.Conv2d(channels, channels, 1, bias=False)]
    else:
        layers.append(nn.Conv2d(channels, channels, k, padding=k // 2, bias=False))
    return nn.Sequential(*layers, nn.BatchNorm2d(channels), nn.ReLU())


def pool_layers(num_layers: int) -> tuple[int, ...]:
    """The layers after which the macro network halves the resolution (authors' code: after layers
    ``L // 3 - 1`` and ``2 (L // 3) - 1``; every output so far is reduced then)."""
    distance = num_layers // 3
    return tuple(i for i in (distance - 1, 2 * distance - 1) if i >= 0)


class SharedMacroNetwork(nn.Module):
    r"""The macro space's shared weights :math:`w`: every layer holds all six operations; ``forward(x,
    arch)`` runs the child model ``arch`` on them (one operation per layer, its skips summed, batch norm).

    As in the authors' code, the width stays ``channels`` throughout the search network (the final
    network doubles it at each reduction); at :func:`pool_layers` every output so far is halved by a
    factorized reduction of its own.
    """

    def __init__(self, num_layers: int = 12, channels: int = 36, num_classes: int = 10, *,
                 ops: tuple[str, ...] = MACRO_OPS, in_channels: int = 3):
        super().__init__()
        if num_layers < 1 or channels < 2 or channels % 2:
            raise ValueError(f"num_layers must be >= 1 and channels even and >= 2, got {num_layers}, {channels}")
        self.num_layers, self.ops = num_layers, tuple(ops)
        self.stem = make_stem(in_channels, channels)
        self.layers = nn.ModuleList(nn.ModuleList(macro_op(op, channels, channels) for op in self.ops)
                                    for _ in range(num_layers))
        self.skip_bn = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(num_layers))
        self.pool_at = pool_layers(num_layers)
        self.reduce = nn.ModuleDict({str(i): nn.ModuleList(FactorizedReduce(channels, channels)
                                                           for _ in range(i + 2)) for i in self.pool_at})
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor, arch: MacroArch) -> torch.Tensor:  # (N, 3, H, W) -> (N, classes)
        if arch.num_layers != self.num_layers:
            raise ValueError(f"architecture has {arch.num_layers} layers, the shared network {self.num_layers}")
        h = [self.stem(x)]  # h[0]: (N, C, H, W)
        for i, (op, skips) in enumerate(zip(arch.ops, arch.skips)):
            out = self.layers[i][self.ops.index(op)](h[i])
            for j in skips:
                out = out + h[j]
            h.append(self.skip_bn[i](out))
            if i in self.pool_at:
                h = [reduce(hj) for reduce, hj in zip(self.reduce[str(i)], h)]  # each (N, C, H/2, W/2)
        return self.classifier(h[-1].mean((2, 3)))


class MacroNetwork(nn.Module):
    """A fixed macro architecture trained from scratch, built as the authors' code builds it: the
    skips and the layer's output concatenated, then ReLU, a 1x1 convolution back to the layer's width
    and batch norm; the width doubles at each reduction; global pooling and a linear layer without bias.

    ``separable_as_regular=True`` reproduces the released code, which builds the separable
    operations of a fixed architecture as plain convolutions (its parameter count)."""

    def __init__(self, arch: MacroArch, channels: int = 96, num_classes: int = 10, *, in_channels: int = 3,
                 separable_as_regular: bool = False):
        super().__init__()
        arch.validate()
        self.arch = arch
        self.stem = make_stem(in_channels, channels)
        self.layers, self.combine, self.reduce = nn.ModuleList(), nn.ModuleList(), nn.ModuleDict()
        width = channels
        for i, (op, skips) in enumerate(zip(arch.ops, arch.skips)):
            self.layers.append(macro_op(op, width, width, separable_as_regular=separable_as_regular))
            self.combine.append(nn.Identity() if i == 0 else nn.Sequential(
                nn.ReLU(), nn.Conv2d((len(skips) + 1) * width, width, 1, bias=False), nn.BatchNorm2d(width)))
            if i in pool_layers(arch.num_layers):
                self.reduce[str(i)] = nn.ModuleList(FactorizedReduce(width, 2 * width) for _ in range(i + 2))
                width *= 2
        self.classifier = nn.Linear(width, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, classes)
        h = [self.stem(x)]
        for i, skips in enumerate(self.arch.skips):
            out = self.layers[i](h[i])
            h.append(self.combine[i](torch.cat([h[j] for j in skips] + [out], dim=1)) if i else out)
            if str(i) in self.reduce:
                h = [reduce(hj) for reduce, hj in zip(self.reduce[str(i)], h)]
        return self.classifier(h[-1].mean((2, 3)))


# -- the authors' final micro network ------------------------------------------------------------------------
def micro_reduction_layers(num_layers: int) -> tuple[int, int]:
    """The two reduction cells of the authors' final micro network of ``num_layers + 2`` cells
    (micro_child.py: ``[L // 3, 2 * (L // 3) + 1]``; the same cells as
    :func:`~nas_tutorial.cells.reduction_layers` of ``num_layers + 2`` for 15 and 18)."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be positive, got {num_layers}")
    distance = num_layers // 3
    return distance, 2 * distance + 1


class MicroCell(nn.Module):
    """One cell of the authors' final micro network (micro_child.py, ``_fixed_layer``).

    It differs from the DARTS-style :class:`~nas_tutorial.cells.Cell` in two ways that change the
    parameter count: input 1, once calibrated to ``channels`` (a 1x1 ``ReLUConvBN``, only when its
    width differs), passes through a second 1x1 ``ReLUConvBN`` (the code's ``layer_base``), and each
    input is calibrated only when its width or resolution differs. The cell concatenates every node
    no block reads, a cell input included (reduced by a factorized reduction in a reduction cell).
    Separable convolutions are applied twice (``_fixed_conv``, ``stack_convs=2``), as ``make_op``
    builds them; an identity with stride 2 is a factorized reduction.
    """

    def __init__(self, genotype: Genotype, in_channels_prev_prev: int, in_channels_prev: int, channels: int, *,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        genotype.validate()
        self.reduction = reduction
        if reduction_prev:  # _maybe_calibrate_size: input 0 has twice the resolution
            self.preprocess0 = FactorizedReduce(in_channels_prev_prev, channels)
        elif in_channels_prev_prev != channels:
            self.preprocess0 = ReLUConvBN(in_channels_prev_prev, channels, 1, 1, 0)
        else:
            self.preprocess0 = nn.Identity()
        self.preprocess1 = (ReLUConvBN(in_channels_prev, channels, 1, 1, 0) if in_channels_prev != channels
                            else nn.Identity())
        self.layer_base = ReLUConvBN(channels, channels, 1, 1, 0)
        edges, _ = genotype.cell("reduce" if reduction else "normal")
        self.op_names = tuple(op for op, _ in edges)
        self.sources = tuple(source for _, source in edges)
        self.num_nodes = len(edges) // 2
        self.ops = nn.ModuleList(make_op(op, channels, stride=2 if reduction and source < 2 else 1)
                                 for op, source in edges)
        self.concat = tuple(n for n in range(self.num_nodes + 2) if n not in set(self.sources))
        # _fixed_combine: an unused input of a reduction cell is halved to the blocks' resolution
        self.combine = nn.ModuleDict({str(n): FactorizedReduce(channels, channels)
                                      for n in self.concat if reduction and n < 2})
        self.out_channels = len(self.concat) * channels
        self.drop_path_prob = 0.0

    def forward(self, s0, s1):  # (B, C_pp, H', W'), (B, C_p, H, W) -> (B, len(concat) * C, H / s, W / s)
        states = [self.preprocess0(s0), self.layer_base(self.preprocess1(s1))]  # both (B, C, H, W)
        for j in range(self.num_nodes):
            node = 0
            for position in (2 * j, 2 * j + 1):
                h = self.ops[position](states[self.sources[position]])
                if self.training and self.drop_path_prob > 0 and self.op_names[position] != "skip_connect":
                    h = drop_path(h, self.drop_path_prob)
                node = node + h
            states.append(node)
        outputs = [self.combine[str(n)](states[n]) if str(n) in self.combine else states[n] for n in self.concat]
        return torch.cat(outputs, dim=1)


class MicroNetwork(nn.Module):
    """The authors' final micro network for 32x32 images (micro_child.py with a fixed architecture).

    A 3x3 stem to ``3 * channels``; ``num_layers + 2`` :class:`MicroCell` s, the two at
    :func:`micro_reduction_layers` reducing and doubling the width; the auxiliary head on the cell
    after the second reduction (training mode only, as in :class:`~nas_tutorial.cells.NetworkCIFAR`,
    whose head it reuses with a classifier without bias); ReLU, global pooling and a linear layer
    without bias. ``num_layers`` is the code's ``--child_num_layers`` (15 in the released script).
    Count it with :func:`~nas_tutorial.cells.parameter_count` (no auxiliary head), as the code does.
    """

    def __init__(self, genotype: Genotype, channels: int = 36, num_classes: int = 10, num_layers: int = 15, *,
                 auxiliary: bool = True, drop_path_prob: float = 0.0, in_channels: int = 3):
        super().__init__()
        if channels < 2 or channels % 2 or num_classes < 1:
            raise ValueError(f"channels must be even and >= 2 and num_classes positive, got {channels}, "
                             f"{num_classes}")
        self.genotype = genotype
        reductions = micro_reduction_layers(num_layers)
        self.stem = make_stem(in_channels, 3 * channels)
        self.cells = nn.ModuleList()
        prev_prev = prev = 3 * channels
        width, reduction_prev = channels, False
        for i in range(num_layers + 2):
            reduction = i in reductions
            width *= 2 if reduction else 1
            cell = MicroCell(genotype, prev_prev, prev, width, reduction=reduction, reduction_prev=reduction_prev)
            self.cells.append(cell)
            prev_prev, prev, reduction_prev = prev, cell.out_channels, reduction
        self.auxiliary_index = reductions[1] + 1
        self.auxiliary_head = None
        if auxiliary and self.auxiliary_index < len(self.cells):
            self.auxiliary_head = AuxiliaryHead(self.cells[self.auxiliary_index].out_channels, num_classes)
            self.auxiliary_head.classifier = nn.Linear(768, num_classes, bias=False)
        self.classifier = nn.Linear(prev, num_classes, bias=False)
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
        logits = self.classifier(torch.relu(s1).mean((2, 3)))  # (B, C_last) -> (B, classes)
        return (logits, aux_logits) if aux_logits is not None else logits


# -- the published parameter counts ---------------------------------------------------------------------------
#: Table 2 of the paper, in millions as printed.
PAPER_PARAMETERS_M = {"micro": 4.6, "macro": 21.3, "macro, more channels": 38.0}


def published_parameter_counts() -> dict[str, int]:
    r"""Parameter counts of the released architectures, built as the authors' code builds them and
    counted as it counts (trainable variables, auxiliary head excluded), against Table 2.

    Micro (paper: 4.6M). The released ``cifar10_micro_final.sh`` (``--child_num_layers=15``,
    ``--child_out_filters=36``) builds 15 + 2 cells: 3,894,372 (3.9M); with the auxiliary head,
    which the code leaves out of its count (``"aux_head" not in var.name``), 4,389,220. The DARTS-style
    :class:`~nas_tutorial.cells.NetworkCIFAR` has 3,729,430 at 15 + 2 cells and 4,394,710 at 18 + 2:
    it lacks the 1x1 ``layer_base`` convolution every cell of the code applies to input 1 after the
    calibration. The paper's 4.6M is reproduced by the code's own network at ``num_layers=18``, six
    normal cells per stage (the NASNet setting, 20 cells as in DARTS): 4,587,372. That the paper used
    18 is our inference from the count; the released script says 15.

    Macro (paper: 21.3M; 38.0M "with more channels", the top layers widened to 512). Not reproduced.
    The released ``general_child.py`` (``_fixed_layer``, ``whole_channels``) builds every operation
    0-3 as a 1x1 convolution and a full k x k convolution (``create_weight([filter_size, filter_size,
    out_filters, out_filters])``: the separable ones too), a 1x1 convolution over the concatenated
    skips, a factorized reduction of every output at layers 7 and 15 while ``out_filters`` doubles
    (96, 192, 384), and a classifier without bias: 42,559,392; with real separable convolutions,
    30,947,424. Neither is 21.3M, and no even width c of the stages (c, 2c, 4c) rounds to it (c = 68:
    21,364,988 plain; c = 80: 21,504,080 separable); with a top width of 512 every such network has at
    least 40.4M, so none gives the 38.0M either. The first upload of the code (commit 026817d, Feb
    2018) built a different fixed network (no stem, a single k x k convolution per layer, a 3x3
    convolution over the concatenated skips, 2x2 max pooling, one width throughout): 14,020,896 at
    96 channels, and no even width rounds to 21.3M (118: 21,179,938; 120: 21,903,720). The arc in the
    paper's Figure 7 may also differ from the released 24-layer one; we cannot tell.
    """
    return {
        "micro, released script (15 + 2 cells)": parameter_count(MicroNetwork(ENAS_MICRO, 36, 10, 15)),
        "micro, 18 + 2 cells": parameter_count(MicroNetwork(ENAS_MICRO, 36, 10, 18)),
        "macro, released code": parameter_count(MacroNetwork(ENAS_MACRO, 96, separable_as_regular=True)),
        "macro, separable convolutions": parameter_count(MacroNetwork(ENAS_MACRO, 96)),
    }


# -- the micro space's shared weights ------------------------------------------------------------------------
class SharedCell(nn.Module):
    r"""One cell of the micro space with every choice's weights: block ``b``'s input slot ``s``
    holds, for every node it may read, all the operations (the authors' code also keeps separate
    weights per input node). ``forward(s0, s1, edges)`` runs the sampled cell.

    The output projects the loose ends back to ``channels`` (a 1x1 convolution per node, summed, then
    batch norm), as the authors' search code does, so the next cell's input width does not depend on
    the sample; the final network concatenates them instead (:class:`~nas_tutorial.cells.Cell`). A
    reduction cell has stride 2 on the operations that read its inputs, as in the final network.
    """

    def __init__(self, num_blocks: int, ops: tuple[str, ...], in_channels_prev_prev: int, in_channels_prev: int,
                 channels: int, *, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.num_blocks, self.op_names, self.reduction = num_blocks, tuple(ops), reduction
        self.preprocess0 = (FactorizedReduce(in_channels_prev_prev, channels) if reduction_prev
                            else ReLUConvBN(in_channels_prev_prev, channels, 1, 1, 0))
        self.preprocess1 = ReLUConvBN(in_channels_prev, channels, 1, 1, 0)
        # candidates[b][slot][node][k]: block b, input slot 0/1, read node, operation k
        self.candidates = nn.ModuleList(
            nn.ModuleList(
                nn.ModuleList(
                    nn.ModuleList(make_op(op, channels, stride=2 if reduction and node < 2 else 1)
                                  for op in self.op_names)
                    for node in range(b + 2))
                for _slot in range(2))
            for b in range(num_blocks))
        self.project = nn.ModuleList(nn.Conv2d(channels, channels, 1, bias=False) for _ in range(num_blocks))
        self.bn = nn.BatchNorm2d(channels)
        self.out_channels = channels

    def forward(self, s0, s1, edges) -> torch.Tensor:  # (N, C_pp, ., .), (N, C_p, H, W) -> (N, C, H/s, W/s)
        if len(edges) != 2 * self.num_blocks:
            raise ValueError(f"cell has {len(edges) // 2} blocks, the shared cell {self.num_blocks}")
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for b in range(self.num_blocks):
            node = 0
            for slot in range(2):
                op, source = edges[2 * b + slot]
                node = node + self.candidates[b][slot][source][self.op_names.index(op)](states[source])
            states.append(node)
        ends = loose_ends(edges)
        out = sum(self.project[j - 2](torch.relu(states[j])) for j in ends)
        return self.bn(out)


class SharedCellNetwork(nn.Module):
    r"""The micro space's shared weights :math:`w`: a stem and ``layers`` shared cells (reductions at
    1/3 and 2/3 of the depth, as in the final network); ``forward(x, genotype)`` runs a child.

    The authors' search uses 20 channels, 6 normal cells and 2 reductions (8 cells), 5 blocks.
    """

    def __init__(self, channels: int = 20, num_classes: int = 10, layers: int = 8, *, num_blocks: int = 5,
                 ops: tuple[str, ...] = ENAS_OPS, stem_multiplier: int = 3, in_channels: int = 3):
        super().__init__()
        self.num_blocks, self.ops = num_blocks, tuple(ops)
        stem_channels = stem_multiplier * channels
        self.stem = make_stem(in_channels, stem_channels)
        self.cells = stack_cells(functools.partial(SharedCell, num_blocks, self.ops), channels=channels,
                                 layers=layers, stem_channels=stem_channels)
        self.classifier = nn.Linear(self.cells[-1].out_channels, num_classes)

    def forward(self, x: torch.Tensor, genotype: Genotype) -> torch.Tensor:  # (N, 3, H, W) -> (N, classes)
        if genotype.num_nodes != self.num_blocks:
            raise ValueError(f"genotype has {genotype.num_nodes} blocks per cell, the shared network "
                             f"{self.num_blocks}")
        bad = sorted({op for op, _ in genotype.normal + genotype.reduce} - set(self.ops))
        if bad:
            raise ValueError(f"operations {bad} are not in this space's {list(self.ops)}")
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, genotype.reduce if cell.reduction else genotype.normal)
        return self.classifier(s1.mean((2, 3)))
