"""Speed of FBNet's expensive step: a forward and backward pass of the stochastic super net.

For each device (CPU; CUDA when present) it reports, in one run, steps per second of:

* **ours** (:class:`nas_tutorial.fbnet.FBNetSupernet`), one training step each: a Gumbel-softmax
  sample, the forward pass mixing the candidates by it, the latency-aware loss with the sample's
  expected latency, the backward pass and an optimiser step:

  - *w step, soft mask* (the paper's: all nine candidates of every layer run), gradients of the weights;
  - *theta step, soft mask*: the same pass, gradient of θ only (Adam);
  - *w step, hard mask* (straight-through sample, no gradient to θ): one block per layer runs;

  at the notebook's fast setting (``FBNetConfig.fast()``: 7 layers, a quarter of Table 1's widths,
  16x16 images, batch 32) and at the CIFAR search setting (``FBNetConfig.cifar()``: Table 1's 22
  layers and widths, 32x32, batch 8 on the CPU / 64 on CUDA);
* beside them, the peer ``xautodl`` (AutoDL-Projects; ``pip install --no-deps xautodl`` into the
  benchmark's environment only): ``NASNetworkGDAS``, Gumbel-softmax sampling in the DARTS cell
  space (straight-through, one operation per edge runs), one SGD step on all its parameters, at the
  same image and batch sizes: 8 channels and 6 cells beside the fast setting, 16 channels and 6
  cells beside the CIFAR one. It searches another space: read its figures as a reference point,
  not as a like-for-like race (the table gives each network's parameter count).

The latency table is the multiply-add stand-in (``latency="macs"``), so nothing is timed but the
steps. Every figure is the median of ``--repeats`` timed steps after two warm-up steps, with one
torch thread by default. Usage::

    python benchmarks/bench_fbnet.py [--threads 1] [--repeats 5] [--no-peer] [--settings fast cifar]
"""

# ruff: noqa: B023  (each closure is timed inside the loop iteration that defines it)
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import timed  # noqa: E402  (benchmarks/timing.py, beside this script)

from nas_tutorial import fbnet  # noqa: E402
from nas_tutorial.utils import count_parameters  # noqa: E402


def supernet_step(model: fbnet.FBNetSupernet, table: fbnet.LatencyTable, config: fbnet.FBNetConfig, x, y, *,
                  mode: str):
    """One step of ours: ``mode`` is ``"w_soft"``, ``"theta_soft"`` or ``"w_hard"``."""
    hard, train_theta = mode == "w_hard", mode == "theta_soft"
    params = model.arch_parameters() if train_theta else model.weight_parameters()
    optimizer = (torch.optim.Adam(params, lr=config.theta_lr) if train_theta
                 else torch.optim.SGD(params, lr=config.lr, momentum=config.momentum))
    lat_table = table.tensor(x.device)
    generator = torch.Generator().manual_seed(0)

    def run():
        noise = fbnet.gumbel_noise(model.theta.shape, generator=generator).to(x.device)
        with torch.set_grad_enabled(train_theta):
            m = fbnet.gumbel_softmax(model.theta, config.tau0, noise, hard=hard)
        ce = F.cross_entropy(model(x, m), y)
        lat = (table.fixed + fbnet.expected_latency(m, lat_table)) / config.latency_unit
        loss = fbnet.fbnet_loss(ce, lat, alpha=config.alpha, beta=config.beta, check_latency=False)
        optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=params)
        optimizer.step()
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--settings", nargs="+", default=["fast", "cifar"], choices=["fast", "cifar"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {args.threads} thread(s), load {os.getloadavg()[0]:.2f}")
    peer_cls = None
    if not args.no_peer:
        try:
            from xautodl.models.cell_operations import SearchSpaceNames
            from xautodl.models.cell_searchs.search_model_gdas_nasnet import NASNetworkGDAS as peer_cls
        except ImportError as err:
            print(f"peer not installed ({err}); pip install --no-deps xautodl")
    rows = []
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        cpu = device == "cpu"
        settings = {"fast": (fbnet.FBNetConfig.fast(latency="macs"), 32, 8),
                    "cifar": (fbnet.FBNetConfig.cifar(latency="macs", latency_unit=0.01), 8 if cpu else 64, 16)}
        for key in args.settings:
            config, batch, peer_channels = settings[key]
            macro = config.macro()
            torch.manual_seed(0)
            model = fbnet.FBNetSupernet(macro, config.candidates).to(device).train()
            table = fbnet.macs_latency_table(macro, config.candidates)
            x = torch.randn(batch, 3, config.image_size, config.image_size, device=device)
            y = torch.randint(0, config.num_classes, (batch,), device=device)
            what = (f"{key}: {macro.num_layers} layers x 9 blocks, {config.image_size}px, "
                    f"{count_parameters(model) / 1e6:.2f}M params")
            for mode, label in (("w_soft", "w step, soft mask"), ("theta_soft", "theta step, soft mask"),
                                ("w_hard", "w step, hard mask")):
                seconds = timed(supernet_step(model, table, config, x, y, mode=mode), args.repeats, sync)
                rows.append((device, "ours", f"{label} ({what})", batch, seconds))
            if peer_cls is not None:
                torch.manual_seed(0)
                peer = peer_cls(peer_channels, 2, 4, 4, 3, config.num_classes, SearchSpaceNames["darts"], False,
                                True).to(device).train()
                peer.set_tau(config.tau0)
                optimizer = torch.optim.SGD(peer.parameters(), lr=0.025, momentum=0.9)

                def peer_step():
                    loss = F.cross_entropy(peer(x)[1], y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                rows.append((device, "xautodl", f"GDAS step ({peer_channels} ch, 6 cells, {config.image_size}px, "
                                                f"{count_parameters(peer) / 1e6:.2f}M params)", batch,
                             timed(peer_step, args.repeats, sync)))
    print("| device | implementation | what | batch | ms | steps per second |")
    print("| --- | --- | --- | --- | --- | --- |")
    for device, impl, what, batch, seconds in rows:
        print(f"| {device} | {impl} | {what} | {batch} | {1000 * seconds:.1f} | {1 / seconds:.2f} |")
    print(f"load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
