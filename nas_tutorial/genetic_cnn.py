r"""Genetic CNN (Xie & Yuille, ICCV 2017, arXiv:1703.01513): binary-coded stages searched by a genetic algorithm.

Read top to bottom like the paper: encoding (Sec. 3.1), decoding with the paper's rules, the
network a code stands for, the fitness (train from scratch, score on held-out data), the genetic
operations (Sec. 3.2: selection, crossover, mutation), and the search loop with checkpoints.

Notation (the paper's symbols, as used in this module)

==========================  ====================================  ===============================
symbol                      name                                  shape / type
==========================  ====================================  ===============================
``S``                       number of stages                      int (3 on CIFAR-10)
``K`` (``K_s``)             ordinary nodes of stage ``s``         tuple of S ints, e.g. (3, 4, 5)
``v_{s,k}``                 node ``k`` of stage ``s``             a 5x5 conv + BN + ReLU
``v_{s,0}``, ``v_{s,K+1}``  default input / output node           5x5 conv + BN + ReLU, not coded
``b_s``                     code of stage ``s``                   ``K_s (K_s - 1) / 2`` bits
``L``                       code length                           ``sum_s K_s (K_s - 1) / 2``
``M_{t,n}``                 individual ``n`` of generation ``t``  :class:`Genome`
``r_{t,n}``                 its fitness (validation accuracy)     float
``N``, ``T``                population size, generations          20, 50 in the paper
``p_C``, ``q_C``            crossover: per pair, per stage        0.2, 0.2 in the paper
``p_M``, ``q_M``            mutation: per individual, per bit     0.8, 0.05 in the paper
==========================  ====================================  ===============================

Bit order inside a stage (the paper's): the first bit codes the edge ``(v_1, v_2)``, the next two
``(v_1, v_3), (v_2, v_3)``, then ``(v_1, v_4), (v_2, v_4), (v_3, v_4)``, ... The text form writes
one group per target node, groups joined by ``-`` and stages by ``|``: ``"1-01|1-01-001"``.

Decoding rules (Sec. 3.1.2): the default input node feeds every ordinary node without a
predecessor; every ordinary node without a successor feeds the default output node; several
parents are summed element-wise; an isolated node (no coded edge at all) is dropped; a stage whose
bits are all zero keeps one convolution only (its default input node), not two.

Where this differs from the seed text (``seed_notes.md``) and from the paper, on purpose:

- Fitness is the accuracy on a held-out *validation* split of the training images (as in the
  paper); the seed text says "test set", which would leak the test set into the search.
- The paper's crossover swaps whole stages; the seed text's example swaps a random interval of
  bits (which can cut a stage in two). Both are here: ``GAConfig(crossover="stage")`` (default)
  and ``GAConfig.seed_text()`` (interval crossover, p=0.4, mutation 0.8/0.05 on every individual,
  roulette on the raw fitness).
- The paper trains every occurrence of a code again and averages the accuracies; by default an
  already evaluated network is looked up instead (``GAConfig(reevaluate=True)`` restores the paper).
- The classifier head is global average pooling + dropout + one linear layer (a small, fixed
  choice; the paper uses fully connected layers), and training is short (a tutorial budget).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import time
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .drawing import Graph, stage_graph
from .evaluators import EvalResult, Evaluator, InProcessEvaluator

# ==================================================================================================
# 1. Encoding (Sec. 3.1.1)
# ==================================================================================================


def stage_code_length(num_nodes: int) -> int:
    r"""Bits of a stage with ``K`` nodes: one per pair, :math:`K (K - 1) / 2`."""
    return num_nodes * (num_nodes - 1) // 2


def code_length(nodes: Sequence[int]) -> int:
    r"""Bits of a whole network: :math:`L = \sum_s K_s (K_s - 1) / 2` (19 for ``(3, 4, 5)``)."""
    return sum(stage_code_length(k) for k in nodes)


def search_space_size(nodes: Sequence[int]) -> int:
    r"""Number of codes, :math:`2^L` (524,288 for the paper's CIFAR-10 setting ``(3, 4, 5)``)."""
    return 2 ** code_length(nodes)


def bit_index(i: int, j: int) -> int:
    r"""Position of the edge ``(v_i, v_j)``, ``1 <= i < j``, inside its stage's code.

    Target ``j`` owns the group of ``j - 1`` bits that starts after the groups of ``2 .. j - 1``:
    :math:`\mathrm{index}(i, j) = (j - 1)(j - 2) / 2 + (i - 1)`.
    """
    if not 1 <= i < j:
        raise ValueError(f"an edge (v_i, v_j) needs 1 <= i < j, got ({i}, {j})")
    return (j - 1) * (j - 2) // 2 + (i - 1)


def _check_nodes(nodes) -> tuple[int, ...]:
    if isinstance(nodes, (str, bytes)) or not hasattr(nodes, "__iter__"):
        raise ValueError(f"field 'nodes' must be a sequence of stage sizes K_s, got {nodes!r}")
    nodes = tuple(nodes)
    if not nodes:
        raise ValueError("field 'nodes' must list at least one stage")
    for s, k in enumerate(nodes):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            raise ValueError(f"field 'nodes': stage {s + 1} must have an integer K_s >= 2 nodes, got {k!r}")
    return tuple(int(k) for k in nodes)


@dataclass(frozen=True)
class Genome:
    r"""One individual: stage sizes ``nodes`` (``K_s``) and the concatenated binary code ``bits``.

    ``str(genome)`` is the paper-style text (``"1-01|1-01-001"``) and :meth:`parse` reads it back;
    :meth:`to_json` / :meth:`from_json` add the stage sizes explicitly. A code of the wrong length
    or a value other than 0/1 raises ``ValueError`` naming the field and the stage.
    """

    nodes: tuple[int, ...]
    bits: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "nodes", _check_nodes(self.nodes))
        bits = self.bits
        if isinstance(bits, str):
            bits = tuple(bits)
        if not hasattr(bits, "__iter__"):
            raise ValueError(f"field 'bits' must be a sequence of 0/1 values, got {bits!r}")
        object.__setattr__(self, "bits", tuple(bits))
        self.validate()
        object.__setattr__(self, "bits", tuple(int(b) for b in self.bits))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field; return ``None`` if all is well."""
        expected = code_length(self.nodes)
        if len(self.bits) != expected:
            raise ValueError(f"field 'bits' must have sum K_s(K_s-1)/2 = {expected} bits for nodes {self.nodes}, "
                             f"got {len(self.bits)}")
        start = 0
        for s, k in enumerate(self.nodes):
            for pos in range(start, start + stage_code_length(k)):
                b = self.bits[pos]
                ok = b in ("0", "1") if isinstance(b, str) else (
                    isinstance(b, (bool, np.bool_, int, np.integer)) and int(b) in (0, 1))
                if not ok:
                    raise ValueError(f"field 'bits': stage {s + 1}, bit {pos - start + 1} must be 0 or 1, got {b!r}")
            start += stage_code_length(k)

    # -- views -------------------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.nodes)

    def stage_bits(self, s: int) -> tuple[int, ...]:
        """The code ``b_s`` of stage ``s`` (0-based)."""
        start = code_length(self.nodes[:s])
        return self.bits[start:start + stage_code_length(self.nodes[s])]

    @property
    def stages(self) -> tuple[tuple[int, ...], ...]:
        return tuple(self.stage_bits(s) for s in range(self.num_stages))

    # -- text form ---------------------------------------------------------------------------------
    def __str__(self) -> str:
        parts = []
        for k, bits in zip(self.nodes, self.stages, strict=True):
            # group j - 1 holds the inputs of node v_j: bits (v_1, v_j) ... (v_{j-1}, v_j)
            groups = ["".join(str(b) for b in bits[bit_index(1, j):bit_index(1, j) + j - 1])
                      for j in range(2, k + 1)]
            parts.append("-".join(groups))
        return "|".join(parts)

    @classmethod
    def parse(cls, text: str) -> "Genome":
        """Read the text form ``"1-01|1-01-001"`` (stage sizes follow from the group count)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"a genome text must be a non-empty string like '1-01|1-01-001', got {text!r}")
        nodes, bits = [], []
        for s, stage in enumerate(text.strip().split("|")):
            groups = stage.strip().split("-")
            for g, group in enumerate(groups):
                if len(group) != g + 1:
                    raise ValueError(f"stage {s + 1}: group {g + 1} (the inputs of node v{g + 2}) must have "
                                     f"{g + 1} bits, got {group!r} in {stage!r}")
                bad = [ch for ch in group if ch not in "01"]
                if bad:
                    raise ValueError(f"stage {s + 1}: bits must be 0 or 1, got {bad[0]!r} in {stage!r}")
                bits += [int(ch) for ch in group]
            nodes.append(len(groups) + 1)
        return cls(tuple(nodes), tuple(bits))

    def to_json(self) -> str:
        return json.dumps({"nodes": list(self.nodes), "code": str(self)})

    @classmethod
    def from_json(cls, text: str) -> "Genome":
        data = json.loads(text)
        genome = cls.parse(data["code"])
        if genome.nodes != tuple(data["nodes"]):
            raise ValueError(f"field 'nodes' {data['nodes']} does not match the code {data['code']!r}")
        return genome

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_stages(cls, stages: Sequence[Sequence[int]]) -> "Genome":
        """Join per-stage codes; each stage's size is read from its length."""
        nodes = []
        for s, bits in enumerate(stages):
            k = _nodes_from_length(len(bits))
            if k is None:
                raise ValueError(f"stage {s + 1}: {len(bits)} bits is not K(K-1)/2 for any K >= 2")
            nodes.append(k)
        return cls(tuple(nodes), tuple(b for bits in stages for b in bits))


def _nodes_from_length(length: int) -> int | None:
    k = (1 + math.isqrt(1 + 8 * length)) // 2
    return k if k >= 2 and stage_code_length(k) == length else None


# ==================================================================================================
# 2. Decoding (Sec. 3.1.2) and encoding back
# ==================================================================================================


@dataclass(frozen=True)
class StageGraph:
    """A decoded stage: plain data. Nodes are ``1..num_nodes``; ``0`` and ``num_nodes + 1`` stand
    for the default input / output nodes and never appear in ``edges``.

    Attributes:
        num_nodes: ``K_s``.
        edges: coded edges ``(i, j)``, ``i < j``, sorted.
        sources: kept nodes fed by the default input node (no predecessor).
        sinks: kept nodes feeding the default output node (no successor).
        dropped: isolated nodes, removed from the network.
    """

    num_nodes: int
    edges: tuple[tuple[int, int], ...]
    sources: tuple[int, ...]
    sinks: tuple[int, ...]
    dropped: tuple[int, ...]

    @property
    def kept(self) -> tuple[int, ...]:
        return tuple(k for k in range(1, self.num_nodes + 1) if k not in self.dropped)

    @property
    def empty(self) -> bool:
        """All bits zero: the stage is one convolution (the default input node) only."""
        return not self.edges

    def parents(self, k: int) -> tuple[int, ...]:
        return tuple(i for i, j in self.edges if j == k)

    def num_convolutions(self) -> int:
        """Convolutions in this stage: kept nodes plus the two default nodes, or 1 if empty."""
        return 1 if self.empty else len(self.kept) + 2

    def graph(self, name: str = "stage") -> Graph:
        """The drawing (input red, output green, dropped nodes dashed), via ``drawing.stage_graph``."""
        return stage_graph(self.num_nodes, list(self.edges), sources=list(self.sources), sinks=list(self.sinks),
                           dropped=list(self.dropped), name=name)


def decode_stage(num_nodes: int, bits: Sequence[int]) -> StageGraph:
    """Decode one stage's code with the paper's rules (see the module docstring)."""
    if len(bits) != stage_code_length(num_nodes):
        raise ValueError(f"a stage with K={num_nodes} nodes needs {stage_code_length(num_nodes)} bits, got {len(bits)}")
    # bit (v_i, v_j) is at (j-1)(j-2)/2 + (i-1): the paper's order (v1,v2), (v1,v3), (v2,v3), ...
    edges = tuple((i, j) for j in range(2, num_nodes + 1) for i in range(1, j) if bits[bit_index(i, j)])
    touched = {k for e in edges for k in e}
    # an isolated node (no coded edge at all) is dropped, not wired to the default nodes
    dropped = tuple(k for k in range(1, num_nodes + 1) if k not in touched)
    # the default input node feeds every kept node without a predecessor ...
    sources = tuple(sorted(k for k in touched if not any(j == k for _, j in edges)))
    # ... and every kept node without a successor feeds the default output node
    sinks = tuple(sorted(k for k in touched if not any(i == k for i, _ in edges)))
    return StageGraph(num_nodes, edges, sources, sinks, dropped)


def decode(genome: Genome) -> tuple[StageGraph, ...]:
    """Decode every stage of ``genome``."""
    return tuple(decode_stage(k, genome.stage_bits(s)) for s, k in enumerate(genome.nodes))


def encode_stage(num_nodes: int, edges: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """The stage code whose ``1`` bits are exactly ``edges`` (pairs ``(i, j)``, ``1 <= i < j <= K``)."""
    bits = [0] * stage_code_length(num_nodes)
    for i, j in edges:
        if not 1 <= i < j <= num_nodes:
            raise ValueError(f"edge ({i}, {j}) is not a pair 1 <= i < j <= {num_nodes}")
        bits[bit_index(i, j)] = 1
    return tuple(bits)


def encode(stages: Sequence[StageGraph]) -> Genome:
    """Inverse of :func:`decode`: ``encode(decode(g)) == g`` for every genome ``g``."""
    return Genome.from_stages([encode_stage(st.num_nodes, st.edges) for st in stages])


def chain_genome(nodes: Sequence[int]) -> Genome:
    """The plain chain ``v1 -> v2 -> ... -> vK`` in every stage (a VGG-like stack)."""
    return Genome.from_stages([encode_stage(k, [(i, i + 1) for i in range(1, k)]) for k in nodes])


def all_ones_genome(nodes: Sequence[int]) -> Genome:
    """Every bit set: each node reads the sum of all earlier nodes (a DenseNet-like stage, summed)."""
    return Genome(tuple(nodes), (1,) * code_length(nodes))


def stage_drawing(num_nodes: int, bits: Sequence[int], name: str = "stage") -> Graph:
    """Widget callback: the bits of one stage -> its drawing (what the toggle-button widget shows)."""
    return decode_stage(num_nodes, [int(b) for b in bits]).graph(name)


# -- same network, different codes -----------------------------------------------------------------
def _stage_key(stage: StageGraph) -> str:
    """Canonical form of a stage up to renumbering of its kept nodes (all nodes are the same op).

    Nodes are first ordered by invariants (longest path from the input, to the output, in- and
    out-degree); the smallest relabelled edge list over the orders that keep those classes is the key.
    """
    kept = stage.kept
    if not kept:
        return "0:"
    depth = {k: 0 for k in kept}
    for j in kept:  # kept is in topological order because every edge goes from lower to higher index
        for i in stage.parents(j):
            depth[j] = max(depth[j], depth[i] + 1)
    height = {k: 0 for k in kept}
    for i in reversed(kept):
        for a, b in stage.edges:
            if a == i:
                height[i] = max(height[i], height[b] + 1)
    invariant = {k: (depth[k], height[k], len(stage.parents(k)), sum(a == k for a, _ in stage.edges)) for k in kept}
    classes = [sorted(k for k in kept if invariant[k] == inv) for inv in sorted(set(invariant.values()))]
    best = None
    for orders in itertools.product(*(itertools.permutations(c) for c in classes)):
        label = {k: n for n, k in enumerate(k for order in orders for k in order)}
        edges = tuple(sorted((label[i], label[j]) for i, j in stage.edges))
        if best is None or edges < best:
            best = edges
    return f"{len(kept)}:" + ",".join(f"{i}>{j}" for i, j in best)


def network_key(genome: Genome) -> str:
    """A key equal for two genomes exactly when they decode to the same network (up to node names).

    Codes collide because isolated nodes are dropped: e.g. ``1-00``, ``0-10`` and ``0-01`` are all
    a chain of two convolutions. The stage sizes ``K_s`` do not enter the key (a bigger stage can
    express every smaller one, which is why the paper drops isolated nodes).
    """
    return "|".join(_stage_key(st) for st in decode(genome))


def all_stage_codes(num_nodes: int):
    """Every code of a stage with ``num_nodes`` nodes, in binary counting order."""
    return itertools.product((0, 1), repeat=stage_code_length(num_nodes))


def count_distinct_stages(num_nodes: int) -> int:
    """By enumeration: how many different networks the ``2^{K(K-1)/2}`` codes of one stage decode to."""
    return len({_stage_key(decode_stage(num_nodes, bits)) for bits in all_stage_codes(num_nodes)})


def count_distinct_networks(nodes: Sequence[int]) -> int:
    """Distinct networks of the whole space: stages are independent, so the per-stage counts multiply."""
    return math.prod(count_distinct_stages(k) for k in nodes)


# ==================================================================================================
# 3. The network a genome stands for
# ==================================================================================================


class ConvNode(nn.Sequential):
    """One node: 5x5 convolution, batch normalisation, ReLU (resolution kept)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5):
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=False))


class Stage(nn.Module):
    """A decoded stage as a module: default input node, the kept nodes, default output node."""

    def __init__(self, graph: StageGraph, in_channels: int, channels: int, kernel_size: int = 5):
        super().__init__()
        self.graph = graph
        self.input_node = ConvNode(in_channels, channels, kernel_size)  # v_{s,0}
        self.nodes = nn.ModuleDict({str(k): ConvNode(channels, channels, kernel_size) for k in graph.kept})
        # all-zero code: the default input node is the whole stage (one convolution, not two)
        self.output_node = None if graph.empty else ConvNode(channels, channels, kernel_size)  # v_{s,K+1}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_node(x)  # (B, C_s, H, W)
        if self.output_node is None:
            return x
        out: dict[int, torch.Tensor] = {}
        for k in self.graph.kept:  # ascending = topological (edges go from lower to higher index)
            parents = self.graph.parents(k)
            # several parents are summed element-wise; a node without parents reads the input node
            h = sum(out[i] for i in parents) if parents else x
            out[k] = self.nodes[str(k)](h)
        return self.output_node(sum(out[k] for k in self.graph.sinks))


class GeneticCNN(nn.Module):
    """The network of a genome: stages separated by 2x2 max pooling, then a small classifier.

    Args:
        genome: the code.
        channels: channels per stage (e.g. ``(8, 16, 32)`` on CIFAR-10; ``len(channels) == S``).
        num_classes: outputs.
        in_channels: image channels.
        kernel_size: node convolution size (5 in the paper).
        dropout: dropout before the linear classifier.
    """

    def __init__(self, genome: Genome, channels: Sequence[int], *, num_classes: int = 10, in_channels: int = 3,
                 kernel_size: int = 5, dropout: float = 0.0):
        super().__init__()
        if len(channels) != genome.num_stages:
            raise ValueError(f"channels must give one width per stage ({genome.num_stages}), got {tuple(channels)}")
        self.genome = genome
        stages, c_in = [], in_channels
        for graph, c in zip(decode(genome), channels, strict=True):
            stages += [Stage(graph, c_in, c, kernel_size), nn.MaxPool2d(2)]  # pooling between stages
            c_in = c
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                        nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.stages(x))  # (B, num_classes)


# ==================================================================================================
# 4. Fitness: validation accuracy after training from scratch
# ==================================================================================================


@functools.lru_cache(maxsize=4)
def _cached_subsets(data_root: str, train_size: int, image_size: int, data_seed: int):
    # One read per process (workers call this too): CPU tensors, moved to the device per evaluation.
    from .data import load_cifar10, make_subsets

    data = load_cifar10(data_root, download=False)
    s = make_subsets(data, train_size=train_size, test_size=10, image_size=image_size, seed=data_seed)
    return s.train_x, s.train_y, s.valid_x, s.valid_y


def training_seed(seed: int, code: str, repeat: int = 0) -> int:
    """The seed an individual is trained with: fixed by the run seed and the code (not by worker or order)."""
    return zlib.crc32(f"{seed}:{code}:{repeat}".encode())


@dataclass(frozen=True)
class Trial:
    """What the search sends to an evaluator: the genome and which repeat of it this is."""

    genome: Genome
    repeat: int = 0

    def __str__(self) -> str:
        return str(self.genome)


@dataclass(frozen=True)
class TrainingFitness:
    r"""Fitness of a genome (Sec. 3.2, evaluation): accuracy on a held-out validation split after
    training the network from scratch for ``epochs`` epochs on ``train_size / 2`` CIFAR-10 images.

    A picklable value: workers receive it and read the data themselves from ``data_root`` (once per
    process). Called with a :class:`Genome` or a :class:`Trial`; returns a dict with ``"fitness"``.
    ``torch_threads`` (if set) limits torch's CPU threads during the call: on a small, busy CPU one
    thread per evaluation is steadier than several fighting for the cores.
    """

    data_root: str
    train_size: int = 400
    image_size: int = 16
    channels: tuple[int, ...] = (8, 16)
    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.05
    seed: int = 0
    data_seed: int = 0
    device: str = "cpu"
    torch_threads: int | None = None

    def __call__(self, candidate: Genome | Trial) -> dict:
        from .data import DeviceLoader
        from .training import fit
        from .utils import count_parameters

        genome = candidate.genome if isinstance(candidate, Trial) else candidate
        repeat = candidate.repeat if isinstance(candidate, Trial) else 0
        train_x, train_y, valid_x, valid_y = _cached_subsets(str(self.data_root), self.train_size, self.image_size,
                                                             self.data_seed)
        device = torch.device(self.device)
        seed = training_seed(self.seed, str(genome), repeat)
        threads = torch.get_num_threads()
        try:
            if self.torch_threads is not None:
                torch.set_num_threads(self.torch_threads)
            with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
                torch.manual_seed(seed)
                model = GeneticCNN(genome, self.channels).to(device)
                loader = DeviceLoader(train_x.to(device), train_y.to(device), self.batch_size, seed=seed)
                history = fit(model, loader, (valid_x.to(device), valid_y.to(device)), epochs=self.epochs,
                              lr=self.lr, progress=False)
        finally:
            torch.set_num_threads(threads)
        last = history[-1]
        return {"fitness": last["valid_acc"], "valid_loss": last["valid_loss"], "train_acc": last["train_acc"],
                "params": count_parameters(model)}


# ==================================================================================================
# 5. Genetic operations (Sec. 3.2). Pure functions: a numpy Generator in, new genomes out.
# ==================================================================================================


def random_genome(nodes: Sequence[int], rng: np.random.Generator, p: float = 0.5) -> Genome:
    """Initialisation: every bit drawn independently from Bernoulli(``p``) (the paper uses 0.5)."""
    nodes = _check_nodes(nodes)
    return Genome(nodes, tuple(int(b) for b in rng.random(code_length(nodes)) < p))


def initial_population(nodes: Sequence[int], size: int, rng: np.random.Generator) -> list[Genome]:
    """``N`` random individuals ``M_{0,n}``."""
    return [random_genome(nodes, rng) for _ in range(size)]


def selection_probabilities(fitness: Sequence[float], baseline: str = "min") -> np.ndarray:
    r"""Russian-roulette probabilities.

    ``baseline="min"`` (the paper): :math:`P(n) \propto r_n - r_{\min}`, so the best individual is
    the most likely and the worst is always eliminated. ``baseline="zero"`` (the seed text):
    :math:`P(n) \propto r_n`. If all weights are zero (all fitnesses equal) the choice is uniform.
    """
    r = np.asarray(fitness, dtype=float)
    if r.ndim != 1 or len(r) == 0 or not np.all(np.isfinite(r)):
        raise ValueError(f"fitness must be a non-empty list of finite numbers, got {list(fitness)}")
    if baseline == "min":
        # P(M_{t-1,n}) proportional to r_{t-1,n} - r_{t-1,min}
        w = r - r.min()
    elif baseline == "zero":
        if np.any(r < 0):
            raise ValueError("roulette on the raw fitness needs fitness >= 0")
        w = r.copy()
    else:
        raise ValueError(f"baseline must be 'min' (paper) or 'zero' (seed text), got {baseline!r}")
    total = w.sum()
    return np.full(len(r), 1 / len(r)) if total <= 0 else w / total


def roulette_select(fitness: Sequence[float], rng: np.random.Generator, *, size: int | None = None,
                    baseline: str = "min") -> np.ndarray:
    """Indices of the survivors: ``size`` (default N) independent draws with replacement."""
    p = selection_probabilities(fitness, baseline)
    return rng.choice(len(p), size=len(p) if size is None else size, replace=True, p=p)


def stage_crossover(a: Genome, b: Genome, rng: np.random.Generator, q_C: float) -> tuple[Genome, Genome]:
    """The paper's crossover: each pair of corresponding stages is swapped with probability ``q_C``."""
    if a.nodes != b.nodes:
        raise ValueError(f"crossover needs genomes with the same stages, got {a.nodes} and {b.nodes}")
    swap = rng.random(a.num_stages) < q_C
    sa = [b.stage_bits(s) if swap[s] else a.stage_bits(s) for s in range(a.num_stages)]
    sb = [a.stage_bits(s) if swap[s] else b.stage_bits(s) for s in range(a.num_stages)]
    return Genome(a.nodes, sum(sa, ())), Genome(a.nodes, sum(sb, ()))


def interval_crossover(a: Genome, b: Genome, rng: np.random.Generator) -> tuple[Genome, Genome]:
    """The seed text's crossover: swap the bits in a random interval ``[lo, hi]`` (two distinct
    positions, both included). Unlike the paper's, it can cut a stage in two."""
    if a.nodes != b.nodes:
        raise ValueError(f"crossover needs genomes with the same stages, got {a.nodes} and {b.nodes}")
    if len(a.bits) < 2:
        return a, b
    lo, hi = sorted(rng.choice(len(a.bits), size=2, replace=False))
    ba, bb = list(a.bits), list(b.bits)
    ba[lo:hi + 1], bb[lo:hi + 1] = b.bits[lo:hi + 1], a.bits[lo:hi + 1]
    return Genome(a.nodes, tuple(ba)), Genome(a.nodes, tuple(bb))


def mutate(genome: Genome, rng: np.random.Generator, q_M: float) -> Genome:
    """Flip every bit independently with probability ``q_M``."""
    # each bit b_i becomes 1 - b_i with probability q_M, independently
    flip = rng.random(len(genome.bits)) < q_M
    return Genome(genome.nodes, tuple(int(b) ^ int(f) for b, f in zip(genome.bits, flip, strict=True)))


@dataclass(frozen=True)
class GAConfig:
    """Settings of the genetic algorithm (the paper's values by default).

    Attributes:
        population_size: ``N``.
        p_C, q_C: crossover probability per pair, and per stage (stage crossover only).
        p_M, q_M: mutation probability per individual, and per bit.
        crossover: ``"stage"`` (paper) or ``"interval"`` (seed text).
        selection: roulette weights ``"min"`` (paper, ``r - r_min``) or ``"zero"`` (seed text, ``r``).
        mutate_crossed: also mutate individuals that just went through crossover (seed text);
            the paper mutates only the non-crossover individuals.
        dedup: train each ``"network"`` once (codes decoding to the same network share a result) or
            each ``"code"`` once.
        reevaluate: train every occurrence again and average its accuracies (the paper's choice).
    """

    population_size: int = 20
    p_C: float = 0.2
    q_C: float = 0.2
    p_M: float = 0.8
    q_M: float = 0.05
    crossover: str = "stage"
    selection: str = "min"
    mutate_crossed: bool = False
    dedup: str = "network"
    reevaluate: bool = False

    def __post_init__(self):
        if self.population_size < 2:
            raise ValueError(f"field 'population_size' must be >= 2, got {self.population_size}")
        for name in ("p_C", "q_C", "p_M", "q_M"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"field {name!r} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.crossover not in ("stage", "interval"):
            raise ValueError(f"field 'crossover' must be 'stage' or 'interval', got {self.crossover!r}")
        if self.selection not in ("min", "zero"):
            raise ValueError(f"field 'selection' must be 'min' or 'zero', got {self.selection!r}")
        if self.dedup not in ("network", "code"):
            raise ValueError(f"field 'dedup' must be 'network' or 'code', got {self.dedup!r}")

    @classmethod
    def paper(cls, **changes) -> "GAConfig":
        """Xie & Yuille's settings: N=20, p_C=q_C=0.2, p_M=0.8, q_M=0.05, stage crossover."""
        return replace(cls(), **changes)

    @classmethod
    def seed_text(cls, **changes) -> "GAConfig":
        """The seed text's example: interval crossover with p=0.4, mutation 0.8 / 0.05 on every
        individual, roulette proportional to the raw fitness."""
        return replace(cls(p_C=0.4, crossover="interval", selection="zero", mutate_crossed=True), **changes)


def next_generation(population: Sequence[Genome], fitness: Sequence[float], rng: np.random.Generator,
                    config: GAConfig) -> tuple[list[Genome], list[dict]]:
    """One round of Algorithm 1: selection, crossover of pairs, mutation.

    Returns the new population and, per individual, its origin: ``{"parent", "crossed", "mutated"}``.
    """
    # selection: N draws with replacement, P(n) from the roulette
    parents = roulette_select(fitness, rng, baseline=config.selection)
    children = [population[i] for i in parents]
    crossed = [False] * len(children)
    # crossover: pairs (M_{t,2n-1}, M_{t,2n}), each with probability p_C
    for n in range(0, len(children) - 1, 2):
        if rng.random() < config.p_C:
            a, b = children[n], children[n + 1]
            if config.crossover == "stage":
                children[n], children[n + 1] = stage_crossover(a, b, rng, config.q_C)
            else:
                children[n], children[n + 1] = interval_crossover(a, b, rng)
            crossed[n] = crossed[n + 1] = True
    # mutation: each (non-crossover, in the paper) individual with probability p_M, bits with q_M
    mutated = [False] * len(children)
    for n in range(len(children)):
        if (config.mutate_crossed or not crossed[n]) and rng.random() < config.p_M:
            children[n] = mutate(children[n], rng, config.q_M)
            mutated[n] = True
    origins = [{"parent": int(p), "crossed": c, "mutated": m}
               for p, c, m in zip(parents, crossed, mutated, strict=True)]
    return children, origins


# -- diversity (the p_M / q_M widget) --------------------------------------------------------------
def population_diversity(population: Sequence[Genome]) -> dict:
    """Distinct codes, distinct networks and mean pairwise Hamming distance (as a fraction of L)."""
    bits = np.array([g.bits for g in population], dtype=np.int8)  # (N, L)
    n, length = bits.shape
    diff = (bits[:, None, :] != bits[None, :, :]).sum(-1)  # (N, N)
    pairs = n * (n - 1) / 2
    return {"unique_codes": len({g.bits for g in population}),
            "unique_networks": len({network_key(g) for g in population}),
            "mean_hamming": float(np.triu(diff, 1).sum() / pairs / length) if pairs else 0.0}


def mutation_diversity(genome: Genome, *, population_size: int, p_M: float, q_M: float, seed: int = 0) -> dict:
    """Widget callback: start from a collapsed generation (``population_size`` copies of ``genome``),
    apply one mutation step (individuals with ``p_M``, bits with ``q_M``) and measure the diversity.

    Also returns ``flipped_fraction`` (observed) and ``expected_flipped`` = ``p_M * q_M``.
    """
    rng = np.random.default_rng(seed)
    population = []
    for _ in range(population_size):
        population.append(mutate(genome, rng, q_M) if rng.random() < p_M else genome)
    flipped = sum(sum(a != b for a, b in zip(g.bits, genome.bits, strict=True)) for g in population)
    stats = population_diversity(population)
    stats.update(flipped_fraction=flipped / (population_size * len(genome.bits)), expected_flipped=p_M * q_M)
    return stats


# ==================================================================================================
# 6. The search: generations of evaluate -> select -> cross -> mutate, with checkpoints
# ==================================================================================================


def _to_json(value):
    # numpy / torch scalars returned by a fitness function's extra info
    return value.item() if hasattr(value, "item") else str(value)


def _atomic_write_json(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(state, f, default=_to_json)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # a crash leaves the old file or the new one, never half of one


class GeneticSearch:
    r"""Genetic CNN search (Algorithm 1) over stages of ``nodes``, reproducible from ``seed``.

    Args:
        nodes: stage sizes ``K_s``.
        evaluator: an :class:`~nas_tutorial.evaluators.Evaluator`, or a fitness callable (then
            evaluated in-process).
        config: operator settings (:class:`GAConfig`, the paper's by default).
        seed: seeds the initial population, the operators and (through :func:`training_seed`, in
            :class:`TrainingFitness`) each individual's training.
        checkpoint: a JSON file written atomically after every finished evaluation and every new
            generation; if it exists, :meth:`run` resumes from it (evaluated individuals are kept).

    :meth:`run` returns one record per generation ``t = 0 .. T``; ``record["individuals"]`` lists
    every individual's ``code``, ``key``, ``fitness``, ``error`` and ``origin``.
    """

    def __init__(self, nodes: Sequence[int], evaluator: Evaluator | Callable[[Any], Any],
                 config: GAConfig | None = None, *, seed: int = 0, checkpoint: str | os.PathLike | None = None):
        self.nodes = _check_nodes(nodes)
        self.evaluator = evaluator if isinstance(evaluator, Evaluator) else InProcessEvaluator(evaluator)
        self.config = config or GAConfig()
        self.seed = seed
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.rng = np.random.default_rng(seed)
        self.generation = -1
        self.population: list[Genome] = []
        self.origins: list[dict] = []
        self.todo: list[list] = []  # [index, key, repeat] still to evaluate in this generation
        self.planned = 0  # trainings planned for this generation (todo at its start)
        self.fitness: dict[str, list[float]] = {}  # key -> accuracies of every training
        self.info: dict[str, dict] = {}
        self.failures: dict[str, str] = {}  # key -> error text
        self.records: list[dict] = []
        self.trainings = 0
        if self.checkpoint is not None and self.checkpoint.exists():
            self._load()

    # -- keys and state --------------------------------------------------------------------------
    def key(self, genome: Genome) -> str:
        """The dedup key: the network (default) or the code."""
        return network_key(genome) if self.config.dedup == "network" else str(genome)

    def _state(self) -> dict:
        return {"version": 1, "nodes": list(self.nodes), "seed": self.seed, "config": asdict(self.config),
                "generation": self.generation, "population": [str(g) for g in self.population],
                "origins": self.origins, "todo": self.todo, "planned": self.planned,
                "rng": self.rng.bit_generator.state,
                "fitness": self.fitness, "info": self.info, "failures": self.failures, "records": self.records,
                "trainings": self.trainings}

    def save(self) -> None:
        if self.checkpoint is not None:
            _atomic_write_json(self.checkpoint, self._state())

    def _load(self) -> None:
        with open(self.checkpoint) as f:
            state = json.load(f)
        theirs = {"nodes": tuple(state["nodes"]), "seed": state["seed"], **state["config"]}
        ours = {"nodes": self.nodes, "seed": self.seed, **asdict(self.config)}
        differ = sorted(k for k in ours if ours[k] != theirs.get(k))
        if differ:
            raise ValueError(f"checkpoint {self.checkpoint} was written by a run with other settings: "
                             + ", ".join(f"{k}={theirs.get(k)!r} (now {ours[k]!r})" for k in differ))
        self.generation = state["generation"]
        self.population = [Genome.parse(c) for c in state["population"]]
        self.origins, self.todo, self.planned = state["origins"], state["todo"], state["planned"]
        self.rng.bit_generator.state = state["rng"]
        self.fitness, self.info, self.failures = state["fitness"], state["info"], state["failures"]
        self.records, self.trainings = state["records"], state["trainings"]

    # -- one generation --------------------------------------------------------------------------
    def _plan(self) -> list[list]:
        """What to train for the current population: new networks only, or every occurrence."""
        todo, planned = [], {}
        for n, genome in enumerate(self.population):
            key = self.key(genome)
            if self.config.reevaluate:
                repeat = len(self.fitness.get(key, [])) + planned.get(key, 0)
                planned[key] = planned.get(key, 0) + 1
                todo.append([n, key, repeat])
            elif key not in self.fitness and key not in self.failures and key not in planned:
                planned[key] = 1
                todo.append([n, key, 0])
        return todo

    def _evaluate_todo(self) -> None:
        todo = list(self.todo)
        trials = [Trial(self.population[n], repeat) for n, _, repeat in todo]

        def store(i: int, result: EvalResult) -> None:
            _, key, _ = todo[i]
            if result.ok:
                self.fitness.setdefault(key, []).append(result.fitness)
                self.info[key] = result.info
            else:
                self.failures[key] = result.error
            self.trainings += 1
            self.todo = [t for t in self.todo if t != todo[i]]
            self.save()  # every finished evaluation is on disk before the next one ends

        self.evaluator.evaluate(trials, on_result=store)

    def _record(self, seconds: float, new: int) -> dict:
        individuals = []
        for genome, origin in zip(self.population, self.origins, strict=True):
            key = self.key(genome)
            values = self.fitness.get(key)
            error = self.failures.get(key) if not values else None
            individuals.append({"code": str(genome), "key": key, "fitness": float(np.mean(values)) if values else None,
                                "error": error.splitlines()[0] if error else None, "origin": origin})
        scores = [ind["fitness"] for ind in individuals if ind["fitness"] is not None]
        if not scores:
            raise RuntimeError(f"generation {self.generation}: every evaluation failed; first error:\n"
                               + next(iter(self.failures.values()), "(none)"))
        best = max(range(len(individuals)), key=lambda n: -1 if individuals[n]["fitness"] is None
                   else individuals[n]["fitness"])
        return {"generation": self.generation, "individuals": individuals, "best_fitness": max(scores),
                "mean_fitness": float(np.mean(scores)), "best_code": individuals[best]["code"],
                "new_evaluations": new, "failed": sum(ind["error"] is not None for ind in individuals),
                "unique_networks": len({ind["key"] for ind in individuals}), "seconds": seconds}

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, generations: int = 50, *, on_generation: Callable[[dict], None] | None = None) -> list[dict]:
        """Run (or resume) until generation ``T = generations``; return the records of ``t = 0..T``."""
        if generations < 0:
            raise ValueError(f"generations must be >= 0, got {generations}")
        if self.generation < 0:  # initialisation: N random individuals M_{0,n}
            self.population = initial_population(self.nodes, self.config.population_size, self.rng)
            self.origins = [{"parent": None, "crossed": False, "mutated": False} for _ in self.population]
            self.generation = 0
            self.todo = self._plan()
            self.planned = len(self.todo)
            self.save()
        while True:
            if len(self.records) <= self.generation:  # evaluation of the current generation
                start = time.perf_counter()
                self._evaluate_todo()
                record = self._record(time.perf_counter() - start, self.planned)
                self.records.append(record)
                self.save()
                if on_generation is not None:
                    on_generation(record)
            if self.generation >= generations:
                break
            # selection, crossover, mutation -> generation t + 1 (failed individuals count as the worst)
            scores = [ind["fitness"] for ind in self.records[-1]["individuals"]]
            worst = min(s for s in scores if s is not None)
            scores = [worst if s is None else s for s in scores]
            self.population, self.origins = next_generation(self.population, scores, self.rng, self.config)
            self.generation += 1
            self.todo = self._plan()
            self.planned = len(self.todo)
            self.save()
        return self.records[:generations + 1]

    def best(self) -> tuple[Genome, float]:
        """The best network seen in any generation and its (mean) fitness."""
        best_code, best_fit = None, -math.inf
        for record in self.records:
            for ind in record["individuals"]:
                if ind["fitness"] is not None and ind["fitness"] > best_fit:
                    best_code, best_fit = ind["code"], ind["fitness"]
        if best_code is None:
            raise RuntimeError("no individual has been evaluated yet")
        return Genome.parse(best_code), best_fit


def run_ga(nodes: Sequence[int], evaluator: Evaluator | Callable[[Any], Any], *, generations: int = 50,
           config: GAConfig | None = None, seed: int = 0, checkpoint: str | os.PathLike | None = None,
           on_generation: Callable[[dict], None] | None = None) -> list[dict]:
    """Function form of :class:`GeneticSearch`: run (or resume) and return the per-generation records."""
    search = GeneticSearch(nodes, evaluator, config, seed=seed, checkpoint=checkpoint)
    return search.run(generations, on_generation=on_generation)

