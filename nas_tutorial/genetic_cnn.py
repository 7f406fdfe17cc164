r"""Genetic CNN (Xie & Yuille, ICCV 2017, arXiv:1703.01513): a genetic algorithm over binary-coded networks.

Read top to bottom like Sec. 3.2 of the paper: the genetic operations (selection, crossover,
mutation), the settings, one generation of Algorithm 1, the diversity measures of the notebook's
widget, and the search loop. The search space (encoding, decoding, the network a code stands for)
is :mod:`nas_tutorial.genetic_cnn_space`; candidates are trained from scratch by
:class:`nas_tutorial.evaluators.TrainFromScratch` (:func:`training_fitness` builds it for this space).

| symbol | code | what it is | shape |
| --- | --- | --- | --- |
| :math:`M_{t,n}` | ``population[n]`` | individual ``n`` of generation ``t`` | :class:`Genome` |
| :math:`r_{t,n}` | ``fitness[n]`` | its fitness: validation accuracy after training from scratch | float |
| :math:`N, T` | ``population_size``, ``generations`` | population size, generations | 20, 50 in the paper |
| :math:`p_C, q_C` | ``p_C``, ``q_C`` | crossover probability per pair, per stage | 0.2, 0.2 |
| :math:`p_M, q_M` | ``p_M``, ``q_M`` | mutation probability per individual, per bit | 0.8, 0.05 |

Where this differs from the paper, on purpose (and said in the notebook):

- Fitness is the accuracy on a held-out *validation* split of the training images, as in the
  paper; the tutorial's seed text said "test set", which would leak the test set into the search.
- ``GAConfig()`` / ``GAConfig.paper()`` train every occurrence of a code again and average the
  accuracies, as the paper does. ``GAConfig.fast()`` (the notebook's CPU setting) trains each
  distinct network once and looks repeated ones up (``reevaluate=False``): cheaper, but a lucky
  first training is never corrected.
- ``GAConfig.simple_ga()`` is the textbook simple GA the seed text described instead of the
  paper's operators: two-point (interval) crossover with probability 0.4, which can cut a stage in
  two, mutation of every individual, and roulette on the raw fitness.
- The classifier head and the short training are a tutorial's budget (see the space module).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .evaluators import EvalResult, Evaluator, InProcessEvaluator, TrainFromScratch, Trial, describe_fitness
from .genetic_cnn_space import (
    GeneticCNN,
    Genome,
    check_stage_sizes,
    code_length,
    network_key,
)
from .search import Config, Search, check, plain


# -- Sec. 3.2: the genetic operations (pure functions: a numpy Generator in, new genomes out) -------
def random_genome(stage_sizes: Sequence[int], rng: np.random.Generator, p: float = 0.5) -> Genome:
    """Initialisation: every bit drawn independently from Bernoulli(``p``) (the paper uses 0.5)."""
    stage_sizes = check_stage_sizes(stage_sizes)
    return Genome(stage_sizes, tuple(int(b) for b in rng.random(code_length(stage_sizes)) < p))


def initial_population(stage_sizes: Sequence[int], size: int, rng: np.random.Generator) -> list[Genome]:
    """``N`` random individuals ``M_{0,n}``."""
    return [random_genome(stage_sizes, rng) for _ in range(size)]


def selection_probabilities(fitness: Sequence[float], baseline: str = "min") -> np.ndarray:
    r"""Russian-roulette probabilities.

    ``baseline="min"`` (the paper): :math:`P(n) \propto r_n - r_{\min}`, so the best individual is
    the most likely and the worst is always eliminated. ``baseline="zero"`` (the simple GA):
    :math:`P(n) \propto r_n`. If all weights are zero (all fitnesses equal) the choice is uniform.
    """
    r = np.asarray(fitness, dtype=float)
    if r.ndim != 1 or len(r) == 0 or not np.all(np.isfinite(r)):
        raise ValueError(f"fitness must be a non-empty list of finite numbers, got {list(fitness)}")
    if baseline == "min":
        # P(M_{t-1,n}) proportional to r_{t-1,n} - r_{t-1,min}
        w = r - r.min()
    elif baseline == "zero":
        if np.any(r < 0):
            raise ValueError("roulette on the raw fitness needs fitness >= 0")
        w = r.copy()
    else:
        raise ValueError(f"baseline must be 'min' (paper) or 'zero' (raw fitness), got {baseline!r}")
    total = w.sum()
    return np.full(len(r), 1 / len(r)) if total <= 0 else w / total


def roulette_select(fitness: Sequence[float], rng: np.random.Generator, *, size: int | None = None,
                    baseline: str = "min") -> np.ndarray:
    """Indices of the survivors: ``size`` (default N) independent draws with replacement."""
    p = selection_probabilities(fitness, baseline)
    return rng.choice(len(p), size=len(p) if size is None else size, replace=True, p=p)


def stage_crossover(a: Genome, b: Genome, rng: np.random.Generator, q_C: float) -> tuple[Genome, Genome]:
    """The paper's crossover: each pair of corresponding stages is swapped with probability ``q_C``."""
    if a.stage_sizes != b.stage_sizes:
        raise ValueError(f"crossover needs genomes with the same stages, got {a.stage_sizes} and {b.stage_sizes}")
    swap = rng.random(a.num_stages) < q_C
    sa = [b.stage_bits(s) if swap[s] else a.stage_bits(s) for s in range(a.num_stages)]
    sb = [a.stage_bits(s) if swap[s] else b.stage_bits(s) for s in range(a.num_stages)]
    return Genome(a.stage_sizes, sum(sa, ())), Genome(a.stage_sizes, sum(sb, ()))


def interval_crossover(a: Genome, b: Genome, rng: np.random.Generator) -> tuple[Genome, Genome]:
    """Two-point crossover of the simple GA: swap the bits in a random interval ``[lo, hi]`` (two
    distinct positions, both included). Unlike the paper's, it can cut a stage in two."""
    if a.stage_sizes != b.stage_sizes:
        raise ValueError(f"crossover needs genomes with the same stages, got {a.stage_sizes} and {b.stage_sizes}")
    if len(a.bits) < 2:
        return a, b
    lo, hi = sorted(rng.choice(len(a.bits), size=2, replace=False))
    ba, bb = list(a.bits), list(b.bits)
    ba[lo:hi + 1], bb[lo:hi + 1] = b.bits[lo:hi + 1], a.bits[lo:hi + 1]
    return Genome(a.stage_sizes, tuple(ba)), Genome(a.stage_sizes, tuple(bb))


def mutate(genome: Genome, rng: np.random.Generator, q_M: float) -> Genome:
    """Flip every bit independently with probability ``q_M``."""
    # each bit b_i becomes 1 - b_i with probability q_M, independently
    flip = rng.random(len(genome.bits)) < q_M
    return Genome(genome.stage_sizes, tuple(int(b) ^ int(f) for b, f in zip(genome.bits, flip, strict=True)))


@dataclass(frozen=True)
class GAConfig(Config):
    """Settings of the genetic algorithm; the defaults are the paper's CIFAR-10 setting.

    Attributes:
        stage_sizes: ``K_s`` of every stage: ``(3, 4, 5)``.
        population_size, generations: ``N = 20``, ``T = 50`` (records are generations ``0..T``).
        p_C, q_C: crossover probability per pair (0.2), and per stage (0.2; stage crossover only).
        p_M, q_M: mutation probability per individual (0.8), and per bit (0.05).
        crossover: ``"stage"`` (paper) or ``"interval"`` (two-point, the simple GA).
        selection: roulette weights ``"min"`` (paper, ``r - r_min``) or ``"zero"`` (raw fitness ``r``).
        mutate_crossed: also mutate individuals that just went through crossover (the simple GA);
            the paper mutates only the non-crossover individuals.
        reevaluate: train every occurrence of a network again and average its accuracies (the paper);
            ``False`` trains each network once and looks repeated ones up.
        dedup: with ``reevaluate=False``, what counts as "the same": the ``"network"`` (codes that
            decode to the same network share a result) or the ``"code"``.
        seed: seeds the initial population, the operators and each individual's training seed.
    """

    stage_sizes: tuple[int, ...] = (3, 4, 5)
    population_size: int = 20
    generations: int = 50
    p_C: float = 0.2
    q_C: float = 0.2
    p_M: float = 0.8
    q_M: float = 0.05
    crossover: str = "stage"
    selection: str = "min"
    mutate_crossed: bool = False
    reevaluate: bool = True
    dedup: str = "network"
    seed: int = 0

    def validate(self) -> None:
        object.__setattr__(self, "stage_sizes", check_stage_sizes(self.stage_sizes))
        check(isinstance(self.population_size, int) and self.population_size >= 2, "population_size",
              "must be an integer >= 2", self.population_size)
        check(isinstance(self.generations, int) and self.generations >= 0, "generations", "must be an integer >= 0",
              self.generations)
        for name in ("p_C", "q_C", "p_M", "q_M"):
            check(0 <= getattr(self, name) <= 1, name, "must be a probability in [0, 1]", getattr(self, name))
        check(self.crossover in ("stage", "interval"), "crossover", "must be 'stage' or 'interval'", self.crossover)
        check(self.selection in ("min", "zero"), "selection", "must be 'min' or 'zero'", self.selection)
        check(self.dedup in ("network", "code"), "dedup", "must be 'network' or 'code'", self.dedup)

    @classmethod
    def fast(cls, **changes) -> "GAConfig":
        """The notebook's CPU setting: stages (3, 4), N = 6, T = 2, each network trained once."""
        return cls(**{**dict(stage_sizes=(3, 4), population_size=6, generations=2, reevaluate=False), **changes})

    @classmethod
    def simple_ga(cls, **changes) -> "GAConfig":
        """The textbook simple GA instead of the paper's operators: two-point crossover with p=0.4,
        mutation 0.8 / 0.05 of every individual, roulette proportional to the raw fitness."""
        return cls(**{**dict(p_C=0.4, crossover="interval", selection="zero", mutate_crossed=True), **changes})


def next_generation(population: Sequence[Genome], fitness: Sequence[float], rng: np.random.Generator,
                    config: GAConfig) -> tuple[list[Genome], list[dict]]:
    """One round of Algorithm 1: selection, crossover of pairs, mutation (failed individuals must
    already carry the worst fitness).

    Returns the new population and, per individual, its origin: ``{"parent", "crossed", "mutated"}``.
    """
    # selection: N draws with replacement, P(n) from the roulette
    parents = roulette_select(fitness, rng, baseline=config.selection)
    children = [population[i] for i in parents]
    crossed = [False] * len(children)
    # crossover: pairs (M_{t,2n-1}, M_{t,2n}), each with probability p_C
    for n in range(0, len(children) - 1, 2):
        if rng.random() < config.p_C:
            a, b = children[n], children[n + 1]
            if config.crossover == "stage":
                children[n], children[n + 1] = stage_crossover(a, b, rng, config.q_C)
            else:
                children[n], children[n + 1] = interval_crossover(a, b, rng)
            crossed[n] = crossed[n + 1] = True
    # mutation: each (non-crossover, in the paper) individual with probability p_M, bits with q_M
    mutated = [False] * len(children)
    for n in range(len(children)):
        if (config.mutate_crossed or not crossed[n]) and rng.random() < config.p_M:
            children[n] = mutate(children[n], rng, config.q_M)
            mutated[n] = True
    origins = [{"parent": int(p), "crossed": c, "mutated": m}
               for p, c, m in zip(parents, crossed, mutated, strict=True)]
    return children, origins


# -- diversity (the p_M / q_M widget) --------------------------------------------------------------
def population_diversity(population: Sequence[Genome]) -> dict:
    """Distinct codes, distinct networks and mean pairwise Hamming distance (as a fraction of L)."""
    bits = np.array([g.bits for g in population], dtype=np.int8)  # (N, L)
    n, length = bits.shape
    diff = (bits[:, None, :] != bits[None, :, :]).sum(-1)  # (N, N)
    pairs = n * (n - 1) / 2
    return {"unique_codes": len({g.bits for g in population}),
            "unique_networks": len({network_key(g) for g in population}),
            "mean_hamming": float(np.triu(diff, 1).sum() / pairs / length) if pairs else 0.0}


def mutation_diversity(genome: Genome, *, population_size: int, p_M: float, q_M: float, seed: int = 0) -> dict:
    """Widget callback: start from a collapsed generation (``population_size`` copies of ``genome``),
    apply one mutation step (individuals with ``p_M``, bits with ``q_M``) and measure the diversity.

    Also returns ``flipped_fraction`` (observed) and ``expected_flipped`` = ``p_M * q_M``.
    """
    rng = np.random.default_rng(seed)
    population = []
    for _ in range(population_size):
        population.append(mutate(genome, rng, q_M) if rng.random() < p_M else genome)
    flipped = sum(sum(a != b for a, b in zip(g.bits, genome.bits, strict=True)) for g in population)
    stats = population_diversity(population)
    stats.update(flipped_fraction=flipped / (population_size * len(genome.bits)), expected_flipped=p_M * q_M)
    return stats


# -- what the notebook shows about a run: noise, bit frequencies -------------------------------------
def fitness_noise(evaluator: Evaluator | Callable[[Any], Any], genomes: Sequence[Genome], repeats: int = 3) -> dict:
    """Train every genome ``repeats`` times with different training seeds (``Trial(genome, r)``).

    Returns ``fitness`` ``(len(genomes), repeats)``, ``within_sd`` (the mean over genomes of the
    standard deviation between seeds: the noise of one training), ``between_sd`` (the standard
    deviation of the genomes' mean fitness) and ``mean_se`` (``within_sd / sqrt(repeats)``, the noise
    left in a mean of ``repeats`` trainings, as the paper's re-training averages).
    """
    if repeats < 2 or len(genomes) < 2:
        raise ValueError(f"need at least 2 genomes and 2 repeats, got {len(genomes)} and {repeats}")
    evaluator = evaluator if isinstance(evaluator, Evaluator) else InProcessEvaluator(evaluator)
    results = evaluator.evaluate([Trial(g, r) for g in genomes for r in range(repeats)])
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} trainings failed, first: {failed[0].code}: {failed[0].error}")
    table = np.array([r.fitness for r in results]).reshape(len(genomes), repeats)
    within = float(table.std(axis=1, ddof=1).mean())
    return {"codes": [str(g) for g in genomes], "fitness": table, "within_sd": within,
            "between_sd": float(table.mean(axis=1).std(ddof=1)), "mean_se": within / math.sqrt(repeats)}


def bit_labels(stage_sizes: Sequence[int]) -> list[str]:
    """One label per bit of the code, in order: ``"s1 v1→v2"``, ``"s1 v1→v3"``, ``"s1 v2→v3"``, ..."""
    return [f"s{s + 1} v{i}→v{j}" for s, k in enumerate(check_stage_sizes(stage_sizes))
            for j in range(2, k + 1) for i in range(1, j)]


def bit_frequencies(records: Sequence[dict]) -> np.ndarray:
    """Fraction of the individuals with each bit set, per generation: ``(generations, L)``."""
    return np.array([[sum(bits) / len(bits) for bits in zip(*(Genome.parse(ind["code"]).bits
                                                              for ind in r["individuals"]), strict=True)]
                     for r in records])


# -- Algorithm 1: generations of evaluate, select, cross, mutate, with checkpoints --------------------
@dataclass(frozen=True)
class Job:
    """One training to run in the current generation: individual ``index``, its dedup ``key`` and
    which training of that key it is (``repeat``: 0 for the first)."""

    index: int
    key: str
    repeat: int


def training_fitness(data_root: str, *, channels: Sequence[int], **settings) -> TrainFromScratch:
    """The paper's fitness for this space: validation accuracy of :class:`GeneticCNN` (``channels`` per
    stage) trained from scratch; ``settings`` go to :class:`~nas_tutorial.evaluators.TrainFromScratch`."""
    import functools

    return TrainFromScratch(functools.partial(GeneticCNN, channels=tuple(channels)), str(data_root), **settings)


class GeneticSearch(Search):
    r"""Genetic CNN search (Algorithm 1): one :meth:`step` is one generation ``t = 0 .. T``.

    ``data`` is an :class:`~nas_tutorial.evaluators.Evaluator` (in-process, process pool, Ray) or a
    fitness callable (then evaluated in-process). Generation 0 is ``N`` random individuals; each
    later one is :func:`next_generation` of the last, failed individuals counting as the worst.
    The checkpoint is written after every finished evaluation, so a resumed run retrains nothing;
    it records the fitness function's settings and refuses a resume with another fitness.

    Records, beside the common keys (``best_arch``/``best_score``: the generation's best code and
    its fitness): ``generation``, ``individuals`` (each ``code``, ``key``, ``fitness``, ``error``,
    ``origin``), ``mean_fitness``, ``new_evaluations``, ``failed`` and ``unique_networks``.
    """

    method = "genetic_cnn"

    def __init__(self, config: GAConfig, data: Evaluator | Callable[[Any], Any], *,
                 checkpoint: str | os.PathLike | None = None):
        super().__init__(config, data, checkpoint=checkpoint)
        self.evaluator = data if isinstance(data, Evaluator) else InProcessEvaluator(data)
        self.rng = np.random.default_rng(config.seed)
        self.generation = -1
        self.population: list[Genome] = []
        self.origins: list[dict] = []
        self.todo: list[Job] = []  # trainings still to run in this generation
        self.planned = 0  # trainings planned for this generation
        self.fitness: dict[str, list[float]] = {}  # key -> accuracy of every training
        self.info: dict[str, dict] = {}
        self.failures: dict[str, str] = {}  # key -> error text
        self.trainings = 0

    def num_steps(self) -> int:
        return self.config.generations + 1

    def context(self) -> dict:
        return {"fitness": describe_fitness(self.evaluator.fitness_fn)}

    def key(self, genome: Genome) -> str:
        """What identifies a trained result: the network (default) or the code."""
        return network_key(genome) if self.config.dedup == "network" else str(genome)

    def state_dict(self) -> dict:
        return {"generation": self.generation, "population": [str(g) for g in self.population],
                "origins": self.origins, "todo": [asdict(j) for j in self.todo], "planned": self.planned,
                "rng": plain(self.rng.bit_generator.state), "fitness": self.fitness, "info": self.info,
                "failures": self.failures, "trainings": self.trainings}

    def load_state_dict(self, state: dict) -> None:
        self.generation, self.planned, self.trainings = state["generation"], state["planned"], state["trainings"]
        self.population = [Genome.parse(c) for c in state["population"]]
        self.origins, self.todo = state["origins"], [Job(**j) for j in state["todo"]]
        self.rng.bit_generator.state = state["rng"]
        self.fitness, self.info, self.failures = state["fitness"], state["info"], state["failures"]

    # -- one generation --------------------------------------------------------------------------
    def _plan(self) -> list[Job]:
        """What to train for the current population: every occurrence again, or new networks only."""
        todo, planned = [], {}
        for n, genome in enumerate(self.population):
            key = self.key(genome)
            if self.config.reevaluate:
                repeat = len(self.fitness.get(key, [])) + planned.get(key, 0)
                planned[key] = planned.get(key, 0) + 1
                todo.append(Job(n, key, repeat))
            elif key not in self.fitness and key not in self.failures and key not in planned:
                planned[key] = 1
                todo.append(Job(n, key, 0))
        return todo

    def _new_generation(self, t: int) -> None:
        if t == 0:  # initialisation: N random individuals M_{0,n}
            self.population = initial_population(self.config.stage_sizes, self.config.population_size, self.rng)
            self.origins = [{"parent": None, "crossed": False, "mutated": False} for _ in self.population]
        else:  # selection, crossover, mutation; failed individuals count as the worst
            scores = [ind["fitness"] for ind in self.records[-1]["individuals"]]
            worst = min(s for s in scores if s is not None)
            scores = [worst if s is None else s for s in scores]
            self.population, self.origins = next_generation(self.population, scores, self.rng, self.config)
        self.generation = t
        self.todo = self._plan()
        self.planned = len(self.todo)
        self.save()

    def _evaluate_todo(self) -> None:
        todo = list(self.todo)
        trials = [Trial(self.population[job.index], job.repeat) for job in todo]

        def store(i: int, result: EvalResult) -> None:
            job = todo[i]
            if result.ok and math.isfinite(result.fitness):
                self.fitness.setdefault(job.key, []).append(result.fitness)
                self.info[job.key] = plain(result.info)
            else:  # an error, or a fitness of nan or inf: a failed candidate, named
                self.failures[job.key] = result.error or f"non-finite fitness {result.fitness} for {result.code}"
            self.trainings += 1
            self.todo.remove(job)
            self.save()  # every finished evaluation is on disk before the next one ends

        self.evaluator.evaluate(trials, on_result=store)

    def step(self, index: int) -> dict:
        if self.generation < index:
            self._new_generation(index)
        self._evaluate_todo()
        individuals = []
        for genome, origin in zip(self.population, self.origins, strict=True):
            key = self.key(genome)
            values = self.fitness.get(key)
            error = self.failures.get(key) if not values else None
            individuals.append({"code": str(genome), "key": key, "fitness": float(np.mean(values)) if values else None,
                                "error": error.splitlines()[0] if error else None, "origin": origin})
        scored = [ind for ind in individuals if ind["fitness"] is not None]
        if not scored:
            raise RuntimeError(f"generation {index}: every evaluation failed; first error:\n"
                               + next(iter(self.failures.values()), "(none)"))
        best = max(scored, key=lambda ind: ind["fitness"])  # the first of equal ones
        mean = float(np.mean([ind["fitness"] for ind in scored]))
        return {"generation": index, "individuals": individuals, "mean_fitness": mean,
                "new_evaluations": self.planned, "failed": sum(ind["error"] is not None for ind in individuals),
                "unique_networks": len({ind["key"] for ind in individuals}),
                "best_arch": best["code"], "best_score": best["fitness"]}

    def best(self) -> tuple[Genome, float]:
        """The best network seen in any generation and its (mean) fitness."""
        scored = [(ind["fitness"], ind["code"]) for r in self.records for ind in r["individuals"]
                  if ind["fitness"] is not None]
        if not scored:
            raise RuntimeError("no individual has been evaluated yet: run() first")
        best_fit, best_code = max(scored, key=lambda s: s[0])
        return Genome.parse(best_code), best_fit


def search(config: GAConfig, data: Evaluator | Callable[[Any], Any], *, checkpoint: str | os.PathLike | None = None,
           progress: bool = False, callback: Callable[[dict], None] | None = None,
           stop_after: int | None = None) -> list[dict]:
    """Run (or resume from ``checkpoint``) a Genetic CNN search; return one record per generation
    ``t = 0 .. T`` (:class:`GeneticSearch`)."""
    return GeneticSearch(config, data, checkpoint=checkpoint).run(progress=progress, callback=callback,
                                                                  stop_after=stop_after)
