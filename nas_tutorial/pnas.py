r"""PNAS (Liu et al., "Progressive Neural Architecture Search", ECCV 2018, arXiv:1712.00559).

Read top to bottom like the paper: the cell space (Sec. 3.1) and its size, the progressive
expansion of cells one block at a time (Sec. 3.2), the surrogates that rank the expansions
(Sec. 3.3), the settings, Algorithm 1 as a resumable search, and PNASNet-5, the cell the paper
found, as data.

| symbol | code | what it is | paper |
| --- | --- | --- | --- |
| :math:`B` | ``num_blocks`` | blocks of the final cells; one search step per :math:`b = 1 .. B` | 5 |
| :math:`b` | ``b`` | blocks of the cells of the current step | 1 .. B |
| :math:`\mathcal{I}_b` | nodes ``0 .. b`` | what block :math:`b` reads (below) | :math:`b + 1` inputs |
| :math:`\mathcal{O}` | ``ops`` | the operations | 8, :data:`PNAS_OPS` |
| :math:`\mathcal{B}_b` | :func:`block_choices` | the structures block :math:`b` can have | 256 (136 unique) at b = 1 |
| :math:`\mathcal{S}_b` | ``beam`` | cells of :math:`b` blocks trained at step :math:`b` | K (all of B_1 at b = 1) |
| :math:`\mathcal{S}'_b` | :func:`expand` | children of :math:`\mathcal{S}_{b-1}`, one block more | 40,800 at b = 2 |
| :math:`K` | ``beam_size`` | cells trained per step :math:`b \ge 2` | 256 |
| :math:`N, F` | ``cells_per_stack``, ``channels`` | a candidate: 3N cells, F channels | 2, 24 (final 3, 48) |
| :math:`E` | ``epochs`` (:func:`training_fitness`) | epochs of training per candidate | 20 |
| :math:`\pi` | :class:`Surrogate` | the accuracy predictor, an ensemble of LSTMs (or MLPs) | 5 members |
| :math:`\hat A, A` | ``predicted``, ``accuracy`` | predicted and measured validation accuracy | in [0, 1] |

Block :math:`b` reads node 0 (:math:`H^{c-2}`, the output of the cell before the previous one),
node 1 (:math:`H^{c-1}`, the previous cell's) or nodes ``2 .. b`` (blocks ``1 .. b-1``).

A **cell** here is a tuple of blocks, a **block** a pair of ``(operation, input)`` edges (the
edge form of :class:`~nas_tutorial.genotypes.Genotype`), kept in a canonical order: the two
edges are added, so a block and its mirror image are the same block (Sec. 3.1 removes these
"symmetric" duplicates). :func:`cell_genotype` turns a cell into a ``Genotype`` whose normal and
reduction cells are the same cell, as in PNAS: a reduction cell is the cell with stride 2 on the
edges that read the cell inputs. The network is :class:`~nas_tutorial.cells.NetworkCIFAR`.

Where this module had to choose, or differs from the seed text (the tutorial's notes):

- The seed's surrogate code (from a third-party Keras port) reads :math:`2b` steps, each the
  concatenated embeddings of an input and an operation; the paper's LSTM reads :math:`4b` steps
  (:math:`I_1, I_2, O_1, O_2` of each block), one token each, with one embedding table shared by
  the inputs and one by the operations. We follow the paper.
- What a cell outputs: the authors' released PNASNet-5 (``pnasnet.py`` of tensorflow/models,
  ``used_hiddenstates = [1, 1, 0, 0, 0, 0, 0]``) concatenates **all five blocks**, block 3
  included although block 4 reads it, and never the cell inputs; the first author's PyTorch port
  agrees (``normal_concat = [2, 3, 4, 5, 6]``). ``concat="all"`` (default) does the same for every
  cell; ``concat="loose_ends"`` concatenates only the blocks no block reads (the rule of the
  NASNet paper's text and of :mod:`~nas_tutorial.enas_space`).
- The number of training epochs and the batch size of the surrogate are not given in the paper
  (as far as we could check); ``surrogate_epochs`` and ``surrogate_batch_size`` are our choice.
"""

from __future__ import annotations

import itertools
import math
import os
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .cells import NetworkCIFAR, parameter_count
from .enas_space import loose_ends
from .evaluators import EvalResult, Evaluator, InProcessEvaluator, TrainFromScratch, describe_fitness
from .genotypes import Genotype, count_cells
from .ops import check_op_name
from .search import Config, Search, check

Edge = tuple[str, int]  # (operation, input node)
Block = tuple[Edge, Edge]
Cell = tuple[Block, ...]

# -- Sec. 3.1: the cell space ------------------------------------------------------------------------------
#: The paper's eight operations, as names of :data:`nas_tutorial.ops.OPS`. The match:
#: ``sep_conv_3x3/5x5/7x7`` are two stacked (ReLU, depthwise, pointwise, batch norm) layers, as the
#: authors' ``separable_KxK_2``; ``skip_connect`` is the identity (with stride 2: a factorized
#: reduction, where the authors' code uses a strided 1x1 convolution with the same number of
#: weights); ``avg_pool_3x3`` / ``max_pool_3x3`` exactly; ``conv_7x1_1x7`` (ReLU, 1x7, 7x1, batch
#: norm) is "1x7 followed by 7x1 convolution"; **approximate**: ``dil_conv_3x3`` is a dilated
#: *separable* convolution (DARTS's), where the paper says "3x3 dilated convolution" (PNASNet-5 uses
#: neither of the last two, so the released code does not settle them).
PNAS_OPS = ("sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "dil_conv_3x3", "conv_7x1_1x7", "avg_pool_3x3",
            "max_pool_3x3", "skip_connect")

CONCAT_RULES = ("all", "loose_ends")


def canonical_block(first: Edge, second: Edge) -> Block:
    """The two edges of a block in a fixed order (by input, then operation name): ``a + b == b + a``."""
    return tuple(sorted((tuple(first), tuple(second)), key=lambda e: (e[1], e[0])))


def block_choices(b: int, ops: Sequence[str] = PNAS_OPS) -> list[Block]:
    r"""Every structure of block :math:`b` (1-based), :math:`\mathcal{B}_b` without its symmetric
    duplicates: an unordered pair, repeats allowed, of ``(operation, input)`` with inputs ``0 .. b``.

    :math:`n = |\mathcal{I}_b| |\mathcal{O}| = (b + 1) |\mathcal{O}|` edges give :math:`n (n + 1) / 2` blocks."""
    if not isinstance(b, int) or b < 1:
        raise ValueError(f"block position b must be an integer >= 1, got {b!r}")
    edges = [(op, node) for node in range(b + 1) for op in ops]
    return [canonical_block(edges[i], edges[j]) for i in range(len(edges)) for j in range(i, len(edges))]


def num_block_choices(b: int, num_ops: int = len(PNAS_OPS), *, symmetric: bool = True) -> int:
    r""":math:`|\mathcal{B}_b|`. The paper's count is ``symmetric=False``:
    :math:`|\mathcal{I}_b|^2 |\mathcal{O}|^2 |\mathcal{C}|` with :math:`|\mathcal{I}_b| = b + 1`,
    :math:`|\mathcal{O}| = 8`, :math:`|\mathcal{C}| = 1` (addition only): 256 for :math:`b = 1`.
    ``symmetric=True`` counts a block and its mirror image once, :math:`n (n + 1) / 2` with
    :math:`n = (b + 1) |\mathcal{O}|`: 136 for :math:`b = 1`, the paper's "136 unique cells"."""
    if b < 1 or num_ops < 1:
        raise ValueError(f"b and num_ops must be >= 1, got {b}, {num_ops}")
    n = (b + 1) * num_ops
    return n * (n + 1) // 2 if symmetric else n * n


def num_cells(num_blocks: int, num_ops: int = len(PNAS_OPS), *, symmetric: bool = True) -> int:
    r"""Cells of ``num_blocks`` blocks, :math:`|\mathcal{B}_{1:B}| = \prod_{b=1}^{B} |\mathcal{B}_b|`.

    ``symmetric=False`` is the paper's :math:`5.6 \times 10^{14}` for :math:`B = 5` (the same product as
    :func:`nas_tutorial.genotypes.count_cells` with ``distinct_inputs=False``); ``symmetric=True``
    gives :math:`2.1 \times 10^{13}`. The paper's "~10^12 unique cells" removes more symmetries than it
    says; the within-block ones alone do not reach it."""
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
    if not symmetric:
        return count_cells(num_blocks, num_ops, distinct_inputs=False)
    return math.prod(num_block_choices(b, num_ops) for b in range(1, num_blocks + 1))


def all_cells(num_blocks: int, ops: Sequence[str] = PNAS_OPS) -> list[Cell]:
    """Every cell of ``num_blocks`` blocks, by brute force (small sizes only: checks :func:`num_cells`)."""
    return [tuple(blocks) for blocks in itertools.product(*(block_choices(b, ops)
                                                            for b in range(1, num_blocks + 1)))]


def check_cell(cell: Any, ops: Sequence[str] = PNAS_OPS) -> Cell:
    """``cell`` in canonical form, or a ``ValueError`` naming the bad block and what would be valid."""
    if isinstance(cell, (str, bytes)) or not hasattr(cell, "__iter__"):
        raise ValueError(f"a cell must be a sequence of blocks ((op, input), (op, input)), got {cell!r}")
    blocks = []
    for b, block in enumerate(cell, start=1):
        if isinstance(block, (str, bytes)) or not hasattr(block, "__len__") or len(block) != 2:
            raise ValueError(f"block {b} must be two (operation, input) edges, got {block!r}")
        edges = []
        for edge in block:
            if isinstance(edge, (str, bytes)) or not hasattr(edge, "__len__") or len(edge) != 2:
                raise ValueError(f"block {b}: each edge must be an (operation, input) pair, got {edge!r}")
            op, node = edge
            if op not in ops:
                raise ValueError(f"block {b}: unknown operation {op!r}; choose one of {list(ops)}")
            if isinstance(node, bool) or not isinstance(node, (int, np.integer)) or not 0 <= node <= b:
                raise ValueError(f"block {b}: input {node!r} is out of range; block {b} reads nodes 0..{b} "
                                 f"(0, 1: the cell inputs, 2..{b}: the blocks before it)")
            edges.append((op, int(node)))
        blocks.append(canonical_block(*edges))
    if not blocks:
        raise ValueError("a cell must have at least one block, got none")
    return tuple(blocks)


def cell_genotype(cell: Cell, *, concat: str = "all") -> Genotype:
    """A cell as a :class:`Genotype` whose normal and reduction cells are this cell (as PNAS uses one).

    ``concat="all"`` concatenates every block (the released PNASNet-5), ``"loose_ends"`` only the
    blocks no other block reads."""
    if concat not in CONCAT_RULES:
        raise ValueError(f"concat must be one of {list(CONCAT_RULES)}, got {concat!r}")
    edges = [edge for block in cell for edge in block]
    nodes = list(range(2, 2 + len(cell))) if concat == "all" else list(loose_ends(edges))
    return Genotype(normal=edges, normal_concat=nodes, reduce=edges, reduce_concat=nodes)


def cell_from_genotype(genotype: Genotype, ops: Sequence[str] = PNAS_OPS) -> Cell:
    """The PNAS cell of a genotype whose normal and reduction cells are the same; else a ``ValueError``."""
    if not isinstance(genotype, Genotype):
        raise ValueError(f"expected a Genotype, got {type(genotype).__name__}")
    if genotype.normal != genotype.reduce:
        raise ValueError("a PNAS genotype uses one cell for normal and reduction positions: its 'normal' and "
                         "'reduce' fields must be equal")
    edges = genotype.normal
    return check_cell([edges[i:i + 2] for i in range(0, len(edges), 2)], ops)


def parse_cell(text: str, ops: Sequence[str] = PNAS_OPS) -> Cell:
    """A cell from its text form (``str(cell_genotype(cell))``, e.g. a record's ``arch``)."""
    if not isinstance(text, str):
        raise ValueError(f"cell text must be a string, got {type(text).__name__}")
    return cell_from_genotype(Genotype.parse(text), ops)


def random_cells(num_blocks: int, n: int, ops: Sequence[str] = PNAS_OPS, *, seed: int = 0) -> list[Cell]:
    """``n`` cells drawn uniformly from the cells of ``num_blocks`` blocks (the random-search baseline)."""
    rng = np.random.default_rng(seed)
    choices = [block_choices(b, ops) for b in range(1, num_blocks + 1)]
    return [tuple(c[int(rng.integers(len(c)))] for c in choices) for _ in range(n)]


# -- Sec. 3.2: progressive search, one block at a time -------------------------------------------------------
def expand(cell: Cell, ops: Sequence[str] = PNAS_OPS) -> list[Cell]:
    r"""Every child of ``cell`` with one block more: the parent's ``b`` blocks, then each block of
    :math:`\mathcal{B}_{b+1}` (``expand-cell`` of Algorithm 1)."""
    return [tuple(cell) + (block,) for block in block_choices(len(cell) + 1, ops)]


def build_network(genotype: Genotype, *, cells_per_stack: int = 2, channels: int = 24, num_classes: int = 10,
                  auxiliary: bool = False) -> NetworkCIFAR:
    r"""``cell-to-CNN`` of Algorithm 1: :class:`NetworkCIFAR` of :math:`3N` cells (``cells_per_stack`` =
    :math:`N`), the second and third stacks opened by the cell with stride 2, with :math:`F` =
    ``channels``.

    :math:`3N` cells in all, as the authors' ``pnasnet.py`` counts (``num_cells = 12`` for :math:`N = 4`
    on ImageNet): with it PNASNet-5 at :math:`N = 3, F = 48` has the paper's 3.2M parameters
    (:func:`paper_parameter_count`); NASNet's way, :math:`N` normal cells per stack plus two
    reduction cells (11 here), would give 4.3M."""
    if not isinstance(cells_per_stack, int) or cells_per_stack < 1:
        raise ValueError(f"cells_per_stack (N) must be an integer >= 1, got {cells_per_stack!r}")
    return NetworkCIFAR(genotype, channels, num_classes, 3 * cells_per_stack, auxiliary=auxiliary)


@dataclass(frozen=True)
class CellToCNN:
    """:func:`build_network` with its settings, as a picklable value whose fields a checkpoint can
    compare (a ``functools.partial`` of a function would print a memory address)."""

    cells_per_stack: int = 2
    channels: int = 24
    num_classes: int = 10

    def __call__(self, genotype: Genotype) -> NetworkCIFAR:
        return build_network(genotype, cells_per_stack=self.cells_per_stack, channels=self.channels,
                             num_classes=self.num_classes)


def training_fitness(data_root: str, *, cells_per_stack: int = 2, channels: int = 24, epochs: int = 20,
                     **settings) -> TrainFromScratch:
    r"""The paper's fitness: validation accuracy of :func:`build_network` trained from scratch for
    ``epochs`` (:math:`E`). Defaults: the search's :math:`N = 2, F = 24, E = 20`; the data budget
    (``train_size``, ``image_size``, ...) and the rest go to :class:`~nas_tutorial.evaluators.TrainFromScratch`
    (the paper trains on the CIFAR-10 training set less 5,000 validation images, at 32x32)."""
    build = CellToCNN(cells_per_stack=cells_per_stack, channels=channels)
    return TrainFromScratch(build, str(data_root), epochs=epochs, **settings)


def toy_fitness(candidate: Any) -> float:
    """Toy fitness of a cell, instant and deterministic (tests, demos): a score per operation, a bonus
    for edges that read an earlier block, a penalty for a block whose two edges are equal; averaged
    over the edges and mapped into [0.2, 0.9]. Takes a :class:`Genotype` or anything whose ``str()``
    is one (a :class:`~nas_tutorial.evaluators.Trial`)."""
    genotype = candidate if isinstance(candidate, Genotype) else Genotype.parse(str(candidate))
    edges = genotype.normal
    score = sum(_TOY_OP_SCORE.get(op, 0.0) + (0.3 if node >= 2 else 0.0) for op, node in edges)
    score -= sum(0.4 for i in range(0, len(edges), 2) if edges[i] == edges[i + 1])
    return 0.2 + 0.7 * max(0.0, score / len(edges)) / 1.3


_TOY_OP_SCORE = {"sep_conv_3x3": 0.8, "sep_conv_5x5": 1.0, "sep_conv_7x7": 0.7, "dil_conv_3x3": 0.6,
                 "conv_7x1_1x7": 0.5, "max_pool_3x3": 0.4, "avg_pool_3x3": 0.3, "skip_connect": 0.2}


# -- Sec. 3.3: the surrogates ------------------------------------------------------------------------------------
def encode(cells: Sequence[Cell], ops: Sequence[str] = PNAS_OPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of cells of one length ``b``: inputs ``(n, b, 2)`` (``0 .. b``) and operations
    ``(n, b, 2)`` (indices into ``ops``), block by block (:math:`I_1, I_2` and :math:`O_1, O_2`)."""
    lengths = {len(c) for c in cells}
    if len(lengths) != 1:
        raise ValueError(f"encode takes cells of one length (group them first), got lengths {sorted(lengths)}")
    index = {op: i for i, op in enumerate(ops)}
    try:
        op_ids = [[[index[op] for op, _ in block] for block in cell] for cell in cells]
    except KeyError as err:
        raise ValueError(f"unknown operation {err.args[0]!r}; the surrogate knows {list(ops)}") from None
    inputs = [[[node for _, node in block] for block in cell] for cell in cells]
    return torch.tensor(inputs, dtype=torch.long), torch.tensor(op_ids, dtype=torch.long)


class LSTMPredictor(nn.Module):
    r"""The paper's RNN surrogate: the :math:`4b` tokens of a cell (per block :math:`I_1, I_2, O_1, O_2`),
    each embedded (one table for inputs, one for operations), read by a one-layer LSTM; its final
    hidden state goes through a linear layer and a sigmoid to the predicted accuracy.

    Every cell of a batch has the same length (:class:`Surrogate` groups cells by length), so the
    final hidden state is the one after the cell's last real token, never after padding."""

    def __init__(self, num_inputs: int, num_ops: int, *, embedding_size: int = 100, hidden_size: int = 100):
        super().__init__()
        self.input_embedding = nn.Embedding(num_inputs, embedding_size)
        self.op_embedding = nn.Embedding(num_ops, embedding_size)
        self.lstm = nn.LSTM(embedding_size, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, inputs: torch.Tensor, op_ids: torch.Tensor) -> torch.Tensor:  # (n, b, 2) x2 -> (n,)
        tokens = torch.cat([self.input_embedding(inputs), self.op_embedding(op_ids)], dim=2)  # (n, b, 4, D)
        _, (h, _) = self.lstm(tokens.flatten(1, 2))  # sequence (n, 4b, D); h: (1, n, H)
        return torch.sigmoid(self.head(h[-1])).squeeze(-1)  # (n,)


class MLPPredictor(nn.Module):
    r"""The paper's MLP surrogate: each block's four token embeddings concatenated (:math:`4D`),
    averaged over the blocks (a fixed-length vector for any :math:`b`), then two hidden layers of
    ``hidden_size`` ReLU units, a linear layer and a sigmoid."""

    def __init__(self, num_inputs: int, num_ops: int, *, embedding_size: int = 100, hidden_size: int = 100):
        super().__init__()
        self.input_embedding = nn.Embedding(num_inputs, embedding_size)
        self.op_embedding = nn.Embedding(num_ops, embedding_size)
        self.mlp = nn.Sequential(nn.Linear(4 * embedding_size, hidden_size), nn.ReLU(),
                                 nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 1))

    def forward(self, inputs: torch.Tensor, op_ids: torch.Tensor) -> torch.Tensor:  # (n, b, 2) x2 -> (n,)
        blocks = torch.cat([self.input_embedding(inputs), self.op_embedding(op_ids)], dim=2)  # (n, b, 4, D)
        features = blocks.flatten(2).mean(1)  # (n, 4D): mean over blocks
        return torch.sigmoid(self.mlp(features)).squeeze(-1)  # (n,)


PREDICTORS = {"lstm": LSTMPredictor, "mlp": MLPPredictor}


def _seed(*parts) -> int:
    return zlib.crc32(":".join(map(str, parts)).encode())


class Surrogate(nn.Module):
    r"""The predictor :math:`\pi`: an ensemble of ``ensemble_size`` LSTMs (or MLPs), each trained on
    4/5 of the data (member ``m`` leaves out fold ``m`` of a seeded 5-fold split), with the L1 loss
    and Adam; the prediction is the members' mean.

    Cells are grouped by length and each group runs as its own batch (no padding), so a cell's
    prediction does not depend on the other cells of the call. Seeded: the same ``seed`` builds the
    same members, and :meth:`fit` with the same ``seed`` trains them alike.
    """

    def __init__(self, kind: str = "lstm", *, num_blocks: int = 5, ops: Sequence[str] = PNAS_OPS,
                 ensemble_size: int = 5, embedding_size: int = 100, hidden_size: int = 100, seed: int = 0):
        super().__init__()
        if kind not in PREDICTORS:
            raise ValueError(f"surrogate kind must be one of {sorted(PREDICTORS)}, got {kind!r}")
        if ensemble_size < 1:
            raise ValueError(f"ensemble_size must be >= 1, got {ensemble_size}")
        self.kind, self.num_blocks, self.ops = kind, num_blocks, tuple(ops)
        members = []
        for m in range(ensemble_size):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_seed(seed, "member", m))
                members.append(PREDICTORS[kind](num_blocks + 1, len(self.ops), embedding_size=embedding_size,
                                                hidden_size=hidden_size))
        self.members = nn.ModuleList(members)

    def forward(self, inputs: torch.Tensor, op_ids: torch.Tensor) -> torch.Tensor:  # (n, b, 2) x2 -> (E, n)
        """Every member's prediction for one batch of cells of one length."""
        return torch.stack([member(inputs, op_ids) for member in self.members])

    def _groups(self, cells: Sequence[Cell]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(positions, inputs, op_ids)`` per cell length, on this module's device."""
        device = next(self.parameters()).device
        by_length: dict[int, list[int]] = {}
        for i, cell in enumerate(cells):
            if not 1 <= len(cell) <= self.num_blocks:
                raise ValueError(f"cell {i} has {len(cell)} blocks; this surrogate reads 1..{self.num_blocks}")
            by_length.setdefault(len(cell), []).append(i)
        groups = []
        for length in sorted(by_length):
            positions = by_length[length]
            inputs, op_ids = encode([cells[i] for i in positions], self.ops)
            groups.append((torch.tensor(positions), inputs.to(device), op_ids.to(device)))
        return groups

    @torch.no_grad()
    def predict(self, cells: Sequence[Cell], *, batch_size: int = 4096) -> np.ndarray:
        r""":math:`\hat A`: the ensemble's mean prediction for each cell, ``(len(cells),)`` float64."""
        was_training = self.training
        self.eval()
        out = torch.empty(len(cells), dtype=torch.float64)
        for positions, inputs, op_ids in self._groups(cells):
            for start in range(0, len(positions), batch_size):
                part = slice(start, start + batch_size)
                out[positions[part]] = self(inputs[part], op_ids[part]).mean(0).double().cpu()
        self.train(was_training)
        return out.numpy()

    def fit(self, cells: Sequence[Cell], accuracies: Sequence[float], *, epochs: int = 50, lr: float = 0.01,
            batch_size: int = 32, seed: int = 0) -> float:
        """Train every member (from its current weights: the first fit, or a finetune) on its 4/5 of
        ``(cells, accuracies)`` with the L1 loss and Adam. Returns the ensemble's mean L1 error on all of
        the data afterwards."""
        if len(cells) != len(accuracies) or not len(cells):
            raise ValueError(f"fit needs as many accuracies as cells (at least one), got {len(cells)} cells "
                             f"and {len(accuracies)} accuracies")
        target = torch.tensor([float(a) for a in accuracies], dtype=torch.float32)
        if not torch.isfinite(target).all():
            raise ValueError("accuracies must be finite numbers")
        device = next(self.parameters()).device
        target = target.to(device)
        groups = self._groups(cells)
        group_of = torch.empty(len(cells), dtype=torch.long)
        row_of = torch.empty(len(cells), dtype=torch.long)
        for g, (positions, _, _) in enumerate(groups):
            group_of[positions], row_of[positions] = g, torch.arange(len(positions))
        generator = torch.Generator().manual_seed(_seed(seed, "folds"))
        n, size = len(cells), len(self.members)
        folds = torch.randperm(n, generator=generator).tensor_split(size) if size > 1 and n >= size else None
        self.train()
        for m, member in enumerate(self.members):
            train = torch.arange(n) if folds is None else torch.cat([f for k, f in enumerate(folds) if k != m])
            optimizer = torch.optim.Adam(member.parameters(), lr=lr)
            generator = torch.Generator().manual_seed(_seed(seed, "member", m))
            for _ in range(epochs):
                order = train[torch.randperm(len(train), generator=generator)]
                for batch in order.split(batch_size):
                    loss = 0.0
                    for g in group_of[batch].unique().tolist():  # one forward per length: no padding
                        chosen = batch[group_of[batch] == g]
                        _, inputs, op_ids = groups[g]
                        rows = row_of[chosen].to(device)
                        loss = loss + (member(inputs[rows], op_ids[rows]) - target[chosen.to(device)]).abs().sum()
                    optimizer.zero_grad(set_to_none=True)
                    (loss / len(batch)).backward()  # L1: mean absolute error over the batch
                    optimizer.step()
        predicted = torch.from_numpy(self.predict(cells)).float()
        return float((predicted - target.cpu()).abs().mean())


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    r"""Spearman's rank correlation :math:`\rho`: Pearson's correlation of the ranks (ties get their mean
    rank). ``None`` with fewer than two pairs or when either side is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman needs two 1-d sequences of one length, got shapes {x.shape} and {y.shape}")
    if len(x) < 2:
        return None
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for value in np.unique(x):  # ties: their mean rank
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


# -- the settings ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PNASConfig(Config):
    r"""PNAS settings; the defaults are the paper's search on CIFAR-10.

    The training of each candidate (:math:`N = 2`, :math:`F = 24`, :math:`E = 20` in the paper) is the
    fitness function's business: :func:`training_fitness`.

    Attributes:
        num_blocks: :math:`B`, blocks of the final cells: one search step per ``b = 1 .. B`` (5).
        beam_size: :math:`K`, cells trained at each step ``b >= 2`` (256).
        ops: the operations :math:`\mathcal{O}` (:data:`PNAS_OPS`).
        first_beam: cells of one block trained at ``b = 1``: ``None`` for all of :math:`\mathcal{B}_1`
            (136, the paper), or a seeded random subset of this size (the fast setting).
        concat: what a cell outputs: ``"all"`` blocks (the released PNASNet-5) or ``"loose_ends"``.
        surrogate: ``"lstm"`` (the paper's choice) or ``"mlp"`` (the ensemble it compares).
        ensemble_size: members of the surrogate ensemble, each trained on 4/5 of the data (5).
        embedding_size, hidden_size: token embedding and LSTM (or MLP layer) width (100, 100).
        surrogate_lr: Adam's learning rate (0.01).
        surrogate_epochs: epochs of each fit and finetune (not in the paper: our choice).
        surrogate_batch_size: cells per surrogate step (not in the paper: our choice).
        finetune_data: ``"new"``: finetune on the new beam only (Algorithm 1's update-predictor), or
            ``"all"`` cells trained so far.
        seed: seeds the surrogate, its training and the ``first_beam`` subset.
    """

    num_blocks: int = 5
    beam_size: int = 256
    ops: tuple[str, ...] = PNAS_OPS
    first_beam: int | None = None
    concat: str = "all"
    surrogate: str = "lstm"
    ensemble_size: int = 5
    embedding_size: int = 100
    hidden_size: int = 100
    surrogate_lr: float = 0.01
    surrogate_epochs: int = 50
    surrogate_batch_size: int = 32
    finetune_data: str = "new"
    seed: int = 0

    def validate(self) -> None:
        def positive_int(name):
            value = getattr(self, name)
            check(isinstance(value, int) and not isinstance(value, bool) and value >= 1, name,
                  "must be an integer >= 1", value)

        for name in ("num_blocks", "beam_size", "ensemble_size", "embedding_size", "hidden_size",
                     "surrogate_epochs", "surrogate_batch_size"):
            positive_int(name)
        check(isinstance(self.ops, tuple) and len(self.ops) > 0 and len(set(self.ops)) == len(self.ops), "ops",
              "must be a non-empty tuple of distinct operation names", self.ops)
        for op in self.ops:
            check(op != "none", "ops", "must not contain 'none' (a PNAS block always adds two operations)", op)
            try:
                check_op_name(op)
            except ValueError as err:
                raise ValueError(f"field 'ops': {err}") from None
        first = num_block_choices(1, len(self.ops))
        check(self.first_beam is None or (isinstance(self.first_beam, int) and 1 <= self.first_beam <= first),
              "first_beam", f"must be None (all of B_1) or an integer in 1..{first} (|B_1| for these ops)",
              self.first_beam)
        check(self.concat in CONCAT_RULES, "concat", f"must be one of {list(CONCAT_RULES)}", self.concat)
        check(self.surrogate in PREDICTORS, "surrogate", f"must be one of {sorted(PREDICTORS)}", self.surrogate)
        check(isinstance(self.surrogate_lr, (int, float)) and math.isfinite(self.surrogate_lr)
              and self.surrogate_lr > 0, "surrogate_lr", "must be a positive number", self.surrogate_lr)
        check(self.finetune_data in ("new", "all"), "finetune_data", "must be 'new' or 'all'", self.finetune_data)
        check(isinstance(self.seed, int), "seed", "must be an integer", self.seed)

    @classmethod
    def fast(cls, **changes) -> "PNASConfig":
        """The notebook's CPU setting: ``B = 3``, ``K = 8``, a random 24 of the 136 one-block cells, and
        the paper's ensemble of 5 LSTMs made narrower, 32 units and 32-wide embeddings (the paper: 100):
        on a 2-core CPU it fits and predicts about 2-3 times faster, and on the notebook's small data
        sets it ranked held-out cells as well as the 100-unit one."""
        return cls(**{**dict(num_blocks=3, beam_size=8, first_beam=24, embedding_size=32, hidden_size=32), **changes})

    def models_trained(self) -> int:
        r"""Networks a whole search trains: :math:`|\mathcal{S}_1| + (B - 1) K`; 136 + 4 x 256 = 1160 in the paper."""
        first = num_block_choices(1, len(self.ops)) if self.first_beam is None else self.first_beam
        return first + (self.num_blocks - 1) * self.beam_size


# -- Algorithm 1: the progressive search, resumable ------------------------------------------------------------
class PNASSearch(Search):
    r"""PNAS (Algorithm 1): one :meth:`step` is one ``b = 1 .. B``.

    Step ``b = 1`` trains :math:`\mathcal{S}_1` (all of :math:`\mathcal{B}_1`, or ``first_beam`` of it)
    and fits the surrogate. Step ``b >= 2`` expands every cell of :math:`\mathcal{S}_{b-1}` by one
    block, predicts every child, keeps the ``beam_size`` best predicted (ties: the first in expansion
    order), trains them through the evaluator, and finetunes the surrogate on them.

    ``data`` is an :class:`~nas_tutorial.evaluators.Evaluator` (in-process, process pool, Ray) or a
    fitness callable (then evaluated in-process); candidates are :class:`Genotype` s
    (:func:`cell_genotype`). The checkpoint is written after every finished evaluation, after
    planning a beam and after each surrogate fit, so a resumed run retrains nothing; it records the
    fitness function's settings and refuses a resume with another fitness.

    Records, beside the common keys (``best_arch``/``best_score``: the best measured cell of the
    step's beam): ``b``; ``beam``, one ``{"arch", "accuracy", "predicted", "error"}`` per cell in
    the order of prediction (``predicted`` is ``None`` at ``b = 1``); ``spearman``, the rank
    correlation of predicted and measured accuracy on the new beam, before the surrogate has seen
    it (held out; ``None`` at ``b = 1``); ``num_expansions`` (:math:`|\mathcal{S}'_b|`; at ``b = 1``
    :math:`|\mathcal{B}_1|`); ``expansion_quantiles`` (101 quantiles of the predictions of all
    expansions, ``None`` at ``b = 1``); ``new_evaluations``, ``trained`` (networks trained so far),
    ``failed``, ``mean_accuracy`` and ``surrogate_l1`` (the ensemble's L1 error on the data of its
    last fit).
    """

    method = "pnas"

    def __init__(self, config: PNASConfig, data: Evaluator | Callable[[Any], Any], *,
                 checkpoint: str | os.PathLike | None = None):
        super().__init__(config, data, checkpoint=checkpoint)
        self.evaluator = data if isinstance(data, Evaluator) else InProcessEvaluator(data)
        c = config
        self.surrogate = Surrogate(c.surrogate, num_blocks=c.num_blocks, ops=c.ops, ensemble_size=c.ensemble_size,
                                   embedding_size=c.embedding_size, hidden_size=c.hidden_size, seed=c.seed)
        self.b = 0  # blocks of the planned beam
        self.beam: list[Cell] = []
        self.predicted: list[float] | None = None
        self.num_expansions = 0
        self.quantiles: list[float] | None = None
        self.todo: list[int] = []  # beam positions still to train
        self.planned = 0
        self.accuracy: dict[str, float] = {}  # arch -> measured accuracy
        self.failures: dict[str, str] = {}  # arch -> error text
        self.trainings = 0
        self.fitted = 0  # b of the surrogate's last fit
        self.fit_l1: float | None = None

    def num_steps(self) -> int:
        return self.config.num_blocks

    def context(self) -> dict:
        return {"fitness": describe_fitness(self.evaluator.fitness_fn)}

    def arch(self, cell: Cell) -> str:
        """A cell's text form (its :class:`Genotype`)."""
        return str(cell_genotype(cell, concat=self.config.concat))

    def state_dict(self) -> dict:
        return {"b": self.b, "beam": [self.arch(cell) for cell in self.beam], "predicted": self.predicted,
                "num_expansions": self.num_expansions, "quantiles": self.quantiles, "todo": list(self.todo),
                "planned": self.planned, "accuracy": dict(self.accuracy), "failures": dict(self.failures),
                "trainings": self.trainings, "fitted": self.fitted, "fit_l1": self.fit_l1,
                "surrogate": dict(self.surrogate.state_dict())}

    def load_state_dict(self, state: dict) -> None:
        self.b, self.predicted, self.num_expansions = state["b"], state["predicted"], state["num_expansions"]
        self.beam = [parse_cell(arch, self.config.ops) for arch in state["beam"]]
        self.quantiles, self.todo, self.planned = state["quantiles"], list(state["todo"]), state["planned"]
        self.accuracy, self.failures = dict(state["accuracy"]), dict(state["failures"])
        self.trainings, self.fitted, self.fit_l1 = state["trainings"], state["fitted"], state["fit_l1"]
        self.surrogate.load_state_dict(state["surrogate"])

    # -- one step ------------------------------------------------------------------------------------------------
    def _plan(self, b: int) -> None:
        r""":math:`\mathcal{S}_b`: the first cells (``b = 1``), or the top ``K`` predicted expansions."""
        c = self.config
        if b == 1:
            cells = [(block,) for block in block_choices(1, c.ops)]  # S_1 = B_1
            self.num_expansions = len(cells)
            if c.first_beam is not None and c.first_beam < len(cells):
                keep = np.sort(np.random.default_rng(c.seed).choice(len(cells), size=c.first_beam, replace=False))
                cells = [cells[i] for i in keep]
            self.beam, self.predicted, self.quantiles = cells, None, None
        else:
            children = [child for parent in self.beam for child in expand(parent, c.ops)]  # S'_b
            predicted = self.surrogate.predict(children)  # \hat A'_b
            top = np.argsort(-predicted, kind="stable")[:c.beam_size]  # top-K; ties: expansion order
            self.beam = [children[i] for i in top]
            self.predicted = [float(predicted[i]) for i in top]
            self.num_expansions = len(children)
            self.quantiles = [float(q) for q in np.quantile(predicted, np.linspace(0, 1, 101))]
        self.b = b
        self.todo = list(range(len(self.beam)))
        self.planned = len(self.todo)
        self.save()

    def _evaluate_todo(self) -> None:
        todo = list(self.todo)
        candidates = [cell_genotype(self.beam[i], concat=self.config.concat) for i in todo]

        def store(k: int, result: EvalResult) -> None:
            arch = str(candidates[k])
            if result.ok and math.isfinite(result.fitness):
                self.accuracy[arch] = result.fitness
            else:  # an error, or a fitness of nan or inf: a failed candidate, named
                self.failures[arch] = result.error or f"non-finite fitness {result.fitness} for {result.code}"
            self.trainings += 1
            self.todo.remove(todo[k])
            self.save()  # every finished evaluation is on disk before the next one ends

        self.evaluator.evaluate(candidates, on_result=store)

    def _fit(self, b: int) -> None:
        """``fit`` (b = 1) or ``update-predictor`` (b >= 2) on the measured cells, in a fixed order."""
        c = self.config
        beams = [self.beam] if b == 1 or c.finetune_data == "new" else \
            [[parse_cell(e["arch"], c.ops) for e in r["beam"]] for r in self.records] + [self.beam]
        cells = [cell for beam in beams for cell in beam if self.arch(cell) in self.accuracy]
        if cells:
            self.fit_l1 = self.surrogate.fit(cells, [self.accuracy[self.arch(cell)] for cell in cells],
                                             epochs=c.surrogate_epochs, lr=c.surrogate_lr,
                                             batch_size=c.surrogate_batch_size, seed=_seed(c.seed, "fit", b))
        self.fitted = b
        self.save()

    def step(self, index: int) -> dict:
        b = index + 1
        if self.b < b:
            self._plan(b)
        self._evaluate_todo()
        beam = []
        for i, cell in enumerate(self.beam):
            arch = self.arch(cell)
            accuracy = self.accuracy.get(arch)
            error = self.failures.get(arch) if accuracy is None else None
            beam.append({"arch": arch, "accuracy": accuracy,
                         "predicted": None if self.predicted is None else self.predicted[i],
                         "error": error.splitlines()[0] if error else None})
        scored = [e for e in beam if e["accuracy"] is not None]
        if not scored:
            raise RuntimeError(f"b = {b}: every evaluation failed; first error:\n"
                               + next(iter(self.failures.values()), "(none)"))
        best = max(scored, key=lambda e: e["accuracy"])  # the first of equal ones
        pairs = [(e["predicted"], e["accuracy"]) for e in scored if e["predicted"] is not None]
        rho = spearman(*zip(*pairs)) if len(pairs) >= 2 else None  # held out: before the finetune below
        record = {"b": b, "beam": beam, "spearman": rho, "num_expansions": self.num_expansions,
                  "expansion_quantiles": self.quantiles, "new_evaluations": self.planned,
                  "trained": self.trainings, "failed": len(beam) - len(scored),
                  "mean_accuracy": float(np.mean([e["accuracy"] for e in scored])),
                  "best_arch": best["arch"], "best_score": best["accuracy"]}
        if self.fitted < b:
            self._fit(b)
        record["surrogate_l1"] = self.fit_l1
        return record

    def best(self) -> tuple[Genotype, float]:
        """``top-K(S_B, A_B, 1)``: the best measured cell of the last finished step, and its accuracy."""
        if not self.records:
            raise RuntimeError("no step has finished yet: run() first")
        last = self.records[-1]
        return Genotype.parse(last["best_arch"]), last["best_score"]


def search(config: PNASConfig, data: Evaluator | Callable[[Any], Any], *, checkpoint: str | os.PathLike | None = None,
           progress: bool = False, callback: Callable[[dict], None] | None = None,
           stop_after: int | None = None) -> list[dict]:
    """Run (or resume from ``checkpoint``) a PNAS search; return one record per ``b = 1 .. B``
    (:class:`PNASSearch`)."""
    return PNASSearch(config, data, checkpoint=checkpoint).run(progress=progress, callback=callback,
                                                               stop_after=stop_after)


def beam_points(records: Sequence[dict], b: int) -> dict:
    """Widget callback: the beam of step ``b`` as arrays, ``predicted`` and ``measured`` (failed cells
    left out), their ``archs``, the step's ``spearman`` and the lowest kept prediction (``threshold``)."""
    steps = {r["b"]: r for r in records}
    if b not in steps:
        raise ValueError(f"b must be one of the finished steps {sorted(steps)}, got {b!r}")
    scored = [e for e in steps[b]["beam"] if e["accuracy"] is not None]
    predicted = [e["predicted"] for e in scored]
    has_predictions = all(p is not None for p in predicted)
    return {"predicted": np.array(predicted if has_predictions else [np.nan] * len(scored), dtype=np.float64),
            "measured": np.array([e["accuracy"] for e in scored], dtype=np.float64),
            "archs": [e["arch"] for e in scored], "spearman": steps[b]["spearman"],
            "threshold": min(predicted) if has_predictions and predicted else None}


# -- the published architecture --------------------------------------------------------------------------------
PNASNET5 = Genotype.parse(
    "Genotype(normal=[('sep_conv_5x5', 0), ('max_pool_3x3', 0), ('sep_conv_7x7', 1), ('max_pool_3x3', 1), "
    "('sep_conv_5x5', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 4), ('max_pool_3x3', 1), ('sep_conv_3x3', 0), "
    "('skip_connect', 1)], normal_concat=[2, 3, 4, 5, 6], reduce=[('sep_conv_5x5', 0), ('max_pool_3x3', 0), "
    "('sep_conv_7x7', 1), ('max_pool_3x3', 1), ('sep_conv_5x5', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 4), "
    "('max_pool_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 1)], reduce_concat=[2, 3, 4, 5, 6])")
"""PNASNet-5, the cell PNAS found (drawn in the paper), as released: ``PNasNetNormalCell`` of
tensorflow/models ``research/slim/nets/nasnet/pnasnet.py``, whose ``hiddenstate_indices`` count
0 = previous cell, 1 = the one before; here 0 and 1 are swapped to the DARTS convention (0: the
cell before the previous one), as in the first author's PyTorch port (chenxi116/PNASNet.pytorch).
Its ``'none'`` is the identity. All five blocks are concatenated (``used_hiddenstates`` marks only
the two cell inputs)."""

#: The paper's CIFAR-10 network for PNASNet-5 (its CIFAR-10 results table): N = 3, F = 48; 3.2M parameters.
PNASNET5_CIFAR = {"cells_per_stack": 3, "channels": 48}


def paper_parameter_count(genotype: Genotype = PNASNET5, **setting) -> int:
    """Parameters of ``genotype``'s CIFAR-10 network at the paper's setting (:data:`PNASNET5_CIFAR`,
    ``setting`` overrides), without the auxiliary head (how the papers count): 3,176,602 for PNASNet-5,
    the paper's 3.2M."""
    return parameter_count(build_network(genotype, **{**PNASNET5_CIFAR, **setting}, auxiliary=False))
