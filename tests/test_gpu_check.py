"""tools/gpu_check.py on the CPU: report rows for a notebook that passes, one that raises, one that times out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "gpu_check.py"


def write_notebook(path: Path, *sources: str) -> None:
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_report_on_cpu(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "00_ok.ipynb", "import os", "print('fast mode:', os.environ.get('NAS_TUTORIAL_FAST'))",
                   "import time\ntime.sleep(0.5)")
    write_notebook(notebooks / "01_raises.ipynb", "x = 1", "raise ValueError('the first error line')", "print(2)")
    write_notebook(notebooks / "02_slow.ipynb", "import time", "time.sleep(60)")
    bench = tmp_path / "bench_tiny.py"
    bench.write_text("import argparse\nparser = argparse.ArgumentParser()\nparser.add_argument('--devices')\n"
                     "print('| devices |', parser.parse_args().devices, '|')\n")
    out = tmp_path / "report"
    result = run("--allow-cpu", "--fast", "--timeout", "5", "--notebooks", str(notebooks), "--benchmarks", str(bench),
                 "--out", str(out))
    assert result.returncode == 1, result.stderr  # one notebook failed, one timed out
    assert "--only 01_raises" in result.stdout  # how to run one item per command

    report = json.loads((out / "report.json").read_text())
    rows = report["notebooks"]
    assert rows["00_ok"]["status"] == "ok" and 0 < rows["00_ok"]["seconds"] < 5
    assert rows["01_raises"]["status"] == "error: ValueError: the first error line"
    assert rows["02_slow"]["status"] == "timed out after 5 s" and 5 <= rows["02_slow"]["seconds"] < 30
    assert report["environment"]["mode"].startswith("fast") and report["environment"]["cpu_cores"] == os.cpu_count()
    assert report["benchmarks"]["bench_tiny"]["status"] == "ok"
    assert "| devices | cpu |" in report["benchmarks"]["bench_tiny"]["stdout"]  # --devices passed

    markdown = (out / "REPORT.md").read_text()
    assert "| notebook | status | seconds | peak GPU memory (GiB) |" in markdown
    assert f"| `00_ok` | ok | {rows['00_ok']['seconds']:.1f} | – |" in markdown
    assert "| `01_raises` | error: ValueError: the first error line |" in markdown
    assert "| `02_slow` | timed out after 5 s |" in markdown
    assert "## bench_tiny: ok" in markdown
    slowest = rows["00_ok"]["slowest_cells"]  # [code cell, seconds, first line], slowest first
    assert slowest[0][0] == 2 and slowest[0][1] >= 0.5 and slowest[0][2] == "import time"
    assert rows["00_ok"]["pauses"] == [] and "pauses between cells: none" in markdown

    executed = nbformat.read(out / "00_ok.ipynb", as_version=4)
    assert "fast mode: 1" in executed.cells[1].outputs[0]["text"]
    assert "GPU_CHECK" in executed.cells[-1].outputs[0]["text"]  # the probe ran in the same kernel
    assert not nbformat.read(notebooks / "00_ok.ipynb", as_version=4).cells[1].outputs  # source not written


def test_pauses_between_cells_are_found():
    sys.path.insert(0, str(SCRIPT.parent))
    import gpu_check

    nb = new_notebook(cells=[new_code_cell("a"), new_code_cell("b = 1\nc = 2"), new_code_cell("never ran")])
    for cell, (busy, reply) in zip(nb.cells, [("00:00:00", "00:00:02"), ("00:00:30", "00:00:31")]):
        cell.metadata["execution"] = {"iopub.status.busy": f"2026-11-29T{busy}.000Z",
                                      "shell.execute_reply": f"2026-11-29T{reply}.000Z"}
    times = gpu_check.cell_times(nb)
    assert times == {"slowest_cells": [[0, 2.0, "a"], [1, 1.0, "b = 1"]], "pauses": [[1, 28.0]]}


def test_refuses_without_cuda(tmp_path):
    result = run("--notebooks", str(tmp_path), "--out", str(tmp_path / "report"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 2
    assert "sees no CUDA GPU" in result.stderr and "--allow-cpu" in result.stderr
    assert not (tmp_path / "report").exists()


def test_the_tools_wait_for_the_kernel_in_steps(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    from execute_notebook import STEP, SteppingClient

    client = SteppingClient(new_notebook(cells=[new_code_cell("1 + 1")]), kernel_name="python3")
    with client.setup_kernel():  # the path tools/gpu_check.py takes
        for channel in (client.kc.shell_channel, client.kc.iopub_channel):
            assert channel.get_msg.__qualname__.startswith("_in_steps")
        cell = client.execute_cell(client.nb.cells[0], 0)
    assert cell.outputs[0]["data"]["text/plain"] == "2" and STEP <= 1.0
