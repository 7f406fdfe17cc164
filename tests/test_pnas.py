"""PNAS: the cell space and its counts, expansion, the surrogates, the progressive search, PNASNet-5."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from nas_tutorial import pnas
from nas_tutorial.cells import NetworkCIFAR, parameter_count
from nas_tutorial.evaluators import Evaluator, FailOn, InProcessEvaluator, ProcessPoolEvaluator, describe_fitness
from nas_tutorial.genotypes import Genotype, enumerate_cells
from nas_tutorial.ops import OP_FAMILY, OPS
from nas_tutorial.pnas import PNAS_OPS, PNASConfig, PNASSearch

pytestmark = pytest.mark.usefixtures("one_thread")


# -- the space ------------------------------------------------------------------------------------------------
def test_the_eight_operations_are_registered_and_are_the_papers_kinds():
    assert len(PNAS_OPS) == len(set(PNAS_OPS)) == 8 and set(PNAS_OPS) <= set(OPS)
    families = sorted(OP_FAMILY[op] for op in PNAS_OPS)
    assert families == ["dilated", "factorized", "identity", "pool", "pool", "separable", "separable", "separable"]


def test_block_counts_by_formula_and_by_enumeration():
    for b in (1, 2):
        blocks = pnas.block_choices(b)
        assert len(blocks) == len(set(blocks)) == pnas.num_block_choices(b)
        # without the symmetric duplicates, (n + 1) n / 2; with them n^2 (n = (b + 1) |O|)
        ordered = {(e, f) for e in {x for blk in blocks for x in blk} for f in {x for blk in blocks for x in blk}}
        assert len(ordered) == pnas.num_block_choices(b, symmetric=False) == ((b + 1) * 8) ** 2
    assert pnas.num_block_choices(1, symmetric=False) == 256 and pnas.num_block_choices(1) == 136  # the paper
    assert pnas.num_block_choices(2) == 300


def test_cell_counts_by_formula_and_by_enumeration():
    for b in (1, 2):
        cells = pnas.all_cells(b)
        assert len(cells) == len(set(cells)) == pnas.num_cells(b)  # 136, 40800
        ordered = enumerate_cells(b, PNAS_OPS, distinct_inputs=False)  # the shared brute force
        assert len(ordered) == pnas.num_cells(b, symmetric=False)  # 256, 147456
        assert {pnas.check_cell(c) for c in ordered} == set(cells)  # mirror images collapse onto our cells
    assert pnas.num_cells(2) == 136 * 300 and pnas.num_cells(2, symmetric=False) == 256 * 576
    # the paper's B = 5: |B_{1:5}| = 5.6e14; 136 unique one-block cells; ~1e12 "unique" is not
    # reached by the within-block symmetry alone (2.1e13)
    assert f"{pnas.num_cells(5, symmetric=False):.1e}" == "5.6e+14"
    assert f"{pnas.num_cells(5):.1e}" == "2.1e+13"
    assert PNASConfig().models_trained() == 136 + 4 * 256 == 1160


def test_expansion_keeps_the_parent_and_equals_the_enumeration():
    rng = np.random.default_rng(0)
    for b in (1, 2, 3):
        parent = pnas.random_cells(b, 1, seed=int(rng.integers(100)))[0]
        children = pnas.expand(parent)
        assert len(children) == len(set(children)) == pnas.num_block_choices(b + 1)
        assert all(len(c) == b + 1 and c[:b] == parent for c in children)
    every = [child for parent in pnas.all_cells(1) for child in pnas.expand(parent)]
    assert len(every) == len(set(every)) and set(every) == set(pnas.all_cells(2))


def test_cells_as_genotypes_round_trip_and_concatenate_as_chosen():
    cell = pnas.check_cell([[("max_pool_3x3", 1), ("sep_conv_3x3", 0)], [("skip_connect", 2), ("sep_conv_5x5", 0)],
                            [("avg_pool_3x3", 1), ("sep_conv_3x3", 1)]])
    assert cell[0] == (("sep_conv_3x3", 0), ("max_pool_3x3", 1))  # canonical order: by input, then name
    g = pnas.cell_genotype(cell)
    assert g.normal == g.reduce and g.normal_concat == (2, 3, 4)
    assert pnas.cell_genotype(cell, concat="loose_ends").normal_concat == (3, 4)  # block 1 is read by block 2
    assert pnas.parse_cell(str(g)) == cell and pnas.cell_from_genotype(Genotype.from_json(g.to_json())) == cell
    assert pnas.check_cell([list(reversed(block)) for block in cell]) == cell  # a + b == b + a


@pytest.mark.parametrize("call, message", [
    (lambda: pnas.check_cell([[("sep_conv_9x9", 0), ("skip_connect", 1)]]),
     "block 1: unknown operation 'sep_conv_9x9'"),
    (lambda: pnas.check_cell([[("skip_connect", 0), ("skip_connect", 2)]]), "block 1: input 2 is out of range"),
    (lambda: pnas.check_cell([[("skip_connect", 0)]]), "block 1 must be two"),
    (lambda: pnas.check_cell([]), "at least one block"),
    (lambda: pnas.check_cell("sep_conv_3x3"), "a cell must be a sequence of blocks"),
    (lambda: pnas.parse_cell("Genotype(normal=[('sep_conv_3x3', 0)"), "not valid Python syntax"),
    (lambda: pnas.parse_cell("Cell(0, 1)"), "genotype text must look like Genotype"),
    (lambda: pnas.cell_from_genotype(pnas.PNASNET5.__class__(
        normal=pnas.PNASNET5.normal, normal_concat=[2], reduce=pnas.PNASNET5.normal[:2], reduce_concat=[2])),
     "'normal' and 'reduce' fields must be equal"),
    (lambda: pnas.parse_cell(str(pnas.cell_genotype(pnas.all_cells(1)[0])).replace("sep_conv_3x3", "dil_conv_5x5")),
     "unknown operation 'dil_conv_5x5'; choose one of"),
    (lambda: pnas.block_choices(0), "b must be an integer >= 1, got 0"),
    (lambda: pnas.encode(pnas.random_cells(1, 1) + pnas.random_cells(2, 1)), "cells of one length"),
])
def test_bad_cells_are_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- the published cell ----------------------------------------------------------------------------------------
def test_pnasnet5_is_the_released_cell_and_has_the_papers_parameter_count():
    cell = pnas.cell_from_genotype(pnas.PNASNET5)
    assert len(cell) == 5 and pnas.PNASNET5.normal_concat == (2, 3, 4, 5, 6)  # all five blocks, as released
    assert [op for op, _ in pnas.PNASNET5.normal] == ["sep_conv_5x5", "max_pool_3x3", "sep_conv_7x7", "max_pool_3x3",
                                                      "sep_conv_5x5", "sep_conv_3x3", "sep_conv_3x3", "max_pool_3x3",
                                                      "sep_conv_3x3", "skip_connect"]
    assert pnas.cell_genotype(cell, concat="loose_ends").normal_concat == (2, 3, 5, 6)  # block 3 is read by block 4
    count = pnas.paper_parameter_count()  # N = 3, F = 48: 9 cells, without the auxiliary head
    assert count == 3_176_602 and round(count / 1e6, 1) == 3.2  # the paper's CIFAR-10 table: 3.2M
    # NASNet's count, N normal cells per stack plus two reduction cells (11 in all), would not match
    assert parameter_count(NetworkCIFAR(pnas.PNASNET5, 48, 10, 11, auxiliary=False)) == 4_271_002
    model = pnas.build_network(pnas.PNASNET5, cells_per_stack=1, channels=8)
    assert len(model.cells) == 3 and model(torch.zeros(2, 3, 16, 16)).shape == (2, 10)


# -- the surrogates --------------------------------------------------------------------------------------------
def _mixed_cells(n, seed):
    return [c for b in (1, 2, 3) for c in pnas.random_cells(b, n, seed=10 * seed + b)]


def _toy(cells):
    return [pnas.toy_fitness(pnas.cell_genotype(c)) for c in cells]


@pytest.mark.parametrize("kind", ["lstm", "mlp"])
def test_a_cells_prediction_does_not_depend_on_its_batch(kind):
    s = pnas.Surrogate(kind, num_blocks=3, ensemble_size=2, hidden_size=16, embedding_size=8, seed=0)
    cells = pnas.random_cells(1, 5) + pnas.random_cells(3, 7, seed=1) + pnas.random_cells(2, 6, seed=2)
    together = s.predict(cells)
    alone = np.array([s.predict([c])[0] for c in cells])
    backwards = s.predict(cells[::-1])[::-1]
    small_batches = s.predict(cells, batch_size=2)
    for other in (alone, backwards, small_batches):
        np.testing.assert_allclose(together, other, rtol=1e-6, atol=1e-7)  # float32 sums of other sizes
    assert together.shape == (18,) and ((0 < together) & (together < 1)).all()
    # the LSTM reads 4b tokens: padding a one-block cell with a second block changes what it sees
    inputs, ops = pnas.encode(cells[:1])
    assert inputs.shape == ops.shape == (1, 1, 2) and s(inputs, ops).shape == (2, 1)


@pytest.mark.parametrize("kind", ["lstm", "mlp"])
def test_surrogate_learns_a_toy_target_and_is_seeded(kind):
    train, test = _mixed_cells(40, 0), _mixed_cells(40, 1)
    s = pnas.Surrogate(kind, num_blocks=3, ensemble_size=2, hidden_size=16, embedding_size=16, seed=0)
    before = pnas.spearman(s.predict(test), _toy(test))
    l1 = s.fit(train, _toy(train), epochs=30, seed=0)
    after = pnas.spearman(s.predict(test), _toy(test))
    # held-out cells of 1-3 blocks, measured over seeds: trained LSTM 0.85-0.91, MLP 0.92-0.96 (seeds 0-3);
    # untrained -0.54..0.51 (LSTM) and -0.27..0.19 (MLP) (seeds 0-5)
    assert after > 0.75 and after > before + 0.3 and l1 < 0.05
    again = pnas.Surrogate(kind, num_blocks=3, ensemble_size=2, hidden_size=16, embedding_size=16, seed=0)
    assert again.fit(train, _toy(train), epochs=30, seed=0) == l1
    np.testing.assert_array_equal(again.predict(test), s.predict(test))


def test_surrogate_defaults_are_the_papers_and_bad_input_is_named():
    s = pnas.Surrogate()  # LSTM, 5 members, embedding and hidden state of 100
    assert len(s.members) == 5 and s.members[0].lstm.hidden_size == 100
    assert s.members[0].input_embedding.num_embeddings == 6 and s.members[0].op_embedding.embedding_dim == 100
    with pytest.raises(ValueError, match="surrogate kind must be one of \\['lstm', 'mlp'\\], got 'gru'"):
        pnas.Surrogate("gru")
    with pytest.raises(ValueError, match="cell 0 has 4 blocks; this surrogate reads 1..3"):
        pnas.Surrogate(num_blocks=3, ensemble_size=1).predict(pnas.random_cells(4, 1))
    with pytest.raises(ValueError, match="as many accuracies as cells"):
        s.fit(pnas.random_cells(1, 3), [0.5])


def test_spearman():
    assert pnas.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)
    assert pnas.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert pnas.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1])
    assert pnas.spearman([1, 1], [1, 2]) is None and pnas.spearman([1], [2]) is None


# -- settings --------------------------------------------------------------------------------------------------
def test_config_defaults_are_the_papers():
    c = PNASConfig.paper()
    assert c == PNASConfig()
    assert (c.num_blocks, c.beam_size, c.ops, c.first_beam, c.concat, c.surrogate, c.ensemble_size,
            c.embedding_size, c.hidden_size, c.surrogate_lr) == (5, 256, PNAS_OPS, None, "all", "lstm", 5, 100, 100,
                                                                 0.01)
    f = PNASConfig.fast()
    assert (f.num_blocks, f.beam_size, f.first_beam) == (3, 8, 24) and f.models_trained() == 40


@pytest.mark.parametrize("changes, message", [
    (dict(beam_size=0), "field 'beam_size' must be an integer >= 1, got 0"),
    (dict(num_blocks=0), "field 'num_blocks' must be an integer >= 1, got 0"),
    (dict(ops=("sep_conv_3x3", "conv_9x9")), "field 'ops': unknown operation 'conv_9x9'"),
    (dict(ops=("none", "skip_connect")), "field 'ops' must not contain 'none'"),
    (dict(ops=()), "field 'ops' must be a non-empty tuple"),
    (dict(first_beam=137), "field 'first_beam' must be None \\(all of B_1\\) or an integer in 1..136"),
    (dict(concat="unused"), "field 'concat' must be one of \\['all', 'loose_ends'\\], got 'unused'"),
    (dict(surrogate="gp"), "field 'surrogate' must be one of \\['lstm', 'mlp'\\]"),
    (dict(surrogate_lr=0.0), "field 'surrogate_lr' must be a positive number"),
    (dict(finetune_data="some"), "field 'finetune_data' must be 'new' or 'all'"),
])
def test_impossible_configs_are_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        PNASConfig(**changes)


# -- the search ------------------------------------------------------------------------------------------------
def _strip(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def _cfg(**changes):
    return PNASConfig.fast(**{**dict(num_blocks=3, beam_size=4, first_beam=10, ensemble_size=2, hidden_size=16,
                                     embedding_size=16, surrogate_epochs=10), **changes})


def test_search_follows_algorithm_1_and_repeats_with_the_same_seed():
    cfg = _cfg()
    s = PNASSearch(cfg, pnas.toy_fitness)
    records = s.run()
    assert _strip(pnas.search(cfg, pnas.toy_fitness)) == _strip(records)
    assert _strip(pnas.search(cfg.replace(seed=1), pnas.toy_fitness)) != _strip(records)
    assert [r["b"] for r in records] == [1, 2, 3] and [len(r["beam"]) for r in records] == [10, 4, 4]
    assert [r["num_expansions"] for r in records] == [136, 10 * 300, 4 * 528]
    assert [r["trained"] for r in records] == [10, 14, 18] == list(np.cumsum([r["new_evaluations"] for r in records]))
    assert records[0]["spearman"] is None and all(-1 <= r["spearman"] <= 1 for r in records[1:])
    for previous, r in zip(records, records[1:]):
        parents = {pnas.parse_cell(e["arch"]) for e in previous["beam"]}
        predicted = [e["predicted"] for e in r["beam"]]
        assert predicted == sorted(predicted, reverse=True)  # the top K of the predictions, best first
        assert r["expansion_quantiles"][-1] == predicted[0]  # no expansion predicted above the kept best
        for e in r["beam"]:
            cell = pnas.parse_cell(e["arch"])
            assert len(cell) == r["b"] and cell[:-1] in parents
            assert e["accuracy"] == pnas.toy_fitness(Genotype.parse(e["arch"])) and e["error"] is None
    for r in records:
        best = max(r["beam"], key=lambda e: e["accuracy"])
        assert (r["best_arch"], r["best_score"]) == (best["arch"], best["accuracy"])
        assert math.isfinite(r["surrogate_l1"]) and r["failed"] == 0
    assert s.best() == (Genotype.parse(records[-1]["best_arch"]), records[-1]["best_score"])
    assert s.trainings == len(s.accuracy) == 18  # every cell trained once


def test_progressive_search_beats_random_cells_on_the_toy_fitness():
    beam_means, random_means, bests, random_bests = [], [], [], []
    for seed in range(3):  # measured: final beam mean 0.68-0.76 against random 0.52-0.55
        records = pnas.search(_cfg(beam_size=8, first_beam=24, hidden_size=32, embedding_size=32,
                                   surrogate_epochs=20, seed=seed), pnas.toy_fitness)
        cells = pnas.random_cells(3, records[-1]["trained"], seed=seed)  # as many networks, at random
        scores = _toy(cells)
        beam_means.append(records[-1]["mean_accuracy"])
        random_means.append(np.mean(scores))
        bests.append(records[-1]["best_score"])
        random_bests.append(max(scores))
    assert min(beam_means) > max(random_means) + 0.1
    assert np.mean(bests) > np.mean(random_bests)


def test_in_process_and_process_pool_give_the_same_records():
    cfg = _cfg(num_blocks=2)
    reference = pnas.search(cfg, InProcessEvaluator(pnas.toy_fitness))
    with ProcessPoolEvaluator(pnas.toy_fitness, workers=2) as pool:
        assert _strip(pnas.search(cfg, pool)) == _strip(reference)


def test_resume_after_whole_steps(tmp_path):
    cfg = _cfg()
    full = pnas.search(cfg, pnas.toy_fitness)
    path = tmp_path / "pnas.pt"
    assert len(pnas.search(cfg, pnas.toy_fitness, checkpoint=path, stop_after=1)) == 1
    assert _strip(pnas.search(cfg, pnas.toy_fitness, checkpoint=path)) == _strip(full)
    with pytest.raises(ValueError, match="other settings: config.beam_size=4 \\(now 5\\)"):
        pnas.search(cfg.replace(beam_size=5), pnas.toy_fitness, checkpoint=path)
    with pytest.raises(ValueError, match="context.fitness.type='nas_tutorial.pnas.toy_fitness' \\(now "):
        pnas.search(cfg, FailOn(("x",), pnas.toy_fitness), checkpoint=path)


class _PowerCut(Evaluator):
    """Evaluates ``limit`` candidates, then fails like a machine switched off mid-beam."""

    def __init__(self, fitness_fn, limit):
        self.fitness_fn, self.limit, self.calls = fitness_fn, limit, 0

    def evaluate(self, candidates, *, on_result=None):
        inner = InProcessEvaluator(self.fitness_fn)
        for i, c in enumerate(candidates):
            if self.calls == self.limit:
                raise KeyboardInterrupt("power cut")
            self.calls += 1
            on_result(i, inner.evaluate([c])[0])


@pytest.mark.parametrize("limit", [3, 10, 12])  # inside beam 1; after beam 1 (fitted); inside beam 2
def test_resume_mid_beam_loses_no_evaluation(tmp_path, limit):
    cfg = _cfg()
    reference = PNASSearch(cfg, pnas.toy_fitness)
    full = reference.run()
    path = tmp_path / "pnas.pt"
    cut = _PowerCut(pnas.toy_fitness, limit=limit)
    with pytest.raises(KeyboardInterrupt):
        PNASSearch(cfg, cut, checkpoint=path).run()
    counting = _PowerCut(pnas.toy_fitness, limit=10**9)
    resumed = PNASSearch(cfg, counting, checkpoint=path)
    assert resumed.resume() and resumed.trainings == limit  # the finished evaluations survived the crash
    assert _strip(resumed.run()) == _strip(full)
    assert cut.calls + counting.calls == reference.trainings == 18  # nothing trained twice


def test_a_failed_evaluation_is_recorded_and_the_search_goes_on():
    cfg = _cfg(num_blocks=2)
    first = PNASSearch(cfg, pnas.toy_fitness).run(stop_after=1)[0]["beam"]
    bad = first[0]["arch"]
    records = pnas.search(cfg, FailOn((bad,), pnas.toy_fitness))
    failed = [e for e in records[0]["beam"] if e["arch"] == bad]
    assert failed[0]["accuracy"] is None and "simulated failure" in failed[0]["error"]
    assert records[0]["failed"] == 1 and len(records) == 2 and records[1]["failed"] == 0
    # a failed cell is still expanded (its structure is fine); only the surrogate does not learn from it
    assert records[1]["num_expansions"] == 10 * 300


def test_mlp_surrogate_and_finetuning_on_everything_run():
    records = pnas.search(_cfg(surrogate="mlp", finetune_data="all", concat="loose_ends"), pnas.toy_fitness)
    assert len(records) == 3 and all(r["surrogate_l1"] < 0.2 for r in records)
    g = Genotype.parse(records[-1]["best_arch"])
    assert g.normal_concat == pnas.cell_genotype(pnas.parse_cell(str(g)), concat="loose_ends").normal_concat


def test_beam_points_is_the_widget_callback():
    records = pnas.search(_cfg(num_blocks=2), pnas.toy_fitness)
    one, two = pnas.beam_points(records, 1), pnas.beam_points(records, 2)
    assert np.isnan(one["predicted"]).all() and one["threshold"] is None and len(one["measured"]) == 10
    assert two["threshold"] == min(e["predicted"] for e in records[1]["beam"])
    assert two["spearman"] == records[1]["spearman"] and len(two["archs"]) == 4
    with pytest.raises(ValueError, match="b must be one of the finished steps \\[1, 2\\], got 3"):
        pnas.beam_points(records, 3)


def test_toy_fitness_is_deterministic_and_bounded():
    values = _toy(pnas.all_cells(1))
    assert min(values) >= 0.2 and max(values) <= 0.9 and len(set(values)) > 10
    assert pnas.toy_fitness(str(pnas.PNASNET5)) == pnas.toy_fitness(pnas.PNASNET5)


class _CrashAroundFit(PNASSearch):
    """Crashes once at step ``b = 1``, just before or just after the surrogate's fit is on disk."""

    def __init__(self, *args, when, **kwargs):
        super().__init__(*args, **kwargs)
        self.when = when

    def _fit(self, b):
        if self.when == "before":
            raise KeyboardInterrupt("crash before the fit")
        super()._fit(b)
        if self.when == "after":
            raise KeyboardInterrupt("crash after the fit, before the step's record")


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_around_the_surrogate_fit_neither_skips_nor_repeats_it(tmp_path, when):
    cfg = _cfg(num_blocks=2)
    full = pnas.search(cfg, pnas.toy_fitness)
    path = tmp_path / "pnas.pt"
    with pytest.raises(KeyboardInterrupt):
        _CrashAroundFit(cfg, pnas.toy_fitness, checkpoint=path, when=when).run()
    resumed = PNASSearch(cfg, pnas.toy_fitness, checkpoint=path)
    assert resumed.resume() and resumed.records == [] and resumed.fitted == (1 if when == "after" else 0)
    assert _strip(resumed.run()) == _strip(full)


def test_a_search_that_trains_networks_resumes_and_names_its_fitness(tmp_path, data_root):
    fitness = pnas.training_fitness(str(data_root), cells_per_stack=1, channels=4, epochs=1, train_size=40,
                                    image_size=8, batch_size=20)
    described = describe_fitness(fitness)
    assert "0x" not in str(described) and described["build"] == {"cells_per_stack": 1, "channels": 4,
                                                                  "num_classes": 10}
    cfg = _cfg(num_blocks=2, beam_size=2, first_beam=3)
    path = tmp_path / "pnas.pt"
    assert len(pnas.search(cfg, fitness, checkpoint=path, stop_after=1)) == 1
    records = pnas.search(cfg, fitness, checkpoint=path)
    assert [r["trained"] for r in records] == [3, 5] and all(0 <= r["best_score"] <= 1 for r in records)
    assert _strip(records) == _strip(pnas.search(cfg, fitness))
    with pytest.raises(ValueError, match="context.fitness.epochs=1 \\(now 2\\)"):
        pnas.search(cfg, dataclasses.replace(fitness, epochs=2), checkpoint=path)
