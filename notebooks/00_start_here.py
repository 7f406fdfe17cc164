# %% [markdown]
# # 00 · Start here: a tour of `nas_tutorial`
#
# Neural architecture search (NAS) automates the design of a network: a **search space** says which
# networks are possible, a **search strategy** picks candidates, and an **estimate of performance**
# scores them. Each notebook of this package takes one paper and builds all three, checking every
# formula with code and running the search for real on CIFAR-10.
#
# | notebook | paper | idea |
# | --- | --- | --- |
# | `00_start_here` | | this tour: data, operations, genotypes, drawings, training |
# | `01_enas` | Pham et al., 2018, [arXiv:1802.03268](https://arxiv.org/abs/1802.03268) | an RL controller samples subgraphs of one shared network |
# | `02_darts` | Liu et al., 2019, [arXiv:1806.09055](https://arxiv.org/abs/1806.09055) | relax the choice of operation to a softmax and descend on it |
# | `03_fbnet` | Wu et al., 2019, [arXiv:1812.03443](https://arxiv.org/abs/1812.03443) | Gumbel-softmax over blocks with a latency term in the loss |
# | `04_genetic_cnn` | Xie & Yuille, 2017, [arXiv:1703.01513](https://arxiv.org/abs/1703.01513) | encode connections as bits and evolve them |
# | `05_pnas` | Liu et al., 2018, [arXiv:1712.00559](https://arxiv.org/abs/1712.00559) | grow cells block by block, a predictor ranks them |
# | `06_spos` | Guo et al., 2020, [arXiv:1904.00420](https://arxiv.org/abs/1904.00420) | train a supernet by single paths, then evolve |
# | `07_nao` | Luo et al., 2018, [arXiv:1808.07233](https://arxiv.org/abs/1808.07233) | an encoder-decoder maps architectures to a continuous space |
#
# Read this tour first, then DARTS (the pattern of the one-shot methods) and Genetic CNN (the
# pattern of the population methods); the others build on those two. The notebooks present in
# this release are the ones in the `notebooks/` folder.
#
# **Run time.** Every notebook has a *fast mode* (set `NAS_TUTORIAL_FAST=1`), which is what the tests
# run: this one executed in about 10 s on the project's 2-core test machine (no GPU). Without it, the
# training run below uses 9,000 images at 32×32 for 15 epochs: a few minutes on a 2-core CPU,
# far less on a GPU (the whole notebook: 23 s on one NVIDIA H200 beside another notebook, measured
# 2026-11-30 with `tools/gpu_check.py`; `benchmarks/gpu_check_2026-11-29.md`). The README lists the
# measured times of every notebook.

# %% tags=["parameters"]
import os

from nas_tutorial.utils import parse_flag

FAST = parse_flag(os.environ.get("NAS_TUTORIAL_FAST"), "NAS_TUTORIAL_FAST")  # 1/true/yes/on: fast mode
TRAIN_SIZE = 1_000 if FAST else 9_000  # images of the training batch used (half train, half validation; 9,000:
# balanced even from the first batch alone, whose rarest class has 937 images)
IMAGE_SIZE = 16 if FAST else 32  # downscaled images for fast CPU runs
EPOCHS = 4 if FAST else 15
SEED = 0

# %%
import matplotlib.pyplot as plt
import torch

from nas_tutorial import data, drawing, genotypes, ops, training, utils

device = utils.pick_device()  # CUDA, then Apple MPS, then CPU
generator = utils.seed_everything(SEED)  # seeds Python, NumPy and torch; returns a seeded CPU generator

# %% [markdown]
# ## 1. Real CIFAR-10
#
# `nas_tutorial.data` reads the official python batches of CIFAR-10 (Krizhevsky, 2009) from a data
# root: the `root` argument, else the `NAS_TUTORIAL_DATA` environment variable, else
# `~/.cache/nas_tutorial`. If the folder is missing it is downloaded with torchvision (about 170 MB);
# a partial folder (say, only `data_batch_1` and `test_batch`) works too.

# %%
cifar = data.load_cifar10()
print("classes:", ", ".join(cifar.classes))
print("training images:", tuple(cifar.train_images.shape), cifar.train_images.dtype)
print("test images:", tuple(cifar.test_images.shape))
if len(cifar.train_labels) < 50_000:
    print(f"a partial CIFAR-10: {len(cifar.train_labels):,} of the 50,000 training images "
          f"and {len(cifar.test_labels):,} of the 10,000 test images")
assert cifar.train_images.shape[1:] == (3, 32, 32) and len(cifar.test_labels) >= 1_000

# %% [markdown]
# The project's tests run on a partial copy (the first of the five training batches and the first
# 1,000 test images), and the saved outputs of these notebooks come from it. With the full set the
# fast mode draws the same number of images (its subsets are a fixed size), so its numbers change
# only through which images are drawn; the default mode's larger subsets need the full set to be
# as large as their settings say.

# %% [markdown]
# The first sixteen training images, with their labels:

# %%
fig, ax = plt.subplots(figsize=(9, 2.8))
drawing.image_grid(ax, cifar.train_images[:16], cifar.train_labels[:16], cifar.classes)
plt.show()

# %% [markdown]
# NAS papers search on half of the training images and use the other half as a **validation set**
# that scores architectures; the test set is only for the final evaluation. `make_subsets` makes
# that split, class-balanced and seeded, and keeps it as normalised tensors on the device, so the
# training loop never touches Python per image.

# %%
subsets = data.make_subsets(cifar, train_size=TRAIN_SIZE, test_size=1_000, image_size=IMAGE_SIZE,
                            device=device, seed=SEED)
per_class = torch.bincount(subsets.train_y.cpu(), minlength=10)
print("images per class in the weight-training half:", per_class.tolist())
assert per_class.min() == per_class.max() == TRAIN_SIZE // 20
assert subsets.train_x.shape[-1] == IMAGE_SIZE

# %% [markdown]
# Augmentation (random crop after 4 pixels of padding, horizontal flip, optional cutout) runs on a
# whole batch at once. Here are the same eight images, augmented twice:

# %%
augment = data.Augment(crop_padding=4, flip=True, cutout=8)
gen = torch.Generator().manual_seed(SEED)
batch = data.to_device_tensor(cifar.train_images[:8])
views = torch.cat([data.denormalise(augment(batch, gen)) for _ in range(2)])
fig, ax = plt.subplots(figsize=(9, 2.6))
drawing.image_grid(ax, views, cifar.train_labels[:8].repeat(2), cifar.classes)
plt.show()

# %% [markdown]
# ## 2. The operation zoo
#
# The cell-based papers (ENAS, DARTS, PNAS, NAO) choose each edge's operation from a small set.
# Every operation maps `(B, C, H, W)` to `(B, C, H/s, W/s)` for stride `s`, so any of them fits any
# edge. Their parameter counts at $C = 16$ channels:

# %%
x = torch.randn(2, 16, 16, 16)
print(f"{'operation':<14} {'family':<11} {'parameters':>10}  output shape (stride 2)")
for name in sorted(ops.OPS):
    op = ops.make_op(name, 16, stride=2)
    n_params = sum(p.numel() for p in op.parameters())
    print(f"{name:<14} {ops.OP_FAMILY[name]:<11} {n_params:>10}  {tuple(op(x).shape)}")

# %% [markdown]
# **Why separable convolutions are everywhere.** A $k\times k$ convolution from $C_\text{in}$ to
# $C_\text{out}$ channels has $C_\text{in} C_\text{out} k^2$ weights. A depthwise-separable one first
# filters each input channel on its own ($C_\text{in} k^2$ weights), then mixes channels with a
# $1\times 1$ convolution ($C_\text{in} C_\text{out}$ weights). For $3\times 3$, 16 → 32 channels:

# %%
plain = torch.nn.Conv2d(16, 32, 3, bias=False)
separable = torch.nn.Sequential(
    torch.nn.Conv2d(16, 16, 3, groups=16, bias=False),  # depthwise: one 3x3 filter per channel
    torch.nn.Conv2d(16, 32, 1, bias=False),  # pointwise: mixes channels
)
n_plain = sum(p.numel() for p in plain.parameters())
n_separable = sum(p.numel() for p in separable.parameters())
print(f"plain 3x3: {n_plain} weights; depthwise-separable: {n_separable} weights "
      f"({n_plain / n_separable:.1f}x fewer)")
assert n_plain == ops.conv_weight_count(16, 32, 3) == 16 * 32 * 3 * 3
assert n_separable == ops.separable_weight_count(16, 32, 3) == 16 * 3 * 3 + 16 * 32
assert plain(torch.randn(1, 16, 8, 8)).shape == separable(torch.randn(1, 16, 8, 8)).shape

# %% [markdown]
# The `sep_conv_*` of the NAS papers applies such a block twice (with ReLU and batch norm), which is
# why its count in the table above is twice that of `dil_conv_3x3` (one block, dilated):

# %%
def param_count(name):
    return sum(p.numel() for p in ops.make_op(name, 16).parameters())


assert param_count("sep_conv_3x3") == 2 * param_count("dil_conv_3x3")

# %% [markdown]
# ## 3. Genotypes: architectures as data
#
# A cell has two inputs ($c_{k-2}$, $c_{k-1}$: the outputs of the two previous cells) and a few
# intermediate nodes; each intermediate node sums two edges, each edge an operation on an earlier
# node. A `Genotype` lists those edges for a normal cell and a reduction cell (which halves the
# resolution). It is frozen, prints in the text form of the DARTS code base, parses back, and names
# the bad field when something is wrong. Here is the cell DARTS found (Liu et al., 2019):

# %%
g = genotypes.DARTS_V2
print(g)
assert genotypes.Genotype.parse(str(g)) == g == genotypes.Genotype.from_json(g.to_json())

# %%
try:
    genotypes.Genotype.parse(str(g).replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 7)"))
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# How many such cells are there? Intermediate node $i$ (counting from 0) picks two distinct inputs
# among its $i + 2$ predecessors and an operation for each of the two edges:
#
# $$|\mathcal{A}_\text{cell}| = \prod_{i=0}^{n-1} \binom{i+2}{2} K^2 .$$
#
# We check the closed form against brute-force enumeration on small sizes, then evaluate it for
# DARTS ($n = 4$ nodes, $K = 7$ operations other than `none`):

# %%
for n_nodes, k_ops in [(1, 2), (2, 2), (2, 3), (3, 2)]:
    brute = len(genotypes.enumerate_cells(n_nodes, tuple(sorted(ops.OPS))[:k_ops]))
    assert brute == genotypes.count_cells(n_nodes, k_ops)
per_cell = genotypes.count_cells(4, 7)
print(f"DARTS: {per_cell:,} cells; {per_cell ** 2:.2e} (normal, reduction) pairs")

# %% [markdown]
# ## 4. Drawing architectures
#
# Every drawing is built from the data (the genotype) as plain nodes and edges, then rendered by
# Graphviz; edges are coloured by operation family, the same colours in every notebook. The DOT
# source is deterministic and unit-tested. The DARTS normal cell:

# %%
drawing.show(drawing.cell_graph(g, "normal"))

# %% [markdown]
# ENAS's *macro* search space is not a cell but a chain of layers with optional skip connections
# (dotted) from any earlier output, the input included; this is how such a network is drawn:

# %%
macro = drawing.macro_graph(
    ["conv_3x3", "sep_conv_5x5", "max_pool_3x3", "conv_5x5", "sep_conv_3x3", "avg_pool_3x3"],
    [[], [], [1], [2], [1, 3], [4]],
)
drawing.show(macro)

# %% [markdown]
# Move the slider to sample random cells from the DARTS space (the random-search baseline every NAS
# paper should beat). The callback is `genotypes.random_genotype`, unit-tested on its own. The
# slider appears when you run the cells; its starting view (seed 0, normal cell) is drawn once
# here so that it shows in the saved notebook too:

# %%
drawing.show(drawing.cell_graph(genotypes.random_genotype(seed=0), "normal"))

# %% tags=["nbval-ignore-output"]
import ipywidgets as widgets
from IPython.display import display


def draw_random_cell(seed=0, kind="normal"):
    display(drawing.show(drawing.cell_graph(genotypes.random_genotype(seed=seed), kind)))


sampler = widgets.interact(draw_random_cell, seed=widgets.IntSlider(0, 0, 100), kind=["normal", "reduce"])

# %%
assert genotypes.random_genotype(seed=3) == genotypes.random_genotype(seed=3)
assert genotypes.random_genotype(seed=3) != genotypes.random_genotype(seed=4)

# %% [markdown]
# ## 5. Training a fixed network
#
# Every method ends by training networks: `training.fit` runs SGD with momentum and a cosine
# learning-rate schedule (the recipe of the cell papers), returns one record per epoch, and with a
# `checkpoint` path resumes an interrupted run exactly. A small three-block CNN:

# %% tags=["nbval-ignore-output"]
utils.seed_everything(SEED)
model = training.SmallCNN(channels=16).to(device)
loader = data.DeviceLoader(subsets.train_x, subsets.train_y, batch_size=64, augment=data.Augment(), seed=SEED)
history = training.fit(model, loader, (subsets.valid_x, subsets.valid_y), epochs=EPOCHS, lr=0.05)
test = training.evaluate(model, subsets.test_x, subsets.test_y)
print(f"device: {device.type}; parameters: {utils.count_parameters(model):,}")
print(f"train loss {history[0]['train_loss']:.3f} -> {history[-1]['train_loss']:.3f}; "
      f"validation accuracy {history[-1]['valid_acc']:.1%}; test accuracy {test['acc']:.1%}")

# %%
assert history[-1]["train_loss"] < history[0]["train_loss"]  # it learns
assert test["acc"] > 0.2  # chance is 10%

# %% [markdown]
# **Resuming.** With `checkpoint=`, `fit` saves its whole state after every epoch. Below, a run is
# interrupted in its second epoch (an exception from the epoch hook plays the part of a killed
# process), and the same call started again continues from the file: on a CPU the numbers equal the
# uninterrupted run's above (on a GPU, nondeterministic kernels let them drift slightly: the check
# below then allows 2 %). A checkpoint written with other settings (say, more epochs, which
# would change the learning-rate schedule) is refused.

# %%
import tempfile
from pathlib import Path


interrupted = []


def interrupt_in_epoch_2(model, epoch, epochs):
    if epoch == 1 and not interrupted:  # epochs count from 0: once, as the second epoch starts
        interrupted.append(epoch)
        raise KeyboardInterrupt("simulated interruption")


ckpt = Path(tempfile.mkdtemp()) / "fit.pt"
resumed = None
for attempt in (1, 2):
    utils.seed_everything(SEED)
    model = training.SmallCNN(channels=16).to(device)
    loader = data.DeviceLoader(subsets.train_x, subsets.train_y, batch_size=64, augment=data.Augment(), seed=SEED)
    try:
        resumed = training.fit(model, loader, (subsets.valid_x, subsets.valid_y), epochs=EPOCHS, lr=0.05,
                               checkpoint=ckpt, progress=False, epoch_hook=interrupt_in_epoch_2)
    except KeyboardInterrupt as err:
        print(f"attempt {attempt}: {err} after {len(torch.load(ckpt, weights_only=True)['state']['history'])} epoch(s)")
gap = max(abs(a["train_loss"] - b["train_loss"]) / b["train_loss"] for a, b in zip(resumed, history))
print(f"attempt 2: resumed and finished {len(resumed)} epochs; same losses as the uninterrupted run: "
      f"{[r['train_loss'] for r in resumed] == [r['train_loss'] for r in history]} (largest relative gap {gap:.1e})")
try:
    training.fit(model, loader, (subsets.valid_x, subsets.valid_y), epochs=EPOCHS + 2, lr=0.05, checkpoint=ckpt)
except ValueError as err:
    print(str(err).replace(str(ckpt), "fit.pt"))

# %%
losses, again = [r["train_loss"] for r in history], [r["train_loss"] for r in resumed]
if device.type == "cpu":
    assert again == losses
else:  # on a GPU, cuDNN's nondeterministic kernels change the last bits, and the losses drift a little
    assert len(again) == len(losses) and all(abs(a - b) <= 0.02 * b for a, b in zip(again, losses))

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3))
drawing.plot_curves(ax1, history, ("train_loss", "valid_loss"), title="loss")
drawing.plot_curves(ax2, history, ("train_acc", "valid_acc"), title="accuracy")
plt.show()

# %% [markdown]
# ## Summary
#
# - `data`: real CIFAR-10, class-balanced seeded subsets, the search-time train/validation split,
#   augmentation on whole batches on the device.
# - `ops`: one registry of candidate operations; `genotypes`: architectures as frozen, printable,
#   validated data, with the size of the search space in closed form and checked by enumeration.
# - `drawing`: deterministic Graphviz drawings (a matplotlib fallback without Graphviz), heatmaps, curves.
# - `training`: one loop, exact checkpoints; `utils`: device, seeds, mixed precision on CUDA.
#
# ## Exercises
#
# 1. Count the parameters of `sep_conv_5x5` at 16 channels by hand and check the table above.
# 2. How many ENAS-style cells are there, where each node picks its two inputs independently (the same
#    input may be used twice)? Compare `count_cells(5, 5, distinct_inputs=False)` with your formula.
# 3. Train the small CNN with `Augment(cutout=8)`: does validation accuracy change after 4 epochs?
# 4. Draw the reduction cell of `genotypes.DARTS_V1`. Which operation family dominates it?
