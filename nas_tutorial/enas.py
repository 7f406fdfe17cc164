r"""ENAS: Efficient Neural Architecture Search via Parameter Sharing (Pham et al., ICML 2018).

A controller (an LSTM with parameters :math:`\theta`) samples a child model :math:`m` decision by
decision; every child is a sub-graph of one large network whose weights :math:`w` all children
share (:mod:`nas_tutorial.enas_space`). Training alternates two phases (Sec. 2.2):

1. fix the policy :math:`\pi(m; \theta)` and train :math:`w` by SGD on the expected training loss
   :math:`E_{m \sim \pi}[L(m; w)]`, one sampled :math:`m` per training batch;
2. fix :math:`w` and train :math:`\theta` by REINFORCE to maximise the expected reward
   :math:`E_{m \sim \pi}[R(m, w)]`, the reward being :math:`m`'s accuracy on a validation batch:
   :math:`\nabla_\theta J \approx (R - b)\, \nabla_\theta \log \pi(m; \theta)`, with :math:`b` a moving
   average of past rewards (the baseline) and the policy's entropy added to :math:`R` (a bonus).

The final architecture: sample several children from the trained policy, keep the one with the
best reward on a validation batch, train it from scratch (Sec. 2.2, "Deriving Architectures").

| symbol | code | what it is | shape |
| --- | --- | --- | --- |
| :math:`\theta` | ``controller.parameters()`` | the controller LSTM's parameters | |
| :math:`w` | ``model.parameters()`` | the shared weights of all children | |
| :math:`m` | ``arch`` | a child: ``Genotype`` (micro) or ``MacroArch`` (macro) | |
| :math:`\pi(m; \theta)` | ``controller.log_prob(arch)`` | probability of sampling ``arch`` (its log) | 0-d |
| :math:`a_t`, :math:`\pi_t` | ``Decision.choice``, ``.probs`` | one decision and its distribution | int, ``(K_t,)`` |
| :math:`R(m, w)` | ``reward`` | validation-batch accuracy (+ entropy bonus) | float |
| :math:`b` | ``baseline`` | moving average of :math:`R`, decay ``baseline_decay`` | float |
| :math:`H(\pi)` | ``entropy`` | summed entropy of the decisions' distributions | float |
| :math:`T`, :math:`c` | ``temperature``, ``tanh_constant`` | logits :math:`\to c \tanh(\text{logits} / T)` | float |
| :math:`\rho` | ``skip_prior`` | prior probability of a skip connection (macro) | 0.4 |

Settings: the paper's where it gives them, else the authors' code's (:class:`EnasConfig` says which).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .data import Augment, DeviceLoader, Subsets
from .enas_space import (
    ENAS_OPS,
    MACRO_OPS,
    MacroArch,
    SharedCellNetwork,
    SharedMacroNetwork,
    loose_ends,
    micro_genotype,
)
from .genotypes import Genotype
from .search import Config, Search, check


# -- the controller ------------------------------------------------------------------------------------------
@dataclass
class Decision:
    r"""One step of the controller: what it chose among ``options`` and with what probabilities.

    ``log_prob`` (:math:`\log \pi_t(a_t)`) keeps its graph to :math:`\theta`; ``probs`` and ``entropy``
    are detached."""

    kind: str  # "normal block 0: input 1", "layer 3: operation", "layer 3: skip from h_1", ...
    options: tuple[str, ...]
    probs: torch.Tensor  # (K_t,)
    choice: int
    log_prob: torch.Tensor  # 0-d
    entropy: torch.Tensor  # 0-d


@dataclass
class Sample:
    r"""A sampled (or scored) architecture: the child, :math:`\log \pi(m)`, the summed entropy, the
    decisions in order, and (macro) the skip-penalty KL divergence."""

    arch: Genotype | MacroArch
    log_prob: torch.Tensor
    entropy: torch.Tensor
    decisions: list[Decision]
    skip_kl: torch.Tensor


class Controller(nn.Module):
    r"""What both ENAS controllers share: an LSTM cell, a start embedding, an embedding and a softmax
    layer for the operations, and the attention that points at earlier nodes (Sec. 2.1, after
    Bello et al.'s pointer networks). Parameters start uniform in [-0.1, 0.1] (Sec. 3.2).

    ``sample(generator=g)`` draws a child; ``score(arch)`` runs the same steps with the choices
    forced, giving :math:`\log \pi(m)` of any child (what REINFORCE needs and what the tests check).
    """

    def __init__(self, num_ops: int, hidden_size: int = 100, *, temperature: float | None = 5.0,
                 tanh_constant: float | None = 2.5, op_tanh_reduce: float = 1.0):
        super().__init__()
        self.hidden_size, self.temperature, self.tanh_constant = hidden_size, temperature, tanh_constant
        self.op_tanh_reduce = op_tanh_reduce
        self.lstm = nn.LSTMCell(hidden_size, hidden_size)
        self.g_emb = nn.Parameter(torch.zeros(1, hidden_size))  # the input of a block's or layer's first step
        self.w_emb = nn.Embedding(num_ops, hidden_size)  # the input after an operation was chosen
        self.w_soft = nn.Linear(hidden_size, num_ops, bias=False)  # operation logits
        self.w_attn_1 = nn.Linear(hidden_size, hidden_size, bias=False)  # attention: key of each earlier node
        self.w_attn_2 = nn.Linear(hidden_size, hidden_size, bias=False)  # attention: query of this step
        self.v_attn = nn.Linear(hidden_size, 1, bias=False)
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)

    def logits(self, raw: torch.Tensor, *, op: bool = False) -> torch.Tensor:
        r"""Sampling logits: :math:`c \tanh(\text{raw} / T)`, with :math:`c` divided by ``op_tanh_reduce``
        for operations (authors' code). The tanh bounds how peaked a distribution can get."""
        if self.temperature is not None:
            raw = raw / self.temperature
        if self.tanh_constant is not None:
            raw = (self.tanh_constant / (self.op_tanh_reduce if op else 1.0)) * torch.tanh(raw)
        return raw

    def attend(self, keys: list[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """Attention scores of the step's state ``h`` (1, H) over the earlier nodes' keys: ``(len(keys),)``."""
        return self.v_attn(torch.tanh(torch.cat(keys) + self.w_attn_2(h))).view(-1)

    def _decide(self, logits: torch.Tensor, kind: str, options, forced: int | None,
                generator: torch.Generator | None, out: list[Decision]) -> int:
        log_p = F.log_softmax(logits, dim=-1)  # (K,)
        probs = log_p.detach().exp()
        if forced is None:
            choice = int(torch.multinomial(probs, 1, generator=generator))
        else:
            if not 0 <= forced < len(options):
                raise ValueError(f"{kind}: choice {forced} is not one of 0..{len(options) - 1}")
            choice = forced
        entropy = -(probs * log_p.detach()).sum()
        out.append(Decision(kind, tuple(options), probs, choice, log_p[choice], entropy))
        return choice

    def sample(self, *, generator: torch.Generator | None = None) -> Sample:
        r"""Sample a child from :math:`\pi(\cdot; \theta)` (keeps the graph for REINFORCE)."""
        return self._run(None, generator)

    def score(self, arch) -> Sample:
        r"""Run the controller with every choice forced to ``arch``'s: its :math:`\log \pi(m)` and entropy."""
        return self._run(arch, None)

    def _run(self, arch, generator):
        raise NotImplementedError

    def _step(self, x, state):
        h, c = self.lstm(x, state)
        return h, (h, c)


def _summed(decisions: list[Decision], kl: torch.Tensor, arch) -> Sample:
    return Sample(arch, torch.stack([d.log_prob for d in decisions]).sum(),
                  torch.stack([d.entropy for d in decisions]).sum(), decisions, kl)


class MicroController(Controller):
    r"""The cell controller: for each block of the normal cell, then of the reduction cell, the seed's
    five steps: (1) pick the first input among the earlier nodes, (2) the second, (3) an operation for
    the first, (4) one for the second, (5) one more LSTM step whose state stands for the new block
    (the node later attention can point at). Inputs are picked by attention over the nodes' states;
    the two cell inputs' states are zero, their keys come from two opening steps (authors' code)."""

    def __init__(self, num_blocks: int = 5, ops: tuple[str, ...] = ENAS_OPS, hidden_size: int = 100, **kwargs):
        super().__init__(len(ops), hidden_size, **kwargs)
        self.num_blocks, self.ops = num_blocks, tuple(ops)

    def _run(self, arch: Genotype | None, generator):
        if arch is not None and (arch.num_nodes != self.num_blocks or
                                 {op for op, _ in arch.normal + arch.reduce} - set(self.ops)):
            raise ValueError(f"architecture must have {self.num_blocks} blocks per cell and operations in "
                             f"{list(self.ops)}, got {arch}")
        decisions: list[Decision] = []
        state, x = None, self.g_emb
        cells = []
        for kind in ("normal", "reduce"):
            forced = None if arch is None else arch.cell(kind)[0]
            anchors, keys = [], []
            for _ in range(2):  # the cell's two inputs
                h, state = self._step(x, state)
                anchors.append(torch.zeros_like(h))
                keys.append(self.w_attn_1(h))
            edges = []
            for b in range(self.num_blocks):
                nodes = []
                for slot in range(2):  # steps 1 and 2: the inputs
                    h, state = self._step(x, state)
                    options = ("c_{k-2}", "c_{k-1}") + tuple(f"block {j}" for j in range(b))
                    want = None if forced is None else forced[2 * b + slot][1]
                    node = self._decide(self.logits(self.attend(keys, h)), f"{kind} block {b}: input {slot + 1}",
                                        options, want, generator, decisions)
                    nodes.append(node)
                    x = anchors[node]
                for slot in range(2):  # steps 3 and 4: the operations
                    h, state = self._step(x, state)
                    want = None if forced is None else self.ops.index(forced[2 * b + slot][0])
                    k = self._decide(self.logits(self.w_soft(h).view(-1), op=True),
                                     f"{kind} block {b}: operation {slot + 1}", self.ops, want, generator, decisions)
                    edges.append((self.ops[k], nodes[slot]))
                    x = self.w_emb.weight[k:k + 1]
                h, state = self._step(x, state)  # step 5: the new block's own state
                anchors.append(h)
                keys.append(self.w_attn_1(h))
                x = self.g_emb
            cells.append(edges)
        return _summed(decisions, torch.zeros(()), micro_genotype(*cells) if arch is None else arch)


class MacroController(Controller):
    r"""The macro controller: for each layer, an operation, then (from layer 1 on) one yes/no
    decision per earlier output :math:`h_j` by attention, :math:`P(\text{skip}) = \sigma(2\ell_j)` with
    :math:`(-\ell_j, \ell_j)` the two logits. The next step's input is the mean of the chosen
    outputs' states (authors' code). ``skip_kl``: :math:`\sum_j KL(P_j \| \rho)`, the penalty that
    pulls the skip probability towards the prior :math:`\rho` (Sec. 3.2; the authors' code applies
    the sigmoid to the logits once, :math:`\sigma(\ell_j)`, we use the sampling probability itself)."""

    def __init__(self, num_layers: int = 12, ops: tuple[str, ...] = MACRO_OPS, hidden_size: int = 100, *,
                 skip_prior: float = 0.4, **kwargs):
        super().__init__(len(ops), hidden_size, **kwargs)
        self.num_layers, self.ops, self.skip_prior = num_layers, tuple(ops), skip_prior

    def _run(self, arch: MacroArch | None, generator):
        if arch is not None and (arch.num_layers != self.num_layers or set(arch.ops) - set(self.ops)):
            raise ValueError(f"architecture must have {self.num_layers} layers with operations in {list(self.ops)}, "
                             f"got {arch}")
        decisions: list[Decision] = []
        state, x = None, self.g_emb
        anchors, keys, ops, skips = [], [], [], []
        kl = torch.zeros(())
        for i in range(self.num_layers):
            h, state = self._step(x, state)
            want = None if arch is None else self.ops.index(arch.ops[i])
            k = self._decide(self.logits(self.w_soft(h).view(-1), op=True), f"layer {i}: operation", self.ops, want,
                             generator, decisions)
            ops.append(self.ops[k])
            h, state = self._step(self.w_emb.weight[k:k + 1], state)
            chosen = []
            if i > 0:
                score = self.attend(keys, h)  # (i,)
                for j in range(i):
                    logits = self.logits(torch.stack([-score[j], score[j]]))
                    want = None if arch is None else int(j in arch.skips[i])
                    if self._decide(logits, f"layer {i}: skip from h_{j}", ("no", "yes"), want, generator, decisions):
                        chosen.append(j)
                    p = F.softmax(logits, dim=-1)  # (no, yes)
                    prior = torch.tensor([1 - self.skip_prior, self.skip_prior])
                    kl = kl + (p * (p / prior).log()).sum()
                x = torch.cat([anchors[j] for j in chosen]).sum(0, keepdim=True) / (1 + len(chosen)) if chosen \
                    else torch.zeros_like(h)
            else:
                x = self.g_emb
            skips.append(tuple(chosen))
            anchors.append(h)
            keys.append(self.w_attn_1(h))
        return _summed(decisions, kl, MacroArch(ops=ops, skips=skips) if arch is None else arch)


# -- REINFORCE, checked on a space small enough to enumerate ------------------------------------------------------
def exact_policy_gradient(controller: Controller, reward: Callable, archs: Sequence) -> list[torch.Tensor]:
    r""":math:`\nabla_\theta E_\pi[R] = \sum_m \pi(m) R(m) \nabla_\theta \log \pi(m)`, summed over every
    architecture in ``archs`` (all of the space): the gradient REINFORCE estimates."""
    params = list(controller.parameters())
    log_p = torch.stack([controller.score(a).log_prob for a in archs])  # (M,)
    rewards = torch.tensor([float(reward(a)) for a in archs])
    total = math.fsum(log_p.detach().exp().tolist())
    if abs(total - 1) > 1e-4:
        raise ValueError(f"archs must be the whole space: their probabilities sum to {total:.6f}, not 1")
    expected = (log_p.exp() * rewards).sum()  # E[R] as a function of theta
    return list(torch.autograd.grad(expected, params))


def reinforce_gradients(controller: Controller, reward: Callable, num_samples: int, *, baseline: float = 0.0,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    r"""One REINFORCE estimate per sample, :math:`(R(m) - b)\nabla_\theta \log \pi(m)`, flattened:
    ``(num_samples, P)``. Their mean estimates :func:`exact_policy_gradient` for any constant ``b``;
    their spread is what the baseline lowers."""
    params = list(controller.parameters())
    rows = []
    for _ in range(num_samples):
        s = controller.sample(generator=generator)
        grads = torch.autograd.grad(s.log_prob, params)
        rows.append((float(reward(s.arch)) - baseline) * torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


# -- sampling at random (the baseline of every comparison) -------------------------------------------------------
def random_arch(space: str, *, num_blocks: int = 5, num_layers: int = 12, ops: tuple[str, ...] | None = None,
                generator: torch.Generator | None = None) -> Genotype | MacroArch:
    """A child drawn uniformly from the micro or macro space (every choice uniform and independent)."""
    def pick(n):
        return int(torch.randint(n, (1,), generator=generator))

    if space == "micro":
        ops = ops or ENAS_OPS
        cells = [[(ops[pick(len(ops))], pick(b + 2)) for b in range(num_blocks) for _ in range(2)] for _ in range(2)]
        return micro_genotype(*cells)
    if space == "macro":
        ops = ops or MACRO_OPS
        return MacroArch(ops=[ops[pick(len(ops))] for _ in range(num_layers)],
                         skips=[[j for j in range(i) if pick(2)] for i in range(num_layers)])
    raise ValueError(f"space must be 'micro' or 'macro', got {space!r}")


# -- the settings ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnasConfig(Config):
    r"""Settings of an ENAS search; the defaults are the paper's CIFAR-10 micro search (Sec. 3.2) where it
    states them, else the authors' code's (``scripts/cifar10_micro_search.sh``), as noted.

    Attributes:
        space: ``"micro"`` (cells) or ``"macro"`` (the whole network; :meth:`paper` fills in its sizes).
        channels, layers, num_blocks: the shared network: 20 channels, 8 cells (6 normal, 2 reduction),
            5 blocks per cell (code). Macro: 36 channels, 12 layers (code).
        ops: the candidate operations (``ENAS_OPS`` or ``MACRO_OPS``).
        epochs: 310 (paper; the code's micro script runs 150).
        batch_size: 160 (code, micro; 128 macro), training and validation batches alike.
        lr_max, lr_min, lr_t0, lr_t_mul: :math:`w` by SGD with Nesterov momentum 0.9 and a cosine
            schedule with warm restarts from 0.05 to 0.0005, :math:`T_0 = 10`, :math:`T_{mul} = 2`
            (paper: 0.05, 10, 2; lr_min from the code, the paper's 0.001 is the final training's).
        weight_decay: 1e-4 (paper). grad_clip: 5 (code).
        hidden_size: 100 LSTM units (paper; the code uses 64).
        temperature, tanh_constant: 5.0 and 2.5 (paper; the code uses no temperature and 1.1, and
            divides the operations' constant by ``op_tanh_reduce`` = 2.5, default 1 here).
        entropy_weight: 0.1, the weight of the policy's entropy in the reward (the paper's Sec. 3.2 as
            we read it; the code uses 1e-4). Mind the scale: two 5-block cells carry up to 58.5 nats
            of entropy at the start, so at 0.1 the bonus outweighs the accuracy (0 to 1) itself.
        baseline_decay: 0.99 (code; the paper says "moving average").
        controller_lr: Adam at 0.00035 (paper; the code 0.0035).
        controller_steps, samples_per_step: phase 2 makes 30 Adam steps per epoch, each averaging
            the REINFORCE estimate over 10 sampled children (code; the paper does not say).
        skip_prior, skip_weight: :math:`\rho = 0.4`, the KL penalty's weight 0.8 (paper, macro only).
        final_samples: children sampled to pick the final one (paper: "several"; the code prints 10).
        train_controller: ``False`` freezes :math:`\theta` (the ablation of the notebook).
        policy: ``"controller"``, or ``"uniform"``: every child sampled uniformly (random search with
            weight sharing; the controller is then neither used nor trained).
        augment: training-time augmentation (random crop and flip; the code also uses them).
        steps_per_epoch: cap on phase 1's steps (``None``: a full pass over the training half).
        seed: seeds :math:`w`, :math:`\theta`, the batches and the sampling.
    """

    space: str = "micro"
    channels: int = 20
    layers: int = 8
    num_blocks: int = 5
    ops: tuple[str, ...] = ENAS_OPS
    num_classes: int = 10
    epochs: int = 310
    batch_size: int = 160
    lr_max: float = 0.05
    lr_min: float = 0.0005
    lr_t0: int = 10
    lr_t_mul: int = 2
    momentum: float = 0.9
    weight_decay: float = 1e-4
    grad_clip: float | None = 5.0
    hidden_size: int = 100
    temperature: float | None = 5.0
    tanh_constant: float | None = 2.5
    op_tanh_reduce: float = 1.0
    entropy_weight: float = 0.1
    baseline_decay: float = 0.99
    controller_lr: float = 0.00035
    controller_steps: int = 30
    samples_per_step: int = 10
    skip_prior: float = 0.4
    skip_weight: float = 0.8
    final_samples: int = 10
    train_controller: bool = True
    policy: str = "controller"
    augment: Augment | None = Augment()
    steps_per_epoch: int | None = None
    seed: int = 0

    def validate(self) -> None:
        check(self.space in ("micro", "macro"), "space", "must be 'micro' or 'macro'", self.space)
        valid_ops = ENAS_OPS if self.space == "micro" else MACRO_OPS
        check(isinstance(self.ops, tuple) and len(self.ops) > 0 and set(self.ops) <= set(valid_ops), "ops",
              f"must be a non-empty tuple of the {self.space} space's operations {list(valid_ops)}", self.ops)
        for name in ("channels", "layers", "num_blocks", "num_classes", "epochs", "batch_size", "hidden_size",
                     "controller_steps", "samples_per_step", "final_samples", "lr_t0", "lr_t_mul"):
            value = getattr(self, name)
            check(isinstance(value, int) and not isinstance(value, bool) and value >= 1, name,
                  "must be a positive integer", value)
        check(self.channels % 2 == 0, "channels", "must be even (factorized reductions split them in two)",
              self.channels)
        check(self.lr_max > 0 and self.controller_lr > 0, "lr_max" if self.lr_max <= 0 else "controller_lr",
              "must be positive", self.lr_max if self.lr_max <= 0 else self.controller_lr)
        check(0 <= self.lr_min <= self.lr_max, "lr_min", f"must be in [0, lr_max={self.lr_max}]", self.lr_min)
        check(0 <= self.baseline_decay < 1, "baseline_decay", "must be in [0, 1)", self.baseline_decay)
        check(0 < self.skip_prior < 1, "skip_prior", "must be a probability in (0, 1)", self.skip_prior)
        check(self.temperature is None or self.temperature > 0, "temperature", "must be None or positive",
              self.temperature)
        check(self.tanh_constant is None or self.tanh_constant > 0, "tanh_constant", "must be None or positive",
              self.tanh_constant)
        check(self.entropy_weight >= 0 and self.skip_weight >= 0,
              "entropy_weight" if self.entropy_weight < 0 else "skip_weight", "must be >= 0",
              min(self.entropy_weight, self.skip_weight))
        check(self.policy in ("controller", "uniform"), "policy", "must be 'controller' or 'uniform'", self.policy)
        check(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "steps_per_epoch", "must be None or >= 1",
              self.steps_per_epoch)

    @classmethod
    def paper(cls, space: str = "micro", **changes) -> "EnasConfig":
        """The paper's setting for ``space`` (macro: 12 layers of 36 channels, batch 128, the six
        operations, 50 controller steps of 20 children: the code's macro script)."""
        if space == "macro":
            changes = {**dict(channels=36, layers=12, ops=MACRO_OPS, batch_size=128, controller_steps=50,
                              samples_per_step=20, weight_decay=2.5e-4), **changes}
        return cls(space=space, **changes)

    @classmethod
    def fast(cls, **changes) -> "EnasConfig":
        """The notebook's CPU setting: a 3-cell micro network of 8 channels with 2 blocks per cell on
        16x16 images, 8 epochs of 12 weight steps and 10 controller steps of 4 children, and a
        controller that learns faster (Adam at 0.01, no temperature): see the notebook for why."""
        settings = dict(channels=8, layers=3, num_blocks=2, epochs=8, batch_size=64, steps_per_epoch=12,
                        controller_steps=10, samples_per_step=4, hidden_size=32, controller_lr=0.01,
                        temperature=None, entropy_weight=0.01, baseline_decay=0.9, final_samples=8,
                        lr_t0=8, augment=Augment(crop_padding=2))
        return cls(**{**settings, **changes})


# -- the search ----------------------------------------------------------------------------------------------
class EnasSearch(Search):
    r"""ENAS on a :class:`~nas_tutorial.data.Subsets`: one :meth:`step` is one epoch (phase 1, then phase 2).

    Records (one per epoch), beside the common keys (``best_arch``: the best of ``final_samples``
    children on one validation batch, ``best_score``: its accuracy there): ``epoch``, ``lr``,
    ``train_loss``/``train_acc`` (phase 1), ``reward`` (mean validation-batch accuracy of the phase-2
    children, without the entropy bonus), ``entropy`` (their mean policy entropy), ``baseline``,
    ``step_rewards``/``step_entropies`` (the same per controller step), and ``op_counts``: how often
    each operation was sampled in phase 2, ``(positions, len(ops))`` (micro: per block and slot of the
    normal then reduction cell; macro: per layer).

    The shared network lives on the data's device; the controller on the CPU (its steps are tiny and
    sequential). Rewards are measured with batch statistics (``train()`` mode, no gradient), as in the
    authors' code: the running statistics of a shared network fit no single child.
    """

    method = "enas"

    def __init__(self, config: EnasConfig, data: Subsets, *, checkpoint: str | os.PathLike | None = None):
        super().__init__(config, data, checkpoint=checkpoint)
        device = data.train_x.device
        c = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            if c.space == "micro":
                self.model = SharedCellNetwork(c.channels, c.num_classes, c.layers, num_blocks=c.num_blocks,
                                               ops=c.ops, in_channels=data.train_x.shape[1]).to(device)
                self.controller = MicroController(c.num_blocks, c.ops, c.hidden_size, temperature=c.temperature,
                                                  tanh_constant=c.tanh_constant, op_tanh_reduce=c.op_tanh_reduce)
            else:
                self.model = SharedMacroNetwork(c.layers, c.channels, c.num_classes, ops=c.ops,
                                                in_channels=data.train_x.shape[1]).to(device)
                self.controller = MacroController(c.layers, c.ops, c.hidden_size, skip_prior=c.skip_prior,
                                                  temperature=c.temperature, tanh_constant=c.tanh_constant,
                                                  op_tanh_reduce=c.op_tanh_reduce)
        self.w_optimizer = torch.optim.SGD(self.model.parameters(), lr=c.lr_max, momentum=c.momentum, nesterov=True,
                                           weight_decay=c.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(self.w_optimizer, T_0=c.lr_t0,
                                                                              T_mult=c.lr_t_mul, eta_min=c.lr_min)
        self.controller_optimizer = torch.optim.Adam(self.controller.parameters(), lr=c.controller_lr)
        self.generator = torch.Generator().manual_seed(c.seed)  # sampling children
        self.baseline: float | None = None
        self.train_loader = DeviceLoader(data.train_x, data.train_y, c.batch_size, augment=c.augment, seed=c.seed,
                                         drop_last=True)
        self.valid_loader = DeviceLoader(data.valid_x, data.valid_y, c.batch_size, seed=c.seed + 1, drop_last=True)
        if len(self.train_loader) == 0 or len(self.valid_loader) == 0:
            raise ValueError(f"field 'batch_size' ({c.batch_size}) is larger than the training "
                             f"({len(data.train_x)}) or validation ({len(data.valid_x)}) half")

    def num_steps(self) -> int:
        return self.config.epochs

    def context(self) -> dict:
        return {"data": self.data.fingerprint()}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "controller": self.controller.state_dict(),
                "w_optimizer": self.w_optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "controller_optimizer": self.controller_optimizer.state_dict(),
                "generator": self.generator.get_state(), "baseline": self.baseline,
                "train_loader": self.train_loader.state_dict(), "valid_loader": self.valid_loader.state_dict(),
                "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.controller.load_state_dict(state["controller"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.controller_optimizer.load_state_dict(state["controller_optimizer"])
        self.generator.set_state(state["generator"])
        self.baseline = state["baseline"]
        self.train_loader.load_state_dict(state["train_loader"])
        self.valid_loader.load_state_dict(state["valid_loader"])
        torch.set_rng_state(state["torch_rng"])

    # -- sampling -------------------------------------------------------------------------------------------
    def sample(self) -> Sample:
        """A child from the policy (``policy="uniform"``: uniformly, with log-probability 0 and no graph)."""
        c = self.config
        if c.policy == "uniform":
            arch = random_arch(c.space, num_blocks=c.num_blocks, num_layers=c.layers, ops=c.ops,
                               generator=self.generator)
            return Sample(arch, torch.zeros(()), torch.zeros(()), [], torch.zeros(()))
        return self.controller.sample(generator=self.generator)

    @torch.no_grad()
    def reward(self, arch, x: torch.Tensor, y: torch.Tensor) -> float:
        """:math:`R(m, w)`: ``arch``'s accuracy on the batch ``(x, y)`` with the shared weights."""
        self.model.train()
        return (self.model(x, arch).argmax(1) == y).float().mean().item()

    # -- the two phases -------------------------------------------------------------------------------------
    def train_weights(self) -> tuple[float, float]:
        """Phase 1: one pass of SGD on :math:`w`, a child sampled per batch; mean loss and accuracy."""
        c, device = self.config, self.data.train_x.device
        total = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        self.model.train()
        for step, (x, y) in enumerate(self.train_loader):
            if c.steps_per_epoch is not None and step >= c.steps_per_epoch:
                break
            with torch.no_grad():
                arch = self.sample().arch
            logits = self.model(x, arch)
            loss = F.cross_entropy(logits, y)
            self.w_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if c.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
            self.w_optimizer.step()
            total += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        return total.item() / seen, correct.item() / seen

    def _valid_batches(self):
        while True:  # passes over the validation half, as many as phase 2 needs
            yield from self.valid_loader

    def train_controller(self, batches) -> dict:
        r"""Phase 2: ``controller_steps`` Adam steps on :math:`\theta`, each on the REINFORCE estimate
        averaged over ``samples_per_step`` children, :math:`-\frac1M\sum (R - b) \log\pi(m)` (+ the
        macro skip penalty), each child's reward on its own validation batch."""
        c = self.config
        rewards, entropies, counts = [], [], []
        for _ in range(c.controller_steps):
            step_rewards, step_entropies = [], []
            loss = torch.zeros(())
            for _ in range(c.samples_per_step):
                s = self.sample()
                x, y = next(batches)
                accuracy = self.reward(s.arch, x, y)
                r = accuracy + c.entropy_weight * s.entropy.item()  # the entropy bonus (Sec. 3.2)
                if self.baseline is None:
                    self.baseline = r
                advantage = r - self.baseline  # the baseline of the samples before this one
                self.baseline = c.baseline_decay * self.baseline + (1 - c.baseline_decay) * r
                loss = loss - advantage * s.log_prob / c.samples_per_step
                if c.space == "macro":
                    loss = loss + c.skip_weight * s.skip_kl / c.samples_per_step
                step_rewards.append(accuracy)
                step_entropies.append(s.entropy.item())
                counts.append(_op_positions(s.arch, c.ops))
            if c.train_controller and c.policy == "controller":
                self.controller_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.controller_optimizer.step()
            rewards.append(sum(step_rewards) / len(step_rewards))
            entropies.append(sum(step_entropies) / len(step_entropies))
        op_counts = F.one_hot(torch.tensor(counts), len(c.ops)).sum(0)  # (positions, K)
        return {"step_rewards": rewards, "step_entropies": entropies, "op_counts": op_counts}

    def derive(self, batch, num_samples: int | None = None) -> list[tuple[object, float]]:
        """Sample ``num_samples`` children (default ``final_samples``), score each on the one validation
        ``batch``; ``(arch, accuracy)`` pairs, best first (Sec. 2.2, "Deriving Architectures")."""
        x, y = batch
        scored = []
        with torch.no_grad():
            for _ in range(num_samples or self.config.final_samples):
                arch = self.sample().arch
                scored.append((arch, self.reward(arch, x, y)))
        return sorted(scored, key=lambda pair: -pair[1])

    def step(self, index: int) -> dict:
        lr = self.w_optimizer.param_groups[0]["lr"]
        train_loss, train_acc = self.train_weights()
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"epoch {index + 1}: the training loss is not finite; lower lr_max")
        self.scheduler.step()
        batches = self._valid_batches()
        phase2 = self.train_controller(batches)
        best_arch, best_score = self.derive(next(batches))[0]
        steps = len(phase2["step_rewards"])
        return {
            "epoch": index + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
            "reward": sum(phase2["step_rewards"]) / steps, "entropy": sum(phase2["step_entropies"]) / steps,
            "baseline": self.baseline, **phase2,
            "best_arch": str(best_arch), "best_score": best_score,
        }


def _op_positions(arch, ops: tuple[str, ...]) -> list[int]:
    """The operation index at every position of a child (micro: each edge; macro: each layer)."""
    if isinstance(arch, MacroArch):
        return [ops.index(op) for op in arch.ops]
    return [ops.index(op) for op, _ in arch.normal + arch.reduce]


def search(config: EnasConfig, data: Subsets, *, checkpoint: str | os.PathLike | None = None,
           progress: bool = False, callback: Callable[[dict], None] | None = None,
           stop_after: int | None = None) -> list[dict]:
    """Run (or resume from ``checkpoint``) an ENAS search; return one record per epoch (:class:`EnasSearch`)."""
    return EnasSearch(config, data, checkpoint=checkpoint).run(progress=progress, callback=callback,
                                                               stop_after=stop_after)


def parse_arch(text: str) -> Genotype | MacroArch:
    """A record's ``best_arch`` back as an architecture (``Genotype(...)`` or ``MacroArch(...)``)."""
    text = text.strip()
    if text.startswith("MacroArch"):
        return MacroArch.parse(text)
    if text.startswith("Genotype"):
        return Genotype.parse(text)
    raise ValueError(f"architecture text must start with 'Genotype(' or 'MacroArch(', got {text[:40]!r}")


# -- the notebook's widget: the controller's decisions one at a time ------------------------------------------------
def decision_view(sample: Sample, upto: int) -> dict:
    """What the controller has built after its first ``upto`` decisions of ``sample`` (a micro sample):
    the decision being made (``decision``: the ``upto``-th, or ``None`` past the end), and the edges of
    each cell so far (``normal``, ``reduce``: lists of ``(operation, input)``; an input chosen whose
    operation is still to come shows as ``("?", input)``)."""
    if not 0 <= upto <= len(sample.decisions):
        raise ValueError(f"upto must be in 0..{len(sample.decisions)}, got {upto}")
    cells: dict[str, list] = {"normal": [], "reduce": []}
    for d in sample.decisions[:upto]:
        kind, rest = d.kind.split(" block ")
        block, what = rest.split(": ")
        edges = cells[kind]
        if what.startswith("input"):
            edges.append(("?", d.choice))
        else:
            slot = int(what[-1]) - 1
            position = 2 * int(block) + slot
            edges[position] = (d.options[d.choice], edges[position][1])
    decision = sample.decisions[upto] if upto < len(sample.decisions) else None
    return {"decision": decision, "normal": cells["normal"], "reduce": cells["reduce"]}


def partial_cell_graph(edges: list[tuple[str, int]], kind: str = "normal", *, title: str = ""):
    """The cell built so far by a list of ``(operation, input)`` edges (``"?"``: operation not yet chosen);
    its output concatenates the loose ends of the complete blocks."""
    from .drawing import INPUT_COLOR, NODE_COLOR, OUTPUT_COLOR, Graph, op_color

    g = Graph(f"{kind}_cell_so_far", title=title)
    g.nodes += [("c_k-2", "c_{k-2}", INPUT_COLOR, ""), ("c_k-1", "c_{k-1}", INPUT_COLOR, "")]
    num_blocks = (len(edges) + 1) // 2
    g.nodes += [(str(b), f"block {b}", NODE_COLOR, "" if 2 * b + 1 < len(edges) else "dashed")
                for b in range(num_blocks)]

    def node(j):
        return ("c_k-2", "c_k-1")[j] if j < 2 else str(j - 2)

    g.edges += [(node(src), str(pos // 2), op if op != "?" else "?", op_color(op) if op != "?" else "#999999")
                for pos, (op, src) in enumerate(edges)]
    complete = [e for e in edges[:2 * (len(edges) // 2)] if e[0] != "?"]
    if complete and len(complete) == 2 * (len(edges) // 2):
        g.nodes.append(("c_k", "c_{k}", OUTPUT_COLOR, ""))
        g.edges += [(node(j), "c_k", "", "#808080") for j in loose_ends(complete)]
    return g


def plot_decision(ax, decision: Decision | None):
    """Bar chart of one decision's probabilities, the chosen option highlighted; returns the ``ax``."""
    if decision is None:
        ax.set_title("all decisions made")
        ax.axis("off")
        return ax
    probs = decision.probs.tolist()
    colors = ["#d62728" if i == decision.choice else "#7f7f7f" for i in range(len(probs))]
    ax.bar(range(len(probs)), probs, color=colors)
    ax.set_xticks(range(len(probs)), decision.options, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title(f"{decision.kind}: chose {decision.options[decision.choice]} (p = {probs[decision.choice]:.2f})",
                 fontsize=9)
    return ax
