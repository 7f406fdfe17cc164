"""Bad input across the library, one table: each case names the call, the error type and the message a user sees."""

import numpy as np
import pytest
import torch

from nas_tutorial import cells, darts, genetic_cnn, training
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
    "search config that is not a config": (lambda: darts.DartsSearch({"epochs": 1}, None), TypeError,
                                           "config must be a nas_tutorial.search.Config"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_a_clear_error(name):
    call, error, message = CASES[name]
    with pytest.raises(error, match=message):
        call()
