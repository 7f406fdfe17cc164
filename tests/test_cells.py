"""The discrete-cell evaluation network (nas_tutorial.cells)."""

import pytest
import torch

from nas_tutorial import cells
from nas_tutorial.genotypes import DARTS_V1, DARTS_V2, Genotype

pytestmark = pytest.mark.usefixtures("one_thread")


def test_paper_parameter_count_of_darts_v2():
    # Liu et al. (2019), Table 1: DARTS (second order) + cutout, 3.3M parameters (auxiliary head excluded)
    model = cells.NetworkCIFAR(DARTS_V2, channels=36, num_classes=10, layers=20, auxiliary=True)
    count = cells.parameter_count(model)
    print(f"DARTS V2, 36 channels, 20 cells: {count:,} parameters without the auxiliary head")
    assert 3.25e6 <= count <= 3.40e6
    assert round(count / 1e6, 1) == 3.3
    assert count == 3_349_342  # the authors' code reports 3.349342 MB for this network
    assert sum(p.numel() for p in model.parameters()) > count  # the auxiliary head exists and is excluded


def test_reduction_cells_at_one_and_two_thirds():
    model = cells.NetworkCIFAR(DARTS_V1, channels=4, layers=8, auxiliary=False)
    assert [i for i, c in enumerate(model.cells) if c.reduction] == [2, 5]
    assert cells.reduction_layers(20) == (6, 13)
    with pytest.raises(ValueError, match="layers must be positive"):
        cells.reduction_layers(0)


def test_forward_shapes_auxiliary_and_eval_mode():
    model = cells.NetworkCIFAR(DARTS_V2, channels=4, num_classes=7, layers=3, auxiliary=True, drop_path_prob=0.2)
    model.train()
    logits, aux = model(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 7) and aux.shape == (2, 7)
    logits, aux = model(torch.randn(2, 3, 32, 32))  # 8x8 at the auxiliary head: the paper's pooling
    assert aux.shape == (2, 7)
    model.eval()
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 7)


def test_any_genotype_builds_a_network():
    # a 3-node genotype that concatenates only two nodes and reads the same input twice (ENAS style)
    genotype = Genotype(normal=[("sep_conv_5x5", 1), ("sep_conv_5x5", 1), ("avg_pool_3x3", 0), ("skip_connect", 2),
                                ("conv_7x1_1x7", 3), ("max_pool_3x3", 0)], normal_concat=[3, 4],
                        reduce=[("max_pool_3x3", 0), ("sep_conv_7x7", 1), ("skip_connect", 2), ("dil_conv_5x5", 1),
                                ("avg_pool_3x3", 3), ("skip_connect", 2)], reduce_concat=[2, 3, 4])
    model = cells.NetworkCIFAR(genotype, channels=4, layers=3, auxiliary=False).eval()
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    assert model.cells[0].out_channels == 2 * 4 and model.cells[1].out_channels == 3 * 8


def test_bad_genotype_is_a_clear_error():
    with pytest.raises(ValueError, match="out of range"):
        Genotype(normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 2)], normal_concat=[2],
                 reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1)], reduce_concat=[2])
    with pytest.raises(ValueError, match="unknown operation"):
        Genotype(normal=[("conv_9x9", 0), ("sep_conv_3x3", 1)], normal_concat=[2],
                 reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1)], reduce_concat=[2])


def test_drop_path_keeps_the_expectation_and_spares_identity():
    x = torch.ones(20000, 1, 1, 1)
    y = cells.drop_path(x, 0.3, generator=torch.Generator().manual_seed(0))
    assert torch.unique(y).tolist() == [0.0, pytest.approx(1 / 0.7)]
    assert abs(y.mean().item() - 1.0) < 0.03
    assert cells.drop_path(x, 0.0) is x
    with pytest.raises(ValueError):
        cells.drop_path(x, 1.0)
    # identity edges are never dropped: a cell of skip connections is deterministic in training mode
    skips = Genotype(normal=[("skip_connect", 0), ("skip_connect", 1)] * 2, normal_concat=[2, 3],
                     reduce=[("skip_connect", 0), ("skip_connect", 1)] * 2, reduce_concat=[2, 3])
    cell = cells.Cell(skips, 4, 4, 4, reduction=False, reduction_prev=False).train()
    cell.drop_path_prob = 0.5
    s = torch.randn(3, 4, 8, 8)
    torch.testing.assert_close(cell(s, s), cell(s, s))


def test_drop_path_schedule_is_linear():
    model = cells.NetworkCIFAR(DARTS_V2, channels=4, layers=3, auxiliary=False)
    hook = cells.drop_path_schedule(0.2)
    hook(model, 0, 10)
    assert model.drop_path_prob == 0.0
    hook(model, 5, 10)
    assert model.drop_path_prob == pytest.approx(0.1)
    assert all(c.drop_path_prob == pytest.approx(0.1) for c in model.cells)
