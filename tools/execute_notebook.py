"""Execute notebooks from their jupytext text form and save them with outputs (no widget state).

    NAS_TUTORIAL_FAST=1 python tools/execute_notebook.py notebooks/00_start_here.py [...]

The fast mode is what nbval checks in `make test`; the saved outputs are compared cell by cell.
"""

import sys
import time
from pathlib import Path

import jupytext
from nbclient import NotebookClient


def execute(path: Path) -> float:
    nb = jupytext.read(path)
    start = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    nb.metadata.pop("widgets", None)  # widget state is not kept in git (hygiene test)
    jupytext.write(nb, path.with_suffix(".ipynb"))
    return seconds


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: executed in {execute(Path(name)):.1f} s", flush=True)
