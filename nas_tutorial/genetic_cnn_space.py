r"""The Genetic CNN search space (Xie & Yuille, ICCV 2017, arXiv:1703.01513): binary-coded stages.

Read top to bottom like Sec. 3.1 of the paper: the encoding of a network as bits, the decoding
rules, which codes stand for the same network (and how many different networks the space has),
and the network a code stands for. The genetic algorithm that searches this space is
:mod:`nas_tutorial.genetic_cnn`.

| symbol | code | what it is | shape |
| --- | --- | --- | --- |
| :math:`S` | ``len(stage_sizes)`` | number of stages | int (3 on CIFAR-10) |
| :math:`K_s` | ``stage_sizes[s]``, ``num_nodes`` | ordinary nodes of stage ``s`` | int; e.g. ``(3, 4, 5)`` |
| :math:`v_{s,k}` | ``Stage.nodes[str(k)]`` | node ``k`` of stage ``s``: 5x5 conv, BN, ReLU | module |
| :math:`v_{s,0}, v_{s,K_s+1}` | ``input_node``, ``output_node`` | default input / output node (not coded) | module |
| :math:`b_s` | ``genome.stage_bits(s)`` | code of stage ``s`` | :math:`K_s (K_s - 1) / 2` bits |
| :math:`L` | ``code_length(stage_sizes)`` | code length, :math:`\sum_s K_s (K_s - 1) / 2` | int (19) |

"Nodes" always means the nodes of a stage; ``num_nodes`` is one stage's :math:`K_s` and
``stage_sizes`` lists them for every stage.

Bit order inside a stage (the paper's): the first bit codes the edge ``(v_1, v_2)``, the next two
``(v_1, v_3), (v_2, v_3)``, then ``(v_1, v_4), (v_2, v_4), (v_3, v_4)``, ... The text form writes
one group per target node, groups joined by ``-`` and stages by ``|``: ``"1-01|1-01-001"``.

Decoding rules (Sec. 3.1.2): the default input node feeds every ordinary node without a
predecessor; every ordinary node without a successor feeds the default output node; several
parents are summed element-wise; an isolated node (no coded edge at all) is dropped; a stage whose
bits are all zero keeps one convolution only (its default input node), not two.

The classifier head is global average pooling, dropout and one linear layer (a small, fixed
choice; the paper uses fully connected layers).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .drawing import INPUT_COLOR, OUTPUT_COLOR, Graph, combine, stage_graph

# -- Sec. 3.1.1: encoding ----------------------------------------------------------------------------


def stage_code_length(num_nodes: int) -> int:
    r"""Bits of a stage with ``K`` nodes: one per pair, :math:`K (K - 1) / 2`."""
    return num_nodes * (num_nodes - 1) // 2


def code_length(stage_sizes: Sequence[int]) -> int:
    r"""Bits of a whole network: :math:`L = \sum_s K_s (K_s - 1) / 2` (19 for ``(3, 4, 5)``)."""
    return sum(stage_code_length(k) for k in stage_sizes)


def search_space_size(stage_sizes: Sequence[int]) -> int:
    r"""Number of codes, :math:`2^L` (524,288 for the paper's CIFAR-10 setting ``(3, 4, 5)``)."""
    return 2 ** code_length(stage_sizes)


def bit_index(i: int, j: int) -> int:
    r"""Position of the edge ``(v_i, v_j)``, ``1 <= i < j``, inside its stage's code.

    Target ``j`` owns the group of ``j - 1`` bits that starts after the groups of ``2 .. j - 1``:
    :math:`\mathrm{index}(i, j) = (j - 1)(j - 2) / 2 + (i - 1)`.
    """
    if not 1 <= i < j:
        raise ValueError(f"an edge (v_i, v_j) needs 1 <= i < j, got ({i}, {j})")
    return (j - 1) * (j - 2) // 2 + (i - 1)


def check_stage_sizes(stage_sizes) -> tuple[int, ...]:
    """``stage_sizes`` as a tuple of ints ``K_s >= 2``; else a ``ValueError`` naming the bad stage."""
    if isinstance(stage_sizes, (str, bytes)) or not hasattr(stage_sizes, "__iter__"):
        raise ValueError(f"field 'stage_sizes' must be a sequence of node counts K_s, got {stage_sizes!r}")
    stage_sizes = tuple(stage_sizes)
    if not stage_sizes:
        raise ValueError("field 'stage_sizes' must list at least one stage")
    for s, k in enumerate(stage_sizes):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            raise ValueError(f"field 'stage_sizes': stage {s + 1} must have an integer K_s >= 2 nodes, got {k!r}")
    return tuple(int(k) for k in stage_sizes)


@dataclass(frozen=True)
class Genome:
    r"""One individual: stage sizes ``stage_sizes`` (``K_s``) and the concatenated binary code ``bits``.

    ``str(genome)`` is the paper-style text (``"1-01|1-01-001"``) and :meth:`parse` reads it back;
    :meth:`to_json` / :meth:`from_json` add the stage sizes explicitly. A code of the wrong length
    or a value other than 0/1 raises ``ValueError`` naming the field and the stage.
    """

    stage_sizes: tuple[int, ...]
    bits: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "stage_sizes", check_stage_sizes(self.stage_sizes))
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
        expected = code_length(self.stage_sizes)
        if len(self.bits) != expected:
            raise ValueError(f"field 'bits' must have sum K_s(K_s-1)/2 = {expected} bits for stage_sizes "
                             f"{self.stage_sizes}, got {len(self.bits)}")
        start = 0
        for s, k in enumerate(self.stage_sizes):
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
        return len(self.stage_sizes)

    def stage_bits(self, s: int) -> tuple[int, ...]:
        """The code ``b_s`` of stage ``s`` (0-based)."""
        start = code_length(self.stage_sizes[:s])
        return self.bits[start:start + stage_code_length(self.stage_sizes[s])]

    @property
    def stages(self) -> tuple[tuple[int, ...], ...]:
        return tuple(self.stage_bits(s) for s in range(self.num_stages))

    # -- text form ---------------------------------------------------------------------------------
    def __str__(self) -> str:
        parts = []
        for k, bits in zip(self.stage_sizes, self.stages, strict=True):
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
        stage_sizes, bits = [], []
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
            stage_sizes.append(len(groups) + 1)
        return cls(tuple(stage_sizes), tuple(bits))

    def to_json(self) -> str:
        return json.dumps({"stage_sizes": list(self.stage_sizes), "code": str(self)})

    @classmethod
    def from_json(cls, text: str) -> "Genome":
        data = json.loads(text)
        genome = cls.parse(data["code"])
        if genome.stage_sizes != tuple(data["stage_sizes"]):
            raise ValueError(f"field 'stage_sizes' {data['stage_sizes']} does not match the code {data['code']!r}")
        return genome

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_stages(cls, stages: Sequence[Sequence[int]]) -> "Genome":
        """Join per-stage codes; each stage's size is read from its length."""
        stage_sizes = []
        for s, bits in enumerate(stages):
            k = _num_nodes_from_length(len(bits))
            if k is None:
                raise ValueError(f"stage {s + 1}: {len(bits)} bits is not K(K-1)/2 for any K >= 2")
            stage_sizes.append(k)
        return cls(tuple(stage_sizes), tuple(b for bits in stages for b in bits))


def _num_nodes_from_length(length: int) -> int | None:
    k = (1 + math.isqrt(1 + 8 * length)) // 2
    return k if k >= 2 and stage_code_length(k) == length else None


# -- Sec. 3.1.2: decoding, and encoding back --------------------------------------------------------


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
    return tuple(decode_stage(k, genome.stage_bits(s)) for s, k in enumerate(genome.stage_sizes))


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


def chain_genome(stage_sizes: Sequence[int]) -> Genome:
    """The plain chain ``v1 -> v2 -> ... -> vK`` in every stage (a VGG-like stack)."""
    return Genome.from_stages([encode_stage(k, [(i, i + 1) for i in range(1, k)]) for k in stage_sizes])


def all_ones_genome(stage_sizes: Sequence[int]) -> Genome:
    """Every bit set: each node reads the sum of all earlier nodes (a DenseNet-like stage, summed)."""
    return Genome(tuple(stage_sizes), (1,) * code_length(stage_sizes))


def network_graph(genome: Genome, name: str = "network") -> Graph:
    """The whole network of a genome: the image, each decoded stage (in a box), 2x2 max pooling after
    each stage, then global average pooling and the linear classifier."""
    stages = [st.graph(f"stage_{s + 1}") for s, st in enumerate(decode(genome))]
    g = combine(name, stages)
    g.nodes.insert(0, ("image", "image", INPUT_COLOR, ""))
    previous = "image"
    for s, stage in enumerate(stages):
        names = {n for n, *_ in stage.nodes}
        g.edges.append((previous, f"{stage.name}_in", "", "#808080"))
        pool = f"pool_{s + 1}"
        g.nodes.append((pool, "max pool 2x2", "#ffffff", ""))
        g.edges.append((f"{stage.name}_{'out' if 'out' in names else 'in'}", pool, "", "#808080"))
        previous = pool
    g.nodes.append(("head", "global average pool, linear", OUTPUT_COLOR, ""))
    g.edges.append((previous, "head", "", "#808080"))
    return g


def stage_drawing(num_nodes: int, bits: Sequence[int], name: str = "stage") -> Graph:
    """Widget callback: the bits of one stage -> its drawing (what the toggle-button widget shows)."""
    return decode_stage(num_nodes, [int(b) for b in bits]).graph(name)


# -- same network, different codes ------------------------------------------------------------------
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


def count_distinct_networks(stage_sizes: Sequence[int]) -> int:
    """Distinct networks of the whole space: stages are independent, so the per-stage counts multiply."""
    return math.prod(count_distinct_stages(k) for k in stage_sizes)


# -- the network a genome stands for ----------------------------------------------------------------


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
