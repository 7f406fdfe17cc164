"""Genetic CNN: evaluations per minute of one population, in-process, on a process pool and on Ray.

Usage::

    python benchmarks/bench_genetic_cnn.py [--population 8] [--repeats 3] [--workers N] [--data-root PATH] [--no-ray]

The fitness is the notebook's fast setting (``notebooks/04_genetic_cnn.py`` with
``NAS_TUTORIAL_FAST=1``): stages (3, 4) with 8 and 16 channels, 400 training + 400 validation
CIFAR-10 images at 16x16, 2 epochs. Every backend first evaluates a small warm-up population
(worker start, imports, data loading), reported apart as start-up; then the backends take turns
evaluating the timed population ``--repeats`` times. On a machine shared with other jobs, the
best of the repeats is the figure least disturbed by them.
Prints a Markdown table for ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import numpy as np
import torch

from nas_tutorial import genetic_cnn as gc
from nas_tutorial import genetic_cnn_space as space
from nas_tutorial.data import default_data_root
from nas_tutorial.evaluators import InProcessEvaluator, ProcessPoolEvaluator


def distinct_population(size: int, seed: int = 0) -> list[space.Genome]:
    """``size`` random genomes of stages (3, 4) that decode to different networks."""
    rng, population, keys = np.random.default_rng(seed), [], set()
    while len(population) < size:
        g = gc.random_genome((3, 4), rng)
        if space.network_key(g) not in keys:
            keys.add(space.network_key(g))
            population.append(g)
    return population


def measure(backends: dict, population, warmup, repeats: int) -> dict:
    """Start every backend and warm it up, then time the population ``repeats`` times, the backends
    taking turns (so a burst of load from other jobs hits all of them alike). Best and median."""
    evaluators, rows = {}, {}
    try:
        for name, make in backends.items():
            start = time.perf_counter()
            evaluators[name] = make()
            evaluators[name].evaluate(warmup)
            rows[name] = {"startup_s": time.perf_counter() - start, "times": []}
        for _ in range(repeats):
            for name, ev in evaluators.items():
                start = time.perf_counter()
                results = ev.evaluate(population)
                rows[name]["times"].append(time.perf_counter() - start)
                failed = [r for r in results if not r.ok]
                if failed:
                    raise RuntimeError(f"{name}: {len(failed)} evaluations failed, first: {failed[0].error}")
    finally:
        for ev in evaluators.values():
            ev.close()
    for row in rows.values():
        row["best_s"], row["median_s"] = min(row["times"]), float(np.median(row["times"]))
        row["per_minute_best"] = 60 * len(population) / row["best_s"]
        row["per_minute_median"] = 60 * len(population) / row["median_s"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--data-root", default=str(default_data_root()))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()

    fitness = gc.training_fitness(args.data_root, channels=(8, 16), train_size=800, image_size=16, epochs=2,
                                  batch_size=32, lr=0.05)
    one_thread = dataclasses.replace(fitness, torch_threads=1)
    everything = distinct_population(args.population + 2)
    warmup, population = everything[:2], everything[2:]

    threads = torch.get_num_threads()
    backends = {
        f"in-process, {threads} torch threads": lambda: InProcessEvaluator(fitness),
        "in-process, 1 torch thread": lambda: InProcessEvaluator(one_thread),
        f"process pool, {args.workers} workers x 1 thread": lambda: ProcessPoolEvaluator(fitness,
                                                                                          workers=args.workers),
    }
    if not args.no_ray:
        from nas_tutorial.evaluators import RayEvaluator

        backends[f"Ray (local, num_cpus={args.workers})"] = lambda: RayEvaluator(fitness, num_cpus=args.workers)
    load = os.getloadavg()[0]
    rows = measure(backends, population, warmup, args.repeats)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, CUDA {'yes' if torch.cuda.is_available() else 'no'}; "
          f"population of {len(population)} distinct networks")
    print(f"load average (1 min) before: {load:.2f}, after: {os.getloadavg()[0]:.2f}; {args.repeats} repeats")
    print(f"| evaluator | start-up + warm-up (s) | population of {len(population)}: best / median (s) "
          "| evaluations / minute: best / median |")
    print("|---|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['startup_s']:.1f} | {row['best_s']:.1f} / {row['median_s']:.1f} "
              f"| {row['per_minute_best']:.0f} / {row['per_minute_median']:.0f} |")


if __name__ == "__main__":
    main()
