"""Speed of a DARTS search iteration: first vs second order, finite-difference vs exact hypergradient.

For each setting (the paper's search network, and the notebook's fast setting) and each device
(CPU, and CUDA when present) it reports:

* images/s of a first-order and of a second-order search iteration (one α step on a validation
  batch plus one weight step on a training batch; images/s counts the training batch), and their
  ratio (the paper: a second-order step does about five forward-backward passes to two);
* peak memory of each (CUDA: ``torch.cuda.max_memory_allocated`` during the timed repeats; CPU:
  peak resident set size of a fresh process above its size before the network was built);
* the time of one architecture gradient by finite differences (Eq. 8) and exactly by double
  backward.

Every measurement runs in its own subprocess, so a CPU peak memory is its own. Inputs are random
tensors of CIFAR shape (speed does not depend on pixel values). Usage::

    python benchmarks/bench_darts.py                      # all settings, CPU and CUDA if present
    python benchmarks/bench_darts.py --settings fast --devices cpu --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

SETTINGS = {
    # name: (channels, layers, image size, batch on CUDA, batch on CPU)
    "paper": (16, 8, 32, 64, 8),  # Liu et al. (2019): 16 channels, 8 cells, batch 64 (CPU: 8, or it takes minutes)
    "fast": (4, 3, 16, 32, 32),  # notebooks/02_darts.py in fast mode
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


MEASURES = ("order1", "order2", "finite_difference", "exact")


def run_one(setting: str, device_name: str, measure: str, repeats: int, threads: int | None) -> dict:
    """Measure one thing (a search iteration of order 1 or 2, or one hypergradient) in this process."""
    import torch
    from torch.nn import functional as F

    from nas_tutorial import darts

    if threads:
        torch.set_num_threads(threads)
    channels, layers, size, batch_cuda, batch_cpu = SETTINGS[setting]
    device = torch.device(device_name)
    batch = batch_cuda if device.type == "cuda" else batch_cpu
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    base_rss = _rss_mb()
    torch.manual_seed(0)
    model = darts.SearchNetwork(channels, 10, layers).to(device).train()
    g = torch.Generator().manual_seed(0)

    def batch_of_images():
        return (torch.randn(batch, 3, size, size, generator=g).to(device),
                torch.randint(0, 10, (batch,), generator=g).to(device))

    train, valid = batch_of_images(), batch_of_images()
    w_optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    weights = model.weight_parameters()

    def iteration(architect):
        architect.step(train, valid)  # Alg. 1, step 1
        loss = F.cross_entropy(model(train[0]), train[1])  # Alg. 1, step 2
        w_optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=weights)
        torch.nn.utils.clip_grad_norm_(weights, 5.0)
        w_optimizer.step()

    if measure in ("order1", "order2"):
        architect = darts.Architect(model, w_optimizer, order=int(measure[-1]))
        fn = lambda: iteration(architect)  # noqa: E731
    else:
        architect = darts.Architect(model, w_optimizer, order=2, method=measure)
        iteration(darts.Architect(model, w_optimizer, order=1))  # one real step: momentum buffers exist
        fn = lambda: architect.hypergradient(train, valid)  # noqa: E731
    fn()  # warm-up
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    seconds = (time.perf_counter() - start) / repeats
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mb() - base_rss
    return {"setting": setting, "device": device_name, "measure": measure, "batch": batch, "channels": channels,
            "layers": layers, "image_size": size, "threads": torch.get_num_threads(), "repeats": repeats,
            "seconds": seconds, "images_per_s": batch / seconds, "peak_mb": peak}


def table(rows: list[dict]) -> str:
    by = {(r["setting"], r["device"], r["measure"]): r for r in rows}
    lines = [
        "| setting | device | batch | 1st order img/s | 2nd order img/s | 2nd / 1st time | peak MB 1st / 2nd "
        "| hypergradient: finite diff. s (MB) | exact s (MB) | exact / FD time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for setting, device in dict.fromkeys((r["setting"], r["device"]) for r in rows):
        o1, o2, fd, ex = (by[(setting, device, m)] for m in MEASURES)
        lines.append(
            f"| {setting} ({o1['channels']} ch, {o1['layers']} cells, {o1['image_size']}px) | {device} "
            f"({o1['threads']} thr) | {o1['batch']} | {o1['images_per_s']:.1f} | {o2['images_per_s']:.1f} "
            f"| {o2['seconds'] / o1['seconds']:.2f}x | {o1['peak_mb']:.0f} / {o2['peak_mb']:.0f} "
            f"| {fd['seconds']:.2f} ({fd['peak_mb']:.0f}) | {ex['seconds']:.2f} ({ex['peak_mb']:.0f}) "
            f"| {ex['seconds'] / fd['seconds']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="paper,fast", help="comma-separated: paper, fast")
    parser.add_argument("--devices", default=None,
                        help="comma-separated: cpu, cuda (default: cpu, plus cuda if present)")
    parser.add_argument("--repeats", type=int, default=2, help="timed iterations after one warm-up")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        setting, device, measure = args.one.split(":")
        print(json.dumps(run_one(setting, device, measure, args.repeats, args.threads)))
        return
    import torch

    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for setting in args.settings.split(","):
        for device in devices:
            for measure in MEASURES:
                cmd = [sys.executable, __file__, "--one", f"{setting}:{device}:{measure}", "--repeats",
                       str(args.repeats)]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                result = subprocess.run(cmd, capture_output=True, text=True, check=True)
                rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), file=sys.stderr)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads "
          f"by default, {gpu}; torch {torch.__version__}")
    print(table(rows))


if __name__ == "__main__":
    main()
