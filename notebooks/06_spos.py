# %% [markdown]
# # SPOS: single path one-shot NAS with uniform sampling
#
# **Paper.** Zichao Guo, Xiangyu Zhang, Haoyuan Mu, Wen Heng, Zechun Liu, Yichen Wei and Jian Sun,
# *Single Path One-Shot Neural Architecture Search with Uniform Sampling*, ECCV 2020,
# [arXiv:1904.00420](https://arxiv.org/abs/1904.00420). (The seed notes this project started from say
# ICLR 2020; the paper appeared at ECCV 2020.)
#
# **Idea.** DARTS and FBNet train the network weights and the architecture together, through a
# relaxation. SPOS decouples them. First it trains one **supernet** that holds every candidate block
# of every layer: each training step samples **one path** (one block and one width per layer)
# *uniformly* and updates only that path's weights. Then, with the supernet's weights frozen, an
# **evolutionary search** looks for the best path under a FLOPs limit. Every candidate *inherits* its
# weights from the supernet and is scored on validation images after one cheap step, the
# recomputation of its batch-norm statistics. The best path is finally retrained from scratch. The
# code is in `nas_tutorial/spos.py` (space, supernet, sampling, training, search, the authors'
# networks), with the choice blocks and their channel slicing in `nas_tutorial/blocks.py`.
#
# **Run time.** The parameters cell below has two sizes. Fast mode (`NAS_TUTORIAL_FAST=1`, what the
# tests run) is a real run on CIFAR-10 in a shrunken space (4 choice layers, 16x16 images, 2,000
# training images); the README's table has its measured time on the project's 2-core test machine.
# Section 3 shows why a supernet trains slowly on a laptop. So the claims that need a well-trained
# supernet (the ranking of paths, evolution against random search) are printed for the live run,
# which is too short to show them, and checked on a **longer run recorded** on the same kind of CPU
# with the package's own command. Every figure below says which run it comes from.
# The default mode (on a GPU) trains the paper's 20-layer space on 32x32 images and is meant to stay
# under a quarter of an hour: an **estimate**, not yet timed on a GPU.

# %% tags=["parameters"]
import os
import time

from nas_tutorial.utils import parse_flag

FAST = parse_flag(os.environ.get("NAS_TUTORIAL_FAST"), "NAS_TUTORIAL_FAST")  # 1/true/yes/on: fast mode

if FAST:  # CPU laptop: spos.SPOSConfig.fast(): 4 choice layers, 16x16 images
    TRAIN_SIZE, IMAGE_SIZE = 4_000, 16  # 2,000 training + 2,000 validation images
    CONFIG = dict(epochs=12, lr=0.03, valid_size=1_000)  # changes to SPOSConfig.fast()
    RANK_PATHS, STANDALONE_EPOCHS, SEARCH_SEEDS = 8, 4, 3
else:  # GPU: the paper's 20 layers on 32x32 images, at most 15 minutes (an estimate)
    TRAIN_SIZE, IMAGE_SIZE = 20_000, 32  # at most 10,000 training + 10,000 validation images
    CONFIG = dict(epochs=30, population_size=20, iterations=10, top_k=10, crossover_size=10, mutation_size=10,
                  recalibration_batches=20, valid_size=2_000)  # changes to SPOSConfig.cifar()
    RANK_PATHS, STANDALONE_EPOCHS, SEARCH_SEEDS = 8, 10, 3
SEED = 0

# %%
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from nas_tutorial import blocks, spos
from nas_tutorial.data import DeviceLoader, default_data_root, load_cifar10, make_subsets
from nas_tutorial.drawing import combine, show
from nas_tutorial.pnas import spearman
from nas_tutorial.utils import pick_device, seed_everything

device = pick_device()
DATA_ROOT = str(default_data_root())  # $NAS_TUTORIAL_DATA, else ~/.cache/nas_tutorial
if device.type == "cpu":  # one torch thread: these networks are many small kernels (benchmarks/README.md)
    torch.set_num_threads(1)
seed_everything(SEED)
cifar = load_cifar10(DATA_ROOT)
print(f"CIFAR-10 images found: {len(cifar.train_labels):,} training, {len(cifar.test_labels):,} test"
      + (" (a partial set; the full one has 50,000 and 10,000)" if len(cifar.train_labels) < 50_000 else ""))
config = (spos.SPOSConfig.fast if FAST else spos.SPOSConfig.cifar)(**CONFIG, seed=SEED)
space = config.space()
print(f"space: {space.num_layers} choice layers, blocks {', '.join(space.blocks)}, widths {space.widths}")

# %% [markdown]
# ## 1. The search space: a chain of choice layers
#
# The supernet is ShuffleNetV2's macro-architecture: a 3x3 stem, four **stages** of choice layers
# (4, 4, 8 and 4 layers in the paper, 20 in all) with 64, 160, 320 and 640 channels, each stage
# starting with stride 2, then a 1x1 convolution to 1024 channels, global pooling and the
# classifier. The seed notes say the supernet "is similar with FBNet": only in kind (a fixed chain of
# layers, one block chosen per layer). FBNet has 22 layers of MobileNetV2 blocks; SPOS has 20 of
# ShuffleNetV2 blocks.
#
# Each layer chooses one of **four blocks**: ShuffleNetV2 units with a 3x3, 5x5 or 7x7 depthwise
# convolution, and an Xception-like unit with three 3x3 depthwise convolutions. A unit that keeps its
# shape **splits** its channels: half pass by untouched, half go through the main branch, and the
# two are concatenated (the next unit's split reads them interleaved, which is ShuffleNetV2's channel
# shuffle). A unit that changes its shape (the first of a stage) has a second, projection branch
# instead. The drawings are read from the modules themselves (`spos.block_graph`); `m` is the main
# branch's middle width, the thing channel search chooses.

# %%
drawing = combine("spos_blocks", [spos.block_graph(name, 16, 16, 1, title=name) for name in space.blocks],
                  rankdir="TB")
drawing.title = "the four SPOS choice blocks, a unit that keeps its shape (16 -> 16 channels, stride 1)"
show(drawing)

# %%
drawing = combine("spos_blocks_s2", [spos.block_graph(name, 16, 40, 2, title=name) for name in space.blocks[:1] +
                                     space.blocks[3:]], rankdir="TB")
drawing.title = "the first unit of a stage (16 -> 40 channels, stride 2): a projection branch (dashed), no split"
show(drawing)

# %% [markdown]
# **Channel search.** SPOS also searches each block's middle width: $m = \lfloor s \cdot C_{out} / 2
# \rfloor$ with the scale $s$ one of $0.2, 0.4, \dots, 1.6$ (eight choices, the authors'
# `scale_list`). A unit's input and output widths stay fixed; only $m$ changes. The seed notes say
# "the number of output channels $c_{out}$ is randomly sampled": what is sampled is the middle width,
# and every convolution that writes or reads it is sliced.
#
# So a path chooses a block and a width in each of $L$ layers, and the space has $(B \cdot W)^L$
# paths: $(4 \cdot 8)^{20} = 32^{20} \approx 1.3 \times 10^{30}$ in the paper, or $4^{20} \approx
# 1.1 \times 10^{12}$ for the block search alone. The formula, against enumeration on a tiny space:

# %%
paper_space = spos.imagenet_space()
print(f"paper: {paper_space.num_layers} layers, (B W)^L = {paper_space.size():.3e} paths, "
      f"B^L = {paper_space.size(with_widths=False):.3e} without channel search")
assert paper_space.size() == 32 ** 20 and paper_space.size(with_widths=False) == 4 ** 20
tiny = spos.cifar_space(stage_repeats=(1, 1), stage_channels=(16, 32), stage_strides=(1, 2), image_size=8,
                        widths=(0.5, 1.0))
paths = list(tiny.enumerate())
assert len(paths) == len(set(map(str, paths))) == tiny.size() == (4 * 2) ** 2
print(f"tiny space (2 layers, 4 blocks, 2 widths): {len(paths)} paths enumerated = (4 x 2)^2")
print(f"the fast space: {space.num_layers} layers, {space.size():,} paths")

# %% [markdown]
# The fast space keeps the four blocks and the eight widths, with one choice layer per stage and a
# quarter of the paper's channels, on 16x16 images. The cost of every layer's every choice is
# counted once by `spos.cost_table` (multiply-adds of one image through the convolutions and the
# classifier, the authors' FLOPs convention), so a path's FLOPs is a sum of table entries:

# %%
costs = spos.cost_table(space)
print("MFLOPs per choice in layer 0, the first choice layer (rows: blocks, columns: width scales)")
print("            " + " ".join(f"{w:>6}" for w in space.widths))
for b, name in enumerate(space.blocks):
    print(f"{name:>11} " + " ".join(f"{costs.flops[0, b, w] / 1e6:6.3f}" for w in range(len(space.widths))))
smallest, largest = costs.extremes()
print(f"paths of the fast space: {smallest / 1e6:.3f} to {largest / 1e6:.3f} MFLOPs; "
      f"search limit {config.flops_limit / 1e6:.3f} M (the paper's 330M scaled to this space)")
one = spos.sample_path(space, np.random.default_rng(0))
net = spos.SPOSNet(one, space)
assert costs.path_flops(one) == blocks.profile(net, (3, IMAGE_SIZE, IMAGE_SIZE)).macs
print(f"path {one}: {costs.path_flops(one):,} FLOPs from the table = its network counted directly")

# %% [markdown]
# ## 2. Channel slicing: one weight tensor for every width
#
# The supernet allocates each convolution at the largest width and runs a narrower path on the
# **leading slice** `weight[:c_out, :c_in]`. The heatmap shows the first 1x1 convolution of a block's
# main branch (rows: output channels, columns: input channels). The slices that three widths use are
# nested. So a narrow path trains the same entries that every wider path uses too.

# %%
supernet = spos.SPOSSupernet(space)
layer = space.layers[1]
block = supernet.layers[1]["shuffle3x3"]
mids = [space.mid(layer, w) for w in (0.4, 1.0, 1.6)]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for ax, conv, name in ((axes[0], block.main[0].conv, "first 1x1: writes m channels, weight[:m, :]"),
                       (axes[1], block.main[2].conv, "last 1x1: reads m channels, weight[:, :m]")):
    used = torch.zeros(conv.weight.shape[:2])  # (out, in): how many of the three widths use each entry
    for m in mids:
        used[conv.region(m if conv is block.main[2].conv else conv.in_channels,
                         None if conv is block.main[2].conv else m)[:2]] += 1
    im = ax.imshow(used.numpy(), cmap="viridis", vmin=0, vmax=3, aspect="auto")
    ax.set(xlabel="input channel", ylabel="output channel", title=name)
fig.colorbar(im, ax=axes, ticks=[0, 1, 2, 3], label="widths using the entry")
fig.suptitle(f"layer 1, shuffle3x3: entries used by the middle widths m = {mids}", y=1.02)
plt.show()

# %% [markdown]
# Two checks. A sliced block equals a stand-alone block of that width given the same weights
# (`SPOSSupernet.extract` builds the stand-alone network of a path and copies the leading slices).
# And a training step on a narrow path changes only the weights inside its slice
# (`spos.PathSGD`, which also leaves momentum and weight decay outside the slice alone; a plain SGD
# with weight decay would shrink weights the path never used).

# %%
x = torch.randn(8, 3, IMAGE_SIZE, IMAGE_SIZE)  # (B, 3, S, S)
widths = [(0.4, 1.0, 0.2, 1.6)[i % 4] for i in range(space.num_layers)]  # one per choice layer
path = spos.SPOSArch.parse("-".join(f"shuffle3x3:{w}" for w in widths))
supernet.eval()
with torch.no_grad():
    assert torch.allclose(supernet(x, path), supernet.extract(path).eval()(x), atol=1e-5)
print(f"path {path}: supernet(x, path) == extract(path)(x)")
before = {n: p.detach().clone() for n, p in supernet.named_parameters()}
optimizer = spos.PathSGD(supernet.parameters(), lr=0.1, momentum=0.9, weight_decay=4e-5)
spos.train_step(supernet, optimizer, x, torch.arange(8) % 10, path)
inside = supernet.regions(path)
changed = {n for n, p in supernet.named_parameters() if not torch.equal(p, before[n])}
for n, p in supernet.named_parameters():
    if p in inside:  # entries outside the path's slice are unchanged
        outside = torch.ones_like(p, dtype=torch.bool)
        outside[inside[p]] = False
        assert torch.equal(p[outside], before[n][outside]), n
names = {n.split(".")[0] + (("." + n.split(".")[2]) if n.startswith("layers") else "") for n in changed}
print(f"one step on the path changed {len(changed)} tensors, in: {', '.join(sorted(names))}; "
      "inside each block only the path's slice")

# %% [markdown]
# ## 3. Supernet training: one uniformly sampled path per step
#
# SPOS trains the supernet weights $W$ to minimise the expected training loss over paths drawn from
# a prior $\Gamma(\mathcal{A})$:
#
# $$ W_{\mathcal{A}} = \operatorname{argmin}_W \; \mathbb{E}_{a \sim \Gamma(\mathcal{A})}
#    \left[ \mathcal{L}_{train}(\mathcal{N}(a, W(a))) \right], $$
#
# estimated with one path per mini-batch. The paper argues for the **uniform** prior: it does not
# favour any path, so every path's weights get trained alike, and the later search is fair to all.
# (The authors' code also restricts training paths to a FLOPs range; `train_flops_range` does that,
# and the fast setting does not use it.) First, is `sample_path` uniform? A chi-square test of the
# block and width counts:

# %%
rng = np.random.default_rng(SEED)
draws = [space.indices(spos.sample_path(space, rng)) for _ in range(4000)]
block_counts = np.bincount(np.array([d[0] for d in draws]).ravel(), minlength=len(space.blocks))
width_counts = np.bincount(np.array([d[1] for d in draws]).ravel(), minlength=len(space.widths))


def chi_square(counts):
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


# 99.9% points of chi-square with 3 and 7 degrees of freedom: 16.27 and 24.32
print(f"block counts {block_counts.tolist()}: chi2 = {chi_square(block_counts):.1f} (99.9% point, 3 dof: 16.27)")
print(f"width counts {width_counts.tolist()}: chi2 = {chi_square(width_counts):.1f} (99.9% point, 7 dof: 24.32)")
assert chi_square(block_counts) < 16.27 and chi_square(width_counts) < 24.32

# %% [markdown]
# **Why a supernet trains slowly on a laptop.** Under uniform sampling each block gets about a
# quarter of the updates, at ever-changing widths, and the four blocks of a layer share no weights:
# a block must learn to read the outputs of every block the layer before may have run, and the
# classifier must read all of them (our reading; the cell below measures the effect, not its cause).
# The cell trains the same supernet for the same steps twice: once on **one** fixed path, once on
# uniformly sampled paths. It reports the training accuracy of the last epoch.

# %%
n_images = min(TRAIN_SIZE, len(cifar.train_labels))  # a partial folder may hold fewer than TRAIN_SIZE
subsets = make_subsets(cifar, train_size=n_images, image_size=IMAGE_SIZE, device=device, seed=SEED)
print(f"{len(subsets.train_x):,} training and {len(subsets.valid_x):,} validation images at {IMAGE_SIZE}x{IMAGE_SIZE}")


def train_on(choose, epochs=2, lr=0.03):
    torch.manual_seed(SEED)
    net = spos.SPOSSupernet(space).to(device)
    opt = spos.PathSGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=4e-5)
    loader = DeviceLoader(subsets.train_x, subsets.train_y, 32, seed=SEED, drop_last=True)
    rng = np.random.default_rng(SEED)
    for _ in range(epochs):
        correct = seen = 0
        for xb, yb in loader:
            _, logits = spos.train_step(net, opt, xb, yb, choose(rng))
            correct, seen = correct + (logits.argmax(1) == yb).sum().item(), seen + len(yb)
    return correct / seen


fixed = spos.sample_path(space, np.random.default_rng(1))
acc_fixed = train_on(lambda rng: fixed)
acc_uniform = train_on(lambda rng: spos.sample_path(space, rng))
print(f"training accuracy after 2 epochs: one fixed path {acc_fixed:.3f}, uniform paths {acc_uniform:.3f} "
      "(chance 0.100)")
assert acc_fixed > acc_uniform + 0.05

# %% [markdown]
# On ImageNet the paper trains its supernet for 120 epochs; the fast run here has 12 epochs of 2,000
# small images. It learns (the assertion below checks it against chance and the noise), but much
# less than one network trained alone. `spos.study` runs the whole experiment of this notebook:
# supernet training (the records show a *probe* path scored after every epoch), the ranking check
# of section 5 and the searches of section 6.

# %% tags=["nbval-ignore-output"]
start = time.time()
result = spos.study(config, subsets, rank_paths=RANK_PATHS, standalone_epochs=STANDALONE_EPOCHS,
                    search_seeds=SEARCH_SEEDS, progress=True)
live_seconds = time.time() - start
trained = result["supernet_model"]
history = result["supernet"]
print(f"the live study took {live_seconds:.0f} s")

# %%
assert len(history) == config.epochs and len(result["searches"]["random"]) == SEARCH_SEEDS
assert all(0 <= r["train_acc"] <= 1 for r in history)

# %%
recorded = spos.load_recorded()
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
live_name = "live fast run" if FAST else "live run"
for ax, hist, name in ((axes[0], history, live_name), (axes[1], recorded["supernet"], "recorded run")):
    epochs = [r["epoch"] for r in hist]
    ax.plot(epochs, [r["train_acc"] for r in hist], label="training accuracy (sampled paths)")
    ax.plot(epochs, [r["probe_scores"][0] for r in hist], label="probe path: inherited, BN recomputed")
    ax.axhline(0.1, color="grey", ls=":", label="chance")
    ax.set(xlabel="epoch", ylabel="accuracy", title=f"supernet training, {name}", ylim=(0, 0.6))
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()
print(f"recorded run: `{recorded['command']}`, seed {recorded['seed']}, {recorded['seconds'] / 60:.1f} min on "
      f"{recorded['machine']}, torch {recorded['torch']}, {recorded['date']}; {recorded['data']}")

# %% [markdown]
# The probe's accuracy is measured on validation images the supernet never trained on. On 1,000
# images a network at chance scores 0.100 with a standard deviation of about 0.01, so a probe above
# 0.15 is five deviations above chance. In fast mode the longer recorded run, on the same space,
# must also score above the live one; the default mode trains another space (20 layers at 32x32),
# so that comparison is made in fast mode only.

# %% tags=["nbval-ignore-output"]
probe = history[-1]["probe_scores"][0]
print(f"live: the probe path scores {probe:.3f} after {len(history)} epochs (chance 0.100, sd ~0.010)")
print(f"recorded: {recorded['supernet'][-1]['probe_scores'][0]:.3f} after {len(recorded['supernet'])} epochs")

# %%
assert history[-1]["probe_scores"][0] > 0.15, "the supernet learned nothing above chance"
if FAST:  # the recorded run trained the fast space longer
    assert recorded["supernet"][-1]["probe_scores"][0] > history[-1]["probe_scores"][0]

# %% [markdown]
# ## 4. Weight inheritance and batch-norm recalibration
#
# The search scores a path $a$ by its validation accuracy with the weights it inherits,
# $\mathrm{ACC}_{val}(\mathcal{N}(a, W_{\mathcal{A}}(a)))$, with no training. The seed notes say this
# "only requires inference". Not quite: the supernet's batch-norm running statistics were collected
# while *every* path ran through those layers, at every width, so they fit no single path. The paper
# recomputes them for each candidate on training batches first (`spos.evaluate_path` with
# `recalibration_images`; `training.recalibrate_bn`, the same step FBNet's notebook uses). On the
# trained supernet, for the paths of section 5:

# %% tags=["nbval-ignore-output"]
ranking = result["ranking"]
for name, r in (("live", ranking), ("recorded", recorded["ranking"])):
    fresh, stale = np.array(r["inherited"]), np.array(r["inherited_stale_bn"])
    print(f"{name:>8}: mean accuracy {stale.mean():.3f} with the supernet's statistics, {fresh.mean():.3f} "
          f"recomputed; better on {int((fresh > stale).sum())} of {len(fresh)} paths")

# %%
path = ranking["paths"][0]
recal_images, valid_x, valid_y = spos.scoring_data(config, subsets)
net = trained.extract(path)
stale_mean = net.blocks[0].main[0].bn.running_mean.clone()
spos.recalibrate_bn(net, recal_images, batch_size=config.recalibration_batch_size)
assert not torch.allclose(stale_mean, net.blocks[0].main[0].bn.running_mean)  # recalibration changes them
fresh, stale = np.array(recorded["ranking"]["inherited"]), np.array(recorded["ranking"]["inherited_stale_bn"])
print(f"recorded run: recomputing the statistics raises the mean accuracy by {fresh.mean() - stale.mean():+.3f}, "
      f"against a spread of {fresh.std():.3f} among the paths' recalibrated accuracies")
assert fresh.mean() > stale.mean()  # a check of the stored recorded run

# %% [markdown]
# ## 5. Does the supernet rank paths as training them would?
#
# The whole method rests on this: a path that scores higher with inherited weights should also be
# better when trained alone. `spos.ranking_check` takes paths of every size (`spos.spread_paths`: from
# the smallest path of the space to the largest, at evenly spaced FLOPs), scores each with inherited
# weights, trains the same network from new weights (`spos.train_from_scratch`, a few epochs) and
# reports Spearman's $\rho$ between the two. Two noises matter. A random ranking of as many paths
# exceeds a certain $\rho$ one time in twenty (the 95th percentile below). And a stand-alone accuracy
# is itself noisy: the recorded run trains every path twice, with two seeds, and reports the standard
# deviation between the seeds.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for ax, r, name in ((axes[0], ranking, "live fast run"), (axes[1], recorded["ranking"], "recorded run")):
    sc = ax.scatter(r["inherited"], r["standalone"], c=np.array(r["flops"]) / 1e6, cmap="viridis")
    ax.set(xlabel="inherited accuracy (BN recomputed)",
           ylabel=f"trained alone ({r['standalone_epochs']} epochs)",
           title=f"{name}: rho = {r['spearman']:+.2f} (random rho, 95th pct: {r['chance_spearman_95']:.2f})")
    plt.colorbar(sc, ax=ax, label="MFLOPs")
plt.tight_layout()
plt.show()

# %% tags=["nbval-ignore-output"]
for name, r in (("live", ranking), ("recorded", recorded["ranking"])):
    print(f"{name:>8}: {len(r['paths'])} paths, Spearman rho = {r['spearman']:+.2f} "
          f"(random rankings: 95th percentile {r['chance_spearman_95']:.2f}); "
          f"with the supernet's own BN statistics rho = {r['spearman_stale_bn']:+.2f}")
    print(f"{'':>10}stand-alone accuracies {min(r['standalone']):.3f} to {max(r['standalone']):.3f}, "
          f"inherited {min(r['inherited']):.3f} to {max(r['inherited']):.3f}; rho of FLOPs against "
          f"stand-alone {spearman(r['flops'], r['standalone']):+.2f}, against inherited "
          f"{spearman(r['flops'], r['inherited']):+.2f}")
noise = recorded["ranking"]["standalone_seed_sd"]
print(f"recorded: one stand-alone training varies by {noise:.3f} (SD between two seeds), so the mean of two "
      f"by {noise / math.sqrt(2):.3f}")

# %% [markdown]
# How to read these numbers. In the recorded run the supernet ranks the paths better than chance, and
# the stand-alone accuracies differ by more than their noise between seeds (the cell below compares
# the variance of the paths' means with what identical paths would give, by simulation). But much of
# the ranking is a ranking **by size**: compare $\rho$ of FLOPs against either accuracy. Whether the
# supernet also ranks paths of similar size is not tested here: that needs many more paths and
# stand-alone trainings. (The recorded setting was changed after seeing results: a first run on
# paths of middling sizes gave a $\rho$ near zero, and the searches were lengthened later (section
# 6); the run was also recorded again after a fix that made the stand-alone trainings reproducible.
# `spos.RECORDED_SETTING`'s comment gives each change.) The live run's paths are trained for fewer
# epochs on fewer images, and its $\rho$ is printed, not asserted.

# %%
r = recorded["ranking"]  # checks of the stored recorded run
assert r["spearman"] > r["chance_spearman_95"], "the recorded supernet ranks no better than chance"
runs = np.array(r["standalone_runs"])  # (paths, seeds)
n_paths, n_seeds = runs.shape
ratio = np.var(runs.mean(1), ddof=1) / (r["standalone_seed_sd"] ** 2 / n_seeds)  # 1 if the paths were alike
null = np.random.default_rng(0).normal(size=(5000, n_paths, n_seeds))  # identical paths, unit noise
null_ratio = null.mean(2).var(1, ddof=1) / (np.sqrt(null.var(2, ddof=1).mean(1)) ** 2 / n_seeds)
print(f"variance of the paths' stand-alone means / its value for identical paths: {ratio:.1f} "
      f"(identical paths exceed {np.quantile(null_ratio, 0.95):.1f} one time in twenty)")
assert ratio > np.quantile(null_ratio, 0.95)  # the paths truly differ: there is something to rank

# %% [markdown]
# ## 6. Evolutionary search under a FLOPs limit
#
# With $W_{\mathcal{A}}$ fixed, SPOS searches
#
# $$ a^* = \operatorname{argmax}_{a \in \mathcal{A}} \; \mathrm{ACC}_{val}(\mathcal{N}(a, W_{\mathcal{A}}(a)))
#    \quad \text{subject to} \quad \mathrm{FLOPs}(a) \le C $$
#
# by evolution. The seed notes leave out what makes the evolution work under a constraint: the
# population is bred by crossover **and** mutation of the top $k$; a child over the limit is
# rejected and drawn again; and a path evaluated once is never evaluated again. Random search draws
# paths under the same limit and gets the same budget of evaluations. The settings here are the fast
# run's; the paper's are $P = 50$, $T = 20$, $k = 10$, 25 children by each operator, $p_m = 0.1$ and
# a 330M limit.

# %%
show(spos.evolution_graph(config))

# %% [markdown]
# The live study ran both searches on the trained supernet, with seeds 0, 1 and 2. Below, the
# population of evolution (seed 0) on the accuracy-FLOPs plane, with the limit and the top $k$ so
# far: its first and its last iteration, then a slider over all of them. The axes stay fixed, so the
# population visibly moves.

# %%
evolution_records = result["searches"]["evolution"][0]["records"]  # the records of each iteration
all_scores = [c["score"] for r in evolution_records for c in r["population"]]
all_flops = [c["flops"] for r in evolution_records for c in r["population"]]
xlim = (min(all_flops) / 1e6 * 0.95, config.flops_limit / 1e6 * 1.05)
ylim = (min(all_scores) - 0.01, max(all_scores) + 0.01)
colours = {"random": "tab:grey", "crossover": "tab:blue", "mutation": "tab:orange"}


def draw_population(ax, iteration):
    points = spos.population_points(evolution_records, iteration)
    for origin, colour in colours.items():
        pick = [i for i, o in enumerate(points["origin"]) if o == origin]
        ax.scatter([points["flops"][i] / 1e6 for i in pick], [points["score"][i] for i in pick],
                   color=colour, label=origin, s=30)
    ax.axvline(points["flops_limit"] / 1e6, color="red", ls="--", label="FLOPs limit")
    ax.scatter([costs.path_flops(a) / 1e6 for a in points["topk"]], points["topk_scores"],
               facecolors="none", edgecolors="black", s=90, label="top k so far")
    ax.set(xlim=xlim, ylim=ylim, xlabel="MFLOPs", ylabel="inherited accuracy",
           title=f"evolution (seed 0), iteration {iteration} of {len(evolution_records)}")
    ax.legend(fontsize=7, loc="lower right")


fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))  # the first and the last iteration, as saved pictures
draw_population(axes[0], 1)
draw_population(axes[1], len(evolution_records))
plt.tight_layout()
plt.show()

# %% [markdown]
# The slider (run the cells above first; a saved notebook shows no widget until its kernel runs):

# %% tags=["nbval-ignore-output"]
out = widgets.Output()


def show_iteration(change=None):
    with out:
        out.clear_output(wait=True)
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        draw_population(ax, iteration_slider.value)
        plt.show()


iteration_slider = widgets.IntSlider(value=len(evolution_records), min=1, max=len(evolution_records),
                                     description="iteration", continuous_update=False)
iteration_slider.observe(show_iteration, names="value")
show_iteration()
widgets.VBox([iteration_slider, out])

# %%
assert iteration_slider.max == len(evolution_records) == config.iterations

# %% [markdown]
# Evolution against random search, same limit and budget, on the live supernet (three seeds each)
# and on the recorded one (five seeds each, and a larger search: the sizes are printed). Two scores of each
# search's best path: on the validation images the search used, which is what it maximises (and
# what the paper's comparison plots), and on validation images no search saw, which removes the
# luck of having been selected on those images. The gap between the searches' means is set against
# its standard error over seeds.

# %% tags=["nbval-ignore-output"]
comparisons = {}
n_live, n_rec = len(subsets.valid_x) - config.valid_size, recorded["setting"]["train_size"] // 2 - \
    recorded["config"]["valid_size"]  # validation images past valid_size: the held-out ones
for name, searches, cfg, n_held in (("live", result["searches"], config.to_dict(), n_live),
                                    ("recorded", recorded["searches"], recorded["config"], n_rec)):
    print(f"{name}: {cfg['iterations']} iterations of {cfg['population_size']} paths per search; "
          f"{cfg['valid_size']:,} validation images score the candidates, {n_held:,} are held out")
    for key, what in (("best", "images the search used"), ("held_out", "images no search saw")):
        cmp = comparisons[name, key] = spos.compare_searches(searches, key)
        evo, rnd = cmp["evolution"], cmp["random"]
        print(f"{name:>8}, {what:>22}: evolution {evo['mean']:.4f} (SD {evo['sd']:.4f}), random {rnd['mean']:.4f} "
              f"(SD {rnd['sd']:.4f}), n = {evo['n']}: gap {cmp['gap']:+.4f} +- {cmp['se']:.4f}, "
              f"{'above' if cmp['above_noise'] else 'within'} twice its standard error")
    for searcher in ("evolution", "random"):
        print(f"{'':>10}{searcher} best paths: MFLOPs "
              f"{[round(costs.path_flops(s['best_arch']) / 1e6, 3) for s in searches[searcher]]}")
print(f"the limit: {config.flops_limit / 1e6:.3f} MFLOPs")

# %%
# a check of the stored recorded run: what the text below says of it
assert comparisons["recorded", "best"]["above_noise"]
assert not comparisons["recorded", "held_out"]["above_noise"]
assert set(comparisons) == {(n, k) for n in ("live", "recorded") for k in ("best", "held_out")}

# %% [markdown]
# In the recorded run (asserted just above), evolution's best paths score higher than random
# search's on the images the searches used, by more than twice the standard error over seeds: with
# the same budget, evolution finds paths the supernet rates higher, which is the paper's claim. On
# the held-out images the gap is within noise, and that comparison is too noisy to say more: its
# standard error is several times the gap on the searches' own images, so it can tell neither
# whether evolution's gain carries over to new images nor whether part of it is a fit to the
# images the search was scored on.
#
# Read the assertion with its history (`spos.RECORDED_SETTING`'s comment gives the numbers). A
# first recording, 6 iterations and 3 seeds, gave a gap within noise. The searches alone
# were then run again on the same supernet with 5 seeds: at 6 iterations the gap was already above
# twice its standard error, so that recording lacked seeds more than iterations. The recorded
# setting became 12 iterations and 5 seeds, and since the supernet and the seeds are the same, the
# recording repeats exactly the trial that chose it: the assertion re-checks that result, it is not
# an independent confirmation. The live run is printed, not asserted: three short searches on a
# 12-epoch supernet.
#
# The best path of the live evolution, as a layer table:

# %%
best = result["searches"]["evolution"][0]["best_arch"]
print(f"best path (evolution, seed 0): {best}")
print(f"{'layer':>5} {'stage':>5} {'block':>11} {'width':>5} {'m':>3} {'in':>4} {'out':>4} {'stride':>6} "
      f"{'size':>4} {'MFLOPs':>7} {'params':>7}")
for row in spos.layer_table(best, space):
    print(f"{row['layer']:>5} {row['stage']:>5} {row['block']:>11} {row['width']:>5} {row['mid_channels']:>3} "
          f"{row['in_channels']:>4} {row['out_channels']:>4} {row['stride']:>6} {row['in_size']:>4} "
          f"{row['mflops']:>7.3f} {row['params']:>7,}")
assert costs.path_flops(best) <= config.flops_limit

# %% [markdown]
# ## 7. Retraining the best path from scratch
#
# The last step of SPOS: the best path is trained from new weights (the supernet's weights are
# thrown away). The best path of the live search, trained exactly as the ranking check trained its
# paths, against those of them under the FLOPs limit. Expect no clear winner: the live supernet
# ranks paths no better than chance (section 5), so the path it picks is not reliably better than
# another path of its size.

# %% tags=["nbval-ignore-output"]
_, best_history = spos.train_from_scratch(best, space, subsets, epochs=STANDALONE_EPOCHS, batch_size=64, lr=0.1,
                                          seed=SEED, augment=config.augment, dropout=config.dropout)
best_alone = best_history[-1]["valid_acc"]
under = [a for a, f in zip(ranking["standalone"], ranking["flops"]) if f <= config.flops_limit]
print(f"best path trained alone for {STANDALONE_EPOCHS} epochs: {best_alone:.3f}; the ranking check's "
      f"{len(under)} paths under the limit: {np.round(sorted(under), 3).tolist()}")

# %%
assert best_alone > 0.15  # trained alone, the path learns (chance: 0.100)

# %% [markdown]
# ## 8. The authors' released networks
#
# The authors released the block-and-channel-search result (`SPOS_BLOCK_CHANNEL`, their "OneShot"
# network) and the block-search-only result (`SPOS_BLOCK`). Built at the paper's ImageNet setting
# (224x224, 1,000 classes), our counter gives their FLOPs (multiply-adds of one image through
# convolutions and the classifier, the authors' convention) and parameters (of the convolutions and
# the classifier: with batch norm's scales and shifts the block-search network would round to 3.6M,
# not the released 3.5M):

# %%
imagenet = spos.imagenet_space()
table = spos.cost_table(imagenet)
for name, arch in spos.PUBLISHED.items():
    flops, n_params = table.path_flops(arch) / 1e6, table.path_params(arch) / 1e6
    with_bn = table.path_params(arch, batch_norm=True) / 1e6
    paper = spos.PUBLISHED_COUNTS[name]
    print(f"{name:>18}: {flops:.1f} MFLOPs (released: {paper['flops']}M), {n_params:.3f}M parameters "
          f"(released: {paper['params']}M; {with_bn:.3f}M with batch norm's scales and shifts)")
    assert round(flops) == paper["flops"] and round(n_params, 1) == paper["params"]
assert blocks.profile(spos.published_model("spos_block"), (3, 224, 224)).conv_linear_params == \
    table.path_params(spos.SPOS_BLOCK)  # the network built at 224x224 counts the same

# %% [markdown]
# ## 9. Pitfalls
#
# **Batch norm.** The supernet's running statistics fit no single path. Recompute them for every
# candidate, on the same training images for all, before comparing candidates (section 4).
# The supernet's batch norm has no learned scale or shift (the authors' code): the statistics are
# recomputed for each candidate path anyway, while a learned scale would be shared by every path
# and width that runs through the layer.
#
# **Slicing and the optimiser.** A plain SGD with weight decay or momentum moves weights that the
# current path never used. `spos.PathSGD` updates only the path's slice.
#
# **A weak supernet ranks badly.** Section 3 measured how slowly a supernet of independent blocks
# learns; section 5 measured the ranking against chance. A short run on a laptop gives a supernet
# whose inherited accuracies are close together. Before you trust a search on it, check the ranking
# against stand-alone training.
#
# **Paths of one size.** Among paths of similar FLOPs, stand-alone accuracies differ little, and a
# rank correlation on them measures mostly noise. That is why the check spreads its paths over FLOPs.
#
# **Over the limit.** Evolution must reject children over the FLOPs limit, or the best path is
# simply the largest one. Here the check is `costs.path_flops(path) <= config.flops_limit`, on every
# candidate.
#
# ## 10. Summary
#
# * SPOS decouples supernet training from the search. Training samples one path per step uniformly
#   (block and middle width of every layer) and updates only its slices; the search never trains.
# * Channel search slices `weight[:c_out, :c_in]` from tensors allocated at the largest width: all
#   widths share the leading entries.
# * A candidate inherits its weights, gets its batch-norm statistics recomputed, and is scored on
#   validation images. The evolutionary search keeps the top $k$ and breeds them by crossover and
#   mutation, and it rejects candidates over the FLOPs limit.
# * Whether it works depends on the supernet ranking paths as training them alone would: measure it.
#
# ## 11. Exercises
#
# 1. Train the fast supernet with `train_flops_range` set (the authors' code: paths only inside a
#    FLOPs range, in bins). Does the ranking among paths near the limit improve?
# 2. Double `epochs` in the fast setting and rerun sections 3 and 5: how does the live $\rho$ move?
#    Then give both searches four times the budget (`iterations`, `population_size`) over three seeds:
#    does the gap between evolution and random search leave the noise?
# 3. Turn off the recalibration in the search (score with `recalibration_images=None`) and compare
#    the best paths that evolution finds.
# 4. Restrict the space to block search (`widths=(1.0,)`) and rerun the ranking check. Why is it
#    harder to beat chance?
# 5. Retrain `spos.SPOS_BLOCK` and a random path under the same FLOPs on the CIFAR-10 space
#    (`spos.cifar_space()`, on a GPU) and compare.
