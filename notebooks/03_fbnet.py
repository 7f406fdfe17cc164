# %% [markdown]
# # FBNet: differentiable search with the latency in the loss
#
# **Paper.** Bichen Wu, Xiaoliang Dai, Peizhao Zhang, Yanghan Wang, Fei Sun, Yiming Wu, Yuandong
# Tian, Peter Vajda, Yangqing Jia and Kurt Keutzer, *FBNet: Hardware-Aware Efficient ConvNet Design
# via Differentiable Neural Architecture Search*, CVPR 2019,
# [arXiv:1812.03443](https://arxiv.org/abs/1812.03443). The authors released the found networks
# (facebookresearch/mobile-vision), not the search code.
#
# **Idea.** DARTS searches a *cell* and ignores what the network costs to run. FBNet fixes the
# skeleton of a mobile network (a chain of 22 layers whose widths and strides are given, the
# *macro-architecture*) and searches only which of nine MobileNetV2-style blocks each layer uses.
# Three ideas make it work on a phone: (1) the latency of every candidate block is **measured** on
# the target device once and stored in a lookup table, so the latency of any of the $9^{22}$
# networks is a sum of table entries; (2) the loss multiplies the cross-entropy by a function of
# that latency, so slow networks cost more; (3) the choice of a block is sampled with the
# **Gumbel-softmax**, which makes the sample, and the expected latency, differentiable in the
# architecture parameters $\theta$. After the search, a few architectures are drawn from the learned
# distribution $P_\theta$ and trained from scratch.
#
# The code is in `nas_tutorial/blocks.py` (the nine blocks, a parameter and multiply-add counter)
# and `nas_tutorial/fbnet.py` (macro-architecture, latency table, loss, Gumbel-softmax, super net,
# search, the published FBNet-A, -B and -C).
#
# **Run time.** Fast mode (`NAS_TUTORIAL_FAST=1`, what the tests run) takes a few minutes on a
# 2-core CPU (the README's table has the time measured on the project's test machine), nearly all
# of it in six short searches of a 7-layer super net on 16x16 images (their time is printed in
# section 5): three with the latency term and three without it, because one search alone cannot
# tell a real effect from luck. It is longer than the other notebooks' fast modes because a super
# net runs all nine blocks of every layer at every step, and the comparison needs six runs. The default mode is sized for a GPU: the same six
# searches on the 22-layer CIFAR version of Table 1 at 32x32, aimed at at most 15 minutes (an
# ESTIMATE: this default was not timed on a GPU when the notebook was written; lower
# `SEARCH_EPOCHS` or `TRAIN_SIZE` if your GPU is slower). The sizes are in the next cell.

# %% tags=["parameters"]
import os

from nas_tutorial.utils import parse_flag

FAST = parse_flag(os.environ.get("NAS_TUTORIAL_FAST"), "NAS_TUTORIAL_FAST")  # 1/true/yes/on: fast mode

if FAST:  # CPU laptop: FBNetConfig.fast(), a 7-layer super net at a quarter of Table 1's widths
    IMAGE_SIZE, NUM_CLASSES = 16, 4  # the first four classes of CIFAR-10 (section 5 says why)
    TRAIN_SIZE = 2_000  # of those classes: 1,000 training (800 train w, 200 train theta) + 1,000 validation
    SEARCH_EPOCHS = 8  # the epochs of FBNetConfig.fast(): tau annealed from 5 to 0.5 in them (section 5)
    SAMPLED_NETWORKS = 16  # random networks whose measured latency is compared with the table's sum
else:  # GPU: the 22-layer CIFAR version of Table 1, a budget of at most 15 minutes for the six searches
    IMAGE_SIZE, NUM_CLASSES = 32, 10
    TRAIN_SIZE = 10_000  # at most 5,000 training (4,000 train w, 1,000 train theta) + 5,000 validation images
    SEARCH_EPOCHS = 12  # the paper's annealing compressed into 12 epochs
    SAMPLED_NETWORKS = 30
START_UNITS = 10  # LAT's unit: the super net at the start of the search measures this many (section 5)
SEEDS = (0, 1, 2)  # every comparison in section 5 is made over these seeds
SEED = 0

# %%
import json
import math
import tempfile
import time
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from torch.nn import functional as F

from nas_tutorial import blocks, fbnet
from nas_tutorial.blocks import FBNET_BLOCKS
from nas_tutorial.data import CIFAR10, default_data_root, load_cifar10, make_subsets
from nas_tutorial.drawing import INPUT_COLOR, NODE_COLOR, OUTPUT_COLOR, Graph, combine, heatmap, plt_color, show
from nas_tutorial.utils import pick_device

device = pick_device()
if device.type == "cpu":
    # one thread: the super net is many small kernels, which a second thread speeds up little on the
    # 2-core test machine (benchmarks/README.md); one leaves a core free
    torch.set_num_threads(1)
K = len(FBNET_BLOCKS)
cifar = load_cifar10(default_data_root())  # $NAS_TUTORIAL_DATA, else ~/.cache/nas_tutorial
print("the nine candidate blocks:", ", ".join(FBNET_BLOCKS))
print(f"CIFAR-10 images found: {len(cifar.train_labels):,} training, {len(cifar.test_labels):,} test"
      + (" (a partial set; the full one has 50,000 and 10,000)" if len(cifar.train_labels) < 50_000 else ""))

# %% [markdown]
# ## 1. The search space
#
# ### The block and its nine candidates
#
# Every searchable layer holds one **block** (the paper's Figure 3), MobileNetV2's inverted residual
# with optional group convolutions: a 1x1 (group) convolution that expands the $C_{in}$ input
# channels $e$ times, batch norm and ReLU, a channel shuffle when the 1x1 convolutions are grouped,
# a $K \times K$ depthwise convolution with the layer's stride, batch norm and ReLU, a 1x1 (group)
# convolution down to $C_{out}$ channels and batch norm, with **no** ReLU after it. The input is
# added to the output exactly when the two have the same shape (stride 1 and $C_{in} = C_{out}$).
# The ninth candidate, `skip`, is the identity; where the layer changes the shape, the paper says
# nothing, and here (as in the authors' builder) it is a 1x1 convolution with the layer's stride, so
# that every layer keeps all nine candidates.

# %%
inverted = Graph("inverted_residual", rankdir="TB")
inverted.nodes = [
    ("x", "input: C_in channels", INPUT_COLOR, ""),
    ("expand", "1x1 group conv to e C_in channels, BN, ReLU", NODE_COLOR, ""),
    ("shuffle", "channel shuffle (grouped blocks only)", NODE_COLOR, "dashed"),
    ("depthwise", "K x K depthwise conv, stride s, BN, ReLU", NODE_COLOR, ""),
    ("project", "1x1 group conv to C_out channels, BN (no ReLU)", NODE_COLOR, ""),
    ("add", "+", NODE_COLOR, ""),
    ("y", "output: C_out channels", OUTPUT_COLOR, ""),
]
inverted.edges = [("x", "expand", "", "#333333"), ("expand", "shuffle", "", "#333333"),
                  ("shuffle", "depthwise", "", "#333333"), ("depthwise", "project", "", "#333333"),
                  ("project", "add", "", "#333333"), ("x", "add", "if s = 1 and C_in = C_out", "#808080"),
                  ("add", "y", "", "#333333")]
inverted.dotted = [("x", "add")]
skip = Graph("skip", rankdir="TB")
skip.nodes = [("x", "input", INPUT_COLOR, ""),
              ("conv", "identity (1x1 conv, stride s, BN, ReLU where the shape changes)", NODE_COLOR, ""),
              ("y", "output", OUTPUT_COLOR, "")]
skip.edges = [("x", "conv", "", "#333333"), ("conv", "y", "", "#333333")]
block_drawing = combine("fbnet_blocks", [inverted, skip], rankdir="TB")
block_drawing.title = "the two block types of FBNet (Figure 3 of the paper)"
show(block_drawing)

# %% [markdown]
# The nine candidates differ in the kernel size $K \in \{3, 5\}$, the expansion $e \in \{1, 3, 6\}$ and
# the groups of the 1x1 convolutions (two groups only with $e = 1$), plus `skip` (the paper's table
# of block configurations). Their cost at one example layer, 32 channels in and out on an 8x8 input
# with stride 1, counted by `blocks.profile` (multiply-adds of one image through the convolutions and
# linear layers that run; parameters of the whole block, batch norm included):

# %%
print(f"{'name':>9} {'K':>2} {'e':>2} {'groups':>6} {'params':>7} {'multiply-adds':>14}")
costs = {}
for name in FBNET_BLOCKS:
    spec = blocks.BLOCKS[name]
    p = blocks.profile(blocks.make_block(name, 32, 32, 1), (32, 8, 8))
    costs[name] = p.macs
    print(f"{name:>9} {spec.kernel_size or '-':>2} {spec.expansion or '-':>2} {spec.groups:>6} {p.params:>7,} {p.macs:>14,}")
assert costs["skip"] == 0 and costs["k3_e1_g2"] < costs["k3_e1"] < costs["k3_e3"] < costs["k3_e6"] < costs["k5_e6"]
print(blocks.make_block("k5_e1_g2", 32, 32, 1))

# %% [markdown]
# **The residual connection is there exactly when the shapes match.** Every candidate, at every
# combination of equal or different widths and stride 1 or 2: the flag, the output shape, and a
# numerical check, with the last batch norm of an inverted residual set to output zeros, the block
# returns its input exactly when it has the connection (and zeros otherwise).

# %%
x = torch.randn(2, 16, 8, 8)  # (B, C_in, H, W)
for name in FBNET_BLOCKS:
    for c_out, stride in ((16, 1), (24, 1), (16, 2), (24, 2)):
        block = blocks.make_block(name, 16, c_out, stride).eval()
        same_shape = stride == 1 and c_out == 16
        assert block(x).shape == (2, c_out, 8 // stride, 8 // stride)
        if name == "skip":
            assert block.identity == same_shape and (not same_shape or torch.equal(block(x), x))
            continue
        assert block.residual == same_shape
        with torch.no_grad():
            last_bn = block.project[1]  # the block's final batch norm
            last_bn.weight.zero_()
            last_bn.bias.zero_()
            y = block(x)
        assert torch.equal(y, x) if same_shape else torch.equal(y, torch.zeros_like(y))
print("residual exactly when stride 1 and C_in == C_out: checked for all 9 candidates x 4 shapes")

# %% [markdown]
# ### The macro-architecture (Table 1)
#
# The skeleton is fixed: a 3x3 convolution, seven stages of searchable layers (`fbnet.TABLE_1`:
# $f$ output channels, $n$ layers, stride $s$ of the stage's first layer), a 1x1 convolution,
# average pooling and the classifier. For ImageNet at 224x224:

# %%
imagenet = fbnet.imagenet_macro()
print(f"{'input':>12}  {'operator':<14} {'f':>5} {'n':>2} {'s':>2}")
print(f"{'224^2 x 3':>12}  {'3x3 conv':<14} {imagenet.stem_channels:>5} {1:>2} {imagenet.stem_stride:>2}")
first = 0
for f, n, s in fbnet.TABLE_1:
    layer = imagenet.layers[first]  # the stage's first layer: its input shape
    print(f"{f'{layer.in_size}^2 x {layer.in_channels}':>12}  {'TBS (searched)':<14} {f:>5} {n:>2} {s:>2}")
    first += n
last = imagenet.layers[-1]
print(f"{f'{last.out_size}^2 x {last.out_channels}':>12}  {'1x1 conv':<14} {imagenet.head_channels:>5} {1:>2} {1:>2}")
print(f"{f'{last.out_size}^2 x {imagenet.head_channels}':>12}  {'7x7 avg pool':<14} {'':>5} {1:>2} {1:>2}")
print(f"{imagenet.head_channels:>12}  {'fc':<14} {imagenet.num_classes:>5} {1:>2} {'':>2}")
assert imagenet.num_layers == 22 and last.out_size == 7 and imagenet.layers[0].in_size == 112

# %% [markdown]
# "TBS": to be searched. On CIFAR's 32x32 images the stem and the second stage keep the resolution
# (`fbnet.CIFAR_STRIDES`), so the last layers see 4x4 instead of 7x7. The fast mode's super net
# (`FBNetConfig.fast()`) keeps one layer per stage (7 layers) at a quarter of the widths, on 16x16
# images:

# %%
cifar_last = fbnet.cifar_macro().layers[-1]
print(f"Table 1 on 32x32 CIFAR images: the last layer outputs {cifar_last.out_size}x{cifar_last.out_size}")
fast_macro = fbnet.FBNetConfig.fast().macro()
for layer in fast_macro.layers:
    print(f"layer {layer.index}: {layer.in_channels:>3} -> {layer.out_channels:>3} channels, stride {layer.stride}, "
          f"input {layer.in_size}x{layer.in_size}")
assert fast_macro.num_layers == 7 and cifar_last.out_size == 4

# %% [markdown]
# ### How many architectures?
#
# Each of the $L$ layers picks one of $K$ blocks independently, so there are $K^L$ architectures:
# $9^{22} \approx 10^{21}$ for Table 1. The formula, checked by listing every architecture of small
# spaces:

# %%
for layers, candidates in ((1, FBNET_BLOCKS), (2, FBNET_BLOCKS), (3, FBNET_BLOCKS), (4, FBNET_BLOCKS[:3])):
    archs = list(fbnet.enumerate_architectures(layers, candidates))
    assert len(archs) == len(set(archs)) == fbnet.search_space_size(layers, len(candidates))
print(f"4 layers, 3 candidates: {len(archs)} architectures, from {archs[0]} to {archs[-1]}")
print(f"Table 1: 9^22 = {fbnet.search_space_size(22):,} ({fbnet.search_space_size(22):.2e}) architectures")
print(f"fast mode: 9^7 = {fbnet.search_space_size(7):,}")
assert fbnet.search_space_size(22) == 9**22

# %% [markdown]
# ## 2. The latency lookup table
#
# FLOPs are not latency: on a phone (or a GPU, or this CPU) a depthwise convolution, a group
# convolution or a channel shuffle costs far more time per multiply-add than a dense 1x1
# convolution, and the ratio differs from device to device. FBNet therefore **measures** each
# candidate block at the input shape of each layer on the target device, once, and models the
# latency of a whole network as the sum of its blocks' entries:
#
# $$ \mathrm{LAT}(a) = \sum_{l} \mathrm{LAT}(b_l^{(a)}) \quad (+ \text{the fixed stem and head}). $$
#
# `fbnet.measure_latency_table` times every block with warm-up calls and the median of repeated
# runs at batch size 1 (as on a phone), on the device the search will run on, and keeps the results
# in a JSON cache keyed by device, torch version, block and shape: a second call reads the file
# instead of measuring, and an entry of another device or shape is never used. Here the cache is a
# temporary file, so the first call really measures.

# %% tags=["nbval-ignore-output"]
if FAST:
    config = fbnet.FBNetConfig.fast(epochs=SEARCH_EPOCHS)
else:  # Table 1 for CIFAR (22 layers), the paper's whole annealing (5 to 0.09) compressed, theta 10x the paper's rate
    config = fbnet.FBNetConfig.cifar(epochs=SEARCH_EPOCHS, warmup_epochs=2, batch_size=64, theta_lr=0.1,
                                     tau_decay=math.exp(-0.045 * 90 / SEARCH_EPOCHS))
cache = Path(tempfile.mkdtemp()) / "fbnet_latency.json"
config = config.replace(num_classes=NUM_CLASSES, latency_cache=str(cache))  # the search reads this very table
macro = config.macro()
tables, timings = [], []
for _ in range(2):  # the first call measures and writes the cache, the second reads it
    start = time.perf_counter()
    tables.append(fbnet.measure_latency_table(macro, config.candidates, device=device, cache=cache,
                                              batch_size=config.latency_batch_size, warmup=config.latency_warmup,
                                              repeats=config.latency_repeats))
    timings.append(time.perf_counter() - start)
table = tables[0]
entries = json.loads(cache.read_text())["entries"]
print(f"first call (measures): {timings[0]:.2f} s; second call (reads {cache.name}): {timings[1]:.3f} s")
print(f"the cache holds {len(entries)} measurements; one key: {next(iter(entries))!r}")
print(f"device: {table.device}; fixed stem + head: {table.fixed:.3f} {table.unit}")
print(f"{'layer':>5} " + " ".join(f"{c:>8}" for c in table.candidates) + "   (ms)")
for l, row in enumerate(table.values):
    print(f"{l:>5} " + " ".join(f"{v:8.4f}" for v in row))

# %%
assert tables[0] == tables[1] and timings[1] < timings[0]  # the second call read the same numbers from the file
assert len(table.values) == macro.num_layers and all(v > 0 for row in table.values for v in row)
assert len(entries) <= 2 + macro.num_layers * K  # blocks of equal shape are measured once

# %% [markdown]
# The table as a picture, one row per layer (one colour scale for the whole table): which blocks are
# expensive on *this* device, and where in the network.

# %% tags=["nbval-ignore-output"]
fig, ax = plt.subplots(figsize=(9, 0.6 + 0.45 * macro.num_layers))
heatmap(ax, table.values, row_labels=[f"layer {l.index}: {l.in_channels}->{l.out_channels}, s{l.stride}"
                                      for l in macro.layers], col_labels=FBNET_BLOCKS, vmin=0,
        vmax=max(map(max, table.values)), title=f"latency of each block (ms), measured on {table.device}")
fig.tight_layout()
plt.show()

# %%
assert min(map(min, table.values)) > 0

# %% [markdown]
# **Does the sum predict the whole network?** The table model assumes that blocks run one after the
# other with nothing in between. Below, random architectures of the same space are built whole and
# timed the same way, and their measured latency is compared with the table's $\mathrm{LAT}(a)$.

# %% tags=["nbval-ignore-output"]
rng = torch.Generator().manual_seed(SEED)
sampled, predicted, measured = [], [], []
for _ in range(SAMPLED_NETWORKS):
    arch = fbnet.FBNetArch(tuple(FBNET_BLOCKS[i] for i in torch.randint(0, K, (macro.num_layers,), generator=rng)))
    with torch.random.fork_rng(devices=[]):
        network = fbnet.FBNet(arch, macro)
    sampled.append(arch)
    predicted.append(table.latency(arch))
    measured.append(min(fbnet.measure_latency(network, (1, 3, macro.image_size, macro.image_size), device=device,
                                              warmup=config.latency_warmup, repeats=config.latency_repeats)
                        for _ in range(3)))  # the least of three medians: robust to a busy machine
pred, meas = torch.tensor(predicted, dtype=torch.float64), torch.tensor(measured, dtype=torch.float64)
correlation = torch.corrcoef(torch.stack([pred, meas]))[0, 1].item()
relative_error = ((pred - meas).abs() / meas).mean().item()
bias = ((pred - meas) / meas).mean().item()
print(f"{SAMPLED_NETWORKS} random networks: correlation {correlation:.2f} between LAT(a) and the measured latency, "
      f"mean relative error {relative_error:.0%} (the table is on average {bias:+.0%} off)")
fig, ax = plt.subplots(figsize=(4.2, 4))
ax.scatter(meas, pred, s=18)
low, high = min(pred.min(), meas.min()).item(), max(pred.max(), meas.max()).item()
ax.plot([low, high], [low, high], "k--", lw=0.8, label="LAT(a) = measured")
ax.set_xlabel("measured latency of the whole network (ms)")
ax.set_ylabel("LAT(a): sum of the table (ms)")
ax.set_title(f"table model vs measurement, r = {correlation:.2f}")
ax.legend(fontsize=8)
plt.show()

# %%
assert len(measured) == SAMPLED_NETWORKS and all(v > 0 for v in measured)
assert correlation > 0.2  # loose: the table ranks networks by latency (see the measured value above)
assert relative_error < 1.0  # and is within a factor of two of the measurement

# %% [markdown]
# ## 3. The latency-aware loss
#
# The paper's loss for an architecture $a$ with weights $w_a$ multiplies the cross-entropy by a
# function of the latency:
#
# $$ \mathcal{L}(a, w_a) = \mathrm{CE}(a, w_a) \cdot \alpha \, \big(\log \mathrm{LAT}(a)\big)^{\beta},
#    \qquad \alpha = 0.2, \quad \beta = 0.6 . $$
#
# $\alpha$ sets the overall magnitude of the loss; $\beta$ sets how strongly latency modulates it.
# The power acts on the **logarithm**. LAT is measured in some unit (ms in the paper; in the fast
# mode, units of `latency_unit` = 10 µs, because a tiny network runs in about a millisecond here), and
# it must exceed one unit, or $\log \mathrm{LAT} \le 0$ and its fractional power is undefined.
#
# > **The seed notes this notebook grew from** write the factor as $\alpha \log(\mathrm{LAT})^\beta$,
# > which can also be read as $\alpha \log(\mathrm{LAT}^\beta)$. That reading equals
# > $\alpha\beta \log \mathrm{LAT}$: only the product $\alpha\beta$ would count, and $\beta$ would be a
# > redundant second copy of $\alpha$ that cannot "modulate the magnitude of the latency term" as the
# > paper says it does. The notes also call $\mathrm{LAT}(\theta)$ "a constant found in a latency
# > lookup table": it is a *sum* of table entries for a sampled architecture, and during the search
# > an expectation over the blocks that is a differentiable function of $\theta$ (section 4).
#
# Numerically, at four latencies from 50 to 400 units: two settings with the same product
# $\alpha\beta = 0.12$ give identical losses under the second reading, different ones under the
# paper's; and under the paper's reading $\beta$ changes how much a doubling of the latency costs.

# %%
lats = torch.tensor([50.0, 100.0, 200.0, 400.0])  # LAT in latency units
ce = torch.tensor(1.5)  # a cross-entropy


def other_reading(ce, lat, alpha, beta):  # alpha * log(LAT ** beta) = alpha * beta * log(LAT)
    return ce * alpha * torch.log(lat**beta)


print(f"{'LAT (units)':>11} {'paper 0.2, 0.6':>15} {'paper 0.12, 1':>14} {'other 0.2, 0.6':>15} {'other 0.12, 1':>14}")
for lat in lats:
    print(f"{lat:11.1f} {fbnet.fbnet_loss(ce, lat, alpha=0.2, beta=0.6):15.4f} {fbnet.fbnet_loss(ce, lat, alpha=0.12, beta=1.0):14.4f} "
          f"{other_reading(ce, lat, 0.2, 0.6):15.4f} {other_reading(ce, lat, 0.12, 1.0):14.4f}")
torch.testing.assert_close(other_reading(ce, lats, 0.2, 0.6), other_reading(ce, lats, 0.12, 1.0))  # beta redundant
torch.testing.assert_close(fbnet.fbnet_loss(ce, lats), ce * 0.2 * torch.log(lats) ** 0.6)  # the library: power on log
assert not torch.allclose(fbnet.fbnet_loss(ce, lats, alpha=0.2, beta=0.6), fbnet.fbnet_loss(ce, lats, alpha=0.12, beta=1.0))
for beta in (0.3, 0.6, 1.0):
    doubled = fbnet.fbnet_loss(ce, 2 * lats[0], beta=beta) / fbnet.fbnet_loss(ce, lats[0], beta=beta)
    print(f"paper's reading, beta = {beta}: doubling LAT from {lats[0]:.0f} to {2 * lats[0]:.0f} units multiplies "
          f"the loss by {doubled:.3f}")

# %% [markdown]
# ## 4. The stochastic super net and the Gumbel-softmax
#
# The super net holds all nine candidates in every layer. Layer $l$'s output mixes them with a mask
# $m_l$:
#
# $$ x_{l+1} = \sum_i m_{l,i} \, b_{l,i}(x_l), \qquad
#    P_\theta(b_l = b_{l,i}) = \mathrm{softmax}_i(\theta_{l,i}) = \frac{e^{\theta_{l,i}}}{\sum_j e^{\theta_{l,j}}} . $$
#
# If $m_l$ were a one-hot sample of $P_\theta$ (one block per layer), the loss would not be
# differentiable in $\theta$. Two steps fix that. The **Gumbel-max trick** draws the sample as
# $\mathrm{argmax}_i (\theta_{l,i} + g_{l,i})$ with independent standard Gumbel noise
# $g = -\log(-\log u)$, $u \sim U(0, 1)$; the **Gumbel-softmax** replaces the argmax by a softmax at
# temperature $\tau$:
#
# $$ m_{l,i} = \frac{\exp[(\theta_{l,i} + g_{l,i}) / \tau]}{\sum_j \exp[(\theta_{l,j} + g_{l,j}) / \tau]} . $$
#
# FBNet starts at $\tau = 5$ (almost uniform masks: every block trains) and anneals it by
# $e^{-0.045}$ per epoch towards one-hot masks.
#
# > **The seed notes** write the argmax and the softmax over $l$ ($\mathrm{argmax}_l$,
# > $\mathrm{softmax}_l$): both run over the candidates $i$ of one layer, not over the layers. They
# > use $\log p_{l,i} + g_{l,i}$ where the paper's code uses $\theta_{l,i} + g_{l,i}$: the two differ by
# > $\log \sum_j e^{\theta_{l,j}}$, a shift shared by the whole layer, which neither the argmax nor
# > the softmax sees, so both give the same sample. They say FBNet samples "one type of
# > architecture for each training epoch": a new sample is drawn for every mini-batch (here one per
# > batch, shared by its images). And with the soft mask every block of a layer runs, weighted by
# > $m_{l,i}$; only the straight-through variant below runs a single block in the forward pass.
#
# **From scratch**, checked against `fbnet.gumbel_softmax` with the same noise:

# %%
theta = torch.tensor([[1.0, 0.5, 0.0, -0.5, 2.0, -1.0, 0.3, 0.8, 1.5],
                      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                      [-1.0, 3.0, 0.5, 0.5, -2.0, 0.0, 1.0, -0.5, 0.2]], dtype=torch.float64)  # (L, K) = (3, 9)
u = torch.rand(theta.shape, generator=torch.Generator().manual_seed(SEED), dtype=torch.float64)  # U(0, 1)
g = -torch.log(-torch.log(u))  # standard Gumbel noise, (L, K)
tau = 1.0
scores = torch.exp((theta + g) / tau)
m = scores / scores.sum(dim=-1, keepdim=True)  # softmax over the candidates i of each layer
torch.testing.assert_close(m, fbnet.gumbel_softmax(theta, tau, g))
torch.testing.assert_close(g, fbnet.gumbel_noise(theta.shape, generator=torch.Generator().manual_seed(SEED),
                                                 dtype=torch.float64))  # the library draws the same noise
log_p = torch.log_softmax(theta, dim=-1)  # the seed's log p_{l,i}: theta minus a per-layer shift
torch.testing.assert_close(fbnet.gumbel_softmax(log_p, tau, g), m)  # the shift changes nothing
assert torch.equal(fbnet.gumbel_max(log_p, g), fbnet.gumbel_max(theta, g))
print("m (rows sum to 1):")
for l, row in enumerate(m):
    print(f"  layer {l}: " + " ".join(f"{v:.3f}" for v in row.tolist()) + f"   argmax_i: {FBNET_BLOCKS[row.argmax()]}")

# %% [markdown]
# **Gumbel-max samples follow $\mathrm{softmax}(\theta)$.** 20,000 draws of the first layer's choice,
# their frequencies against the probabilities, and Pearson's chi-square statistic: with 9 outcomes
# it has 8 degrees of freedom, and a value above 26.1 would reject "the samples follow
# $P_\theta$" at the 0.1% level.

# %%
draws = 20_000
row = theta[0]  # (K,)
noise = fbnet.gumbel_noise((draws, K), generator=torch.Generator().manual_seed(SEED + 1), dtype=torch.float64)
choices = fbnet.gumbel_max(row.expand(draws, K), noise)  # (draws,): one block index per draw
observed = torch.bincount(choices, minlength=K).double()
expected = draws * F.softmax(row, dim=-1)
chi_square = ((observed - expected) ** 2 / expected).sum().item()
for name, o, e in zip(FBNET_BLOCKS, observed.tolist(), expected.tolist()):
    print(f"{name:>9}: observed {o / draws:.4f}, softmax(theta) {e / draws:.4f}")
print(f"chi-square = {chi_square:.1f} with 8 degrees of freedom (0.1% critical value 26.1)")
assert chi_square < 26.1

fig, ax = plt.subplots(figsize=(7, 2.6))
positions = torch.arange(K)
ax.bar(positions - 0.2, (expected / draws).tolist(), 0.4, label=r"softmax($\theta$)")
ax.bar(positions + 0.2, (observed / draws).tolist(), 0.4, label=f"Gumbel-max, {draws:,} draws")
ax.set_xticks(positions.tolist(), FBNET_BLOCKS, fontsize=8)
ax.set_ylabel("probability")
ax.set_title("Gumbel-max samples follow the softmax")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# **As $\tau \to 0$ the Gumbel-softmax sample tends to the one-hot Gumbel-max sample** (same noise);
# as $\tau$ grows it tends to the uniform $1/9$:

# %%
one_hot = F.one_hot(fbnet.gumbel_max(theta, g), K).double()  # (L, K)
gaps = []
for tau_ in (10.0, 1.0, 0.3, 0.1, 0.03, 0.01):
    gaps.append((fbnet.gumbel_softmax(theta, tau_, g) - one_hot).abs().max().item())
    spread = (fbnet.gumbel_softmax(theta, tau_, g) - 1 / K).abs().max().item()
    print(f"tau = {tau_:5.2f}: max |m - one-hot| = {gaps[-1]:.2e}, max |m - 1/9| = {spread:.3f}")
assert all(a > b for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 1e-3

# %% [markdown]
# **Straight-through.** `hard=True` returns exactly the one-hot sample in the forward pass (so only
# one block per layer has to run) but the soft sample's gradient. For a loss that is linear in the
# mask, such as the latency of the sample, $\sum_{l,i} m_{l,i} \mathrm{LAT}_{l,i}$, the two gradients are
# equal; for the network's cross-entropy they differ, because the rest of the network sees a
# different forward value.

# %%
lat_rows = torch.tensor(table.values[:3], dtype=torch.float64)  # the first 3 layers of the measured table (L, K)
grads = {}
for hard in (False, True):
    theta_ = theta.clone().requires_grad_()
    mask = fbnet.gumbel_softmax(theta_, 0.5, g, hard=hard)
    if hard:
        assert torch.equal(mask.detach(), one_hot)  # forward value: exactly one-hot
    grads[hard] = torch.autograd.grad(fbnet.expected_latency(mask, lat_rows), theta_)[0]
torch.testing.assert_close(grads[True], grads[False], rtol=0, atol=0)  # backward: the soft sample's gradient
assert grads[True].abs().max() > 0
print("straight-through: forward value one-hot, gradient == the soft sample's gradient (exactly)")

# %% [markdown]
# **The expected latency is differentiable in $\theta$.** With the mask replaced by its expectation
# $P_\theta$, the super net's latency is $E[\mathrm{LAT}] = \sum_{l,i} P_\theta(b_{l,i}) \mathrm{LAT}(b_{l,i})$
# (plus the fixed layers), whose gradient is
# $\partial E / \partial \theta_{l,i} = P_{l,i} \big(\mathrm{LAT}_{l,i} - \sum_j P_{l,j} \mathrm{LAT}_{l,j}\big)$:
# it lowers $\theta$ of blocks slower than the layer's average and raises the others. Autograd,
# that formula and central finite differences, in float64 over the whole measured table:

# %%
lat_table = table.tensor(dtype=torch.float64)  # (L, K) of the search's macro-architecture
theta_ = torch.randn(lat_table.shape, generator=torch.Generator().manual_seed(SEED), dtype=torch.float64)


def expected_lat(t):
    return table.fixed + fbnet.expected_latency(F.softmax(t, dim=-1), lat_table)


theta_.requires_grad_()
autograd = torch.autograd.grad(expected_lat(theta_), theta_)[0]  # (L, K)
theta_ = theta_.detach()
p = F.softmax(theta_, dim=-1)
by_formula = p * (lat_table - (p * lat_table).sum(-1, keepdim=True))
h = 1e-6
finite = torch.zeros_like(theta_)
for index in range(theta_.numel()):
    step = torch.zeros(theta_.numel(), dtype=torch.float64)
    step[index] = h
    step = step.view_as(theta_)
    finite.view(-1)[index] = (expected_lat(theta_ + step) - expected_lat(theta_ - step)) / (2 * h)
torch.testing.assert_close(autograd, by_formula)
torch.testing.assert_close(autograd, finite, rtol=1e-6, atol=1e-9)
print(f"dE[LAT]/dtheta: autograd == formula == finite differences, all {theta_.numel()} entries "
      f"(relative tolerance 1e-6)")

# %% [markdown]
# ### The temperature, by hand
#
# Move the slider (it appears when you run the cells): one layer's Gumbel-softmax sample for the
# fixed $\theta$ and the fixed noise of the first layer above, from almost uniform at $\tau = 5$ (the
# paper's start) to one-hot at small $\tau$. The callback draws `fbnet.gumbel_softmax`, the function
# the search uses and the unit tests check. Below the slider, the same picture at the paper's start
# and end temperatures, drawn once so that it shows in the saved notebook too.

# %%
theta_row, noise_row = theta[0], g[0]  # one layer: (K,) parameters and (K,) Gumbel noise


def show_sample(tau=1.0):  # the widget's callback
    _, ax = plt.subplots(figsize=(9, 2.4), subplot_kw=dict(ylim=(0, 1), ylabel="mask $m_{l,i}$",
                                                           title=f"one layer's Gumbel-softmax sample, tau = {tau:.2f}"))
    ax.bar(FBNET_BLOCKS, fbnet.gumbel_softmax(theta_row, tau, noise_row).tolist(), color=plt_color(0))
    plt.show()


# %% tags=["nbval-ignore-output"]
slider = widgets.interact(show_sample, tau=widgets.FloatLogSlider(value=1.0, base=10, min=-2, max=0.7, step=0.05))

# %%
assert abs(fbnet.gumbel_softmax(theta_row, 5.0, noise_row).sum().item() - 1) < 1e-12
for tau_ in (5.0, 0.09):  # the paper's first and last temperature (5 e^{-0.045 * 90} = 0.09)
    show_sample(tau_)

# %% [markdown]
# ## 5. A real search on CIFAR-10
#
# `fbnet.FBNetSearch` runs the paper's search, one record per epoch. The training half of the data
# is split once: the first 80% of its images train the super net's weights $w_a$ (SGD with
# momentum, cosine schedule), the other 20% train $\theta$ (Adam). An epoch is a pass of weight
# steps with $\theta$ fixed, then, after the warm-up epochs in which $\theta$ is frozen (the paper's
# first epochs), a pass of $\theta$ steps; every step draws a new Gumbel-softmax mask at the epoch's
# temperature, and both passes minimise the same latency-aware loss, with the latency
# $\sum_{l,i} m_{l,i}\mathrm{LAT}(b_{l,i})$ of the sampled mask. Each record holds $\theta$, the
# expected latency $E[\mathrm{LAT}]$ under $P_\theta$ (in ms, from the table above) and the most likely
# architecture ($\mathrm{argmax}_i\,\theta_{l,i}$ in each layer). As for every method of the tutorial
# (`nas_tutorial/search.py`), a `checkpoint` path makes a stopped search resume exactly.
#
# **The fast setting.** `FBNetConfig.fast()`: the 7-layer super net above on 16x16 images, 8 epochs
# ($\theta$ frozen in the first two), $\tau$ annealed from 5 to 0.5 in them (only the first part of
# the paper's schedule, printed below: the almost one-hot masks of its last stretch train one random
# path per step, from which this small super net learns too little in so few steps, as the
# straight-through run at the end of this section measures), at most 10 steps per pass, learning
# rates 0.2 ($w$) and 0.3 ($\theta$, far above the paper's 0.01, so that $\theta$ moves in a few dozen
# steps), no augmentation and a 128-channel last convolution (both help the first hundred steps
# learn). Two changes in this notebook, both measured on the project's
# 2-core test machine:
#
# - **Four classes** (airplane, automobile, bird, cat) in fast mode. A super net runs nine blocks per
#   layer, so the CPU budget allows only the few weight steps counted below, in which it learns ten
#   classes only a little above chance; four classes it learns clearly. The default mode uses all ten.
# - **The unit of LAT** is set from the measured table, so that the super net at the start (uniform
#   $P_\theta$) measures `START_UNITS` = 10 units, on any device. The gradient of the latency term scales with
#   $\beta / \log \mathrm{LAT}$: the `fast()` default of 10 µs makes LAT a large number here (printed
#   below) and the pull towards fast blocks too weak to stand out from the noise of three seeds,
#   while a unit close to the smallest LAT would make the logarithm vanish.
#
# **The comparison.** One search shows what happened, not why. Each setting runs with three seeds,
# once as FBNet and once with the latency term switched off ($\beta \to 0$ makes
# $(\log \mathrm{LAT})^\beta \to 1$; $\alpha$ is raised to $\alpha (\log 10)^\beta$ so that the loss
# starts at the same scale, and only the pull towards fast blocks is gone). These are the two settings
# of the latency-accuracy trade-off below: a second value of $\beta$ would take three more searches,
# which the fast mode's time budget does not have (exercise 1).
#
# **Scoring an architecture with the super net's weights.** After each epoch the search scores its
# most likely architecture on the validation half: `FBNetSearch.evaluate` copies that path out of the
# super net (`FBNetSupernet.extract`) and first recomputes its batch-norm statistics on the first
# training images of $w$'s part (how many: printed below; `nas_tutorial.training.recalibrate_bn`), because the super net's running statistics were
# averaged over mixed masks and fit no single path (section 7).

# %%
keep_train, keep_test = cifar.train_labels < NUM_CLASSES, cifar.test_labels < NUM_CLASSES
few = CIFAR10(cifar.train_images[keep_train], cifar.train_labels[keep_train], cifar.test_images[keep_test],
              cifar.test_labels[keep_test], cifar.classes[:NUM_CLASSES])  # the first NUM_CLASSES classes
subsets = make_subsets(few, train_size=min(TRAIN_SIZE, len(few.train_labels)), test_size=100, image_size=IMAGE_SIZE,
                       device=device, seed=SEED)
uniform_lat = table.expected(torch.full((macro.num_layers, K), 1 / K, dtype=torch.float64)).item()  # ms, theta = 0
config = config.replace(latency_unit=uniform_lat / START_UNITS)  # E[LAT] at the start: START_UNITS units
no_latency = config.replace(beta=1e-6, alpha=config.alpha * math.log(START_UNITS) ** config.beta)
n_w = round(len(subsets.train_y) * (1 - config.theta_fraction))
n_theta = len(subsets.train_y) - n_w
w_steps = config.epochs * min(config.steps_per_epoch or n_w, n_w // config.batch_size)
theta_steps = (config.epochs - config.warmup_epochs) * min(config.steps_per_epoch or n_theta, n_theta // config.batch_size)
print(f"classes: {', '.join(few.classes)} (chance {1 / NUM_CLASSES:.0%}); {IMAGE_SIZE}x{IMAGE_SIZE} images: {n_w} train w, "
      f"{n_theta} train theta, {len(subsets.valid_y)} validate")
print(f"epochs {config.epochs} (theta frozen in the first {config.warmup_epochs}), batch {config.batch_size}: "
      f"{w_steps} steps on w (lr {config.lr}) and {theta_steps} on theta (lr {config.theta_lr}; the paper's: "
      f"{fbnet.FBNetConfig().theta_lr})")
print(f"last 1x1 convolution: {config.head_channels} channels; augmentation: {config.augment}; "
      f"LAT in units of the super net's E[LAT] at the start / {START_UNITS}; batch norm recalibrated on "
      f"{min(config.recalibration_size, n_w)} images")
tau_end = fbnet.temperature(config.epochs - 1, config.tau0, config.tau_decay)
print(f"tau: {config.tau0} in epoch 1 to {tau_end:.2f} in epoch {config.epochs} (the paper's schedule reaches "
      f"{tau_end:.2f} after {math.log(config.tau0 / tau_end) / 0.045:.0f} of its 90 epochs); alpha {config.alpha}, "
      f"beta {config.beta}; without the latency term: alpha {no_latency.alpha:.3f}, beta {no_latency.beta}")

# %% tags=["nbval-ignore-output"]
searches, runs = {}, {}  # (latency term on, seed) -> the search (its super net, its table), its records
start = time.perf_counter()
for seed in SEEDS:
    for with_latency in (True, False):
        search = fbnet.FBNetSearch((config if with_latency else no_latency).replace(seed=seed), subsets)
        searches[with_latency, seed], runs[with_latency, seed] = search, search.run(progress=True)
search_seconds = time.perf_counter() - start
print(f"6 searches in {search_seconds:.0f} s on {device.type}; unit of LAT: {config.latency_unit * 1000:.1f} µs "
      f"(in the 10 µs of fast() the super net would start at {uniform_lat / 0.01:.0f} units)")
for (with_latency, seed), records in runs.items():
    last = records[-1]
    print(f"{'FBNet' if with_latency else 'no latency term':>15}, seed {seed}: E[LAT] {uniform_lat:.3f} -> "
          f"{last['expected_latency']:.3f} ms, accuracy {last['valid_acc']:.1%}, most likely: {last['best_arch']}")

# %%
assert len(runs) == 2 * len(SEEDS) and all(len(records) == config.epochs for records in runs.values())
for key, records in runs.items():
    assert all(torch.all(r["theta"] == 0) for r in records[:config.warmup_epochs])  # theta frozen in the warm-up
    assert all(math.isfinite(r["train_loss"]) and r["latency_unit"] == "ms" for r in records)
    assert records[-1]["best_score"] == records[-1]["valid_acc"]
    assert abs(records[0]["expected_latency"] / uniform_lat - 1) < 1e-6  # the search used the table of section 2

# %% [markdown]
# **Did the method work?** Three signals, each against the noise it must beat.
#
# 1. *$\theta$ concentrates*: the largest probability of each layer, $\max_i P_\theta(b_{l,i})$,
#    starts at $1/9 = 0.11$; averaged over the layers, how far has it risen by the last epoch? The
#    noise is its spread over the three seeds.
# 2. *The latency term pulls towards fast blocks*: the relative change of $E[\mathrm{LAT}]$ from the
#    start (uniform $P_\theta$) to the last epoch, with and without the latency term. The signal is
#    the difference of the two means; the noise is how much $E[\mathrm{LAT}]$ moves without the
#    latency term, driven by the cross-entropy and by chance: its SD over the three control seeds.
# 3. *The super net learned*: its accuracy against a model that guesses, which scores
#    $1/C \pm \sqrt{(1/C)(1 - 1/C)/n}$ on $n$ images. Two accuracies: the super net's own, on the
#    training batches of the last warm-up epoch (all nine blocks mixed by soft masks at a high
#    temperature, each batch scored before its weight step; the noise is that of a guesser on as many
#    images), and that of the most likely architecture with the super net's weights on the
#    validation half at the end (the search's `best_score`, batch norm recalibrated), with its spread
#    over the six runs; the same architectures scored with the super net's running statistics show
#    what the recalibration changes.

# %% tags=["nbval-ignore-output"]
def concentration(record):  # mean over the layers of the largest P_theta
    return F.softmax(record["theta"], dim=-1).max(dim=-1).values.mean().item()


def mean_sd(values):
    values = torch.tensor(values, dtype=torch.float64)
    return values.mean().item(), values.std().item()


n = len(SEEDS)
rise_mean, rise_sd = mean_sd([concentration(runs[True, s][-1]) - 1 / K for s in SEEDS])
on_mean, on_sd = mean_sd([runs[True, s][-1]["expected_latency"] / uniform_lat - 1 for s in SEEDS])
off_mean, off_sd = mean_sd([runs[False, s][-1]["expected_latency"] / uniform_lat - 1 for s in SEEDS])
latency_signal, latency_noise = off_mean - on_mean, off_sd
warm = [records[config.warmup_epochs - 1]["train_acc"] for records in runs.values()]  # the last warm-up epoch
final = [records[-1]["valid_acc"] for records in runs.values()]  # batch norm recalibrated
final_raw = [searches[key].evaluate(records[-1]["best_arch"], recalibrate=False)["acc"]  # running statistics
             for key, records in runs.items()]
n_seen = min(config.steps_per_epoch or n_w, n_w // config.batch_size) * config.batch_size  # one epoch's w pass
chance, n_valid = 1 / NUM_CLASSES, len(subsets.valid_y)
chance_sd, seen_sd = (math.sqrt(chance * (1 - chance) / count) for count in (n_valid, n_seen * len(warm)))
(warm_mean, warm_sd), (final_mean, final_sd) = mean_sd(warm), mean_sd(final)
final_se = final_sd / math.sqrt(len(final))  # the noise of the mean over the six runs
print(f"1. largest P_theta rose by {rise_mean:.2f} +- {rise_sd:.2f} from 1/9 (FBNet, mean +- SD over {n} seeds)")
print(f"2. E[LAT] changed by {on_mean:+.0%} +- {on_sd:.0%} with the latency term, {off_mean:+.0%} +- {off_sd:.0%} "
      f"without (mean +- SD over {n} seeds): a difference of {latency_signal:.0%}, "
      f"{latency_signal / latency_noise:.1f} times the spread without the latency term")
print(f"3. the super net at the end of the warm-up: {warm_mean:.1%} on average ({min(warm):.1%} to {max(warm):.1%}) "
      f"on the {n_seen} training images of the epoch in each of the 6 runs, against chance {chance:.0%} +- "
      f"{seen_sd:.1%} on as many images: {(warm_mean - chance) / seen_sd:.1f} SD above (in the last epoch: "
      f"{min(r[-1]['train_acc'] for r in runs.values()):.1%} to {max(r[-1]['train_acc'] for r in runs.values()):.1%})")
print(f"   the most likely architectures at the end, batch norm recalibrated: {final_mean:.1%} +- {final_se:.1%} "
      f"(mean +- standard error of the 6 runs; {min(final):.1%} to {max(final):.1%}), chance {chance:.0%} "
      f"+- {chance_sd:.1%} on {n_valid} images: {(final_mean - chance) / final_se:.1f} standard errors above")
print(f"   the same architectures with the super net's running statistics: {mean_sd(final_raw)[0]:.1%} "
      f"({min(final_raw):.1%} to {max(final_raw):.1%}); recalibration raised the accuracy in "
      f"{sum(a > b for a, b in zip(final, final_raw))} of the 6 runs and lowered it in "
      f"{sum(a < b for a, b in zip(final, final_raw))}")

# %%
assert rise_mean > 0.2 and rise_mean > 2 * rise_sd  # theta concentrated, clearly more than the seeds disagree
assert on_mean < 0 and latency_signal > 2 * latency_noise  # the latency term lowered E[LAT], beyond the noise
assert warm_mean > chance + 4 * seen_sd and min(warm) > chance  # the super net learned in the warm-up
assert final_mean > chance + 2 * max(final_se, chance_sd)  # the found architectures too: t > 2 (one-sided p < 0.05)
assert all(0 <= acc <= 1 for acc in final + final_raw)

# %% [markdown]
# Read the lines together. $\theta$ concentrates, and with the latency term it concentrates on faster
# blocks: $E[\mathrm{LAT}]$ falls by more than it moves without the latency term.
# The super net clearly learned during the warm-up, and the most likely architectures at the end,
# scored with the super net's weights and their own batch-norm statistics, are above chance by more
# than twice the larger of two noises: the standard error of the six runs' mean, and a guesser's
# spread on the validation images (the line above prints how many standard errors). Their accuracy
# varies from run to run, and weights shared by nine candidates fit no single architecture well
# (section 7): this is why FBNet samples architectures from $P_\theta$ and trains them from scratch
# instead of trusting the super net's score of them.

# %% [markdown]
# The search, epoch by epoch: $E[\mathrm{LAT}]$ under $P_\theta$ and the accuracy of the most likely
# architecture with the super net's weights, for the three seeds with the latency term (solid) and
# without it (dashed). $\theta$ is frozen for the first epochs, so $E[\mathrm{LAT}]$ starts flat (and
# the most likely architecture is then just the first candidate everywhere, `k3_e1`).

# %% tags=["nbval-ignore-output"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
epochs = [0] + [r["epoch"] for r in runs[True, SEED]]
for (with_latency, seed), records in runs.items():
    style = dict(color=plt_color(0 if with_latency else 1), ls="-" if with_latency else "--", marker=".",
                 label=("FBNet" if with_latency else "no latency term") if seed == SEED else None)
    axes[0].plot(epochs, [uniform_lat] + [r["expected_latency"] for r in records], **style)
    axes[1].plot(epochs, [chance] + [r["valid_acc"] for r in records], **style)
axes[1].axhline(chance, color="k", lw=0.8, ls=":", label=f"chance ({chance:.0%})")
axes[0].set(xlabel="epoch", ylabel="E[LAT] (ms)", title=r"expected latency under $P_\theta$")
axes[1].set(xlabel="epoch", ylabel="validation accuracy",
            title="most likely architecture, super net's weights, BN recalibrated")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
assert len(epochs) == config.epochs + 1

# %% [markdown]
# $P_\theta$ itself (seed 0): after the first epoch that trains $\theta$, after the last, and after
# the last without the latency term, on one colour scale from 0 to 1 (the start is $1/9$ everywhere).

# %% tags=["nbval-ignore-output"]
first_trained = config.warmup_epochs  # index of the first record whose epoch trained theta
views = [(runs[True, SEED][first_trained], f"FBNet, epoch {first_trained + 1}"),
         (runs[True, SEED][-1], f"FBNet, epoch {config.epochs}"),
         (runs[False, SEED][-1], f"no latency term, epoch {config.epochs}")]
fig, axes = plt.subplots(1, 3, figsize=(16, 0.9 + 0.42 * macro.num_layers))
for ax, (record, title) in zip(axes, views):
    heatmap(ax, F.softmax(record["theta"], dim=-1), row_labels=[f"layer {l}" for l in range(macro.num_layers)],
            col_labels=FBNET_BLOCKS, vmin=0, vmax=1, title=title + r": $P_\theta$", fontsize=7)
fig.tight_layout()
plt.show()

# %%
assert all(torch.allclose(F.softmax(r["theta"], -1).sum(-1), torch.ones(macro.num_layers)) for r, _ in views)

# %% [markdown]
# ### The final architectures
#
# FBNet does not keep only the most likely architecture: it samples several from the learned
# distribution $P_\theta$ (`fbnet.sample_architectures`, one Gumbel-max draw per layer) and trains
# them from scratch on the full task. Six samples of each seed-0 search, with the latency the table
# predicts for them:

# %% tags=["nbval-ignore-output"]
sampled_lat = {}
for with_latency in (True, False):
    archs = fbnet.sample_architectures(runs[with_latency, SEED][-1]["theta"], 6, seed=SEED)
    sampled_lat[with_latency] = [table.latency(a) for a in archs]
    print("FBNet:" if with_latency else "without the latency term:")
    for arch, lat in zip(archs, sampled_lat[with_latency]):
        print(f"  {str(arch):<62} LAT {lat:.3f} ms")
print(f"mean LAT of the samples: {sum(sampled_lat[True]) / 6:.3f} ms with the latency term, "
      f"{sum(sampled_lat[False]) / 6:.3f} ms without; the average network of the space: {uniform_lat:.3f} ms, "
      f"the fastest: {table.extremes()[0]:.3f} ms")

# %%
assert all(len(v) == 6 and all(table.extremes()[0] <= x <= table.extremes()[1] for x in v) for v in sampled_lat.values())

# %% [markdown]
# ### The latency-accuracy trade-off
#
# Where do the networks each setting finds lie in the latency-accuracy plane, and where do random
# ones lie? For each of the six searches, `fbnet.latency_accuracy` draws two architectures from its
# $P_\theta$ (the found networks) and two uniformly at random (the same two for both settings of a
# seed), and places each at its latency from the table, $\mathrm{LAT}(a)$, and its validation accuracy
# with that search's super-net weights, batch norm recalibrated. The random architectures are scored
# on the same super nets as the found ones, so both share the quality of those weights. The two
# settings are FBNet ($\beta = 0.6$) and the latency term switched off: no second $\beta$ fits the
# fast mode's time budget (exercise 1). Each summary line is the mean over the three seeds of each
# search's mean, with the SD over the seeds.

# %% tags=["nbval-ignore-output"]
points = {(on, seed): fbnet.latency_accuracy(search, found=2, random=2, seed=seed)  # random: the same for both settings
          for (on, seed), search in searches.items()}


def kind_mean(search_points, kind, field):  # the mean of one field over one search's points of one kind
    values = [p[field] for p in search_points if p["kind"] == kind]
    return sum(values) / len(values)


rows = {(on, kind): tuple(mean_sd([kind_mean(points[on, s], kind, field) for s in SEEDS])
                          for field in ("latency", "acc"))  # (LAT, accuracy), each (mean, SD) over the seeds
        for on in (True, False) for kind in ("found", "random")}
names = {True: "FBNet", False: "no latency term"}
print(f"{'':>41} {'LAT (ms)':>15} {'accuracy':>15}")
for (on, kind), ((lat_m, lat_s), (acc_m, acc_s)) in rows.items():
    label = f"{names[on]}, found" if kind == "found" else f"random, on the {names[on]} super nets"
    print(f"{label:>41} {lat_m:8.3f} +- {lat_s:.3f} {acc_m:9.1%} +- {acc_s:.1%}")
gain = {on: mean_sd([kind_mean(points[on, s], "found", "acc") - kind_mean(points[on, s], "random", "acc")
                     for s in SEEDS]) for on in (True, False)}
for on, (g_m, g_s) in gain.items():
    verdict = "beyond" if abs(g_m) > 2 * g_s else "within"
    print(f"{names[on]}: found minus random on the same super net: {g_m:+.1%} +- {g_s:.1%} (mean +- SD over "
          f"{len(SEEDS)} seeds): {verdict} the noise (twice the SD)")


def found_difference(field):  # all found networks, no latency term minus FBNet: difference of means, Welch's t
    on, off = (torch.tensor([p[field] for s in SEEDS for p in points[with_latency, s] if p["kind"] == "found"],
                            dtype=torch.float64) for with_latency in (True, False))
    difference = (off.mean() - on.mean()).item()
    return difference, difference / math.sqrt(on.var().item() / len(on) + off.var().item() / len(off))


(lat_gap, lat_t), (acc_gap, acc_t) = found_difference("latency"), found_difference("acc")
print(f"FBNet's networks are {lat_gap:.3f} ms faster (Welch's t = {lat_t:.1f} over the found networks of both "
      f"settings) and {abs(acc_gap):.1%} {'less' if acc_gap > 0 else 'more'} accurate (t = {abs(acc_t):.1f}) than "
      "those found without the latency term")

fig, ax = plt.subplots(figsize=(7, 4.4))
styles = {(True, "found"): dict(color=plt_color(0), marker="o"), (False, "found"): dict(color=plt_color(1), marker="s"),
          (True, "random"): dict(color="#888888", marker="x"), (False, "random"): dict(color="#bbbbbb", marker="+")}
for (on, kind), style in styles.items():
    mine = [p for s in SEEDS for p in points[on, s] if p["kind"] == kind]
    label = f"{names[on]}: found" if kind == "found" else f"random, on the {names[on]} super nets"
    ax.scatter([p["latency"] for p in mine], [p["acc"] for p in mine], s=22, alpha=0.7, label=label, **style)
    if kind == "found":
        (lat_m, lat_s), (acc_m, acc_s) = rows[on, kind]
        ax.errorbar(lat_m, acc_m, xerr=lat_s, yerr=acc_s, color=style["color"], capsize=3, lw=1.5)
ax.axhline(chance, color="k", lw=0.8, ls=":", label=f"chance ({chance:.0%})")
ax.axvline(uniform_lat, color="k", lw=0.8, ls="--", label="E[LAT] of a uniformly random network")
ax.set(xlabel="LAT(a) from the table (ms)", ylabel="validation accuracy (super net's weights, BN recalibrated)",
       title="latency-accuracy plane, 3 seeds per setting (bars: mean and SD over seeds)")
ax.grid(alpha=0.3)
ax.legend(fontsize=7)
plt.show()

# %%
assert all(len(v) == 4 and all(table.extremes()[0] <= p["latency"] <= table.extremes()[1] and 0 <= p["acc"] <= 1
                                for p in v) for v in points.values())
assert [p["arch"] for p in points[True, SEED] if p["kind"] == "random"] == \
    [p["arch"] for p in points[False, SEED] if p["kind"] == "random"]  # random: the same for both settings
assert all(p["acc"] == searches[key].evaluate(p["arch"])["acc"] for key in [(True, SEED)] for p in points[key])

# %% [markdown]
# The printed lines measure, against the spread of the networks and the disagreement of the seeds,
# how far the latency term moved the found networks towards the fast end of the plane, whether the two
# settings' networks also differ in accuracy, and whether the found networks beat random ones on the
# same weights. Two draws per search blur the shift in latency: section 5 asserted it on
# $E[\mathrm{LAT}]$ under $P_\theta$, which no sampling blurs. These accuracies are those of super-net weights after a few dozen steps:
# a real trade-off curve needs the found networks trained from scratch (exercise 2).

# %% [markdown]
# ### Straight-through in the search
#
# With `hard=True` a weight step runs only the sampled block of each layer, so it is much cheaper. But
# every step then trains one random path, and this small super net learns little that way in the fast
# setting's few steps. The warm-up of a straight-through search (seed 0: the same 20 weight steps, at
# the same temperatures and learning rate), against the six soft runs above, on the training batches
# of the last warm-up epoch:

# %% tags=["nbval-ignore-output"]
hard_search = fbnet.FBNetSearch(config.replace(hard=True, seed=SEED), subsets)
start = time.perf_counter()
hard_records = [hard_search.step(epoch) for epoch in range(config.warmup_epochs)]  # theta frozen: w steps only
hard_seconds = time.perf_counter() - start
hard_warm, one_sd = hard_records[-1]["train_acc"], math.sqrt(chance * (1 - chance) / n_seen)
soft_seconds = sum(r["seconds"] for records in runs.values() for r in records[:config.warmup_epochs]) / len(runs)
print(f"straight-through: {hard_warm:.1%} (chance {chance:.0%} +- {one_sd:.1%} on these {n_seen} images); soft: "
      f"{warm_mean:.1%} on average, {min(warm):.1%} to {max(warm):.1%} in the six runs")
print(f"the two warm-up epochs took {hard_seconds:.1f} s straight-through, {soft_seconds:.1f} s soft (mean of the "
      "six runs; each epoch includes scoring the most likely architecture)")

# %%
assert hard_warm < warm_mean - 3 * one_sd  # the straight-through warm-up learned clearly less than the soft one

# %% [markdown]
# ## 6. The published FBNet-A, -B and -C
#
# The paper's Figure 4 shows the three networks found for a Samsung Galaxy S8 (FBNet-A, -B) and an
# iPhone X (FBNet-C, with a different latency table); they are data in the package
# (`fbnet.FBNET_A`, ..., taken from the authors' released definitions, one layer of FBNet-B
# corrected from the figure: see the docstring of `fbnet.PUBLISHED`). Built at 224x224 with 1,000
# classes and counted with our own counter (`blocks.profile`: multiply-adds of one image through
# the convolutions and the classifier, the "FLOPs" of the mobile papers; parameters of the
# convolutions and the classifier, without batch norm), against the paper's ImageNet results table
# and the authors' model-zoo README:

# %%
print(f"{'':>8} {'params (M): ours':>16} {'paper':>6} {'README':>7}   {'multiply-adds (M): ours':>23} {'paper':>6} {'README':>7}")
counts = {}
for name, (arch, head) in fbnet.PUBLISHED.items():
    p = blocks.profile(fbnet.published_model(name), (3, 224, 224))
    counts[name] = p
    paper, readme = fbnet.PAPER_RESULTS[name], fbnet.AUTHORS_README[name]
    print(f"{name:>8} {p.conv_linear_params / 1e6:16.2f} {paper['params']:6.1f} {readme['params']:7.1f}   "
          f"{p.macs / 1e6:23.1f} {paper['flops']:6.0f} {readme['flops']:7.1f}")
b, c = counts["fbnet_b"], counts["fbnet_c"]
print(f"FBNet-B parameters: {b.conv_linear_params / 1e6 / fbnet.PAPER_RESULTS['fbnet_b']['params'] - 1:+.1%} vs the paper")
print(f"FBNet-C multiply-adds: {c.macs / 1e6 / fbnet.AUTHORS_README['fbnet_c']['flops'] - 1:+.1%} vs the README, "
      f"{c.macs / 1e6 / fbnet.PAPER_RESULTS['fbnet_c']['flops'] - 1:+.1%} vs the paper")
print("FBNet-B, layer by layer:", fbnet.FBNET_B)

# %%
for name, p in counts.items():
    paper, readme = fbnet.PAPER_RESULTS[name], fbnet.AUTHORS_README[name]
    assert round(p.conv_linear_params / 1e6, 1) == readme["params"]  # parameters: as the README prints them
    assert abs(p.macs / 1e6 - paper["flops"]) / paper["flops"] < 0.03  # multiply-adds: within 3% of the paper
assert round(counts["fbnet_b"].conv_linear_params / 1e6, 1) == 4.8 != fbnet.PAPER_RESULTS["fbnet_b"]["params"]
assert round(counts["fbnet_c"].macs / 1e6) == 385 and fbnet.PAPER_RESULTS["fbnet_c"]["flops"] == 375
assert round(counts["fbnet_a"].conv_linear_params / 1e6, 1) == 4.3 and round(counts["fbnet_a"].macs / 1e6) == 250
assert round(counts["fbnet_b"].macs / 1e6) == 297 and round(counts["fbnet_c"].conv_linear_params / 1e6, 1) == 5.5

# %% [markdown]
# FBNet-A agrees with the paper (4.3M parameters, 250M multiply-adds against 249M). Two numbers do
# not, and we state them rather than tune the counter:
#
# - **FBNet-B has 4.8M parameters, the paper says 4.5M.** The authors' own README also says 4.8M
#   for the released model, and our multiply-adds (297M) match the paper's 295M, so the 4.5M is most
#   likely a slip in the paper's table.
# - **FBNet-C has 385M multiply-adds, the paper says 375M, the authors' README 383M.** Our count is
#   about half a percent above the README and a few percent above the paper (printed above); the
#   parameters (5.5M) agree with both. The remainder depends on what a counter includes (we count the
#   classifier, and no batch norm, pooling or additions).

# %% [markdown]
# ## 7. Pitfalls
#
# - **A latency table belongs to one device.** The table above was measured on this machine; the
#   paper's FBNet-B (Samsung S8) and FBNet-C (iPhone X) differ because their tables differ. A table
#   measured with several threads, another batch size or another torch version is another table:
#   the cache key holds the device, the torch version and the shape for that reason.
# - **The sum of the table is a model of the latency, not the latency.** Section 2 measured how well
#   it predicts whole networks here. On a small CPU network every block pays a fixed overhead of
#   dispatch (the table's cheapest real blocks cost about as much as its most expensive ones), so the
#   table mostly counts blocks, and `skip` is almost free: the latency term then pushes towards the
#   shallowest network.
# - **The unit of LAT is a hyperparameter.** $(\log \mathrm{LAT})^\beta$ needs LAT above one unit,
#   and the gradient of the latency term scales with $\beta / \log \mathrm{LAT}$: the same network in
#   µs or in ms is pulled towards fast blocks with different force.
# - **Weight sharing.** The accuracy of an architecture with the super net's weights is not its
#   accuracy when trained alone: its blocks were trained inside other architectures, with soft masks
#   at a high temperature. FBNet trains the sampled architectures from scratch. Batch norm adds to
#   the gap: its running statistics, which evaluation uses, were averaged over many masks and over
#   weights that changed quickly, so they fit no single architecture well. The search therefore
#   re-estimates them for each architecture it scores (`FBNetSearch.evaluate`), as SPOS does; section
#   5 printed what that changed.
# - **A short annealing.** With the paper's schedule squeezed into a few epochs, the masks become
#   almost one-hot while $P_\theta$ is still spread out, so the super net trains a different random
#   single path at each step, which teaches this small super net little (the straight-through run of
#   section 5). The fast mode therefore stops the annealing at $\tau = 0.5$; the docstring of
#   `FBNetConfig.fast()` records what the paper's full schedule gave on the project's test machine.
# - **Cost.** The soft super net runs all nine blocks of every layer at every step: nine networks'
#   worth of compute and memory. The straight-through variant (`hard=True`) runs one block per layer
#   in the weight steps, but then each step trains one random path, and each block only on the steps
#   that sample it.
#
# ## 8. Summary
#
# - FBNet fixes a layer-wise macro-architecture (Table 1: 22 searchable layers) and searches one of
#   nine MobileNetV2-style blocks per layer: $9^{22} \approx 10^{21}$ architectures.
# - The latency of an architecture is the sum of a lookup table measured on the target device,
#   cached per device, shape and library version.
# - The loss is $\mathrm{CE} \cdot \alpha (\log \mathrm{LAT})^\beta$: the power acts on the logarithm,
#   so $\beta$ is not redundant with $\alpha$.
# - The Gumbel-softmax turns the choice of a block into a differentiable, temperature-controlled
#   mask; the expected latency is differentiable in $\theta$; both were checked against the formula,
#   finite differences and the straight-through variant.
# - In the search, $\theta$ concentrates and the latency term lowers the expected latency, beyond the
#   spread over seeds; the final architectures are sampled from $P_\theta$.
# - Scored with the super net's weights, an architecture needs its own batch-norm statistics
#   (recalibration); the found architectures are then above chance beyond the noise of six runs, and
#   in the latency-accuracy plane the latency term moves them to the fast end.
#
# ## 9. Exercises
#
# 1. Run the search at $\beta = 0.3$ and $\beta = 1.0$ (`config.replace(beta=...)`) and add the
#    architectures each finds to the latency-accuracy plane (`fbnet.latency_accuracy`): the trade-off
#    that $\alpha$ and $\beta$ control.
# 2. Train the six sampled architectures from scratch (`fbnet.FBNet(arch, macro)` and
#    `nas_tutorial.training.fit`) and compare their accuracy with the super net's estimate.
# 3. Replace the measured table by multiply-adds (`latency="macs"`): which blocks does the search
#    prefer now, and why does the paper insist on measuring?
# 4. Measure the table with two threads (`torch.set_num_threads(2)`), or on a GPU at batch sizes 1
#    and 64, and compare the rankings of the blocks.
# 5. Run a whole search with the straight-through sample (`hard=True`): how many more weight steps
#    does it need before the super net beats chance, and does it still fit in the soft search's time?
