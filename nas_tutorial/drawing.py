"""The drawing language shared by every notebook.

Graphs (cells, macro DAGs, Genetic-CNN stages) are first built as a :class:`Graph`: plain data with
nodes and edges in a fixed order, so the DOT source is deterministic and unit-tested. ``Graph.dot()``
gives a ``graphviz.Digraph``; :func:`show` renders a graph to a :class:`Drawing` (an SVG that Jupyter
displays), made by Graphviz's ``dot`` program when it is installed, else by matplotlib with a caption
saying so. Either way a notebook cell shows the same kinds of output, so strict nbval passes on both.
One colour per operation family is used everywhere.
"""

from __future__ import annotations

import io
import re
import shutil
from dataclasses import dataclass, field

import numpy as np

from .genotypes import Genotype
from .ops import OP_FAMILY

#: One colour per operation family (edges and legend entries use these everywhere).
FAMILY_COLOR = {
    "none": "#b0b0b0",
    "identity": "#333333",
    "pool": "#1f77b4",
    "separable": "#2ca02c",
    "dilated": "#ff7f0e",
    "factorized": "#9467bd",
    "conv": "#d62728",
}
INPUT_COLOR, OUTPUT_COLOR, NODE_COLOR = "#f4a6a6", "#a6d8a6", "#dde6f0"


def op_color(op: str) -> str:
    """Colour of an operation (by family); plain convolutions (``conv_*``) are ``conv``."""
    family = OP_FAMILY.get(op, "conv" if op.startswith("conv") else "none")
    return FAMILY_COLOR[family]


@dataclass
class Graph:
    """A small directed graph to draw: ``nodes`` as (name, label, fill, style), ``edges`` as
    (source, target, label, colour), optional ``clusters`` as (name, label, node names) drawn as
    labelled boxes. Keep the lists in a fixed order for a stable DOT source."""

    name: str
    nodes: list[tuple[str, str, str, str]] = field(default_factory=list)
    edges: list[tuple[str, str, str, str]] = field(default_factory=list)
    rankdir: str = "LR"
    clusters: list[tuple[str, str, list[str]]] = field(default_factory=list)
    title: str = ""
    size: str = ""  # the largest drawing in inches, "width,height" ("": MAX_SIZE)
    dotted: list[tuple[str, str]] = field(default_factory=list)  # edges (source, target) drawn dotted

    def dot(self):
        """The ``graphviz.Digraph`` of this graph (needs only the Python package to build)."""
        import graphviz

        g = graphviz.Digraph(self.name)
        g.attr(rankdir=self.rankdir, size=self.size or MAX_SIZE)  # scaled down to fit a notebook's output
        if self.title:
            g.attr(label=self.title, labelloc="t", fontname="Helvetica", fontsize="13")
        g.attr("node", shape="box", style="filled", fontname="Helvetica", fontsize="11")
        g.attr("edge", fontname="Helvetica", fontsize="9")
        boxes = {n: c for c, (_, _, members) in enumerate(self.clusters) for n in members}
        subgraphs = []
        for name, label, _ in self.clusters:
            sub = graphviz.Digraph(f"cluster_{name}")
            sub.attr(label=label, style="rounded", color="#999999", fontname="Helvetica", fontsize="10")
            subgraphs.append(sub)
        for name, label, fill, style in self.nodes:
            target = subgraphs[boxes[name]] if name in boxes else g
            target.node(name, _dot_label(label), fillcolor=fill, style=f"filled,{style}" if style else "filled")
        for sub in subgraphs:
            g.subgraph(sub)
        for src, dst, label, color in self.edges:
            extra = {"style": "dotted"} if (src, dst) in self.dotted else {}
            g.edge(src, dst, label=label, color=color, fontcolor=color[:7], **extra)  # labels opaque
        return g

    def source(self) -> str:
        """DOT source text (deterministic: golden-tested)."""
        return self.dot().source

    def draw_matplotlib(self, ax=None):
        """Draw with matplotlib only (layered layout); returns the ``ax``."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.5))
        names = [n for n, *_ in self.nodes]
        depth = {n: 0 for n in names}
        for _ in names:  # longest-path layering; graphs here are tiny DAGs
            for src, dst, *_ in self.edges:
                depth[dst] = max(depth[dst], depth[src] + 1)
        layers: dict[int, list[str]] = {}
        for n in names:
            layers.setdefault(depth[n], []).append(n)
        pos = {n: (d, -i + (len(ns) - 1) / 2) for d, ns in layers.items() for i, n in enumerate(ns)}
        if self.rankdir == "TB":
            pos = {n: (y, -x) for n, (x, y) in pos.items()}
        for src, dst, label, color in self.edges:
            (x0, y0), (x1, y1) = pos[src], pos[dst]
            ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", color=color, shrinkA=14, shrinkB=14,
                                                                ls=":" if (src, dst) in self.dotted else "-"))
            if label:
                ax.text((x0 + x1) / 2, (y0 + y1) / 2, label, color=color, fontsize=7, ha="center")
        for name, label, fill, style in self.nodes:
            ax.text(*pos[name], _math_label(label), ha="center", va="center", fontsize=9,
                    bbox=dict(boxstyle="round", fc=fill, ls="--" if "dashed" in style else "-"))
        xs, ys = zip(*pos.values())
        ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
        ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
        ax.set_title(self.title or self.name)
        ax.axis("off")
        return ax


#: Largest drawing, in inches (width, height): Graphviz scales larger graphs down to it.
MAX_SIZE = "9,7"
_SUBSCRIPT = re.compile(r"(\w+)_\{([^{}]+)\}")  # "c_{k-1}": c with the subscript k-1


def _dot_label(label: str) -> str:
    """``c_{k-1}`` as a Graphviz HTML label with a real subscript; other labels unchanged."""
    match = _SUBSCRIPT.fullmatch(label)
    return f"<{match[1]}<SUB>{match[2]}</SUB>>" if match else label


def _math_label(label: str) -> str:
    """``c_{k-1}`` as matplotlib mathtext (``$c_{k-1}$``); other labels unchanged."""
    return f"${label}$" if _SUBSCRIPT.fullmatch(label) else label


#: Caption of the matplotlib fallback drawing (written in the SVG, not as a warning on stderr).
FALLBACK_CAPTION = ("matplotlib fallback: install Graphviz for the proper drawing "
                    "(apt-get install graphviz, brew install graphviz or conda install -c conda-forge graphviz)")


def has_dot() -> bool:
    """Whether the Graphviz ``dot`` program is on the PATH."""
    return shutil.which("dot") is not None


@dataclass(frozen=True, repr=False)
class Drawing:
    """A rendered graph: Jupyter gets ``svg`` (``image/svg+xml``), ``png`` (``image/png``) and the
    stable text ``<Drawing name>``. The PNG is what JupyterLab shows in a notebook it does not trust
    yet (a fresh clone), where it refuses to render SVG.

    Attributes:
        name: The graph's name (e.g. ``normal_cell``).
        source: Its DOT source text.
        svg: The SVG document, from ``dot`` or, without it, from matplotlib.
        png: The same drawing as PNG bytes.
    """

    name: str
    source: str
    svg: str
    png: bytes = field(default=b"", repr=False)

    def _repr_svg_(self) -> str:
        return self.svg

    def _repr_png_(self) -> bytes | None:
        return self.png or None

    def __repr__(self) -> str:
        return f"<Drawing {self.name}>"


def _fallback_figure(graph: Graph):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5))  # not pyplot: the inline backend must not show a second (PNG) copy
    graph.draw_matplotlib(fig.subplots())
    fig.text(0.5, 0.01, FALLBACK_CAPTION, ha="center", fontsize=6, color="#808080")
    return fig


def fallback_svg(graph: Graph) -> str:
    """The matplotlib drawing of ``graph`` as SVG text, captioned as the fallback (deterministic)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": graph.name}):  # real <text>, stable ids
        _fallback_figure(graph).savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def fallback_png(graph: Graph) -> bytes:
    """The same matplotlib drawing as PNG bytes."""
    buf = io.BytesIO()
    _fallback_figure(graph).savefig(buf, format="png", dpi=80, metadata={"Software": None})
    return buf.getvalue()


def show(graph: Graph) -> Drawing:
    """Render ``graph`` for Jupyter: with Graphviz's ``dot`` if installed, else with matplotlib."""
    digraph = graph.dot()
    if has_dot():
        return Drawing(graph.name, digraph.source, digraph.pipe(format="svg", encoding="utf-8"),
                       digraph.pipe(format="png"))
    return Drawing(graph.name, digraph.source, fallback_svg(graph), fallback_png(graph))


def cell_graph(genotype: Genotype, kind: str = "normal", *, title: str | None = None) -> Graph:
    """The ``normal`` or ``reduce`` cell of a genotype: inputs red, intermediate nodes blue, output green.

    ``title`` is drawn above the cell (default: "normal cell" or "reduction cell")."""
    edges, concat = genotype.cell(kind)
    default = {"normal": "normal cell", "reduce": "reduction cell"}[kind]
    g = Graph(f"{kind}_cell", title=default if title is None else title)
    g.nodes += [("c_k-2", "c_{k-2}", INPUT_COLOR, ""), ("c_k-1", "c_{k-1}", INPUT_COLOR, "")]
    g.nodes += [(str(i), str(i), NODE_COLOR, "") for i in range(genotype.num_nodes)]
    g.nodes.append(("c_k", "c_{k}", OUTPUT_COLOR, ""))

    def node(j):
        return ("c_k-2", "c_k-1")[j] if j < 2 else str(j - 2)

    g.edges += sorted(((node(src), str(pos // 2), op, op_color(op)) for pos, (op, src) in enumerate(edges)),
                      key=lambda e: (int(e[1]), e[0], e[2]))  # by target node, then source
    g.edges += [(str(j - 2), "c_k", "", "#808080") for j in sorted(concat)]
    return g


def mixed_cell_graph(num_nodes: int = 4, label: str = "mixed op", *, title: str = "") -> Graph:
    """The one-shot supernet cell: every intermediate node reads every predecessor through a mixed edge."""
    g = Graph("supernet_cell", title=title)
    g.nodes += [("c_k-2", "c_{k-2}", INPUT_COLOR, ""), ("c_k-1", "c_{k-1}", INPUT_COLOR, "")]
    g.nodes += [(str(i), str(i), NODE_COLOR, "") for i in range(num_nodes)]
    g.nodes.append(("c_k", "c_{k}", OUTPUT_COLOR, ""))
    inputs = ["c_k-2", "c_k-1"]
    for i in range(num_nodes):
        g.edges += [(src, str(i), label, "#555555") for src in inputs]
        inputs.append(str(i))
    g.edges += [(str(i), "c_k", "", "#808080") for i in range(num_nodes)]
    return g


def macro_graph(layer_ops: list[str], skips: list[list[int]], *, title: str = "") -> Graph:
    """A macro architecture (ENAS macro space) as the seed draws it: the chain of layers solid,
    coloured by operation, and the skip connections dotted. With ``h_0`` the input (the stem's
    output) and ``h_{i+1}`` layer ``i``'s output, layer ``i`` reads ``h_i`` and adds the outputs
    ``h_j`` listed in ``skips[i]`` (``j < i``)."""
    if len(skips) != len(layer_ops):
        raise ValueError(f"skips must have one list per layer ({len(layer_ops)}), got {len(skips)}")
    g = Graph("macro", rankdir="TB", title=title)
    g.nodes.append(("h0", "input", INPUT_COLOR, ""))
    g.nodes += [(f"h{i + 1}", f"{i}: {op}", NODE_COLOR, "") for i, op in enumerate(layer_ops)]
    g.nodes.append(("output", "output", OUTPUT_COLOR, ""))
    for i, (op, sk) in enumerate(zip(layer_ops, skips)):
        bad = [j for j in sk if not 0 <= j < i]
        if bad:
            raise ValueError(f"layer {i}: skip sources {bad} must be earlier outputs 0..{i - 1} (0: the input)")
        g.edges.append((f"h{i}", f"h{i + 1}", "", op_color(op)))
        g.edges += [(f"h{j}", f"h{i + 1}", "", "#808080") for j in sorted(sk)]
        g.dotted += [(f"h{j}", f"h{i + 1}") for j in sorted(sk)]
    g.edges.append((f"h{len(layer_ops)}", "output", "", "#808080"))
    return g


def stage_graph(num_nodes: int, edges: list[tuple[int, int]], *, sources: list[int], sinks: list[int],
                dropped: list[int], name: str = "stage") -> Graph:
    """A Genetic-CNN stage: nodes ``1..K``, input node red (fed to ``sources``), output node green
    (fed by ``sinks``), ``dropped`` nodes drawn dashed and grey with no edges."""
    g = Graph(name)
    g.nodes.append(("in", "input", INPUT_COLOR, ""))
    for k in range(1, num_nodes + 1):
        if k in dropped:
            g.nodes.append((f"v{k}", f"v{k} (dropped)", "#eeeeee", "dashed"))
        else:
            g.nodes.append((f"v{k}", f"v{k}: conv 5x5", NODE_COLOR, ""))
    g.nodes.append(("out", "output", OUTPUT_COLOR, ""))
    color = FAMILY_COLOR["conv"]
    g.edges += [("in", f"v{k}", "", "#808080") for k in sorted(sources)]
    g.edges += [(f"v{i}", f"v{j}", "", color) for i, j in sorted(edges)]
    g.edges += [(f"v{k}", "out", "", "#808080") for k in sorted(sinks)]
    if not edges:  # all bits zero: the whole stage is its input node's convolution
        g.nodes = [("in", "input conv 5x5 (the whole stage)", INPUT_COLOR, "")] + g.nodes[1:-1]
    return g


def combine(name: str, graphs: list[Graph], *, rankdir: str = "LR") -> Graph:
    """Several graphs side by side in one drawing, each in a box labelled with its name; node
    ``n`` of graph ``g`` becomes ``{g.name}_{n}``."""
    out = Graph(name, rankdir=rankdir)
    for graph in graphs:
        rename = {n: f"{graph.name}_{n}" for n, *_ in graph.nodes}
        out.nodes += [(rename[n], label, fill, style) for n, label, fill, style in graph.nodes]
        out.edges += [(rename[a], rename[b], label, color) for a, b, label, color in graph.edges]
        out.dotted += [(rename[a], rename[b]) for a, b in graph.dotted]
        out.clusters.append((graph.name, graph.name.replace("_", " "), [rename[n] for n, *_ in graph.nodes]))
    return out


# -- matplotlib helpers: take an ax, return the ax --------------------------------------------------
def heatmap(ax, weights, *, row_labels, col_labels, title: str = "", vmin: float = 0.0, vmax: float | None = None,
            fontsize: float = 8):
    """Heatmap of a ``(rows, cols)`` weight matrix (e.g. softmax(alpha): edges x operations), each cell
    labelled with its value; pass ``vmax`` to keep one colour scale across several heatmaps."""
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"weights shape {w.shape} does not match labels ({len(row_labels)}, {len(col_labels)})")
    top = vmax if vmax is not None else max(w.max(), 1e-9)
    im = ax.imshow(w, cmap="viridis", vmin=vmin, vmax=top, aspect="auto")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    for (i, j), v in np.ndenumerate(w):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=fontsize, color="w" if v < 0.6 * top else "k")
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, fraction=0.04)
    return ax


def mixed_cell_plot(ax, weights, ops, *, num_nodes: int = 4, title: str = ""):
    r"""The supernet cell with every candidate of every edge drawn as an arc, as thick and opaque as
    its weight in softmax(α) (the paper's Figure 1c). ``weights`` is ``(E, K)`` in the row order of
    ``darts.edge_labels``; ``none`` is left out. Nodes stand in a column, inputs at the top, and the
    output (grey edges: the concatenation of the intermediate nodes) at the bottom."""
    from matplotlib.lines import Line2D

    w = np.asarray(weights, dtype=float)
    edges = sum(i + 2 for i in range(num_nodes))
    if w.shape != (edges, len(ops)):
        raise ValueError(f"weights must be (edges, len(ops)) = ({edges}, {len(ops)}), got {w.shape}")
    names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(num_nodes)] + ["c_{k}"]
    shown = [k for k, op in enumerate(ops) if op != "none"]
    colors = {k: plt_color(n) for n, k in enumerate(shown)}
    high, row = w[:, shown].max(), 0
    for i in range(num_nodes):
        for j in range(i + 2):  # edge from node j to intermediate node i (drawn at height -(i + 2))
            for n, k in enumerate(shown):  # a fan of arcs, one per candidate
                share = w[row, k] / high
                style = dict(arrowstyle="-", color=colors[k], lw=0.3 + 3.5 * share, alpha=0.25 + 0.75 * share,
                             connectionstyle=f"arc3,rad={-0.25 - 0.06 * n}", shrinkA=9, shrinkB=9)
                ax.annotate("", xy=(0, -(i + 2)), xytext=(0, -j), arrowprops=style)
            row += 1
        style = dict(arrowstyle="-", color="#999999", lw=0.8, connectionstyle="arc3,rad=0.3", shrinkA=9, shrinkB=9)
        ax.annotate("", xy=(0, -(num_nodes + 2)), xytext=(0, -(i + 2)), arrowprops=style)
    for y, name in enumerate(names):
        fill = INPUT_COLOR if y < 2 else OUTPUT_COLOR if y == len(names) - 1 else NODE_COLOR
        ax.text(0, -y, _math_label(name), ha="center", va="center", fontsize=10, bbox=dict(boxstyle="round", fc=fill))
    ax.legend([Line2D([], [], color=colors[k], lw=2) for k in shown], [ops[k] for k in shown], fontsize=8,
              loc="upper right", frameon=False)
    ax.set_xlim(-1.2, 3.6)
    ax.set_ylim(-len(names) + 0.4, 0.6)
    ax.set_title(title)
    ax.axis("off")
    return ax


def plt_color(n: int) -> str:
    """The ``n``-th colour of matplotlib's default cycle (tab10)."""
    return ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")[n % 10]


def plot_curves(ax, history: list[dict], keys=("train_loss", "valid_loss"), *, xkey: str = "epoch", title: str = ""):
    """Training curves from a list of per-epoch records (as returned by ``training.fit``)."""
    from matplotlib.ticker import MaxNLocator

    for key in keys:
        ax.plot([r[xkey] for r in history], [r[key] for r in history], marker="o", label=key)
    ax.set_xlabel(xkey)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.legend()
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax


def image_grid(ax, images, labels, classes, *, ncols: int = 8):
    """A grid of images ``(N, 3, H, W)`` in [0, 1] (or uint8) with their class names as titles."""
    import torch

    images = torch.as_tensor(images)
    if images.dtype == torch.uint8:
        images = images.float() / 255
    n = len(images)
    nrows = -(-n // ncols)
    h, w = images.shape[-2:]
    gy, gx = max(h // 3, 2), 2  # vertical gap leaves room for the class names
    canvas = np.ones((nrows * (h + gy), ncols * (w + gx), 3))
    for k in range(n):
        r, c = divmod(k, ncols)
        top, left = r * (h + gy) + gy, c * (w + gx)
        canvas[top:top + h, left:left + w] = images[k].permute(1, 2, 0).cpu().numpy()
        ax.text(left + w / 2, top - 0.5, classes[int(labels[k])], ha="center", va="bottom", fontsize=7)
    ax.imshow(canvas, interpolation="nearest")
    ax.axis("off")
    return ax
