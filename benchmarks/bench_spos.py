"""Speed of SPOS's two expensive steps: supernet training steps and candidate evaluations.

For each device (CPU; CUDA when present) it reports, in one run:

* **supernet step** (ours, :func:`nas_tutorial.spos.train_step`): a path sampled uniformly (block and
  middle width of every layer; in the config's FLOPs range when it has one), the forward pass through
  that single path of :class:`~nas_tutorial.spos.SPOSSupernet` (sliced weights), label-smoothed
  cross-entropy, the backward pass and a :class:`~nas_tutorial.spos.PathSGD` step on the path's slices;
  at the notebook's fast setting (``SPOSConfig.fast()``: 4 layers, 16x16, batch 64) and at the CIFAR
  setting (``SPOSConfig.cifar()``: the paper's 20 layers and widths at 32x32; batch 32 on the CPU,
  the config's 256 on CUDA);
* **candidate evaluation** (ours, :func:`nas_tutorial.spos.evaluate_path`, what every candidate of the
  evolutionary search costs): weight inheritance (``SPOSSupernet.extract``), batch-norm recalibration on
  the config's recalibration batches (fast: 4 x 64 images; CIFAR: 100 x 128 on CUDA, 4 x 128 on the
  CPU), then evaluation on validation images (fast: 1,000; CIFAR: 10,000 on CUDA, 500 on the CPU);
  reported as candidates per second, with the share of the recalibration;
* beside the supernet step, the peer ``xautodl`` (AutoDL-Projects; ``pip install --no-deps xautodl``
  into the benchmark's environment only): ``TinyNetworkRANDOM``, the random-sampling single-path supernet
  of Li & Talwalkar (UAI 2019) in the NAS-Bench-201 cell space: a path drawn uniformly, forward,
  backward, an SGD step; at the same image and batch sizes (8 channels and 2 cells per stage beside the
  fast setting, 16 and 5 beside the CIFAR one). It searches another space: read its figures as a
  reference point, not as a like-for-like race (the table gives each network's parameter count).
  It has no candidate evaluation with recalibration to compare.

Inputs are random tensors of the right shapes (no data set is read). Every figure is the median of
``--repeats`` timed calls after two warm-up calls, with one torch thread by default. Usage::

    python benchmarks/bench_spos.py [--threads 1] [--repeats 5] [--no-peer] [--settings fast cifar]
"""

# ruff: noqa: B023  (each closure is timed inside the loop iteration that defines it)
from __future__ import annotations

import argparse
import os
import platform
import random
import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import timed  # noqa: E402  (benchmarks/timing.py, beside this script)

from nas_tutorial import spos  # noqa: E402
from nas_tutorial.utils import count_parameters  # noqa: E402


def settings(device: str) -> dict:
    """Per setting: the config, the training batch, recalibration (batches, batch size), validation images."""
    cpu = device == "cpu"
    return {"fast": (spos.SPOSConfig.fast(), 64, (4, 64), 1000),
            "cifar": (spos.SPOSConfig.cifar(), 32 if cpu else 256, (4, 128) if cpu else (100, 128),
                      500 if cpu else 10_000)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--settings", nargs="+", default=["fast", "cifar"], choices=["fast", "cifar"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs{gpu}, "
          f"torch {torch.__version__}, {args.threads} thread(s), load {os.getloadavg()[0]:.2f}")
    peer_cls = None
    if not args.no_peer:
        try:
            from xautodl.models.cell_operations import SearchSpaceNames
            from xautodl.models.cell_searchs.search_model_random import TinyNetworkRANDOM as peer_cls
        except ImportError as err:
            print(f"peer not installed ({err}); pip install --no-deps xautodl")
    steps, evaluations = [], []
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        for key in args.settings:
            config, batch, (recal_batches, recal_batch), n_valid = settings(device)[key]
            space = config.space()
            costs = spos.cost_table(space)
            torch.manual_seed(0)
            supernet = spos.SPOSSupernet(space, dropout=config.dropout).to(device)
            optimizer = spos.PathSGD(supernet.parameters(), lr=config.lr, momentum=config.momentum,
                                     weight_decay=config.weight_decay)
            size = config.image_size
            x = torch.randn(batch, 3, size, size, device=device)
            y = torch.randint(0, config.num_classes, (batch,), device=device)
            rng = np.random.default_rng(0)
            sampling = "uniform" if config.train_flops_range is None else (
                f"{config.train_flops_range[0] / 1e6:.0f}-{config.train_flops_range[1] / 1e6:.0f} MFLOPs")

            def step():
                arch = spos.sample_path(space, rng, flops_range=config.train_flops_range,
                                        bins=config.train_flops_bins, costs=costs)
                spos.train_step(supernet, optimizer, x, y, arch, label_smoothing=config.label_smoothing)

            what = (f"{key}: {space.num_layers} layers x {len(space.blocks)} blocks x {len(space.widths)} widths, "
                    f"{size}px, {count_parameters(supernet) / 1e6:.2f}M params, {sampling}")
            steps.append((device, "ours", what, batch, timed(step, args.repeats, sync)))
            if peer_cls is not None:
                channels, cells = (8, 2) if key == "fast" else (16, 5)
                torch.manual_seed(0)
                random.seed(0)
                peer = peer_cls(channels, cells, 4, config.num_classes, SearchSpaceNames["nas-bench-201"], False,
                                True).to(device).train()
                peer_opt = torch.optim.SGD(peer.parameters(), lr=0.025, momentum=0.9, weight_decay=5e-4)

                def peer_step():
                    peer.random_genotype(True)
                    loss = F.cross_entropy(peer(x)[1], y)
                    peer_opt.zero_grad(set_to_none=True)
                    loss.backward()
                    peer_opt.step()
                steps.append((device, "xautodl", f"TinyNetworkRANDOM step ({channels} ch, {3 * cells + 2} cells, "
                                                 f"{size}px, {count_parameters(peer) / 1e6:.2f}M params)", batch,
                              timed(peer_step, args.repeats, sync)))
            # one candidate of the search: inherit, recalibrate, evaluate
            recal = torch.randn(recal_batches * recal_batch, 3, size, size, device=device)
            valid_x = torch.randn(n_valid, 3, size, size, device=device)
            valid_y = torch.randint(0, config.num_classes, (n_valid,), device=device)
            limit = (costs.extremes()[0], config.flops_limit)
            arch = spos.sample_path(space, np.random.default_rng(1), flops_range=limit, costs=costs)

            def candidate():
                spos.evaluate_path(supernet, arch, valid_x, valid_y, recalibration_images=recal,
                                   recalibration_batch_size=recal_batch, batch_size=config.eval_batch_size)

            def recalibrate_only():
                spos.recalibrate_bn(supernet.extract(arch), recal, batch_size=recal_batch)

            seconds = timed(candidate, args.repeats, sync)
            share = timed(recalibrate_only, args.repeats, sync) / seconds
            evaluations.append((device, key, f"{recal_batches} x {recal_batch}", n_valid, seconds, share))
    print("\nSupernet training: one sampled path per step\n")
    print("| device | implementation | what | batch | ms | steps per second |")
    print("| --- | --- | --- | --- | --- | --- |")
    for device, impl, what, batch, seconds in steps:
        print(f"| {device} | {impl} | {what} | {batch} | {1000 * seconds:.1f} | {1 / seconds:.2f} |")
    print("\nCandidate evaluation: inherit, recalibrate batch norm, evaluate\n")
    print("| device | setting | recalibration images | validation images | ms | candidates per second | "
          "recalibration share |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for device, key, recal, n_valid, seconds, share in evaluations:
        print(f"| {device} | {key} | {recal} | {n_valid} | {1000 * seconds:.1f} | {1 / seconds:.2f} | {share:.0%} |")
    print(f"\nload at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
