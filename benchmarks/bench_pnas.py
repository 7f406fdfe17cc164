"""PNAS: surrogate fit and prediction throughput, and networks trained per minute for a beam.

For each device (CPU; CUDA when present) it reports, in one run:

* **surrogate fit**: cells per second (cells x epochs / seconds) of fitting the ensemble on one
  beam of 5-block cells, for the paper's surrogates (5 LSTMs, or 5 MLPs, of 100 units, batch 32);
* **surrogate prediction**: cells per second of predicting a set of 5-block expansions (the
  ensemble's mean), and from it the time for the paper's largest expansion set, b = 5:
  256 parents x 1,176 blocks = 301,056 children (``--full`` predicts that whole set instead);
* **beam training**: networks trained per minute for a beam of ``--beam`` distinct 2-block cells
  with the fast fitness (``pnas.training_fitness`` with N = 1, F = 8, 400 training and 400
  validation CIFAR-10 images at 16x16, 1 epoch: a candidate setting for the notebook's fast
  mode), in-process and on a process pool (``--ray``: on a local Ray instance too). Each evaluator
  first trains a warm-up beam of 2 (worker start, imports, data: "start-up"); then the evaluators
  take turns training the beam ``--repeats`` times; best and median.

No peer implementation of PNAS runs here (the authors released only the final PNASNet-5
definition, in TensorFlow); the figures stand alone. Prints Markdown tables for
``benchmarks/README.md``. Usage::

    python benchmarks/bench_pnas.py [--threads 1] [--repeats 3] [--beam 8] [--workers N] [--data-root PATH]
        [--full] [--ray] [--skip-training]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas_tutorial import pnas  # noqa: E402
from nas_tutorial.data import default_data_root  # noqa: E402
from nas_tutorial.evaluators import InProcessEvaluator, ProcessPoolEvaluator  # noqa: E402

PAPER_EXPANSIONS = 256 * pnas.num_block_choices(5)  # |S'_5| in the paper: 301,056


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def surrogate_rows(device: torch.device, *, repeats: int, predict_cells: int, full: bool) -> list[dict]:
    """Fit (one beam of 256 five-block cells, 5 epochs timed) and prediction throughput of the paper's surrogates."""
    beam = pnas.random_cells(5, 256, seed=0)
    accuracy = [pnas.toy_fitness(pnas.cell_genotype(c)) for c in beam]
    n = PAPER_EXPANSIONS if full else predict_cells
    parents = pnas.random_cells(4, -(-n // pnas.num_block_choices(5)), seed=1)
    children = [c for p in parents for c in pnas.expand(p)][:n]
    rows = []
    for kind in ("lstm", "mlp"):
        surrogate = pnas.Surrogate(kind, num_blocks=5, seed=0).to(device)  # 5 members of 100 units
        epochs = 5
        surrogate.fit(beam[:64], accuracy[:64], epochs=1)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            surrogate.fit(beam, accuracy, epochs=epochs)
            sync(device)
            times.append(time.perf_counter() - start)
        fit_s = statistics.median(times)
        surrogate.predict(children[:1024])  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            surrogate.predict(children)
            sync(device)
            times.append(time.perf_counter() - start)
        predict_s = statistics.median(times)
        rows.append({"device": device.type, "kind": kind, "fit_cells_per_s": len(beam) * epochs / fit_s,
                     "fit_50_epochs_s": fit_s * 50 / epochs, "predicted": len(children),
                     "predict_cells_per_s": len(children) / predict_s,
                     "paper_expansion_s": PAPER_EXPANSIONS * predict_s / len(children)})
    return rows


def distinct_beam(size: int, seed: int = 0) -> list:
    cells = []
    for cell in pnas.random_cells(2, 10 * size, seed=seed):
        if cell not in cells:
            cells.append(cell)
        if len(cells) == size:
            break
    return [pnas.cell_genotype(c) for c in cells]


def training_rows(data_root: str, *, beam: int, workers: int, repeats: int, ray: bool) -> dict:
    fitness = pnas.training_fitness(data_root, cells_per_stack=1, channels=8, epochs=1, train_size=800, image_size=16,
                                    batch_size=32, lr=0.05)
    everything = distinct_beam(beam + 2)
    warmup, population = everything[:2], everything[2:]
    threads = torch.get_num_threads()
    backends = {f"in-process, {threads} torch thread(s)": lambda: InProcessEvaluator(fitness),
                f"process pool, {workers} workers x 1 thread": lambda: ProcessPoolEvaluator(fitness, workers=workers)}
    if ray:
        from nas_tutorial.evaluators import RayEvaluator

        backends[f"Ray (local, num_cpus={workers})"] = lambda: RayEvaluator(fitness, num_cpus=workers)
    evaluators, rows = {}, {}
    try:
        for name, make in backends.items():
            start = time.perf_counter()
            evaluators[name] = make()
            evaluators[name].evaluate(warmup)
            rows[name] = {"startup_s": time.perf_counter() - start, "times": []}
        for _ in range(repeats):
            for name, evaluator in evaluators.items():
                start = time.perf_counter()
                results = evaluator.evaluate(population)
                rows[name]["times"].append(time.perf_counter() - start)
                failed = [r for r in results if not r.ok]
                if failed:
                    raise RuntimeError(f"{name}: {len(failed)} trainings failed, first: {failed[0].error}")
    finally:
        for evaluator in evaluators.values():
            evaluator.close()
    for row in rows.values():
        row["best_s"], row["median_s"] = min(row["times"]), float(np.median(row["times"]))
        row["per_minute_best"] = 60 * len(population) / row["best_s"]
        row["per_minute_median"] = 60 * len(population) / row["median_s"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--predict-cells", type=int, default=20_000)
    parser.add_argument("--full", action="store_true", help="predict the paper's whole b = 5 expansion set")
    parser.add_argument("--beam", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--data-root", default=str(default_data_root()))
    parser.add_argument("--ray", action="store_true")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    load = os.getloadavg()[0]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = [row for device in devices for row in surrogate_rows(device, repeats=args.repeats,
                                                                  predict_cells=args.predict_cells, full=args.full)]
    training = None if args.skip_training else training_rows(args.data_root, beam=args.beam, workers=args.workers,
                                                              repeats=args.repeats, ray=args.ray)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"CUDA {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}, "
          f"{args.threads} torch thread(s)")
    print(f"load average (1 min) before: {load:.2f}, after: {os.getloadavg()[0]:.2f}; median of {args.repeats}")
    print("No peer implementation of PNAS runs here.\n")
    print("| device | surrogate (5 x 100 units) | fit: cells/s | fit of a 256-cell beam, 50 epochs (s) "
          "| predict: cells/s | the paper's b = 5 expansions, 301,056 cells (s) |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['device']} | {r['kind']} | {r['fit_cells_per_s']:.0f} | {r['fit_50_epochs_s']:.1f} "
              f"| {r['predict_cells_per_s']:.0f} (of {r['predicted']}) | {r['paper_expansion_s']:.1f} |")
    if training is not None:
        print(f"\nbeam of {args.beam} distinct 2-block cells, N = 1, F = 8, 400 + 400 images at 16x16, 1 epoch")
        print(f"| evaluator | start-up + warm-up (s) | beam of {args.beam}: best / median (s) "
              "| networks / minute: best / median |")
        print("|---|---:|---:|---:|")
        for name, row in training.items():
            print(f"| {name} | {row['startup_s']:.1f} | {row['best_s']:.1f} / {row['median_s']:.1f} "
                  f"| {row['per_minute_best']:.0f} / {row['per_minute_median']:.0f} |")


if __name__ == "__main__":
    main()
