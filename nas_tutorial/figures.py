"""Regenerate the figures in ``images/`` from code: ``python -m nas_tutorial.figures [folder]``.

Each figure is written as its DOT source (``.gv``, deterministic, checked by a test) and, when
Graphviz's ``dot`` is installed, as SVG. Never edit these files by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import drawing, enas_space, genotypes, nao, pnas


def figure_graphs() -> dict[str, drawing.Graph]:
    """Every generated figure, by file stem."""
    return {
        "darts_v2_normal": drawing.cell_graph(genotypes.DARTS_V2, "normal"),
        "darts_v2_reduce": drawing.cell_graph(genotypes.DARTS_V2, "reduce"),
        "darts_supernet_cell": drawing.mixed_cell_graph(4),
        "enas_micro_normal": drawing.cell_graph(enas_space.ENAS_MICRO, "normal", title="ENAS normal cell"),
        "enas_micro_reduce": drawing.cell_graph(enas_space.ENAS_MICRO, "reduce", title="ENAS reduction cell"),
        "enas_macro": drawing.macro_graph(list(enas_space.ENAS_MACRO.ops),
                                          [list(s) for s in enas_space.ENAS_MACRO.skips],
                                          title="ENAS macro network (24 layers)"),
        "pnasnet5_cell": drawing.cell_graph(pnas.PNASNET5, "normal", title="PNASNet-5 cell (normal and reduction)"),
        "naonet_ws_normal": drawing.cell_graph(nao.NAONET_WS, "normal", title="NAONet-WS normal cell"),
        "naonet_ws_reduce": drawing.cell_graph(nao.NAONET_WS, "reduce", title="NAONet-WS reduction cell"),
    }


def main(folder: str | Path = "images") -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, graph in figure_graphs().items():
        gv = folder / f"{stem}.gv"
        gv.write_text(graph.source())
        written.append(gv)
        if drawing.has_dot():
            svg = folder / f"{stem}.svg"
            svg.write_bytes(graph.dot().pipe(format="svg"))
            written.append(svg)
    return written


if __name__ == "__main__":
    for path in main(*sys.argv[1:]):
        print(path)
