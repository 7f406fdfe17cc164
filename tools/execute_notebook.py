"""Execute notebooks from their jupytext text form and save both files as JupyterLab would.

    NAS_TUTORIAL_FAST=1 python tools/execute_notebook.py notebooks/00_start_here.py [...]

The fast mode is what nbval checks in `make test`; the saved outputs are compared cell by cell.

Opening a notebook in JupyterLab and saving it without editing must change no byte of the .ipynb
or of its .py (tests/test_notebooks.py checks this without a browser), so:
- no timing metadata, no widget state, and one output per stream per cell with carriage returns
  applied (a text progress bar keeps its final state only);
- `kernelspec` as the registered kernel reports it (JupyterLab writes it when the kernel starts);
- `metadata.jupytext` is `[tool.jupytext]` of pyproject.toml: `make lab` serves `notebooks/`, and
  JupyterLab's jupytext looks for a configuration file only inside that folder;
- cell ids from the cell's text, so that re-executing an unchanged notebook keeps them;
- both files are written by jupytext's contents manager, the code JupyterLab's server runs on save.
"""

import hashlib
import sys
import time
from collections import Counter
from pathlib import Path
from queue import Empty

import jupytext
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.util import run_sync

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: jupytext brings tomli
    import tomli as tomllib

KERNEL = "python3"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
STEP = 1.0  # seconds: the longest a kernel message can go unnoticed (SteppingClient)


class SteppingClient(NotebookClient):
    """An nbclient that waits for the kernel's messages in steps of ``STEP`` seconds.

    nbclient waits for a cell's reply with one long poll of the shell socket. Seen here: after a
    widget cell, that poll sometimes did not wake for a reply already sent, and the run stood still
    until the cell's whole timeout had passed (nbclient issue 312). A poll that times out still
    reads what is waiting, so polling in short steps bounds such a stall to one step."""

    async def async_start_new_kernel_client(self, **kwargs):
        kc = await super().async_start_new_kernel_client(**kwargs)
        for channel in (kc.shell_channel, kc.iopub_channel):
            channel.get_msg = _in_steps(channel.get_msg)
        return kc

    start_new_kernel_client = run_sync(async_start_new_kernel_client)  # setup_kernel() calls this one


def _in_steps(get_msg):
    async def get(timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                return await get_msg(timeout=STEP if left is None else max(0.0, min(STEP, left)))
            except Empty:
                if left is not None and left <= STEP:
                    raise
    return get


def set_metadata_and_ids(nb) -> None:
    with open(PYPROJECT, "rb") as f:
        settings = tomllib.load(f)["tool"]["jupytext"]
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    nb.metadata = {  # nbclient adds language_info from the kernel, as JupyterLab does
        "jupytext": settings,
        "kernelspec": {"display_name": spec.display_name, "language": spec.language, "name": KERNEL},
    }
    seen = Counter()
    for cell in nb.cells:
        digest = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:8]
        seen[digest] += 1
        cell.id = digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"


def execute(path: Path) -> float:
    nb = jupytext.read(path)
    set_metadata_and_ids(nb)
    start = time.perf_counter()
    # store_widget_state: nbclient 0.11 fails on Output widgets without it; the state is dropped below
    SteppingClient(nb, timeout=900, kernel_name=KERNEL, record_timing=False, coalesce_streams=True,
                   store_widget_state=True, resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    nb.metadata.pop("widgets", None)  # widget state is not kept in git (hygiene test)
    contents = jupytext.TextFileContentsManager(root_dir=str(path.parent.resolve()))
    contents.save({"type": "notebook", "content": nb}, path.with_suffix(".ipynb").name)  # .ipynb and .py
    return seconds


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: executed in {execute(Path(name)):.1f} s", flush=True)
