"""Bad input across the library, one table: each case names the call, the error type and the message a user sees."""

import numpy as np
import pytest
import torch

from nas_tutorial import cells, darts, enas, enas_space, genetic_cnn, pnas, training
from nas_tutorial.genotypes import DARTS_V2, Genotype

CASES = {
    "supernet with no channels": (lambda: darts.SearchNetwork(channels=0), ValueError,
                                  "channels, layers and num_nodes must be positive, got 0"),
    "supernet with only 'none'": (lambda: darts.SearchNetwork(4, 10, 3, ops=("none",)), ValueError,
                                  "at least one operation other than 'none'"),
    "unknown operation": (lambda: darts.SearchNetwork(4, 10, 3, ops=("sep_conv_3x3", "conv_9x9")), ValueError,
                          "conv_9x9"),
    "evaluation network with no channels": (lambda: cells.NetworkCIFAR(DARTS_V2, channels=0), ValueError,
                                            "channels and num_classes must be positive"),
    "evaluate on no images": (lambda: training.evaluate(training.SmallCNN(), torch.zeros(0, 3, 8, 8),
                                                        torch.zeros(0, dtype=torch.long)), ValueError,
                              "non-empty set of images"),
    "fit for no epochs": (lambda: training.fit(training.SmallCNN(), None, (None, None), epochs=0), ValueError,
                          "epochs must be >= 1"),
    "genotype input out of range": (lambda: Genotype(normal=[("sep_conv_3x3", np.int64(5))] * 2, normal_concat=[2],
                                                     reduce=DARTS_V2.reduce, reduce_concat=[2]), ValueError,
                                    "input node 5 is out of range; node 2 can only read nodes 0..1"),
    "genotype concat as text": (lambda: Genotype(normal=DARTS_V2.normal, normal_concat="2345",
                                                 reduce=DARTS_V2.reduce, reduce_concat=[2]), ValueError,
                                "'normal_concat' must be a list of node indices"),
    "non-finite alpha": (lambda: darts.derive_genotype(torch.full((14, 8), float("nan")), torch.zeros(14, 8)),
                         ValueError, "alpha_normal has non-finite values"),
    "genetic config with a one-node stage": (lambda: genetic_cnn.GAConfig(stage_sizes=(3, 1)), ValueError,
                                             "'stage_sizes': stage 2 must have an integer K_s >= 2"),
    "ENAS macro architecture with an unknown operation": (
        lambda: enas_space.MacroArch(ops=["conv_3x3", "conv_9x9"], skips=[[], [0]]), ValueError,
        "layer 1: unknown operation 'conv_9x9'; choose one of"),
    "ENAS cell string cut short": (lambda: enas_space.from_enas_arc("0 2 0", "0 0 0 0"), ValueError,
                                   "needs 4 numbers per block"),
    "ENAS child of the wrong size": (lambda: enas_space.SharedCellNetwork(4, 10, 2, num_blocks=2)(
        torch.zeros(2, 3, 8, 8), enas_space.ENAS_MICRO), ValueError, "genotype has 5 blocks per cell"),
    "ENAS config with macro operations in the micro space": (
        lambda: enas.EnasConfig(ops=("conv_3x3",)), ValueError, "field 'ops' must be a non-empty tuple of the micro"),
    "PNAS config with no beam": (lambda: pnas.PNASConfig(beam_size=0), ValueError,
                                 "field 'beam_size' must be an integer >= 1, got 0"),
    "search config that is not a config": (lambda: darts.DartsSearch({"epochs": 1}, None), TypeError,
                                           "config must be a nas_tutorial.search.Config"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_a_clear_error(name):
    call, error, message = CASES[name]
    with pytest.raises(error, match=message):
        call()
