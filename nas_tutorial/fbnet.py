r"""FBNet: hardware-aware ConvNet design by differentiable NAS (Wu et al., CVPR 2019, arXiv:1812.03443).

Read top to bottom like the paper: the layer-wise search space (the fixed macro-architecture of
Table 1, nine candidate blocks per layer, :math:`9^{22}` architectures), the latency lookup table
and the latency-aware loss, the stochastic super net with Gumbel-softmax sampling and its
differentiable expected latency, the search (:math:`w` and :math:`\theta` trained in turn, on 80%
and 20% of the training images), sampling the final architectures from :math:`P_\theta`, and the
published FBNet-A, -B and -C (Figure 4 and the ImageNet results table). The blocks and the
parameter / multiply-add counter live in :mod:`nas_tutorial.blocks`.

Formulas are named, not numbered: we could not check the paper's equation and table numbers here
(issue #11 of this project calls the results table "Table 2"; we recall Table 2 as the block configurations and
the results as Table 3).

Notation (the paper's symbols where they are the subject):

| symbol | code | what it is | shape |
| --- | --- | --- | --- |
| :math:`L` | ``num_layers`` | searchable layers of the macro-architecture | int (22, Table 1) |
| :math:`b_{l,i}` | ``candidates`` / ``FBNET_BLOCKS`` | candidate block ``i`` of layer ``l`` | ``K`` names (9) |
| :math:`a` | :class:`FBNetArch` | an architecture: one block per layer | ``L`` names |
| :math:`\theta` | ``theta`` | architecture distribution parameters | ``(L, K)`` |
| :math:`P_\theta` | ``softmax(theta, -1)`` | :math:`P_\theta(b_l = b_{l,i})` | ``(L, K)``, rows sum to 1 |
| :math:`g` | ``noise`` | Gumbel noise, :math:`-\log(-\log u)`, :math:`u \sim U(0, 1)` | ``(L, K)`` |
| :math:`\tau` | ``tau`` | Gumbel-softmax temperature, :math:`5 \cdot e^{-0.045 t}` at epoch ``t`` | float |
| :math:`m` | ``weights`` | Gumbel-softmax sample (mask of the super net) | ``(L, K)`` |
| :math:`w_a` | ``weight_parameters()`` | the super net's weights (everything but θ) | tensors |
| LAT | :class:`LatencyTable` | latency of a block at its input shape, measured | ``(L, K)`` + fixed layers |
| :math:`\alpha, \beta` | ``alpha``, ``beta`` | loss constants: 0.2, 0.6 | floats |
| CE | ``ce`` | cross-entropy of a batch | scalar |

Where the tutorial's seed notes are wrong or loose (corrected here; the notebook should say so too):

- The loss is :math:`\mathcal{L}(a, w_a) = \mathrm{CE}(a, w_a) \cdot \alpha \, (\log \mathrm{LAT}(a))^\beta`
  (:func:`fbnet_loss`). The seed writes :math:`\alpha \log(\mathrm{LAT})^\beta`, which can also be
  read as :math:`\alpha \log(\mathrm{LAT}^\beta) = \alpha\beta \log \mathrm{LAT}`; then :math:`\beta`
  would only rescale :math:`\alpha` (their product is all that counts) and could not "modulate the
  magnitude of the latency term" as the paper says it does. The power acts on the logarithm.
- LAT is not "a constant found in the table": for a sampled architecture it is the sum of the
  table's entries of its blocks (the table model), and in the super net it is :math:`\sum_l \sum_i m_{l,i}
  \mathrm{LAT}(b_{l,i})`, a differentiable function of :math:`\theta`.
- The argmax of the Gumbel-max trick runs over the candidates ``i`` of a layer, not over layers
  (:math:`\mathrm{argmax}_i`), and :math:`\log p_{l,i} + g_{l,i}` equals :math:`\theta_{l,i} +
  g_{l,i}` only up to a shift shared by the layer (:math:`\log\sum_j e^{\theta_{l,j}}`), which the
  argmax and the softmax ignore: both forms give the same sample.
- FBNet does not sample "one architecture per epoch": a new Gumbel sample is drawn for every
  mini-batch (here: one sample per batch, shared by its images).

Settings: from the paper's experiments section: 90 epochs; :math:`w_a` on 80% of the training images with SGD,
:math:`\theta` on the other 20% with Adam, in turn within each epoch; temperature 5.0 annealed by
:math:`e^{-0.045}` per epoch; :math:`\alpha = 0.2`, :math:`\beta = 0.6`; ImageNet with 100 of its
classes, at 224x224; several architectures sampled from :math:`P_\theta` at the end and trained from
scratch. Not found in the paper text available to us, so taken from issue #11 of this project and common
practice and marked as such in :class:`FBNetConfig`: the learning rates (0.1 for :math:`w_a`, 0.01
for :math:`\theta`), :math:`\theta`'s weight decay 5e-4, :math:`\theta` frozen for the first 10
epochs, momentum, weight decay, cosine schedule and batch size of :math:`w_a`, and 6 sampled
architectures.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import FBNET_BLOCKS, conv_bn, make_block, profile
from .blocks import check_block_name as _check_any_block
from .data import Augment, DeviceLoader, Subsets
from .search import Config, Search, check
from .training import evaluate, recalibrate_bn

# -- the search space, Table 1: the macro-architecture -------------------------------------------------------
#: Table 1's searchable stages as (channels f, layers n, stride of the first layer s): 22 layers.
#: Fixed around them: a 3x3 convolution (16 channels, stride 2) before, and after them a 1x1
#: convolution (1984 channels), 7x7 average pooling and a fully connected layer (1000 classes).
TABLE_1 = ((16, 1, 1), (24, 4, 2), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1))
#: Table 1 with CIFAR's strides: the stem and the second stage keep the resolution, so a 32x32
#: image ends at 4x4 (ImageNet's 224x224 ends at 7x7): stride 8 instead of 32 in all.
CIFAR_STRIDES = (1, 1, 2, 2, 1, 2, 1)


@dataclass(frozen=True)
class Layer:
    """One searchable layer: what its block reads and writes (for a batch of one image)."""

    index: int
    in_channels: int
    out_channels: int
    stride: int
    in_size: int  # height = width of its input

    @property
    def out_size(self) -> int:
        return (self.in_size - 1) // self.stride + 1  # "same" padding: ceil(in_size / stride)


@dataclass(frozen=True)
class Macro:
    """The fixed layer-wise macro-architecture: a stem, the searchable stages, a head.

    Attributes:
        stages: (channels, layers, stride of the stage's first layer) per stage (Table 1's f, n, s).
        stem_channels, stem_stride: the first 3x3 convolution (16 channels, stride 2 in Table 1).
        head_channels: the last 1x1 convolution (1984 in Table 1; FBNet-A uses 1504).
        num_classes, image_size, in_channels: the classifier's classes and the input images.
    """

    stages: tuple[tuple[int, int, int], ...] = TABLE_1
    stem_channels: int = 16
    stem_stride: int = 2
    head_channels: int = 1984
    num_classes: int = 1000
    image_size: int = 224
    in_channels: int = 3

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(tuple(s) for s in self.stages))
        if not self.stages:
            raise ValueError("field 'stages' must list at least one (channels, layers, stride) stage, got ()")
        for k, stage in enumerate(self.stages):
            ok = len(stage) == 3 and all(isinstance(v, int) and not isinstance(v, bool) for v in stage)
            if not ok or stage[0] < 1 or stage[1] < 1 or stage[2] not in (1, 2):
                raise ValueError(f"field 'stages', stage {k}: must be (channels >= 1, layers >= 1, stride 1 or 2), "
                                 f"got {stage!r}")
        for name in ("stem_channels", "head_channels", "num_classes", "image_size", "in_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"field {name!r} must be a positive integer, got {value!r}")
        if self.stem_stride not in (1, 2):
            raise ValueError(f"field 'stem_stride' must be 1 or 2, got {self.stem_stride!r}")

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The searchable layers, in order: a stage's first layer has its stride, the others 1."""
        out, channels, size = [], self.stem_channels, (self.image_size - 1) // self.stem_stride + 1
        for width, repeats, stride in self.stages:
            for r in range(repeats):
                layer = Layer(len(out), channels, width, stride if r == 0 else 1, size)
                out.append(layer)
                channels, size = width, layer.out_size
        return tuple(out)

    @property
    def num_layers(self) -> int:
        return sum(n for _, n, _ in self.stages)

    @property
    def last_channels(self) -> int:
        return self.stages[-1][0]


def imagenet_macro(*, head_channels: int = 1984, num_classes: int = 1000, image_size: int = 224) -> Macro:
    """Table 1 as it is: 224x224 images, 22 searchable layers, 1984 head channels, 1000 classes."""
    return Macro(TABLE_1, 16, 2, head_channels, num_classes, image_size)


def scale_channels(channels: int, width_mult: float, divisor: int = 8) -> int:
    """``channels * width_mult`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``),
    as MobileNet's width multiplier does; multiples of 8 keep the two-group blocks valid."""
    return max(divisor, int(channels * width_mult / divisor + 0.5) * divisor)


def cifar_macro(*, image_size: int = 32, num_classes: int = 10, width_mult: float = 1.0,
                depths: Sequence[int] = (1, 4, 4, 4, 4, 4, 1), strides: Sequence[int] = CIFAR_STRIDES,
                stem_channels: int = 16, stem_stride: int = 1, head_channels: int = 1984) -> Macro:
    """Table 1 for small images: every size a parameter (defaults: CIFAR-10 at 32x32, Table 1's
    widths and depths, :data:`CIFAR_STRIDES`); ``width_mult`` scales every width but the input's."""
    widths = [f for f, _, _ in TABLE_1]
    if len(depths) != len(widths) or len(strides) != len(widths):
        raise ValueError(f"depths and strides need one entry per stage of Table 1 ({len(widths)}), got "
                         f"{len(depths)} depths and {len(strides)} strides")
    stages = tuple((scale_channels(f, width_mult), int(n), int(s)) for f, n, s in zip(widths, depths, strides))
    return Macro(stages, scale_channels(stem_channels, width_mult), stem_stride,
                 scale_channels(head_channels, width_mult), num_classes, image_size)


def check_block_name(name: str) -> str:
    """``name`` if it is one of FBNet's nine candidates (:data:`~nas_tutorial.blocks.FBNET_BLOCKS`), else a
    ``ValueError`` listing them (the registry also holds SPOS's blocks, which are not FBNet candidates)."""
    _check_any_block(name)
    if name not in FBNET_BLOCKS:
        raise ValueError(f"block {name!r} is not an FBNet candidate; choose one of: {', '.join(FBNET_BLOCKS)}")
    return name


# -- the search space: one of K candidates per layer ---------------------------------------------------
def search_space_size(num_layers: int = 22, num_candidates: int = len(FBNET_BLOCKS)) -> int:
    r""":math:`K^L` architectures: 9 candidates in each of 22 layers give :math:`9^{22} \approx 10^{21}`."""
    if num_layers < 1 or num_candidates < 1:
        raise ValueError(f"num_layers and num_candidates must be positive, got {num_layers} and {num_candidates}")
    return num_candidates**num_layers


@dataclass(frozen=True)
class FBNetArch:
    """An architecture of the layer-wise space: one block name per searchable layer.

    The text form joins the names with ``-`` (``"k3_e1-k5_e6-skip"``); :meth:`parse` reads it back
    and JSON holds it as that string.
    """

    blocks: tuple[str, ...]

    def __post_init__(self):
        blocks = self.blocks
        if isinstance(blocks, (str, bytes)) or not hasattr(blocks, "__iter__"):
            raise ValueError(f"field 'blocks' must be a list of block names (FBNetArch.parse reads text), "
                             f"got {blocks!r}")
        object.__setattr__(self, "blocks", tuple(blocks))
        if not self.blocks:
            raise ValueError("field 'blocks' must name at least one block, got ()")
        for layer, name in enumerate(self.blocks):
            try:
                check_block_name(name)
            except ValueError as err:
                raise ValueError(f"field 'blocks', layer {layer}: {err}") from None

    def __len__(self) -> int:
        return len(self.blocks)

    def __str__(self) -> str:
        return "-".join(self.blocks)

    @classmethod
    def parse(cls, text: str) -> FBNetArch:
        """Read the text form ``"k3_e1-k5_e6-skip"``; a malformed text is a ``ValueError`` naming it."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"architecture text must be block names joined by '-', e.g. 'k3_e1-skip', got {text!r}")
        names = [t.strip() for t in text.strip().split("-")]
        for layer, name in enumerate(names):
            if not name:
                raise ValueError(f"architecture text {text!r} has an empty block name at layer {layer} "
                                 "(two '-' in a row, or one at an end)")
        return cls(tuple(names))

    def to_json(self) -> str:
        return json.dumps(str(self))

    @classmethod
    def from_json(cls, text: str) -> FBNetArch:
        return cls.parse(json.loads(text))


def enumerate_architectures(num_layers: int, candidates: Sequence[str] = FBNET_BLOCKS) -> Iterator[FBNetArch]:
    """Every architecture of a ``num_layers``-layer space, in lexicographic order of candidate index."""
    for choice in itertools.product(candidates, repeat=num_layers):
        yield FBNetArch(choice)


def check_arch(arch: FBNetArch | str, macro: Macro, candidates: Sequence[str] | None = None) -> FBNetArch:
    """``arch`` (parsed if text) if it has one block per layer of ``macro`` (each among ``candidates``)."""
    arch = FBNetArch.parse(arch) if isinstance(arch, str) else arch
    if not isinstance(arch, FBNetArch):
        raise ValueError(f"expected an FBNetArch or its text form, got {type(arch).__name__}")
    if len(arch) != macro.num_layers:
        raise ValueError(f"architecture {str(arch)!r} has {len(arch)} blocks, but the macro-architecture has "
                         f"{macro.num_layers} searchable layers")
    if candidates is not None:
        for layer, name in enumerate(arch.blocks):
            if name not in candidates:
                raise ValueError(f"architecture layer {layer}: block {name!r} is not a candidate; candidates: "
                                 f"{', '.join(candidates)}")
    return arch


# -- the networks: the stem and head of Table 1 around a chain of blocks ------------------------------
def make_stem(macro: Macro) -> nn.Sequential:
    """Table 1's first layer: 3x3 convolution, batch norm, ReLU."""
    return conv_bn(macro.in_channels, macro.stem_channels, 3, macro.stem_stride)


def make_head(macro: Macro) -> nn.Sequential:
    """Table 1's last layers: 1x1 convolution (BN, ReLU), global average pooling, fully connected."""
    return nn.Sequential(conv_bn(macro.last_channels, macro.head_channels, 1), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(macro.head_channels, macro.num_classes))


class FBNet(nn.Module):
    """The network of one architecture on a macro-architecture: stem, one block per layer, head."""

    def __init__(self, arch: FBNetArch | str, macro: Macro):
        super().__init__()
        self.arch, self.macro = check_arch(arch, macro), macro
        self.stem = make_stem(macro)
        self.blocks = nn.Sequential(*[make_block(name, layer.in_channels, layer.out_channels, layer.stride)
                                      for name, layer in zip(self.arch.blocks, macro.layers)])
        self.head = make_head(macro)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, classes)
        return self.head(self.blocks(self.stem(x)))


# -- the latency lookup table ----------------------------------------------------------------------
def device_name(device: torch.device | str) -> str:
    """What a latency was measured on: the GPU's name, or the CPU's model and torch's thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return device.type
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} ({torch.get_num_threads()} threads)"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def measure_latency(module: nn.Module, input_shape: Sequence[int], *, device: torch.device | str = "cpu",
                    warmup: int = 5, repeats: int = 20) -> float:
    """Median wall-clock milliseconds of ``module`` on one input of ``input_shape`` (batch included).

    The module is moved to ``device`` and put in eval mode; without autograd, ``warmup`` untimed calls,
    then ``repeats`` timed ones, each ended by a device synchronisation. The input is a constant
    tensor: no random numbers are drawn.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup must be >= 0 and repeats >= 1, got {warmup} and {repeats}")
    device = torch.device(device)
    module = module.to(device).eval()
    x = torch.full(tuple(input_shape), 0.5, device=device)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            module(x)
        _synchronize(device)
        for _ in range(repeats):
            start = time.perf_counter()
            module(x)
            _synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


@dataclass(frozen=True)
class LatencyTable:
    r"""LAT of every candidate of every layer, plus the fixed layers: :math:`\mathrm{LAT}(a) =
    \sum_l \mathrm{LAT}(b_l^{(a)})`, here with the stem and head's latency added (a constant: the
    network's whole latency, which is what the loss's logarithm should see).

    Attributes:
        candidates: the column names.
        values: ``values[l][i]`` = LAT of candidate ``i`` in layer ``l`` (in ``unit``).
        fixed: LAT of the stem and head.
        unit: ``"ms"`` (measured) or ``"MMACs"`` (millions of multiply-adds: a deterministic stand-in).
        device: what it was measured on.
    """

    candidates: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]
    fixed: float
    unit: str = "ms"
    device: str = ""

    def __post_init__(self):
        object.__setattr__(self, "candidates", tuple(self.candidates))
        object.__setattr__(self, "values", tuple(tuple(float(v) for v in row) for row in self.values))
        if any(len(row) != len(self.candidates) for row in self.values):
            raise ValueError(f"every row of a latency table needs one value per candidate ({len(self.candidates)})")

    def tensor(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The ``(L, K)`` table as a tensor."""
        return torch.tensor(self.values, device=device, dtype=dtype)

    def latency(self, arch: FBNetArch | str) -> float:
        """LAT of one architecture, the sum of its blocks' entries (plus the fixed layers)."""
        arch = FBNetArch.parse(arch) if isinstance(arch, str) else arch
        if len(arch) != len(self.values):
            raise ValueError(f"architecture has {len(arch)} blocks, the table {len(self.values)} layers")
        return self.fixed + sum(row[self.candidates.index(name)] for row, name in zip(self.values, arch.blocks))

    def expected(self, weights: torch.Tensor) -> torch.Tensor:
        """The expected latency with this table: :func:`expected_latency` plus the fixed layers."""
        return self.fixed + expected_latency(weights, self.tensor(weights.device, weights.dtype))

    def extremes(self) -> tuple[float, float]:
        """The smallest and the largest LAT of any architecture of the space."""
        return (self.fixed + sum(min(row) for row in self.values), self.fixed + sum(max(row) for row in self.values))

    def to_dict(self) -> dict:
        return {"candidates": list(self.candidates), "values": [list(r) for r in self.values], "fixed": self.fixed,
                "unit": self.unit, "device": self.device}

    @classmethod
    def from_dict(cls, d: dict) -> LatencyTable:
        return cls(tuple(d["candidates"]), tuple(tuple(r) for r in d["values"]), d["fixed"], d["unit"], d["device"])


def expected_latency(weights: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    r"""The super net's latency, :math:`\mathrm{LAT}(a_\theta) = \sum_l \sum_i m_{l,i} \mathrm{LAT}(b_{l,i})`:
    differentiable in the weights ``m`` (a Gumbel-softmax sample, or :math:`P_\theta` for the
    expectation), both ``(L, K)``."""
    if weights.shape != table.shape:
        raise ValueError(f"weights of shape {tuple(weights.shape)} do not match the latency table's "
                         f"{tuple(table.shape)} (layers, candidates)")
    return (weights * table).sum()


LATENCY_FORMAT = "nas_tutorial.latency/1"


def latency_key(device: str, block: str, in_shape: Sequence[int], out_channels: int, stride: int) -> str:
    """The cache key of one measurement: device, torch version, block and its input shape (batch first)."""
    shape = "x".join(str(int(s)) for s in in_shape)
    return f"{device} | torch {torch.__version__} | {block} {shape} -> {out_channels} stride {stride}"


def _read_cache(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    try:
        blob = json.loads(path.read_text())
        entries = blob["entries"] if blob.get("format") == LATENCY_FORMAT else None
        if not isinstance(entries, dict):
            raise KeyError("entries")
        return {str(k): float(v) for k, v in entries.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"latency cache {path} is not a {LATENCY_FORMAT!r} file ({type(err).__name__}); delete "
                         "it to measure again") from None


def _write_cache(path: Path, entries: dict[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"format": LATENCY_FORMAT, "entries": dict(sorted(entries.items()))}, indent=1))
    os.replace(tmp, path)


def measure_latency_table(macro: Macro, candidates: Sequence[str] = FBNET_BLOCKS, *,
                          device: torch.device | str = "cpu", batch_size: int = 1, warmup: int = 5,
                          repeats: int = 20, cache: str | os.PathLike | None = None) -> LatencyTable:
    """Measure LAT of each candidate of each layer at that layer's input shape on ``device``
    (:func:`measure_latency`), and of the fixed stem and head.

    Blocks of equal shape are measured once. With ``cache``, a JSON file keyed by device name,
    torch version, block and shape (:func:`latency_key`): entries found there are read instead of
    measured, new ones are added; an entry of another device or shape is never used for this one.
    Building the blocks draws no numbers from torch's global generator (it is forked).
    """
    candidates = tuple(check_block_name(c) for c in candidates)
    device = torch.device(device)
    name = device_name(device)
    path = None if cache is None else Path(cache).expanduser()
    entries = _read_cache(path) if path is not None else {}
    found = len(entries)

    def lookup(key: str, build: Callable[[], nn.Module], shape: tuple[int, ...]) -> float:
        if key not in entries:
            with torch.random.fork_rng(devices=[]):
                entries[key] = measure_latency(build(), shape, device=device, warmup=warmup, repeats=repeats)
        return entries[key]

    b, size = batch_size, macro.image_size
    stem_shape = (b, macro.in_channels, size, size)
    fixed = lookup(latency_key(name, "stem", stem_shape, macro.stem_channels, macro.stem_stride),
                   lambda: make_stem(macro), stem_shape)
    last = macro.layers[-1]
    head_shape = (b, macro.last_channels, last.out_size, last.out_size)
    fixed += lookup(latency_key(name, f"head{macro.head_channels}", head_shape, macro.num_classes, 1),
                    lambda: make_head(macro), head_shape)
    values = []
    for layer in macro.layers:
        shape = (b, layer.in_channels, layer.in_size, layer.in_size)
        values.append([lookup(latency_key(name, c, shape, layer.out_channels, layer.stride),
                              functools.partial(make_block, c, layer.in_channels, layer.out_channels, layer.stride),
                              shape)
                       for c in candidates])
    if path is not None and len(entries) != found:
        _write_cache(path, entries)
    return LatencyTable(candidates, values, fixed, "ms", name)


def macs_latency_table(macro: Macro, candidates: Sequence[str] = FBNET_BLOCKS) -> LatencyTable:
    """A deterministic stand-in for the measured table: millions of multiply-adds of one image per
    block (:func:`nas_tutorial.blocks.profile`). The paper's point is that FLOPs are *not* latency;
    this exists for tests and for runs that must repeat to the last digit on any machine."""
    candidates = tuple(check_block_name(c) for c in candidates)
    with torch.random.fork_rng(devices=[]):
        size = macro.image_size
        fixed = profile(make_stem(macro), (macro.in_channels, size, size)).macs
        last = macro.layers[-1]
        fixed += profile(make_head(macro), (macro.last_channels, last.out_size, last.out_size)).macs
        values = [[profile(make_block(c, layer.in_channels, layer.out_channels, layer.stride),
                           (layer.in_channels, layer.in_size, layer.in_size)).macs / 1e6 for c in candidates]
                  for layer in macro.layers]
    return LatencyTable(candidates, values, fixed / 1e6, "MMACs", "multiply-adds")


# -- the latency-aware loss ----------------------------------------------------------------------------
def fbnet_loss(ce: torch.Tensor, latency: torch.Tensor | float, *, alpha: float = 0.2, beta: float = 0.6,
               check_latency: bool = True) -> torch.Tensor:
    r"""The latency-aware loss,
    :math:`\mathcal{L}(a, w_a) = \mathrm{CE}(a, w_a) \cdot \alpha \, (\log \mathrm{LAT}(a))^\beta`.

    The power :math:`\beta` acts on the logarithm (see the module docstring): :math:`\alpha` sets the
    loss's overall magnitude, :math:`\beta` how strongly latency modulates it. LAT is in the units
    of the table divided by the search's ``latency_unit``; it must exceed 1, or :math:`\log
    \mathrm{LAT} \le 0` and its fractional power is undefined (or zero).

    Raises:
        ValueError: ``check_latency`` and LAT <= 1 (one host synchronisation; the search checks its
            table once instead).
    """
    latency = torch.as_tensor(latency, dtype=ce.dtype, device=ce.device)
    if check_latency and not bool((latency > 1).all()):
        raise ValueError(f"LAT must exceed 1 latency unit for (log LAT)^beta to be defined, got {latency.tolist()}; "
                         "express latency in a smaller unit")
    return ce * alpha * torch.log(latency) ** beta


# -- the search algorithm: the stochastic super net and the Gumbel-softmax ----------------------------------------
def gumbel_noise(shape: Sequence[int], *, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""Standard Gumbel samples :math:`g = -\log(-\log u)`, :math:`u \sim U(0, 1)`, drawn on the CPU
    (so a seeded ``generator`` gives the same noise for every device)."""
    u = torch.rand(tuple(shape), generator=generator, dtype=torch.float64).clamp_(min=torch.finfo(torch.float64).tiny)
    return (-torch.log(-torch.log(u))).to(dtype)  # u in (0, 1): -log u > 0


def gumbel_max(theta: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    r"""The Gumbel-max trick: :math:`\mathrm{argmax}_i (\theta_{l,i} + g_{l,i})` per layer is a sample of
    :math:`P_\theta(b_l = b_{l,i}) = \mathrm{softmax}_i(\theta_l)`. ``(..., K)`` -> ``(...,)``."""
    return (theta + noise.to(theta.device, theta.dtype)).argmax(-1)


def gumbel_softmax(theta: torch.Tensor, tau: float, noise: torch.Tensor, *, hard: bool = False) -> torch.Tensor:
    r"""The Gumbel-softmax: :math:`m_{l,i} = \mathrm{softmax}_i((\theta_{l,i} + g_{l,i}) / \tau)` (``(L, K)``).

    As :math:`\tau \to 0` it tends to the one-hot Gumbel-max sample; large :math:`\tau` makes it
    uniform. ``hard=True`` is the straight-through variant: the forward value is exactly that
    one-hot vector, the gradient the soft sample's (``one_hot + (soft - soft.detach())``).
    """
    if not tau > 0:
        raise ValueError(f"the temperature tau must be positive, got {tau!r}")
    if noise.shape != theta.shape:
        raise ValueError(f"noise of shape {tuple(noise.shape)} does not match theta's {tuple(theta.shape)}")
    soft = F.softmax((theta + noise.to(theta.device, theta.dtype)) / tau, dim=-1)
    if not hard:
        return soft
    one_hot = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return one_hot + (soft - soft.detach())  # value: one_hot exactly; gradient: the soft sample's


def temperature(epoch: int, tau0: float = 5.0, decay: float = math.exp(-0.045)) -> float:
    r""":math:`\tau` of epoch ``epoch`` (0-based): :math:`\tau_0 \cdot \mathrm{decay}^{t}`, the paper's 5.0 and
    :math:`e^{-0.045} \approx 0.956` (after 90 epochs: 0.09)."""
    return tau0 * decay**epoch


class MixedBlock(nn.Module):
    r"""One layer of the super net: every candidate, mixed by the mask, :math:`x_{l+1} = \sum_i m_{l,i} b_{l,i}(x_l)`
    A candidate whose weight is exactly zero and needs no gradient (a hard sample during the
    weight step) is not run: its term is zero."""

    def __init__(self, layer: Layer, candidates: Sequence[str] = FBNET_BLOCKS):
        super().__init__()
        self.layer = layer
        self.names = tuple(candidates)
        self.candidates = nn.ModuleList(make_block(c, layer.in_channels, layer.out_channels, layer.stride)
                                        for c in self.names)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[bool] | None = None) -> torch.Tensor:
        """``x`` ``(B, C_in, H, W)``, ``weights`` ``(K,)``; ``active[i]`` false skips candidate ``i`` (its weight
        must then be zero: the caller checks); ``None``: compute every candidate."""
        if weights.shape != (len(self.candidates),):
            raise ValueError(f"layer {self.layer.index} needs one weight per candidate, shape "
                             f"({len(self.candidates)},), got {tuple(weights.shape)}")
        active = [i for i in range(len(self.candidates)) if active is None or active[i]]
        out = 0
        for i in active:
            out = out + weights[i] * self.candidates[i](x)
        return out


class FBNetSupernet(nn.Module):
    r"""The stochastic super net: the macro-architecture with a :class:`MixedBlock` per layer
    and :math:`\theta` (``(L, K)``, zeros: uniform :math:`P_\theta`) as a parameter in ``state_dict``.

    ``forward(x, weights)`` mixes the candidates by ``weights`` ``(L, K)`` (a Gumbel-softmax sample);
    ``forward(x)`` runs the most likely architecture (one-hot of :math:`\mathrm{argmax}\,\theta`).
    """

    def __init__(self, macro: Macro, candidates: Sequence[str] = FBNET_BLOCKS):
        super().__init__()
        self.macro, self.candidates = macro, tuple(check_block_name(c) for c in candidates)
        self.stem = make_stem(macro)
        self.layers = nn.ModuleList(MixedBlock(layer, self.candidates) for layer in macro.layers)
        self.head = make_head(macro)
        self.theta = nn.Parameter(torch.zeros(macro.num_layers, len(self.candidates)))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.theta]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "theta"]

    def argmax_weights(self) -> torch.Tensor:
        """One-hot ``(L, K)`` of the most likely block of each layer (no gradient)."""
        return F.one_hot(self.theta.detach().argmax(-1), len(self.candidates)).to(self.theta.dtype)

    def architecture(self) -> FBNetArch:
        r"""The most likely architecture, :math:`\mathrm{argmax}_i \theta_{l,i}` per layer."""
        return FBNetArch(tuple(self.candidates[i] for i in self.theta.detach().argmax(-1).tolist()))

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        weights = self.argmax_weights() if weights is None else weights
        if weights.shape != self.theta.shape:
            raise ValueError(f"weights must have shape {tuple(self.theta.shape)} (layers, candidates), "
                             f"got {tuple(weights.shape)}")
        # a weight that is exactly zero and needs no gradient contributes nothing: skip its block
        # (one host sync for all layers; a hard sample in the weight step runs one block per layer)
        active = None if weights.requires_grad else (weights != 0).tolist()
        x = self.stem(x)
        for index, (layer, w) in enumerate(zip(self.layers, weights)):
            x = layer(x, w, None if active is None else active[index])
        return self.head(x)

    @torch.no_grad()
    def extract(self, arch: FBNetArch | str) -> FBNet:
        """The stand-alone network of ``arch`` (:class:`FBNet`) holding a copy of the super net's weights and
        batch-norm running statistics of that path: it computes what ``self(x, one_hot(arch))`` computes, in
        training and in eval mode. Built on the meta device (no random initialisation); the super net is
        not changed by what is done to the copy (such as :func:`~nas_tutorial.training.recalibrate_bn`)."""
        arch = check_arch(arch, self.macro, self.candidates)
        with torch.device("meta"):
            net = FBNet(arch, self.macro)
        net = net.to_empty(device=self.theta.device).to(self.theta.dtype)
        state = self.state_dict()
        mapped = {}
        for key in net.state_dict():
            if key.startswith("blocks."):  # blocks.<l>.<rest> is layers.<l>.candidates.<i>.<rest>
                _, layer, rest = key.split(".", 2)
                index = self.candidates.index(arch.blocks[int(layer)])
                mapped[key] = state[f"layers.{layer}.candidates.{index}.{rest}"]
            else:  # the stem and the head
                mapped[key] = state[key]
        net.load_state_dict(mapped)
        return net.train(self.training)


def evaluate_architecture(supernet: FBNetSupernet, arch: FBNetArch | str, images: torch.Tensor, labels: torch.Tensor,
                          *, recalibration_images: torch.Tensor | None = None, recalibration_batch_size: int = 128,
                          batch_size: int = 500) -> dict:
    """Loss and accuracy of ``arch`` with the super net's weights (:meth:`FBNetSupernet.extract`), its
    batch-norm statistics first recomputed on ``recalibration_images``
    (:func:`~nas_tutorial.training.recalibrate_bn`; ``None``: the super net's running statistics, which
    were averaged over many masks). The super net is not changed. Returns ``{"loss", "acc"}``.

    Not the paper's: FBNet trains the sampled architectures from scratch; this is the tutorial's cheap
    score of an architecture during and after the search (SPOS's weight inheritance)."""
    net = supernet.extract(arch)
    if recalibration_images is not None:
        recalibrate_bn(net, recalibration_images, batch_size=recalibration_batch_size)
    return evaluate(net, images, labels, batch_size=batch_size, amp=False)


# -- the search (experiments section) --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FBNetConfig(Config):
    r"""Settings of an FBNet search; the defaults are the paper's ImageNet search unless noted.

    Attributes:
        stages, stem_channels, stem_stride, head_channels: the macro-architecture (Table 1).
        image_size, num_classes: 224x224 images of 100 ImageNet classes (the paper searches on a
            random 100-class subset). :meth:`cifar` sets CIFAR-10's 32x32 and 10.
        candidates: the nine blocks (θ's columns).
        epochs: 90. warmup_epochs: epochs during which only :math:`w_a` is trained (:math:`\theta`
            frozen): 10 (issue #11 of this project; not verified in the paper text available to us).
        theta_fraction: share of the training images that trains :math:`\theta` (0.2; :math:`w_a`
            trains on the other 80%).
        batch_size: 256 (not stated in the text available to us).
        lr, momentum, weight_decay: SGD on :math:`w_a`, 0.1, 0.9, 1e-4, cosine schedule over the epochs
            (the rate from issue #11 of this project; the rest common ImageNet practice, not verified).
        theta_lr, theta_weight_decay: Adam on :math:`\theta`: 0.01, 5e-4 (issue #11 of this project; not verified).
        tau0, tau_decay: temperature 5.0, times :math:`e^{-0.045}` per epoch.
        hard: straight-through (one-hot forward) Gumbel-softmax instead of the paper's soft one.
        alpha, beta: 0.2 and 0.6 (the loss's constants).
        latency: ``"measure"`` (the paper: a lookup table measured on the data's device) or
            ``"macs"`` (millions of multiply-adds: deterministic, for tests).
        latency_unit: LAT enters the loss in this many ms (or MMACs): 1 ms as in the paper; it must
            be below the smallest architecture's LAT so that :math:`\log \mathrm{LAT} > 0`.
        latency_batch_size, latency_warmup, latency_repeats: how blocks are timed (batch 1, as on the phone).
        latency_cache: JSON file of measured latencies (``~`` expanded; ``None``: measure every run).
            The measured table is also saved in the search's checkpoint, so a resumed run uses it.
        augment: training-time augmentation of both parts of the training images.
        steps_per_epoch: cap on the steps of each pass (``None``: a full pass); for quick runs.
        recalibration_size: before an architecture is scored with the super net's weights (the most
            likely one after each epoch, :meth:`FBNetSearch.evaluate`), its batch-norm statistics are
            recomputed on the first this many images of :math:`w_a`'s part (all of them if fewer), in
            batches of 128: 2048 (not the paper's, which trains the sampled architectures
            from scratch and scores nothing with the super net's weights).
        seed: seeds the super net's weights, the batch order, the augmentation and the Gumbel noise.
    """

    stages: tuple[tuple[int, int, int], ...] = TABLE_1
    stem_channels: int = 16
    stem_stride: int = 2
    head_channels: int = 1984
    image_size: int = 224
    num_classes: int = 100
    candidates: tuple[str, ...] = FBNET_BLOCKS
    epochs: int = 90
    warmup_epochs: int = 10
    theta_fraction: float = 0.2
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    theta_lr: float = 0.01
    theta_weight_decay: float = 5e-4
    tau0: float = 5.0
    tau_decay: float = math.exp(-0.045)
    hard: bool = False
    alpha: float = 0.2
    beta: float = 0.6
    latency: str = "measure"
    latency_unit: float = 1.0
    latency_batch_size: int = 1
    latency_warmup: int = 5
    latency_repeats: int = 20
    latency_cache: str | None = "~/.cache/nas_tutorial/fbnet_latency.json"
    augment: Augment | None = Augment()
    steps_per_epoch: int | None = None
    recalibration_size: int = 2048
    seed: int = 0

    def validate(self) -> None:
        try:
            self.macro()
        except ValueError as err:
            raise ValueError(f"{err} (in the config)") from None
        check(isinstance(self.candidates, tuple) and len(self.candidates) >= 1, "candidates",
              "must be a non-empty tuple of block names", self.candidates)
        for name in self.candidates:
            check_block_name(name)
        check(len(set(self.candidates)) == len(self.candidates), "candidates", "must not repeat a block",
              self.candidates)
        for name in ("epochs", "batch_size", "latency_batch_size", "latency_repeats", "recalibration_size"):
            value = getattr(self, name)
            check(isinstance(value, int) and not isinstance(value, bool) and value >= 1, name,
                  "must be a positive integer", value)
        check(isinstance(self.warmup_epochs, int) and 0 <= self.warmup_epochs < self.epochs, "warmup_epochs",
              f"must be in 0..epochs-1={self.epochs - 1} (theta is trained only after it)", self.warmup_epochs)
        check(0 < self.theta_fraction < 1, "theta_fraction", "must be in (0, 1)", self.theta_fraction)
        for name in ("lr", "theta_lr", "tau0", "alpha", "beta", "latency_unit"):
            check(getattr(self, name) > 0, name, "must be positive", getattr(self, name))
        check(0 < self.tau_decay <= 1, "tau_decay", "must be in (0, 1]", self.tau_decay)
        check(self.latency in ("measure", "macs"), "latency", "must be 'measure' or 'macs'", self.latency)
        check(self.latency_warmup >= 0, "latency_warmup", "must be >= 0", self.latency_warmup)
        check(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "steps_per_epoch", "must be None or >= 1",
              self.steps_per_epoch)

    def macro(self) -> Macro:
        """The macro-architecture these settings describe."""
        return Macro(self.stages, self.stem_channels, self.stem_stride, self.head_channels, self.num_classes,
                     self.image_size)

    @classmethod
    def cifar(cls, **changes) -> FBNetConfig:
        """The paper's search on CIFAR-10: Table 1 with :data:`CIFAR_STRIDES` (stem stride 1), 32x32, 10 classes."""
        macro = cifar_macro()
        settings = dict(stages=macro.stages, stem_stride=macro.stem_stride, image_size=32, num_classes=10)
        return cls(**{**settings, **changes})

    @classmethod
    def fast(cls, **changes) -> FBNetConfig:
        """The notebook's CPU setting: 16x16 CIFAR-10 images, a quarter of Table 1's widths and one layer
        per stage (7 layers, :math:`9^7` architectures) with a 128-channel last 1x1 convolution (a
        quarter of 512 rather than of 1984), 8 epochs (θ from the third), batches of 32, at most 10
        steps per pass (80 steps on w in all); the temperature annealed from 5.0 in the first epoch to
        0.5 in the last (the paper's schedule reaches 0.5 after 51 of its 90 epochs); learning rates
        0.2 (w) and 0.3 (θ: 30x the paper's, so that θ moves in a few dozen steps); no augmentation; LAT
        in units of 10 µs (a small network runs in about a millisecond on a CPU; the notebook sets the
        unit from its measured table instead, see there); batch norm recalibrated on 256 images.

        Why these values (measured on the project's 2-core CPU, one thread): a super net runs all nine
        blocks of every layer, so one weight step costs about 0.25 s and a search of 80 steps about
        25-30 s; the narrow head and no augmentation make those few steps learn faster (a lone network
        of this macro-architecture reached 31% on ten classes in 100 steps against 20% with the old
        496-channel head and augmentation). In 80 steps the super net still learns ten classes only to
        a few points above chance; the notebook searches four classes. The annealing stops at 0.5
        because almost one-hot masks train a different random single path at every step, and this
        narrow super net learns nothing that way in so few steps: with uniformly random one-hot paths
        (``hard=True`` at θ = 0) its training accuracy on the notebook's four classes stayed at chance
        (24-29%) for 640 steps, where one fixed path reached 50% in 80 steps and the soft mask at
        τ = 5 60%. Annealed to the paper's 0.09 in 8 epochs, the most likely architectures ended at
        30% ± 3% (recalibrated, mean ± SD of the notebook's six searches, then on 1,250 training and
        1,250 validation images; chance 25%), annealed to 0.5 at 35% ± 3%."""
        epochs = changes.get("epochs", 8)
        macro = cifar_macro(image_size=16, width_mult=0.25, depths=(1,) * 7, head_channels=512)
        settings = dict(stages=macro.stages, stem_channels=macro.stem_channels, stem_stride=1,
                        head_channels=macro.head_channels, image_size=16, num_classes=10, epochs=epochs,
                        warmup_epochs=2, batch_size=32, lr=0.2, theta_lr=0.3, tau_decay=0.1 ** (1 / max(epochs - 1, 1)),
                        latency_unit=0.01, latency_repeats=10, augment=None, steps_per_epoch=10, recalibration_size=256)
        return cls(**{**settings, **changes})


class FBNetSearch(Search):
    r"""The FBNet search on a :class:`~nas_tutorial.data.Subsets`: one :meth:`step` is one epoch.

    The training half is split once (the first ``1 - theta_fraction`` of its images train
    :math:`w_a`, the rest :math:`\theta`); the validation half only scores the most likely
    architecture after each epoch (``best_score`` = ``valid_acc``: its accuracy with the super net's
    weights and its batch-norm statistics recomputed for it, :meth:`evaluate`; the super net's own
    running statistics were collected under mixed masks). An
    epoch: one pass of SGD steps on :math:`w_a` with the latency-aware loss (θ fixed), then, after the
    warm-up, one pass of Adam steps on :math:`\theta`; each step draws a new Gumbel-softmax sample
    at the epoch's temperature. Both passes minimise the same loss, as the paper's
    :math:`\min_\theta \min_{w_a} E_{a \sim P_\theta} \mathcal{L}(a, w_a)` says; for :math:`w_a` the
    latency factor :math:`\alpha (\log \mathrm{LAT})^\beta` is a per-batch constant that scales the
    cross-entropy's gradient (about 0.4 at 20 ms). The latency table is built at the first step
    (measured on the data's device, or read from ``latency_cache``) and kept in the checkpoint.
    """

    method = "fbnet"

    def __init__(self, config: FBNetConfig, data: Subsets, *, checkpoint: str | os.PathLike | None = None):
        super().__init__(config, data, checkpoint=checkpoint)
        x = data.train_x
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, config.image_size, config.image_size):
            raise ValueError(f"field 'image_size' is {config.image_size}, but the data's images have shape "
                             f"{tuple(x.shape[1:])}; make the subsets with image_size={config.image_size} or set "
                             f"image_size={x.shape[-1]}")
        top = int(max(data.train_y.max(), data.valid_y.max()))
        if top >= config.num_classes:
            raise ValueError(f"field 'num_classes' is {config.num_classes}, but the data has label {top}")
        n_theta = round(len(x) * config.theta_fraction)
        n_w = len(x) - n_theta
        if min(n_w, n_theta) < config.batch_size:
            raise ValueError(f"field 'batch_size' ({config.batch_size}) is larger than the weights' part ({n_w}) or "
                             f"theta's part ({n_theta}) of the {len(x)} training images; use more images or "
                             "smaller batches")
        device = x.device
        self.macro = config.macro()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.model = FBNetSupernet(self.macro, config.candidates).to(device)
        self.w_optimizer = torch.optim.SGD(self.model.weight_parameters(), lr=config.lr, momentum=config.momentum,
                                           weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_optimizer, T_max=config.epochs)
        self.theta_optimizer = torch.optim.Adam(self.model.arch_parameters(), lr=config.theta_lr,
                                                weight_decay=config.theta_weight_decay)
        self.w_loader = DeviceLoader(x[:n_w], data.train_y[:n_w], config.batch_size, augment=config.augment,
                                     seed=config.seed, drop_last=True)
        self.theta_loader = DeviceLoader(x[n_w:], data.train_y[n_w:], config.batch_size, augment=config.augment,
                                         seed=config.seed + 1, drop_last=True)
        self.noise_generator = torch.Generator().manual_seed(config.seed + 2)
        self.recalibration_images = x[:min(config.recalibration_size, n_w)]  # un-augmented images of w's part
        self.table: LatencyTable | None = None

    def num_steps(self) -> int:
        return self.config.epochs

    def context(self) -> dict:
        return {"data": self.data.fingerprint()}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "w_optimizer": self.w_optimizer.state_dict(),
                "theta_optimizer": self.theta_optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "w_loader": self.w_loader.state_dict(), "theta_loader": self.theta_loader.state_dict(),
                "noise_generator": self.noise_generator.get_state(), "torch_rng": torch.get_rng_state(),
                "table": None if self.table is None else self.table.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.theta_optimizer.load_state_dict(state["theta_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.w_loader.load_state_dict(state["w_loader"])
        self.theta_loader.load_state_dict(state["theta_loader"])
        self.noise_generator.set_state(state["noise_generator"])
        torch.set_rng_state(state["torch_rng"])
        self.table = None if state["table"] is None else LatencyTable.from_dict(state["table"])

    # -- the latency table, once ---------------------------------------------------------------------
    def latency_table(self) -> LatencyTable:
        """The table of this search (built on first use; see :class:`FBNetConfig`'s ``latency``)."""
        if self.table is None:
            config = self.config
            if config.latency == "macs":
                table = macs_latency_table(self.macro, config.candidates)
            else:
                table = measure_latency_table(self.macro, config.candidates, device=self.data.train_x.device,
                                              batch_size=config.latency_batch_size, warmup=config.latency_warmup,
                                              repeats=config.latency_repeats, cache=config.latency_cache)
            smallest = table.extremes()[0]
            if smallest <= config.latency_unit:
                raise ValueError(f"field 'latency_unit' is {config.latency_unit} {table.unit}, but the smallest "
                                 f"architecture's LAT is {smallest:.4g} {table.unit}: log(LAT) would be <= 0 and "
                                 f"(log LAT)^beta undefined; set latency_unit below {smallest:.3g}")
            self.table = table
        return self.table

    # -- scoring an architecture with the super net's weights --------------------------------------------------
    def evaluate(self, arch: FBNetArch | str, *, recalibrate: bool = True) -> dict:
        """``{"loss", "acc"}`` of ``arch`` on the validation half with the super net's weights
        (:func:`evaluate_architecture`), its batch norm recalibrated on ``recalibration_images`` (or, with
        ``recalibrate=False``, the super net's running statistics). Changes nothing in the search."""
        images = self.recalibration_images if recalibrate else None
        return evaluate_architecture(self.model, arch, self.data.valid_x, self.data.valid_y,
                                     recalibration_images=images, recalibration_batch_size=128,
                                     batch_size=max(self.config.batch_size, 256))

    # -- one epoch --------------------------------------------------------------------------------------
    def _loss(self, x, y, weights, lat_table):
        logits = self.model(x, weights)
        ce = F.cross_entropy(logits, y)
        latency = (self.table.fixed + expected_latency(weights, lat_table)) / self.config.latency_unit
        return fbnet_loss(ce, latency, alpha=self.config.alpha, beta=self.config.beta, check_latency=False), ce, logits

    def _sample(self, tau: float) -> torch.Tensor:
        theta = self.model.theta
        noise = gumbel_noise(theta.shape, generator=self.noise_generator, dtype=theta.dtype)
        return gumbel_softmax(theta, tau, noise.to(theta.device), hard=self.config.hard)

    def step(self, index: int) -> dict:
        r"""One epoch: a pass on :math:`w_a`, then (after the warm-up) a pass on :math:`\theta`, then the score."""
        config, device = self.config, self.data.train_x.device
        table = self.latency_table()
        lat_table = table.tensor(device)
        tau, lr = temperature(index, config.tau0, config.tau_decay), self.w_optimizer.param_groups[0]["lr"]
        weights_w = self.model.weight_parameters()
        sums = {k: torch.zeros((), device=device) for k in ("loss", "ce", "correct", "theta_loss")}
        seen = theta_steps = 0
        self.model.train()
        for step, (x, y) in enumerate(self.w_loader):
            if config.steps_per_epoch is not None and step >= config.steps_per_epoch:
                break
            with torch.no_grad():  # theta is fixed in this pass: m is a constant (a hard m runs one block)
                m = self._sample(tau)
            loss, ce, logits = self._loss(x, y, m, lat_table)
            self.w_optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=weights_w)
            self.w_optimizer.step()
            sums["loss"] += loss.detach() * len(y)
            sums["ce"] += ce.detach() * len(y)
            sums["correct"] += (logits.argmax(1) == y).sum()
            seen += len(y)
        theta_trained = index >= config.warmup_epochs
        if theta_trained:
            for step, (x, y) in enumerate(self.theta_loader):
                if config.steps_per_epoch is not None and step >= config.steps_per_epoch:
                    break
                m = self._sample(tau)  # differentiable in theta, and so is its LAT
                loss, _, _ = self._loss(x, y, m, lat_table)
                self.theta_optimizer.zero_grad(set_to_none=True)
                loss.backward(inputs=[self.model.theta])
                self.theta_optimizer.step()
                sums["theta_loss"] += loss.detach()
                theta_steps += 1
        self.scheduler.step()
        theta = self.model.theta.detach()
        if not (math.isfinite(sums["loss"].item()) and bool(torch.isfinite(theta).all())):
            raise FloatingPointError(f"epoch {index + 1}: the loss or theta is not finite (loss sum "
                                     f"{sums['loss'].item()}); lower lr or theta_lr, or check the data")
        arch = self.model.architecture()  # the most likely one, scored with the super net's weights:
        valid = self.evaluate(arch)  # batch norm recalibrated for it
        probabilities = F.softmax(theta, dim=-1)
        return {
            "epoch": index + 1, "tau": tau, "lr": lr, "theta_trained": theta_trained,
            "train_loss": sums["loss"].item() / seen, "train_ce": sums["ce"].item() / seen,
            "train_acc": sums["correct"].item() / seen,
            "theta_loss": sums["theta_loss"].item() / theta_steps if theta_steps else None,
            "expected_latency": float(table.expected(probabilities.double().cpu())),
            "best_latency": table.latency(arch), "latency_unit": table.unit,
            "theta": theta.cpu().clone(), "valid_loss": valid["loss"], "valid_acc": valid["acc"],
            "best_arch": str(arch), "best_score": valid["acc"],
        }


def search(config: FBNetConfig, data: Subsets, *, checkpoint: str | os.PathLike | None = None,
           progress: bool = False, callback: Callable[[dict], None] | None = None,
           stop_after: int | None = None) -> list[dict]:
    """Run (or resume from ``checkpoint``) an FBNet search; return one record per epoch (:class:`FBNetSearch`)."""
    return FBNetSearch(config, data, checkpoint=checkpoint).run(progress=progress, callback=callback,
                                                                stop_after=stop_after)


# -- the final architectures, sampled from P_theta ---------------------------------------------
def sample_architectures(theta: torch.Tensor, n: int = 6, *, candidates: Sequence[str] = FBNET_BLOCKS,
                         seed: int = 0) -> list[FBNetArch]:
    r"""``n`` architectures drawn from :math:`P_\theta` (each layer independently, by the
    Gumbel-max trick), to be trained from scratch as the paper does (6 is issue #11 of this project's number;
    the paper says "several").

    Raises:
        ValueError: ``theta`` is not ``(L, K)`` with ``K = len(candidates)``, or is not finite.
    """
    theta = torch.as_tensor(theta).detach().double().cpu()
    if theta.dim() != 2 or theta.shape[1] != len(candidates):
        raise ValueError(f"theta must have shape (layers, {len(candidates)}), got {tuple(theta.shape)}")
    if not torch.isfinite(theta).all():
        raise ValueError("theta has non-finite values (nan or inf): no architecture can be sampled from it")
    generator = torch.Generator().manual_seed(seed)
    return [FBNetArch(tuple(candidates[i] for i in gumbel_max(theta, gumbel_noise(theta.shape, generator=generator,
                                                                                  dtype=theta.dtype)).tolist()))
            for _ in range(n)]


def random_architectures(n: int, num_layers: int, *, candidates: Sequence[str] = FBNET_BLOCKS,
                         seed: int = 0) -> list[FBNetArch]:
    r"""``n`` architectures drawn uniformly from the space (every layer's block uniformly and independently):
    :func:`sample_architectures` at :math:`\theta = 0`."""
    return sample_architectures(torch.zeros(num_layers, len(candidates)), n, candidates=candidates, seed=seed)


def latency_accuracy(search: FBNetSearch, *, found: int = 3, random: int = 3, seed: int = 0) -> list[dict]:
    r"""Points of the latency-accuracy plane for a finished search: ``found`` architectures sampled from
    its :math:`P_\theta` (:func:`sample_architectures`, the networks the search finds) and ``random`` ones
    drawn uniformly (:func:`random_architectures`, with ``seed + 1``), each scored on the search's super net.

    Returns one dict per architecture, found ones first: ``kind`` (``"found"`` or ``"random"``), ``arch``
    (text form), ``latency`` (LAT from the search's table, in ``table.unit``) and ``acc`` (validation
    accuracy with the super net's weights and the batch norm recalibrated, :meth:`FBNetSearch.evaluate`).
    An architecture drawn twice is scored once.
    """
    if found < 0 or random < 0:
        raise ValueError(f"found and random must be >= 0, got {found} and {random}")
    table, theta = search.latency_table(), search.model.theta.detach()
    drawn = [("found", a) for a in sample_architectures(theta, found, candidates=search.model.candidates, seed=seed)]
    drawn += [("random", a) for a in random_architectures(random, theta.shape[0], candidates=search.model.candidates,
                                                          seed=seed + 1)]  # other noise than the found ones'
    scores: dict[FBNetArch, float] = {}
    points = []
    for kind, arch in drawn:
        if arch not in scores:
            scores[arch] = search.evaluate(arch)["acc"]
        points.append({"kind": kind, "arch": str(arch), "latency": table.latency(arch), "acc": scores[arch]})
    return points


# -- Figure 4 and the results table: the published architectures ----------------------------------------------------
#: FBNet-A, -B, -C, layer by layer. Source: the authors' released definitions (facebookresearch/
#: mobile-vision, ``mobile_cv/arch/fbnet_v2/fbnet_modeldef_cls_fbnet.py``), except FBNet-B's layer 11
#: (the second 64-channel layer): the released file has ``k5_e6``, but two independent readings of
#: the paper's Figure 4 (third-party re-implementations) have ``k5_e1``, and only ``k5_e1`` gives the
#: paper's 295M multiply-adds (296.6M; ``k5_e6``: 306.2M) and the authors' README's 4.8M parameters.
FBNET_A = FBNetArch.parse("skip-k3_e3-k3_e1-skip-skip-k5_e6-k3_e3-k5_e1-k3_e3-k5_e6-k5_e3-k5_e1_g2-k5_e6-"
                          "k3_e6-k5_e1_g2-k5_e3-k3_e1_g2-k5_e6-k5_e6-k5_e3-k5_e6-k5_e6")
FBNET_B = FBNetArch.parse("k3_e1-k3_e6-k5_e1-k3_e1-k3_e1-k5_e6-k5_e3-k3_e6-k5_e6-k5_e6-k5_e1-skip-k5_e3-"
                          "k5_e6-k3_e1-k5_e1-k5_e3-k5_e6-k5_e1-k5_e6-k5_e6-k3_e6")
FBNET_C = FBNetArch.parse("k3_e1-k3_e6-skip-k3_e1-k3_e1-k5_e6-k5_e3-k5_e6-k3_e6-k5_e6-k5_e3-k5_e6-k5_e6-"
                          "k5_e6-k5_e6-k5_e6-k5_e3-k5_e6-k5_e6-k5_e6-k5_e6-k3_e6")
#: Each published network's architecture and head width (FBNet-A's last 1x1 convolution has 1504
#: channels in the released definition, FBNet-B and -C Table 1's 1984).
PUBLISHED = {"fbnet_a": (FBNET_A, 1504), "fbnet_b": (FBNET_B, 1984), "fbnet_c": (FBNET_C, 1984)}
#: The paper's ImageNet results table ("Table 2" in issue #11 of this project): parameters and FLOPs (multiply-adds),
#: in millions, as printed.
PAPER_RESULTS = {"fbnet_a": {"params": 4.3, "flops": 249}, "fbnet_b": {"params": 4.5, "flops": 295},
                 "fbnet_c": {"params": 5.5, "flops": 375}}
#: The authors' model-zoo README (facebookresearch/mobile-vision): the released models' own counts.
AUTHORS_README = {"fbnet_a": {"params": 4.3, "flops": 249.4}, "fbnet_b": {"params": 4.8, "flops": 295.6},
                  "fbnet_c": {"params": 5.5, "flops": 383.0}}


def published_model(name: str, *, num_classes: int = 1000, image_size: int = 224) -> FBNet:
    """FBNet-A, -B or -C (``"fbnet_a"``, ...) on Table 1's macro-architecture, for ImageNet by default."""
    if name not in PUBLISHED:
        raise ValueError(f"unknown published FBNet {name!r}; choose one of: {', '.join(PUBLISHED)}")
    arch, head = PUBLISHED[name]
    return FBNet(arch, imagenet_macro(head_channels=head, num_classes=num_classes, image_size=image_size))
