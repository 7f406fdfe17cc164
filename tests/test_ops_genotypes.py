import json

import pytest
import torch

from nas_tutorial import genotypes as G
from nas_tutorial import ops


@pytest.mark.parametrize("name", sorted(ops.OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_every_operation_keeps_channels_and_applies_stride(name, stride):
    op = ops.make_op(name, 8, stride)
    out = op(torch.randn(2, 8, 8, 8))
    assert out.shape == (2, 8, 8 // stride, 8 // stride)


def test_every_operation_has_a_family_with_a_colour():
    from nas_tutorial.drawing import FAMILY_COLOR

    assert set(ops.OP_FAMILY) == set(ops.OPS) and set(ops.OP_FAMILY.values()) <= set(FAMILY_COLOR)
    assert {ops.OP_FAMILY[n] for n in ("conv_1x1", "conv_3x3", "conv_1x3_3x1", "avg_pool_2x2")} == {
        "conv", "factorized", "pool"}


@pytest.mark.parametrize("name", ["skip_connect", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "dil_conv_5x5",
                                  "conv_7x1_1x7", "conv_1x3_3x1", "max_pool_2x2", "avg_pool_5x5"])
def test_odd_sizes_are_halved_rounding_up(name):
    assert ops.make_op(name, 4, 2)(torch.randn(1, 4, 7, 7)).shape == (1, 4, 4, 4)


def test_zero_is_zero_and_skip_is_identity():
    x = torch.randn(2, 4, 6, 6)
    assert torch.count_nonzero(ops.make_op("none", 4)(x)) == 0
    assert torch.equal(ops.make_op("skip_connect", 4)(x), x)


def test_unknown_operation_is_named():
    with pytest.raises(ValueError, match="unknown operation 'conv_9x9'.*sep_conv_3x3"):
        ops.make_op("conv_9x9", 4)
    with pytest.raises(ValueError, match="unknown operation 'conv_5x5'; choose one of: .*conv_3x3"):
        ops.make_op("conv_5x5", 4)  # ENAS's macro-space convolution, not a cell operation
    with pytest.raises(ValueError, match="stride"):
        ops.make_op("sep_conv_3x3", 4, stride=3)


def test_worked_example_separable_convolution_counts():
    # a 3x3 convolution from 16 to 32 channels vs its depthwise-separable version
    assert ops.conv_weight_count(16, 32, 3) == 4_608
    assert ops.separable_weight_count(16, 32, 3) == 656 == 16 * 3 * 3 + 16 * 32
    plain = torch.nn.Conv2d(16, 32, 3, bias=False)
    separable = torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, groups=16, bias=False),
                                    torch.nn.Conv2d(16, 32, 1, bias=False))
    assert sum(p.numel() for p in plain.parameters()) == 4_608
    assert sum(p.numel() for p in separable.parameters()) == 656


def test_factorized_reduction_halves_resolution():
    fr = ops.FactorizedReduce(6, 8)
    assert fr(torch.randn(2, 6, 8, 8)).shape == (2, 8, 4, 4)
    with pytest.raises(ValueError, match="even"):
        ops.FactorizedReduce(6, 7)


@pytest.mark.parametrize("genotype", [G.DARTS_V1, G.DARTS_V2])
def test_text_and_json_round_trips(genotype):
    assert G.Genotype.parse(str(genotype)) == genotype
    assert G.Genotype.from_json(genotype.to_json()) == genotype
    assert json.loads(genotype.to_json())["normal_concat"] == [2, 3, 4, 5]
    assert hash(genotype) == hash(G.Genotype.parse(str(genotype)))
    assert genotype.num_nodes == 4


def test_darts_code_base_repr_parses():
    # the namedtuple repr printed by the authors' code, with lists and range-like concat
    text = ("Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1)], normal_concat=[2], "
            "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])")
    assert G.Genotype.parse(text).normal == (("sep_conv_3x3", 0), ("skip_connect", 1))


@pytest.mark.parametrize("text, message", [
    ("Genotype(normal=[('sep_conv_3x3', 0), ('conv_9x9', 1)], normal_concat=[2], "
     "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])",
     "field 'normal', edge 1: unknown operation"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2], "
     "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])", "input node 2 is out of range"),
    ("Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=[2], "
     "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])", "two edges per intermediate node"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1)], normal_concat=[2, 3], "
     "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])", "normal_concat"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1)], normal_concat=[2])", "missing: \\['reduce'"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1)", "not valid Python syntax"),
    ("Cell(normal=[])", "must look like Genotype"),
    ("Genotype(normal=[('sep_conv_3x3' 0)], normal_concat=[2], reduce=[], reduce_concat=[2])", "syntax"),
    ("Genotype(normal=[sep_conv_3x3], normal_concat=[2], reduce=[], reduce_concat=[2])", "literal list"),
])
def test_malformed_genotypes_name_the_bad_field(text, message):
    with pytest.raises(ValueError, match=message):
        G.Genotype.parse(text)


def test_genotype_is_frozen():
    with pytest.raises(AttributeError):
        G.DARTS_V2.normal = ()


def test_cell_kind_checked():
    with pytest.raises(ValueError, match="'normal' or 'reduce'"):
        G.DARTS_V2.cell("other")


@pytest.mark.parametrize("num_nodes, num_ops", [(1, 1), (1, 2), (2, 2), (2, 3), (3, 2)])
@pytest.mark.parametrize("distinct", [True, False])
def test_count_closed_form_equals_enumeration(num_nodes, num_ops, distinct):
    names = tuple(sorted(ops.OPS))[:num_ops]
    assert G.count_cells(num_nodes, num_ops, distinct_inputs=distinct) == len(
        G.enumerate_cells(num_nodes, names, distinct_inputs=distinct))


def test_darts_space_size():
    # 7 non-zero operations, 4 nodes: about 1e9 cells, about 1e18 normal+reduction pairs (DARTS sec. 3)
    per_cell = G.count_cells(4, 7)
    assert per_cell == 1 * 3 * 6 * 10 * 7**8
    assert 1e18 < per_cell**2 < 1.1e18 * 1.1


def test_random_genotype_is_valid_seeded_and_varied():
    a, b = G.random_genotype(seed=1), G.random_genotype(seed=1)
    assert a == b and a.num_nodes == 4
    assert len({str(G.random_genotype(seed=s)) for s in range(20)}) == 20
    for pos in range(0, 8, 2):  # two distinct inputs per node, no `none`
        assert a.normal[pos][1] != a.normal[pos + 1][1]
    assert all(op != "none" for op, _ in a.normal + a.reduce)


def test_genotype_accepts_numpy_indices_and_the_logged_range_form():
    import numpy as np

    g = G.Genotype(normal=[(op, np.int64(i)) for op, i in G.DARTS_V2.normal], normal_concat=np.arange(2, 6),
                   reduce=G.DARTS_V2.reduce, reduce_concat=range(2, 6))
    assert g == G.DARTS_V2 and all(type(i) is int for _, i in g.normal)
    logged = str(G.DARTS_V2).replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)")
    assert G.Genotype.parse(logged) == G.DARTS_V2  # as the DARTS code's search logs print it
    with pytest.raises(ValueError, match="input node 0.5 is out of range"):
        G.Genotype(normal=[("sep_conv_3x3", 0.5)] * 2, normal_concat=[2], reduce=G.DARTS_V2.reduce,
                   reduce_concat=[2])


@pytest.mark.parametrize("value, expected", [(None, False), ("", False), ("0", False), ("off", False),
                                             ("1", True), ("true", True), ("YES", True), (" on ", True)])
def test_fast_flag_accepts_the_usual_values(value, expected):
    from nas_tutorial.utils import parse_flag

    assert parse_flag(value, "NAS_TUTORIAL_FAST") is expected


def test_fast_flag_refuses_anything_else():
    from nas_tutorial.utils import parse_flag

    with pytest.raises(ValueError, match="NAS_TUTORIAL_FAST must be 1/true/yes/on or 0/false/no/off, got 'fast'"):
        parse_flag("fast", "NAS_TUTORIAL_FAST")
