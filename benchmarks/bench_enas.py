"""Speed of ENAS's two expensive steps: a shared-weight training step and a controller sample.

For each device (CPU; CUDA when present) it reports, in one run:

* **shared-weight steps/s**: one SGD step of the shared network on a sampled child (forward,
  backward, update; the child sampled by the controller outside the timing) at the notebook's
  fast setting (micro, 8 channels, 3 cells, 2 blocks, 16x16, batch 64), at the authors' micro
  search setting (20 channels, 8 cells, 5 blocks, 32x32, batch 160 on CUDA / 16 on the CPU) and
  for a paper-sized macro child (12 layers of 36 channels, 32x32, batch 128 / 16);
* **controller samples/s**: one sample with its log-probability, and one REINFORCE update over 10
  samples (micro, 5 blocks, 100 units: the paper's controller; and the fast setting's);
* beside them, the peer ``xautodl`` (AutoDL-Projects; ``pip install --no-deps xautodl`` into the
  benchmark's environment only): its ENAS controller (``search_model_enas_utils.Controller``, 6
  edges of the NAS-Bench-201 cell, 2-layer LSTM of 32 units) and its shared network
  (``search_model_enas.TinyNetworkENAS``, 16 channels, 5 cells per stage) on the same image and
  batch sizes. It searches another (smaller) space: read its figures as a reference point, not as a
  like-for-like race.

Every figure is the median of ``--repeats`` timed calls after two warm-up calls, with one torch
thread by default. Usage::

    python benchmarks/bench_enas.py [--threads 1] [--repeats 10] [--no-peer]
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

from nas_tutorial import enas  # noqa: E402
from nas_tutorial import enas_space as S  # noqa: E402


def shared_step(model, arch_fn, x, y):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def run():
        arch = arch_fn()
        loss = F.cross_entropy(model(x, arch), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {args.threads} thread(s), load {os.getloadavg()[0]:.2f}")
    rows = []
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        cpu = device == "cpu"
        g = torch.Generator().manual_seed(0)
        settings = [
            ("fast (micro, 8 ch, 3 cells, B=2, 16px)", S.SharedCellNetwork(8, 10, 3, num_blocks=2), 16, 64,
             lambda: enas.random_arch("micro", num_blocks=2, generator=g)),
            ("micro search (20 ch, 8 cells, B=5, 32px)", S.SharedCellNetwork(20, 10, 8, num_blocks=5), 32,
             16 if cpu else 160, lambda: enas.random_arch("micro", num_blocks=5, generator=g)),
            ("macro child (12 layers, 36 ch, 32px)", S.SharedMacroNetwork(12, 36), 32, 16 if cpu else 128,
             lambda: enas.random_arch("macro", num_layers=12, generator=g)),
        ]
        for name, model, size, batch, arch_fn in settings:
            model = model.to(device).train()
            x = torch.randn(batch, 3, size, size, device=device)
            y = torch.randint(0, 10, (batch,), device=device)
            seconds = timed(shared_step(model, arch_fn, x, y), args.repeats, sync)
            rows.append((device, "ours", f"shared step: {name}", batch, seconds))
        if not args.no_peer:
            try:
                from xautodl.models.cell_operations import SearchSpaceNames
                from xautodl.models.cell_searchs.search_model_enas import TinyNetworkENAS
                from xautodl.models.cell_searchs.search_model_enas_utils import Controller as PeerController
            except ImportError as err:
                print(f"peer not installed ({err}); pip install --no-deps xautodl")
            else:
                ops = SearchSpaceNames["nas-bench-201"]
                for size, batch in ((16, 64), (32, 16 if cpu else 160)):
                    peer = TinyNetworkENAS(16, 5, 4, 10, ops, True, True).to(device).train()
                    x = torch.randn(batch, 3, size, size, device=device)
                    y = torch.randint(0, 10, (batch,), device=device)
                    optimizer = torch.optim.SGD(peer.parameters(), lr=0.01, momentum=0.9)
                    rng = torch.Generator().manual_seed(0)

                    def peer_step():
                        peer.update_arch([int(i) for i in torch.randint(len(ops), (6,), generator=rng)])
                        loss = F.cross_entropy(peer(x)[1], y)
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                    rows.append((device, "xautodl", f"shared step: NAS-Bench-201 net (16 ch, 5 cells/stage, {size}px)",
                                 batch, timed(peer_step, args.repeats, sync)))
    # controllers run on the CPU (one sample at a time)
    for name, controller in (("paper (micro, B=5, 100 units)", enas.MicroController(5, hidden_size=100)),
                             ("fast (micro, B=2, 32 units)", enas.MicroController(2, hidden_size=32, temperature=None)),
                             ("paper (macro, 12 layers, 100 units)", enas.MacroController(12, hidden_size=100))):
        g = torch.Generator().manual_seed(0)
        optimizer = torch.optim.Adam(controller.parameters(), lr=1e-3)

        def update():
            loss = sum(-controller.sample(generator=g).log_prob * 0.1 for _ in range(10))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            sample = timed(lambda: controller.sample(generator=g), args.repeats, lambda: None)
        rows.append(("cpu", "ours", f"controller sample: {name}", 1, sample))
        rows.append(("cpu", "ours", f"controller update (10 samples): {name}", 10,
                     timed(update, args.repeats, lambda: None)))
    if not args.no_peer:
        try:
            from xautodl.models.cell_searchs.search_model_enas_utils import Controller as PeerController
        except ImportError:
            pass
        else:
            peer = PeerController(6, 5)
            optimizer = torch.optim.Adam(peer.parameters(), lr=1e-3)

            def peer_update():
                loss = sum(-peer()[0] * 0.1 for _ in range(10))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                rows.append(("cpu", "xautodl", "controller sample: NAS-Bench-201 (6 edges, 2x32 units)", 1,
                             timed(peer, args.repeats, lambda: None)))
            rows.append(("cpu", "xautodl", "controller update (10 samples): NAS-Bench-201", 10,
                         timed(peer_update, args.repeats, lambda: None)))
    print("| device | implementation | what | batch | ms | per second |")
    print("| --- | --- | --- | --- | --- | --- |")
    for device, impl, what, batch, seconds in rows:
        print(f"| {device} | {impl} | {what} | {batch} | {1000 * seconds:.1f} | {1 / seconds:.1f} |")
    print(f"load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
