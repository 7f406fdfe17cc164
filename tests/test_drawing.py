import base64
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from nas_tutorial import drawing
from nas_tutorial.genotypes import DARTS_V2, Genotype
from nas_tutorial.ops import DARTS_OPS

matplotlib.use("Agg")

SMALL = Genotype.parse(
    "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('none', 2), ('dil_conv_5x5', 0)], "
    "normal_concat=[2, 3], reduce=[('max_pool_3x3', 0), ('avg_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 1)], reduce_concat=[3])"
)

GOLDEN_CELL = """digraph normal_cell {
	rankdir=LR size="9,7"
	fontname=Helvetica fontsize=13 label="normal cell" labelloc=t
	node [fontname=Helvetica fontsize=11 shape=box style=filled]
	edge [fontname=Helvetica fontsize=9]
	"c_k-2" [label=<c<SUB>k-2</SUB>> fillcolor="#f4a6a6" style=filled]
	"c_k-1" [label=<c<SUB>k-1</SUB>> fillcolor="#f4a6a6" style=filled]
	0 [label=0 fillcolor="#dde6f0" style=filled]
	1 [label=1 fillcolor="#dde6f0" style=filled]
	c_k [label=<c<SUB>k</SUB>> fillcolor="#a6d8a6" style=filled]
	"c_k-1" -> 0 [label=sep_conv_3x3 color="#2ca02c" fontcolor="#2ca02c"]
	"c_k-2" -> 0 [label=skip_connect color="#333333" fontcolor="#333333"]
	0 -> 1 [label=none color="#b0b0b0" fontcolor="#b0b0b0"]
	"c_k-2" -> 1 [label=dil_conv_5x5 color="#ff7f0e" fontcolor="#ff7f0e"]
	0 -> c_k [label="" color="#808080" fontcolor="#808080"]
	1 -> c_k [label="" color="#808080" fontcolor="#808080"]
}
"""

GOLDEN_MACRO = """digraph macro {
	rankdir=TB size="9,7"
	node [fontname=Helvetica fontsize=11 shape=box style=filled]
	edge [fontname=Helvetica fontsize=9]
	h0 [label=input fillcolor="#f4a6a6" style=filled]
	h1 [label="0: conv_3x3" fillcolor="#dde6f0" style=filled]
	h2 [label="1: max_pool_3x3" fillcolor="#dde6f0" style=filled]
	h3 [label="2: sep_conv_5x5" fillcolor="#dde6f0" style=filled]
	output [label=output fillcolor="#a6d8a6" style=filled]
	h0 -> h1 [label="" color="#d62728" fontcolor="#d62728"]
	h1 -> h2 [label="" color="#1f77b4" fontcolor="#1f77b4"]
	h0 -> h2 [label="" color="#808080" fontcolor="#808080" style=dotted]
	h2 -> h3 [label="" color="#2ca02c" fontcolor="#2ca02c"]
	h1 -> h3 [label="" color="#808080" fontcolor="#808080" style=dotted]
	h3 -> output [label="" color="#808080" fontcolor="#808080"]
}
"""

GOLDEN_STAGE = """digraph stage {
	rankdir=LR size="9,7"
	node [fontname=Helvetica fontsize=11 shape=box style=filled]
	edge [fontname=Helvetica fontsize=9]
	in [label=input fillcolor="#f4a6a6" style=filled]
	v1 [label="v1: conv 5x5" fillcolor="#dde6f0" style=filled]
	v2 [label="v2: conv 5x5" fillcolor="#dde6f0" style=filled]
	v3 [label="v3 (dropped)" fillcolor="#eeeeee" style="filled,dashed"]
	out [label=output fillcolor="#a6d8a6" style=filled]
	in -> v1 [label="" color="#808080" fontcolor="#808080"]
	v1 -> v2 [label="" color="#d62728" fontcolor="#d62728"]
	v2 -> out [label="" color="#808080" fontcolor="#808080"]
}
"""


def test_cell_dot_source_is_golden():
    assert drawing.cell_graph(SMALL).source() == GOLDEN_CELL


def test_macro_dot_source_is_golden():
    graph = drawing.macro_graph(["conv_3x3", "max_pool_3x3", "sep_conv_5x5"], [[], [0], [1]])  # skips dotted
    assert graph.source() == GOLDEN_MACRO


def test_stage_dot_source_is_golden():
    graph = drawing.stage_graph(3, [(1, 2)], sources=[1], sinks=[2], dropped=[3])
    assert graph.source() == GOLDEN_STAGE


def test_drawings_are_deterministic_and_colour_by_family():
    assert drawing.cell_graph(DARTS_V2, "reduce").source() == drawing.cell_graph(DARTS_V2, "reduce").source()
    assert drawing.op_color("sep_conv_3x3") == drawing.op_color("sep_conv_5x5") == drawing.FAMILY_COLOR["separable"]
    assert drawing.op_color("max_pool_3x3") == drawing.op_color("avg_pool_3x3")


def test_supernet_cell_has_all_mixed_edges():
    graph = drawing.mixed_cell_graph(4)
    assert sum(1 for e in graph.edges if e[2] == "mixed op") == 14


def test_macro_rejects_bad_skips():
    with pytest.raises(ValueError, match="skip sources"):
        drawing.macro_graph(["a", "b"], [[], [1]])  # layer 1 reads h_1 anyway
    with pytest.raises(ValueError, match="one list per layer"):
        drawing.macro_graph(["a", "b"], [[]])


def mime_bundle(obj) -> dict:
    """What Jupyter stores for ``obj`` as a cell's result (mime type -> data)."""
    from IPython.core.formatters import DisplayFormatter

    return DisplayFormatter().format(obj)[0]


def assert_valid_svg(svg: str) -> ET.Element:
    root = ET.fromstring(svg.encode())  # raises on malformed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def test_show_with_dot_gives_a_graphviz_svg():
    if not drawing.has_dot():
        pytest.skip("Graphviz dot not installed")
    shown = drawing.show(drawing.cell_graph(DARTS_V2))
    assert_valid_svg(shown.svg)
    assert "sep_conv_3x3" in shown.svg and drawing.FALLBACK_CAPTION not in shown.svg
    assert shown.source == drawing.cell_graph(DARTS_V2).source()


def test_show_without_dot_falls_back_to_a_captioned_matplotlib_svg(monkeypatch, capsys):
    monkeypatch.setattr(drawing, "has_dot", lambda: False)
    graph = drawing.cell_graph(SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the caption tells the reader, not a warning on stderr
        shown = drawing.show(graph)
    assert capsys.readouterr() == ("", "")
    texts = [t.text for t in assert_valid_svg(shown.svg).iter("{http://www.w3.org/2000/svg}text")]
    assert "sep_conv_3x3" in texts and "normal cell" in texts and drawing.FALLBACK_CAPTION in texts
    assert shown.source == GOLDEN_CELL
    assert drawing.show(graph).svg == shown.svg  # deterministic: no date, no random ids


def test_show_gives_the_same_cell_output_with_and_without_dot(monkeypatch):
    """What strict nbval compares (mime keys, sanitized values) must not depend on Graphviz."""
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((Path(__file__).parent / "nbval_sanitize.cfg").read_text())

    def sanitize(text):
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    graph = drawing.stage_graph(3, [(1, 2)], sources=[1], sinks=[2], dropped=[3])
    expected = {"image/svg+xml": "<SVG>", "text/plain": "<Drawing stage>", "image/png": "PNG"}
    for dot in (True, False) if drawing.has_dot() else (False,):
        monkeypatch.setattr(drawing, "has_dot", lambda dot=dot: dot)
        bundle = mime_bundle(drawing.show(graph))
        # the PNG (shown where JupyterLab does not trust the notebook yet) is not compared by nbval
        png = bundle["image/png"]
        assert (png if isinstance(png, bytes) else base64.b64decode(png))[:8] == b"\x89PNG\r\n\x1a\n"
        bundle["image/png"] = "PNG"
        assert {k: sanitize(v) for k, v in bundle.items()} == expected


def test_draw_matplotlib_takes_and_returns_an_ax():
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    assert drawing.cell_graph(SMALL).draw_matplotlib(ax) is ax
    assert "sep_conv_3x3" in [t.get_text() for t in ax.texts]


def test_heatmap_and_curves_return_their_axes():
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    assert drawing.heatmap(ax, np.full((2, 3), 1 / 3), row_labels=["e0", "e1"], col_labels=list("abc")) is ax
    with pytest.raises(ValueError, match="does not match"):
        drawing.heatmap(ax, np.ones((3, 3)), row_labels=["e0"], col_labels=list("abc"))
    _, ax = plt.subplots()
    history = [{"epoch": 1, "train_loss": 2.0, "valid_loss": 2.1}, {"epoch": 2, "train_loss": 1.5, "valid_loss": 1.8}]
    assert drawing.plot_curves(ax, history) is ax
    assert [line.get_label() for line in ax.lines] == ["train_loss", "valid_loss"]
    plt.close("all")


def test_image_grid_labels_each_image():
    import matplotlib.pyplot as plt
    import torch

    _, ax = plt.subplots()
    drawing.image_grid(ax, torch.zeros(5, 3, 8, 8, dtype=torch.uint8), [0, 1, 2, 3, 4], list("abcdefghij"), ncols=3)
    assert [t.get_text() for t in ax.texts] == list("abcde")
    plt.close("all")


def test_committed_figures_match_the_code(tmp_path):
    from nas_tutorial import figures

    images = Path(__file__).resolve().parents[1] / "images"
    for stem, graph in figures.figure_graphs().items():
        assert (images / f"{stem}.gv").read_text() == graph.source(), f"run python -m nas_tutorial.figures ({stem})"
    assert any(p.suffix == ".gv" for p in figures.main(tmp_path))


def test_subscripts_are_real_in_both_renderers():
    assert drawing._dot_label("c_{k-1}") == "<c<SUB>k-1</SUB>>" and drawing._dot_label("v1: conv 5x5") == "v1: conv 5x5"
    assert drawing._math_label("c_{k-1}") == "$c_{k-1}$" and drawing._math_label("0") == "0"


def test_mixed_cell_plot_draws_one_arc_per_candidate_weighted_by_softmax():
    from matplotlib.figure import Figure

    weights = np.full((14, 8), 1 / 8)
    weights[0] = [0.3, 0.4, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]  # edge k-2 -> 0: max pooling strongest
    ax = Figure().subplots()
    assert drawing.mixed_cell_plot(ax, weights, DARTS_OPS, title="normal cell") is ax
    arcs = [t for t in ax.texts if getattr(t, "arrow_patch", None) is not None]  # annotations with an arrow
    assert len(arcs) == 14 * 7 + 4  # none left out; 4 grey edges to the output
    widths = [a.arrow_patch.get_linewidth() for a in arcs[:7]]  # the first edge's candidates
    assert widths[0] == max(widths) and ax.get_title() == "normal cell"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(DARTS_OPS[1:])
    with pytest.raises(ValueError, match="weights must be"):
        drawing.mixed_cell_plot(ax, weights[:3], DARTS_OPS)


def test_combine_keeps_dotted_edges():
    macro = drawing.macro_graph(["conv_3x3", "max_pool_3x3"], [[], [0]])
    both = drawing.combine("two", [macro])
    assert both.dotted == [("macro_h0", "macro_h2")] and "style=dotted" in both.source()
