# %% [markdown]
# # PNAS: progressive neural architecture search
#
# **Paper.** Chenxi Liu, Barret Zoph, Maxim Neumann, Jonathon Shlens, Wei Hua, Li-Jia Li, Li Fei-Fei,
# Alan Yuille, Jonathan Huang and Kevin Murphy, *Progressive Neural Architecture Search*, ECCV 2018,
# [arXiv:1712.00559](https://arxiv.org/abs/1712.00559).
#
# **Idea.** NASNet found its cell by training thousands of sampled networks to teach a
# reinforcement-learning controller. PNAS needs far fewer trainings: it searches in order of growing complexity,
# a *sequential model-based optimisation* (SMBO): train every cell of **one** block, fit a cheap
# *surrogate* that predicts a cell's accuracy from its description, then, for $b = 2, \dots, B$,
# add one block to each cell of the current beam in every possible way, let the surrogate rank
# all these children, train only the $K$ it ranks best, and finetune the surrogate on their
# measured accuracies. The surrogate is an LSTM, because it must read cells of every length
# $b = 1 \dots B$. Like Genetic CNN (notebook 04), PNAS trains candidates from scratch, so its
# beams go through the same evaluators (in-process, process pool, Ray). The code is in
# `nas_tutorial/pnas.py` (space, expansion, surrogates, search, PNASNet-5), with
# `nas_tutorial/cells.py` (the network a cell is trained in) and `nas_tutorial/evaluators.py`.
#
# **Run time.** The parameters cell below has two sizes. Fast mode (`NAS_TUTORIAL_FAST=1`, what
# the tests run) is a real search on CIFAR-10 with $B = 3$ blocks and a beam of $K = 8$, tiny
# networks on 8x8 images. It trains 152 networks, most of them the 136 one-block cells (section 4
# says why all of them), and took 79 s on the project's 2-core test machine with little else
# running (100 to 140 s while other jobs shared its cores). Its networks are far too small to
# find a good cell, but large enough for the surrogate to learn something real, which the
# notebook checks against the noise. The default mode (on a GPU) searches $B = 4$ blocks with a beam of 16 on 32x32 images and is meant
# to stay under a quarter of an hour: an **estimate**, not yet timed on a GPU.

# %% tags=["parameters"]
import os
import time

from nas_tutorial.utils import parse_flag

FAST = parse_flag(os.environ.get("NAS_TUTORIAL_FAST"), "NAS_TUTORIAL_FAST")  # 1/true/yes/on: fast mode

if FAST:  # CPU laptop: B = 3, K = 8, networks of 3 cells x 8 channels on 8x8 images, one epoch
    NUM_BLOCKS, BEAM_SIZE, SURROGATE_UNITS = 3, 8, 32  # as pnas.PNASConfig.fast()
    CELLS_PER_STACK, CHANNELS = 1, 8  # a candidate network: 3N = 3 cells, F = 8 channels
    TRAIN_SIZE, IMAGE_SIZE, EPOCHS, BATCH_SIZE, LR = 2_400, 8, 1, 64, 0.1  # 1,200 training + 1,200 validation
    WORKERS = 2  # train on a pool of 2 worker processes
else:  # GPU: B = 4, K = 16, the paper's N = 2 at F = 16 on 32x32 images, at most 15 minutes (an estimate)
    NUM_BLOCKS, BEAM_SIZE, SURROGATE_UNITS = 4, 16, 100  # the paper's surrogate: 100 units
    CELLS_PER_STACK, CHANNELS = 2, 16
    TRAIN_SIZE, IMAGE_SIZE, EPOCHS, BATCH_SIZE, LR = 6_000, 32, 3, 128, 0.1  # 3,000 training + 3,000 validation
    WORKERS = None  # None: train in this process, on the GPU
SEEDS = 5  # surrogate seeds of the noise measurement
SEED = 0

# %%
import itertools
import tempfile
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from nas_tutorial import pnas
from nas_tutorial.cells import NetworkCIFAR, parameter_count
from nas_tutorial.data import default_data_root, load_cifar10
from nas_tutorial.drawing import cell_graph, show
from nas_tutorial.evaluators import Evaluator, InProcessEvaluator, ProcessPoolEvaluator
from nas_tutorial.ops import OPS
from nas_tutorial.utils import pick_device, seed_everything

device = pick_device()
DATA_ROOT = str(default_data_root())  # $NAS_TUTORIAL_DATA, else ~/.cache/nas_tutorial
# on a CPU, one torch thread: these networks are many small kernels (see benchmarks/README.md)
TORCH_THREADS = 1 if device.type == "cpu" else None
if TORCH_THREADS:
    torch.set_num_threads(TORCH_THREADS)
seed_everything(SEED)
cifar = load_cifar10(DATA_ROOT)
print(f"CIFAR-10 images found: {len(cifar.train_labels):,} training, {len(cifar.test_labels):,} test"
      + (" (a partial set; the full one has 50,000 and 10,000)" if len(cifar.train_labels) < 50_000 else ""))

# %% [markdown]
# ## 1. The search space: cells of blocks
#
# A **cell** is $B$ **blocks**. Block $b$ reads two inputs $I_1, I_2$, applies an operation to
# each, $O_1, O_2$, and adds the results (the paper's combiner $\mathcal{C}$ has one choice,
# addition). An input is one of
#
# $$ \mathcal{I}_b = \{H^{c-2}, H^{c-1}, H^{c}_1, \dots, H^{c}_{b-1}\}, \qquad |\mathcal{I}_b| = b + 1 , $$
#
# the outputs of the two previous cells and of the blocks before it. In the code a block is a
# pair of `(operation, input)` edges with inputs counted like DARTS's genotypes: 0 is
# $H^{c-2}$, 1 is $H^{c-1}$, $1 + j$ is block $j$. The cell's output concatenates all its blocks
# (as the authors' released PNASNet-5 does; `concat="loose_ends"` keeps only the blocks no other
# block reads). PNAS uses **one** cell for the whole network: where the resolution halves, the
# same cell runs with stride 2 on the edges that read the cell's inputs.
#
# The eight operations $\mathcal{O}$, as names of the operation registry `nas_tutorial.ops.OPS`
# (`pnas.PNAS_OPS`; the notes on the match come from its docstring):
#
# | paper | registry name | match |
# | --- | --- | --- |
# | 3x3, 5x5, 7x7 depthwise-separable convolution | `sep_conv_3x3`, `sep_conv_5x5`, `sep_conv_7x7` | two stacked (ReLU, depthwise, pointwise, batch norm), as the authors' `separable_KxK_2` |
# | 3x3 dilated convolution | `dil_conv_3x3` | **approximate**: a dilated *separable* convolution (DARTS's); the paper says "3x3 dilated convolution" |
# | 1x7 followed by 7x1 convolution | `conv_7x1_1x7` | ReLU, 1x7, 7x1, batch norm |
# | 3x3 average pooling, 3x3 max pooling | `avg_pool_3x3`, `max_pool_3x3` | exact |
# | identity | `skip_connect` | exact; with stride 2 a factorized reduction, where the authors' code uses a strided 1x1 convolution with as many weights |
#
# PNASNet-5 uses neither the dilated nor the 1x7-7x1 convolution, so the released code does not
# settle those two.

# %%
print("PNAS operations:", ", ".join(pnas.PNAS_OPS))
assert len(pnas.PNAS_OPS) == 8 and set(pnas.PNAS_OPS) <= set(OPS) and "none" not in pnas.PNAS_OPS
x = torch.randn(2, 8, 16, 16)  # (B, C, H, W)
for op in pnas.PNAS_OPS:  # every operation keeps the shape at stride 1 and halves it at stride 2
    assert OPS[op](8, 1, True)(x).shape == (2, 8, 16, 16) and OPS[op](8, 2, True)(x).shape == (2, 8, 8, 8)

# %% [markdown]
# A cell of three blocks; block 3 reads block 1 (node 2). In the drawing the blocks are the blue
# nodes numbered from 0 (block 1 is node 0), and the output concatenates all three.

# %%
example = pnas.check_cell([[("sep_conv_3x3", 0), ("max_pool_3x3", 1)],
                           [("sep_conv_5x5", 1), ("skip_connect", 0)],
                           [("avg_pool_3x3", 2), ("sep_conv_3x3", 1)]])
print("cell:", example)
print("as a genotype:", pnas.cell_genotype(example))
show(cell_graph(pnas.cell_genotype(example), title="a PNAS cell of 3 blocks"))

# %% [markdown]
# ### Counting
#
# Block $b$ chooses two inputs and two operations: $|\mathcal{B}_b| = |\mathcal{I}_b|^2
# |\mathcal{O}|^2 |\mathcal{C}| = (b + 1)^2 \cdot 8^2 \cdot 1$, which is 256 for $b = 1$. But
# addition does not care about the order of its two edges, so $(I_1, O_1, I_2, O_2)$ and
# $(I_2, O_2, I_1, O_1)$ are one block: with $n = (b + 1) |\mathcal{O}|$ possible edges there are
# $n (n + 1) / 2$ distinct blocks, **136** for $b = 1$, the paper's "136 unique cells". Both
# counts, by formula and by enumeration, for $b \le 2$:

# %%
def ordered_blocks(b, ops=pnas.PNAS_OPS):  # every (I1, O1, I2, O2), mirror images counted twice
    edges = [(op, node) for node in range(b + 1) for op in ops]
    return list(itertools.product(edges, edges))


def unique_blocks(b, ops=pnas.PNAS_OPS):  # a block and its mirror image are one block
    return {frozenset([first, second]) if first != second else frozenset([first]) for first, second in
            ordered_blocks(b, ops)}


print(" b   ordered  unique (formula, enumerated, pnas.block_choices)")
for b in (1, 2):
    ordered, unique = len(ordered_blocks(b)), len(unique_blocks(b))
    print(f"{b:2d} {ordered:9,d} {pnas.num_block_choices(b):7,d} {unique:10,d} {len(pnas.block_choices(b)):10,d}")
    assert ordered == pnas.num_block_choices(b, symmetric=False) == (b + 1) ** 2 * 8 ** 2
    assert unique == pnas.num_block_choices(b) == len(set(pnas.block_choices(b)))
assert [pnas.num_block_choices(b) for b in (1, 2)] == [136, 300]
assert pnas.num_block_choices(1, symmetric=False) == 256

# %% [markdown]
# A cell of $B$ blocks picks each block independently, $|\mathcal{B}_{1:B}| = \prod_{b=1}^{B}
# |\mathcal{B}_b|$. For $B \le 2$ the whole list of cells fits in memory, so the product is
# checked by enumeration both ways:

# %%
ordered_cells = sum(1 for _ in itertools.product(ordered_blocks(1), ordered_blocks(2)))
two_block_cells = pnas.all_cells(2)
unique_cells = len(set(two_block_cells))
print(f"cells of 2 blocks: {ordered_cells:,} ordered, {unique_cells:,} unique")
assert ordered_cells == pnas.num_cells(2, symmetric=False) == 256 * 576 == 147_456
assert unique_cells == pnas.num_cells(2) == 136 * 300 == 40_800

# %% [markdown]
# At the paper's $B = 5$:

# %%
ordered5, unique5 = pnas.num_cells(5, symmetric=False), pnas.num_cells(5)
print(f"|B_1:5| = {ordered5:.3g} ordered (the paper: 5.6e14); without mirror images within blocks: {unique5:.3g}, "
      f"{unique5 / 1e12:.0f} times the paper's ~1e12")
assert round(ordered5 / 1e14, 1) == 5.6 and round(unique5 / 1e13, 1) == 2.1

# %% [markdown]
# The paper's first number, $5.6 \times 10^{14}$, is the ordered count. It then says that after
# removing symmetries there are "~$10^{12}$ unique cells". **We could not reproduce that figure.**
# Removing the mirror image of every block (the symmetry that turns 256 one-block cells into
# 136) leaves $2.1 \times 10^{13}$, about 21 times more; the paper does not say which other symmetries it
# removed (e.g. swapping two blocks that no other block reads, or blocks that compute the same
# thing), and we did not guess. PNAS never enumerates the space, so the figure changes nothing
# in the algorithm.
#
# ### Expanding a cell by one block
#
# `pnas.expand(cell)` is the paper's `expand-cell`: the parent's $b$ blocks, then every block of
# $\mathcal{B}_{b+1}$. So every child keeps its parent's blocks, and the children of a cell are
# exactly the cells of $b + 1$ blocks whose first $b$ blocks are the parent (checked against the
# enumeration of all 40,800 two-block cells, for every one-block cell):

# %%
children_of = {}  # the enumeration, grouped by first block
for cell in two_block_cells:
    children_of.setdefault(cell[:1], set()).add(cell)
for block in pnas.block_choices(1):
    parent = (block,)
    children = pnas.expand(parent)
    assert len(children) == len(set(children)) == pnas.num_block_choices(2) == 300
    assert all(len(c) == 2 and c[:1] == parent for c in children)  # the parent's block comes first
    assert set(children) == children_of[parent]  # exactly the enumerated cells with that first block
print(f"{len(children_of)} one-block parents x {pnas.num_block_choices(2)} children = {len(two_block_cells):,} "
      "two-block cells, each the child of exactly one parent")
grandchildren = pnas.expand(example)
assert len(grandchildren) == pnas.num_block_choices(4) and all(c[:3] == example for c in grandchildren)

# %% [markdown]
# ## 2. The progressive search (Algorithm 1)
#
# With $\mathcal{S}_b$ the cells trained at step $b$, $\mathcal{S}'_b$ the expansions and $\pi$
# the surrogate:
#
# 1. $\mathcal{S}_1 = \mathcal{B}_1$: train and evaluate every one-block cell, fit $\pi$ on
#    $(\mathcal{S}_1, A_1)$.
# 2. For $b = 2, \dots, B$: $\mathcal{S}'_b$ = every child of every cell of $\mathcal{S}_{b-1}$;
#    predict $\hat A'_b = \pi(\mathcal{S}'_b)$; keep the $K$ best predicted as $\mathcal{S}_b$;
#    train and evaluate them ($A_b$); finetune $\pi$ on $(\mathcal{S}_b, A_b)$.
# 3. Return the best measured cell of $\mathcal{S}_B$.
#
# A whole search trains $|\mathcal{S}_1| + (B - 1) K$ networks: $136 + 4 \times 256 = 1{,}160$
# in the paper, where the expansions it predicts number up to hundreds of thousands per step.
# `pnas.PNASConfig()` is the paper's setting and `PNASConfig.fast()` this notebook's: a random
# subset of $\mathcal{B}_1$ (`first_beam`), a smaller $B$ and $K$, and a smaller surrogate.

# %%
paper, fast = pnas.PNASConfig(), pnas.PNASConfig.fast()
print("paper:", paper)
print("fast: ", fast)
paper_expansions = [256 * pnas.num_block_choices(b) if b > 2 else 136 * pnas.num_block_choices(2) for b in range(2, 6)]
print(f"paper: {paper.models_trained():,} networks trained; expansions predicted at b = 2..5: "
      + ", ".join(f"{n:,}" for n in paper_expansions))
print(f"fast:  {fast.models_trained()} networks trained")
assert (paper.num_blocks, paper.beam_size, paper.first_beam, paper.ensemble_size) == (5, 256, None, 5)
assert paper.models_trained() == 136 + 4 * 256 == 1160
assert (fast.num_blocks, fast.beam_size, fast.first_beam) == (3, 8, 24) and fast.models_trained() == 40

# %% [markdown]
# To see the algorithm at work before spending any training, a search with `pnas.toy_fitness`:
# an instant, made-up score of a cell (a value per operation, a bonus for reading an earlier
# block, a penalty for a block whose two edges are equal). Nothing is trained; only the surrogate
# has to learn. The setting is `fast()` with this mode's $B$ and $K$ (`NUM_BLOCKS`, `BEAM_SIZE`):

# %% tags=["nbval-ignore-output"]
def toy_config(seed):
    return pnas.PNASConfig.fast(num_blocks=NUM_BLOCKS, beam_size=BEAM_SIZE, embedding_size=SURROGATE_UNITS,
                                hidden_size=SURROGATE_UNITS, seed=seed)  # first_beam: fast()'s 24


toy_records = pnas.search(toy_config(SEED), pnas.toy_fitness)
for r in toy_records:
    rho = "-" if r["spearman"] is None else f"{r['spearman']:+.2f}"
    print(f"b = {r['b']}: {r['num_expansions']:5,d} candidates, {len(r['beam'])} trained, "
          f"mean {r['mean_accuracy']:.3f}, best {r['best_score']:.3f}, Spearman on the new beam {rho}")


# %%
assert [r["b"] for r in toy_records] == list(range(1, NUM_BLOCKS + 1))
assert [len(r["beam"]) for r in toy_records] == [24] + [BEAM_SIZE] * (NUM_BLOCKS - 1)
assert toy_records[-1]["mean_accuracy"] > toy_records[0]["mean_accuracy"]  # the beam improves

# %% [markdown]
# The figure of the seed text, drawn from this run: at each $b$, the surrogate's predictions for
# **all** expansions $\mathcal{S}'_b$ (grey: their range and middle 90%, from the quantiles
# the records keep), the $K$ kept (orange, above the dashed threshold) and everything below it
# dropped unseen; on the right the measured accuracy of each trained cell. `progressive_plot` is
# reused for the CIFAR-10 search below.

# %%
def progressive_plot(records, title):
    fig, (ax_p, ax_m) = plt.subplots(1, 2, figsize=(10, 3.4), sharey=False)
    for r in records[1:]:
        q = np.array(r["expansion_quantiles"])  # 101 quantiles of the predictions of all expansions
        ax_p.plot([r["b"]] * 2, [q[0], q[100]], color="#bbbbbb", lw=2)
        ax_p.plot([r["b"]] * 2, [q[5], q[95]], color="#888888", lw=8, solid_capstyle="butt")
        kept = [e["predicted"] for e in r["beam"]]
        ax_p.scatter(r["b"] + np.linspace(0.06, 0.18, len(kept)), kept, color="#ff7f0e", s=14, zorder=3)
        ax_p.plot([r["b"] - 0.2, r["b"] + 0.2], [min(kept)] * 2, "k--", lw=1)
        ax_p.annotate(f"kept {len(kept)} of {r['num_expansions']:,}", (r["b"] + 0.22, min(kept)), fontsize=8,
                      va="center")
    ax_p.set_xlim(1.5, len(records) + 0.9)
    ax_p.set_xticks([r["b"] for r in records[1:]])
    ax_p.set_xlabel("b (blocks)")
    ax_p.set_ylabel("predicted accuracy")
    ax_p.set_title("predictions: all expansions (grey), kept (orange)")
    for r in records:
        measured = [e["accuracy"] for e in r["beam"] if e["accuracy"] is not None]
        ax_m.scatter([r["b"]] * len(measured), measured, color="#1f77b4", s=14, alpha=0.7)
    ax_m.plot([r["b"] for r in records], [r["mean_accuracy"] for r in records], "o-", color="#2ca02c", label="mean")
    ax_m.set_xticks([r["b"] for r in records])
    ax_m.set_xlabel("b (blocks)")
    ax_m.set_ylabel("measured accuracy")
    ax_m.set_title("the trained beam S_b")
    ax_m.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()

# %% tags=["nbval-ignore-output"]
progressive_plot(toy_records, "PNAS on the toy fitness")

# %%
assert all(r["expansion_quantiles"][-1] == r["beam"][0]["predicted"] for r in toy_records[1:])  # nothing above the kept

# %% [markdown]
# **Search against random search, over seeds.** The same search with three seeds, against
# random search that draws as many cells of $B$ blocks (`pnas.random_cells`) and scores them all.
# These figures come from the *toy* fitness; the CIFAR-10 run in section 4 measures the
# surrogate on real accuracies.

# %% tags=["nbval-ignore-output"]
toy_rows = []
for seed in range(3):
    records = toy_records if seed == SEED else pnas.search(toy_config(seed), pnas.toy_fitness)
    random_scores = [pnas.toy_fitness(pnas.cell_genotype(c))
                     for c in pnas.random_cells(NUM_BLOCKS, records[-1]["trained"], seed=seed)]
    toy_rows.append((records[-1]["best_score"], records[-1]["mean_accuracy"], max(random_scores),
                     np.mean(random_scores)))
    print(f"seed {seed}: PNAS best {toy_rows[-1][0]:.3f}, final beam mean {toy_rows[-1][1]:.3f} | random search "
          f"({len(random_scores)} cells) best {toy_rows[-1][2]:.3f}, mean {toy_rows[-1][3]:.3f}")
toy_rows = np.array(toy_rows)
for j, name in enumerate(("PNAS best", "PNAS final beam mean", "random best", "random mean")):
    print(f"{name:>21}: {toy_rows[:, j].mean():.3f} +- {toy_rows[:, j].std(ddof=1):.3f} (mean +- SD over 3 seeds)")

# %%
assert toy_rows.shape == (3, 4)
assert toy_rows[:, 1].min() > toy_rows[:, 3].max() + 0.05  # every beam above every random mean
assert toy_rows[:, 0].mean() > toy_rows[:, 2].mean()  # and the best found above random search's best

# %% [markdown]
# ## 3. The surrogate
#
# The surrogate must read cells of any length $b$ (it is trained on $b$ blocks and ranks cells of
# $b + 1$), so the paper uses an LSTM. A cell of $b$ blocks is a sequence of $4b$ tokens, block by
# block $I_1, I_2, O_1, O_2$; inputs share one embedding table and operations another (both
# $D = 100$ wide in the paper). The LSTM ($H = 100$ units, one layer) reads the sequence, and its
# hidden state after the **last** token goes through a linear layer and a sigmoid:
# $\hat A = \sigma(w^\top h_{4b} + c)$. (`PNASConfig.fast()` narrows $D$ and $H$ to 32, which
# fits and predicts faster on a small CPU.)
#
# **Where the seed text is wrong.** Its code (from a third-party Keras port) concatenates an
# input's and an operation's embedding into one step, so its LSTM reads $2b$ steps, not the
# paper's $4b$ tokens. It also leaves out three things the paper does: the surrogate is an
# **ensemble** of 5 predictors, each trained on 4/5 of the data; it is trained with the **L1
# loss** (Adam, learning rate 0.01); and mirror-image blocks are counted once (section 1). The
# library follows the paper (`pnas.LSTMPredictor`, `pnas.Surrogate`).
#
# **From scratch.** The LSTM's gates written out, $[i, f, g, o] = W_{ih} x_t + W_{hh} h_{t-1} + b$,
# $c_t = \sigma(f) c_{t-1} + \sigma(i) \tanh(g)$, $h_t = \sigma(o) \tanh(c_t)$, with the weights of a
# `pnas.LSTMPredictor`, checked against it:

# %%
def lstm_surrogate_from_scratch(member, inputs, op_ids):
    """inputs, op_ids: (n, b, 2) token ids -> (n,) predicted accuracies."""
    embedded = [member.input_embedding.weight[inputs], member.op_embedding.weight[op_ids]]  # (n, b, 2, D) each
    tokens = torch.cat(embedded, dim=2)  # (n, b, 4, D)
    x = tokens.flatten(1, 2)  # (n, 4b, D): I1, I2, O1, O2 of block 1, then of block 2, ...
    lstm = member.lstm
    h = c = torch.zeros(len(x), lstm.hidden_size)  # (n, H)
    for t in range(x.shape[1]):
        i, f, g, o = (x[:, t] @ lstm.weight_ih_l0.T + h @ lstm.weight_hh_l0.T
                      + lstm.bias_ih_l0 + lstm.bias_hh_l0).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    return torch.sigmoid(member.head(h)).squeeze(-1)  # sigma(w^T h_4b + c)


torch.manual_seed(SEED)
member = pnas.LSTMPredictor(num_inputs=4, num_ops=len(pnas.PNAS_OPS))  # inputs 0..3; the paper's D = H = 100
cells3 = pnas.random_cells(3, 5, seed=SEED)
inputs, op_ids = pnas.encode(cells3)  # (5, 3, 2) each
print("cell 0 as tokens:", [(blk_in, [pnas.PNAS_OPS[k] for k in blk_op]) for blk_in, blk_op in
                            zip(inputs[0].tolist(), op_ids[0].tolist())])
with torch.no_grad():
    torch.testing.assert_close(lstm_surrogate_from_scratch(member, inputs, op_ids), member(inputs, op_ids))
print("from-scratch LSTM surrogate == pnas.LSTMPredictor on 5 cells of 3 blocks")

# %% [markdown]
# The ensemble (`pnas.Surrogate`) averages its members; each member is trained with Adam and the
# L1 loss on the cells outside its own fifth of the data:

# %%
surrogate = pnas.Surrogate("lstm", num_blocks=3, seed=SEED)  # the paper's: 5 members of 100 units
with torch.no_grad():
    by_hand = torch.stack([m(inputs, op_ids) for m in surrogate.members]).mean(0).double()
torch.testing.assert_close(torch.from_numpy(surrogate.predict(cells3)), by_hand)
print(f"{len(surrogate.members)} members of {surrogate.members[0].lstm.hidden_size} units")
assert len(surrogate.members) == 5

# %% [markdown]
# ### A pitfall: padding
#
# To batch cells of different lengths, the usual trick pads the short ones to the longest. With
# a plain LSTM and zero padding that is wrong twice: the padding tokens are real tokens (id 0 is
# input $H^{c-2}$ and operation `sep_conv_3x3`), and the final hidden state is read after the
# padding, not after the cell's last token. The prediction of a cell then depends on which cells
# share its batch. The library never pads: it groups the cells of a call by length and runs each
# group as its own batch, so a cell's prediction is the same alone or in any company. Here, a
# one-block cell predicted alone, beside a three-block cell, and zero-padded to three blocks:

# %%
short, long = pnas.random_cells(1, 1, seed=1)[0], pnas.random_cells(3, 1, seed=2)[0]
alone = surrogate.predict([short])[0]
together = surrogate.predict([long, short])[1]  # grouped by length: no padding
short_in, short_ops = pnas.encode([short])
long_in, long_ops = pnas.encode([long])
pad = torch.zeros(1, 2, 2, dtype=torch.long)  # two blocks of token 0
naive_in = torch.cat([torch.cat([short_in, pad], 1), long_in])  # (2, 3, 2)
naive_ops = torch.cat([torch.cat([short_ops, pad], 1), long_ops])
with torch.no_grad():
    naive = surrogate(naive_in, naive_ops).mean(0)[0].item()  # one batch of (2, 3, 2), zero padded
print(f"alone {alone:.6f}   beside a 3-block cell (library) {together:.6f}   zero-padded in one batch {naive:.6f}")
assert alone == together and abs(naive - alone) > 1e-4

# %% [markdown]
# (`torch.nn.utils.rnn.pack_padded_sequence` would also do it right; grouping by length is simpler,
# and costs nothing here because all the cells of a step have the same length.)
#
# **Rank correlation.** What matters for the search is the *order* of the predictions, since only
# the top $K$ are kept, so the paper measures the surrogate with Spearman's rank correlation
# $\rho$: Pearson's correlation of the ranks. `pnas.spearman` against that definition:

# %%
rng = np.random.default_rng(SEED)
a, b = rng.normal(size=20), rng.normal(size=20)


def ranks(v):  # 0 .. n-1 (no ties in continuous data)
    return np.argsort(np.argsort(v))


assert abs(pnas.spearman(a, b) - np.corrcoef(ranks(a), ranks(b))[0, 1]) < 1e-12
assert pnas.spearman(a, 2 * a + 1) == 1.0 and pnas.spearman(a, -a) == -1.0
print(f"rho of two independent samples of 20: {pnas.spearman(a, b):+.3f}")

# %% [markdown]
# ## 4. A real search on CIFAR-10
#
# **Fitness** (`pnas.training_fitness`, an `evaluators.TrainFromScratch` that builds the network
# of `pnas.build_network`): train the cell's network from scratch on half of a class-balanced
# CIFAR-10 subset and score it on the other half. The paper's candidates are $N = 2$, $F = 24$,
# 20 epochs at 32x32; the fast mode's are far smaller (the parameters cell). Each candidate's
# training seed is fixed by the run seed and its code, so the same cell gets the same accuracy
# whichever evaluator trains it, in whichever order.
#
# **Setting.** `PNASConfig.fast()` (with this mode's $B$, $K$ and surrogate width) and one change:
# this run trains **all 136** one-block cells, as the paper does ($\mathcal{S}_1 =
# \mathcal{B}_1$), where `fast()` draws 24 of them. Why: on networks this small a measured
# accuracy is noisy (a second training of the same cell, with another seed, gives a noticeably
# different accuracy). While this notebook was written, a surrogate fitted on a few dozen random
# one-block cells could not reliably be told apart from one fitted on shuffled accuracies; fitted
# on most of the 136 it could, clearly (shown below). Training all 136 is most of the fast run's
# time.

# %% tags=["nbval-ignore-output"]
fitness_fn = pnas.training_fitness(DATA_ROOT, cells_per_stack=CELLS_PER_STACK, channels=CHANNELS, epochs=EPOCHS,
                                   train_size=TRAIN_SIZE, image_size=IMAGE_SIZE, batch_size=BATCH_SIZE, lr=LR,
                                   seed=SEED, device=str(device), torch_threads=TORCH_THREADS)
config = pnas.PNASConfig.fast(num_blocks=NUM_BLOCKS, beam_size=BEAM_SIZE, first_beam=None,
                              embedding_size=SURROGATE_UNITS, hidden_size=SURROGATE_UNITS, seed=SEED)
print(config)
print(f"B = {config.num_blocks}, K = {config.beam_size}: {config.models_trained()} networks to train; each "
      f"N = {CELLS_PER_STACK} ({3 * CELLS_PER_STACK} cells), F = {CHANNELS}, {EPOCHS} epoch(s) on {TRAIN_SIZE // 2:,} "
      f"training images of {IMAGE_SIZE}x{IMAGE_SIZE}, scored on {TRAIN_SIZE // 2:,} validation images")

# %%
assert config.first_beam is None and config.models_trained() == 136 + (NUM_BLOCKS - 1) * BEAM_SIZE

# %% [markdown]
# ### Interrupted mid-beam, then resumed
#
# The search writes its checkpoint after every finished training (and after planning a beam and
# after each surrogate fit). To show it, the run below starts in this process and is cut off, as
# by a power failure, after a few trainings of the first beam (`CUT`); then a new search object,
# as a new process would make, reads the file and finishes the run, now on a pool of worker
# processes (`ProcessPoolEvaluator`, each worker with one torch thread; in the default mode on a
# GPU, in this process). `PowerCut` wraps an evaluator: it passes every result on (the search stores it
# and writes the checkpoint), notes the time, and raises after `limit` results.

# %% tags=["nbval-ignore-output"]
class PowerCut(Evaluator):
    """Evaluate with ``inner``; after ``limit`` results (None: never) fail like a machine switched off."""

    def __init__(self, inner, limit=None):
        self.inner, self.fitness_fn, self.limit = inner, inner.fitness_fn, limit
        self.results, self.times = [], []

    def evaluate(self, candidates, *, on_result=None):
        def finished(index, result):
            on_result(index, result)  # the search stores the result and writes its checkpoint
            self.results.append(result)
            self.times.append(time.perf_counter())
            if len(self.results) == self.limit:
                raise KeyboardInterrupt(f"power cut after {self.limit} trainings")

        return self.inner.evaluate(candidates, on_result=finished)


CUT = 6
checkpoint = Path(tempfile.mkdtemp()) / "pnas.pt"
first = PowerCut(InProcessEvaluator(fitness_fn, torch_threads=TORCH_THREADS), limit=CUT)
t0 = time.perf_counter()
try:
    pnas.search(config, first, checkpoint=checkpoint)
except KeyboardInterrupt as err:
    print("first run:", err)

inner = ProcessPoolEvaluator(fitness_fn, workers=WORKERS) if WORKERS else InProcessEvaluator(fitness_fn)
with inner:
    second = PowerCut(inner)
    search = pnas.PNASSearch(config, second, checkpoint=checkpoint)  # a new process would do the same
    print(f"resumed from {checkpoint.name}: {search.resume()}, trainings on disk: {search.trainings}, "
          f"b = {search.b}, still to train in this beam: {len(search.todo)}")
    trained_on_disk = search.trainings
    records = search.run(progress=True)
search_seconds = time.perf_counter() - t0
print(f"{search.trainings} trainings in {search_seconds:.0f} s "
      f"({len(first.results)} before the cut, {len(second.results)} after it)")

# %%
total = config.models_trained()
assert trained_on_disk == CUT and len(first.results) + len(second.results) == search.trainings == total
assert len(search.accuracy) + len(search.failures) == total  # every cell trained once: nothing retrained
before_cut = {r.code: r.fitness for r in first.results}
assert all(e["accuracy"] == before_cut[e["arch"]] for e in records[0]["beam"] if e["arch"] in before_cut)
assert [len(r["beam"]) for r in records] == [136] + [BEAM_SIZE] * (NUM_BLOCKS - 1)

# %% [markdown]
# Nothing finished before the cut was trained again, and its accuracies are in the records as they
# were measured. Would an uninterrupted run give the same records? Yes, if every cell gets the same
# accuracy whoever trains it: below, four cells the pool trained are trained again in this process
# and give the same accuracies, bit for bit (on a CPU; on a GPU, cuDNN's non-deterministic
# kernels may change a few of the network's answers). The same retraining times this process against the
# evaluator on the same kind of cells, one-block cells of $\mathcal{S}_1$: the pool was the
# faster of the two on the 2-core test machine, which is why the fast mode uses it; the last
# line below measures it again.

# %% tags=["nbval-ignore-output"]
pool_results = {r.code: r for r in second.results}
sample = [e["arch"] for e in records[0]["beam"] if e["arch"] in pool_results][::31][:4]
t0 = time.perf_counter()
again = [fitness_fn(pnas.cell_genotype(pnas.parse_cell(arch)))["fitness"] for arch in sample]
here_per_minute = 60 * len(sample) / (time.perf_counter() - t0)
b1_times = [t for r, t in zip(second.results, second.times) if r.code in {e["arch"] for e in records[0]["beam"]}]
evaluator_per_minute = 60 * (len(b1_times) - 2) / (b1_times[-1] - b1_times[1])  # after the workers' start
for arch, acc in zip(sample, again):
    print(f"{pool_results[arch].fitness:.4f} (evaluator) {acc:.4f} (this process)")
name = f"the {WORKERS}-worker pool" if WORKERS else "the in-process evaluator (GPU)"
faster = name if evaluator_per_minute > here_per_minute else "one by one in this process"
print(f"one-block cells per minute: {evaluator_per_minute:.0f} on {name}, "
      f"{here_per_minute:.0f} trained here one by one; faster: {faster}")

# %%
tolerance = 0.0 if device.type == "cpu" else 0.02  # GPU kernels are not bitwise deterministic
assert all(abs(x - pool_results[arch].fitness) <= tolerance for arch, x in zip(sample, again))
assert evaluator_per_minute > 0 and here_per_minute > 0

# %% [markdown]
# ### The run, drawn
#
# The same picture as for the toy fitness: the predictions of all expansions at each $b$, the $K$
# kept, and the measured accuracy of every trained cell.

# %% tags=["nbval-ignore-output"]
for r in records:
    rho = "-" if r["spearman"] is None else f"{r['spearman']:+.2f}"
    print(f"b = {r['b']}: {r['num_expansions']:6,d} candidates, {len(r['beam']):3d} trained, "
          f"mean {r['mean_accuracy']:.3f}, best {r['best_score']:.3f}, Spearman on the new beam {rho}, "
          f"{r['seconds']:.0f} s")
progressive_plot(records, "PNAS on CIFAR-10, this run")

# %%
assert all(0.0 <= e["accuracy"] <= 1.0 for r in records for e in r["beam"] if e["accuracy"] is not None)
assert records[0]["spearman"] is None and all(-1 <= r["spearman"] <= 1 for r in records[1:])

# %% [markdown]
# ### Does the surrogate rank cells better than chance?
#
# The records hold, for each new beam, Spearman's $\rho$ between the surrogate's predictions and
# the measured accuracies, computed before the surrogate is finetuned on that beam (the beam is
# held out). On a beam of $K$ cells (8 in the fast mode) that number is weak evidence: $\rho$ of
# a handful of pairs drawn at random spreads widely around 0, and the $K$ cells were *chosen* as
# the top predictions, so their predictions differ little and their measured accuracies differ
# mostly by training noise.
#
# A test with more power, the kind the paper makes: fit a surrogate on part of the measured
# cells and let it rank cells it has not seen. Here, for each of `SEEDS` seeds, a random two
# thirds of $\mathcal{S}_1$ (the 136 one-block cells) fits a fresh surrogate of the run's
# setting, which then ranks the other third, and also the $b = 2$ beam. **The noise**: the same,
# with the training accuracies shuffled among the cells, so that the surrogate can only learn
# chance.

# %% tags=["nbval-ignore-output"]
s1 = [e for e in records[0]["beam"] if e["accuracy"] is not None]
s1_cells, s1_acc = [pnas.parse_cell(e["arch"]) for e in s1], np.array([e["accuracy"] for e in s1])
beam2_cells = [pnas.parse_cell(e["arch"]) for e in records[1]["beam"] if e["accuracy"] is not None]
beam2_acc = np.array([e["accuracy"] for e in records[1]["beam"] if e["accuracy"] is not None])


def held_out_spearman(seed, shuffle):
    """Fit a fresh surrogate on 2/3 of S_1 (accuracies shuffled or not); rho on the other 1/3 and on S_2."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(s1_cells))
    test, train = order[: len(order) // 3], order[len(order) // 3:]
    targets = rng.permutation(s1_acc[train]) if shuffle else s1_acc[train]
    c = config
    surrogate = pnas.Surrogate(c.surrogate, num_blocks=c.num_blocks, ensemble_size=c.ensemble_size,
                               embedding_size=c.embedding_size, hidden_size=c.hidden_size, seed=seed)
    surrogate.fit([s1_cells[i] for i in train], targets, epochs=c.surrogate_epochs, lr=c.surrogate_lr,
                  batch_size=c.surrogate_batch_size, seed=seed)
    return (pnas.spearman(surrogate.predict([s1_cells[i] for i in test]), s1_acc[test]),
            pnas.spearman(surrogate.predict(beam2_cells), beam2_acc))


t0 = time.perf_counter()
real = np.array([held_out_spearman(seed, shuffle=False) for seed in range(SEEDS)], dtype=np.float64)
chance = np.array([held_out_spearman(seed, shuffle=True) for seed in range(SEEDS)], dtype=np.float64)
print(f"Spearman rho over {SEEDS} seeds (mean +- SD; {time.perf_counter() - t0:.0f} s)")
print(f"{'':32} {'fitted on real accuracies':>26} {'on shuffled (noise)':>20}")
for j, name in enumerate((f"held-out one-block cells ({len(s1_cells) // 3})", f"the b = 2 beam ({len(beam2_cells)})")):
    print(f"{name:32} {real[:, j].mean():+19.2f} +- {real[:, j].std(ddof=1):.2f} "
          f"{chance[:, j].mean():+13.2f} +- {chance[:, j].std(ddof=1):.2f}")
print("per seed, held-out cells:", np.round(real[:, 0], 2), " shuffled:", np.round(chance[:, 0], 2))
margin = real[:, 0].mean() - (chance[:, 0].mean() + 2 * chance[:, 0].std(ddof=1))
print("verdict on held-out one-block cells:", "above the noise" if margin > 0 else "within the noise",
      f"(mean real minus (mean shuffled + 2 SD) = {margin:+.2f})")
beam_margin = real[:, 1].mean() - (chance[:, 1].mean() + 2 * chance[:, 1].std(ddof=1))
print("verdict on the b = 2 beam:", "above the noise" if beam_margin > 0 else "within the noise",
      f"({beam_margin:+.2f})")

# %%
assert real.shape == chance.shape == (SEEDS, 2)
assert real[:, 0].mean() > chance[:, 0].mean() + 2 * chance[:, 0].std(ddof=1)  # the surrogate learned a ranking
assert real[:, 0].min() > chance[:, 0].max()  # every seed's real surrogate beats every shuffled one

# %% [markdown]
# Read the table: fitted on real accuracies, the surrogate ranks one-block cells it never saw
# far better than a surrogate fitted on shuffled accuracies, every seed of one above every seed of
# the other, so the networks' accuracies do carry a signal about their cells and the LSTM
# learns it. The $b = 2$ beam is a different matter: the verdict line says whether its $\rho$
# rises above the shuffled surrogates' spread in this run; with $K$ cells chosen for their high
# predictions, expect it not to.
#
# ### Predicted against measured, step by step
#
# Move the slider over $b$: the callback `pnas.beam_points` (unit-tested without the widget)
# returns the beam of step $b$ as arrays; the plot shows each cell's predicted against measured
# accuracy (at $b = 1$ nothing was predicted, so only the measured accuracies, on a line), with
# the lowest kept prediction dashed. The axes stay fixed. The slider appears when you run the
# cells; first, the view at $b = B$ is drawn once, so that it shows in the saved notebook too.

# %%
all_predicted = [e["predicted"] for r in records[1:] for e in r["beam"]]
all_measured = [e["accuracy"] for r in records for e in r["beam"] if e["accuracy"] is not None]
pad_p, pad_m = 0.05 * (max(all_predicted) - min(all_predicted)) + 1e-3, 0.05 * (max(all_measured) - min(all_measured))
P_LIM = (min(all_predicted) - pad_p, max(all_predicted) + pad_p)
M_LIM = (min(all_measured) - pad_m, max(all_measured) + pad_m)


def show_beam(b=NUM_BLOCKS):
    points = pnas.beam_points(records, b)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    if points["threshold"] is None:  # b = 1: trained without predictions
        ax.scatter(np.full(len(points["measured"]), np.mean(P_LIM)), points["measured"], s=14, alpha=0.6)
        ax.set_title(f"b = 1: {len(points['measured'])} cells trained, none predicted")
    else:
        ax.scatter(points["predicted"], points["measured"], s=24, color="#ff7f0e")
        ax.axvline(points["threshold"], color="k", ls="--", lw=1, label="lowest kept prediction")
        ax.set_title(f"b = {b}: {len(points['measured'])} cells, Spearman {points['spearman']:+.2f}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlim(*P_LIM)
    ax.set_ylim(*M_LIM)
    ax.set_xlabel("predicted accuracy (before training)")
    ax.set_ylabel("measured accuracy")
    plt.show()

# %% tags=["nbval-ignore-output"]
show_beam(NUM_BLOCKS)

# %%
view = pnas.beam_points(records, NUM_BLOCKS)
assert len(view["measured"]) == len(view["predicted"]) == BEAM_SIZE - records[-1]["failed"]
assert view["threshold"] == min(view["predicted"])

# %% tags=["nbval-ignore-output"]
slider = widgets.interact(show_beam, b=widgets.IntSlider(NUM_BLOCKS, 1, NUM_BLOCKS, description="b"))

# %%
assert np.isnan(pnas.beam_points(records, 1)["predicted"]).all() and pnas.beam_points(records, 1)["threshold"] is None

# %% [markdown]
# ## 5. The cells found
#
# What the measured one-block cells say about the operations: the mean accuracy of the 31
# one-block cells that use each operation (on either edge). This is the signal the surrogate
# learns from. On tiny networks trained briefly, parameter-free operations (pooling, identity)
# have nothing to train and can come out ahead; PNASNet-5, found with 20 epochs of training per
# candidate, is mostly separable convolutions.

# %% tags=["nbval-ignore-output"]
by_op = {op: [] for op in pnas.PNAS_OPS}
for cell, acc in zip(s1_cells, s1_acc):
    for op in {op for block in cell for op, _ in block}:
        by_op[op].append(acc)
for op in sorted(by_op, key=lambda o: -np.mean(by_op[o])):
    print(f"{op:>14}: mean accuracy {np.mean(by_op[op]):.3f} over {len(by_op[op])} one-block cells")

# %%
assert all(len(v) == 31 for v in by_op.values())  # 136 - (14 x 15 / 2) cells use each operation

# %% [markdown]
# The best measured cell of the last beam ($\mathcal{S}_B$) is the search's answer. In the fast
# mode it is the best of 8 tiny networks trained for one epoch, so the choice among the beam is
# partly luck (section 4); a real search would now train it at full size.

# %% tags=["nbval-ignore-output"]
best, best_accuracy = search.best()
print(f"best cell of b = {NUM_BLOCKS}: validation accuracy {best_accuracy:.3f} during the search")
print(best)
show(cell_graph(best, title=f"the best cell found (b = {NUM_BLOCKS})"))

# %%
assert pnas.parse_cell(str(best)) and len(pnas.parse_cell(str(best))) == NUM_BLOCKS
assert best_accuracy == max(e["accuracy"] for e in records[-1]["beam"] if e["accuracy"] is not None)

# %% [markdown]
# ### PNASNet-5
#
# The cell the paper found with $B = 5$, $K = 256$, as data: `pnas.PNASNET5`, taken
# from the authors' released code (TensorFlow `pnasnet.py`, with inputs renumbered to our
# convention). Block 3 feeds block 4 and yet is concatenated into the output: the released model
# concatenates all five blocks.

# %%
print(pnas.PNASNET5)
assert len(pnas.cell_from_genotype(pnas.PNASNET5)) == 5
show(cell_graph(pnas.PNASNET5, title="PNASNet-5"))

# %% [markdown]
# **Its size at the paper's CIFAR-10 setting** ($N = 3$, $F = 48$; the auxiliary head not
# counted, as the papers count). The network has $3N$ cells in all: the authors' `pnasnet.py`
# counts cells that way, with the second and third stacks each opened by the cell at stride 2.
# NASNet's convention would be $N$ normal cells per stack plus two reduction cells, $3N + 2$:

# %%
three_n = pnas.paper_parameter_count()
nasnet_way = parameter_count(NetworkCIFAR(pnas.PNASNET5, 48, 10, 3 * 3 + 2, auxiliary=False))  # N = 3, F = 48
print(f"3N = 9 cells:      {three_n:,} parameters ({three_n / 1e6:.1f}M)")
print(f"3N + 2 = 11 cells: {nasnet_way:,} parameters ({nasnet_way / 1e6:.1f}M)")
assert three_n == 3_176_602 and round(three_n / 1e6, 1) == 3.2  # the paper's 3.2M
assert nasnet_way == 4_271_002

# %% [markdown]
# The paper reports 3.2M parameters for PNASNet-5 on CIFAR-10: the $3N$ reading gives 3,176,602,
# which rounds to it; NASNet's convention would give 4.3M. So the paper's figure supports $3N$
# cells, which is what `pnas.build_network` builds.
#
# ## 6. Pitfalls
#
# **A noisy fitness.** A candidate network trained briefly has an accuracy that depends on its
# random initialisation and on the validation images as well as on its cell, and the surrogate
# learns from these noisy labels. Section 4 measured the surrogate against a shuffled one, on
# held-out cells, over seeds; do that before trusting any rank correlation, and do not read much
# into $\rho$ on a beam of a few cells (its spread over seeds is as large as the signal).
#
# **Selection shrinks what you can see.** The beam is the top of the surrogate's ranking, so its
# predictions are close together and its measured accuracies differ mostly by noise: $\rho$ on
# the beam understates the surrogate. The paper tests its predictors on randomly drawn cells
# they have not seen.
#
# **Extrapolating in $b$.** The surrogate is trained on cells of $b$ blocks and ranks cells of
# $b + 1$: it has never seen a block in position $b + 1$. The paper reports lower rank
# correlations on unseen larger cells than on the cells a predictor was trained on; the
# finetuning at each step keeps it up to date. Only the order of the predictions matters: in the
# CIFAR-10 figure of section 4 the predicted accuracies of the larger cells can sit well away from
# the measured ones (compare the two panels' scales) and the search still works as designed.
# Likewise the beam's mean accuracy need not rise with $b$: a cell of more blocks is a larger
# network, and a larger network trained for one epoch can learn less.
#
# **Padding.** An LSTM batch of cells of different lengths must not be zero-padded naively
# (section 3): the prediction of a cell would depend on its batch. Group by length, or pack.
#
# **The seed text's surrogate** reads $2b$ concatenated (input, operation) steps, has no
# ensemble and no L1 loss; the paper's reads $4b$ tokens, and the library follows the paper.
#
# **Counting.** "136 unique" one-block cells removes mirror images within a block; the
# "~$10^{12}$" for $B = 5$ cannot be reproduced that way (we get $2.1 \times 10^{13}$).
#
# **Which cells are in the network.** $3N$ cells (PNAS's code) or $3N + 2$ (NASNet's): the
# parameter count of PNASNet-5 tells them apart, 3.2M against 4.3M.
#
# ## 7. Summary
#
# * A PNAS cell is $B$ blocks, each the sum of two operations on two earlier outputs; the space
#   grows as $\prod_b |\mathcal{B}_b|$, $5.6 \times 10^{14}$ ordered cells for $B = 5$.
# * PNAS searches it in order of size: train all one-block cells, then repeatedly expand the beam
#   by one block, rank all expansions with a surrogate, train the top $K$, finetune the surrogate.
#   It trains $|\mathcal{S}_1| + (B - 1) K$ networks in all.
# * The surrogate is an ensemble of LSTMs over the $4b$ tokens of a cell, trained with the L1 loss;
#   a cell's prediction must not depend on its batch (no padding).
# * The candidates of a beam are independent trainings: any evaluator runs them (in-process, a
#   process pool, Ray), and a checkpoint after every training lets a killed search resume without
#   training anything twice.
#
# ## 8. Exercises
#
# 1. Run the CIFAR-10 search with `first_beam=24` (what `PNASConfig.fast()` does) and repeat the
#    held-out test of section 4: with fewer measured cells, is the surrogate still above the noise?
# 2. Compare the LSTM with the MLP ensemble (`surrogate="mlp"`) on the same held-out test.
# 3. On CIFAR-10, compare the search with random search at the same number of trained networks
#    (`pnas.random_cells(B, config.models_trained(), seed=...)`), over three seeds. How much
#    training time does it take until the difference is larger than its spread?
# 4. Finetune on everything trained so far (`finetune_data="all"`) instead of the new beam only,
#    and watch $\rho$ on the next beam.
# 5. Find a symmetry beyond mirror images within a block that identifies different cells, and
#    count the unique cells of 2 blocks again. How far towards the paper's "~$10^{12}$" for
#    $B = 5$ does it go?
