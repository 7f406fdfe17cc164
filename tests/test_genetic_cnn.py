"""Genetic CNN: the search space (encoding, decoding rules, counting, the network), the operators and the search."""

import itertools
import json

import numpy as np
import pytest
import torch

from nas_tutorial import genetic_cnn as gc
from nas_tutorial import genetic_cnn_space as space
from nas_tutorial.evaluators import Evaluator, FailOn, InProcessEvaluator, Trial, ones_fraction
from nas_tutorial.genetic_cnn import GAConfig, GeneticSearch
from nas_tutorial.genetic_cnn_space import Genome

PAPER_NODES = (3, 4, 5)


# -- encoding ---------------------------------------------------------------------------------------
def test_code_length_and_search_space_of_the_paper_setting():
    assert [space.stage_code_length(k) for k in PAPER_NODES] == [3, 6, 10]
    assert space.code_length(PAPER_NODES) == 19
    assert space.search_space_size(PAPER_NODES) == 524_288 == 2**19


def test_bit_order_is_the_papers():
    # first bit (v1, v2), then (v1, v3), (v2, v3), then (v1, v4), (v2, v4), (v3, v4), ...
    order = [(1, 2), (1, 3), (2, 3), (1, 4), (2, 4), (3, 4), (1, 5), (2, 5), (3, 5), (4, 5)]
    assert [space.bit_index(i, j) for i, j in order] == list(range(10))
    with pytest.raises(ValueError, match="1 <= i < j"):
        space.bit_index(2, 2)


def test_text_and_json_round_trip():
    g = Genome.parse("1-01|1-01-001|0-11-101-0001")
    assert g.stage_sizes == (3, 4, 5)
    assert str(g) == "1-01|1-01-001|0-11-101-0001"
    assert g.stage_bits(1) == (1, 0, 1, 0, 0, 1)
    assert Genome.from_json(g.to_json()) == g
    assert json.loads(g.to_json()) == {"stage_sizes": [3, 4, 5], "code": "1-01|1-01-001|0-11-101-0001"}
    assert Genome((3,), "101") == Genome((3,), (1, 0, 1)) == Genome((3,), np.array([1, 0, 1]))
    rng = np.random.default_rng(0)
    for _ in range(100):
        g = gc.random_genome(PAPER_NODES, rng)
        assert Genome.parse(str(g)) == g and hash(Genome.parse(str(g))) == hash(g)


@pytest.mark.parametrize("stage_sizes, bits, message", [
    ((3, 4), (1, 0, 1), "must have sum K_s\\(K_s-1\\)/2 = 9 bits"),
    ((3,), (1, 2, 0), "stage 1, bit 2 must be 0 or 1, got 2"),
    ((3,), (1, 0.5, 0), "stage 1, bit 2 must be 0 or 1"),
    ((3, 3), (1, 0, 0, 1, 0, "x"), "stage 2, bit 3 must be 0 or 1"),
    ((1, 3), (1, 0, 0), "stage 1 must have an integer K_s >= 2"),
    ((), (), "at least one stage"),
])
def test_invalid_genomes_are_clear_errors(stage_sizes, bits, message):
    with pytest.raises(ValueError, match=message):
        Genome(stage_sizes, bits)


@pytest.mark.parametrize("text, message", [
    ("1-1", "group 2 .* must have 2 bits"),
    ("1-01|1-0-001", "stage 2: group 2"),
    ("1-0a", "bits must be 0 or 1, got 'a'"),
    ("", "non-empty string"),
])
def test_invalid_text_is_a_clear_error(text, message):
    with pytest.raises(ValueError, match=message):
        Genome.parse(text)


# -- decoding rules -----------------------------------------------------------------------------------
def test_decoding_rules():
    # K=4, code 1-00-111: edges (1,2), (1,4), (2,4), (3,4); v1 and v3 have no predecessor, v4 no successor
    st = space.decode(Genome.parse("1-00-111"))[0]
    assert st.edges == ((1, 2), (1, 4), (2, 4), (3, 4))
    assert st.sources == (1, 3) and st.sinks == (4,) and st.dropped == ()
    assert st.parents(4) == (1, 2, 3)  # three parents: summed element-wise
    # an isolated node is dropped, not wired to the default nodes
    st = space.decode(Genome.parse("0-00-101"))[0]
    assert st.edges == ((1, 4), (3, 4)) and st.dropped == (2,) and st.sources == (1, 3) and st.sinks == (4,)
    assert st.num_convolutions() == 3 + 2
    # all bits zero: one convolution only (the default input node)
    st = space.decode(Genome.parse("0-00-000"))[0]
    assert st.empty and st.dropped == (1, 2, 3, 4) and st.num_convolutions() == 1


def test_encode_decode_round_trip_exhaustive_and_random():
    for bits in itertools.product((0, 1), repeat=space.code_length((3, 4))):
        g = Genome((3, 4), bits)
        assert space.encode(space.decode(g)) == g
    rng = np.random.default_rng(1)
    for _ in range(50):
        g = gc.random_genome(PAPER_NODES, rng)
        assert space.encode(space.decode(g)) == g
    with pytest.raises(ValueError, match="not a pair"):
        space.encode_stage(3, [(2, 1)])


def test_classic_shapes_are_encodable():
    chain = space.chain_genome(PAPER_NODES)
    assert str(chain) == "1-01|1-01-001|1-01-001-0001"
    for k, st in zip(PAPER_NODES, space.decode(chain), strict=True):
        assert st.edges == tuple((i, i + 1) for i in range(1, k)) and st.sources == (1,) and st.sinks == (k,)
    dense = space.all_ones_genome(PAPER_NODES)
    assert str(dense) == "1-11|1-11-111|1-11-111-1111"
    for k, st in zip(PAPER_NODES, space.decode(dense), strict=True):
        assert len(st.edges) == k * (k - 1) // 2 and st.sources == (1,) and st.sinks == (k,)


GOLDEN_STAGE = """digraph stage {
\trankdir=LR size="9,7"
\tnode [fontname=Helvetica fontsize=11 shape=box style=filled]
\tedge [fontname=Helvetica fontsize=9]
\tin [label=input fillcolor="#f4a6a6" style=filled]
\tv1 [label="v1: conv 5x5" fillcolor="#dde6f0" style=filled]
\tv2 [label="v2 (dropped)" fillcolor="#eeeeee" style="filled,dashed"]
\tv3 [label="v3: conv 5x5" fillcolor="#dde6f0" style=filled]
\tv4 [label="v4: conv 5x5" fillcolor="#dde6f0" style=filled]
\tout [label=output fillcolor="#a6d8a6" style=filled]
\tin -> v1 [label="" color="#808080" fontcolor="#808080"]
\tin -> v3 [label="" color="#808080" fontcolor="#808080"]
\tv1 -> v4 [label="" color="#d62728" fontcolor="#d62728"]
\tv3 -> v4 [label="" color="#d62728" fontcolor="#d62728"]
\tv4 -> out [label="" color="#808080" fontcolor="#808080"]
}
"""


def test_stage_drawing_is_deterministic_and_is_the_widget_callback():
    graph = space.stage_drawing(4, [0, 0, 0, 1, 0, 1])
    assert graph.source() == GOLDEN_STAGE
    assert space.decode(Genome.parse("0-00-101"))[0].graph().source() == GOLDEN_STAGE


def test_an_all_zero_stage_is_drawn_as_the_one_convolution_it_is():
    graph = space.stage_drawing(5, [0] * 10)
    names = [n for n, *_ in graph.nodes]
    assert names == ["in", "v1", "v2", "v3", "v4", "v5"] and not graph.edges  # no output node, no edge
    assert "whole stage" in graph.nodes[0][1] and all("dropped" in label for _, label, *_ in graph.nodes[1:])
    assert space.decode_stage(5, [0] * 10).num_convolutions() == 1


def test_network_graph_has_every_stage_pooling_and_the_classifier():
    g = space.network_graph(Genome.parse("1-01|0-00-000"))
    names = [n for n, *_ in g.nodes]
    assert names[0] == "image" and names[-1] == "head" and names.count("pool_1") == 1 and "pool_2" in names
    assert [c[0] for c in g.clusters] == ["stage_1", "stage_2"]
    assert ("image", "stage_1_in", "", "#808080") in g.edges
    assert ("stage_1_out", "pool_1", "", "#808080") in g.edges
    assert ("stage_2_in", "pool_2", "", "#808080") in g.edges  # an all-zero stage ends at its input node
    assert "subgraph cluster_stage_1" in g.source()
    assert g.source() == space.network_graph(Genome.parse("1-01|0-00-000")).source()  # deterministic


# -- same network, different codes ------------------------------------------------------------------
def _brute_force_key(stage):
    kept = stage.kept
    best = min(tuple(sorted((dict(zip(kept, p, strict=True))[i], dict(zip(kept, p, strict=True))[j])
                            for i, j in stage.edges))
               for p in itertools.permutations(range(len(kept))))
    return len(kept), best


def test_codes_that_decode_to_the_same_network():
    # v3 dropped, v2 dropped, v1 dropped: the same chain of two convolutions
    keys = {space.network_key(Genome.parse(c)) for c in ("1-00", "0-10", "0-01")}
    assert len(keys) == 1
    assert space.network_key(Genome.parse("1-00")) != space.network_key(Genome.parse("1-01"))
    # a bigger stage expresses a smaller one: same key across stage sizes
    assert space.network_key(Genome.parse("1-01")) == space.network_key(Genome.parse("1-01-000"))


@pytest.mark.parametrize("k, distinct", [(2, 2), (3, 6), (4, 31)])
def test_distinct_networks_by_enumeration(k, distinct):
    assert 2 ** space.stage_code_length(k) == sum(1 for _ in space.all_stage_codes(k))
    assert space.count_distinct_stages(k) == distinct
    # the canonical key groups codes exactly as a brute-force isomorphism test does
    ours, brute = {}, {}
    for bits in space.all_stage_codes(k):
        st = space.decode_stage(k, bits)
        ours.setdefault(space.network_key(Genome((k,), bits)), set()).add(bits)
        brute.setdefault(_brute_force_key(st), set()).add(bits)
    assert sorted(map(sorted, ours.values())) == sorted(map(sorted, brute.values()))


def test_distinct_networks_of_the_paper_space():
    assert space.count_distinct_stages(5) == 302
    assert space.count_distinct_networks(PAPER_NODES) == 6 * 31 * 302 == 56_172


# -- the network --------------------------------------------------------------------------------------
def test_network_shapes_and_convolution_count():
    for code in ("1-01|1-01-001", "1-11|1-11-111", "0-00|0-00-000", "0-01|0-00-101"):
        g = Genome.parse(code)
        model = space.GeneticCNN(g, (4, 8))
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
        convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        assert convs == sum(st.num_convolutions() for st in space.decode(g))
    with pytest.raises(ValueError, match="one width per stage"):
        space.GeneticCNN(Genome.parse("1-01"), (4, 8))


def test_summing_parents_matches_a_hand_computation():
    g = Genome.parse("1-10")  # v1 -> v2, v1 -> v3: v2 and v3 both feed the output node
    stage = space.Stage(space.decode(g)[0], 3, 4).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        x0 = stage.input_node(x)
        v1 = stage.nodes["1"](x0)
        expected = stage.output_node(stage.nodes["2"](v1) + stage.nodes["3"](v1))
        torch.testing.assert_close(stage(x), expected)


def test_training_fitness_is_deterministic(data_root):
    fitness = gc.training_fitness(str(data_root), channels=(4, 4), train_size=100, image_size=8, epochs=1,
                                  batch_size=25, torch_threads=1)
    g = Genome.parse("1-01|0-10")
    state = torch.get_rng_state()
    a, b = fitness(g), fitness(Trial(g, 0))
    assert torch.equal(state, torch.get_rng_state())  # the caller's random state is untouched
    assert a == b and 0.0 <= a["fitness"] <= 1.0 and a["params"] > 0


# -- genetic operations ---------------------------------------------------------------------------------
def test_stage_crossover_preserves_stage_boundaries():
    rng = np.random.default_rng(0)
    swapped_any = False
    for _ in range(200):
        a, b = gc.random_genome(PAPER_NODES, rng), gc.random_genome(PAPER_NODES, rng)
        c, d = gc.stage_crossover(a, b, rng, q_C=0.5)
        for s in range(3):
            pair = {a.stage_bits(s), b.stage_bits(s)}
            assert c.stage_bits(s) in pair and d.stage_bits(s) in pair
            assert sorted([c.stage_bits(s), d.stage_bits(s)]) == sorted([a.stage_bits(s), b.stage_bits(s)])
            swapped_any |= c.stage_bits(s) != a.stage_bits(s)
    assert swapped_any
    a, b = Genome.parse("1-11|1-11-111"), Genome.parse("0-00|0-00-000")
    assert gc.stage_crossover(a, b, rng, q_C=1.0) == (b, a)
    assert gc.stage_crossover(a, b, rng, q_C=0.0) == (a, b)


def test_interval_crossover_swaps_one_interval_and_can_cut_a_stage():
    rng = np.random.default_rng(0)
    a, b = space.all_ones_genome(PAPER_NODES), Genome(PAPER_NODES, (0,) * 19)
    cuts_inside_a_stage = False
    for _ in range(100):
        c, d = gc.interval_crossover(a, b, rng)
        swapped = [i for i in range(19) if c.bits[i] == 0]
        assert swapped == list(range(swapped[0], swapped[-1] + 1)) and len(swapped) >= 2  # one interval
        assert all(x + y == 1 for x, y in zip(c.bits, d.bits, strict=True))
        cuts_inside_a_stage |= any(0 < len(set(c.stage_bits(s))) and len(set(c.stage_bits(s))) == 2
                                   for s in range(3))
    assert cuts_inside_a_stage  # the seed text's operator does not respect stage boundaries


def test_mutation_flips_the_expected_fraction_of_bits():
    rng = np.random.default_rng(0)
    g = Genome(PAPER_NODES, (0,) * 19)
    n, q_M = 2000, 0.05
    flipped = sum(sum(gc.mutate(g, rng, q_M).bits) for _ in range(n))
    mean, sd = n * 19 * q_M, (n * 19 * q_M * (1 - q_M)) ** 0.5
    assert abs(flipped - mean) < 4 * sd  # 1900 +- 170
    assert gc.mutate(g, rng, 0.0) == g and sum(gc.mutate(g, rng, 1.0).bits) == 19


def test_roulette_frequencies_match_fitness_proportions():
    fitness = [0.10, 0.20, 0.30, 0.40, 0.25]
    p = gc.selection_probabilities(fitness)  # the paper: proportional to r - r_min
    np.testing.assert_allclose(p, np.array([0.0, 0.1, 0.2, 0.3, 0.15]) / 0.75)
    rng = np.random.default_rng(0)
    draws = 60_000
    counts = np.bincount(gc.roulette_select(fitness, rng, size=draws), minlength=5)
    assert counts[0] == 0  # the worst individual is always eliminated
    expected = p[1:] * draws
    chi2 = float(((counts[1:] - expected) ** 2 / expected).sum())
    assert chi2 < 16.27  # chi-square, 3 degrees of freedom, p = 0.001
    # the seed text's roulette: proportional to r itself
    q = gc.selection_probabilities(fitness, baseline="zero")
    counts = np.bincount(gc.roulette_select(fitness, rng, size=draws, baseline="zero"), minlength=5)
    chi2 = float(((counts - q * draws) ** 2 / (q * draws)).sum())
    assert chi2 < 18.47  # 4 degrees of freedom, p = 0.001


def test_roulette_edge_cases():
    np.testing.assert_allclose(gc.selection_probabilities([0.5, 0.5, 0.5]), [1 / 3] * 3)
    with pytest.raises(ValueError, match="finite"):
        gc.selection_probabilities([0.1, float("nan")])
    with pytest.raises(ValueError, match="baseline"):
        gc.selection_probabilities([0.1, 0.2], baseline="max")


def test_next_generation_follows_algorithm_1():
    rng = np.random.default_rng(0)
    pop = [gc.random_genome(PAPER_NODES, rng) for _ in range(20)]
    fitness = list(np.linspace(0.1, 0.9, 20))
    children, origins = gc.next_generation(pop, fitness, rng, GAConfig(p_C=0.5))
    assert len(children) == 20 and all(o["parent"] != 0 for o in origins)  # the worst never survives
    assert any(o["crossed"] for o in origins)
    assert not any(o["crossed"] and o["mutated"] for o in origins)  # the paper mutates non-crossover ones
    for child, o in zip(children, origins, strict=True):
        if not o["crossed"] and not o["mutated"]:
            assert child == pop[o["parent"]]
    _, origins = gc.next_generation(pop, fitness, rng, GAConfig.simple_ga(p_C=1.0, p_M=1.0))
    assert all(o["crossed"] and o["mutated"] for o in origins)


def test_config_defaults_are_the_papers_and_are_validated():
    c = GAConfig.paper()
    assert c == GAConfig()
    assert (c.stage_sizes, c.population_size, c.generations, c.p_C, c.q_C, c.p_M, c.q_M, c.crossover, c.selection,
            c.reevaluate) == ((3, 4, 5), 20, 50, 0.2, 0.2, 0.8, 0.05, "stage", "min", True)
    s = GAConfig.simple_ga()
    assert (s.p_C, s.p_M, s.q_M, s.crossover, s.selection, s.mutate_crossed) == (0.4, 0.8, 0.05, "interval", "zero",
                                                                                True)
    f = GAConfig.fast()
    assert f.stage_sizes == (3, 4) and not f.reevaluate


@pytest.mark.parametrize("changes, message", [
    (dict(q_M=1.5), "'q_M' must be a probability in \\[0, 1\\], got 1.5"),
    (dict(crossover="uniform"), "'crossover' must be 'stage' or 'interval', got 'uniform'"),
    (dict(population_size=1), "'population_size' must be an integer >= 2, got 1"),
    (dict(generations=-1), "'generations' must be an integer >= 0"),
    (dict(stage_sizes=(3, 1)), "'stage_sizes': stage 2 must have an integer K_s >= 2"),
    (dict(dedup="hash"), "'dedup' must be 'network' or 'code'"),
])
def test_bad_configs_are_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        GAConfig(**changes)


def test_mutation_diversity_widget_callback():
    g = space.chain_genome(PAPER_NODES)
    none = gc.mutation_diversity(g, population_size=20, p_M=0.0, q_M=0.05)
    assert none["unique_codes"] == 1 and none["mean_hamming"] == 0.0 and none["flipped_fraction"] == 0.0
    many = gc.mutation_diversity(g, population_size=400, p_M=0.8, q_M=0.05, seed=1)
    assert abs(many["flipped_fraction"] - many["expected_flipped"]) < 0.01
    assert many["unique_codes"] > 50 and many["unique_networks"] <= many["unique_codes"]


# -- the search ---------------------------------------------------------------------------------------
def _strip(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def _cfg(**changes):
    return GAConfig.fast(**{**dict(stage_sizes=(3, 4), population_size=6, p_C=0.5, reevaluate=False), **changes})


def test_search_is_reproducible_and_trains_each_network_once():
    cfg = _cfg(population_size=8, generations=4, seed=3)
    a = GeneticSearch(cfg, ones_fraction)
    ra = a.run()
    rb = gc.search(cfg, ones_fraction)
    assert _strip(ra) == _strip(rb) and len(ra) == 5
    assert [r["generation"] for r in ra] == [0, 1, 2, 3, 4] and [r["step"] for r in ra] == [1, 2, 3, 4, 5]
    assert all(len(r["individuals"]) == 8 for r in ra)
    assert a.trainings == len(a.fitness) == sum(r["new_evaluations"] for r in ra)  # never twice
    assert all(len(v) == 1 for v in a.fitness.values())
    best, fit = a.best()
    assert fit == max(r["best_score"] for r in ra) and space.network_key(best) in a.fitness
    assert _strip(gc.search(cfg.replace(seed=4), ones_fraction)) != _strip(ra)


def test_reevaluate_trains_every_occurrence_and_averages():
    s = GeneticSearch(_cfg(stage_sizes=(3,), reevaluate=True, generations=2), ones_fraction)
    s.run()
    assert s.trainings == 6 * 3
    assert any(len(v) > 1 for v in s.fitness.values())


def test_resume_after_whole_generations(tmp_path):
    cfg = _cfg(generations=3, seed=1)
    full = gc.search(cfg, ones_fraction)
    path = tmp_path / "ga.pt"
    assert len(gc.search(cfg, ones_fraction, checkpoint=path, stop_after=2)) == 2
    resumed = gc.search(cfg, ones_fraction, checkpoint=path)
    assert _strip(resumed) == _strip(full)
    with pytest.raises(ValueError, match="q_M=0.05 \\(now 0.1\\)"):
        gc.search(cfg.replace(q_M=0.1), ones_fraction, checkpoint=path)


def test_resume_with_another_fitness_is_refused(tmp_path, data_root):
    cfg = _cfg(generations=0, population_size=2)
    path = tmp_path / "ga.pt"
    small = gc.training_fitness(str(data_root), channels=(4, 4), train_size=40, image_size=8, epochs=1,
                                batch_size=20)
    gc.search(cfg, small, checkpoint=path)
    longer = gc.training_fitness(str(data_root), channels=(4, 4), train_size=40, image_size=8, epochs=2,
                                 batch_size=20)
    with pytest.raises(ValueError, match="context.fitness.epochs=1 \\(now 2\\)"):
        gc.search(cfg, longer, checkpoint=path)
    # the device and the thread count do not change what is computed: accepted
    gc.search(cfg, gc.training_fitness(str(data_root), channels=(4, 4), train_size=40, image_size=8, epochs=1,
                                       batch_size=20, torch_threads=1), checkpoint=path)


class _PowerCut(Evaluator):
    """Evaluates ``limit`` candidates, then fails like a machine switched off mid-generation."""

    def __init__(self, fitness_fn, limit):
        self.fitness_fn, self.limit, self.calls = fitness_fn, limit, 0

    def evaluate(self, candidates, *, on_result=None):
        inner = InProcessEvaluator(self.fitness_fn)
        for i, c in enumerate(candidates):
            if self.calls == self.limit:
                raise KeyboardInterrupt("power cut")
            self.calls += 1
            on_result(i, inner.evaluate([c])[0])


def test_resume_mid_generation_loses_no_evaluation(tmp_path):
    cfg = _cfg(generations=2, seed=2)
    reference = GeneticSearch(cfg, ones_fraction)
    full = reference.run()
    path = tmp_path / "ga.pt"
    cut = _PowerCut(ones_fraction, limit=8)
    with pytest.raises(KeyboardInterrupt):
        GeneticSearch(cfg, cut, checkpoint=path).run()
    counting = _PowerCut(ones_fraction, limit=10**9)
    resumed = GeneticSearch(cfg, counting, checkpoint=path)
    assert resumed.resume() and resumed.trainings == 8  # the eight finished evaluations survived the crash
    assert _strip(resumed.run()) == _strip(full)
    assert cut.calls + counting.calls == reference.trainings  # nothing trained twice


def test_a_failed_evaluation_is_recorded_and_the_search_goes_on():
    cfg = _cfg(generations=2, p_C=0.2)
    probe = GeneticSearch(cfg, ones_fraction)
    probe.run(stop_after=1)
    bad = probe.records[0]["individuals"][0]["code"]
    records = GeneticSearch(cfg, FailOn((bad,))).run()
    first = records[0]["individuals"]
    failed = [ind for ind in first if ind["code"] == bad]
    assert failed and all(ind["fitness"] is None and "simulated failure" in ind["error"] for ind in failed)
    assert all(ind["fitness"] is not None for ind in first if ind["key"] != failed[0]["key"])
    assert records[0]["failed"] == len(failed) and len(records) == 3


def test_a_non_finite_fitness_is_a_named_failure_and_the_checkpoint_stays_usable(tmp_path):
    cfg = _cfg(stage_sizes=(3,), population_size=8, generations=1, seed=5)
    path = tmp_path / "ga.pt"
    probe = GeneticSearch(cfg, ones_fraction)
    codes = [ind["code"] for ind in probe.run(stop_after=1)[0]["individuals"]]

    s = GeneticSearch(cfg, InProcessEvaluator(_NanFor(codes[0])), checkpoint=path)
    records = s.run()
    bad = [ind for ind in records[0]["individuals"] if ind["code"] == codes[0]]
    assert bad and bad[0]["fitness"] is None and "non-finite fitness nan" in bad[0]["error"]
    assert codes[0] in bad[0]["error"]
    again = GeneticSearch(cfg, InProcessEvaluator(_NanFor(codes[0])), checkpoint=path)
    assert _strip(again.run()) == _strip(records)


class _NanFor:
    def __init__(self, code):
        self.code = code

    def __call__(self, candidate):
        return float("nan") if str(candidate) == self.code else ones_fraction(candidate)


# -- what the notebook shows about a run -----------------------------------------------------------------
def test_fitness_noise_table_and_its_summary():
    genomes = [Genome.parse("1-01"), Genome.parse("0-00"), Genome.parse("1-11")]

    def noisy(candidate):  # fitness = ones fraction + a known offset per repeat
        return ones_fraction(candidate) + 0.01 * candidate.repeat

    noise = gc.fitness_noise(noisy, genomes, repeats=3)
    assert noise["fitness"].shape == (3, 3) and noise["codes"] == ["1-01", "0-00", "1-11"]
    np.testing.assert_allclose(noise["within_sd"], 0.01)
    np.testing.assert_allclose(noise["between_sd"], np.std([2 / 3, 0, 1], ddof=1))
    np.testing.assert_allclose(noise["mean_se"], 0.01 / np.sqrt(3))
    with pytest.raises(ValueError, match="at least 2 genomes and 2 repeats"):
        gc.fitness_noise(noisy, genomes, repeats=1)


def test_bit_frequencies_and_labels():
    records = gc.search(_cfg(generations=1), ones_fraction)
    freq = gc.bit_frequencies(records)
    assert freq.shape == (2, 9) and ((0 <= freq) & (freq <= 1)).all()
    first = np.array([Genome.parse(ind["code"]).bits for ind in records[0]["individuals"]]).mean(0)
    np.testing.assert_allclose(freq[0], first)
    assert gc.bit_labels((3, 4)) == ["s1 v1→v2", "s1 v1→v3", "s1 v2→v3", "s2 v1→v2", "s2 v1→v3", "s2 v2→v3",
                                     "s2 v1→v4", "s2 v2→v4", "s2 v3→v4"]
