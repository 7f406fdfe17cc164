# %% [markdown]
# # ENAS: efficient neural architecture search by parameter sharing
#
# **Paper.** Hieu Pham, Melody Guan, Barret Zoph, Quoc Le and Jeff Dean, *Efficient Neural
# Architecture Search via Parameter Sharing*, ICML 2018,
# [arXiv:1802.03268](https://arxiv.org/abs/1802.03268); the authors' code is
# [melodyguan/enas](https://github.com/melodyguan/enas).
#
# **Idea.** In NAS with reinforcement learning (Zoph and Le, 2017) a controller, an LSTM, samples
# an architecture decision by decision; each sample is trained from scratch and its validation
# accuracy is the reward that trains the controller. ENAS keeps the controller and drops the
# training from scratch: every architecture the controller can sample is a *subgraph of one large
# network*, and all of them share its weights $w$. Training alternates two phases: the shared
# weights learn on the training data with one sampled child per batch, then the controller learns
# by REINFORCE from the children's accuracy on validation batches, scored with the shared weights.
# A child costs one forward pass to score instead of a training run.
#
# The code is in `nas_tutorial/enas_space.py` (the two search spaces, the shared networks, the
# published architectures) and `nas_tutorial/enas.py` (controllers, REINFORCE, the search).
# The sections follow the seed notes this tutorial grew from; where those notes are wrong, the
# notebook says so (sections 2 and 3).
#
# **Run time.** Fast mode (`NAS_TUTORIAL_FAST=1`, what the tests run) runs six short searches
# (a small cell space on 16x16 images), which take most of its time: about 140 s on the
# project's 2-core test machine (the README's table; the search cell prints the searches' time,
# the last cell the time of your run). That is more than the 90 s of a quick notebook: three
# seeds of a learning controller and three of a frozen one are what it takes to tell the
# controller's learning from the noise of one run. The
# default mode is sized for one GPU: a larger shared network on 32x32 images, the same six
# searches and a retraining, aimed at at most 15 minutes. That is an **estimate**: the default
# mode has not been timed on a GPU. The sizes are in the next cell.

# %% tags=["parameters"]
import os

from nas_tutorial.utils import parse_flag

FAST = parse_flag(os.environ.get("NAS_TUTORIAL_FAST"), "NAS_TUTORIAL_FAST")  # 1/true/yes/on: fast mode

if FAST:  # CPU laptop: EnasConfig.fast() as it is, six short searches
    IMAGE_SIZE, TRAIN_SIZE = 16, 4_000  # 2,000 training + 2,000 validation images
    SEARCH_CHANGES = {}  # changes to EnasConfig.fast(): none
    RESUME_EPOCHS = 2  # the resume check runs the first 2 epochs of seed 0 in two parts
    RETRAIN_CHANNELS, RETRAIN_LAYERS, RETRAIN_EPOCHS = 8, 3, 2
else:  # GPU: a wider, deeper shared network with 3 blocks per cell on 32x32 images (15 minutes: an estimate)
    IMAGE_SIZE, TRAIN_SIZE = 32, 10_000  # 5,000 training + 5,000 validation images
    SEARCH_CHANGES = dict(channels=16, layers=5, num_blocks=3, epochs=20, steps_per_epoch=None, lr_t0=20)
    RESUME_EPOCHS = 4  # the resume check runs the first 4 epochs of seed 0 in two parts
    RETRAIN_CHANNELS, RETRAIN_LAYERS, RETRAIN_EPOCHS = 16, 8, 10
SEEDS = (0, 1, 2)  # every search runs with three seeds: the spread is the noise a signal must beat
SEED = 0

# %%
import math
import tempfile
import time
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display
from torch import nn
from torch.nn import functional as F

from nas_tutorial import cells, drawing, enas, enas_space, ops
from nas_tutorial.data import Augment, DeviceLoader, default_data_root, load_cifar10, make_subsets
from nas_tutorial.drawing import show
from nas_tutorial.enas_space import ENAS_MACRO, ENAS_MICRO, ENAS_OPS, MACRO_OPS, MacroArch
from nas_tutorial.genotypes import enumerate_cells
from nas_tutorial.training import evaluate, fit
from nas_tutorial.utils import pick_device, seed_everything

NOTEBOOK_START = time.perf_counter()
device = pick_device()
if device.type == "cpu":
    # one thread: the shared network is many small kernels, and on the 2-core test machine a second
    # thread gains little (benchmarks/README.md); one leaves a core free
    torch.set_num_threads(1)
cifar = load_cifar10(default_data_root())  # $NAS_TUTORIAL_DATA, else ~/.cache/nas_tutorial
subsets = make_subsets(cifar, train_size=min(TRAIN_SIZE, len(cifar.train_labels)), test_size=500,
                       image_size=IMAGE_SIZE, device=device, seed=SEED)
print(f"CIFAR-10 images found: {len(cifar.train_labels):,} training, {len(cifar.test_labels):,} test"
      + (" (a partial set; the full one has 50,000 and 10,000)" if len(cifar.train_labels) < 50_000 else ""))

# %% [markdown]
# ## 1. The macro search space: a whole network
#
# The first of the paper's two spaces designs a whole convolutional network (Sec. 2.3). It has
# $L$ layers in a chain. Layer $i$ applies one of six operations to the output of the layer before
# it (3x3 and 5x5 convolutions, 3x3 and 5x5 depthwise-separable convolutions, 3x3 max and average
# pooling) and adds the outputs of any subset of the earlier layers: skip connections. With $h_0$
# the stem's output and $h_{i+1}$ layer $i$'s, layer $i$ reads $h_i$ and chooses, for each of
# $h_0, \dots, h_{i-1}$, whether to add it: $i$ yes/no decisions. So
#
# $$ |\text{macro networks}| = 6^L \cdot 2^{0 + 1 + \dots + (L-1)} = 6^L \cdot 2^{L(L-1)/2}, $$
#
# the seed's formula, checked below by enumeration and evaluated at the paper's search network of
# 12 layers.

# %%
for num_layers, layer_ops in ((1, MACRO_OPS), (2, MACRO_OPS), (3, ("conv_3x3", "max_pool_3x3"))):
    found = len(enas_space.enumerate_macro(num_layers, layer_ops))
    formula = enas_space.macro_space_size(num_layers, num_ops=len(layer_ops))
    assert found == formula == len(layer_ops) ** num_layers * 2 ** (num_layers * (num_layers - 1) // 2)
    print(f"L = {num_layers}, {len(layer_ops)} operations: {found:,} networks enumerated = formula")
paper_macro = enas_space.macro_space_size(12)
assert paper_macro == 6**12 * 2**66
print(f"L = 12, {len(MACRO_OPS)} operations: 6^12 * 2^66 = {paper_macro:.2e} networks")

# %% [markdown]
# An architecture is a `MacroArch`: one operation per layer and the sorted skip sources of each
# layer. Its text form parses back, and the authors' code writes the same thing as integers (per
# layer: the operation's index in `MACRO_OPS`, then one bit per earlier output). Below, a network
# drawn uniformly at random from the 6-layer space, drawn as the seed's figure draws it: the chain
# of layers solid and coloured by operation family, the skip connections dotted.

# %%
arch = enas.random_arch("macro", num_layers=6, generator=torch.Generator().manual_seed(SEED))
print(arch)
print("as the authors' integers:", " ".join(map(str, arch.to_enas_arc())))
assert MacroArch.parse(str(arch)) == arch == MacroArch.from_enas_arc(arch.to_enas_arc())
show(drawing.macro_graph(list(arch.ops), [list(s) for s in arch.skips], title="a random 6-layer macro network"))

# %% [markdown]
# The network ENAS found in this space (`ENAS_MACRO`, decoded from the authors' final-training
# script) has 24 layers; the first four layers of its integer string decode as follows:

# %%
print(MacroArch.from_enas_arc("0 3 0 0 1 0 2 0 0 1"))
assert MacroArch.from_enas_arc("0 3 0 0 1 0 2 0 0 1") == MacroArch(ENAS_MACRO.ops[:4], ENAS_MACRO.skips[:4])
print(f"ENAS_MACRO: {ENAS_MACRO.num_layers} layers, {sum(map(len, ENAS_MACRO.skips))} skip connections, "
      f"operations used: {sorted(set(ENAS_MACRO.ops))}")
show(drawing.macro_graph(list(ENAS_MACRO.ops), [list(s) for s in ENAS_MACRO.skips],
                         title="ENAS_MACRO: the published 24-layer network"))

# %% [markdown]
# ### One network holds every child
#
# The shared network (`SharedMacroNetwork`) keeps, at every layer, all six operations with their
# own weights. A child is a path through it: `forward(x, arch)` runs layer $i$'s chosen operation
# and adds the chosen skips. Two children that pick the same operation at a layer use *the same
# tensors* there, so a gradient step taken for one child changes the other. Below, on a 4-layer
# shared network: children `a` and `b` share only layer 0's `conv_3x3`, child `c` shares no
# layer operation with `a`. One SGD step on `a`'s loss, restricted to the layers' operations
# (the stem and the classifier, shared by every child, are held fixed to isolate the effect):

# %%
torch.manual_seed(SEED)
shared = enas_space.SharedMacroNetwork(num_layers=4, channels=8)
children = {
    "a": MacroArch(ops=["conv_3x3", "max_pool_3x3", "sep_conv_5x5", "conv_5x5"], skips=[[], [0], [], [1, 2]]),
    "b": MacroArch(ops=["conv_3x3", "avg_pool_3x3", "conv_5x5", "sep_conv_3x3"], skips=[[], [], [1], [0]]),
    "c": MacroArch(ops=["sep_conv_3x3", "avg_pool_3x3", "conv_5x5", "sep_conv_3x3"], skips=[[], [], [1], [0]]),
}


def first_weight(arch, layer):
    """The first weight tensor of the operation ``arch`` uses at ``layer`` (its 1x1 convolution)."""
    return shared.layers[layer][shared.ops.index(arch.ops[layer])][0].weight


a, b, c = children.values()
assert first_weight(a, 0) is first_weight(b, 0) and first_weight(a, 0).data_ptr() == first_weight(b, 0).data_ptr()
assert all(first_weight(a, i) is not first_weight(c, i) for i in range(4))
x, y = subsets.train_x[:32].cpu(), subsets.train_y[:32].cpu()  # a batch of real images: (32, 3, H, W)
with torch.no_grad():  # train mode, as in the search: batch statistics
    before = {name: shared(x, child) for name, child in children.items()}
sgd = torch.optim.SGD(shared.layers.parameters(), lr=0.1)  # only the layers' operations
sgd.zero_grad()
F.cross_entropy(shared(x, a), y).backward()
sgd.step()  # only a's operations have gradients: the others are skipped
with torch.no_grad():
    after = {name: shared(x, child) for name, child in children.items()}
changed = {name: not torch.equal(before[name], after[name]) for name in children}
for name, child in children.items():
    print(f"child {name}: {list(child.ops)}  output changed by the step on a: {changed[name]}")
assert changed == {"a": True, "b": True, "c": False}

# %% [markdown]
# ## 2. The micro search space: cells
#
# The second space designs two small **cells** and stacks copies of them (Sec. 2.4), as NASNet
# does. A cell has two inputs, nodes 0 and 1 (the outputs $c_{k-2}$ and $c_{k-1}$ of the two cells
# before it), and $B$ **blocks**. Block $b$ makes the seed's steps 1 to 5:
#
# 1. pick a first input among the nodes before it (the two cell inputs and the earlier blocks);
# 2. pick a second input the same way (it may be the same node);
# 3. pick an operation for the first input;
# 4. pick an operation for the second input;
# 5. add the two results: the block's output, a new node.
#
# Steps 1 to 4 are decisions; step 5 is not, it is what the child computes. The operations are
# five:

# %%
print("ENAS cell operations:", ", ".join(ENAS_OPS))
print("(identity = skip_connect; the separable convolutions are the subject of section 3)")
assert len(ENAS_OPS) == 5

# %% [markdown]
# The blocks that no other block reads are the cell's **loose ends**; the cell output concatenates
# them. There are two cell types: a **normal** cell keeps the resolution, a **reduction** cell
# halves it by giving stride 2 to the operations that read the cell's inputs. The published
# cells, `ENAS_MICRO` (5 blocks, decoded from the authors' final-training script), with the
# loose ends found from scratch:

# %%
def loose_ends_from_scratch(edges):
    num_blocks = len(edges) // 2
    read = {source for _, source in edges}  # every node some block reads
    return tuple(node for node in range(2, 2 + num_blocks) if node not in read)


for kind in ("normal", "reduce"):
    edges, concat = ENAS_MICRO.cell(kind)
    assert loose_ends_from_scratch(edges) == enas_space.loose_ends(edges) == tuple(concat)
    print(f"{kind:6s} cell: loose ends (concatenated into the output) = nodes {list(concat)}")
print(ENAS_MICRO)
print(f"{ENAS_MICRO.num_nodes} blocks per cell")
show(drawing.cell_graph(ENAS_MICRO, "normal", title="ENAS_MICRO: the published normal cell"))

# %%
show(drawing.cell_graph(ENAS_MICRO, "reduce", title="ENAS_MICRO: the published reduction cell"))

# %% [markdown]
# The network stacks the cells: a stem, then normal cells, with a reduction cell at 1/3 and 2/3 of
# the depth, then global average pooling and a linear classifier. Every cell reads the outputs of
# the two cells before it ($c_{k-1}$ solid, $c_{k-2}$ dotted below). Here the authors' search
# network, which is also `EnasConfig()`'s:

# %%
def stacked_graph(layers, title):
    g = drawing.Graph("stacked_cells", rankdir="TB", title=title)
    g.nodes += [("image", "image", drawing.INPUT_COLOR, ""), ("stem", "stem: conv 3x3, BN", drawing.NODE_COLOR, "")]
    g.edges.append(("image", "stem", "", "#555555"))
    reductions = cells.reduction_layers(layers)
    outputs = ["stem", "stem"]  # the first cell reads the stem's output twice
    for k in range(layers):
        kind = "reduction" if k in reductions else "normal"
        g.nodes.append((f"cell{k}", f"cell {k}: {kind}", "#f6c28b" if kind == "reduction" else drawing.NODE_COLOR, ""))
        g.edges.append((outputs[-1], f"cell{k}", "", "#555555"))  # c_{k-1}
        if outputs[-2] != outputs[-1]:
            g.edges.append((outputs[-2], f"cell{k}", "", "#999999"))  # c_{k-2}
            g.dotted.append((outputs[-2], f"cell{k}"))
        outputs.append(f"cell{k}")
    g.nodes.append(("head", "global average pooling, linear", drawing.OUTPUT_COLOR, ""))
    g.edges.append((outputs[-1], "head", "", "#555555"))
    return g


search_layers = enas.EnasConfig().layers
print(f"search network: {search_layers} cells, reductions at cells {cells.reduction_layers(search_layers)}")
show(stacked_graph(search_layers, f"the ENAS search network: {search_layers} cells"))

# %% [markdown]
# ### How many cells?
#
# Block $b$ (counting from 0) has $b + 2$ nodes before it. Each of its two inputs is an ordered
# choice of a node and an operation, $(b+2) \cdot 5$ ways each, so a cell with $B$ blocks has
#
# $$ \prod_{b=0}^{B-1} \big((b+2) \cdot 5\big)^2 = \big[(B+1)! \cdot 5^B\big]^2 $$
#
# possibilities. The right-hand side is the seed's formula, $[(L-2+1)! \times 5^{L-2}]^2$ with
# $L = B + 2$ nodes: it is right. `cell_space_size` is the product, checked against the seed's
# formula and, for one and two blocks, against brute-force enumeration (`enumerate_cells` with
# the inputs chosen independently, as in ENAS):

# %%
print(" B   cell_space_size   seed's formula   enumerated")
for B in range(1, 6):
    exact, seed_formula = enas_space.cell_space_size(B), enas_space.seed_cell_formula(B)
    enumerated = len(enumerate_cells(B, ENAS_OPS, distinct_inputs=False)) if B <= 2 else None
    assert exact == seed_formula == (math.factorial(B + 1) * 5**B) ** 2 and enumerated in (None, exact)
    print(f"{B:2d} {exact:17,d} {seed_formula:16,d}   {'' if enumerated is None else f'{enumerated:,d}'}")

# %% [markdown]
# **The paper's count is not the number of cells.** The paper says the micro space holds
# $(5 \times (B-2)!)^4$ networks with $B = 7$ nodes (two inputs and five blocks), about
# $1.3 \times 10^{11}$. Counting a normal and a reduction cell of five blocks exactly gives the
# square of the product above, fourteen orders of magnitude more. Per cell, the paper's formula
# has one factor 5 where every one of the ten inputs picks its own operation ($5^{10}$), and
# $(B-2)! = 5!$ for the inputs where each block picks two inputs, ordered and possibly equal,
# among $b + 2$ nodes ($\prod_b (b+2)^2 = (6!)^2$). Side by side:

# %%
blocks = 5
paper_count, exact_count = enas_space.paper_network_formula(blocks + 2), enas_space.cell_space_size(blocks) ** 2
print(f"{'per cell':>28} {'paper':>12} {'exact':>14}")
print(f"{'operation choices':>28} {5:12,d} {5 ** (2 * blocks):14,d}")
print(f"{'input choices':>28} {math.factorial(blocks):12,d} {math.factorial(blocks + 1) ** 2:14,d}")
print(f"{'one cell':>28} {5 * math.factorial(blocks):12,d} {enas_space.cell_space_size(blocks):14.2e}")
print(f"normal + reduction cell: paper (5 x 5!)^4 = {paper_count:.1e}, exact = {exact_count:.1e}")
assert paper_count == (5 * math.factorial(5)) ** 4 and round(paper_count / 1e11, 1) == 1.3
assert exact_count == (math.factorial(6) ** 2 * 5**10) ** 2 and 1e14 < exact_count / paper_count < 1e15

# %% [markdown]
# ## 3. Depthwise-separable convolutions
#
# The seed's example: a 3x3 convolution from 16 to 32 channels has one 3x3 kernel per pair of
# input and output channels. A depthwise-separable convolution splits it in two: a **depthwise**
# 3x3 convolution that filters each input channel on its own (one kernel per channel, the
# channels kept separate), then a **pointwise** 1x1 convolution that mixes the channels into the
# 32 outputs.
#
# > **An error in the seed notes.** They describe the separable convolution as "a spatial
# > convolution while keeping the channels separate and then follow with a depthwise convolution".
# > The first step (spatial, channels separate) *is* the depthwise convolution; the second step is
# > the **pointwise** (1x1) convolution, as their own worked example goes on to say.
#
# The weights of both, counted on real `nn.Conv2d` modules and with the library's formulas:

# %%
regular = nn.Conv2d(16, 32, 3, padding=1, bias=False)  # weight: (32, 16, 3, 3)
depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)  # one 3x3 kernel per channel: (16, 1, 3, 3)
pointwise = nn.Conv2d(16, 32, 1, bias=False)  # mixes the channels: (32, 16, 1, 1)
n_regular = regular.weight.numel()
n_separable = depthwise.weight.numel() + pointwise.weight.numel()
print(f"3x3 convolution 16 -> 32: {n_regular:,} weights; separable: {depthwise.weight.numel()} + "
      f"{pointwise.weight.numel()} = {n_separable} weights ({n_regular / n_separable:.1f}x fewer)")
assert (n_regular, n_separable) == (4608, 656)
assert n_regular == ops.conv_weight_count(16, 32, 3) and n_separable == ops.separable_weight_count(16, 32, 3)

# %% [markdown]
# A separable convolution *is* a regular convolution whose kernel is constrained: the kernel
# from input $i$ to output $o$ is $P_{oi} D_i$, the pointwise weight times input $i$'s depthwise
# kernel. Built that way, the regular convolution gives the same output:

# %%
with torch.no_grad():
    regular.weight.copy_(pointwise.weight[:, :, 0, 0, None, None] * depthwise.weight[None, :, 0])  # (32, 16, 3, 3)
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(regular(x), pointwise(depthwise(x)))
sep_op = ops.make_op("sep_conv_3x3", 16)
conv_weights = sum(m.weight.numel() for m in sep_op.modules() if isinstance(m, nn.Conv2d))
print(f"the cell operation sep_conv_3x3 at 16 channels: {conv_weights} convolution weights "
      "(ReLU, depthwise, pointwise, batch norm, applied twice, as in the DARTS code)")
assert conv_weights == 2 * ops.separable_weight_count(16, 16, 3)

# %% [markdown]
# ## 4. The controller
#
# The controller is an LSTM that makes the decisions one after another; each step's input is an
# embedding of the previous decision, so later decisions depend on earlier ones (Sec. 2.1).
# For a cell (`MicroController`) each block takes the steps of section 2: two input choices, two
# operation choices, then one more LSTM step whose state stands for the new block; for the normal
# cell's blocks, then the reduction cell's. An **operation** is chosen by a softmax over a linear
# layer of the LSTM state. An **input** is chosen by attention, as in pointer networks: node $j$
# gets the score $v^\top \tanh(W_1 h_j + W_2 h_t)$, with $h_j$ the LSTM state that created node
# $j$ and $h_t$ the current one. The macro controller (`MacroController`) picks an operation per
# layer, then one yes/no decision per earlier output, by the same attention.
#
# Before the softmax every score $z$ goes through $c \tanh(z / T)$ with a temperature $T$ and a
# tanh constant $c$ (Sec. 3.2): a bound on how peaked a distribution can get. With $K$ options the
# largest probability is at most $e^{c} / (e^{c} + (K-1) e^{-c})$. The transform from scratch
# against the library's `Controller.logits` (the authors' code also divides $c$ by
# `op_tanh_reduce` for the operations):

# %%
def enas_logits(raw, temperature, tanh_constant, op_tanh_reduce=1.0, op=False):
    z = raw / temperature if temperature is not None else raw
    if tanh_constant is None:
        return z
    return (tanh_constant / (op_tanh_reduce if op else 1.0)) * torch.tanh(z)  # c tanh(z / T)


raw = torch.linspace(-30, 30, 13)
for T, c_tanh, reduce in ((5.0, 2.5, 1.0), (None, 1.1, 2.5), (None, None, 1.0)):
    probe = enas.MicroController(2, hidden_size=8, temperature=T, tanh_constant=c_tanh, op_tanh_reduce=reduce)
    for op in (False, True):
        torch.testing.assert_close(probe.logits(raw, op=op), enas_logits(raw, T, c_tanh, reduce, op))


def largest_probability(bound, options):
    return math.exp(bound) / (math.exp(bound) + (options - 1) * math.exp(-bound))


print(f"paper (T = 5, c = 2.5), 5 operations: p_max = {largest_probability(2.5, 5):.3f}")
print(f"authors' micro code (c = 1.1, operations c / 2.5): 5 operations p_max = "
      f"{largest_probability(1.1 / 2.5, 5):.3f}, 2 inputs p_max = {largest_probability(1.1, 2):.3f}")

# %%
fig, ax = plt.subplots(figsize=(5.5, 3))
z = torch.linspace(-30, 30, 300)
for (T, c_tanh, reduce, op), label in (((5.0, 2.5, 1.0, False), "paper: 2.5 tanh(z / 5)"),
                                       ((None, 1.1, 2.5, False), "code, inputs: 1.1 tanh(z)"),
                                       ((None, 1.1, 2.5, True), "code, operations: 0.44 tanh(z)")):
    ax.plot(z, enas_logits(z, T, c_tanh, reduce, op), label=label)
ax.plot(z, z.clamp(-4, 4), "k:", lw=1, label="no transform (clipped)")
ax.set_xlabel("score z")
ax.set_ylabel("logit")
ax.set_title("the controller's logit transform")
ax.legend(fontsize=7)
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# **One decision from scratch.** A cell controller with two blocks and the paper's $T$ and $c$
# samples a child; its first decision, block 0's first input in the normal cell, recomputed by
# hand: two opening LSTM steps give the keys $W_1 h$ of the two cell inputs, a third step gives
# the query, and the attention scores go through the transform and a softmax.

# %%
torch.manual_seed(SEED)
controller = enas.MicroController(num_blocks=2, hidden_size=32)  # T = 5, c = 2.5 (the paper's)
sample = controller.sample(generator=torch.Generator().manual_seed(SEED))
with torch.no_grad():
    h1, c1 = controller.lstm(controller.g_emb)  # opening step: the key of c_{k-2}
    h2, c2 = controller.lstm(controller.g_emb, (h1, c1))  # the key of c_{k-1}
    h3, _ = controller.lstm(controller.g_emb, (h2, c2))  # block 0, input 1: the query
    keys = torch.cat([controller.w_attn_1(h1), controller.w_attn_1(h2)])  # (2, hidden)
    scores = controller.v_attn(torch.tanh(keys + controller.w_attn_2(h3))).view(-1)  # v^T tanh(W1 h_j + W2 h_t)
    probs = F.softmax(enas_logits(scores, 5.0, 2.5), dim=-1)
first = sample.decisions[0]
torch.testing.assert_close(probs, first.probs)
print(f"{first.kind}: options {first.options}, probabilities {[round(p, 3) for p in first.probs.tolist()]}, "
      f"chose {first.options[first.choice]}")
print(f"{len(sample.decisions)} decisions (2 cells x 2 blocks x 4); the child:\n{sample.arch}")

# %% [markdown]
# **The probability of a child** is the product of its decisions' probabilities,
# $\log \pi(m; \theta) = \sum_t \log \pi_t(a_t)$, each factor a softmax given the decisions
# before it. From the decisions' probabilities, against `controller.score(arch)`, which reruns
# the controller with every choice forced to the child's (what REINFORCE differentiates):

# %%
log_p = sum(torch.log(d.probs[d.choice]) for d in sample.decisions)  # sum_t log softmax(logits_t)[a_t]
entropy = sum(-(d.probs * d.probs.log()).sum() for d in sample.decisions)  # summed entropy of the decisions
scored = controller.score(sample.arch)
torch.testing.assert_close(log_p, scored.log_prob.detach())
torch.testing.assert_close(log_p, sample.log_prob.detach())
torch.testing.assert_close(entropy, scored.entropy)
print(f"log pi(child) = {log_p.item():.4f}, from scratch and from controller.score; entropy {entropy.item():.3f}")

# %% [markdown]
# **The settings differ between the paper and the authors' code.** `EnasConfig.paper()` takes the
# paper's value where it states one, else the code's (`EnasConfig`'s docstring says which); the
# fast mode changes a few to learn in minutes, not days:

# %%
paper_cfg, macro_cfg, fast_cfg = enas.EnasConfig.paper(), enas.EnasConfig.paper("macro"), enas.EnasConfig.fast()
table = [
    ("LSTM hidden units", "100", "64", paper_cfg.hidden_size, fast_cfg.hidden_size),
    ("temperature T", "5.0", "none", paper_cfg.temperature, fast_cfg.temperature),
    ("tanh constant c", "2.5", "1.1 micro / 1.5 macro", paper_cfg.tanh_constant, fast_cfg.tanh_constant),
    ("c divided for operations by", "-", "2.5", paper_cfg.op_tanh_reduce, fast_cfg.op_tanh_reduce),
    ("entropy weight", "0.1", "1e-4", paper_cfg.entropy_weight, fast_cfg.entropy_weight),
    ("baseline decay", "not given", "0.99", paper_cfg.baseline_decay, fast_cfg.baseline_decay),
    ("controller lr (Adam)", "0.00035", "0.0035 micro / 0.001 macro", paper_cfg.controller_lr, fast_cfg.controller_lr),
    ("skip prior rho (macro)", "0.4", "0.4", macro_cfg.skip_prior, "-"),
    ("skip KL weight (macro)", "0.8", "0.8", macro_cfg.skip_weight, "-"),
]
print(f"{'':28s} {'paper':>10s} {'authors code':>27s} {'paper()':>8s} {'fast()':>7s}")
for name, paper_value, code_value, ours, fast_value in table:
    print(f"{name:28s} {paper_value:>10s} {code_value:>27s} {str(ours):>8s} {str(fast_value):>7s}")
assert (paper_cfg.hidden_size, paper_cfg.temperature, paper_cfg.tanh_constant, paper_cfg.entropy_weight,
        paper_cfg.controller_lr, macro_cfg.skip_prior, macro_cfg.skip_weight) == (100, 5.0, 2.5, 0.1, 0.00035, 0.4, 0.8)

# %% [markdown]
# ### The controller at work, decision by decision
#
# Run the cells first: the slider below then steps through the decisions of the sampled child
# above. For the decision being made it shows the cell built so far (an input chosen but not yet
# its operation is a grey `?` edge, a block still waiting for its second input is dashed) and the
# probabilities of the options, the choice in red. The callbacks are the library's
# `enas.decision_view`, `enas.partial_cell_graph` and `enas.plot_decision`. This controller is
# untrained, so every option is about equally likely; section 6 shows a trained one. The view
# after six decisions, drawn once so that it shows in the saved notebook:

# %%
def show_decisions(upto):
    view = enas.decision_view(sample, upto)
    display(show(enas.partial_cell_graph(view["normal"], "normal", title=f"normal cell after {upto} decisions")),
            show(enas.partial_cell_graph(view["reduce"], "reduce", title=f"reduction cell after {upto} decisions")))
    fig, ax = plt.subplots(figsize=(5, 2.4))
    enas.plot_decision(ax, view["decision"])
    plt.show()


START_DECISION = 6
show_decisions(START_DECISION)

# %% tags=["nbval-ignore-output"]
decision_slider = widgets.interact(
    show_decisions, upto=widgets.IntSlider(START_DECISION, 0, len(sample.decisions), description="decisions"))

# %%
assert enas.decision_view(sample, len(sample.decisions))["decision"] is None
assert enas.decision_view(sample, len(sample.decisions))["normal"] == list(sample.arch.normal)

# %% [markdown]
# ## 5. Training: two alternating phases
#
# There are two sets of parameters: the controller's $\theta$ and the shared weights $w$.
#
# **Phase 1** fixes the policy $\pi(m; \theta)$ and trains $w$ by SGD on the expected training
# loss $E_{m \sim \pi}[L(m; w)]$: for each training batch, sample one child $m$ and take a step on
# $\nabla_w L(m; w)$, an unbiased estimate of the gradient of the expectation.
#
# **Phase 2** fixes $w$ and trains $\theta$ to maximise the expected reward
# $J(\theta) = E_{m \sim \pi}[R(m, w)]$, the reward being $m$'s accuracy on a validation batch.
# The reward is not differentiable in $\theta$ (the child is discrete), but its expectation is.
# With $\nabla \pi = \pi \nabla \log \pi$ (REINFORCE, Williams 1992):
#
# $$ \nabla_\theta J = \sum_m R(m) \nabla_\theta \pi(m; \theta)
#    = \sum_m \pi(m; \theta) R(m) \nabla_\theta \log \pi(m; \theta)
#    = E_{m \sim \pi}\big[R(m) \nabla_\theta \log \pi(m; \theta)\big]
#    \approx \frac{1}{M} \sum_{i=1}^M R(m_i) \nabla_\theta \log \pi(m_i; \theta). $$
#
# **A baseline.** Since $\sum_m \pi(m; \theta) = 1$, $E_\pi[\nabla_\theta \log \pi] =
# \sum_m \nabla_\theta \pi = \nabla_\theta 1 = 0$, so any $b$ that does not depend on the sample
# can be subtracted: $E_\pi[(R(m) - b) \nabla_\theta \log \pi(m; \theta)] = \nabla_\theta J$. The
# mean stays the same, the variance of one estimate changes, and $b \approx E[R]$ lowers it.
# ENAS uses a moving average of past rewards.
#
# **Checked on a space small enough to enumerate.** A macro controller over 3 layers with 2
# operations has 64 children. A toy reward likes convolutions and skip connections. The exact
# gradient `exact_policy_gradient` sums over all 64; `reinforce_gradients` gives one estimate per
# sample. With $R \equiv 1$ it returns the score function $\nabla_\theta \log \pi(m_i)$ itself,
# so one set of samples serves every baseline: $(R(m_i) - b) \nabla_\theta \log \pi(m_i)$.

# %% tags=["nbval-ignore-output"]
toy_ops = ("conv_3x3", "max_pool_3x3")
space = sorted(enas_space.enumerate_macro(3, toy_ops), key=str)
torch.manual_seed(SEED)
toy = enas.MacroController(3, ops=toy_ops, hidden_size=8, temperature=None)


def toy_reward(arch):  # in [0, 1]: the fraction of convolutions and of possible skips taken
    return (sum(op == "conv_3x3" for op in arch.ops) + sum(map(len, arch.skips))) / 6


exact = torch.cat([g.reshape(-1) for g in enas.exact_policy_gradient(toy, toy_reward, space)])  # (P,)
with torch.no_grad():
    p = torch.stack([toy.score(m).log_prob for m in space]).exp()  # pi(m) of all 64 children
rewards = torch.tensor([toy_reward(m) for m in space])
expected_reward = float((p * rewards).sum())  # E[R], exactly: the baseline b
N = 1000
sampled = []


def unit_reward(arch):  # R = 1: reinforce_gradients then returns grad log pi(m_i); remember m_i
    sampled.append(arch)
    return 1.0


start = time.perf_counter()
score_fn = enas.reinforce_gradients(toy, unit_reward, N, generator=torch.Generator().manual_seed(SEED))  # (N, P)
R = torch.tensor([toy_reward(m) for m in sampled])  # (N,)
estimates = {"no baseline": R[:, None] * score_fn, "b = E[R]": (R - expected_reward)[:, None] * score_fn}
check = enas.reinforce_gradients(toy, toy_reward, 20, baseline=expected_reward,
                                 generator=torch.Generator().manual_seed(SEED))  # the library, same samples
torch.testing.assert_close(check, estimates["b = E[R]"][:20])


def spread(rows):  # trace of the covariance of one estimate: mean squared distance to the mean
    return float(((rows - rows.mean(0)) ** 2).sum(1).mean())


print(f"{len(space)} children, sum of pi(m) = {p.sum():.6f}, E[R] = {expected_reward:.4f}; "
      f"the score function of {N} samples in {time.perf_counter() - start:.1f} s")
results = {}
for name, rows in estimates.items():
    error = float((rows.mean(0) - exact).norm() / exact.norm())
    noise = math.sqrt(spread(rows) / N) / float(exact.norm())  # expected size of that error
    results[name] = (error, noise, spread(rows))
    print(f"{name:12s}: relative error of the mean {error:.3f} (noise level {noise:.3f}), "
          f"variance of one estimate {spread(rows):.4f}")
print(f"the baseline divides the variance by {results['no baseline'][2] / results['b = E[R]'][2]:.1f}")

# %%
torch.testing.assert_close(p.sum(), torch.tensor(1.0))
for error, noise, _ in results.values():
    assert error < 3 * noise  # the mean of the estimates is the exact gradient, within its noise
assert results["b = E[R]"][2] < results["no baseline"][2] / 2  # the baseline lowers the variance
assert float(score_fn.mean(0).norm()) < 3 * math.sqrt(spread(score_fn) / N)  # E[grad log pi] = 0

# %% [markdown]
# The error of the running mean against the number of samples, with and without the baseline:
# both fall like $1/\sqrt{M}$ (dotted), the baseline's from a lower start.

# %% tags=["nbval-ignore-output"]
fig, ax = plt.subplots(figsize=(5.5, 3.2))
counts = torch.arange(1, N + 1)
for name, rows in estimates.items():
    running = rows.cumsum(0) / counts[:, None]  # (N, P): the mean of the first M estimates
    ax.loglog(counts, (running - exact).norm(dim=1) / exact.norm(), label=name)
    ax.loglog(counts, math.sqrt(spread(rows)) / exact.norm() / counts.sqrt(), ":", color=ax.lines[-1].get_color())
ax.set_xlabel("samples M")
ax.set_ylabel("relative error of the mean")
ax.set_title("REINFORCE against the exact gradient (64 children)")
ax.legend()
plt.show()

# %%
assert len(ax.lines) == 4

# %% [markdown]
# ## 6. A real search on CIFAR-10
#
# `enas.EnasSearch` alternates the two phases once per epoch. Phase 1: SGD with Nesterov momentum
# on $w$, one sampled child per training batch. Phase 2: Adam steps on $\theta$, each on the
# REINFORCE estimate averaged over a few children, each child's reward its accuracy on its own
# validation batch, plus the policy's entropy times a small weight (a bonus that keeps the
# controller exploring), minus the moving-average baseline. Like every search of the package
# (`nas_tutorial/search.py`) it takes a frozen config and the data and returns one record per
# epoch: `step`, `seconds`, `best_arch` (the best of a few children sampled at the end of the
# epoch, scored on one validation batch) and `best_score`, beside ENAS's own: `reward`,
# `entropy`, `step_rewards` and `step_entropies` (per controller step), `op_counts` (how often
# each operation was sampled at each position).
#
# `EnasConfig.fast()` is a small cell space (2 blocks per cell, 8 channels, 3 cells) searched for
# a few epochs with a controller that learns faster than the paper's (see the table above).
# **Did the controller learn?** A run with the controller frozen at its initial weights
# (`train_controller=False`) is the control: same shared network, same data, same seed, no
# learning of $\theta$. Each is run with three seeds: the spread over seeds is the noise.

# %% tags=["nbval-ignore-output"]
config = enas.EnasConfig.fast(**SEARCH_CHANGES)
if not FAST:  # 32x32 images: pad by 4 for the random crops
    config = config.replace(augment=Augment(crop_padding=4))
print(f"{config.layers} cells of {config.channels} channels, {config.num_blocks} blocks per cell, {config.epochs} "
      f"epochs; phase 2: {config.controller_steps} controller steps of {config.samples_per_step} children per epoch")
searches, runs = {}, {}
for seed in SEEDS:
    for learned in (True, False):  # enas.search(config, subsets) in two lines, to keep the trained controller
        searches[learned, seed] = enas.EnasSearch(config.replace(seed=seed, train_controller=learned), subsets)
        runs[learned, seed] = searches[learned, seed].run(progress=True)
search_seconds = sum(r["seconds"] for records in runs.values() for r in records)
print(f"six searches: {search_seconds:.0f} s on {device.type}")

# %% [markdown]
# A frozen controller starts (and stays) almost uniform: its parameters start in $[-0.1, 0.1]$,
# so every score is near 0 and every decision near a uniform choice. The entropy of uniform
# decisions is the largest possible: block $b$ picks two inputs among $b + 2$ nodes and two of
# $K = 5$ operations, so the maximum is $2 \sum_b [2 \ln(b+2) + 2 \ln K]$ for the two cells. The
# frozen runs are therefore also **random search with weight sharing**, the baseline that later
# papers found hard to beat (Li and Talwalkar, 2019).

# %% tags=["nbval-ignore-output"]
assert len(runs) == 2 * len(SEEDS)  # six searches: three seeds, learned and frozen
max_entropy = 2 * sum(2 * math.log(b + 2) + 2 * math.log(len(config.ops)) for b in range(config.num_blocks))
print(f"maximum entropy of the space: {max_entropy:.2f} nats")
print(f"{'seed':>4} {'run':>8} {'reward first epoch':>19} {'last epoch':>11} {'entropy at start':>17} {'at end':>7}")
for seed in SEEDS:
    for learned in (True, False):
        rs = runs[learned, seed]
        print(f"{seed:4d} {'learned' if learned else 'frozen':>8} {rs[0]['reward']:19.3f} {rs[-1]['reward']:11.3f} "
              f"{rs[0]['step_entropies'][0]:17.2f} {rs[-1]['entropy']:7.2f}")
last = {learned: torch.tensor([runs[learned, s][-1]["reward"] for s in SEEDS]) for learned in (True, False)}
gap = last[True] - last[False]
print(f"last-epoch reward, learned - frozen: {', '.join(f'{g:+.3f}' for g in gap.tolist())}; mean {gap.mean():+.3f}, "
      f"spread of the frozen runs (SD over seeds) {last[False].std():.3f}")

# %%
assert all(len(records) == config.epochs for records in runs.values())
assert all(p.abs().max() <= 0.1 for p in enas.MicroController(2).parameters())  # theta starts in [-0.1, 0.1]
assert (gap > 0).all()  # in every seed the learned controller ends above its frozen twin
assert gap.mean() > 2 * last[False].std()  # by more than twice the noise between seeds
for seed in SEEDS:
    learned_run, frozen_run = runs[True, seed], runs[False, seed]
    assert learned_run[-1]["entropy"] < 0.8 * learned_run[0]["step_entropies"][0]  # the policy concentrated
    assert all(abs(h - max_entropy) < 0.01 * max_entropy for r in frozen_run for h in r["step_entropies"])

# %% [markdown]
# Reward (the children's validation-batch accuracy, without the entropy bonus) and policy
# entropy at every controller step, mean over the seeds with a band of one standard deviation:

# %% tags=["nbval-ignore-output"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
for ax, key, label in zip(axes, ("step_rewards", "step_entropies"), ("reward", "entropy (nats)")):
    for k, learned in enumerate((True, False)):
        curves = torch.tensor([[v for r in runs[learned, s] for v in r[key]] for s in SEEDS])  # (seeds, steps)
        steps = torch.arange(1, curves.shape[1] + 1)
        mean, sd = curves.mean(0), curves.std(0)
        ax.plot(steps, mean, color=drawing.plt_color(k), label="controller learns" if learned else "frozen (uniform)")
        ax.fill_between(steps, mean - sd, mean + sd, color=drawing.plt_color(k), alpha=0.25)
    ax.set_xlabel("controller step")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
axes[1].axhline(max_entropy, color="k", ls=":", lw=1, label="maximum entropy")
axes[0].set_title(f"reward, mean +- SD over {len(SEEDS)} seeds")
axes[1].set_title("policy entropy")
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
assert curves.shape == (len(SEEDS), config.epochs * config.controller_steps)

# %% [markdown]
# The trained controller of seed 0 (the learned run) samples a child: every decision with its
# probabilities, one row per block (two inputs, two operations), the choice in red. Compare with
# the nearly uniform decisions of the untrained controller in section 4.

# %% tags=["nbval-ignore-output"]
trained = searches[True, SEED].controller
trained_sample = trained.sample(generator=torch.Generator().manual_seed(SEED))
fig, axes = plt.subplots(2 * config.num_blocks, 4, figsize=(14, 2.1 * 2 * config.num_blocks))
for ax, decision in zip(axes.flat, trained_sample.decisions):
    enas.plot_decision(ax, decision)
    ax.title.set_fontsize(7)
    ax.tick_params(labelsize=7)
fig.suptitle(f"one child of the trained controller (seed {SEED}): every decision")
fig.tight_layout()
plt.show()
print(f"entropy of its decisions: {trained_sample.entropy:.2f} nats (the maximum for this space: {max_entropy:.2f})")


def distance_from_uniform(what):  # the largest |p - 1/K| over the decisions of one kind
    return max(float((d.probs - 1 / len(d.probs)).abs().max()) for d in trained_sample.decisions if what in d.kind)


print(f"largest distance of a probability from uniform: input decisions {distance_from_uniform('input'):.3f}, "
      f"operation decisions {distance_from_uniform('operation'):.3f}")

# %%
assert len(trained_sample.decisions) == axes.size == 8 * config.num_blocks
assert trained_sample.entropy < 0.8 * max_entropy  # far from uniform

# %% [markdown]
# In the run saved here the operations concentrated while the input choices barely moved (the
# last line above). An input's score compares that node's key with the others', and the keys of
# the two cell inputs come from two LSTM steps with the same input (as in the authors' code):
# at the start they are nearly equal, and their scores separate far more slowly than the
# operation logits, a linear layer of the state.
#
# Where the policy went: the share of each operation among the children sampled in phase 2, at
# every position of the cells (block, first or second input), in the first and the last epoch of
# seed 0, learned and frozen. One colour scale from 0 to 1.

# %% tags=["nbval-ignore-output"]
positions = [f"{kind} block {b}, op {slot}" for kind in ("normal", "reduce") for b in range(config.num_blocks)
             for slot in (1, 2)]


def op_shares(record):
    counts = record["op_counts"].double()  # (positions, K)
    return counts / counts.sum(1, keepdim=True)


panels = [(runs[True, SEED][0], "learned, epoch 1"), (runs[True, SEED][-1], f"learned, epoch {config.epochs}"),
          (runs[False, SEED][-1], f"frozen, epoch {config.epochs}")]
fig, axes = plt.subplots(1, 3, figsize=(15, 0.9 + 0.35 * len(positions)))
for ax, (record, title) in zip(axes, panels):
    drawing.heatmap(ax, op_shares(record), row_labels=positions, col_labels=list(config.ops), vmin=0, vmax=1,
                    title=f"sampled operations, seed {SEED}, {title}")
fig.tight_layout()
plt.show()

# %%
for record, _ in panels:
    torch.testing.assert_close(op_shares(record).sum(1), torch.ones(len(positions), dtype=torch.float64))

# %% [markdown]
# ### Stopping and resuming
#
# With a `checkpoint` path the search writes its whole state after every epoch (shared weights,
# controller, both optimisers, the random generators, the baseline, the records). Below, the
# first epochs of the learned seed-0 run again: stopped halfway (`stop_after`), as a killed
# process would be, then started again with the same path. On a CPU the records equal the
# uninterrupted run's, every number but the time (on a GPU, nondeterministic kernels make the two runs
# drift apart, so only the stopped part is compared there).

# %% tags=["nbval-ignore-output"]
checkpoint = Path(tempfile.mkdtemp()) / "enas.pt"
resume_config = config.replace(seed=SEED, epochs=RESUME_EPOCHS)
part = enas.search(resume_config, subsets, checkpoint=checkpoint, stop_after=RESUME_EPOCHS // 2)  # interrupted
resumed = enas.search(resume_config, subsets, checkpoint=checkpoint, progress=True)  # a new call: it resumes


def strip(records):  # without the wall-clock time; tensors (op_counts) as lists, comparable with ==
    return [{k: v.tolist() if torch.is_tensor(v) else v for k, v in r.items() if k != "seconds"} for r in records]


same = strip(resumed) == strip(runs[True, SEED][:RESUME_EPOCHS])
print(f"stopped after {len(part)} epoch(s), resumed to {len(resumed)}: records equal the uninterrupted run's: {same}")

# %%
assert len(part) == RESUME_EPOCHS // 2 and len(resumed) == RESUME_EPOCHS
assert strip(resumed[:len(part)]) == strip(part)  # the finished epochs came back from the file
assert same or device.type != "cpu"  # exact on a CPU; on a GPU nondeterministic kernels make runs drift

# %% [markdown]
# ## 7. The derived architecture
#
# "Deriving architectures" (Sec. 2.2): sample a few children from the trained policy, keep the
# one with the best reward on a validation batch, and train it from scratch. The last record of
# the learned seed-0 run holds that child:

# %% tags=["nbval-ignore-output"]
found = enas.parse_arch(runs[True, SEED][-1]["best_arch"])
print(found)
edges = list(found.normal + found.reduce)
parameter_free = sum(op in ("max_pool_3x3", "avg_pool_3x3", "skip_connect") for op, _ in edges)
print(f"parameter-free operations (pooling, identity): {parameter_free} of {len(edges)} edges; "
      f"validation-batch accuracy with the shared weights {runs[True, SEED][-1]['best_score']:.3f}")
display(show(drawing.cell_graph(found, "normal", title="found normal cell (seed 0)")))
show(drawing.cell_graph(found, "reduce", title="found reduction cell (seed 0)"))

# %%
assert found.num_nodes == config.num_blocks and str(found) == runs[True, SEED][-1]["best_arch"]
assert tuple(found.normal_concat) == enas_space.loose_ends(list(found.normal))

# %% [markdown]
# Look at the operations: in short searches like this one, the controller tends to favour
# parameter-free operations. Early on, pooling children score best with the shared weights,
# because a convolution's weights need many steps before they help, so the reward pushes the policy
# toward pooling, and the pooling children then get the training steps. Section 8 comes back to
# this. The found cells, trained from scratch in the evaluation network of the cell papers
# (`cells.NetworkCIFAR`, as in the DARTS notebook) on the training half of the search subset, and
# scored on the test subset. With $n$ test images a network that guesses scores
# $10\% \pm \sqrt{0.1 \cdot 0.9 / n}$ (one standard deviation):

# %% tags=["nbval-ignore-output"]
seed_everything(SEED)
model = cells.NetworkCIFAR(found, RETRAIN_CHANNELS, 10, RETRAIN_LAYERS, auxiliary=True).to(device)
loader = DeviceLoader(subsets.train_x, subsets.train_y, 64, augment=Augment(crop_padding=IMAGE_SIZE // 8), seed=SEED)
start = time.perf_counter()
curve = fit(model, loader, (subsets.valid_x, subsets.valid_y), epochs=RETRAIN_EPOCHS, lr=0.05, aux_weight=0.4,
            epoch_hook=cells.drop_path_schedule(0.2), progress=False)
test_acc = evaluate(model, subsets.test_x, subsets.test_y)["acc"]
chance_sd = math.sqrt(0.1 * 0.9 / len(subsets.test_y))
print(f"{cells.parameter_count(model):,} parameters, {RETRAIN_EPOCHS} epochs in {time.perf_counter() - start:.1f} s: "
      f"test accuracy {test_acc:.1%}, {(test_acc - 0.1) / chance_sd:.1f} standard deviations above chance "
      f"(10% +- {chance_sd:.1%} on {len(subsets.test_y)} images)")

# %%
assert len(curve) == RETRAIN_EPOCHS and all(math.isfinite(r["train_loss"]) for r in curve)
assert test_acc > 0.1 + 5 * chance_sd  # it learned: far above chance

# %% [markdown]
# ### At the paper's size
#
# The published architectures are data in the package. `enas_space.published_parameter_counts`
# builds them as the authors' final code builds them (`enas_space.MicroNetwork`, `MacroNetwork`)
# and counts as that code counts (auxiliary head left out):
#
# - **Micro** (the paper: 4.6M). The authors' final cell differs from the DARTS-style
#   `cells.NetworkCIFAR`: every cell passes its second input through one more 1x1 convolution. With
#   the released script's 15 normal plus 2 reduction cells at 36 channels the count is 3.9M; with
#   18 plus 2 (six normal cells per stage, the NASNet and DARTS setting) it is the paper's 4.6M. That
#   the paper used 18 is **our inference from the count**; the released script says 15.
# - **Macro** (the paper: 21.3M). **Not reproduced.** Built as the released code builds a fixed
#   architecture (its separable convolutions as plain ones, widths 96, 192, 384) and with real
#   separable convolutions, the counts are far from 21.3M. No starting width rounds to it either.
#   The function's docstring lists every construction tried, the first upload of the code included.

# %%
counts = enas_space.published_parameter_counts()
paper_reports = {"micro": 4.6, "macro": 21.3}
for name, n in counts.items():
    print(f"{name:38s}: {n:>11,} parameters ({n / 1e6:.1f}M); the paper reports "
          f"{paper_reports[name.split(',')[0]]}M")
assert round(counts["micro, 18 + 2 cells"] / 1e6, 1) == 4.6  # the paper's figure, at 18 + 2 cells
assert counts["micro, released script (15 + 2 cells)"] == 3_894_372
assert counts["macro, released code"] == 42_559_392 and counts["macro, separable convolutions"] == 30_947_424
micro_net = cells.NetworkCIFAR(ENAS_MICRO, channels=36, num_classes=10, layers=17, auxiliary=False)
print(f"for comparison, the DARTS-style NetworkCIFAR at 15 + 2 cells: {cells.parameter_count(micro_net):,}")

# %% [markdown]
# ## 8. Pitfalls
#
# - **Rewards with train-mode batch norm.** The shared network's running statistics mix every
#   child it has trained, so they fit no single child; the reward is measured with the batch's own
#   statistics (`model.train()` under `torch.no_grad()`), as in the authors' code. A child's reward
#   then depends on the batch it meets: another source of noise in $R$.
# - **The baseline must not use the current sample.** The proof that a baseline keeps the mean
#   needs $b$ independent of the sample $m$. `EnasSearch` computes each child's advantage
#   $R - b$ with the moving average of the rewards *before* it, then updates the average. Folding
#   the current reward into $b$ first biases the estimate: with $b = R(m)$ it would be zero.
# - **Paper or code?** The authors' code differs from the paper on most controller settings (the
#   table in section 4); the code's operation logits at $c / 2.5$ can never be very peaked. Say
#   which one you reproduce.
# - **Shared weights favour what they trained most.** A child's reward is measured with weights
#   shaped by all children, mostly by those the controller sampled often. A rich-get-richer loop
#   follows: sampled more, trained more, scored higher, sampled more. Operations that help early
#   (pooling, identity) can win for that reason alone (compare the found cells of section 7), and
#   the ranking of children by shared-weight accuracy correlates only loosely with their ranking
#   when trained alone (Sciuto et al., 2019; Yu et al., 2020).
# - **Counting the space.** The seed's per-cell formula is right; the paper's
#   $(5 \times (B-2)!)^4$ undercounts the micro space by fourteen orders of magnitude (section 2).
# - **Compare with random search.** The frozen controller above *is* random search with weight
#   sharing; a method's gain is its gap to that, over several seeds, not its accuracy alone.
#
# ## Summary
#
# - ENAS makes every child a subgraph of one network with shared weights, so scoring a child costs
#   a forward pass instead of a training run.
# - Two spaces: a macro space of whole networks ($6^L \cdot 2^{L(L-1)/2}$) and a micro space of
#   two cells ($[(B+1)! \cdot 5^B]^2$ per cell), with depthwise-separable convolutions among the
#   operations.
# - An LSTM controller samples the decisions one by one, inputs by attention and operations by a
#   softmax, its logits bounded by $c \tanh(z / T)$; $\log \pi(m)$ is the sum of the decisions'
#   log-probabilities.
# - Training alternates SGD on $w$ with a sampled child per batch and REINFORCE on $\theta$ with a
#   moving-average baseline; on an enumerable space the REINFORCE mean matched the exact gradient
#   and the baseline lowered its variance.
# - On CIFAR-10, the learned controller's reward rose above a frozen (uniform) controller's in every
#   seed, by more than the spread between seeds, and its entropy fell.
#
# ## Exercises
#
# 1. Run the search with `EnasConfig.paper()`'s controller settings (`hidden_size=100`,
#    `temperature=5.0`, `controller_lr=0.00035`, `entropy_weight=0.1`) in the fast space. How many
#    epochs before the reward separates from the frozen runs?
# 2. Retrain a random cell of the same space (`enas.random_arch("micro", num_blocks=...)`) with the
#    same schedule as the found one, over three seeds each. Is the difference larger than the noise?
# 3. Measure rewards in `eval()` mode (running statistics) instead of `train()` mode and compare the
#    rewards and the controller's learning.
# 4. Search the macro space (`EnasConfig.fast(space="macro", ops=MACRO_OPS, layers=6, channels=8)`)
#    and draw the found network with `drawing.macro_graph`.
# 5. Try `baseline_decay=0.0` (the baseline is then the previous child's reward alone) against the
#    fast setting's moving average, over three seeds: which learns faster, which is noisier?

# %% tags=["nbval-ignore-output"]
print(f"this notebook ran in {time.perf_counter() - NOTEBOOK_START:.0f} s on {device.type} "
      f"({'fast' if FAST else 'default'} mode)")

# %%
assert time.perf_counter() > NOTEBOOK_START
