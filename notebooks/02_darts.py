# %% [markdown]
# # DARTS: differentiable architecture search
#
# **Paper.** Hanxiao Liu, Karen Simonyan and Yiming Yang, *DARTS: Differentiable Architecture
# Search*, ICLR 2019, [arXiv:1806.09055](https://arxiv.org/abs/1806.09055); the authors' code is
# [quark0/darts](https://github.com/quark0/darts).
#
# **Idea.** Earlier cell searches (NASNet, AmoebaNet) pick one discrete architecture at a time and
# train it, thousands of times. DARTS instead puts *every* candidate operation on every edge of a
# cell at once, mixes them with a softmax over learnable *architecture weights* $\alpha$, and
# learns $\alpha$ by gradient descent on the validation loss while the ordinary weights $w$ learn
# on the training loss. At the end, the strongest operations are kept and the discrete cell is
# retrained from scratch. This notebook is the pattern for the other one-shot methods: a supernet,
# a bilevel problem, a derivation rule.
#
# The code is in `nas_tutorial/darts.py` (supernet, hypergradients, search, derivation) and
# `nas_tutorial/cells.py` (the discrete network the found cell is retrained in).
#
# **Run time.** Fast mode (`NAS_TUTORIAL_FAST=1`, what the tests run) takes a minute or two on a
# 2-core CPU (the README's table has the time measured on the project's test machine): a tiny
# supernet (4 channels, 3 cells) on 16x16 images for 64 steps, enough for the supernet to learn
# and for $\alpha$ to move (both checked against their noise below), far too short to rank cells.
# The default mode is sized for a GPU: the paper's search network
# (16 channels, 8 cells) on 32x32 images, first order, aimed at at most 15 minutes of search
# (an estimate: this default was not timed on a GPU when the notebook was written; reduce
# `SEARCH_EPOCHS` if your GPU is slower). The sizes are in the next cell.

# %% tags=["parameters"]
import os

from nas_tutorial.utils import parse_flag

FAST = parse_flag(os.environ.get("NAS_TUTORIAL_FAST"), "NAS_TUTORIAL_FAST")  # 1/true/yes/on: fast mode

if FAST:  # CPU laptop: a tiny supernet on 16x16 images that still learns in under a minute of search
    CHANNELS, LAYERS, IMAGE_SIZE = 4, 3, 16  # supernet: 4 channels, 3 cells (normal, reduce, reduce)
    TRAIN_SIZE, BATCH_SIZE = 1024, 64  # 512 training + 512 validation images
    SEARCH_EPOCHS, STEPS_PER_EPOCH = 8, 8  # 64 alpha steps and 64 weight steps
    ARCH_LR = 3e-2  # 100x the paper's, so that alpha moves visibly in 64 steps
    SECOND_ORDER_STEPS = 1
    RETRAIN_CHANNELS, RETRAIN_LAYERS, RETRAIN_SIZE, RETRAIN_EPOCHS = 8, 3, 1000, 2
    RETRAIN_BATCH, CUTOUT, RETRAIN_SEEDS = 32, 0, 3
else:  # GPU: the paper's search network, first order, a budget of at most 15 minutes
    CHANNELS, LAYERS, IMAGE_SIZE = 16, 8, 32
    TRAIN_SIZE, BATCH_SIZE = 20_000, 64  # at most 10,000 training + 10,000 validation images
    SEARCH_EPOCHS, STEPS_PER_EPOCH = 25, None
    ARCH_LR = 3e-4  # the paper's
    SECOND_ORDER_STEPS = 20
    RETRAIN_CHANNELS, RETRAIN_LAYERS, RETRAIN_SIZE, RETRAIN_EPOCHS = 16, 8, 20_000, 20
    RETRAIN_BATCH, CUTOUT, RETRAIN_SEEDS = 64, 16, 3  # cutout of 16 pixels, as in the paper
SEED = 0

# %%
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display
from torch.func import functional_call
from torch.nn import functional as F

from nas_tutorial import cells, darts
from nas_tutorial.data import Augment, DeviceLoader, default_data_root, load_cifar10, make_subsets
from nas_tutorial.drawing import cell_graph, heatmap, mixed_cell_graph, mixed_cell_plot, plot_curves, plt_color, show
from nas_tutorial.genotypes import DARTS_V1, DARTS_V2, count_cells, enumerate_cells, random_genotype
from nas_tutorial.ops import DARTS_OPS
from nas_tutorial.training import evaluate, fit
from nas_tutorial.utils import count_parameters, pick_device, seed_everything

device = pick_device()
if device.type == "cpu":
    # one thread: the supernet is thousands of small kernels, and on the 2-core test machine two
    # threads made a fast-mode step only about 1.2x faster (benchmarks/README.md); one leaves a core free
    torch.set_num_threads(1)
cifar = load_cifar10(default_data_root())  # $NAS_TUTORIAL_DATA, else ~/.cache/nas_tutorial
print("candidate operations:", ", ".join(DARTS_OPS))
print(f"CIFAR-10 images found: {len(cifar.train_labels):,} training, {len(cifar.test_labels):,} test"
      + (" (a partial set; the full one has 50,000 and 10,000)" if len(cifar.train_labels) < 50_000 else ""))

# %% [markdown]
# ## 1. The search space
#
# A **cell** is a small directed acyclic graph. Nodes $0$ and $1$ are its inputs, the outputs of
# the two previous cells, $c_{k-2}$ and $c_{k-1}$. Each of the $n = 4$ intermediate nodes reads
# *every* node before it, so the cell has $2 + 3 + 4 + 5 = 14$ edges; the cell output concatenates
# the four intermediate nodes. Every edge carries the eight candidates of `DARTS_OPS`: the zero
# operation `none`, 3x3 max and average pooling, the identity `skip_connect`, separable 3x3 and
# 5x5 convolutions and dilated 3x3 and 5x5 convolutions. The network stacks cells; those at 1/3
# and 2/3 of the depth are **reduction** cells (stride 2 on the edges from the inputs), the others
# **normal** cells, and all cells of a type share one architecture.
#
# The *discrete* cell that DARTS outputs keeps two incoming edges per node (from distinct
# predecessors) with one operation each, not `none`. Node $i$ (counting from 0) chooses 2 of its
# $i + 2$ predecessors and one of $K = 7$ operations for each:
#
# $$ |\text{cells}| = \prod_{i=0}^{n-1} \binom{i+2}{2} K^2 . $$
#
# The formula is checked by brute-force enumeration on small sizes, then evaluated at the paper's
# size (a normal and a reduction cell together give the square).

# %%
for nodes, ops in ((1, DARTS_OPS[1:3]), (2, DARTS_OPS[1:4]), (3, DARTS_OPS[1:3])):
    assert len(enumerate_cells(nodes, ops)) == count_cells(nodes, len(ops))
one_cell = count_cells(4, len(DARTS_OPS) - 1)
print(f"discrete cells: {one_cell:,}; (normal, reduction) pairs: {one_cell ** 2:.2e}")
print(f"mixed edges per cell: {darts.num_edges(4)}, candidates per edge: {len(DARTS_OPS)}")

# %% [markdown]
# The supernet cell, every edge a *mixed operation* over all eight candidates:

# %%
show(mixed_cell_graph(4))

# %% [markdown]
# ## 2. Continuous relaxation
#
# On the edge from node $i$ to node $j$, DARTS replaces the choice of one operation by a softmax
# mixture of all of them (Eq. 2 of the paper), with one architecture weight
# $\alpha^{(i,j)}_o$ per operation:
#
# $$ \bar o^{(i,j)}(x) = \sum_{o \in \mathcal{O}}
#    \frac{\exp \alpha^{(i,j)}_o}{\sum_{o' \in \mathcal{O}} \exp \alpha^{(i,j)}_{o'}}\, o(x),
#    \qquad x^{(j)} = \sum_{i<j} \bar o^{(i,j)}(x^{(i)}) . $$
#
# So a cell type's $\alpha$ is a $14 \times 8$ matrix, and `SearchNetwork` keeps two of them
# (`alpha_normal`, `alpha_reduce`) as `nn.Parameter`s, returned by `arch_parameters()`. The mixed
# operation of the library against the formula, written out:

# %%
seed_everything(SEED)
mixed = darts.MixedOp(channels=4, stride=1)
x = torch.randn(2, 4, 8, 8)  # (B, C, H, W)
alpha_edge = torch.randn(len(DARTS_OPS))  # one edge's alpha: (K,)
weights = F.softmax(alpha_edge, dim=0)
by_hand = sum(weights[k] * op(x) for k, op in enumerate(mixed.candidates))  # Eq. 2, none included
torch.testing.assert_close(mixed(x, weights), by_hand)

supernet = darts.SearchNetwork(CHANNELS, 10, LAYERS)
# Eq. 1 and the cell output: each intermediate node sums the mixed edges from all its predecessors,
# and the cell concatenates the intermediate nodes along the channels
cell, w_normal = supernet.cells[0], F.softmax(supernet.alpha_normal, dim=-1)  # a normal cell, (14, 8)
s0 = s1 = torch.randn(2, 3 * CHANNELS, 8, 8)  # both inputs are the stem's output: (B, 3C, H, W)
nodes, edge = [cell.preprocess0(s0), cell.preprocess1(s1)], 0
for _ in range(4):
    nodes.append(sum(cell.edges[edge + j](h, w_normal[edge + j]) for j, h in enumerate(nodes)))
    edge += len(nodes) - 1
torch.testing.assert_close(cell(s0, s1, w_normal), torch.cat(nodes[2:], dim=1))  # (B, 4C, H, W)
print("alpha parameters:", [tuple(a.shape) for a in supernet.arch_parameters()])
print("in state_dict:", [k for k in supernet.state_dict() if k in supernet.named_arch_parameters()])
print(f"supernet weights w: {count_parameters(supernet) - 2 * 14 * 8:,} parameters")

# %% [markdown]
# ## 3. Bilevel optimisation
#
# The architecture should be good on held-out data *after* its weights are trained. With half of
# the CIFAR-10 training images as a validation set, that is a bilevel problem (Eq. 3-4):
#
# $$ \min_\alpha\; L_{val}(w^*(\alpha), \alpha) \quad \text{s.t.} \quad
#    w^*(\alpha) = \arg\min_w L_{train}(w, \alpha). $$
#
# Computing $w^*(\alpha)$ exactly means training the network to convergence for every step of
# $\alpha$. DARTS alternates instead (Algorithm 1): one step on $\alpha$ with a validation batch,
# one SGD step on $w$ with a training batch. The $\alpha$ step uses the gradient of the
# validation loss at weights that look one training step ahead.
#
# ## 4. The approximate architecture gradient, step by step
#
# Each step below is checked numerically on a tiny supernet in float64 (on the CPU).
#
# **Step 1, one-step look-ahead (Eq. 6).** Replace $w^*(\alpha)$ by one virtual SGD step from the
# current $w$ with learning rate $\xi$:
#
# $$ \nabla_\alpha L_{val}(w^*(\alpha), \alpha) \approx \nabla_\alpha L_{val}(w', \alpha),
#    \qquad w' = w - \xi \nabla_w L_{train}(w, \alpha). $$
#
# $\xi = 0$ gives $w' = w$: the **first-order** approximation, which treats the current weights as
# if they were optimal. The paper sets $\xi$ to the weight learning rate for the **second-order**
# approximation.

# %%
seed_everything(SEED)
tiny = darts.SearchNetwork(4, 10, 3, alpha_init_std=0.1).double()  # float64, 3 cells, both alpha used
g = torch.Generator().manual_seed(SEED)
train_batch = (torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 10, (4,), generator=g))
valid_batch = (torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 10, (4,), generator=g))
xi = 0.1
architect = darts.Architect(tiny, torch.optim.SGD(tiny.weight_parameters(), lr=xi), order=2, include_momentum=False)
w = dict(tiny.named_weight_parameters())
alpha = {"alpha_normal": tiny.alpha_normal, "alpha_reduce": tiny.alpha_reduce}
L_train, L_val = architect.loss_fn(*train_batch), architect.loss_fn(*valid_batch)

w_virtual = darts.virtual_step(L_train, w, alpha, xi)  # Eq. 6
grad_w = torch.autograd.grad(L_train(w, alpha), list(w.values()))
for (name, p), gp in zip(w.items(), grad_w):
    torch.testing.assert_close(w_virtual[name], p - xi * gp)
print(f"virtual step: ||w' - w|| = {torch.sqrt(sum(((w_virtual[n] - w[n]) ** 2).sum() for n in w)):.4f}")

# %% [markdown]
# **Step 2, the chain rule (Eq. 7).** $w'$ depends on $\alpha$, so the total derivative has two
# terms; differentiating $w' = w - \xi \nabla_w L_{train}(w,\alpha)$ gives
# $\frac{d w'}{d\alpha} = -\xi \nabla^2_{w,\alpha} L_{train}(w, \alpha)$:
#
# $$ \nabla_\alpha L_{val}(w', \alpha)
#    = \underbrace{\partial_\alpha L_{val}(w', \alpha)}_{w' \text{ held fixed}}
#    + \Big(\frac{d w'}{d\alpha}\Big)^{\!\top} \nabla_{w'} L_{val}(w', \alpha)
#    = \partial_\alpha L_{val}(w', \alpha)
#    - \xi\, \nabla^2_{\alpha, w} L_{train}(w, \alpha)\, \nabla_{w'} L_{val}(w', \alpha). $$
#
# Check: autograd straight through the virtual step (double backward, `method="exact"`) equals
# the right-hand side with the second-derivative term computed exactly as a Hessian-vector
# product.

# %%
grads = torch.autograd.grad(L_val(w_virtual, alpha), list(alpha.values()) + list(w_virtual.values()))
partial_alpha = dict(zip(alpha, grads[:2]))  # d/d alpha with w' held fixed
v = dict(zip(w, grads[2:]))  # grad_{w'} L_val(w', alpha)
hvp = darts.exact_hvp(L_train, w, alpha, v)  # grad^2_{alpha,w} L_train(w, alpha) v, by double backward
eq7 = {n: partial_alpha[n] - xi * hvp[n] for n in alpha}
exact = darts.architecture_gradient(L_train, L_val, w, alpha, xi=xi, method="exact").grads
for n in alpha:
    torch.testing.assert_close(eq7[n], exact[n], rtol=1e-9, atol=1e-12)
share = torch.sqrt(sum(((xi * hvp[n]) ** 2).sum() for n in alpha) / sum((exact[n] ** 2).sum() for n in alpha))
print(f"size of the implicit (second-order) term relative to the whole gradient: {share:.3f}")

# %% [markdown]
# **Step 3, the finite-difference trick (Eq. 8).** The implicit term needs a Hessian-vector
# product over millions of weights. With $v = \nabla_{w'} L_{val}(w', \alpha)$ and a small
# $\epsilon$, a Taylor expansion of the gradient in $w$ along $v$,
# $\nabla_\alpha L_{train}(w \pm \epsilon v, \alpha) = \nabla_\alpha L_{train}(w, \alpha)
# \pm \epsilon\, \nabla^2_{\alpha, w} L_{train}(w, \alpha)\, v + O(\epsilon^2)$, gives
#
# $$ \nabla^2_{\alpha, w} L_{train}(w, \alpha)\, v \approx
#    \frac{\nabla_\alpha L_{train}(w^+, \alpha) - \nabla_\alpha L_{train}(w^-, \alpha)}{2 \epsilon},
#    \qquad w^\pm = w \pm \epsilon v, \qquad \epsilon = \frac{0.01}{\lVert v \rVert}. $$
#
# Two more forward-backward passes instead of a second-order backward pass. The paper's
# $\epsilon$ makes the step in weight space $\epsilon \lVert v \rVert = 0.01$ long.
#
# **The key update rule from scratch.** The second-order hypergradient in a few lines of plain
# PyTorch, before any library check relies on it: the virtual step with the optimiser's momentum
# $\mu b$ and weight decay $\lambda w$ as the search uses it
# ($w' = w - \xi(\mu b + \nabla_w L_{train} + \lambda w)$; the two extra terms do not depend on
# $\alpha$, so the implicit term keeps its form), then Eq. 7 with Eq. 8. It is checked against
# the library's `Architect` after two real SGD steps (so that momentum buffers exist). The library
# also uses `torch.func.functional_call`: the virtual and perturbed weights are new tensors, no
# module is copied, and $w$ is untouched afterwards.

# %%
def darts_hypergradient(model, optimizer, train, valid, xi, eps_scale=0.01):
    alpha = model.named_arch_parameters()  # {"alpha_normal": (14, 8), "alpha_reduce": (14, 8)}
    w = model.named_weight_parameters()  # every other parameter
    group = optimizer.param_groups[0]
    mu, lam = group["momentum"], group["weight_decay"]

    def loss(weights, x, y):
        return F.cross_entropy(functional_call(model, {**weights, **alpha}, (x,)), y)

    grad_w = torch.autograd.grad(loss(w, *train), list(w.values()))
    w1 = {}  # Eq. 6 with the optimiser's momentum and weight decay: w' = w - xi (mu b + grad + lambda w)
    for (n, p), g in zip(w.items(), grad_w):
        b = optimizer.state[p].get("momentum_buffer", torch.zeros_like(p))
        w1[n] = (p - xi * (mu * b + g + lam * p)).detach().requires_grad_()
    grads = torch.autograd.grad(loss(w1, *valid), list(alpha.values()) + list(w1.values()))
    d_alpha, v = grads[: len(alpha)], grads[len(alpha):]
    eps = eps_scale / torch.sqrt(sum((g**2).sum() for g in v))  # Eq. 8: eps = 0.01 / ||v||
    w_plus = {n: (p + eps * g).detach() for (n, p), g in zip(w.items(), v)}
    w_minus = {n: (p - eps * g).detach() for (n, p), g in zip(w.items(), v)}
    g_plus = torch.autograd.grad(loss(w_plus, *train), list(alpha.values()))
    g_minus = torch.autograd.grad(loss(w_minus, *train), list(alpha.values()))
    return [da - xi * (gp - gm) / (2 * eps) for da, gp, gm in zip(d_alpha, g_plus, g_minus)]  # Eq. 7


sgd = torch.optim.SGD(tiny.weight_parameters(), lr=xi, momentum=0.9, weight_decay=3e-4)
for _ in range(2):  # two real weight steps: the momentum buffers are not zero
    sgd.zero_grad()
    F.cross_entropy(tiny(train_batch[0]), train_batch[1]).backward(inputs=tiny.weight_parameters())
    sgd.step()
ours = darts_hypergradient(tiny, sgd, train_batch, valid_batch, xi)  # (its forward passes move BN statistics)
before = {k: t.clone() for k, t in tiny.state_dict().items()}
library = darts.Architect(tiny, sgd, order=2, include_momentum=True)  # what the search uses
theirs = library.hypergradient(train_batch, valid_batch).grads
torch.testing.assert_close(ours, [theirs["alpha_normal"], theirs["alpha_reduce"]])
assert all(torch.equal(before[k], t) for k, t in tiny.state_dict().items())  # library: w, alpha, BN untouched
print("from-scratch hypergradient (momentum and weight decay in the virtual step) == library hypergradient")

# %% [markdown]
# **How good is the finite difference?** The relative error of the whole hypergradient against
# the exact one (double backward), for several step lengths $\epsilon \lVert v \rVert$, on a
# realistic case: the fast mode's supernet (4 channels, 3 cells) on two batches of 16 real
# CIFAR-10 images (16x16), at the paper's $\xi = 0.025$, in float64. Beside it, the same network
# made smooth (softplus for ReLU, average for max pooling).

# %% tags=["nbval-ignore-output"]
def smooth_copy(model):
    """The same network with softplus for ReLU and average for max pooling (same weights)."""
    copy = darts.SearchNetwork(4, 10, 3, fused=False).double()  # the readable path: ReLU and pooling as modules
    copy.load_state_dict(model.state_dict())
    for module in list(copy.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, torch.nn.Softplus(beta=4))
            elif isinstance(child, torch.nn.MaxPool2d):
                setattr(module, name, torch.nn.AvgPool2d(3, child.stride, 1, count_include_pad=False))
    return copy


def relative_error(approx, reference):
    return float(torch.sqrt(sum(((approx[n] - reference[n]) ** 2).sum() for n in reference)
                            / sum((reference[n] ** 2).sum() for n in reference)))


def finite_difference_errors(model, train, valid, scales, xi=0.025):
    """Relative error of Eq. 7 with the finite difference of Eq. 8, against exact autograd."""
    arch = darts.Architect(model, torch.optim.SGD(model.weight_parameters(), lr=xi), order=2, include_momentum=False)
    Lt, Lv = arch.loss_fn(*train), arch.loss_fn(*valid)
    w_m, a_m = model.named_weight_parameters(), model.named_arch_parameters()
    reference = darts.architecture_gradient(Lt, Lv, w_m, a_m, xi=xi, method="exact").grads
    w1 = darts.virtual_step(Lt, w_m, a_m, xi)
    g = torch.autograd.grad(Lv(w1, a_m), list(a_m.values()) + list(w1.values()))
    partial, vec = dict(zip(a_m, g[:2])), dict(zip(w_m, g[2:]))
    norm = torch.sqrt(sum((t**2).sum() for t in vec.values()))  # ||v||, over all weights together
    errors = []
    for scale in scales:
        hvp_fd = darts.finite_difference_hvp(Lt, w_m, a_m, vec, float(scale / norm))  # Eq. 8
        errors.append(relative_error({n: partial[n] - xi * hvp_fd[n] for n in a_m}, reference))  # Eq. 7
    return errors


real = make_subsets(cifar, train_size=512, test_size=10, image_size=16, seed=SEED)  # CPU, any mode
real_train = (real.train_x[:16].double(), real.train_y[:16])
real_valid = (real.valid_x[:16].double(), real.valid_y[:16])
seed_everything(SEED)
fast_net = darts.SearchNetwork(4, 10, 3).double()  # the fast mode's supernet, alpha = 0 as in the paper
scales = (1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8)
rows = list(zip(scales, finite_difference_errors(fast_net, real_train, real_valid, scales),
                finite_difference_errors(smooth_copy(fast_net), real_train, real_valid, scales)))
print(f"{'eps * ||v||':>12} {'ReLU, max pool':>15} {'softplus, avg pool':>19}   (relative error)")
for scale, err, smooth_err in rows:
    print(f"{scale:12.0e} {err:15.2e} {smooth_err:19.2e}{'   <- the paper' if scale == 1e-2 else ''}")

# %%
errors = {scale: err for scale, err, _ in rows}
smooth_errors = {scale: err for scale, _, err in rows}
assert smooth_errors[1e-3] < smooth_errors[1e-2] / 20 < smooth_errors[1e-1] / 20  # smooth: falls like eps^2
assert errors[1e-4] > errors[1e-2] > errors[1e-1]  # ReLU and max pooling: it grows as eps shrinks ...
assert errors[1e-8] < 1e-4  # ... until the step is too short to cross any kink

# %% [markdown]
# Read the table from the top. In the smooth network (right column) the central difference does
# what Taylor's theorem promises: its error falls as $\epsilon^2$, a hundredfold per decade, until
# round-off in the difference of two nearly equal gradients takes over at the shortest steps.
# The real supernet (left column) is only piecewise smooth: ReLU and max pooling put kinks in the
# loss. Double backward returns the Hessian-vector product of the piece where $w$ lies (the
# derivative almost everywhere), while a difference whose step crosses kinks measures the jump of
# the gradient there divided by $2\epsilon$. A shorter step crosses fewer kinks but weighs each
# crossing more, and here the error *grows* as $\epsilon$ shrinks, from a sizeable fraction of
# the gradient at the paper's step to several times the gradient; only a step so short that it
# crosses no kink at all agrees with autograd again. So Eq. 8 at the paper's $\epsilon$ is not a converged
# Hessian-vector product on a ReLU network: it is a finite-difference estimate of a gradient
# change over a step of length 0.01, a different but still useful search direction (the paper's
# second-order cells were found with it). `method="exact"` gives the almost-everywhere derivative
# at the price of a double backward pass.
#
# **Step 4, the update.** $\alpha$ then takes an Adam step with the *architecture* learning rate
# $\eta_\alpha = 3 \times 10^{-4}$:
#
# $$ \alpha \leftarrow \alpha - \eta_\alpha \Big[\nabla_\alpha L_{val}(w', \alpha)
#    - \xi\, \frac{\nabla_\alpha L_{train}(w^+, \alpha) - \nabla_\alpha L_{train}(w^-, \alpha)}{2\epsilon}\Big]
#    \quad (\text{plain gradient step; DARTS feeds the bracket to Adam}). $$
#
# > **Typos in the seed notes this notebook grew from.** Their final update formula (a) drops the
# > minus sign between $\nabla_\alpha L_{train}(w^+,\alpha)$ and $\nabla_\alpha L_{train}(w^-,\alpha)$,
# > (b) writes an intermediate quotient with denominator $2(w^+ - w^-)$, which is not a valid
# > expression (one cannot divide by a weight vector; the difference quotient is along $v$ with step
# > $\epsilon$, denominator $2\epsilon$), and (c) uses $\xi$ as the step size of $\alpha$: $\xi$ is the
# > learning rate of the *virtual* weight step; $\alpha$ has its own learning rate $\eta_\alpha$ and,
# > in the paper, Adam.
#
# Check: one `Architect.step` moves $\alpha$ exactly as one Adam step (betas (0.5, 0.999), weight
# decay $10^{-3}$, from a fresh state) on that bracket, written out:

# %%
arch_lr, (beta1, beta2), decay, adam_eps = 3e-4, (0.5, 0.999), 1e-3, 1e-8
stepper = darts.Architect(tiny, sgd, order=2, include_momentum=True, arch_lr=arch_lr)
bracket = stepper.hypergradient(train_batch, valid_batch).grads  # Eq. 7 with Eq. 8
old = {n: p.detach().clone() for n, p in tiny.named_arch_parameters().items()}
stepper.step(train_batch, valid_batch)
for n, p in tiny.named_arch_parameters().items():
    grad = bracket[n] + decay * old[n]  # Adam's weight decay adds lambda * alpha to the gradient
    m_hat = (1 - beta1) * grad / (1 - beta1)  # first moment from zero, bias-corrected (step 1)
    v_hat = (1 - beta2) * grad**2 / (1 - beta2)  # second moment likewise
    torch.testing.assert_close(p.detach(), old[n] - arch_lr * m_hat / (v_hat.sqrt() + adam_eps))
print("Architect.step == one Adam step on the hypergradient; largest change of alpha:",
      f"{max((p.detach() - old[n]).abs().max().item() for n, p in tiny.named_arch_parameters().items()):.2e}")

# %% [markdown]
# ### The toy problem of Figure 2
#
# The paper illustrates why the look-ahead helps with a two-variable problem:
# $L_{val}(w, \alpha) = \alpha w - 2\alpha + 1$ and $L_{train}(w, \alpha) = w^2 - 2\alpha w + \alpha^2$.
# The inner problem gives $w^*(\alpha) = \alpha$, so the outer objective is
# $L_{val}(\alpha, \alpha) = (\alpha - 1)^2$: the bilevel optimum is $(\alpha, w) = (1, 1)$.
# By hand: $w' = w - 2\xi(w - \alpha)$, $\partial_\alpha L_{val}(w', \alpha) = w' - 2$,
# $\nabla_{w'} L_{val} = \alpha$ and $\nabla^2_{\alpha, w} L_{train} = -2$, so Eq. 7 reads
#
# $$ \nabla_\alpha L_{val}(w', \alpha) = w' - 2 + 2\xi\alpha . $$
#
# The analytic formula, the finite difference (the same library code as for the supernet) and
# exact autograd agree:

# %%
print(f"{'w':>5} {'alpha':>6} {'xi':>4} {'analytic':>10} {'finite diff':>12} {'exact':>10}")
for w0, a0, xi_toy in ((-2.0, 2.0, 0.5), (0.5, -1.0, 0.5), (1.5, 0.7, 0.25), (2.0, 2.0, 0.0)):
    analytic = darts.toy_hypergradient_analytic(w0, a0, xi_toy)
    fd = darts.toy_hypergradient(w0, a0, xi_toy, method="finite_difference")
    ex = darts.toy_hypergradient(w0, a0, xi_toy, method="exact")
    assert abs(fd - analytic) < 1e-9 and abs(ex - analytic) < 1e-12
    print(f"{w0:5.1f} {a0:6.1f} {xi_toy:4.2f} {analytic:10.4f} {fd:12.4f} {ex:10.4f}")

# %% [markdown]
# Now iterate Algorithm 1 with plain gradient steps from $(\alpha, w) = (2, -2)$. At a fixed point
# the $w$ step gives $w = \alpha$, and the $\alpha$ step gives $\alpha - 2 + 2\xi\alpha = 0$,
# i.e. $\alpha = 2 / (1 + 2\xi)$. First order ($\xi = 0$) therefore settles at $(2, 2)$, on the
# constraint but not at the optimum; $\xi = 1/2$ makes the one-step look-ahead exact here
# ($w' = \alpha = w^*(\alpha)$) and reaches $(1, 1)$.

# %%
first = darts.toy_trajectory(2.0, -2.0, xi=0.0, lr_alpha=0.1, lr_w=0.1, steps=300)
second = darts.toy_trajectory(2.0, -2.0, xi=0.5, lr_alpha=0.1, lr_w=0.1, steps=300)
print(f"first order  (xi = 0):   alpha = {first[-1, 0]:.4f}, w = {first[-1, 1]:.4f}")
print(f"second order (xi = 0.5): alpha = {second[-1, 0]:.4f}, w = {second[-1, 1]:.4f}")
torch.testing.assert_close(second[-1], torch.tensor([1.0, 1.0], dtype=torch.float64), atol=1e-4, rtol=0)
assert (first[-1] - torch.tensor([1.0, 1.0], dtype=torch.float64)).abs().max() > 0.9

fig, ax = plt.subplots(figsize=(5, 4))
grid = torch.linspace(-2.5, 3, 200, dtype=torch.float64)
A, W = torch.meshgrid(grid, grid, indexing="xy")
ax.contour(A, W, darts.toy_val_loss(W, A), levels=15, cmap="Greys", linewidths=0.5)
ax.plot(grid, grid, "r--", lw=1, label=r"constraint $w = w^*(\alpha)$")
ax.plot(first[:, 0], first[:, 1], ".-", ms=2, label=r"first order, $\xi = 0$")
ax.plot(second[:, 0], second[:, 1], ".-", ms=2, label=r"second order, $\xi = 0.5$")
ax.plot([1], [1], "o", mfc="none", mec="r", ms=14, label="bilevel optimum (1, 1)")
ax.set_xlabel(r"$\alpha$")
ax.set_ylabel("$w$")
ax.set_title("Figure 2: learning dynamics on the toy problem")
ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# ## 5. A real search on a CIFAR-10 subset
#
# `darts.DartsSearch` runs Algorithm 1 with the paper's optimisers: SGD with momentum 0.9 and
# weight decay $3 \times 10^{-4}$ for $w$ (learning rate 0.025, cosine schedule), Adam with betas
# (0.5, 0.999) and weight decay $10^{-3}$ for $\alpha$, on class-balanced training and validation
# halves. Every method of this tutorial searches the same way (`nas_tutorial/search.py`): a
# frozen config (`darts.DartsConfig()` is the paper's setting), the data, and one record per step
# (here an epoch) holding the common keys `step`, `seconds`, `best_arch` (the genotype $\alpha$
# derives) and `best_score` (the supernet's validation accuracy) beside DARTS's own: $\alpha$,
# losses, accuracies. With a `checkpoint` path a stopped search resumes exactly, and a checkpoint
# of other settings or other data is refused. Where the defaults follow the authors' code rather
# than the paper (the learning-rate floor 0.001, gradient clipping at 5, momentum and weight
# decay inside the virtual step), `darts.DartsConfig` says so. This run is first order
# (DARTS V1): the cheap variant.

# %% tags=["nbval-ignore-output"]
import time

subsets = make_subsets(cifar, train_size=min(TRAIN_SIZE, len(cifar.train_labels)), test_size=500,
                       image_size=IMAGE_SIZE, device=device, seed=SEED)
seed_everything(SEED)
config = darts.DartsConfig(channels=CHANNELS, layers=LAYERS, epochs=SEARCH_EPOCHS, batch_size=BATCH_SIZE,
                           arch_lr=ARCH_LR, order=1, steps_per_epoch=STEPS_PER_EPOCH,
                           augment=Augment(crop_padding=IMAGE_SIZE // 8), seed=SEED)
run = darts.DartsSearch(config, subsets)  # builds the supernet (run.model) on the data's device
start = time.perf_counter()
history = run.run(progress=True)
print(f"search: {len(history)} epochs in {time.perf_counter() - start:.1f} s on {device.type}")
for r in history:
    print(f"epoch {r['epoch']}: train loss {r['train_loss']:.3f}, train acc {r['train_acc']:.1%}, "
          f"valid acc {r['valid_acc']:.1%}, lr {r['lr']:.4f}")

# %%
assert len(history) == SEARCH_EPOCHS
assert all(torch.isfinite(torch.tensor([r["train_loss"], r["valid_loss"]])).all() for r in history)
for r in history:
    for kind in ("normal", "reduce"):
        torch.testing.assert_close(F.softmax(r[f"alpha_{kind}"], -1).sum(1), torch.ones(14))

# %% [markdown]
# **Did it learn?** Two signals, each against the noise it must beat. The supernet's accuracy on
# the validation half against a network at chance: with $n$ validation images, a model that
# guesses scores $10\% \pm \sqrt{0.1 \cdot 0.9 / n}$ (one standard deviation). And $\alpha$
# against a random walk: Adam moves each entry by about $\eta_\alpha$ per step, so $T$ steps of
# gradients with random signs would leave $|\alpha|$ around $\eta_\alpha\sqrt{T}$, while gradients
# that keep their sign move it up to $\eta_\alpha T$.

# %% tags=["nbval-ignore-output"]
n_valid = len(subsets.valid_y)
chance_sd = math.sqrt(0.1 * 0.9 / n_valid)
steps = sum(min(STEPS_PER_EPOCH or 10**9, n_valid // BATCH_SIZE) for _ in history)
random_walk = ARCH_LR * math.sqrt(steps)
drift = max(history[-1][f"alpha_{kind}"].abs().max().item() for kind in ("normal", "reduce"))
print(f"validation accuracy {history[-1]['valid_acc']:.1%}: {(history[-1]['valid_acc'] - 0.1) / chance_sd:.1f} "
      f"standard deviations above chance (10% +- {chance_sd:.1%} on {n_valid} images)")
print(f"largest |alpha| after {steps} steps: {drift:.2f}, {drift / random_walk:.1f}x a random walk's "
      f"{random_walk:.2f} (the most Adam could move it: {ARCH_LR * steps:.2f})")

# %%
assert history[-1]["valid_acc"] > 0.1 + 5 * chance_sd  # it learned: far above chance
assert drift > 3 * random_walk  # alpha moved steadily in some directions, not at random

# %% [markdown]
# The classic picture of a DARTS search: the mean softmax weight of each operation over the 14
# edges, against the search step, for each cell type. At the start every operation has 1/8.

# %% tags=["nbval-ignore-output"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
steps_at = [r["epoch"] * (steps // len(history)) for r in history]
for ax, kind in zip(axes, ("normal", "reduce")):
    means = torch.stack([F.softmax(r[f"alpha_{kind}"], -1).mean(0) for r in history])  # (epochs, 8)
    for k, op in enumerate(DARTS_OPS):
        ax.plot([0] + steps_at, [1 / len(DARTS_OPS)] + means[:, k].tolist(), marker=".", label=op,
                color=plt_color(k), lw=2 if op in ("none", "skip_connect") else 1.2)
    ax.set_title(f"{kind} cell")
    ax.set_xlabel("search step")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("mean softmax weight")
axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
fig.tight_layout()
plt.show()

# %%
assert len(steps_at) == len(history)

# %% [markdown]
# The same weights on the supernet cell itself (the paper's Figure 1c): every candidate of every
# edge as an arc, as thick and opaque as its weight.

# %% tags=["nbval-ignore-output"]
fig, axes = plt.subplots(1, 2, figsize=(11, 5.5))
for ax, kind in zip(axes, ("normal", "reduce")):
    mixed_cell_plot(ax, F.softmax(history[-1][f"alpha_{kind}"], -1), DARTS_OPS,
                    title=f"{kind} cell after epoch {history[-1]['epoch']}")
fig.tight_layout()
plt.show()

# %%
assert F.softmax(history[-1]["alpha_normal"], -1).shape == (14, len(DARTS_OPS))

# %% [markdown]
# ### The architecture weights after the search
#
# One row per edge (`k-2→0` is the edge from input $c_{k-2}$ to intermediate node 0), one column
# per candidate; each row is a softmax and sums to 1.

# %% tags=["nbval-ignore-output"]
fig, axes = plt.subplots(1, 2, figsize=(11, 6))
view = darts.alpha_epoch_view(history, -1, axes=axes)
fig.tight_layout()
plt.show()

# %%
assert torch.allclose(view["weights_normal"].sum(1), torch.ones(14, dtype=torch.float64))
assert view["epoch"] == SEARCH_EPOCHS

# %% [markdown]
# ### The search, epoch by epoch
#
# Move the slider: the callback `darts.alpha_epoch_view` (unit-tested without the widget) redraws
# both heatmaps for the chosen epoch and derives the cells that $\alpha$ encodes at that point.
# The slider appears when you run the cells; its starting view, the last epoch, is the heatmap
# above and the two cells drawn in section 6.

# %% tags=["nbval-ignore-output"]
def show_epoch(epoch=SEARCH_EPOCHS):
    fig, axes = plt.subplots(1, 2, figsize=(11, 6))
    view = darts.alpha_epoch_view(history, epoch - 1, axes=axes)
    fig.tight_layout()
    plt.show()
    display(show(view["normal"]), show(view["reduce"]))


slider = widgets.interact(show_epoch, epoch=widgets.IntSlider(SEARCH_EPOCHS, 1, SEARCH_EPOCHS))

# %%
assert darts.alpha_epoch_view(history, 0)["epoch"] == 1

# %% [markdown]
# ## 6. The derived architecture
#
# Section 2.4 of the paper: for each intermediate node keep the **two strongest incoming edges**,
# where an edge's strength is the softmax weight of its strongest operation other than `none`,
# and on each kept edge that operation. (`none` is excluded because the zero operation would
# mean "no edge"; it still takes softmax mass from the others.)

# %%
def derive_from_scratch(alpha, ops=DARTS_OPS, num_nodes=4):
    weights = F.softmax(alpha.double(), dim=-1)  # (14, 8)
    keep = [k for k, op in enumerate(ops) if op != "none"]
    edges, row = [], 0
    for node in range(num_nodes):
        inputs = range(node + 2)  # node reads the two cell inputs and the nodes before it
        strength = {j: max(weights[row + j, k] for k in keep) for j in inputs}  # strongest non-none op
        for j in sorted(inputs, key=lambda j: -strength[j])[:2]:  # the two strongest edges
            edges.append((ops[max(keep, key=lambda k: weights[row + j, k])], j))
        row += node + 2
    return edges


g = torch.Generator().manual_seed(SEED)
for _ in range(20):
    a_n, a_r = torch.randn(14, 8, generator=g), torch.randn(14, 8, generator=g)
    assert derive_from_scratch(a_n) == list(darts.derive_genotype(a_n, a_r).normal)
print("from-scratch derivation == darts.derive_genotype on 20 random alphas")

# %% tags=["nbval-ignore-output"]
genotype = darts.derive_genotype(history[-1]["alpha_normal"], history[-1]["alpha_reduce"])
print(genotype)
show(cell_graph(genotype, "normal"))

# %%
assert genotype == run.model.genotype() and genotype.num_nodes == 4
assert list(genotype.normal) == derive_from_scratch(history[-1]["alpha_normal"])
assert str(genotype) == history[-1]["best_arch"]
assert all(op != "none" for op, _ in genotype.normal + genotype.reduce)

# %% tags=["nbval-ignore-output"]
show(cell_graph(genotype, "reduce"))

# %%
assert all(a != b for (_, a), (_, b) in zip(genotype.reduce[::2], genotype.reduce[1::2]))  # distinct inputs

# %% [markdown]
# ### Second order, a few steps
#
# Algorithm 1 written out with the library's `Architect`, first and second order (DARTS V2, $\xi$
# equal to the weight learning rate), for a few steps from the same start. A second-order
# iteration does five forward-backward passes (virtual step, validation at $w'$, two finite
# differences, weight step) against first order's two; here the first-order $\alpha$ pass
# back-propagates only to $\alpha$, which makes it a little cheaper still.
# `benchmarks/bench_darts.py` measures both.

# %% tags=["nbval-ignore-output"]
timings = {}
for order in (1, 2):
    seed_everything(SEED)
    net = darts.SearchNetwork(CHANNELS, 10, LAYERS).to(device)
    w_optimizer = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    architect_net = darts.Architect(net, w_optimizer, order=order, arch_lr=ARCH_LR)  # xi = lr for order 2
    batches = zip(DeviceLoader(subsets.train_x, subsets.train_y, BATCH_SIZE, seed=SEED),
                  DeviceLoader(subsets.valid_x, subsets.valid_y, BATCH_SIZE, seed=SEED + 1))
    start = time.perf_counter()
    for _, (train, valid) in zip(range(SECOND_ORDER_STEPS), batches):
        architect_net.step(train, valid)  # Algorithm 1, step 1: alpha
        loss = F.cross_entropy(net(train[0]), train[1])  # Algorithm 1, step 2: w
        w_optimizer.zero_grad()
        loss.backward(inputs=net.weight_parameters())
        w_optimizer.step()
    timings[order] = (time.perf_counter() - start) / SECOND_ORDER_STEPS
    print(f"order {order}: {timings[order]:.2f} s per iteration, xi = {architect_net.current_xi()}")
print(f"second order / first order: {timings[2] / timings[1]:.2f}x")

# %%
assert architect_net.current_xi() == 0.025  # second order: xi follows the weight learning rate
assert timings[2] > 0 and timings[1] > 0

# %% [markdown]
# ## 7. Retraining: the derived cell against a random cell of the same size
#
# A search is only as good as the network its cell makes when trained from scratch. The
# evaluation network (`cells.NetworkCIFAR`) stacks the discrete cell with an auxiliary head and
# drop-path, as in the paper. For a fair baseline we draw random cells from the same space and
# take the one whose parameter count is closest to the derived cell's. Both are trained with the
# same short schedule, `RETRAIN_SEEDS` times each with a different seed: one training per cell
# would compare two noisy numbers. The verdict below compares the difference of the means with
# its standard error.

# %% tags=["nbval-ignore-output"]
retrain = make_subsets(cifar, train_size=min(RETRAIN_SIZE, len(cifar.train_labels)), test_size=500,
                       image_size=IMAGE_SIZE, device=device, seed=SEED + 1)


def size(g):
    return cells.parameter_count(cells.NetworkCIFAR(g, RETRAIN_CHANNELS, 10, RETRAIN_LAYERS, auxiliary=False))


target = size(genotype)
baseline = min((random_genotype(seed=s) for s in range(20)), key=lambda g: abs(size(g) - target))
results = {}
for name, g in (("derived by DARTS", genotype), ("random, same size", baseline)):
    results[name] = []
    for seed in range(SEED, SEED + RETRAIN_SEEDS):
        seed_everything(seed)
        model = cells.NetworkCIFAR(g, RETRAIN_CHANNELS, 10, RETRAIN_LAYERS, auxiliary=True).to(device)
        loader = DeviceLoader(retrain.train_x, retrain.train_y, RETRAIN_BATCH,
                              augment=Augment(crop_padding=IMAGE_SIZE // 8, cutout=CUTOUT), seed=seed)
        curve = fit(model, loader, (retrain.valid_x, retrain.valid_y), epochs=RETRAIN_EPOCHS, lr=0.05,
                    aux_weight=0.4, epoch_hook=cells.drop_path_schedule(0.2), progress=False)
        results[name].append((curve, evaluate(model, retrain.test_x, retrain.test_y)["acc"]))
    accs = torch.tensor([acc for _, acc in results[name]])
    print(f"{name:18s}: {size(g):7,} parameters, test accuracy {accs.mean():.1%} +- {accs.std():.1%} "
          f"(mean +- SD over {RETRAIN_SEEDS} seeds: {', '.join(f'{a:.1%}' for a in accs.tolist())})")
derived, random_cell = (torch.tensor([acc for _, acc in results[n]]) for n in results)
gap = (derived.mean() - random_cell.mean()).item()
gap_se = math.sqrt((derived.var() + random_cell.var()).item() / RETRAIN_SEEDS)
print(f"difference of the means: {gap:+.1%} +- {gap_se:.1%} (standard error):",
      "larger than twice its standard error" if abs(gap) > 2 * gap_se else
      "within twice its standard error, i.e. within the noise of this short training")

# %%
for runs in results.values():
    assert len(runs) == RETRAIN_SEEDS and all(acc > 0.12 for _, acc in runs)  # chance is 10%
    assert all(math.isfinite(r["train_loss"]) for curve, _ in runs for r in curve)

# %% tags=["nbval-ignore-output"]
fig, ax = plt.subplots(figsize=(5, 3))
for k, (name, runs) in enumerate(results.items()):
    for i, (curve, _) in enumerate(runs):
        ax.plot([r["epoch"] for r in curve], [r["valid_acc"] for r in curve], marker="o", color=plt_color(k),
                alpha=0.7, label=name if i == 0 else None)
ax.set_xlabel("epoch")
ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
ax.set_ylabel("validation accuracy")
ax.set_title(f"retraining, {RETRAIN_SEEDS} seeds per cell")
ax.legend()
plt.show()

# %%
assert len(results) == 2

# %% [markdown]
# ### At the paper's size
#
# The published cells are included as data (`genotypes.DARTS_V1`, `DARTS_V2`, checked against the
# authors' release). In the paper's CIFAR-10 network (36 channels, 20 cells) the second-order cell
# has the parameter count of Table 1, 3.3M (the auxiliary head not counted, as in the paper):

# %%
paper_net = cells.NetworkCIFAR(DARTS_V2, channels=36, num_classes=10, layers=20, auxiliary=True)
print(f"DARTS V2 at 36 channels, 20 cells: {cells.parameter_count(paper_net):,} parameters "
      f"({cells.parameter_count(paper_net) / 1e6:.1f}M)")
assert round(cells.parameter_count(paper_net) / 1e6, 1) == 3.3
show(cell_graph(DARTS_V2, "normal"))

# %% [markdown]
# ## 8. Pitfalls
#
# **Skip-connection collapse.** The best-known failure of DARTS: as the search goes on, the
# weight on parameter-free operations, `skip_connect` above all, grows, because they make the
# supernet easy to optimise, and a long search can end with a normal cell made of skip
# connections that retrains badly (Zela et al., 2020; Chen et al., P-DARTS, 2019). `none` also
# tends to take the largest softmax weight on many edges, which is why it is excluded at
# derivation, but it still drains weight from the real operations and makes the
# ranking of edges by strength fragile. This run's own numbers (mean softmax weight over the 14
# normal-cell edges):

# %% tags=["nbval-ignore-output"]
parameter_free = [DARTS_OPS.index(o) for o in ("max_pool_3x3", "avg_pool_3x3", "skip_connect")]
print(f"{'epoch':>5} {'none':>6} {'skip':>6} {'param-free':>10} {'edges led by none':>18} {'skips kept':>10}")
for r in history:
    wts = F.softmax(r["alpha_normal"], dim=-1)  # (14, 8)
    kept = darts.derive_genotype(r["alpha_normal"], r["alpha_reduce"])
    skips = sum(op == "skip_connect" for op, _ in kept.normal)
    led_by_none = int((wts.argmax(1) == DARTS_OPS.index("none")).sum())
    print(f"{r['epoch']:5d} {wts[:, 0].mean():6.3f} {wts[:, 3].mean():6.3f} {wts[:, parameter_free].sum(1).mean():10.3f} "
          f"{led_by_none:18d} {skips:10d}")

# %%
assert all(0 <= sum(op == "skip_connect" for op, _ in darts.derive_genotype(r["alpha_normal"], r["alpha_reduce"]).normal)
           <= 8 for r in history)

# %% [markdown]
# The fast mode's 64 steps are far fewer than the paper's 50 epochs, too few to judge the
# collapse; in the longer default run on a GPU, watch whether the `skip` and `none` columns grow. Remedies in later
# papers: stop early, cap the number of skip connections (P-DARTS), regularise the inner problem
# (R-DARTS), or drop the softmax competition (FairDARTS).
#
# **Other pitfalls.**
# - *Search and evaluation networks differ* (8 cells and 16 channels vs 20 cells and 36
#   channels): the ranking of operations may not transfer ("depth gap", P-DARTS).
# - *Batch norm without affine parameters* in the supernet (`affine=False`), as in the authors'
#   code, so that the scale of an operation's output cannot stand in for its $\alpha$.
# - *The first-order search is not the bilevel solution*: the toy problem shows it converging to
#   the wrong point; the second-order one costs more per step (the timing in section 6 and
#   `benchmarks/README.md`).
# - *$\epsilon$ in the finite difference*: see the table in section 4; the kinks of ReLU and max
#   pooling set a floor on its accuracy.
#
# ## Summary
#
# - DARTS relaxes the choice of an operation into a softmax mixture (Eq. 2) and learns the mixing
#   logits $\alpha$ by gradient descent on the validation loss.
# - The bilevel problem is approximated by a one-step look-ahead; its gradient (Eq. 7) has an
#   implicit term, a Hessian-vector product, that Eq. 8 computes with two extra passes by finite
#   differences. Both were checked above against exact double-backward autograd.
# - The discrete cell keeps, per node, the two strongest edges and their strongest non-`none`
#   operation, and is retrained from scratch in a deeper, wider network.
#
# ## Exercises
#
# 1. Run the real search with `order=2` (`config.replace(order=2)`) and compare the derived
#    cells and the time per epoch with first order.
# 2. In the toy problem, find the values of $\xi$ for which the second-order iterates converge,
#    and where they converge to; compare with $2 / (1 + 2\xi)$.
# 3. Replace the finite difference by `method="exact"` in a search. How much slower is it, and
#    how much memory does it need (`benchmarks/bench_darts.py`)?
# 4. Remove `none` from the candidate list (`darts.SearchNetwork(ops=DARTS_OPS[1:])`) and watch
#    the $\alpha$ heatmaps. Does skip-connection collapse come sooner?
# 5. Limit the derived normal cell to at most two skip connections (as P-DARTS does) and retrain.
