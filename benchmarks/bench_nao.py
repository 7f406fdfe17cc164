r"""NAO: encoder-predictor-decoder training steps per second, and architectures generated per second.

For each device (CPU; CUDA when present) and each model size it reports, in one run:

* **training**: steps per second of Eq. 1 (forward, backward, Adam, gradient clipping) on batches
  of 100 architectures with the branch-swap augmentation (``nao.train_nao``), and from it the time
  of one iteration's training at the size's setting (paper: 1000 epochs over 600 architectures,
  6,000 steps; fast: 100 epochs over 60, 300 steps);
* **inference**: architectures per second of one generation round, the ascent (Eq. 2: encoder,
  :math:`\partial f / \partial h`, the moved states) and the greedy constrained decoding of all
  :math:`T` tokens, from the top 100 (``NAO.generate``, one :math:`\\eta`), and the decoding alone.

Sizes: **paper** (``NAOConfig.paper()``: B = 5, 40 tokens, embedding 32 (the paper's text; the authors'
``NAO_V1`` code: 48), LSTMs of 96, MLP 3 x
200) and **fast** (``NAOConfig.fast()``: B = 3, embedding 16, LSTMs of 32, MLP 2 x 32). Random
architectures and targets; one warm-up, then the median of ``--repeats`` timed runs. No peer
implementation runs here (the authors' code is CUDA-only and not a package). Prints Markdown
tables for ``benchmarks/README.md``. Usage::

    python benchmarks/bench_nao.py [--threads 1] [--repeats 3] [--steps 20] [--sizes paper,fast] [--cpu-only]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas_tutorial import nao  # noqa: E402
from nas_tutorial.enas import random_arch  # noqa: E402

SIZES = {"paper": nao.NAOConfig.paper(), "fast": nao.NAOConfig.fast()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs, after one warm-up."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rows_for(size: str, device: torch.device, *, steps: int, repeats: int) -> dict:
    c = SIZES[size]
    model = nao.build_model(c).to(device)
    g = torch.Generator().manual_seed(0)
    archs = [random_arch("micro", num_blocks=c.num_blocks, generator=g) for _ in range(steps * c.batch_size)]
    tokens = model.tokens(archs)
    targets = torch.rand(len(archs), generator=g)

    def train():  # `steps` Adam steps: one epoch over steps x batch_size architectures
        nao.train_nao(model, tokens, targets, epochs=1, batch_size=c.batch_size, lr=c.lr,
                      weight_decay=c.weight_decay, grad_clip=c.grad_clip, trade_off=c.trade_off, swap=True)

    train_s = timed(train, device, repeats)
    parents = tokens[:c.top_k]
    generate_s = timed(lambda: model.generate(parents, 1.0), device, repeats)
    with torch.no_grad():
        h = model.encoder(parents)
    decode_s = timed(lambda: model.decode(h), device, repeats)
    iteration_steps = c.epochs * -(-c.seed_archs // c.batch_size)  # epochs x batches of the seed set
    return {"size": size, "device": device.type, "params": sum(p.numel() for p in model.parameters()),
            "steps_per_s": steps / train_s, "iteration_s": iteration_steps * train_s / steps,
            "batch": c.batch_size, "parents": len(parents), "generate_per_s": len(parents) / generate_s,
            "decode_per_s": len(parents) / decode_s, "length": c.vocab().length}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed run")
    parser.add_argument("--sizes", default="paper,fast")
    parser.add_argument("--cpu-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() and not args.cpu_only
                                       else [])
    rows = [rows_for(size, device, steps=args.steps, repeats=args.repeats)
            for device in devices for size in args.sizes.split(",")]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"CUDA {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}, "
          f"{args.threads} torch thread(s)")
    print(f"load average (1 min) before: {load:.2f}, after: {os.getloadavg()[0]:.2f}; median of {args.repeats}")
    print("No peer implementation of NAO runs here.\n")
    print("| device | size | parameters | training steps/s (batch) | one iteration's training (s) "
          "| ascent + decode: archs/s (top-K) | decode alone: archs/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['device']} | {r['size']} | {r['params']:,} | {r['steps_per_s']:.1f} ({r['batch']}) "
              f"| {r['iteration_s']:.0f} | {r['generate_per_s']:.0f} ({r['parents']}) | {r['decode_per_s']:.0f} |")


if __name__ == "__main__":
    main()
