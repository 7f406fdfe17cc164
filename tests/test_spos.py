"""SPOS (nas_tutorial.blocks' choice blocks, nas_tutorial.spos): blocks and channel slicing, search space and
its size, counting, uniform sampling, supernet training, inheritance and BN recalibration, evolution,
the search loop, the published architectures, bad input."""

import itertools
import math

import numpy as np
import pytest
import torch

from nas_tutorial import blocks, spos
from nas_tutorial import data as D
from nas_tutorial.blocks import SPOS_BLOCKS

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_space(**changes):
    """One stage of two layers on 8x8 images: a two-branch unit (8 -> 16 channels, stride 2), a split unit."""
    settings = dict(stage_repeats=(2,), stage_channels=(16,), stage_strides=(2,), stem_channels=8,
                    stem_stride=1, head_channels=32, num_classes=10, image_size=8)
    return spos.SPOSSpace(**{**settings, **changes})


def _random_arch(space, seed):
    return spos.sample_path(space, np.random.default_rng(seed))


# -- choice blocks and channel slicing ------------------------------------------------------------------------
def test_channel_split_is_a_shuffle_then_halves():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    keep, branch = blocks.channel_split(x)
    assert keep.flatten().tolist() == [0, 2, 4, 6] and branch.flatten().tolist() == [1, 3, 5, 7]
    y = torch.randn(2, 12, 3, 3)
    shuffled = blocks.channel_shuffle(y, 6)
    assert torch.equal(torch.cat(blocks.channel_split(y), 1), shuffled)
    with pytest.raises(ValueError, match=r"even C, got shape \(1, 3, 1, 1\)"):
        blocks.channel_split(torch.zeros(1, 3, 1, 1))


@pytest.mark.parametrize("name", SPOS_BLOCKS)
def test_choice_blocks_shapes_split_and_structure(name):
    split = blocks.make_choice_block(name, 16, 16, 1).eval()
    assert split.split and split.proj is None and split.mid_channels == 8
    x = torch.randn(2, 16, 6, 6)
    out = split(x)
    assert out.shape == x.shape and torch.equal(out[:, :8], x[:, 0::2])  # the even half passes by untouched
    for stride in (1, 2):
        unit = blocks.make_choice_block(name, 16, 40, stride).eval()  # two-branch: 16 projected + 24 new
        assert not unit.split and unit(x).shape == (2, 40, 6 // stride, 6 // stride)
    convs = [m for m in split.main.modules() if isinstance(m, blocks.SlicedConv2d)]
    kernel = 3 if name == "xception" else int(name[-1])
    assert [c.kernel_size[0] for c in convs] == ([3, 1, 3, 1, 3, 1] if name == "xception" else [1, kernel, 1])
    assert blocks.make_block(name, 16, 16).split and isinstance(blocks.BLOCKS[name], blocks.BlockSpec)


def test_profile_of_a_choice_block_by_hand():
    # two-branch shuffle3x3, 8 -> 24 channels, stride 2, middle width 6, 8x8 input, 4x4 output
    proj = 8 * 9 * 16 + 8 * 8 * 16  # depthwise 3x3 with stride, then 1x1
    main = 6 * 8 * 64 + 6 * 9 * 16 + 16 * 6 * 16  # 1x1 to 6 (8x8), depthwise 3x3 with stride, 1x1 to 24 - 8
    block = blocks.make_choice_block("shuffle3x3", 8, 24, 2, mid_channels=6)
    assert blocks.profile(block, (8, 8, 8)).macs == proj + main
    assert blocks.block_macs("shuffle3x3", 8, 24, 2, 8, 8) == proj + 12 * 8 * 64 + 12 * 9 * 16 + 16 * 12 * 16  # m = 12


@pytest.mark.parametrize("name", SPOS_BLOCKS)
@pytest.mark.parametrize("shape", [(16, 16, 1), (16, 40, 2)], ids=["split", "two-branch"])
def test_a_sliced_block_equals_a_standalone_block_of_that_width(name, shape):
    c_in, c_out, stride = shape
    wide = blocks.make_choice_block(name, c_in, c_out, stride, mid_channels=12, affine=True)
    narrow = blocks.make_choice_block(name, c_in, c_out, stride, mid_channels=5, affine=True)
    with torch.no_grad():
        for p in wide.parameters():
            p.normal_()
    blocks.copy_leading_slices(wide, narrow)
    x = torch.randn(4, c_in, 6, 6)
    torch.testing.assert_close(wide(x, 5), narrow(x))  # training mode: batch statistics
    running = {n: b for n, b in narrow.named_buffers() if b.dim()}
    for n, b in wide.named_buffers():  # running statistics: the narrow width updated only its leading entries
        if b.dim():
            torch.testing.assert_close(b[:len(running[n])], running[n])
            assert torch.all(b[len(running[n]):] == (1.0 if n.endswith("var") else 0.0))
    wide.eval(), narrow.eval()
    torch.testing.assert_close(wide(x, 5), narrow(x))
    assert sum(t.numel() for t in wide.regions(5).keys()) == sum(p.numel() for p in wide.parameters())
    used = sum(p[i].numel() for p, i in wide.regions(5).items())
    assert used == sum(p.numel() for p in narrow.parameters())  # the regions are exactly the narrow block


def test_sliced_layers_refuse_widths_beyond_their_allocation():
    block = blocks.make_choice_block("shuffle5x5", 16, 16, 1, mid_channels=8)
    with pytest.raises(ValueError, match="mid_channels must be an integer in 1..8"):
        block(torch.zeros(1, 16, 4, 4), 9)
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 16, H, W\), got \(1, 8, 4, 4\)"):
        block(torch.zeros(1, 8, 4, 4))
    with pytest.raises(ValueError, match="out_channels=16 must exceed in_channels=16"):
        blocks.make_choice_block("xception", 16, 16, 2)
    with pytest.raises(ValueError, match="in_channels=15 must be even"):
        blocks.make_choice_block("xception", 15, 15, 1)


# -- the search space -------------------------------------------------------------------------------------------
def test_the_papers_supernet_has_20_layers_in_four_stages():
    space = spos.imagenet_space()
    layers = space.layers
    assert space.num_layers == 20 and space.widths == spos.WIDTH_CHOICES == (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6)
    assert [layer.stride for layer in layers] == [2, 1, 1, 1] * 2 + [2] + [1] * 7 + [2, 1, 1, 1]
    assert [layers[i].in_size for i in (0, 4, 8, 16)] == [112, 56, 28, 14] and layers[-1].out_size == 7
    assert [layers[i].out_channels for i in (0, 4, 8, 16)] == [64, 160, 320, 640] and layers[0].in_channels == 16
    assert [space.mid(4, w) for w in space.widths] == [16, 32, 48, 64, 80, 96, 112, 128]  # 0.2 ... 1.6 of 160 / 2
    assert spos.mid_channels(160, 0.6) == 48 and spos.cifar_space().layers[-1].out_size == 4


def test_space_size_formula_against_enumeration():
    for widths in [(1.0,), (0.5, 1.0), (0.5, 1.0, 1.5)]:
        space = _tiny_space(widths=widths)
        paths = list(space.enumerate())
        assert len(paths) == len(set(map(str, paths))) == space.size() == (4 * len(widths)) ** 2
        assert space.size(with_widths=False) == 4**2
    assert spos.imagenet_space().size(with_widths=False) == 4**20 and spos.imagenet_space().size() == 32**20


def test_arch_text_round_trip():
    space = spos.imagenet_space()
    arch = spos.SPOS_BLOCK_CHANNEL
    assert str(arch).startswith("shuffle3x3:1.4-shuffle3x3:1.2-xception:0.8-shuffle5x5:1.2")
    assert spos.SPOSArch.parse(str(arch)) == arch and spos.SPOSArch.from_json(arch.to_json()) == arch
    assert space.from_indices(*space.indices(arch)) == arch
    assert set(spos.SPOS_BLOCK.widths) == {1.0} and spos.SPOS_BLOCK.blocks[:3] == ("shuffle7x7", "shuffle5x5",
                                                                                  "shuffle3x3")


# -- counting -------------------------------------------------------------------------------------------------
def test_cost_table_equals_profile_of_the_standalone_network():
    space = _tiny_space(stage_repeats=(2, 2), stage_channels=(16, 32), stage_strides=(1, 2),
                        widths=spos.WIDTH_CHOICES)
    costs = spos.cost_table(space)
    for seed in range(3):
        arch = _random_arch(space, seed)
        p = blocks.profile(spos.SPOSNet(arch, space), (3, 8, 8))
        assert costs.path_flops(arch) == p.macs and costs.path_params(arch) == p.conv_linear_params
        assert costs.path_params(arch, batch_norm=True) == p.params
    tiny = _tiny_space(widths=(0.5, 1.5))
    flops = [spos.cost_table(tiny).path_flops(a) for a in tiny.enumerate()]
    assert spos.cost_table(tiny).extremes() == (min(flops), max(flops))


@pytest.mark.parametrize("name", sorted(spos.PUBLISHED))
def test_published_networks_against_the_authors_counts(name):
    costs = spos.cost_table(spos.imagenet_space())
    arch, reported = spos.PUBLISHED[name], spos.PUBLISHED_COUNTS[name]
    flops, params = costs.path_flops(arch), costs.path_params(arch)
    # multiply-adds of the convolutions and the classifier: 327.9M and 322.9M, printed as 328M and 323M
    assert round(flops / 1e6) == reported["flops"]
    # parameters of the convolutions and the classifier: 3.41M and 3.53M, printed as 3.4M and 3.5M
    # (with batch norm's scales and shifts: 3.43M and 3.56M; the second would round to 3.6M)
    assert round(params / 1e6, 1) == reported["params"]
    assert (flops, params, costs.path_params(arch, batch_norm=True)) == {
        "spos_block_channel": (327_857_920, 3_407_035, 3_432_579),
        "spos_block": (322_918_720, 3_529_312, 3_558_464)}[name]
    if name == "spos_block":  # the network itself, at 224x224, counts the same
        p = blocks.profile(spos.published_model(name), (3, 224, 224))
        assert (p.macs, p.conv_linear_params, p.params) == (322_918_720, 3_529_312, 3_558_464)


# -- uniform path sampling --------------------------------------------------------------------------------------
def _chi_square_p(counts):
    """p-value of Pearson's chi-square test of uniform ``counts`` (upper tail of chi2 with k - 1 dof)."""
    counts = np.asarray(counts, dtype=np.float64)
    expected = counts.sum() / len(counts)
    statistic = ((counts - expected) ** 2 / expected).sum()
    return float(torch.special.gammaincc(torch.tensor((len(counts) - 1) / 2.0), torch.tensor(statistic / 2.0)))


def test_block_and_width_frequencies_are_uniform():
    space = spos.imagenet_space()
    rng = np.random.default_rng(0)
    paths = [space.indices(spos.sample_path(space, rng)) for _ in range(1000)]
    block_counts = np.zeros((20, 4), dtype=int)
    width_counts = np.zeros((20, 8), dtype=int)
    for b, w in paths:
        block_counts[np.arange(20), b] += 1
        width_counts[np.arange(20), w] += 1
    assert _chi_square_p(block_counts.sum(0)) > 0.01 and _chi_square_p(width_counts.sum(0)) > 0.01
    p_layers = [_chi_square_p(c) for c in block_counts] + [_chi_square_p(c) for c in width_counts]
    assert sum(p < 0.01 for p in p_layers) <= 2  # 40 tests at 1%: a rare failure is chance
    assert _chi_square_p([900, 1100, 1000, 1000]) < 0.01  # and the test does see a 10% bias


@pytest.mark.parametrize("bins", [1, 7])
def test_with_a_flops_range_every_sample_lies_in_it(bins):
    space = spos.imagenet_space()
    costs = spos.cost_table(space)
    rng = np.random.default_rng(1)
    flops = [costs.path_flops(spos.sample_path(space, rng, flops_range=(290e6, 360e6), bins=bins, costs=costs))
             for _ in range(200)]
    assert 290e6 <= min(flops) and max(flops) <= 360e6
    if bins == 7:  # a bin first, uniformly: every 10M bin is hit
        assert len(set(int((f - 290e6) // 10e6) for f in flops)) == 7


# -- the supernet, its training, inheritance ----------------------------------------------------------------------
def test_a_supernet_path_equals_its_extracted_standalone_network():
    space = _tiny_space(widths=spos.WIDTH_CHOICES)
    torch.manual_seed(0)
    supernet = spos.SPOSSupernet(space, dropout=0.0)
    x = torch.randn(4, 3, 8, 8)
    for seed in range(3):
        arch = _random_arch(space, seed)
        net = supernet.extract(arch)
        torch.testing.assert_close(supernet(x, arch), net(x))
        supernet.eval(), net.eval()
        torch.testing.assert_close(supernet(x, arch), net(x))
        supernet.train()


def test_a_step_on_a_narrow_path_changes_only_the_weights_inside_its_slice():
    space = _tiny_space(widths=(0.5, 1.5))
    torch.manual_seed(0)
    supernet = spos.SPOSSupernet(space, dropout=0.0)
    optimizer = spos.PathSGD(supernet.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    wide = spos.SPOSArch(("xception", "shuffle7x7"), (1.5, 1.5))
    narrow = spos.SPOSArch(("xception", "shuffle3x3"), (0.5, 0.5))
    spos.train_step(supernet, optimizer, x, y, wide)  # momentum everywhere on the wide path
    before = {n: p.detach().clone() for n, p in supernet.named_parameters()}
    spos.train_step(supernet, optimizer, x, y, narrow)
    regions = {id(p): i for p, i in supernet.regions(narrow).items()}
    changed_inside = 0
    for name, p in supernet.named_parameters():
        mask = torch.zeros_like(p, dtype=torch.bool)
        in_path = name.startswith(("stem", "head")) or id(p) in regions
        if in_path:
            mask[regions.get(id(p), (...,))] = True
        moved = p.detach() != before[name]
        assert not moved[~mask].any(), f"{name} changed outside the path's slice"
        changed_inside += int(moved[mask].any())
    assert changed_inside > 10  # and inside, the step did move the weights


def test_path_sgd_is_torch_sgd_where_the_whole_parameter_is_used():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    ours = spos.PathSGD(a.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    theirs = torch.optim.SGD([{"params": [b.weight], "weight_decay": 1e-2}, {"params": [b.bias], "weight_decay": 0}],
                             lr=0.1, momentum=0.9)
    for _ in range(3):
        x = torch.randn(5, 4)
        for model, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    torch.testing.assert_close(a.weight, b.weight)
    torch.testing.assert_close(a.bias, b.bias)
    assert spos.linear_lr(0.5, 0, 10) == 0.5 and spos.linear_lr(0.5, 5, 10) == 0.25


def test_recalibration_is_the_average_of_batch_statistics():
    bn = torch.nn.Sequential(torch.nn.BatchNorm2d(3))
    images = torch.randn(12, 3, 4, 4) * 2 + 1
    spos.recalibrate_bn(bn, images, batch_size=4)
    batches = images.split(4)
    torch.testing.assert_close(bn[0].running_mean, torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0))
    torch.testing.assert_close(bn[0].running_var, torch.stack([b.var((0, 2, 3)) for b in batches]).mean(0))
    assert bn[0].momentum == 0.1 and not bn.training


@pytest.fixture(scope="module")
def subsets(cifar):
    return D.make_subsets(cifar, train_size=128, test_size=20, image_size=8, seed=0)


def test_bn_recalibration_changes_an_inherited_paths_accuracy(subsets):
    space = _tiny_space()
    torch.manual_seed(0)
    supernet = spos.SPOSSupernet(space)
    optimizer = spos.PathSGD(supernet.parameters(), lr=0.2)
    rng = np.random.default_rng(0)
    for x, y in D.DeviceLoader(subsets.train_x, subsets.train_y, 16, seed=0):
        spos.train_step(supernet, optimizer, x, y, spos.sample_path(space, rng))
    arch = _random_arch(space, 5)
    state = {k: v.clone() for k, v in supernet.state_dict().items()}
    stale = spos.evaluate_path(supernet, arch, subsets.valid_x, subsets.valid_y)
    fresh = spos.evaluate_path(supernet, arch, subsets.valid_x, subsets.valid_y,
                               recalibration_images=subsets.train_x[:32], recalibration_batch_size=16)
    assert abs(stale["loss"] - fresh["loss"]) > 1e-3
    assert all(torch.equal(v, supernet.state_dict()[k]) for k, v in state.items())  # the supernet is untouched


# -- evolution ---------------------------------------------------------------------------------------------------
def test_mutation_and_crossover():
    space = spos.imagenet_space()
    rng = np.random.default_rng(0)
    parent = space.indices(spos.SPOS_BLOCK_CHANNEL)
    assert spos.mutate(parent, space, rng, prob=0.0) == parent
    changed = [sum(old != new for old, new in zip(zip(*parent), zip(*spos.mutate(parent, space, rng, 1.0))))
               for _ in range(200)]
    assert np.mean(changed) == pytest.approx(20 * (1 - 1 / 32), abs=0.3)  # a redraw may repeat the old choice
    other = spos.random_indices(space, rng)
    child = spos.crossover(parent, other, rng)
    for layer in range(20):
        assert (child[0][layer], child[1][layer]) in {(parent[0][layer], parent[1][layer]),
                                                      (other[0][layer], other[1][layer])}


def _toy_score(space):
    """A stand-in for the supernet's accuracy: wider middle widths and larger kernels score higher."""
    def score(arch):
        b, w = space.indices(arch)
        return {"acc": (sum(w) + 0.5 * sum(b)) / (len(b) * 10.5), "loss": 0.0}
    return score


def _path_search(searcher="evolution", seed=0, **changes):
    space = spos.cifar_space(stage_repeats=(2, 2, 2, 2))
    costs = spos.cost_table(space)
    settings = dict(flops_limit=float(np.mean(costs.extremes())), population_size=10, top_k=4, crossover_size=4,
                    mutation_size=4, mutation_prob=0.2, searcher=searcher, seed=seed)
    return spos.PathSearch(space, costs, **{**settings, **changes}), space


def test_evolution_never_keeps_a_candidate_over_the_limit_and_repeats_with_the_seed():
    search, space = _path_search()
    records = [search.run_iteration(i, _toy_score(space)) for i in range(5)]
    for r in records:
        assert all(c["flops"] <= search.flops_limit for c in r["population"]) and len(r["population"]) == 10
        assert r["topk"] == sorted(r["topk"], key=lambda a: -search.visited[a]["score"])
    assert sum(r["rejected_over_limit"] for r in records) > 0  # the limit did bite
    assert all(search.visited[a]["flops"] <= search.flops_limit for a in search.visited)
    evaluated = [c["arch"] for r in records for c in r["population"]]
    assert len(evaluated) == len(set(evaluated)) == 50  # T P evaluations, none twice
    assert [c["origin"] for c in records[1]["population"]][:8] == ["crossover"] * 4 + ["mutation"] * 4
    again, _ = _path_search()
    assert [again.run_iteration(i, _toy_score(space)) for i in range(5)] == records


def _needle_score(space, target):
    """A toy objective with a single best path: the fraction of block and width choices equal to ``target``'s."""
    target_blocks, target_widths = space.indices(target)

    def score(arch):
        b, w = space.indices(arch)
        same = sum(x == y for x, y in zip(b + w, target_blocks + target_widths))
        return {"acc": same / (2 * len(b)), "loss": 0.0}
    return score


def test_evolution_beats_random_search_on_a_toy_objective_under_the_same_budget():
    best = {"evolution": [], "random": []}
    for searcher, seed in itertools.product(best, range(5)):
        search, space = _path_search(searcher, seed)
        target = spos.sample_path(space, np.random.default_rng(100), flops_range=(0, search.flops_limit))
        records = [search.run_iteration(i, _needle_score(space, target)) for i in range(6)]
        assert records[-1]["evaluations"] == 60
        best[searcher].append(records[-1]["best_score"])
    # the same 60 evaluations under the same limit: 0.55 against 0.46 on average over the 5 seeds
    assert np.mean(best["evolution"]) > np.mean(best["random"]) + 0.05


def test_path_search_resumes_in_the_middle_of_an_iteration():
    search, space = _path_search()
    whole = [search.run_iteration(i, _toy_score(space)) for i in range(3)]
    first, _ = _path_search()
    first.run_iteration(0, _toy_score(space))
    calls = []

    def interrupted(arch):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(arch)
        return _toy_score(space)(arch)

    saved = []
    with pytest.raises(KeyboardInterrupt):
        first.run_iteration(1, interrupted, after_each=lambda: saved.append(first.state_dict()))
    resumed, _ = _path_search()
    resumed.load_state_dict(saved[-1])
    assert len(resumed.pending()) == 6
    rest = [resumed.run_iteration(i, _toy_score(space)) for i in (1, 2)]
    assert rest == whole[1:]


# -- the search loop ------------------------------------------------------------------------------------------------
def _config(**changes):
    settings = dict(image_size=8, epochs=2, batch_size=16, lr=0.1, steps_per_epoch=2, population_size=4, iterations=2,
                    top_k=2, crossover_size=2, mutation_size=2, recalibration_batches=1, recalibration_batch_size=16,
                    augment=D.Augment(crop_padding=1), seed=3)
    return spos.SPOSConfig.fast(**{**settings, **changes})


def _strip(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_config_defaults_are_the_authors():
    c = spos.SPOSConfig.paper()
    assert c == spos.SPOSConfig() and c.space() == spos.imagenet_space()
    assert (c.population_size, c.iterations, c.top_k, c.crossover_size, c.mutation_size, c.mutation_prob) == \
        (50, 20, 10, 25, 25, 0.1)
    assert (c.flops_limit, c.train_flops_range, c.train_flops_bins) == (330e6, (290e6, 360e6), 7)
    assert (c.epochs, c.batch_size, c.lr, c.momentum, c.weight_decay, c.label_smoothing) == \
        (120, 1024, 0.5, 0.9, 4e-5, 0.1)
    assert round(150_000 * 1024 / 1_281_167) == c.epochs  # the authors' iterations, in ImageNet epochs
    cifar = spos.SPOSConfig.cifar()
    assert cifar.space() == spos.cifar_space() and cifar.flops_limit == spos.scaled_flops(cifar.space(), 330e6)
    assert spos.reference_flops(spos.imagenet_space()) == 295_842_496
    assert spos.SPOSConfig.fast().space().size() == 32**4


def test_search_records_and_phases(subsets):
    s = spos.SPOSSearch(_config(), subsets)
    records = s.run()
    assert [r["phase"] for r in records] == ["supernet", "supernet", "evolution", "evolution"]
    assert [r.get("epoch") for r in records[:2]] == [1, 2] and [r["iteration"] for r in records[2:]] == [1, 2]
    assert records[0]["lr"] == 0.1 and records[1]["lr"] == pytest.approx(0.05)
    assert records[1]["best_arch"] in records[1]["probe_archs"]
    last = records[-1]
    assert last["evaluations"] == 8 and last["best_score"] == max(
        c["score"] for r in records[2:] for c in r["population"])
    assert all(c["flops"] <= s.config.flops_limit for r in records[2:] for c in r["population"])
    points = spos.population_points(records, 2)
    assert len(points["flops"]) == 4 and points["flops_limit"] == s.config.flops_limit
    rows = spos.layer_table(last["best_arch"], s.space)
    assert [r["block"] for r in rows] == list(spos.SPOSArch.parse(last["best_arch"]).blocks)
    assert sum(r["mflops"] for r in rows) * 1e6 < s.costs.path_flops(last["best_arch"])


def test_same_seed_same_records_and_resume_gives_the_uninterrupted_result(subsets, tmp_path, monkeypatch):
    whole = spos.search(_config(), subsets)
    assert _strip(spos.search(_config(), subsets)) == _strip(whole)
    assert _strip(spos.search(_config(seed=4), subsets)) != _strip(whole)
    path = tmp_path / "run.pt"
    assert len(spos.search(_config(), subsets, checkpoint=path, stop_after=1)) == 1
    assert len(spos.search(_config(), subsets, checkpoint=path, stop_after=3)) == 3
    original, calls = spos.evaluate_path, []
    monkeypatch.setattr(spos.SPOSSearch, "save_interval", 0.0)  # write after every candidate

    def killed(*args, **kwargs):  # the process dies during the second evaluation of the last iteration
        if len(calls) == 1:
            raise KeyboardInterrupt
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(spos, "evaluate_path", killed)
    with pytest.raises(KeyboardInterrupt):
        spos.search(_config(), subsets, checkpoint=path)
    resumed_calls = []

    def counted(*args, **kwargs):
        resumed_calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(spos, "evaluate_path", counted)
    assert _strip(spos.search(_config(), subsets, checkpoint=path)) == _strip(whole)
    assert len(resumed_calls) == 3  # the 3 candidates left of the interrupted iteration, nothing twice


def test_random_search_on_the_same_supernet(subsets):
    s = spos.SPOSSearch(_config(iterations=1), subsets)
    s.run()
    for searcher in ("evolution", "random"):
        records = spos.search_on_supernet(s.supernet, _config(iterations=2), subsets, searcher=searcher)
        assert [r["phase"] for r in records] == [searcher] * 2 and records[-1]["evaluations"] == 8
    assert {c["origin"] for c in records[1]["population"]} == {"random"}


def test_the_best_path_retrained_from_scratch(subsets):
    net, history = spos.train_from_scratch("xception:1-shuffle5x5:0.5", _tiny_space(widths=(0.5, 1.0)), subsets,
                                           epochs=2, batch_size=32)
    assert isinstance(net, spos.SPOSNet) and [h["epoch"] for h in history] == [1, 2]
    assert all(0 <= h["valid_acc"] <= 1 and math.isfinite(h["train_loss"]) for h in history)
    assert net.blocks[0].xception and net.blocks[1].mid_channels == 4  # 0.5 of 16 / 2
    torch.manual_seed(123)  # another global state: dropout must not read it
    _, again = spos.train_from_scratch("xception:1-shuffle5x5:0.5", _tiny_space(widths=(0.5, 1.0)), subsets,
                                       epochs=2, batch_size=32)
    assert _strip(again) == _strip(history)  # the same seed, the same numbers


# -- the notebook's study: ranking check, recorded run, drawings ----------------------------------------------------
def test_spread_paths_cover_the_flops_range_in_order():
    space = spos.SPOSConfig.fast().space()
    costs = spos.cost_table(space)
    paths = spos.spread_paths(space, 6, seed=1)
    flops = [costs.path_flops(p) for p in paths]
    assert len(paths) == 6 and flops == sorted(flops) and (flops[0], flops[-1]) == costs.extremes()
    assert [str(p) for p in spos.spread_paths(space, 6, seed=1)] == [str(p) for p in paths]
    with pytest.raises(ValueError, match="count must be in 2..pool=2000, got 1"):
        spos.spread_paths(space, 1)


def test_chance_spearman_is_the_quantile_of_random_rankings():
    assert spos.chance_spearman(8) == pytest.approx(0.64, abs=0.04)  # tables of Spearman's rho, n = 8, 5% one-sided
    assert spos.chance_spearman(30) < spos.chance_spearman(12) < spos.chance_spearman(6)
    with pytest.raises(ValueError, match="need n >= 3 items, got 2"):
        spos.chance_spearman(2)


def test_ranking_check_and_study(subsets):
    config = _config(iterations=1, valid_size=40)  # the 24 validation images past the first 40: held out
    result = spos.study(config, subsets, rank_paths=3, standalone_epochs=1, standalone_seeds=2, search_seeds=2)
    assert [r["epoch"] for r in result["supernet"]] == [1, 2]
    r = result["ranking"]
    assert len(r["paths"]) == len(r["inherited"]) == len(r["inherited_stale_bn"]) == len(r["standalone"]) == 3
    assert r["flops"] == sorted(r["flops"]) and r["standalone_epochs"] == 1
    assert np.array(r["standalone_runs"]).shape == (3, 2) and r["standalone_seed_sd"] >= 0
    assert r["spearman"] is None or -1 <= r["spearman"] <= 1
    assert all(0 <= a <= 1 for a in r["inherited"] + r["standalone"])
    for searcher in ("evolution", "random"):
        runs = result["searches"][searcher]
        assert [run["seed"] for run in runs] == [0, 1]
        assert all(run["best"] == run["curve"][-1] == run["records"][-1]["best_score"] for run in runs)
        held_x, held_y = subsets.valid_x[40:], subsets.valid_y[40:]
        recal, *_ = spos.scoring_data(config, subsets)
        for run in runs:  # the best path scored on the images no search saw
            assert run["held_out"] == spos.evaluate_path(result["supernet_model"], run["best_arch"], held_x, held_y,
                                                         recalibration_images=recal,
                                                         recalibration_batch_size=16)["acc"]
            assert len(held_y) == 24 and run["held_out"] * 24 == pytest.approx(round(run["held_out"] * 24))
    again = spos.ranking_check(result["supernet_model"], config, subsets, r["paths"], epochs=1)
    assert again["inherited"] == r["inherited"]  # scoring leaves the supernet as it was


def test_compare_searches_gives_the_gap_and_its_standard_error():
    searches = {"evolution": [{"best": 0.5, "held_out": 0.4}, {"best": 0.7, "held_out": 0.4}],
                "random": [{"best": 0.45, "held_out": 0.3}, {"best": 0.45, "held_out": 0.5},
                           {"best": 0.45, "held_out": 0.4}]}
    c = spos.compare_searches(searches)
    assert c["evolution"] == {"mean": pytest.approx(0.6), "sd": pytest.approx(math.sqrt(0.02)), "n": 2}
    assert c["random"]["sd"] == pytest.approx(0, abs=1e-12) and c["random"]["n"] == 3
    assert c["gap"] == pytest.approx(0.15) and c["se"] == pytest.approx(0.1) and not c["above_noise"]
    held = spos.compare_searches(searches, "held_out")
    assert held["gap"] == pytest.approx(0.0) and held["se"] == pytest.approx(0.1 / math.sqrt(3))
    searches["evolution"] = [{"best": 0.6}, {"best": 0.62}]  # gap 0.16, standard error 0.01
    assert spos.compare_searches(searches)["above_noise"]
    with pytest.raises(ValueError, match="need at least two seeds of evolution with a 'held_out' score"):
        spos.compare_searches({"evolution": [{"held_out": None}] * 2, "random": []}, "held_out")


def test_the_recorded_run_is_complete_and_says_how_it_was_made():
    rec = spos.load_recorded()
    assert rec["command"].startswith("python -m nas_tutorial.spos record") and rec["seconds"] > 0
    assert {"machine", "torch", "date", "data", "seed", "config", "setting"} <= set(rec)
    s = spos.RECORDED_SETTING
    assert len(rec["supernet"]) == s["config"]["epochs"] and len(rec["ranking"]["paths"]) == s["rank_paths"]
    runs = np.array(rec["ranking"]["standalone_runs"])
    assert runs.shape == (s["rank_paths"], s["standalone_seeds"])
    assert np.allclose(runs.mean(1), rec["ranking"]["standalone"])
    assert rec["ranking"]["standalone_seed_sd"] == pytest.approx(np.sqrt(np.var(runs, axis=1, ddof=1).mean()))
    assert rec["ranking"]["chance_spearman_95"] == pytest.approx(spos.chance_spearman(s["rank_paths"]))
    assert [len(rec["searches"][k]) for k in ("evolution", "random")] == [s["search_seeds"]] * 2
    assert all(0 < run["held_out"] < 1 and len(run["curve"]) == s["config"]["iterations"]
               for k in ("evolution", "random") for run in rec["searches"][k])
    assert spos.SPOSConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in rec["config"].items()
                              if k != "augment"}).epochs == s["config"]["epochs"]
    with pytest.raises(FileNotFoundError, match="python -m nas_tutorial.spos record"):
        spos.load_recorded("no/such/file.json")


def test_the_record_command_line(capsys):
    from nas_tutorial.utils import record_command

    calls = []

    def fake_record(path, *, data_root, seed, threads, **extra):
        calls.append((path, data_root, seed, threads, extra))
        return {"seconds": 1.0}

    record_command("python -m nas_tutorial.spos", fake_record, spos.RECORDED_PATH,
                   ["record", "--seed", "2", "--data", "d"], progress=True)
    assert calls == [(str(spos.RECORDED_PATH), "d", 2, 1, {"progress": True})]
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        record_command("python -m nas_tutorial.spos", fake_record, spos.RECORDED_PATH, ["train"])


@pytest.mark.parametrize("name", SPOS_BLOCKS)
def test_block_graph_is_read_from_the_module(name):
    split = spos.block_graph(name, 16, 16, 1)
    two = spos.block_graph(name, 16, 40, 2)
    depth = 6 if name == "xception" else 3
    assert sum(n[0].startswith("main") for n in split.nodes) == sum(n[0].startswith("main") for n in two.nodes) == depth
    assert any(n[0] == "split" for n in split.nodes) and not any(n[0].startswith("proj") for n in split.nodes)
    assert sum(n[0].startswith("proj") for n in two.nodes) == 2 and "stride 2" in two.nodes[1][1]
    assert split.nodes[-1][1] == "concatenate -> 16 channels" and two.nodes[-1][1] == "concatenate -> 40 channels"
    graph = spos.evolution_graph(spos.SPOSConfig())
    assert "P = 50" in graph.nodes[0][1] and "330M" in graph.nodes[0][1] and "k = 10" in graph.nodes[2][1]


# -- bad input ------------------------------------------------------------------------------------------------------
BAD = {
    "unknown choice block": (lambda: blocks.make_choice_block("shuffle9x9", 8, 8), "unknown SPOS choice block "
                                                                                    "'shuffle9x9'; choose one of"),
    "unknown block in an architecture": (lambda: spos.SPOSArch(("shuffle3x3", "k3_e1"), (1.0, 1.0)),
                                         "field 'blocks', layer 1: unknown SPOS choice block 'k3_e1'"),
    "architecture text without a width": (lambda: spos.SPOSArch.parse("shuffle3x3:1-xception"),
                                          "layer 1 is 'xception', not 'block:scale'"),
    "architecture text with a bad width": (lambda: spos.SPOSArch.parse("shuffle3x3:wide"),
                                           "layer 0 is 'shuffle3x3:wide'"),
    "architecture text that is empty": (lambda: spos.SPOSArch.parse(" "), "must be 'block:scale' items"),
    "architecture of the wrong length": (lambda: spos.SPOSNet("shuffle3x3:1", _tiny_space()),
                                         "has 1 layers, but the space has 2 choice layers"),
    "width not in the space": (lambda: _tiny_space().check("shuffle3x3:1-xception:0.3"),
                               "layer 1: width 0.3 is not a choice of this space"),
    "images of the wrong shape": (lambda: spos.SPOSSupernet(_tiny_space())(torch.zeros(2, 3, 16, 16),
                                                                          "shuffle3x3:1-xception:1"),
                                  r"expected images of shape \(B, 3, 8, 8\), got \(2, 3, 16, 16\)"),
    "stages of different lengths": (lambda: spos.SPOSSpace(stage_repeats=(4, 4)),
                                    "one entry per stage, got 2, 4 and 4"),
    "a stage that shrinks": (lambda: _tiny_space(stage_repeats=(1, 1), stage_channels=(16, 8), stage_strides=(1, 2)),
                             "layer 1 changes its shape, so its output \\(8 channels\\) must exceed"),
    "odd channels in a split unit": (lambda: _tiny_space(stage_channels=(15,)),
                                     "splits its 15 channels in halves"),
    "more children than the population": (lambda: spos.SPOSConfig(crossover_size=30),
                                          "'crossover_size' plus mutation_size \\(25\\) must not exceed "
                                          "population_size=50, got 30"),
    "top k above the population": (lambda: spos.SPOSConfig(top_k=60), "'top_k' must be <= population_size=50"),
    "unknown searcher": (lambda: spos.SPOSConfig(searcher="bayes"), "'searcher' must be 'evolution' or 'random', "
                                                                    "got 'bayes'"),
    "unknown block in a config": (lambda: spos.SPOSConfig(blocks=("shuffle3x3", "mbconv")),
                                  "unknown SPOS choice block 'mbconv'"),
    "flops range upside down": (lambda: spos.SPOSConfig(train_flops_range=(360e6, 290e6)),
                                "'train_flops_range' must be None or \\(low, high\\)"),
    "flops range excluding every path": (
        lambda: spos.sample_path(spos.imagenet_space(), np.random.default_rng(0), flops_range=(1e9, 2e9)),
        r"flops_range \(1e\+09, 2e\+09\) excludes every path: the space's paths have 9.496e\+07 to 6.692e\+08"),
    "flops limit below every path": (lambda: _path_search(flops_limit=1e3),
                                     "'flops_limit' is 1000, below the cheapest path"),
    "unknown published model": (lambda: spos.published_model("spos_c"), "unknown published SPOS network 'spos_c'"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_a_value_error_naming_the_value(name):
    call, message = BAD[name]
    with pytest.raises(ValueError, match=message):
        call()


def test_search_refuses_data_that_does_not_fit(subsets):
    with pytest.raises(ValueError, match="field 'image_size' is 16, but the data's images have shape"):
        spos.SPOSSearch(_config(image_size=16), subsets)
    with pytest.raises(ValueError, match="ask for 1600 images, but there are 64 training images"):
        spos.SPOSSearch(_config(recalibration_batches=100), subsets)
    with pytest.raises(ValueError, match="excludes every path"):
        spos.SPOSSearch(_config(train_flops_range=(1e12, 2e12)), subsets)
