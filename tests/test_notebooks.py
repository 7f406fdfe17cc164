"""Notebook hygiene (STYLE.md): executed in order, no widget state, python3 kernel, allowed tags,
no trailing `;`, ignored outputs followed by asserts, and each notebook in sync with its text form."""

from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
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
    assert notebook.metadata.kernelspec.name == "python3"


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
