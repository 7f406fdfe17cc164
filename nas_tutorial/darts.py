r"""DARTS: Differentiable Architecture Search (Liu, Simonyan & Yang, ICLR 2019, arXiv:1806.09055).

Read top to bottom like the paper: the mixed operation and the search cell (Sec. 2.1-2.2), the
search network, the bilevel optimisation and its approximate architecture gradient (Sec. 2.3,
Eq. 3-8) with an exact autograd version to check it, the search loop (Alg. 1), the derivation of
the discrete genotype (Sec. 2.4), the toy problem of Figure 2, and the widget callback of the
notebook. The discrete evaluation network lives in :mod:`nas_tutorial.cells`.

Two paths compute the supernet: the readable one (:class:`MixedOp` per edge, Eq. 2 as a loop;
``SearchNetwork(fused=False)``) and, by default, :meth:`SearchCell.forward_fused`, which computes
the same sums with the edges that leave one node batched into a few larger kernels
(:func:`nas_tutorial.ops.apply_many`), about twice as fast on a small CPU
(``benchmarks/README.md``). Tests check in float64 that both give the same outputs, gradients and
hypergradients.

Notation (the paper's symbols where they are the subject):

| symbol | code | what it is | shape |
| --- | --- | --- | --- |
| :math:`\mathcal{O}` | ``ops`` | candidate operations | ``K`` names (8: ``DARTS_OPS``) |
| :math:`n` | ``num_nodes`` | intermediate nodes per cell | int (4) |
| :math:`E` | ``num_edges`` | mixed edges per cell, :math:`\sum_{i<n}(i+2)` | int (14) |
| :math:`\alpha` | ``alpha_normal``, ``alpha_reduce`` | architecture weights | ``(E, K)`` each |
| :math:`\mathrm{softmax}(\alpha)` | ``weights`` | mixing weights of an edge's candidates | ``(E, K)``, rows sum to 1 |
| :math:`w` | ``w`` / ``weight_parameters()`` | network weights (everything but α) | dict name -> tensor |
| :math:`w'` | ``w_virtual`` | weights after one virtual SGD step | like :math:`w` |
| :math:`\xi` | ``xi`` | learning rate of the virtual step (0: first order) | float |
| :math:`\epsilon` | ``eps`` | finite-difference step, :math:`0.01 / \lVert\nabla_{w'} L_{val}\rVert` | float |
| :math:`\eta_w, \eta_\alpha` | ``lr``, ``arch_lr`` | learning rates of w (SGD) and α (Adam) | floats |
| :math:`L_{train}, L_{val}` | ``train_loss``, ``val_loss`` | cross-entropy on a training / validation batch | scalar |

Seed-text errors corrected here (the tutorial's seed notes, final update of α): the formula must
read :math:`\alpha \leftarrow \alpha - \eta_\alpha[\nabla_\alpha L_{val}(w',\alpha) - \xi
\frac{\nabla_\alpha L_{train}(w^+,\alpha) - \nabla_\alpha L_{train}(w^-,\alpha)}{2\epsilon}]`: a
minus sign was missing between the two :math:`\nabla_\alpha L_{train}` terms; the intermediate
step dividing by :math:`2(w^+ - w^-)` is not a valid expression (one cannot divide by a weight
vector; the difference quotient is along the direction :math:`\nabla_{w'}L_{val}` with step
:math:`\epsilon`); and the outer step size is the architecture learning rate :math:`\eta_\alpha`
(Adam in the paper), not :math:`\xi`, which is the *inner* virtual-step learning rate.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from .cells import make_stem, stack_cells
from .data import Augment, DeviceLoader, Subsets
from .drawing import Graph, cell_graph, heatmap
from .genotypes import Genotype
from .ops import DARTS_OPS, FactorizedReduce, ReLUConvBN, apply_many, check_op_name, make_op
from .search import Config, Search, check
from .training import evaluate

Tensors = dict[str, torch.Tensor]
#: ``loss(w, alpha) -> scalar``: a loss as a function of named weights and named architecture weights.
LossFn = Callable[[Tensors, Tensors], torch.Tensor]


def num_edges(num_nodes: int) -> int:
    r"""Mixed edges of a cell whose node ``i`` reads all ``i + 2`` predecessors: :math:`\sum_{i<n} (i + 2)`."""
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be positive, got {num_nodes}")
    return sum(i + 2 for i in range(num_nodes))


def edge_labels(num_nodes: int = 4) -> list[str]:
    """Row labels of an α matrix, in row order: ``"k-2→0"``, ``"k-1→0"``, ``"k-2→1"``, ... (names of
    :func:`nas_tutorial.drawing.cell_graph`: inputs ``c_{k-2}``, ``c_{k-1}``, intermediate nodes 0..n-1)."""
    names = ["k-2", "k-1"] + [str(i) for i in range(num_nodes)]
    return [f"{names[j]}→{i}" for i in range(num_nodes) for j in range(i + 2)]


def check_alpha(alpha: torch.Tensor, num_nodes: int, num_ops: int, name: str = "alpha") -> torch.Tensor:
    """Return ``alpha`` as a tensor if it has shape ``(num_edges(num_nodes), num_ops)``; else raise ``ValueError``."""
    alpha = torch.as_tensor(alpha)
    expected = (num_edges(num_nodes), num_ops)
    if tuple(alpha.shape) != expected:
        raise ValueError(
            f"{name} must have shape {expected} (one row per mixed edge of a {num_nodes}-node cell, one column "
            f"per candidate operation), got {tuple(alpha.shape)}"
        )
    return alpha


# -- Sec. 2.2: continuous relaxation ----------------------------------------------------------------
class MixedOp(nn.Module):
    r"""One edge of the supernet: every candidate operation, mixed by the softmax of the edge's α.

    Eq. 2: :math:`\bar o(x) = \sum_{o \in \mathcal{O}} \frac{\exp \alpha_o}{\sum_{o'} \exp \alpha_{o'}} o(x)`.

    As in the authors' code, operations have no affine batch-norm parameters during the search
    (``affine=False``), and pooling is followed by a non-affine batch norm so that its output has
    the scale of the convolutions'.
    """

    def __init__(self, channels: int, stride: int, ops: tuple[str, ...] = DARTS_OPS):
        super().__init__()
        self.op_names = tuple(check_op_name(o) for o in ops)
        candidates = []
        for name in self.op_names:
            op = make_op(name, channels, stride, affine=False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
            candidates.append(op)
        self.candidates = nn.ModuleList(candidates)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:  # (B, C, H, W), (K,) -> (B, C, H/s, W/s)
        if weights.shape != (len(self.candidates),):
            raise ValueError(f"MixedOp needs one weight per candidate, shape ({len(self.candidates)},), "
                             f"got {tuple(weights.shape)}")
        # Eq. 2; the ``none`` term is weights[k] * 0 = 0 and is skipped: it still acts through the softmax.
        out = 0
        for k, (name, op) in enumerate(zip(self.op_names, self.candidates, strict=True)):
            if name != "none":
                out = out + weights[k] * op(x)
        return out


class SearchCell(nn.Module):
    r"""The supernet cell: two inputs, ``num_nodes`` intermediate nodes, a :class:`MixedOp` on each of
    the ``num_edges(num_nodes)`` edges, output the concatenation of the last ``multiplier`` nodes.

    Eq. 1: node :math:`x_j = \sum_{i<j} \bar o^{(i,j)}(x_i)`. Edge ``e`` of row order
    (``edge_labels``) is row ``e`` of α.

    ``fused=True`` computes the same sums with the edges that leave one node batched together
    (:meth:`forward_fused`); ``False`` is the readable loop over :class:`MixedOp` s.
    """

    def __init__(self, num_nodes: int, multiplier: int, in_channels_prev_prev: int, in_channels_prev: int,
                 channels: int, *, reduction: bool, reduction_prev: bool, ops: tuple[str, ...] = DARTS_OPS,
                 fused: bool = False):
        super().__init__()
        self.fused = fused
        if not 1 <= multiplier <= num_nodes:
            raise ValueError(f"multiplier must be in 1..num_nodes={num_nodes}, got {multiplier}")
        self.reduction, self.num_nodes, self.multiplier = reduction, num_nodes, multiplier
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(in_channels_prev_prev, channels, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(in_channels_prev_prev, channels, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(in_channels_prev, channels, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(channels, 2 if reduction and j < 2 else 1, ops) for i in range(num_nodes) for j in range(i + 2)
        )
        self.out_channels = multiplier * channels

    def forward(self, s0, s1, weights):  # (B, C_pp, ., .), (B, C_p, H, W), (E, K) -> (B, multiplier * C, H/s, W/s)
        if weights.shape[0] != len(self.edges):
            raise ValueError(f"SearchCell has {len(self.edges)} edges, got weights of shape {tuple(weights.shape)}")
        if self.fused:
            return self.forward_fused(s0, s1, weights)
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # (B, C, H, W) each
        edge = 0
        for _ in range(self.num_nodes):
            # Eq. 1: a node sums the mixed edges from all its predecessors
            node = sum(self.edges[edge + j](h, weights[edge + j]) for j, h in enumerate(states))
            edge += len(states)
            states.append(node)
        return torch.cat(states[-self.multiplier:], dim=1)

    def forward_fused(self, s0, s1, weights):  # same shapes as forward
        r"""Eq. 1 and 2 as :meth:`forward` computes them, with the edges that leave one node batched.

        Every edge out of node :math:`i` applies the same candidates to the same :math:`x_i`, so
        they run together (:func:`nas_tutorial.ops.apply_many`): one ReLU, one depthwise
        convolution, one batched matrix product and one batch norm per convolution stage for all
        those edges, and pooling and identity once (their outputs are the same on every edge).
        Node :math:`j` then sums, in the same order as :meth:`forward`, the mixed edges
        :math:`\sum_k \mathrm{softmax}(\alpha_{ij})_k\, o_k(x_i)` from :math:`i = 0, 1, \ldots`;
        ``none`` adds nothing, as in :class:`MixedOp`.
        """
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # (B, C, H, W) each
        incoming = [[] for _ in range(self.num_nodes)]  # the mixed edges into each node, in edge order
        names = self.edges[0].op_names
        for i in range(self.num_nodes + 2):
            if i >= 2:
                states.append(sum(incoming[i - 2]))  # Eq. 1: node i - 2 is complete
            targets = list(range(max(i - 1, 0), self.num_nodes))  # the nodes that read state i
            if not targets:
                break
            rows = [_edge_index(i, j) for j in targets]
            edges = [self.edges[r] for r in rows]
            mixing = weights[rows]  # (E, K): softmax(alpha) of these edges
            cache: dict = {}  # relu(x_i), shared by the convolutions of every edge
            mixed = 0
            for k, name in enumerate(names):
                if name != "none":  # Eq. 2 without the zero term, for the E edges at once
                    outputs = apply_many([edge.candidates[k] for edge in edges], states[i], cache)  # (B, E, C, H', W')
                    mixed = mixed + mixing[:, k].view(1, -1, 1, 1, 1) * outputs
            for e, j in enumerate(targets):
                incoming[j].append(mixed[:, e])
        return torch.cat(states[-self.multiplier:], dim=1)


def _edge_index(i: int, j: int) -> int:
    """Row of α (and position in ``SearchCell.edges``) of the edge from state ``i`` into node ``j``."""
    return sum(n + 2 for n in range(j)) + i


class SearchNetwork(nn.Module):
    r"""The DARTS supernet: a stem, ``layers`` search cells (reductions at 1/3 and 2/3 of the depth),
    global pooling and a classifier; one α for all normal cells and one for all reduction cells.

    α are ``nn.Parameter`` s named ``alpha_normal`` and ``alpha_reduce`` (so they are in
    ``state_dict`` and move with ``.to``); :meth:`arch_parameters` returns them and
    :meth:`weight_parameters` returns everything else (:math:`w`).

    Args:
        channels: initial channels ``C`` (16 in the paper's search).
        num_classes: output classes.
        layers: number of cells (8 in the paper's search).
        num_nodes: intermediate nodes per cell (4).
        multiplier: how many of the last nodes the cell output concatenates (4: all of them).
        stem_multiplier: the stem has ``stem_multiplier * channels`` channels (3).
        ops: candidate operations, the columns of α (``DARTS_OPS``).
        alpha_init_std: α starts at ``alpha_init_std * N(0, 1)``. The paper uses zero initialisation
            ("equal amount of attention over all possible ops"); the authors' code uses ``1e-3``.
        in_channels: image channels.
        fused: compute each cell with :meth:`SearchCell.forward_fused` (the same mathematics in
            fewer, larger kernels; the default) or with the readable loop over :class:`MixedOp` s
            (``False``). Settable later through the :attr:`fused` attribute.
    """

    def __init__(self, channels: int = 16, num_classes: int = 10, layers: int = 8, *, num_nodes: int = 4,
                 multiplier: int = 4, stem_multiplier: int = 3, ops: tuple[str, ...] = DARTS_OPS,
                 alpha_init_std: float = 0.0, in_channels: int = 3, fused: bool = True):
        super().__init__()
        self.ops = tuple(check_op_name(o) for o in ops)
        if all(o == "none" for o in self.ops):
            raise ValueError(f"ops must contain at least one operation other than 'none', got {self.ops}")
        if channels < 1 or layers < 1 or num_nodes < 1:
            raise ValueError(f"channels, layers and num_nodes must be positive, got {channels}, {layers}, {num_nodes}")
        self.num_nodes, self.multiplier = num_nodes, multiplier
        stem_channels = stem_multiplier * channels
        self.stem = make_stem(in_channels, stem_channels)

        def make_cell(prev_prev, prev, current, **kind):
            return SearchCell(num_nodes, multiplier, prev_prev, prev, current, ops=self.ops, **kind)

        self.cells = stack_cells(make_cell, channels=channels, layers=layers, stem_channels=stem_channels)
        self.classifier = nn.Linear(self.cells[-1].out_channels, num_classes)
        shape = (num_edges(num_nodes), len(self.ops))
        self.alpha_normal = nn.Parameter(alpha_init_std * torch.randn(shape))
        self.alpha_reduce = nn.Parameter(alpha_init_std * torch.randn(shape))
        self.fused = fused

    @property
    def fused(self) -> bool:
        """Whether the cells run :meth:`SearchCell.forward_fused` (else the readable :meth:`SearchCell.forward`)."""
        return self._fused

    @fused.setter
    def fused(self, value: bool) -> None:
        self._fused = bool(value)
        for cell in self.cells:
            cell.fused = self._fused

    @classmethod
    def from_config(cls, config: "DartsConfig") -> "SearchNetwork":
        """The supernet a :class:`DartsConfig` describes."""
        return cls(config.channels, config.num_classes, config.layers, num_nodes=config.num_nodes,
                   multiplier=config.multiplier, stem_multiplier=config.stem_multiplier, ops=config.ops,
                   alpha_init_std=config.alpha_init_std)

    # -- the two parameter groups --------------------------------------------------------------
    def named_arch_parameters(self) -> dict[str, nn.Parameter]:
        """The architecture weights α by name: ``{"alpha_normal": ..., "alpha_reduce": ...}``, each ``(E, K)``."""
        return {"alpha_normal": self.alpha_normal, "alpha_reduce": self.alpha_reduce}

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture weights α: ``[alpha_normal, alpha_reduce]``, each ``(E, K)``."""
        return list(self.named_arch_parameters().values())

    def named_weight_parameters(self) -> dict[str, nn.Parameter]:
        """The network weights :math:`w` by name (all parameters but α)."""
        arch = {id(p) for p in self.arch_parameters()}
        return {n: p for n, p in self.named_parameters() if id(p) not in arch}

    def weight_parameters(self) -> list[nn.Parameter]:
        """The network weights :math:`w` (all parameters but α)."""
        return list(self.named_weight_parameters().values())

    @torch.no_grad()
    def set_alphas(self, alpha_normal: torch.Tensor, alpha_reduce: torch.Tensor) -> None:
        """Copy α in (shapes checked with a clear ``ValueError``)."""
        self.alpha_normal.copy_(check_alpha(alpha_normal, self.num_nodes, len(self.ops), "alpha_normal"))
        self.alpha_reduce.copy_(check_alpha(alpha_reduce, self.num_nodes, len(self.ops), "alpha_reduce"))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("alpha_normal", "alpha_reduce"):
            if prefix + name in state_dict:
                check_alpha(state_dict[prefix + name], self.num_nodes, len(self.ops), name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def genotype(self) -> Genotype:
        """The discrete cell the current α encodes (:func:`derive_genotype`)."""
        return derive_genotype(self.alpha_normal, self.alpha_reduce, ops=self.ops, num_nodes=self.num_nodes,
                               multiplier=self.multiplier)

    def forward(self, x):  # (B, 3, H, W) -> (B, num_classes)
        # Eq. 2: the mixing weights of every edge, shared by all cells of a type
        weights_normal = F.softmax(self.alpha_normal, dim=-1)  # (E, K)
        weights_reduce = F.softmax(self.alpha_reduce, dim=-1)  # (E, K)
        s0 = s1 = self.stem(x)  # (B, 3C, H, W)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weights_reduce if cell.reduction else weights_normal)
        return self.classifier(s1.mean((2, 3)))  # global average pooling, then linear


# -- Sec. 2.3: the approximate architecture gradient, on plain functions -----------------------------
# Everything below works on losses written as functions of named tensors, loss(w, alpha), so the
# same code serves the supernet (through torch.func.functional_call) and the toy problem of Figure 2.
# The model's own weights are never modified: every perturbed w is a new tensor, so nothing needs
# restoring and w is bit-for-bit unchanged afterwards.

def _grad(loss: torch.Tensor, inputs: list[torch.Tensor], **kwargs) -> list[torch.Tensor]:
    """``torch.autograd.grad`` with zeros for inputs the loss does not use (e.g. α of an absent cell type)."""
    grads = torch.autograd.grad(loss, inputs, allow_unused=True, **kwargs)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads, strict=True)]


def virtual_step(train_loss: LossFn, w: Tensors, alpha: Tensors, xi: float,
                 shift: Tensors | None = None) -> Tensors:
    r"""The virtual weights :math:`w' = w - \xi (\nabla_w L_{train}(w, \alpha) + d)` (Eq. 6), detached.

    ``shift`` is an extra step direction :math:`d` that does not depend on α (the momentum and
    weight-decay terms of the weight optimiser; see :class:`Architect`); ``None`` is the paper's plain
    SGD step.
    """
    names = list(w)
    weights = [w[n] for n in names]
    constant_alpha = {n: a.detach() for n, a in alpha.items()}  # only the gradient in w is wanted here
    grads = _grad(train_loss(w, constant_alpha), weights)
    with torch.no_grad():  # w - xi * (grad + d), for all tensors at once (torch._foreach_*: one call per list)
        steps = grads if shift is None else torch._foreach_add(grads, [shift[n] for n in names])
        w_virtual = torch._foreach_add(weights, steps, alpha=-xi)
    return {n: t.requires_grad_() for n, t in zip(names, w_virtual, strict=True)}


def finite_difference_hvp(train_loss: LossFn, w: Tensors, alpha: Tensors, v: Tensors, eps: float) -> Tensors:
    r"""Mixed Hessian-vector product by central differences (Eq. 8):

    :math:`\nabla^2_{\alpha,w} L_{train}(w,\alpha)\, v \approx
    \frac{\nabla_\alpha L_{train}(w^+,\alpha) - \nabla_\alpha L_{train}(w^-,\alpha)}{2\epsilon}`,
    :math:`w^\pm = w \pm \epsilon v`. Two forward-backward passes, error :math:`O(\epsilon^2)`.
    """
    names, w_names = list(alpha), list(w)
    with torch.no_grad():  # w +- eps v, for all tensors at once; constants, so no weight gradient is computed
        weights, direction = [w[n] for n in w_names], [v[n] for n in w_names]
        w_plus = dict(zip(w_names, torch._foreach_add(weights, direction, alpha=eps), strict=True))
        w_minus = dict(zip(w_names, torch._foreach_add(weights, direction, alpha=-eps), strict=True))
    grads_plus = _grad(train_loss(w_plus, alpha), [alpha[n] for n in names])
    grads_minus = _grad(train_loss(w_minus, alpha), [alpha[n] for n in names])
    return {n: (gp - gm) / (2 * eps) for n, gp, gm in zip(names, grads_plus, grads_minus, strict=True)}


def exact_hvp(train_loss: LossFn, w: Tensors, alpha: Tensors, v: Tensors) -> Tensors:
    r"""The same mixed Hessian-vector product exactly, by double backward:
    :math:`\nabla^2_{\alpha,w} L_{train}\, v = \nabla_\alpha \langle \nabla_w L_{train}(w,\alpha), v\rangle`."""
    w_names, a_names = list(w), list(alpha)
    grads_w = _grad(train_loss(w, alpha), [w[n] for n in w_names], create_graph=True)
    inner = sum((g * v[n]).sum() for n, g in zip(w_names, grads_w, strict=True))
    return dict(zip(a_names, _grad(inner, [alpha[n] for n in a_names]), strict=True))


@dataclass
class Hypergradient:
    """What :func:`architecture_gradient` returns: the gradient for each α, the validation loss at
    :math:`w'`, and the finite-difference step used (``nan`` when none was needed)."""

    grads: Tensors
    val_loss: torch.Tensor
    eps: float


def architecture_gradient(train_loss: LossFn, val_loss: LossFn, w: Tensors, alpha: Tensors, *, xi: float,
                          method: str = "finite_difference", eps_scale: float = 0.01,
                          eps: float | None = None, shift: Tensors | None = None) -> Hypergradient:
    r"""The gradient of the one-step unrolled validation loss with respect to α (Eq. 6-8).

    :math:`\nabla_\alpha L_{val}(w', \alpha) - \xi\, \nabla^2_{\alpha,w} L_{train}(w,\alpha)\,
    \nabla_{w'} L_{val}(w',\alpha)` with :math:`w' = w - \xi \nabla_w L_{train}(w,\alpha)` (Eq. 7).

    Args:
        train_loss, val_loss: ``loss(w, alpha)`` on a training and on a validation batch.
        w, alpha: named weights and architecture weights (they must require grad).
        xi: virtual-step learning rate; ``0`` is the first-order approximation (one forward-backward).
        method: ``"finite_difference"`` (Eq. 8, four forward-backward passes in all) or ``"exact"``
            (autograd through the virtual step, double backward: the exact gradient of
            :math:`L_{val}(w - \xi\nabla_w L_{train}(w,\alpha), \alpha)`).
        eps_scale: the paper's :math:`\epsilon = 0.01 / \lVert\nabla_{w'} L_{val}(w',\alpha)\rVert`, the
            norm taken over all weights together.
        eps: use this :math:`\epsilon` instead (for the error-against-ε study).
        shift: extra virtual-step direction independent of α (momentum, weight decay).
    """
    if method not in ("finite_difference", "exact"):
        raise ValueError(f"method must be 'finite_difference' or 'exact', got {method!r}")
    a_names = list(alpha)
    if xi == 0:
        # first order: w' = w, the implicit term vanishes; w enters as a constant (only the gradient in α is taken)
        loss = val_loss({n: t.detach() for n, t in w.items()}, alpha)
        grads = _grad(loss, [alpha[n] for n in a_names])
        return Hypergradient(dict(zip(a_names, grads, strict=True)), loss.detach(), math.nan)
    if method == "exact":
        w_names = list(w)
        grads_w = _grad(train_loss(w, alpha), [w[n] for n in w_names], create_graph=True)
        # Eq. 6, kept in the graph: w' depends on α through the gradient of L_train
        w_virtual = {}
        for n, step in zip(w_names, grads_w, strict=True):
            if shift is not None:
                step = step + shift[n]
            w_virtual[n] = w[n] - xi * step
        loss = val_loss(w_virtual, alpha)
        grads = _grad(loss, [alpha[n] for n in a_names])
        return Hypergradient(dict(zip(a_names, grads, strict=True)), loss.detach(), math.nan)
    # Eq. 6: the virtual step
    w_virtual = virtual_step(train_loss, w, alpha, xi, shift)
    loss = val_loss(w_virtual, alpha)
    w_names = list(w_virtual)
    grads = _grad(loss, [alpha[n] for n in a_names] + [w_virtual[n] for n in w_names])
    grad_alpha = dict(zip(a_names, grads[: len(a_names)], strict=True))
    # v = grad_{w'} L_val(w', alpha), the direction of the finite difference
    v = dict(zip(w_names, grads[len(a_names):], strict=True))
    if eps is None:
        # eps = 0.01 / ||grad_{w'} L_val(w', alpha)||, the norm over all weights together
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(v.values()))).double())
        eps = eps_scale / max(float(norm), 1e-12)
    # Eq. 8: the mixed Hessian-vector product at w (not w'), by central differences
    implicit = finite_difference_hvp(train_loss, w, alpha, v, eps)
    # Eq. 7: grad_alpha L_val(w', alpha) - xi * hessian_vector_product
    return Hypergradient({n: grad_alpha[n] - xi * implicit[n] for n in a_names}, loss.detach(), eps)


# -- The architect: α steps on the supernet ---------------------------------------------------------
class Architect:
    r"""Updates α of a :class:`SearchNetwork` by Adam on validation batches (Alg. 1, step 1).

    ``order=1`` uses :math:`\nabla_\alpha L_{val}(w, \alpha)` (:math:`\xi = 0`); ``order=2`` the
    one-step unrolled gradient of Eq. 7 with :math:`\xi` = the current learning rate of the weight
    optimiser unless ``xi`` is given ("we set ξ equal to the learning rate for w's optimizer").

    **The virtual step and the optimiser.** With ``include_momentum=True`` (the authors' code) the
    virtual step is the step the weight optimiser would actually take, SGD with momentum
    :math:`\mu` and weight decay :math:`\lambda`:
    :math:`w' = w - \xi(\mu b + \nabla_w L_{train}(w,\alpha) + \lambda w)`, with :math:`b` the
    momentum buffer. The paper's Eq. 6 writes a plain SGD step (``include_momentum=False``). Neither
    extra term depends on α, so the implicit term keeps the same form, :math:`-\xi\nabla^2_{\alpha,w}
    L_{train}\nabla_{w'} L_{val}`; they only move the point :math:`w'` where :math:`L_{val}` is
    looked at, to where the weights will really be after the next step. Including them is
    therefore the more faithful one-step look-ahead; the difference is small and both are offered.

    The network weights are never written by the architecture step: the virtual and perturbed
    weights are separate tensors fed to the module by ``torch.func.functional_call`` (no module is
    deep-copied). The batch-norm running statistics that its forward passes update are copied
    before and put back after, so they change only in weight steps.

    Args:
        model: the supernet (anything with ``named_arch_parameters()`` and ``named_weight_parameters()``).
        w_optimizer: the ``torch.optim.SGD`` of the weights (read for ``lr``, momentum buffers).
        order: 1 or 2.
        xi: virtual-step learning rate for ``order=2``; ``None`` follows the weight learning rate.
        method: ``"finite_difference"`` (the paper) or ``"exact"`` (double backward).
        eps_scale: the 0.01 in :math:`\epsilon = 0.01/\lVert\nabla_{w'} L_{val}\rVert` (paper).
        include_momentum: include momentum and weight decay in the virtual step (authors' code).
        arch_lr, arch_betas, arch_weight_decay: Adam for α; the paper's :math:`3\times10^{-4}`,
            :math:`(0.5, 0.999)`, :math:`10^{-3}`.
    """

    def __init__(self, model: nn.Module, w_optimizer: torch.optim.Optimizer, *, order: int = 1,
                 xi: float | None = None, method: str = "finite_difference", eps_scale: float = 0.01,
                 include_momentum: bool = True, arch_lr: float = 3e-4, arch_betas: tuple[float, float] = (0.5, 0.999),
                 arch_weight_decay: float = 1e-3):
        if order not in (1, 2):
            raise ValueError(f"order must be 1 (first order, xi = 0) or 2 (second order), got {order}")
        if method not in ("finite_difference", "exact"):
            raise ValueError(f"method must be 'finite_difference' or 'exact', got {method!r}")
        self.model, self.w_optimizer = model, w_optimizer
        self.order, self.xi, self.method, self.eps_scale = order, xi, method, eps_scale
        self.include_momentum = include_momentum
        self.optimizer = torch.optim.Adam(model.arch_parameters(), lr=arch_lr, betas=arch_betas,
                                          weight_decay=arch_weight_decay)

    def current_xi(self) -> float:
        """ξ of the next step: 0 for first order, else ``xi`` or the weight optimiser's learning rate."""
        if self.order == 1:
            return 0.0
        return self.xi if self.xi is not None else self.w_optimizer.param_groups[0]["lr"]

    def loss_fn(self, x: torch.Tensor, y: torch.Tensor) -> LossFn:
        """``loss(w, alpha)``: the supernet's cross-entropy on ``(x, y)`` with the given tensors in place of
        its parameters (``torch.func.functional_call``: the module itself is not changed)."""

        def loss(w: Tensors, alpha: Tensors) -> torch.Tensor:
            # tie_weights=False: the supernet shares no tensors, and looking for shared ones costs ~20 ms a call
            return F.cross_entropy(functional_call(self.model, {**w, **alpha}, (x,), tie_weights=False), y)

        return loss

    def _shift(self, w: Tensors) -> Tensors | None:
        r"""Momentum and weight-decay terms of the next SGD step, :math:`\mu b + \lambda w` (no α in them)."""
        if not self.include_momentum:
            return None
        group = self.w_optimizer.param_groups[0]
        momentum, weight_decay = group.get("momentum", 0.0), group.get("weight_decay", 0.0)
        names, params = list(w), list(w.values())
        buffers = [self.w_optimizer.state.get(p, {}).get("momentum_buffer") for p in params]
        with torch.no_grad():  # for all tensors at once; a tensor without a momentum buffer yet gets lambda w only
            shift = torch._foreach_mul(params, weight_decay)
            with_buffer = [i for i, b in enumerate(buffers) if b is not None]
            if with_buffer:
                torch._foreach_add_([shift[i] for i in with_buffer], [buffers[i] for i in with_buffer], alpha=momentum)
        return dict(zip(names, shift, strict=True))

    def hypergradient(self, train_batch, valid_batch, *, xi: float | None = None, method: str | None = None,
                      eps: float | None = None) -> Hypergradient:
        """∇α of the (unrolled) validation loss for one training and one validation batch; α untouched."""
        xi = self.current_xi() if xi is None else xi
        w = self.model.named_weight_parameters()
        alpha = self.model.named_arch_parameters()
        buffers = [b for b in self.model.buffers()]
        saved = [b.clone() for b in buffers]  # BN running statistics: put back exactly afterwards
        try:
            return architecture_gradient(self.loss_fn(*train_batch), self.loss_fn(*valid_batch), w, alpha, xi=xi,
                                         method=method or self.method, eps_scale=self.eps_scale, eps=eps,
                                         shift=self._shift(w) if xi else None)
        finally:
            with torch.no_grad():
                for b, s in zip(buffers, saved, strict=True):
                    b.copy_(s)

    def step(self, train_batch, valid_batch) -> torch.Tensor:
        """One Adam step on α (Alg. 1, step 1); returns the validation loss (a 0-d tensor, no sync)."""
        result = self.hypergradient(train_batch, valid_batch)
        for name, p in self.model.named_arch_parameters().items():
            p.grad = result.grads[name].detach().clone()
        self.optimizer.step()
        return result.val_loss


# -- Alg. 1: the search ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DartsConfig(Config):
    r"""Settings of a DARTS search; the defaults are the paper's search on CIFAR-10 (Sec. 3.1.1)
    unless noted.

    Attributes:
        channels, layers: the search network: 16 initial channels, 8 cells.
        num_nodes, multiplier, stem_multiplier: 4 intermediate nodes per cell, all 4 concatenated,
            a stem of 3 x 16 channels.
        ops: the candidate operations (the columns of α): ``DARTS_OPS``.
        alpha_init_std: α starts at ``alpha_init_std * N(0, 1)``; the paper starts from zero ("equal
            attention"), the authors' code from ``1e-3 * N(0, 1)``.
        num_classes: 10.
        epochs: 50.
        batch_size: 64 (training and validation batches alike).
        lr: :math:`\eta_w` = 0.025, SGD with momentum 0.9 and weight decay 3e-4.
        lr_min: end of the cosine schedule. The paper anneals "down to zero"; the authors' code stops
            at 0.001 (default here: the code's, which produced the published cells).
        grad_clip: clip the weight-gradient norm at 5 (authors' code; the paper does not say).
        arch_lr, arch_betas, arch_weight_decay: Adam on α: 3e-4, (0.5, 0.999), 1e-3.
        order: 2 (second order, the paper's DARTS V2, default) or 1 (first order, DARTS V1).
        xi: ξ for order 2; ``None`` follows the current :math:`\eta_w` (paper and code).
        method: ``"finite_difference"`` (paper) or ``"exact"`` (double backward).
        eps_scale: 0.01 (paper).
        include_momentum: momentum and weight decay in the virtual step (authors' code; see Architect).
        augment: training-time augmentation of both halves (the code's random crop and flip, no cutout).
        steps_per_epoch: cap on steps per epoch (``None``: a full pass); for quick runs.
        seed: seeds the supernet's initial weights, the batch order and the augmentation.
    """

    channels: int = 16
    layers: int = 8
    num_nodes: int = 4
    multiplier: int = 4
    stem_multiplier: int = 3
    ops: tuple[str, ...] = DARTS_OPS
    alpha_init_std: float = 0.0
    num_classes: int = 10
    epochs: int = 50
    batch_size: int = 64
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float | None = 5.0
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    order: int = 2
    xi: float | None = None
    method: str = "finite_difference"
    eps_scale: float = 0.01
    include_momentum: bool = True
    augment: Augment | None = Augment()
    steps_per_epoch: int | None = None
    seed: int = 0

    def validate(self) -> None:
        for name in ("channels", "layers", "num_nodes", "stem_multiplier", "num_classes", "epochs", "batch_size"):
            value = getattr(self, name)
            check(isinstance(value, int) and value >= 1, name, "must be a positive integer", value)
        check(1 <= self.multiplier <= self.num_nodes, "multiplier", f"must be in 1..num_nodes={self.num_nodes}",
              self.multiplier)
        check(isinstance(self.ops, tuple) and len(self.ops) > 0, "ops", "must be a non-empty tuple of operation names",
              self.ops)
        for op in self.ops:
            check_op_name(op)
        check(any(op != "none" for op in self.ops), "ops", "must contain an operation other than 'none'", self.ops)
        for name in ("lr", "arch_lr"):
            check(getattr(self, name) > 0, name, "must be positive", getattr(self, name))
        check(0 <= self.lr_min <= self.lr, "lr_min", f"must be in [0, lr={self.lr}]", self.lr_min)
        check(self.order in (1, 2), "order", "must be 1 (first order) or 2 (second order)", self.order)
        check(self.xi is None or self.xi >= 0, "xi", "must be None (follow lr) or >= 0", self.xi)
        check(self.method in ("finite_difference", "exact"), "method", "must be 'finite_difference' or 'exact'",
              self.method)
        check(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "steps_per_epoch", "must be None or >= 1",
              self.steps_per_epoch)

    @classmethod
    def fast(cls, **changes) -> "DartsConfig":
        """The notebook's CPU setting: a 4-channel, 3-cell supernet, first order, 3 epochs of 3 steps of
        32 images (16x16 images: crop padding 2), α learning rate 100x the paper's so that α moves."""
        settings = dict(channels=4, layers=3, epochs=3, batch_size=32, steps_per_epoch=3, arch_lr=3e-2, order=1,
                        augment=Augment(crop_padding=2))
        return cls(**{**settings, **changes})


class DartsSearch(Search):
    r"""DARTS (Alg. 1) on a :class:`~nas_tutorial.data.Subsets`: one :meth:`step` is one epoch.

    Each training batch is paired with the next batch of a separately shuffled pass over the
    validation half; an epoch ends when either pass (or ``steps_per_epoch``) runs out. Every
    iteration first updates α on the validation batch (:meth:`update_alpha`, Alg. 1 step 1), then w
    on the training batch (:meth:`update_weights`, step 2), as in the paper and the authors' code; ξ
    follows the learning rate of the epoch.

    Records (one per epoch), beside the common keys (``best_arch``: the genotype α derives,
    ``best_score``: the supernet's accuracy on the whole validation half): ``epoch``, ``lr``, ``xi``,
    ``train_loss``/``train_acc`` (running over the epoch's weight steps), ``search_val_loss`` (mean
    :math:`L_{val}` seen by the α steps), ``valid_loss``/``valid_acc``, ``alpha_normal``/
    ``alpha_reduce`` (CPU copies of α after the epoch) and ``num_nodes``.

    The supernet is built from the config (seeded by ``config.seed``) on the data's device;
    :attr:`model` is it.
    """

    method = "darts"

    def __init__(self, config: DartsConfig, data: Subsets, *, checkpoint: str | os.PathLike | None = None):
        super().__init__(config, data, checkpoint=checkpoint)
        device = data.train_x.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.model = SearchNetwork.from_config(config).to(device)
        self.w_optimizer = torch.optim.SGD(self.model.weight_parameters(), lr=config.lr, momentum=config.momentum,
                                           weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_optimizer, T_max=config.epochs,
                                                                    eta_min=config.lr_min)
        self.architect = Architect(self.model, self.w_optimizer, order=config.order, xi=config.xi,
                                   method=config.method, eps_scale=config.eps_scale,
                                   include_momentum=config.include_momentum, arch_lr=config.arch_lr,
                                   arch_betas=config.arch_betas, arch_weight_decay=config.arch_weight_decay)
        self.train_loader = DeviceLoader(data.train_x, data.train_y, config.batch_size, augment=config.augment,
                                         seed=config.seed, drop_last=True)
        self.valid_loader = DeviceLoader(data.valid_x, data.valid_y, config.batch_size, augment=config.augment,
                                         seed=config.seed + 1, drop_last=True)
        if len(self.train_loader) == 0 or len(self.valid_loader) == 0:
            raise ValueError(f"field 'batch_size' ({config.batch_size}) is larger than the training "
                             f"({len(data.train_x)}) or validation ({len(data.valid_x)}) half")

    def num_steps(self) -> int:
        return self.config.epochs

    def context(self) -> dict:
        return {"data": self.data.fingerprint()}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "w_optimizer": self.w_optimizer.state_dict(),
                "arch_optimizer": self.architect.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "train_loader": self.train_loader.state_dict(), "valid_loader": self.valid_loader.state_dict(),
                "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.architect.optimizer.load_state_dict(state["arch_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.train_loader.load_state_dict(state["train_loader"])
        self.valid_loader.load_state_dict(state["valid_loader"])
        torch.set_rng_state(state["torch_rng"])

    # -- Alg. 1, one iteration ---------------------------------------------------------------------
    def update_alpha(self, train_batch, valid_batch) -> torch.Tensor:
        r"""Step 1: :math:`\alpha \leftarrow \alpha - \eta_\alpha \nabla_\alpha L_{val}(w - \xi\nabla_w
        L_{train}(w, \alpha), \alpha)` (Adam); returns :math:`L_{val}` (a 0-d tensor, no host sync)."""
        return self.architect.step(train_batch, valid_batch)

    def update_weights(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Step 2: :math:`w \leftarrow w - \eta_w \nabla_w L_{train}(w, \alpha)` (SGD, momentum, clipping);
        returns the loss and the number of correct predictions (0-d tensors, no host sync)."""
        weights = self.model.weight_parameters()
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.w_optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=weights)
        if self.config.grad_clip:
            nn.utils.clip_grad_norm_(weights, self.config.grad_clip)
        self.w_optimizer.step()
        return loss.detach(), (logits.argmax(1) == y).sum()

    def step(self, index: int) -> dict:
        """One epoch of Alg. 1, then the learning-rate schedule, a validation pass and the derived cell."""
        config, device = self.config, self.data.train_x.device
        lr, xi = self.w_optimizer.param_groups[0]["lr"], self.architect.current_xi()
        train_loss = torch.zeros((), device=device)
        val_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = steps = 0
        self.model.train()
        for (x, y), valid_batch in zip(self.train_loader, self.valid_loader, strict=False):
            if config.steps_per_epoch is not None and steps >= config.steps_per_epoch:
                break
            val_loss += self.update_alpha((x, y), valid_batch)
            loss, right = self.update_weights(x, y)
            train_loss += loss * len(y)
            correct += right
            seen += len(y)
            steps += 1
        self.scheduler.step()
        # one host sync per epoch: a NaN anywhere in the epoch shows in the sums
        alphas = [a.detach() for a in self.model.arch_parameters()]
        if not (math.isfinite(train_loss.item()) and math.isfinite(val_loss.item())
                and all(bool(torch.isfinite(a).all()) for a in alphas)):
            raise FloatingPointError(f"epoch {index + 1}: the loss or alpha is not finite (train loss sum "
                                     f"{train_loss.item()}, validation loss sum {val_loss.item()}); lower lr or "
                                     "arch_lr, or check the data")
        valid = evaluate(self.model, self.data.valid_x, self.data.valid_y, batch_size=max(config.batch_size, 256),
                         amp=False)  # the supernet is not run under autocast
        self.model.train()
        return {
            "epoch": index + 1, "lr": lr, "xi": xi,
            "train_loss": train_loss.item() / seen, "train_acc": correct.item() / seen,
            "search_val_loss": val_loss.item() / steps, "valid_loss": valid["loss"], "valid_acc": valid["acc"],
            "num_nodes": config.num_nodes,
            "alpha_normal": alphas[0].cpu().clone(), "alpha_reduce": alphas[1].cpu().clone(),
            "best_arch": str(self.model.genotype()), "best_score": valid["acc"],
        }


def search(config: DartsConfig, data: Subsets, *, checkpoint: str | os.PathLike | None = None,
           progress: bool = False, callback: Callable[[dict], None] | None = None,
           stop_after: int | None = None) -> list[dict]:
    """Run (or resume from ``checkpoint``) a DARTS search; return one record per epoch (:class:`DartsSearch`)."""
    return DartsSearch(config, data, checkpoint=checkpoint).run(progress=progress, callback=callback,
                                                                stop_after=stop_after)


# -- Sec. 2.4: deriving the discrete architecture ---------------------------------------------------
def _derive_cell(alpha: torch.Tensor, ops: tuple[str, ...], num_nodes: int, k: int) -> list[tuple[str, int]]:
    weights = F.softmax(alpha.detach().double().cpu(), dim=-1)  # (E, K)
    candidates = [i for i, name in enumerate(ops) if name != "none"]  # columns an edge may keep
    edges, row = [], 0
    for node in range(num_nodes):
        rows = weights[row:row + node + 2]  # (node + 2, K): the edges into this node
        # an edge's strength is its strongest non-none operation (softmax over all K, none included)
        strength = rows[:, candidates].max(dim=1).values.tolist()
        # keep the k strongest edges (ties: the lower input index), stronger edge first, as the code does
        kept = sorted(range(node + 2), key=lambda j: -strength[j])[:k]
        for j in kept:
            best = max(candidates, key=lambda c: (rows[j, c].item(), -c))  # first of equal weights
            edges.append((ops[best], j))
        row += node + 2
    return edges


def derive_genotype(alpha_normal: torch.Tensor, alpha_reduce: torch.Tensor, *, ops: tuple[str, ...] = DARTS_OPS,
                    num_nodes: int = 4, k: int = 2, multiplier: int | None = None) -> Genotype:
    """The discrete cell of Sec. 2.4: for each intermediate node keep the ``k = 2`` strongest incoming
    edges, an edge's strength being its strongest non-``none`` operation (in softmax weight), and on
    each kept edge that operation.

    Raises:
        ValueError: α of the wrong shape, unknown operation names, or ``k`` larger than a node's inputs.
    """
    ops = tuple(check_op_name(o) for o in ops)
    if all(o == "none" for o in ops):
        raise ValueError("ops must contain at least one operation other than 'none'")
    if k != 2:
        raise ValueError(f"a Genotype has exactly two edges per node, so k must be 2, got {k}")
    alpha_normal = check_alpha(alpha_normal, num_nodes, len(ops), "alpha_normal")
    alpha_reduce = check_alpha(alpha_reduce, num_nodes, len(ops), "alpha_reduce")
    for name, alpha in (("alpha_normal", alpha_normal), ("alpha_reduce", alpha_reduce)):
        if not torch.isfinite(alpha).all():
            raise ValueError(f"{name} has non-finite values (nan or inf): no architecture can be derived from it")
    multiplier = num_nodes if multiplier is None else multiplier
    concat = list(range(2 + num_nodes - multiplier, 2 + num_nodes))
    return Genotype(normal=_derive_cell(alpha_normal, ops, num_nodes, k), normal_concat=concat,
                    reduce=_derive_cell(alpha_reduce, ops, num_nodes, k), reduce_concat=concat)


# -- Figure 2: the toy bilevel problem --------------------------------------------------------------
def toy_train_loss(w: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    r""":math:`L_{train}(w, \alpha) = w^2 - 2\alpha w + \alpha^2 = (w - \alpha)^2`, so :math:`w^*(\alpha) = \alpha`."""
    return w**2 - 2 * alpha * w + alpha**2


def toy_val_loss(w: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    r""":math:`L_{val}(w, \alpha) = \alpha w - 2\alpha + 1`; on the constraint it is :math:`(\alpha - 1)^2`:
    the bilevel optimum is :math:`(\alpha, w) = (1, 1)`."""
    return alpha * w - 2 * alpha + 1


def toy_hypergradient_analytic(w: float, alpha: float, xi: float) -> float:
    r"""Eq. 7 by hand: :math:`w' = w - 2\xi(w - \alpha)`, :math:`\nabla_\alpha L_{val}(w',\alpha) = w' - 2`,
    :math:`\nabla_{w'} L_{val} = \alpha`, :math:`\nabla^2_{\alpha,w} L_{train} = -2`, so the gradient is
    :math:`w' - 2 + 2\xi\alpha`."""
    w_virtual = w - xi * (2 * w - 2 * alpha)
    return w_virtual - 2 + 2 * xi * alpha


def toy_hypergradient(w: float, alpha: float, xi: float, *, method: str = "finite_difference",
                      eps_scale: float = 0.01) -> float:
    """Eq. 7 on the toy problem by the same code as the supernet (:func:`architecture_gradient`), float64."""
    w_t = {"w": torch.tensor(float(w), dtype=torch.float64, requires_grad=True)}
    a_t = {"alpha": torch.tensor(float(alpha), dtype=torch.float64, requires_grad=True)}

    def train(w_, a_):
        return toy_train_loss(w_["w"], a_["alpha"])

    def val(w_, a_):
        return toy_val_loss(w_["w"], a_["alpha"])

    return float(architecture_gradient(train, val, w_t, a_t, xi=xi, method=method, eps_scale=eps_scale).grads["alpha"])


def toy_trajectory(alpha0: float = 2.0, w0: float = -2.0, *, xi: float, lr_alpha: float = 0.1, lr_w: float = 0.1,
                   steps: int = 200) -> torch.Tensor:
    r"""Alg. 1 on the toy problem with plain gradient steps, from :math:`(\alpha_0, w_0)`.

    Each iteration: :math:`\alpha \leftarrow \alpha - \eta_\alpha \cdot` (Eq. 7 with ``xi``), then
    :math:`w \leftarrow w - \eta_w \nabla_w L_{train}`. Returns the iterates, ``(steps + 1, 2)``
    float64, columns :math:`(\alpha, w)`. The fixed point has :math:`w = \alpha` and
    :math:`\alpha - 2 + 2\xi\alpha = 0`, i.e. :math:`\alpha = 2 / (1 + 2\xi)`: first order
    (:math:`\xi = 0`) stops at (2, 2), and :math:`\xi = 1/2` reaches the bilevel optimum (1, 1).
    """
    alpha, w = float(alpha0), float(w0)
    path = [(alpha, w)]
    for _ in range(steps):
        alpha = alpha - lr_alpha * toy_hypergradient_analytic(w, alpha, xi)
        w = w - lr_w * (2 * w - 2 * alpha)  # grad_w L_train(w, alpha) = 2w - 2 alpha
        path.append((alpha, w))
    return torch.tensor(path, dtype=torch.float64)


# -- The notebook's widget callback -----------------------------------------------------------------
def alpha_epoch_view(history: list[dict], index: int, *, axes=None, ops: tuple[str, ...] = DARTS_OPS) -> dict:
    """What the epoch slider shows: softmax(α) heatmaps of record ``history[index]`` and its derived cells.

    Args:
        history: records from :func:`search` (each with ``alpha_normal``, ``alpha_reduce``, ``epoch``, ``num_nodes``).
        index: position in ``history`` (negative counts from the end).
        axes: two matplotlib axes to draw the normal and reduction heatmaps into (``None``: no drawing),
            on one colour scale for every epoch of ``history``.
        ops: the column names of α.

    Returns:
        ``{"epoch", "weights_normal", "weights_reduce", "genotype", "normal", "reduce"}``; the last two
        are :class:`~nas_tutorial.drawing.Graph` s of the derived cells (show them with ``drawing.show``).
    """
    if not history:
        raise ValueError("history is empty: run search() first")
    if not -len(history) <= index < len(history):
        raise ValueError(f"index {index} is out of range for a history of {len(history)} epochs")
    record = history[index]
    num_nodes = record["num_nodes"]
    genotype = derive_genotype(record["alpha_normal"], record["alpha_reduce"], ops=ops, num_nodes=num_nodes)
    weights = {kind: F.softmax(record[f"alpha_{kind}"].double(), dim=-1) for kind in ("normal", "reduce")}
    if axes is not None:
        if len(axes) != 2:
            raise ValueError(f"axes must be two matplotlib axes (normal, reduce), got {len(axes)}")
        # one colour scale for every epoch: the largest weight of the whole history
        top = max(F.softmax(r[f"alpha_{kind}"].double(), dim=-1).max().item() for r in history
                  for kind in ("normal", "reduce"))
        for ax, kind in zip(axes, ("normal", "reduce"), strict=True):
            heatmap(ax, weights[kind].numpy(), row_labels=edge_labels(num_nodes), col_labels=list(ops),
                    title=f"softmax(alpha_{kind}), epoch {record['epoch']}", vmax=top)
    normal: Graph = cell_graph(genotype, "normal", title=f"normal cell, epoch {record['epoch']}")
    reduce: Graph = cell_graph(genotype, "reduce", title=f"reduction cell, epoch {record['epoch']}")
    return {"epoch": record["epoch"], "weights_normal": weights["normal"], "weights_reduce": weights["reduce"],
            "genotype": genotype, "normal": normal, "reduce": reduce}
