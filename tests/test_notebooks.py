"""Notebook hygiene (STYLE.md): executed in order, no widget state, python3 kernel, allowed tags,
no trailing `;`, ignored outputs followed by asserts, and each notebook in sync with its text form.

Opening a notebook in JupyterLab and saving it must not change the repository: no timing metadata,
the kernel name `make lab` registers, and both files byte for byte what JupyterLab writes."""

import re
import shutil
from pathlib import Path

import jupytext
import nbformat
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: jupytext brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ALLOWED_TAGS = {"parameters", "nbval-ignore-output"}


def test_there_are_notebooks():
    names = [p.stem for p in NOTEBOOKS]
    assert "00_start_here" in names
    texts = sorted(p.stem for p in NOTEBOOKS[0].parent.glob("[0-9][0-9]_*.py"))
    assert texts == names, "every notebook needs its jupytext text form and the other way round"


@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def nb(request):
    return request.param, nbformat.read(request.param, as_version=4)


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_executed_in_order_with_outputs(nb):
    path, notebook = nb
    counts = [c.execution_count for c in _code(notebook)]
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: re-run it top to bottom (make notebooks)"
    assert sum(bool(c.outputs) for c in _code(notebook)) >= len(counts) // 3, "outputs must be kept"


def test_metadata(nb):
    path, notebook = nb
    assert "widgets" not in notebook.metadata, f"{path.name}: stored widget state"
    # JupyterLab writes the running kernel's spec into the notebook: it must be the one `make lab` registers
    name, display_name = re.search(r'ipykernel install .*--name (\S+) --display-name "([^"]+)"',
                                   (ROOT / "Makefile").read_text()).groups()
    assert notebook.metadata.kernelspec == {"display_name": display_name, "language": "python", "name": name}, (
        f"{path.name}: kernelspec {dict(notebook.metadata.kernelspec)} is not the Makefile's: run `make notebooks`")
    # `make lab` serves notebooks/, where JupyterLab's jupytext finds no configuration: the notebook carries it
    with open(ROOT / "pyproject.toml", "rb") as f:
        assert notebook.metadata.jupytext == tomllib.load(f)["tool"]["jupytext"], "run `make notebooks`"


def test_no_timing_metadata(nb):
    path, notebook = nb
    timed = [i for i, c in enumerate(notebook.cells) if {"execution", "ExecuteTime"} & set(c.metadata)]
    assert not timed, f"{path.name} cells {timed}: timing metadata (it changes every run): run `make notebooks`"


def test_open_and_save_in_jupyterlab_changes_nothing(nb, tmp_path):
    """What JupyterLab's server does on open and Ctrl+S (jupytext's contents manager, nbformat)."""
    path, _ = nb
    pair = [path, path.with_suffix(".py")]
    for p in pair:
        shutil.copy2(p, tmp_path / p.name)  # keeps the times jupytext compares
    contents = jupytext.TextFileContentsManager(root_dir=str(tmp_path))
    contents.save({"type": "notebook", "content": contents.get(path.name)["content"]}, path.name)
    for p in pair:
        same = (tmp_path / p.name).read_bytes() == p.read_bytes()  # not inside the assert: no huge byte diff
        assert same, f"JupyterLab rewrites {p.name}: run `make notebooks`"


def test_cells(nb):
    path, notebook = nb
    code = _code(notebook)
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []) and "NAS_TUTORIAL_FAST" in first.source
    for i, cell in enumerate(code):
        tags = set(cell.metadata.get("tags", []))
        assert tags <= ALLOWED_TAGS, f"{path.name} cell {i}: tags {tags - ALLOWED_TAGS} not allowed"
        lines = [line for line in cell.source.rstrip().splitlines() if line.strip()]
        assert not (lines and lines[-1].rstrip().endswith(";")), f"{path.name} cell {i}: trailing ';'"
        if "nbval-ignore-output" in tags:
            assert i + 1 < len(code) and "assert" in code[i + 1].source, (
                f"{path.name} cell {i}: an ignored output must be followed by a cell with asserts")
    for cell in notebook.cells:
        assert not any(o.get("output_type") == "error" for o in cell.get("outputs", [])), f"{path.name}: error output"


def _cells(notebook):
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in notebook.cells]


def test_paired_text_form_in_sync(nb):
    path, notebook = nb
    text = jupytext.read(path.with_suffix(".py"))
    assert _cells(text) == _cells(notebook), (
        f"{path.name} and {path.with_suffix('.py').name} differ: run `make notebooks`")
