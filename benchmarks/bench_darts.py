"""Speed of a DARTS search iteration: the implementation before the fast path, the readable path, the fast path.

A search iteration is one α step on a validation batch (``Architect.step``) and one weight step on
a training batch, as in Alg. 1. For each setting and device it reports, side by side in one run:

* seconds per iteration, first and second order, for each implementation: ``before`` (the package
  at ``--baseline``, the last commit before the fast path, read with ``git archive``), ``plain``
  (this package with ``SearchNetwork(fused=False)``: the readable loop over ``MixedOp`` s) and
  ``fused`` (this package, default: ``SearchCell.forward_fused``); with ``--authors-code DIR``
  also the authors' code (quark0/darts, ``cnn/`` folder, run as it is with ``.cuda()`` made a no-op);
* images/s (the training batch) and peak memory of each (CUDA: ``torch.cuda.max_memory_allocated``;
  CPU: peak resident set size of the process above its size before the network was built);
* for the fast path, the time of one architecture gradient by finite differences (Eq. 8) and
  exactly by double backward;
* with ``--peer``, one forward and backward of the supernet at 8 channels, 6 cells, batch 16,
  16x16, beside the DARTS supernet of the ``xautodl`` package (AutoDL-Projects; install it with
  ``pip install --no-deps xautodl`` into the benchmark's environment, never into the package's);
* with ``--profile`` instead, where the time of one first-order iteration goes (self time of the
  operators by kind, and the costliest operators).

Every measurement runs in its own subprocess (so a CPU peak is its own) on random inputs of CIFAR
shape, times ``--repeats`` iterations after one warm-up and takes their median; the measurements
are repeated in ``--rounds`` interleaved rounds and the best round is reported. The 1-minute load
average is recorded around every measurement (other jobs share small machines). Usage::

    python benchmarks/bench_darts.py                       # paper, fast and small settings; CPU and CUDA if present
    python benchmarks/bench_darts.py --settings small --threads 1 --peer --authors-code ../darts/cnn
    python benchmarks/bench_darts.py --devices cuda --compile reduce-overhead   # torch.compile + CUDA graphs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the last commit before the fast path (SearchCell.forward_fused, ops.apply_many): what "before" measures
BASELINE = "0bac1c2"

SETTINGS = {
    # name: (channels, layers, image size, batch on CUDA, batch on CPU)
    "paper": (16, 8, 32, 64, 8),  # Liu et al. (2019): 16 channels, 8 cells, batch 64 (CPU: 8, or it takes minutes)
    "fast": (4, 3, 16, 32, 32),  # notebooks/02_darts.py in fast mode
    "small": (8, 5, 16, 16, 16),  # the side-by-side setting of the speed issue: 8 channels, 5 cells, batch 16
    "peer": (8, 6, 16, 16, 16),  # 6 cells = xautodl's NASNetworkDARTS with N = 2 (reductions at cells 2 and 4)
}
ITERATION = ("order1", "order2")
HYPERGRADIENT = ("finite_difference", "exact")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


# -- one measurement, in its own process -------------------------------------------------------------
def _import_darts(impl: str, before_path: str | None):
    if impl == "before":
        sys.path.insert(0, before_path)
        from nas_tutorial_before import darts  # the package at --baseline, extracted by the parent process
    else:
        from nas_tutorial import darts
    return darts


def _ours(impl, measure, model, darts, train, valid, weights, w_optimizer):
    """The step to time, for nas_tutorial (before / plain / fused)."""
    import torch
    from torch.nn import functional as F

    def weight_step():  # Alg. 1, step 2 (DartsSearch.update_weights)
        loss = F.cross_entropy(model(train[0]), train[1])
        w_optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=weights)
        torch.nn.utils.clip_grad_norm_(weights, 5.0)
        w_optimizer.step()

    if measure == "forward_backward":
        def step():
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(train[0]), train[1]).backward()
        return step
    if measure in ITERATION:
        architect = darts.Architect(model, w_optimizer, order=int(measure[-1]))
        return lambda: (architect.step(train, valid), weight_step())  # Alg. 1, step 1 then step 2
    architect = darts.Architect(model, w_optimizer, order=2, method=measure)
    darts.Architect(model, w_optimizer, order=1).step(train, valid)
    weight_step()  # one real step: momentum buffers exist
    return lambda: architect.hypergradient(train, valid)


def _authors(measure, authors_code, channels, layers, train, valid):
    """The step to time, for the authors' code (quark0/darts cnn/), with ``.cuda()`` a no-op."""
    import types

    import torch
    from torch import nn

    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    nn.Module.cuda = lambda self, *args, **kwargs: self
    sys.path.insert(0, authors_code)
    import architect as authors_architect  # noqa: E402  (the authors' modules, from --authors-code)
    import model_search  # noqa: E402

    criterion = nn.CrossEntropyLoss()
    model = model_search.Network(channels, 10, layers, criterion)
    optimizer = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    if measure == "forward_backward":
        def step():
            model.zero_grad(set_to_none=True)
            criterion(model(train[0]), train[1]).backward()
        return model, step
    args = types.SimpleNamespace(momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-4, arch_weight_decay=1e-3)
    architect = authors_architect.Architect(model, args)

    def step():  # train_search.py: architect.step, then the weight step
        architect.step(train[0], train[1], valid[0], valid[1], 0.025, optimizer, unrolled=measure == "order2")
        optimizer.zero_grad()
        criterion(model(train[0]), train[1]).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    return model, step


def _xautodl(channels, layers, train):
    """One forward and backward of xautodl's DARTS supernet (3N cells, N = layers // 3)."""
    from torch.nn import functional as F
    from xautodl.models.cell_operations import SearchSpaceNames
    from xautodl.models.cell_searchs.search_model_darts_nasnet import NASNetworkDARTS

    model = NASNetworkDARTS(channels, layers // 3, 4, 4, 3, 10, SearchSpaceNames["darts"], False, True)

    def step():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(train[0])[1], train[1]).backward()

    return model, step


def run_one(setting: str, device_name: str, impl: str, measure: str, repeats: int, threads: int | None,
            before_path: str | None, authors_code: str | None, compile_mode: str | None,
            batch: int | None = None, profile: bool = False) -> dict:
    """Measure one thing in this process: a search iteration (order 1 or 2), one hypergradient, or one
    forward and backward of the supernet."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    load_before = _load()
    channels, layers, size, batch_cuda, batch_cpu = SETTINGS[setting]
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    batch = batch or (batch_cuda if cuda else batch_cpu)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    base_rss = _rss_mb()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    def batch_of_images():
        return (torch.randn(batch, 3, size, size, generator=g).to(device),
                torch.randint(0, 10, (batch,), generator=g).to(device))

    train, valid = batch_of_images(), batch_of_images()
    if impl == "authors":
        model, fn = _authors(measure, authors_code, channels, layers, train, valid)
        model.to(device).train()
    elif impl == "xautodl":
        model, fn = _xautodl(channels, layers, train)
        model.to(device).train()
    else:
        darts = _import_darts(impl, before_path)
        kwargs = {} if impl == "before" else {"fused": impl == "fused"}
        model = darts.SearchNetwork(channels, 10, layers, **kwargs).to(device).train()
        if compile_mode:
            model.compile(mode=None if compile_mode == "default" else compile_mode)
        weights = model.weight_parameters()
        w_optimizer = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
        fn = _ours(impl, measure, model, darts, train, valid, weights, w_optimizer)
    fn()  # warm-up
    sync()
    if profile:  # where the time of one more step goes: self time of the operators, summed by kind
        from torch.profiler import profile as profiler

        start = time.perf_counter()
        fn()
        sync()
        wall = time.perf_counter() - start
        with profiler() as prof:
            fn()
        return {"setting": setting, "device": device_name, "impl": impl, "measure": measure, "batch": batch,
                "threads": torch.get_num_threads(), "load": [load_before, _load()], "wall_s": wall,
                "ops": [(e.key, e.self_cpu_time_total / 1e3, e.count) for e in prof.key_averages()]}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mb() - base_rss
    return {"setting": setting, "device": device_name, "impl": impl, "measure": measure, "batch": batch,
            "channels": channels, "layers": layers, "image_size": size, "threads": torch.get_num_threads(),
            "repeats": repeats, "seconds": seconds, "times": times, "images_per_s": batch / seconds,
            "peak_mb": peak, "load": [load_before, _load()], "compile": compile_mode}


# -- the run: interleaved rounds of subprocesses, then tables -------------------------------------
def extract_baseline(revision: str, into: Path) -> str | None:
    """``git archive`` the package at ``revision`` into ``into/nas_tutorial_before``; None when git cannot."""
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", revision, "nas_tutorial"],
                                 capture_output=True)
    except FileNotFoundError:  # no git on this machine
        archive = subprocess.CompletedProcess([], 1, b"", b"git not found")
    if archive.returncode != 0:
        print(f"no 'before' measurements: git archive {revision} failed: "
              f"{archive.stderr.decode().strip()[:200]}", file=sys.stderr)
        return None
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    (into / "nas_tutorial").rename(into / "nas_tutorial_before")
    return str(into)


def plan(args, devices: list[str], before_path: str | None) -> list[tuple[str, str, str, str, int]]:
    """Every (setting, device, impl, measure, threads) to measure in one round."""
    impls = [i for i in args.impls.split(",") if i != "before" or before_path]
    jobs = []
    for threads in args.threads:
        for setting in args.settings.split(","):
            for device in devices:
                for impl in impls + (["authors"] if args.authors_code and device == "cpu" else []):
                    jobs += [(setting, device, impl, m, threads) for m in ITERATION]
                if args.hypergradient and "fused" in impls:
                    jobs += [(setting, device, "fused", m, threads) for m in HYPERGRADIENT]
        if args.peer:
            for device in devices:
                for impl in ["xautodl"] + impls + (["authors"] if args.authors_code and device == "cpu" else []):
                    jobs.append(("peer", device, impl, "forward_backward", threads))
    return jobs


def best_of_rounds(rows: list[dict]) -> dict:
    """Per (setting, device, threads, impl, measure): the round with the smallest median."""
    best = {}
    for r in rows:
        key = (r["setting"], r["device"], r["threads"], r["impl"], r["measure"])
        if key not in best or r["seconds"] < best[key]["seconds"]:
            best[key] = r
    return best


def speed_table(best: dict) -> str:
    lines = ["| setting | device | batch | implementation | 1st order s (img/s) | 2nd order s (img/s) "
             "| speed-up over before: 1st / 2nd | 2nd / 1st time | peak MB 1st / 2nd | load |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    groups = dict.fromkeys((k[0], k[1], k[2]) for k in best if k[4] in ITERATION)
    for setting, device, threads in groups:
        impls = dict.fromkeys(k[3] for k in best if k[:3] == (setting, device, threads) and k[4] in ITERATION)
        for impl in impls:
            o1, o2 = (best.get((setting, device, threads, impl, m)) for m in ITERATION)
            if o1 is None or o2 is None:
                continue
            before = [best.get((setting, device, threads, "before", m)) for m in ITERATION]
            speedup = (" / ".join(f"{b['seconds'] / o['seconds']:.2f}x" for b, o in zip(before, (o1, o2)))
                       if all(before) else "-")
            load = [x for r in (o1, o2) for x in r["load"]]
            lines.append(
                f"| {setting} ({o1['channels']} ch, {o1['layers']} cells, {o1['image_size']}px) | {device} "
                f"({threads} thr) | {o1['batch']} | {impl} | {o1['seconds']:.3f} ({o1['images_per_s']:.1f}) "
                f"| {o2['seconds']:.3f} ({o2['images_per_s']:.1f}) | {speedup} | {o2['seconds'] / o1['seconds']:.2f}x "
                f"| {o1['peak_mb']:.0f} / {o2['peak_mb']:.0f} | {min(load):.1f}-{max(load):.1f} |")
    return "\n".join(lines)


def hypergradient_table(best: dict) -> str:
    lines = ["| setting | device | batch | finite difference s (MB) | exact s (MB) | exact / FD time |",
             "| --- | --- | --- | --- | --- | --- |"]
    for (setting, device, threads, impl, measure), fd in best.items():
        ex = best.get((setting, device, threads, impl, "exact"))
        if measure != "finite_difference" or ex is None:
            continue
        lines.append(f"| {setting} | {device} ({threads} thr) | {fd['batch']} | {fd['seconds']:.3f} "
                     f"({fd['peak_mb']:.0f}) | {ex['seconds']:.3f} ({ex['peak_mb']:.0f}) "
                     f"| {ex['seconds'] / fd['seconds']:.2f}x |")
    return "\n".join(lines)


def peer_table(best: dict, rows: list[dict]) -> str:
    lines = ["| supernet, one forward + backward | device | batch | best round s | every round s | load |",
             "| --- | --- | --- | --- | --- | --- |"]
    for (setting, device, threads, impl, measure), r in best.items():
        if measure != "forward_backward":
            continue
        rounds = [x["seconds"] for x in rows if (x["setting"], x["device"], x["threads"], x["impl"], x["measure"])
                  == (setting, device, threads, impl, measure)]
        lines.append(f"| {impl} ({r['channels']} ch, {r['layers']} cells, {r['image_size']}px) | {device} "
                     f"({threads} thr) | {r['batch']} | {r['seconds']:.3f} | {', '.join(f'{s:.3f}' for s in rounds)} "
                     f"| {min(r['load']):.1f}-{max(r['load']):.1f} |")
    return "\n".join(lines)


#: kinds of operators for the profile table: (kind, substrings of operator names); the first match wins
KINDS = [
    ("convolution backward (PyTorch's kernels)", ("convolution_backward",)),
    ("convolutions (forward; the fast path's input gradients too)", ("convolution", "conv2d")),
    ("matrix products (1x1 convolutions, depthwise weight gradients)", ("bmm", "aten::mm", "matmul", "addmm")),
    ("batch norm", ("batch_norm",)),
    ("pooling", ("pool",)),
    ("copies, concatenation, padding", ("copy_", "aten::cat", "pad", "clone", "contiguous", "repeat", "stack")),
    ("element-wise ops and reductions", ("mul", "add", "sub", "div", "relu", "clamp", "threshold", "sum", "fill",
                                         "neg", "where", "exp", "log", "softmax", "mean", "norm", "sqrt", "pow",
                                         "flip", "zero", "lerp", "foreach", "nll", "max", "sort", "eq")),
]


def profile_table(rows: list[dict], top: int = 8) -> str:
    """Self CPU time per kind of operator in one step, each implementation side by side; then the
    operators that take the most time, with their calls and mean time per call."""
    other = "autograd nodes, views, allocation, other"
    totals = []
    for r in rows:
        kinds = {}
        for name, ms, _ in r["ops"]:
            kind = next((k for k, keys in KINDS if any(key in name for key in keys)), other)
            kinds[kind] = kinds.get(kind, 0.0) + ms
        totals.append(kinds)
    header = " | ".join(f"{r['impl']}: {r['setting']}, batch {r['batch']}, {r['measure']}" for r in rows)
    lines = [f"| self CPU time of one step, ms | {header} |", "| --- |" + " --- |" * len(rows)]
    for kind in [k for k, _ in KINDS] + [other]:
        lines.append(f"| {kind} | " + " | ".join(f"{t.get(kind, 0.0):.0f}" for t in totals) + " |")
    lines.append("| all operators (profiled) | " + " | ".join(f"{sum(t.values()):.0f}" for t in totals) + " |")
    lines.append("| wall time of the step without the profiler | "
                 + " | ".join(f"{r['wall_s'] * 1e3:.0f}" for r in rows) + " |")
    for r in rows:
        lines += ["", f"| {r['impl']} ({r['setting']}): operator | self ms | calls | µs per call |",
                  "| --- | --- | --- | --- |"]
        for name, ms, count in sorted(r["ops"], key=lambda op: -op[1])[:top]:
            lines.append(f"| `{name}` | {ms:.1f} | {count} | {1e3 * ms / count:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="paper,fast,small", help="comma-separated: " + ", ".join(SETTINGS))
    parser.add_argument("--devices", default=None,
                        help="comma-separated: cpu, cuda (default: cpu, plus cuda if present)")
    parser.add_argument("--impls", default="before,plain,fused", help="comma-separated: before, plain, fused")
    parser.add_argument("--baseline", default=BASELINE, help="git revision that 'before' measures")
    parser.add_argument("--authors-code", default=None,
                        help="folder of the authors' DARTS code (quark0/darts cnn/) to measure beside ours (CPU)")
    parser.add_argument("--peer", action="store_true", help="also one forward+backward beside xautodl's supernet")
    parser.add_argument("--no-hypergradient", dest="hypergradient", action="store_false",
                        help="skip the finite-difference vs exact hypergradient timing")
    parser.add_argument("--repeats", type=int, default=3, help="timed iterations after one warm-up (median)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (the best is reported)")
    parser.add_argument("--threads", default="1", help="torch CPU threads, comma-separated to compare (e.g. 1,2)")
    parser.add_argument("--compile", default=None, choices=["default", "reduce-overhead", "max-autotune"],
                        help="torch.compile the supernet with this mode (reduce-overhead: CUDA graphs); for CUDA")
    parser.add_argument("--batch", type=int, default=None, help="batch size for every setting (default: the setting's)")
    parser.add_argument("--profile", action="store_true",
                        help="instead: where the time of one first-order iteration goes, per kind of operator")
    parser.add_argument("--json", default=None, help="also write every measurement to this file")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--before-path", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        setting, device, impl, measure = args.one.split(":")
        threads = int(args.threads)
        print(json.dumps(run_one(setting, device, impl, measure, args.repeats, threads, args.before_path,
                                 args.authors_code, args.compile, args.batch, args.profile)))
        return
    args.threads = [int(t) for t in args.threads.split(",")]
    import torch

    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    started = time.strftime("%Y-%m-%d %H:%M"), _load()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        before_path = extract_baseline(args.baseline, Path(tmp)) if "before" in args.impls.split(",") else None
        jobs = plan(args, devices, before_path)
        if args.profile:  # one first-order iteration per implementation (after its warm-up)
            jobs = list(dict.fromkeys((s, d, i, "order1", t) for s, d, i, m, t in jobs if m == "order1"))
            args.rounds = 1
        for round_index in range(args.rounds):
            for setting, device, impl, measure, threads in jobs:
                cmd = [sys.executable, __file__, "--one", f"{setting}:{device}:{impl}:{measure}", "--repeats",
                       str(args.repeats), "--threads", str(threads)]
                cmd += ["--before-path", before_path] if before_path else []
                cmd += ["--authors-code", str(Path(args.authors_code).resolve())] if args.authors_code else []
                cmd += ["--compile", args.compile] if args.compile and impl in ("plain", "fused") else []
                cmd += ["--batch", str(args.batch)] if args.batch else []
                cmd += ["--profile"] if args.profile else []
                result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if result.returncode != 0:
                    print(f"failed: {' '.join(cmd[2:])}\n{result.stderr[-2000:]}", file=sys.stderr)
                    continue
                rows.append(json.loads(result.stdout.strip().splitlines()[-1]) | {"round": round_index + 1})
                print(json.dumps(rows[-1]), file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.profile:
        print(f"torch {torch.__version__}; 1-minute load {started[1]:.2f} at the start, {_load():.2f} at the end")
        print(profile_table(rows))
        return
    best = best_of_rounds(rows)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    compiled = f"; torch.compile mode {args.compile}" if args.compile else ""
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {gpu}; torch "
          f"{torch.__version__}; threads {args.threads}; baseline {args.baseline}; median of {args.repeats} "
          f"after a warm-up, best of {args.rounds} interleaved rounds; 1-minute load {started[1]:.2f} at the start "
          f"({started[0]}), {_load():.2f} at the end{compiled}")
    print()
    print(speed_table(best))
    if any(k[4] == "finite_difference" for k in best):
        print()
        print(hypergradient_table(best))
    if any(k[4] == "forward_backward" for k in best):
        print()
        print(peer_table(best, rows))


if __name__ == "__main__":
    main()
