"""GPU check: run every notebook in its default (GPU-sized) mode and every benchmark, report times and memory.

    python tools/gpu_check.py                          # all notebooks, then benchmarks/bench_*.py
    python tools/gpu_check.py --only 02_darts          # one item
    python tools/gpu_check.py --timeout 540            # each item under 9 minutes (e.g. a 10-minute job slot)
    python tools/gpu_check.py --allow-cpu --fast --only 00_start_here   # try the script on a CPU

Each notebook is executed with nbclient from its jupytext text form (``NN_name.py``, else the
``.ipynb``) under a wall-clock limit (``--timeout``, default 900 s: the 15 minutes a default mode
may take), with ``NAS_TUTORIAL_FAST`` unset (``--fast`` sets it to 1). The committed notebooks are
never written: executed copies go to ``--out`` (default ``gpu_report/``). After the last cell a
probe cell in the same kernel reads ``torch.cuda.max_memory_allocated()`` (GPU memory of the kernel
process only, not of workers it starts). Benchmarks run as scripts with ``--devices cuda`` when
their argparse has that option.
Results go to ``OUT/report.json`` and ``OUT/REPORT.md``; a later run with ``--only`` updates its
rows and keeps the others. Exit status: 0 all ok, 1 something failed or timed out, 2 refused.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = """import json as _j, sys as _s
_t = _s.modules.get("torch")  # a notebook that never imported torch used no GPU
_gpu = _t is not None and _t.cuda.is_available()
print("GPU_CHECK", _j.dumps({"peak_gib": _t.cuda.max_memory_allocated() / 2**30 if _gpu else None,
                            "reserved_gib": _t.cuda.max_memory_reserved() / 2**30 if _gpu else None}))"""


def find(paths: list[str], *patterns: str) -> dict[str, Path]:
    """Name -> file for the given files and folders (a folder: its files matching ``patterns``, first pattern first)."""
    files = {}
    for path in map(Path, paths):
        for f in [f for p in patterns for f in sorted(path.glob(p)) if f.is_file()] if path.is_dir() else [path]:
            files.setdefault(f.stem, f)  # NN_name.py (the jupytext text form) before NN_name.ipynb
    return dict(sorted(files.items()))


def run_notebook(path: Path, out: Path, limit: int) -> dict:
    """Execute one notebook under a wall-clock limit; save the executed copy in ``out``."""
    import jupytext
    import nbformat
    from execute_notebook import SteppingClient  # tools/: waits for the kernel in 1-second steps
    from nbclient.exceptions import CellExecutionError, CellTimeoutError
    from nbclient.util import run_sync

    nb = jupytext.read(path)
    for cell in nb.cells:  # no stale outputs below the cell where a run stops
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = SteppingClient(nb, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    row, start = {"notebook": path.stem, "peak_gib": None, "reserved_gib": None}, time.perf_counter()
    try:
        with client.setup_kernel():
            try:
                for index, cell in enumerate(nb.cells):
                    client.timeout = max(1, math.ceil(start + limit - time.perf_counter()))  # what is left of it
                    client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
                row["status"] = "ok"
            except CellTimeoutError:
                row["status"] = f"timed out after {limit} s"
                run_sync(client.km.interrupt_kernel)()
            except CellExecutionError as e:
                row["status"] = "error: " + (f"{e.ename}: {e.evalue}".strip().splitlines() or ["?"])[0]
            row["seconds"] = time.perf_counter() - start
            nb.cells.append(nbformat.v4.new_code_cell(PROBE))
            client.timeout = 60
            for _ in range(3):  # just after an interrupt the kernel aborts what is queued: try again
                try:
                    client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
                except Exception as e:  # a kernel stuck after an interrupt: no figure, say why
                    print(f"  {path.stem}: no memory figure ({type(e).__name__}: {e})", flush=True)
                    break
                text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
                if "GPU_CHECK" in text:
                    row.update(json.loads(text.split("GPU_CHECK", 1)[1]))
                    break
                time.sleep(2)
    except Exception as e:  # the kernel did not start, or died
        row.setdefault("status", f"error: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
        row.setdefault("seconds", time.perf_counter() - start)
    row.update(cell_times(nb))
    nbformat.write(nb, out / f"{path.stem}.ipynb")
    return row


def cell_times(nb, *, slowest: int = 5, pause: float = 5.0) -> dict:
    """From the kernel's timestamps that nbclient stores in each code cell: the ``slowest`` cells
    ``[code cell index, seconds, first line]`` and every pause of more than ``pause`` seconds between
    the end of one code cell and the start of the next, ``[index of the next, seconds]``."""
    def at(cell, key):
        stamp = cell.get("metadata", {}).get("execution", {}).get(key)
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None

    code = [c for c in nb.cells if c.cell_type == "code"]
    spans, pauses, last_end = [], [], None
    for index, cell in enumerate(code):
        start, end = at(cell, "iopub.status.busy") or at(cell, "iopub.execute_input"), at(cell, "shell.execute_reply")
        if start is None:
            continue
        if last_end is not None and (start - last_end).total_seconds() > pause:
            pauses.append([index, round((start - last_end).total_seconds(), 1)])
        if end is not None:
            first = (cell.source.strip().splitlines() or [""])[0][:60]
            spans.append([index, round((end - start).total_seconds(), 1), first])
            last_end = end
    return {"slowest_cells": sorted(spans, key=lambda s: -s[1])[:slowest], "pauses": pauses}


def run_benchmark(path: Path, device: str, limit: int, env: dict) -> dict:
    """Run one benchmark script (its own process group, killed whole at the limit); capture its output."""
    cmd, source = [sys.executable, str(path)], path.read_text()
    has = lambda option: f'"{option}"' in source or f"'{option}'" in source  # its argparse options, read not run
    if has("--devices"):
        cmd += ["--devices", device]
    elif has("--device"):
        cmd += ["--device", device]
    if has("--no-ray") and importlib.util.find_spec("ray") is None:
        cmd += ["--no-ray"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=limit)
        status = "ok" if proc.returncode == 0 else f"error: exit status {proc.returncode}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the benchmark and the subprocesses it started
        stdout, stderr = proc.communicate()
        status = f"timed out after {limit} s"
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return {"benchmark": path.stem, "command": " ".join(["python", str(shown), *cmd[2:]]), "status": status,
            "seconds": time.perf_counter() - start, "stdout": stdout, "stderr": stderr}


def environment(torch, fast: bool, limit: int) -> dict:
    """Date, GPU, torch, CUDA, driver (nvidia-smi), CPU cores, mode, and whether the CIFAR-10 folder is there."""
    smi = shutil.which("nvidia-smi")
    driver = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                            text=True).stdout.strip().splitlines()[:1] if smi else []
    data = Path(os.environ.get("NAS_TUTORIAL_DATA") or Path.home() / ".cache" / "nas_tutorial")
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no CUDA GPU)",
            "torch": torch.__version__, "cuda": torch.version.cuda, "driver": driver[0] if driver else None,
            "cpu_cores": os.cpu_count(), "mode": "fast (NAS_TUTORIAL_FAST=1)" if fast else "default",
            "timeout_s": limit,
            "data": f"{data} ({'present' if (data / 'cifar-10-batches-py').is_dir() else 'MISSING'})"}


def seconds(s: float) -> str:
    return f"{s:.0f}" if s >= 10 else f"{s:.1f}"


def gib(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def markdown(report: dict) -> str:
    e = report["environment"]
    lines = [f"# GPU check, {e['date']}", "",
             f"{e['device']} · torch {e['torch']} · CUDA {e['cuda']} · driver {e['driver']} · {e['cpu_cores']} CPU "
             f"cores · {e['mode']} mode · limit {e['timeout_s']} s each · data {e['data']}", "",
             "| notebook | status | seconds | peak GPU memory (GiB) |", "| --- | --- | ---: | ---: |"]
    lines += [f"| `{r['notebook']}` | {r['status'].replace('|', '/')} | {seconds(r['seconds'])} "
              f"| {gib(r['peak_gib'])} |" for r in report["notebooks"].values()]
    for r in report["notebooks"].values():
        slow = ", ".join(f"{i} ({seconds(s)} s: `{first}`)" for i, s, first in r.get("slowest_cells", []))
        pauses = ", ".join(f"{s:.0f} s before code cell {i}" for i, s in r.get("pauses", []))
        lines += ["", f"`{r['notebook']}`: slowest code cells {slow or '–'}; pauses between cells: {pauses or 'none'}."]
    for b in report["benchmarks"].values():
        lines += ["", f"## {b['benchmark']}: {b['status']}, {seconds(b['seconds'])} s", "", f"`{b['command']}`", "",
                  "```text", b["stdout"].rstrip(), "```"]
        if b["stderr"].strip():
            lines += ["", "stderr (last 30 lines):", "", "```text", *b["stderr"].rstrip().splitlines()[-30:], "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", nargs="+", default=[str(ROOT / "notebooks")], help="folders or files")
    parser.add_argument("--benchmarks", nargs="+", default=[str(ROOT / "benchmarks")], help="folders or files")
    parser.add_argument("--only", default=None, help="comma-separated names of notebooks and/or benchmarks")
    parser.add_argument("--timeout", type=int, default=900, help="wall-clock seconds per notebook and benchmark")
    parser.add_argument("--out", default=str(ROOT / "gpu_report"), help="folder for the report and executed copies")
    parser.add_argument("--fast", action="store_true", help="notebooks in fast mode (NAS_TUTORIAL_FAST=1)")
    parser.add_argument("--allow-cpu", action="store_true", help="run even when torch sees no CUDA GPU")
    args = parser.parse_args()

    missing = [m for m in ("torch", "nbclient", "nbformat", "jupytext", "ipykernel") if not importlib.util.find_spec(m)]
    if missing:
        print(f"gpu_check: refused: missing Python packages: {', '.join(missing)}", file=sys.stderr)
        return 2
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print(f"gpu_check: refused: torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no CUDA GPU "
              "(torch.cuda.is_available() is False). Run it on a machine with a GPU, or pass --allow-cpu to "
              "test the script on the CPU.", file=sys.stderr)
        return 2
    notebooks, benchmarks = find(args.notebooks, "*.py", "*.ipynb"), find(args.benchmarks, "bench_*.py")
    if args.only:
        names = args.only.split(",")
        unknown = sorted(set(names) - set(notebooks) - set(benchmarks))
        if unknown:
            print(f"gpu_check: unknown names {unknown}; known: {sorted(notebooks) + sorted(benchmarks)}",
                  file=sys.stderr)
            return 2
        notebooks = {k: v for k, v in notebooks.items() if k in names}
        benchmarks = {k: v for k, v in benchmarks.items() if k in names}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.pop("NAS_TUTORIAL_FAST", None)
    if args.fast:
        os.environ["NAS_TUTORIAL_FAST"] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    print("One item per command, if the whole run is too long for one; rows merge into the same report:", flush=True)
    for name in [*notebooks, *benchmarks]:
        print(f"  python tools/gpu_check.py --only {name} --timeout {args.timeout}", flush=True)

    old = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    report = {"environment": environment(torch, args.fast, args.timeout),
              "notebooks": old.get("notebooks", {}), "benchmarks": old.get("benchmarks", {})}
    rows = []
    for name, path in notebooks.items():
        rows.append(report["notebooks"].setdefault(name, {}))
        rows[-1].update(run_notebook(path, out, args.timeout))
        print(f"{name}: {rows[-1]['status']}, {seconds(rows[-1]['seconds'])} s, peak GPU memory "
              f"{gib(rows[-1]['peak_gib'])} GiB", flush=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for name, path in benchmarks.items():
        rows.append(report["benchmarks"].setdefault(name, {}))
        rows[-1].update(run_benchmark(path, device, args.timeout, dict(os.environ)))
        print(f"{name}: {rows[-1]['status']}, {seconds(rows[-1]['seconds'])} s", flush=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "REPORT.md").write_text(markdown(report))
    print(f"report: {out / 'REPORT.md'}", flush=True)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
