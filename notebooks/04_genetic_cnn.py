# %% [markdown]
# # Genetic CNN: a population of binary-coded networks
#
# **Paper.** Lingxi Xie and Alan Yuille, *Genetic CNN*, ICCV 2017,
# [arXiv:1703.01513](https://arxiv.org/abs/1703.01513).
#
# **Idea.** Write every network of a family as a fixed-length string of bits, then search the
# strings with a genetic algorithm: keep a *population* of networks, train each one from scratch,
# let the better ones survive (selection), mix them (crossover) and perturb them (mutation). It is
# the first population-based method of this tutorial, and its three pieces (encode, evaluate many
# candidates, select) come back in PNAS, in SPOS's evolutionary search and in NAO. The code lives
# in `nas_tutorial/genetic_cnn_space.py` (the search space: codes, decoding, the network),
# `nas_tutorial/genetic_cnn.py` (the genetic algorithm) and `nas_tutorial/evaluators.py`
# (training candidates from scratch, in-process, on a process pool or on a Ray cluster).
#
# **Run time.** The parameters cell below has two sizes. Fast mode (`NAS_TUTORIAL_FAST=1`, what
# the tests run) is a smoke run: it executed in about 20 s on the project's 2-core test machine,
# and its fitness values are close to chance and say nothing about the method. The default mode
# (on a GPU) runs the paper's 3-stage space on 32x32 images, meant to stay under a quarter of an
# hour (an estimate, not yet timed on a GPU); the exact settings are in the next cell.

# %% tags=["parameters"]
import os
import time

from nas_tutorial.utils import parse_flag

FAST = parse_flag(os.environ.get("NAS_TUTORIAL_FAST"), "NAS_TUTORIAL_FAST")  # 1/true/yes/on: fast mode

if FAST:  # CPU laptop: the whole notebook in about a minute
    STAGE_SIZES, CHANNELS = (3, 4), (8, 16)
    TRAIN_SIZE, IMAGE_SIZE, EPOCHS, BATCH_SIZE = 800, 16, 2, 32  # 400 training + 400 validation images
    POPULATION, GENERATIONS = 6, 2
    RETRAIN_EPOCHS, TEST_SIZE = 4, 500
else:  # GPU: the paper's CIFAR-10 space (K = 3, 4, 5), a budget of at most 15 minutes
    STAGE_SIZES, CHANNELS = (3, 4, 5), (8, 16, 32)
    TRAIN_SIZE, IMAGE_SIZE, EPOCHS, BATCH_SIZE = 9_000, 32, 5, 128  # 4,500 training + 4,500 validation
    POPULATION, GENERATIONS = 20, 10
    RETRAIN_EPOCHS, TEST_SIZE = 20, None  # None: the whole test set
SEED = 0
USE_RAY = False  # set True to run the same search on Ray (see the end of the notebook)

# %%
import tempfile
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from nas_tutorial import genetic_cnn as gc
from nas_tutorial import genetic_cnn_space as space
from nas_tutorial.data import DeviceLoader, default_data_root, load_cifar10, make_subsets
from nas_tutorial.drawing import combine, heatmap, show
from nas_tutorial.evaluators import InProcessEvaluator
from nas_tutorial.genetic_cnn import GAConfig
from nas_tutorial.genetic_cnn_space import Genome
from nas_tutorial.training import evaluate, fit
from nas_tutorial.utils import pick_device, seed_everything

device = pick_device()
DATA_ROOT = str(default_data_root())  # $NAS_TUTORIAL_DATA, else ~/.cache/nas_tutorial
# on a CPU, one torch thread: these small networks gain little from more, and on a busy machine
# several threads fighting for the cores are much slower (see benchmarks/README.md)
TORCH_THREADS = 1 if device.type == "cpu" else None
if TORCH_THREADS:
    torch.set_num_threads(TORCH_THREADS)
seed_everything(SEED)
print("code length of this run:", space.code_length(STAGE_SIZES), "bits")
cifar = load_cifar10(DATA_ROOT)
print(f"CIFAR-10 images found: {len(cifar.train_labels):,} training, {len(cifar.test_labels):,} test"
      + (" (a partial set; the full one has 50,000 and 10,000)" if len(cifar.train_labels) < 50_000 else ""))

# %% [markdown]
# ## 1. The search space: stages coded by bits
#
# A network is $S$ **stages** separated by pooling. Stage $s$ has $K_s$ ordinary nodes
# $v_{s,1},\dots,v_{s,K_s}$, each a 5x5 convolution followed by batch normalisation and ReLU, all
# with the stage's number of channels. One bit per pair of nodes says whether $v_{s,i}$ feeds
# $v_{s,j}$ ($i<j$), so stage $s$ has $K_s(K_s-1)/2$ bits, in the paper's order: first
# $(v_1,v_2)$, then $(v_1,v_3),(v_2,v_3)$, then $(v_1,v_4),(v_2,v_4),(v_3,v_4)$, ... We write
# one group per target node, joined by `-`, and stages joined by `|`.
#
# Decoding adds two uncoded nodes per stage, a default **input** node (red) and a default
# **output** node (green), both convolutions too, and applies the paper's rules:
#
# 1. the input node feeds every ordinary node without a predecessor;
# 2. every ordinary node without a successor feeds the output node;
# 3. a node with several parents sums them element-wise;
# 4. a node with no coded edge at all is **dropped**;
# 5. a stage whose bits are all zero is a single convolution (the input node), not two.

# %%
genome = Genome.parse("1-01|0-00-101")
for s, stage in enumerate(space.decode(genome)):
    print(f"stage {s + 1}: K={stage.num_nodes} bits={genome.stage_bits(s)} edges={stage.edges} "
          f"sources={stage.sources} sinks={stage.sinks} dropped={stage.dropped}")

# %%
show(space.decode(genome)[1].graph("stage_2"))

# %% [markdown]
# The whole network of this genome (`space.network_graph`): each decoded stage in a box, 2x2 max
# pooling after every stage, then global average pooling and the linear classifier.

# %%
show(space.network_graph(genome))

# %% [markdown]
# Toggle the bits of a 5-node stage and watch the decoded graph (dropped nodes are dashed). Each
# button is one bit, labelled with the edge it codes, and turns green when set; the callback is
# `space.stage_drawing`, a tested library function. The toggle buttons appear when you run the
# cells; below them is the stage of their starting code, drawn once so that it shows in the saved
# notebook too.

# %%
K_WIDGET = 5
pairs = [(i, j) for j in range(2, K_WIDGET + 1) for i in range(1, j)]  # the paper's bit order
START = {(1, 2), (2, 3), (1, 4), (4, 5)}
start_bits = [int(pair in START) for pair in pairs]
print("starting code:", Genome((K_WIDGET,), start_bits))
show(space.stage_drawing(K_WIDGET, start_bits, name="stage"))

# %% tags=["nbval-ignore-output"]
buttons = [widgets.ToggleButton(value=(i, j) in START, description=f"v{i}->v{j}",
                                layout=widgets.Layout(width="80px")) for i, j in pairs]
drawing = widgets.Output()


def redraw(_=None):
    bits = [int(b.value) for b in buttons]
    for b in buttons:  # set bits green, clear bits plain: easy to tell apart
        b.button_style, b.icon = ("success", "check") if b.value else ("", "")
    with drawing:
        drawing.clear_output(wait=True)
        print("code:", str(Genome((K_WIDGET,), bits)))
        display(show(space.stage_drawing(K_WIDGET, bits, name="stage")))


for b in buttons:
    b.observe(redraw, names="value")
redraw()
widgets.VBox([widgets.HBox(buttons[:5]), widgets.HBox(buttons[5:]), drawing])

# %%
assert [space.bit_index(i, j) for i, j in pairs] == list(range(len(pairs)))
assert space.stage_drawing(5, [1, 0, 1, 0, 0, 0, 0, 0, 0, 1]).source() == \
    space.decode(Genome.parse("1-01-000-0001"))[0].graph().source()

# %% [markdown]
# ### Counting
#
# The code has $L=\sum_s K_s(K_s-1)/2$ bits and the space $2^L$ codes. For the paper's CIFAR-10
# setting, three stages with 3, 4 and 5 nodes:

# %%
paper_sizes = (3, 4, 5)
L = space.code_length(paper_sizes)
print(f"L = 3 + 6 + 10 = {L} bits, 2^L = {space.search_space_size(paper_sizes):,} codes")
assert L == 19 and space.search_space_size(paper_sizes) == 524_288

# %% [markdown]
# Several codes give the same network, because dropped nodes vanish and all nodes are the same
# operation: `1-00`, `0-10` and `0-01` are all "input, two convolutions in a chain, output".
# Enumerating every code of a stage and grouping codes by their network (the decoded graph up to
# renaming the nodes, `space.network_key`) counts the distinct networks:

# %%
print(" K   bits     codes  distinct networks")
for k in (2, 3, 4, 5):
    print(f"{k:2d} {space.stage_code_length(k):5d} {2 ** space.stage_code_length(k):9,d} {space.count_distinct_stages(k):10d}")
print(f"whole (3, 4, 5) space: {space.count_distinct_networks(paper_sizes):,} distinct networks "
      f"for {space.search_space_size(paper_sizes):,} codes")
assert len({space.network_key(Genome.parse(c)) for c in ("1-00", "0-10", "0-01")}) == 1
assert space.count_distinct_networks(paper_sizes) == 6 * 31 * 302

# %% [markdown]
# ### The classic shapes are in the space
#
# A plain chain (VGG-like) sets only the bit $(v_{j-1}, v_j)$ of each group; the all-ones code
# connects every pair (each node reads the sum of all earlier ones, a summed DenseNet-like stage).

# %%
chain, dense = space.chain_genome(paper_sizes), space.all_ones_genome(paper_sizes)
print("chain:   ", chain)
print("all ones:", dense)
assert all(st.edges == tuple((i, i + 1) for i in range(1, st.num_nodes)) for st in space.decode(chain))

# %%
show(space.decode(chain)[2].graph("chain_stage_3"))

# %%
show(space.decode(dense)[2].graph("all_ones_stage_3"))

# %% [markdown]
# ### Decoding from scratch
#
# The decoding rules in a few lines, checked against the library on all $2^{10}$ codes of a
# 5-node stage:

# %%
def decode_from_scratch(k, bits):
    edges = [(i, j) for j in range(2, k + 1) for i in range(1, j) if bits[(j - 1) * (j - 2) // 2 + i - 1]]
    touched = {n for e in edges for n in e}
    sources = sorted(n for n in touched if all(j != n for _, j in edges))  # no predecessor: fed by input
    sinks = sorted(n for n in touched if all(i != n for i, _ in edges))  # no successor: feeds output
    dropped = [n for n in range(1, k + 1) if n not in touched]  # isolated: dropped
    return edges, sources, sinks, dropped


for bits in space.all_stage_codes(5):
    st = space.decode_stage(5, bits)
    assert decode_from_scratch(5, bits) == (list(st.edges), list(st.sources), list(st.sinks), list(st.dropped))
print("from-scratch decoding agrees with space.decode_stage on all", 2 ** 10, "codes")

# %% [markdown]
# The network of a genome (`space.GeneticCNN`) stacks the decoded stages with 2x2 max pooling
# between them and ends with global average pooling and a linear classifier:

# %%
model = space.GeneticCNN(chain, (8, 16, 32))
print(model.stages[0])
print("convolutions per stage:", [st.num_convolutions() for st in space.decode(chain)])
assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)

# %% [markdown]
# ## 2. The genetic operations
#
# Each generation (the paper's Algorithm 1) applies three operations to the $N$ individuals
# $M_{t-1,n}$ with fitness $r_{t-1,n}$:
#
# * **Selection** (Russian roulette): $N$ draws with replacement, individual $n$ drawn with
#   probability proportional to $r_{t-1,n} - r_{t-1,\min}$. The best is the most likely to
#   survive, the worst never does.
# * **Crossover**: individuals are paired $(M_{t,2n-1}, M_{t,2n})$; with probability $p_C$ a
#   pair swaps each *stage* with probability $q_C$.
# * **Mutation**: every individual that did not cross over is, with probability $p_M$,
#   mutated by flipping each bit with probability $q_M$.
#
# The paper's CIFAR-10 values are $N=20$, $T=50$, $p_C=q_C=0.2$, $p_M=0.8$, $q_M=0.05$ on stages
# of 3, 4 and 5 nodes (`GAConfig.paper()`, which is also `GAConfig()`); the fitness is the
# recognition accuracy on held-out validation data, and a network that appears again in a later
# generation is trained again and its accuracies averaged.

# %%
paper = GAConfig.paper()
print(paper)
assert (paper.population_size, paper.generations, paper.p_C, paper.q_C, paper.p_M, paper.q_M) == \
    (20, 50, 0.2, 0.2, 0.8, 0.05)
assert paper.stage_sizes == (3, 4, 5) and paper.reevaluate and paper == GAConfig()

# %% [markdown]
# **Roulette from scratch**, checked against the library, then 10,000 seeded draws:

# %%
fitness = [0.52, 0.61, 0.58, 0.70, 0.55]
r = torch.tensor(fitness, dtype=torch.float64)
p_scratch = (r - r.min()) / (r - r.min()).sum()  # P(n) proportional to r_n - r_min
torch.testing.assert_close(p_scratch, torch.from_numpy(gc.selection_probabilities(fitness)))
draws = gc.roulette_select(fitness, np.random.default_rng(0), size=10_000)
freq = np.bincount(draws, minlength=len(fitness)) / len(draws)
for n, (f, p, q) in enumerate(zip(fitness, p_scratch.tolist(), freq, strict=True)):
    print(f"individual {n}: fitness {f:.2f}  probability {p:.3f}  observed {q:.3f}")
assert freq[0] == 0 and np.abs(freq - p_scratch.numpy()).max() < 0.02

# %%
fig, ax = plt.subplots(figsize=(6, 2.8))
x = np.arange(len(fitness))
ax.bar(x - 0.2, p_scratch.numpy(), 0.4, label="probability (r - r_min)")
ax.bar(x + 0.2, freq, 0.4, label="observed in 10,000 draws")
ax.set_xticks(x, [f"#{n}\nr={f:.2f}" for n, f in enumerate(fitness)])
ax.legend(fontsize=8)
ax.set_title("Russian-roulette selection")
plt.show()

# %% [markdown]
# **Stage crossover** (the paper's), on two 3-stage individuals: each stage is swapped whole.

# %%
a, b = space.all_ones_genome(paper_sizes), Genome(paper_sizes, (0,) * 19)
c, d = gc.stage_crossover(a, b, np.random.default_rng(3), q_C=0.5)
print("parents: ", a, "  ", b)
print("children:", c, "  ", d)
assert all(c.stage_bits(s) in (a.stage_bits(s), b.stage_bits(s)) for s in range(3))
swapped = [s + 1 for s in range(3) if c.stage_bits(s) != a.stage_bits(s)]
print("stages child 1 took from parent 2:", swapped)

# %% [markdown]
# Drawn: the parents (all ones, all zeros) and the first child, each with its three stages.


# %%
def stages_drawing(name, genome):
    return combine(name, [st.graph(f"{name}_stage_{s + 1}") for s, st in enumerate(space.decode(genome))])


display(show(stages_drawing("parent_1", a)), show(stages_drawing("parent_2", b)))
show(stages_drawing("child_1", c))

# %% [markdown]
# **Interval crossover** (two-point crossover of the textbook simple GA, which the seed text
# describes): it swaps the bits between two random
# positions, which can cut a stage in two (below, a child's stage mixes bits of both parents).

# %%
c, d = gc.interval_crossover(a, b, np.random.default_rng(0))
print("children:", c, "  ", d)
mixed = [s + 1 for s in range(3) if len(set(c.stage_bits(s))) == 2]
print("stages mixing both parents:", mixed)
assert mixed

# %% [markdown]
# **Mutation** with $q_M = 0.05$ flips about one bit in twenty:

# %%
rng = np.random.default_rng(1)
print("before:", chain)
mutants = [gc.mutate(chain, rng, q_M=0.05) for _ in range(3)]
for m in mutants:
    print("after: ", m, " flipped:", sum(x != y for x, y in zip(m.bits, chain.bits, strict=True)))

# %% [markdown]
# The first mutation that flipped a bit, drawn: the stage it changed, before and after.

# %%
m = next(m for m in mutants if m != chain)
changed = next(s for s in range(3) if m.stage_bits(s) != chain.stage_bits(s))
print(f"stage {changed + 1}: {chain.stage_bits(changed)} -> {m.stage_bits(changed)}")
show(combine("mutation", [space.decode(chain)[changed].graph("before"), space.decode(m)[changed].graph("after")]))

# %% [markdown]
# ### Paper and seed text: what differs
#
# The seed text this tutorial grew from (its Genetic CNN section) describes a textbook simple GA
# rather than the paper's operators; the library offers both, and defaults to the paper:
#
# | | paper (`GAConfig.paper()`) | simple GA, as in the seed text (`GAConfig.simple_ga()`) |
# |---|---|---|
# | crossover | swap whole stages: pair prob. $p_C=0.2$, stage prob. $q_C=0.2$ | swap one random interval of bits, pair prob. 0.4 |
# | mutation | non-crossover individuals, $p_M=0.8$, $q_M=0.05$ | every individual, 0.8 and 0.05 |
# | roulette | proportional to $r - r_{\min}$ (worst always eliminated) | proportional to $r$ |
# | fitness | held-out validation accuracy | "evaluated on the test dataset" |
# | repeated codes | trained again, accuracies averaged | (not said) |
#
# Measuring fitness on the test set, as the seed text says, would select architectures on the
# data used to report their accuracy; here fitness is always validation accuracy and the test
# subset is used once, at the end. Repeated codes: the paper trains them again and averages
# (`reevaluate=True`, the default); the fast setting (`GAConfig.fast()`) looks an already trained
# network up instead, to save time.

# %%
simple = GAConfig.simple_ga()
print(simple)
assert (simple.p_C, simple.p_M, simple.q_M, simple.crossover) == (0.4, 0.8, 0.05, "interval")

# %% [markdown]
# ### Mutation keeps a population diverse
#
# Start from a collapsed generation ($N$ copies of one network) and apply one mutation step: how
# many different codes and networks come out, and how far apart are they (mean Hamming distance
# as a fraction of $L$)? Move the sliders (they appear when you run the cells); the callback is
# `gc.mutation_diversity`, and the table after them shows the same numbers for a few settings.

# %% tags=["nbval-ignore-output"]
def show_diversity(p_M=0.8, q_M=0.05):
    stats = gc.mutation_diversity(chain, population_size=20, p_M=p_M, q_M=q_M, seed=0)
    for key, value in stats.items():
        print(f"{key:>17}: {value:.3f}" if isinstance(value, float) else f"{key:>17}: {value}")


diversity = widgets.interact(show_diversity, p_M=widgets.FloatSlider(value=0.8, min=0, max=1, step=0.05),
                             q_M=widgets.FloatSlider(value=0.05, min=0, max=0.5, step=0.01, readout_format=".2f"))

# %%
print(" p_M   q_M  unique codes  unique networks  mean Hamming")
for p_M, q_M in [(0.0, 0.05), (0.8, 0.01), (0.8, 0.05), (0.8, 0.2), (1.0, 0.5)]:
    s = gc.mutation_diversity(chain, population_size=20, p_M=p_M, q_M=q_M, seed=0)
    print(f"{p_M:4.1f} {q_M:5.2f} {s['unique_codes']:13d} {s['unique_networks']:16d} {s['mean_hamming']:13.3f}")
assert gc.mutation_diversity(chain, population_size=20, p_M=0.0, q_M=0.05)["unique_codes"] == 1

# %% [markdown]
# The rates, checked on many draws: mutation flips a fraction $p_M q_M$ of all bits, and a pair
# crosses over with probability $p_C$.

# %%
many = gc.mutation_diversity(chain, population_size=2_000, p_M=0.8, q_M=0.05, seed=1)
print(f"flipped fraction of 38,000 bits: {many['flipped_fraction']:.4f} (p_M q_M = {0.8 * 0.05:.4f})")
assert abs(many["flipped_fraction"] - 0.8 * 0.05) < 0.005  # 5 standard errors
rng = np.random.default_rng(2)
population = [gc.random_genome(paper_sizes, rng) for _ in range(20)]
scores = list(np.linspace(0.1, 0.9, 20))
crossed = [o["crossed"] for _ in range(300) for o in gc.next_generation(population, scores, rng, paper)[1][::2]]
print(f"pairs crossed in 300 generations of 10 pairs: {np.mean(crossed):.3f} (p_C = {paper.p_C})")
assert abs(np.mean(crossed) - paper.p_C) < 0.03  # 4 standard errors

# %% [markdown]
# ## 3. The search on a CIFAR-10 subset
#
# Fitness (`gc.training_fitness`, an `evaluators.TrainFromScratch` that builds `space.GeneticCNN`):
# train the network from scratch on half of a class-balanced
# subset of the CIFAR-10 training images and score it on the other half (the validation split).
# The fitness object holds the data root, not the data, so any evaluator's workers can read the
# subset themselves. Each individual's training seed is fixed by the run seed and its code, so a
# run repeats exactly, whichever evaluator and in whichever order the individuals are trained.
# The search follows the pattern of every method here (`nas_tutorial/search.py`): a config, the
# data (for a population method, the evaluator that scores candidates), one record per step (a
# generation) with the common keys `step`, `seconds`, `best_arch`, `best_score`, a text progress
# bar and an optional checkpoint. In this run, networks already trained are looked up, not
# trained again (`reevaluate=False`, to fit the time budget; the paper trains them again).

# %%
fitness_fn = gc.training_fitness(DATA_ROOT, channels=CHANNELS, train_size=TRAIN_SIZE, image_size=IMAGE_SIZE,
                                 epochs=EPOCHS, batch_size=BATCH_SIZE, lr=0.05, seed=SEED, device=str(device),
                                 torch_threads=TORCH_THREADS)
config = GAConfig(stage_sizes=STAGE_SIZES, population_size=POPULATION, generations=GENERATIONS, reevaluate=False,
                  seed=SEED)
print(f"N={POPULATION}, T={GENERATIONS}, stage sizes {STAGE_SIZES}, channels={CHANNELS}, "
      f"{TRAIN_SIZE // 2} training + {TRAIN_SIZE // 2} validation images of {IMAGE_SIZE}x{IMAGE_SIZE}")

# %% [markdown]
# ### How noisy is one fitness?
#
# Before trusting a ranking, measure its noise: train a few networks several times each, with
# different training seeds (`gc.fitness_noise`; the paper's re-training of repeated codes does
# exactly this). Rows are networks (all bits zero: one convolution per stage; a chain; all ones;
# three random codes), columns are trainings. The spread between the trainings of one network is
# the noise of a single fitness; the spread between the networks' means is the signal selection
# can use.

# %% tags=["nbval-ignore-output"]
rng = np.random.default_rng(SEED)
probes = [Genome(STAGE_SIZES, (0,) * space.code_length(STAGE_SIZES)), space.chain_genome(STAGE_SIZES),
          space.all_ones_genome(STAGE_SIZES)] + [gc.random_genome(STAGE_SIZES, rng) for _ in range(3)]
noise = gc.fitness_noise(fitness_fn, probes, repeats=3)
for code, row in zip(noise["codes"], noise["fitness"], strict=True):
    print(f"{code:>24}: " + "  ".join(f"{v:.3f}" for v in row) + f"   mean {row.mean():.3f}")
print(f"noise of one training (SD between seeds, mean over networks): {noise['within_sd']:.3f}")
print(f"signal (SD of the networks' means):                         {noise['between_sd']:.3f}")
print(f"noise left in a mean of 3 trainings:                         {noise['mean_se']:.3f}")
ratio = noise["between_sd"] / noise["within_sd"]
print("verdict:", "the networks differ clearly more than one training's noise" if ratio > 2 else
      "the networks differ by about as much as one training's noise: a single training ranks close "
      "networks partly by luck; averaging trainings (the paper's re-training) shrinks the noise by sqrt(k)")

# %%
assert noise["fitness"].shape == (6, 3) and noise["within_sd"] > 0  # the training seed matters
assert noise["mean_se"] < noise["within_sd"]

# %% [markdown]
# ### The run
#
# The search writes a checkpoint after every training. To show the resume, the run below stops
# after generation 0 (as a killed process would), and a *new* search object, as a new process
# would make, picks the run up from the file: nothing is trained twice.

# %% tags=["nbval-ignore-output"]
checkpoint = Path(tempfile.mkdtemp()) / "genetic_cnn.pt"
t0 = time.perf_counter()
gc.GeneticSearch(config, InProcessEvaluator(fitness_fn), checkpoint=checkpoint).run(stop_after=1)  # interrupted
search = gc.GeneticSearch(config, InProcessEvaluator(fitness_fn), checkpoint=checkpoint)  # a new process
records = search.run(progress=True)
search_seconds = time.perf_counter() - t0
for r in records:
    print(f"generation {r['generation']}: best {r['best_score']:.3f} mean {r['mean_fitness']:.3f} "
          f"new trainings {r['new_evaluations']} distinct networks {r['unique_networks']}  {r['best_arch']}")
print(f"{search.trainings} trainings in {search_seconds:.0f} s, resumed from {checkpoint.name} after generation 0")

# %%
assert len(records) == GENERATIONS + 1
assert all(len(r["individuals"]) == POPULATION for r in records)
assert all(0.0 <= ind["fitness"] <= 1.0 for r in records for ind in r["individuals"])
assert search.trainings == len(search.fitness) <= POPULATION * (GENERATIONS + 1)  # no network trained twice

# %% [markdown]
# Every individual of every generation (dots), the best and the mean:

# %% tags=["nbval-ignore-output"]
fig, ax = plt.subplots(figsize=(6.5, 3.2))
for r in records:
    scores = [ind["fitness"] for ind in r["individuals"] if ind["fitness"] is not None]
    ax.scatter([r["generation"]] * len(scores), scores, s=14, color="#1f77b4", alpha=0.5)
gens = [r["generation"] for r in records]
ax.plot(gens, [r["best_score"] for r in records], marker="o", color="#d62728", label="best")
ax.plot(gens, [r["mean_fitness"] for r in records], marker="s", color="#2ca02c", label="mean")
ax.set_xlabel("generation")
ax.set_ylabel("validation accuracy")
ax.set_xticks(gens)
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %%
assert all(r["best_score"] >= r["mean_fitness"] for r in records)

# %% [markdown]
# **Why the best can get worse.** The paper's algorithm has no elitism: the best individual of a
# generation survives only if the roulette draws it, and then crossover or mutation may still
# change it. So the best fitness of a generation can fall, and with a noisy fitness a lucky
# network's score is not kept either. This run:

# %%
drops = [r["generation"] for previous, r in zip(records, records[1:]) if r["best_score"] < previous["best_score"]]
print("generations whose best is below the previous generation's:", drops or "none in this run")
assert all(0 < t <= GENERATIONS for t in drops)

# %% [markdown]
# Which connections the population keeps: the fraction of individuals with each bit set, per
# generation (one colour scale, 0 to 1). Bits that drift to 0 or 1 are the ones selection (or
# chance, in a small population) settled.

# %% tags=["nbval-ignore-output"]
freq = gc.bit_frequencies(records)
fig, ax = plt.subplots(figsize=(9, 0.5 + 0.4 * len(records)))
heatmap(ax, freq, row_labels=[f"generation {r['generation']}" for r in records],
        col_labels=gc.bit_labels(STAGE_SIZES), vmin=0, vmax=1, title="fraction of the population with each bit set")
fig.tight_layout()
plt.show()

# %%
assert freq.shape == (GENERATIONS + 1, space.code_length(STAGE_SIZES)) and 0 <= freq.min() <= freq.max() <= 1

# %% [markdown]
# ## 4. The best network
#
# The best individual seen in any generation, drawn stage by stage:

# %% tags=["nbval-ignore-output"]
best, best_fitness = search.best()
print(f"best code {best}  validation accuracy during the search {best_fitness:.3f}")
for s, st in enumerate(space.decode(best)[:-1]):
    display(show(st.graph(f"best_stage_{s + 1}")))
show(space.decode(best)[-1].graph(f"best_stage_{best.num_stages}"))

# %%
assert best.stage_sizes == STAGE_SIZES and best_fitness == max(r["best_score"] for r in records)

# %% [markdown]
# Retrained a little longer from scratch on the training split, and scored once on the test
# subset (which the search never saw):

# %% tags=["nbval-ignore-output"]
subsets = make_subsets(cifar, train_size=TRAIN_SIZE, test_size=TEST_SIZE, image_size=IMAGE_SIZE, device=device,
                       seed=0)
torch.manual_seed(SEED)
final = space.GeneticCNN(best, CHANNELS).to(device)
loader = DeviceLoader(subsets.train_x, subsets.train_y, BATCH_SIZE, seed=SEED)
history = fit(final, loader, (subsets.valid_x, subsets.valid_y), epochs=RETRAIN_EPOCHS, lr=0.05, progress=False)
test = evaluate(final, subsets.test_x, subsets.test_y)
print(f"after {RETRAIN_EPOCHS} epochs: validation accuracy {history[-1]['valid_acc']:.3f}, "
      f"test accuracy {test['acc']:.3f} on {len(subsets.test_y)} test images")

# %%
assert len(history) == RETRAIN_EPOCHS and 0.0 <= test["acc"] <= 1.0

# %% [markdown]
# ## 5. The same search on many processes, or on a Ray cluster
#
# The search only talks to an `Evaluator`: `evaluate(candidates) -> results`, each result holding
# a fitness or the error and the candidate's code. Swap the evaluator and nothing else changes:
#
# ```python
# from nas_tutorial.evaluators import ProcessPoolEvaluator, RayEvaluator
#
# with ProcessPoolEvaluator(fitness_fn, workers=2) as ev:  # all cores of this machine
#     records = gc.search(config, ev)
#
# # pip install "nas_tutorial[ray]"; on the cluster: `ray start --head`, then `ray start --address=...`
# with RayEvaluator(fitness_fn, address="auto", gpus_per_task=1) as ev:  # or num_cpus=... locally
#     records = gc.search(config, ev, checkpoint="runs/genetic_cnn.pt", progress=True)
# ```
#
# On a cluster every node needs the package and the data root (`DATA_ROOT`) at the same path.
# A failing worker is reported in the record (`individual["error"]`) and counts as the worst
# individual; the other results are kept.
#
# Here, the first two generations again, on a pool of two worker processes (each worker reads the
# data itself and trains with one thread). On a CPU every fitness equals the in-process run's (the
# training seed depends on the run seed and the code only), and so do the records: the resumed run
# above equals an uninterrupted one. (On a GPU, nondeterministic kernels: the check below then allows
# 0.05 on each fitness of the first generation.)

# %% tags=["nbval-ignore-output"]
from nas_tutorial.evaluators import ProcessPoolEvaluator

with ProcessPoolEvaluator(fitness_fn, workers=2, torch_threads=TORCH_THREADS or 1) as pool:
    t0 = time.perf_counter()
    pool_records = gc.search(config.replace(generations=1), pool, progress=True)
    pool_seconds = time.perf_counter() - t0
print(f"two generations on 2 workers: {pool_seconds:.1f} s (worker start-up included); in this process: "
      f"{sum(r['seconds'] for r in records[:2]):.1f} s")
# In fast mode, starting two workers (each imports torch and reads the data) costs more than the
# few short trainings save; benchmarks/bench_genetic_cnn.py measures the pool on real workloads.


def strip(rs):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rs]


print("same records as the resumed in-process run:", strip(pool_records) == strip(records[:2]))

# %%
if device.type == "cpu":
    assert strip(pool_records) == strip(records[:2])
else:  # on a GPU, nondeterministic kernels: the first generation's fitnesses within 0.05, failures in both
    for a, b in zip(pool_records[0]["individuals"], records[0]["individuals"]):
        assert (a["fitness"] is None) == (b["fitness"] is None), (a, b)
        assert a["fitness"] is None or abs(a["fitness"] - b["fitness"]) < 0.05, (a, b)

# %% [markdown]
# Faults stay with their candidate. Below, a toy fitness (the fraction of ones in the code) that
# kills its worker process for one code and hangs for another, on a pool with a 3-second limit per
# candidate: the dead worker and the hung one are replaced, those two candidates fail with the
# reason, and the others keep their results.

# %% tags=["nbval-ignore-output"]
from nas_tutorial.evaluators import KillOn, SleepOn, ones_fraction

codes = [str(g) for g in probes]
faulty = KillOn((codes[1],), SleepOn((codes[2],), 60, ones_fraction))  # worker dies on codes[1], hangs on codes[2]
with ProcessPoolEvaluator(faulty, workers=2, timeout=3) as pool:
    results = pool.evaluate(probes)
for r in results:
    print(f"{r.code:>24}: " + (f"fitness {r.fitness:.3f}" if r.ok else "failed: " + r.error.splitlines()[0][:90]))

# %%
assert [r.ok for r in results] == [True, False, False, True, True, True]
assert "died" in results[1].error and "time limit" in results[2].error

# %% [markdown]
# A checkpoint remembers the settings and the fitness function it was written with, and refuses
# to continue with others, naming what differs:

# %%
try:
    gc.search(config.replace(q_M=0.1), InProcessEvaluator(fitness_fn), checkpoint=checkpoint)
except ValueError as err:
    print(str(err).replace(str(checkpoint), "genetic_cnn.pt"))

# %% [markdown]
# The cell below runs the search on a local Ray instance when `USE_RAY = True` (off by default:
# starting Ray takes several seconds).

# %%
if USE_RAY:
    from nas_tutorial.evaluators import RayEvaluator

    with RayEvaluator(fitness_fn, num_cpus=os.cpu_count()) as ev:
        ray_records = gc.search(config.replace(generations=1), ev)
    print("best on Ray after one generation:", ray_records[-1]["best_arch"], ray_records[-1]["best_score"])

# %% [markdown]
# ## 6. Pitfalls
#
# **Noisy fitness.** A network trained for a few epochs on a few hundred images has an accuracy
# that depends on its random initialisation about as much as on its architecture (the noise
# table in section 3 measures it for this setting); selection then partly follows noise, and the
# best network of the search is partly the luckiest.
#
# Remedies: the paper's choice of training repeated codes again and averaging (`reevaluate=True`,
# the default of `GAConfig`), larger validation sets, and longer training where it shrinks the
# spread between seeds more than the differences between networks (measure both with
# `gc.fitness_noise` before trusting a setting).
#
# **Loss of diversity.** Roulette selection copies good individuals, and with little mutation
# the population collapses onto a few networks, after which crossover only recombines copies.
# Distinct networks per generation of our run:

# %% tags=["nbval-ignore-output"]
print([r["unique_networks"] for r in records], "out of", POPULATION)

# %%
assert all(1 <= r["unique_networks"] <= POPULATION for r in records)

# %% [markdown]
# The mutation sliders above show the remedy: $p_M$ and $q_M$ decide how many new networks each
# generation brings. Too much mutation turns the search into random sampling.
#
# ## 7. Summary
#
# * A stage with $K$ nodes is $K(K-1)/2$ bits; decoding adds default input and output nodes,
#   sums several parents and drops isolated nodes, so several codes give the same network.
# * The genetic algorithm keeps $N$ networks; roulette selection on $r - r_{\min}$, stage-wise
#   crossover and bit-flip mutation make the next generation; fitness is validation accuracy
#   after training from scratch.
# * Evaluating a population is embarrassingly parallel: one `Evaluator` interface runs it
#   in-process, on a process pool or on a Ray cluster, with checkpoints after every evaluation.
#
# ## 8. Exercises
#
# 1. Compare the paper's operators and `GAConfig.simple_ga()` over three seeds: which keeps more
#    distinct networks per generation?
# 2. Turn on `reevaluate=True` (the paper's choice) and measure how much the best fitness changes
#    between generations compared to the lookup of the run above.
# 3. Add a fourth stage and count the distinct networks of the new space by enumeration.
# 4. Write a tournament selection (`gc.roulette_select`'s signature) and compare its selection
#    pressure with the roulette's.
