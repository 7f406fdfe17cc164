"""Cell genotypes: frozen, printable, parseable, validated; and search-space counts.

A cell has two input nodes (0: output of the cell before the previous one, 1: output of the
previous cell) and ``n`` intermediate nodes numbered ``2 .. n + 1``. Intermediate node ``2 + i``
takes exactly two edges, listed at positions ``2i`` and ``2i + 1`` of ``normal`` / ``reduce`` as
``(operation, input_node)`` pairs with ``input_node < 2 + i``. The cell output concatenates the
nodes listed in ``normal_concat`` / ``reduce_concat``.

The text form is the one printed by the DARTS code base, so published genotypes paste in as is::

    Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], reduce=[...], ...)
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import numbers
from dataclasses import dataclass

from .ops import check_op_name

Edge = tuple[str, int]
_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


@dataclass(frozen=True)
class Genotype:
    """A normal and a reduction cell, each a tuple of ``(operation, input_node)`` edges."""

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self):
        # Accept lists (as in the DARTS text form) but store tuples, so genotypes hash and compare.
        for name in ("normal", "reduce"):
            edges = getattr(self, name)
            if isinstance(edges, (str, bytes)) or not hasattr(edges, "__iter__"):
                raise ValueError(f"field {name!r} must be a list of (operation, input) pairs, got {edges!r}")
            object.__setattr__(self, name, tuple(_as_edge(name, e) for e in edges))
        for name in ("normal_concat", "reduce_concat"):
            nodes = getattr(self, name)
            if isinstance(nodes, (str, bytes)) or not hasattr(nodes, "__iter__"):
                raise ValueError(f"field {name!r} must be a list of node indices, got {nodes!r}")
            object.__setattr__(self, name, tuple(_as_index(n) for n in nodes))
        self.validate()

    # -- validation ------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field; return ``None`` if all is well."""
        for cell in ("normal", "reduce"):
            edges = getattr(self, cell)
            if not edges or len(edges) % 2:
                raise ValueError(
                    f"field {cell!r} must list two edges per intermediate node (an even, non-zero "
                    f"count), got {len(edges)} edges"
                )
            for position, (op, source) in enumerate(edges):
                node = 2 + position // 2
                try:
                    check_op_name(op)
                except ValueError as err:
                    raise ValueError(f"field {cell!r}, edge {position}: {err}") from None
                if not isinstance(source, int) or isinstance(source, bool) or not 0 <= source < node:
                    raise ValueError(
                        f"field {cell!r}, edge {position}: input node {source!r} is out of range; "
                        f"node {node} can only read nodes 0..{node - 1}"
                    )
            concat = getattr(self, f"{cell}_concat")
            last = 1 + len(edges) // 2
            bad = [n for n in concat if not isinstance(n, int) or not 2 <= n <= last]
            if not concat or bad or len(set(concat)) != len(concat):
                raise ValueError(
                    f"field '{cell}_concat' must list distinct intermediate nodes in 2..{last}, "
                    f"got {list(concat)}"
                )

    @property
    def num_nodes(self) -> int:
        """Number of intermediate nodes per cell."""
        return len(self.normal) // 2

    def cell(self, kind: str) -> tuple[tuple[Edge, ...], tuple[int, ...]]:
        """``(edges, concat)`` of the ``"normal"`` or ``"reduce"`` cell."""
        if kind not in ("normal", "reduce"):
            raise ValueError(f"cell kind must be 'normal' or 'reduce', got {kind!r}")
        return getattr(self, kind), getattr(self, f"{kind}_concat")

    # -- text and JSON ----------------------------------------------------------------------
    def __str__(self) -> str:
        def edges(es):
            return "[" + ", ".join(f"({op!r}, {i})" for op, i in es) + "]"

        return (
            f"Genotype(normal={edges(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={edges(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )

    @classmethod
    def parse(cls, text: str) -> Genotype:
        """Parse the text form (``str(genotype)``; also the DARTS code base's ``repr``)."""
        try:
            tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as err:
            raise ValueError(f"genotype text is not valid Python syntax: {err.msg} in {text!r}") from None
        if not (isinstance(tree, ast.Call) and getattr(tree.func, "id", None) == "Genotype"):
            raise ValueError("genotype text must look like Genotype(normal=[...], normal_concat=[...], ...)")
        if tree.args:
            raise ValueError("genotype text must name its fields: Genotype(normal=..., normal_concat=..., ...)")
        fields = {}
        for kw in tree.keywords:
            try:
                fields[kw.arg] = _literal(kw.value)
            except (ValueError, TypeError):
                raise ValueError(f"field {kw.arg!r} must be a literal list, got {ast.unparse(kw.value)}") from None
        return cls.from_dict(fields)

    def to_dict(self) -> dict:
        return {
            "normal": [list(e) for e in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(e) for e in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, fields: dict) -> Genotype:
        missing = [f for f in _FIELDS if f not in fields]
        extra = [f for f in fields if f not in _FIELDS]
        if missing or extra:
            raise ValueError(f"genotype fields missing: {missing}, unexpected: {extra}; expected {list(_FIELDS)}")
        return cls(**{f: fields[f] for f in _FIELDS})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        return cls.from_dict(json.loads(text))


def _as_index(value):
    """A node index as a plain ``int`` (NumPy and torch integers too); anything else unchanged, for validate()."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0 and not value.dtype.is_floating_point:
        return int(value.item())  # a 0-d integer torch tensor
    return value


def _as_edge(field: str, edge) -> Edge:
    if isinstance(edge, (list, tuple)) and len(edge) == 2 and isinstance(edge[0], str):
        return (edge[0], _as_index(edge[1]))
    raise ValueError(f"field {field!r}: each edge must be an (operation, input_node) pair, got {edge!r}")


def _literal(node: ast.expr):
    """A literal, or ``range(a, b)`` as the DARTS code's logs print ``normal_concat``."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "range" and not node.keywords:
        return list(range(*(ast.literal_eval(a) for a in node.args)))
    return ast.literal_eval(node)


# -- Published genotypes (Liu et al., 2019, Table 1; as released with the authors' code) --------
DARTS_V1 = Genotype.parse(
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
)
"""DARTS (first order) cell found on CIFAR-10."""

DARTS_V2 = Genotype.parse(
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
"""DARTS (second order) cell found on CIFAR-10: the one the paper retrains to 2.76% error."""


# -- Counting ---------------------------------------------------------------------------------
def count_cells(num_nodes: int, num_ops: int, *, distinct_inputs: bool = True) -> int:
    r"""Number of discrete cells with two edges per intermediate node.

    ``distinct_inputs=True`` (DARTS, PNAS): node ``i`` (0-based) picks an unordered pair of
    distinct inputs among its ``i + 2`` predecessors and an operation for each,
    :math:`\prod_i \binom{i+2}{2} K^2`.
    ``distinct_inputs=False`` (ENAS, NAO): each of the two inputs is chosen independently, with an
    operation each, :math:`\prod_i ((i+2) K)^2`.
    """
    if num_nodes < 1 or num_ops < 1:
        raise ValueError("num_nodes and num_ops must be positive")
    total = 1
    for i in range(num_nodes):
        if distinct_inputs:
            total *= math.comb(i + 2, 2) * num_ops**2
        else:
            total *= ((i + 2) * num_ops) ** 2
    return total


def enumerate_cells(num_nodes: int, ops: tuple[str, ...], *, distinct_inputs: bool = True) -> set:
    """All distinct cells by brute force (small sizes only): checks :func:`count_cells`."""
    per_node = []
    for i in range(num_nodes):
        choices = set()
        for (a, op_a), (b, op_b) in itertools.product(itertools.product(range(i + 2), ops), repeat=2):
            if distinct_inputs:
                if a != b:
                    choices.add(frozenset([(op_a, a), (op_b, b)]))
            else:
                choices.add(((op_a, a), (op_b, b)))
        per_node.append(choices)
    return set(itertools.product(*per_node))


def random_genotype(num_nodes: int = 4, ops: tuple[str, ...] = ("max_pool_3x3", "avg_pool_3x3", "skip_connect",
                    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"), *, seed: int = 0) -> Genotype:
    """A uniformly random DARTS-style genotype (two distinct inputs per node), seeded.

    The random baseline of the one-shot papers, and the callback of the tour's sampling widget.
    """
    import random

    rng = random.Random(seed)

    def cell():
        edges = []
        for i in range(num_nodes):
            for src in sorted(rng.sample(range(i + 2), 2)):
                edges.append((rng.choice(ops), src))
        return edges

    concat = list(range(2, 2 + num_nodes))
    return Genotype(normal=cell(), normal_concat=concat, reduce=cell(), reduce_concat=concat)
