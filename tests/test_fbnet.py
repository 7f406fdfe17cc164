"""FBNet (nas_tutorial.blocks, nas_tutorial.fbnet): blocks, counting, search space, latency table, loss,
Gumbel-softmax, super net, search, sampling, published architectures."""

import json
import math

import pytest
import torch
from torch.nn import functional as F

from nas_tutorial import blocks, fbnet
from nas_tutorial import data as D
from nas_tutorial.blocks import FBNET_BLOCKS
from nas_tutorial.training import recalibrate_bn

pytestmark = pytest.mark.usefixtures("one_thread")

K = len(FBNET_BLOCKS)


def _tiny_macro(image_size=8, depths=(1,) * 7):
    """The fast setting's 7-layer macro-architecture on 8x8 images."""
    return fbnet.cifar_macro(image_size=image_size, width_mult=0.25, depths=depths)


# -- blocks ---------------------------------------------------------------------------------------
def test_channel_shuffle_interleaves_the_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)  # groups of 2: (0 1 2) (3 4 5)
    assert blocks.channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert torch.equal(blocks.channel_shuffle(x, 1), x)
    y = torch.randn(2, 12, 3, 3)
    assert torch.equal(blocks.channel_shuffle(blocks.channel_shuffle(y, 3), 4), y)  # g then C/g undoes it
    with pytest.raises(ValueError, match="groups=4 must be a positive divisor of the 6 channels"):
        blocks.channel_shuffle(x, 4)


def test_the_nine_candidates_and_their_structure():
    assert FBNET_BLOCKS == ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
    block = blocks.make_block("k5_e1_g2", 8, 16, 2)
    assert [block.expand[0].groups, block.project[0].groups, block.depthwise[0].groups] == [2, 2, 8]
    assert isinstance(block.shuffle, blocks.ChannelShuffle) and block.depthwise[0].kernel_size == (5, 5)
    assert [type(m).__name__ for m in block.project] == ["Conv2d", "BatchNorm2d"]  # no ReLU at the end
    wide = blocks.make_block("k3_e6", 8, 8, 1)
    assert wide.expand[0].out_channels == 48 and isinstance(wide.shuffle, torch.nn.Identity)
    for name in FBNET_BLOCKS:
        for stride in (1, 2):
            out = blocks.make_block(name, 8, 16, stride)(torch.randn(2, 8, 9, 9))
            assert out.shape == (2, 16, 5 if stride == 2 else 9, 5 if stride == 2 else 9)


@pytest.mark.parametrize("name", [n for n in FBNET_BLOCKS if n != "skip"])
@pytest.mark.parametrize("in_channels, out_channels, stride", [(8, 8, 1), (8, 16, 1), (8, 8, 2), (16, 8, 2)])
def test_residual_exactly_when_the_shapes_match(name, in_channels, out_channels, stride):
    block = blocks.make_block(name, in_channels, out_channels, stride).eval()
    x = torch.randn(2, in_channels, 6, 6)
    same_shape = block(x).shape == x.shape
    assert block.residual == same_shape == (stride == 1 and in_channels == out_channels)
    with torch.no_grad():  # the last batch norm outputs zeros: what is left is the residual, if any
        block.project[1].weight.zero_()
        block.project[1].bias.zero_()
    torch.testing.assert_close(block(x), x if same_shape else torch.zeros_like(block(x)))


def test_skip_is_the_identity_where_it_can_be():
    skip = blocks.make_block("skip", 8, 8, 1)
    x = torch.randn(2, 8, 4, 4)
    assert skip(x) is x and skip.conv is None and not list(skip.parameters())
    projected = blocks.make_block("skip", 8, 16, 2)
    assert projected(x).shape == (2, 16, 2, 2) and projected.conv[0].kernel_size == (1, 1)


def test_profile_counts_conv_and_linear_multiply_adds_by_hand():
    expected = 8 * 24 * 8 * 8 + 24 * 9 * 4 * 4 + 24 * 16 * 4 * 4  # expand, depthwise, project
    assert blocks.block_macs("k3_e3", 8, 16, 2, 8, 8) == expected  # 8x8 input, 4x4 output
    grouped = 8 * 8 // 2 * 8 * 8 + 8 * 25 * 8 * 8 + 8 * 8 // 2 * 8 * 8
    assert blocks.block_macs("k5_e1_g2", 8, 8, 1, 8, 8) == grouped
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 5, 7))
    p = blocks.profile(net, (3, 5, 5))
    assert p.macs == 4 * 5 * 5 * 3 * 9 + 100 * 7  # batch norm, ReLU: not counted
    assert p.conv_linear_params == 4 * 27 + 4 + 100 * 7 + 7 and p.params == p.conv_linear_params + 8
    assert net.training  # the mode is restored


# -- the macro-architecture and the space -------------------------------------------------------------
def test_table_1_has_22_searchable_layers_from_112_to_7():
    macro = fbnet.imagenet_macro()
    layers = macro.layers
    assert macro.num_layers == len(layers) == 22
    assert [layer.out_channels for layer in layers] == [16] + [24] * 4 + [32] * 4 + [64] * 4 + [112] * 4 + \
        [184] * 4 + [352]
    assert [i for i, layer in enumerate(layers) if layer.stride == 2] == [1, 5, 9, 17]
    assert layers[0].in_size == 112 and layers[-1].out_size == 7
    cifar = fbnet.cifar_macro()
    assert cifar.num_layers == 22 and cifar.layers[0].in_size == 32 and cifar.layers[-1].out_size == 4
    assert fbnet.cifar_macro(width_mult=0.25).stages[0] == (8, 1, 1)
    assert [(s.in_channels, s.out_channels) for s in _tiny_macro().layers][:2] == [(8, 8), (8, 8)]


def test_space_size_formula_and_enumeration():
    assert fbnet.search_space_size() == 9**22 == 984770902183611232881
    for layers in (1, 2, 3):
        archs = list(fbnet.enumerate_architectures(layers))
        assert len(set(archs)) == len({str(a) for a in archs}) == fbnet.search_space_size(layers, K) == K**layers
    assert len(set(fbnet.enumerate_architectures(4, ("k3_e1", "skip")))) == 2**4


def test_arch_text_round_trip_and_published_architectures():
    arch = fbnet.FBNetArch(("k3_e1", "skip", "k5_e1_g2"))
    assert str(arch) == "k3_e1-skip-k5_e1_g2" and fbnet.FBNetArch.parse(str(arch)) == arch
    assert fbnet.FBNetArch.from_json(arch.to_json()) == arch and json.loads(arch.to_json()) == str(arch)
    for name, (published, _) in fbnet.PUBLISHED.items():
        assert len(published) == 22 and set(published.blocks) <= set(FBNET_BLOCKS), name
    assert fbnet.FBNET_A.blocks[0] == "skip" and fbnet.FBNET_C.blocks[-1] == "k3_e6"


# -- latency table and loss -------------------------------------------------------------------------
def test_loss_puts_the_power_on_the_logarithm_and_needs_lat_above_one():
    ce, lat = torch.tensor(2.0), torch.tensor(20.0)
    loss = fbnet.fbnet_loss(ce, lat)
    assert loss.item() == pytest.approx(2.0 * 0.2 * math.log(20.0) ** 0.6)
    assert loss.item() != pytest.approx(2.0 * 0.2 * math.log(20.0**0.6))  # the other reading of the seed text
    with pytest.raises(ValueError, match="LAT must exceed 1"):
        fbnet.fbnet_loss(ce, torch.tensor(0.8))


def test_expected_latency_gradient_matches_finite_differences_in_float64():
    g = torch.Generator().manual_seed(0)
    table = torch.rand(4, K, generator=g, dtype=torch.float64) * 3
    theta = torch.randn(4, K, generator=g, dtype=torch.float64, requires_grad=True)
    noise = fbnet.gumbel_noise((4, K), generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: fbnet.expected_latency(F.softmax(t, -1), table), (theta,))
    assert torch.autograd.gradcheck(lambda t: fbnet.expected_latency(fbnet.gumbel_softmax(t, 0.7, noise), table),
                                    (theta,))
    lat = fbnet.LatencyTable(FBNET_BLOCKS, table.tolist(), fixed=1.5)
    arch = fbnet.FBNetArch(tuple(FBNET_BLOCKS[i] for i in (0, 8, 3, 5)))
    one_hot = F.one_hot(torch.tensor([0, 8, 3, 5]), K).double()
    # the table model of one architecture = the super net's latency at its one-hot mask
    assert lat.latency(arch) == pytest.approx(float(lat.expected(one_hot)))
    assert lat.latency(arch) == pytest.approx(1.5 + sum(table[i, j].item() for i, j in enumerate((0, 8, 3, 5))))


def _fake_measurements(monkeypatch):
    calls = []

    def fake(module, shape, *, device, warmup, repeats):
        calls.append(tuple(shape))
        return 1.0 + len(calls)

    monkeypatch.setattr(fbnet, "measure_latency", fake)
    return calls


def test_latency_table_is_cached_and_never_reads_another_device_or_shape(tmp_path, monkeypatch):
    calls = _fake_measurements(monkeypatch)
    path = tmp_path / "lat.json"
    first = fbnet.measure_latency_table(_tiny_macro(), cache=path)
    measured = len(calls)
    assert 0 < measured < 2 + 7 * K  # stem, head, and blocks of equal shape once (layers 0 and 1 share one)
    second = fbnet.measure_latency_table(_tiny_macro(), cache=path)
    assert len(calls) == measured and second == first  # read from the file
    blob = json.loads(path.read_text())
    assert len(blob["entries"]) == measured and all(first.device in key for key in blob["entries"])
    # the same file under another device name: nothing in it applies here
    blob["entries"] = {key.replace(first.device, "Another GPU"): 1e6 for key in blob["entries"]}
    path.write_text(json.dumps(blob))
    third = fbnet.measure_latency_table(_tiny_macro(), cache=path)
    assert len(calls) == 2 * measured and max(third.extremes()) < 1e6
    fbnet.measure_latency_table(_tiny_macro(image_size=10), cache=path)  # other shapes: measured, not read
    assert len(calls) > 2 * measured
    path.write_text("not json")
    with pytest.raises(ValueError, match="is not a 'nas_tutorial.latency/1' file"):
        fbnet.measure_latency_table(_tiny_macro(), cache=path)


def test_measured_table_is_positive_and_draws_no_global_random_numbers(tmp_path):
    state = torch.get_rng_state()
    table = fbnet.measure_latency_table(_tiny_macro(), warmup=0, repeats=1, cache=tmp_path / "l.json")
    assert torch.equal(torch.get_rng_state(), state)
    assert table.unit == "ms" and table.fixed > 0 and all(v > 0 for row in table.values for v in row)
    assert len(table.values) == 7 and table.extremes()[0] < table.extremes()[1]
    macs = fbnet.macs_latency_table(_tiny_macro())
    layer = _tiny_macro().layers[3]
    assert macs.values[3][3] == blocks.block_macs("k3_e6", layer.in_channels, layer.out_channels, layer.stride,
                                                 layer.in_size, layer.in_size) / 1e6


# -- Gumbel-softmax --------------------------------------------------------------------------------
def test_gumbel_max_samples_follow_softmax_theta():
    theta = torch.linspace(-1.5, 1.0, K, dtype=torch.float64)
    n = 20000
    noise = fbnet.gumbel_noise((n, K), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    counts = torch.bincount(fbnet.gumbel_max(theta.expand(n, K), noise), minlength=K).double()

    def chi_square(p):
        return float(((counts - n * p) ** 2 / (n * p)).sum())

    critical = 26.12  # chi-square, 8 degrees of freedom, p = 0.001
    assert chi_square(F.softmax(theta, -1)) < critical
    assert chi_square(torch.full((K,), 1 / K, dtype=torch.float64)) > 10 * critical  # the test can tell


def test_gumbel_softmax_tends_to_the_gumbel_max_one_hot_as_tau_goes_to_zero():
    g = torch.Generator().manual_seed(2)
    theta = torch.randn(50, K, generator=g, dtype=torch.float64)
    noise = fbnet.gumbel_noise((50, K), generator=g, dtype=torch.float64)
    one_hot = F.one_hot(fbnet.gumbel_max(theta, noise), K).double()
    gaps = [float((fbnet.gumbel_softmax(theta, tau, noise) - one_hot).abs().max()) for tau in (5.0, 1.0, 0.1, 1e-3)]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-6
    uniform = fbnet.gumbel_softmax(theta, 1e6, noise)
    torch.testing.assert_close(uniform, torch.full_like(uniform, 1 / K), rtol=0, atol=1e-5)
    assert fbnet.temperature(0) == 5.0 and fbnet.temperature(90) == pytest.approx(5.0 * math.exp(-4.05))


def test_straight_through_gradient_equals_the_soft_one():
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(6, K, generator=g, dtype=torch.float64, requires_grad=True)
    noise = fbnet.gumbel_noise((6, K), generator=g, dtype=torch.float64)
    c = torch.randn(6, K, generator=g, dtype=torch.float64)
    hard = fbnet.gumbel_softmax(theta, 0.5, noise, hard=True)
    soft = fbnet.gumbel_softmax(theta, 0.5, noise)
    assert torch.equal(hard.detach(), F.one_hot(fbnet.gumbel_max(theta, noise), K).double())  # exactly one-hot
    # a loss linear in the mask (the expected latency is one): the same gradient
    grad_hard, = torch.autograd.grad((hard * c).sum(), theta)
    grad_soft, = torch.autograd.grad((soft * c).sum(), theta)
    torch.testing.assert_close(grad_hard, grad_soft, rtol=1e-12, atol=1e-12)
    # any loss: the soft sample's Jacobian times the loss's gradient at the hard mask
    hard = fbnet.gumbel_softmax(theta, 0.5, noise, hard=True)
    soft = fbnet.gumbel_softmax(theta, 0.5, noise)
    grad_hard, = torch.autograd.grad((hard**2 * c).sum(), theta)
    grad_soft, = torch.autograd.grad((soft * (2 * hard * c).detach()).sum(), theta)
    torch.testing.assert_close(grad_hard, grad_soft, rtol=1e-12, atol=1e-12)


# -- the super net -------------------------------------------------------------------------------------
def test_supernet_with_a_one_hot_mask_is_the_network_of_that_architecture():
    torch.manual_seed(0)
    macro = _tiny_macro()
    supernet = fbnet.FBNetSupernet(macro).double()
    arch = fbnet.FBNetArch.parse("k3_e1-skip-k5_e1_g2-k3_e6-k5_e3-skip-k5_e6")
    net = fbnet.FBNet(arch, macro).double()
    state = supernet.state_dict()
    mapped = {}
    for key in net.state_dict():
        if key.startswith("blocks."):
            _, layer, rest = key.split(".", 2)
            mapped[key] = state[f"layers.{layer}.candidates.{FBNET_BLOCKS.index(arch.blocks[int(layer)])}.{rest}"]
        else:
            mapped[key] = state[key]
    net.load_state_dict(mapped)
    mask = F.one_hot(torch.tensor([FBNET_BLOCKS.index(b) for b in arch.blocks]), K).double()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(supernet(x, mask), net(x), rtol=1e-12, atol=1e-12)
    # and it runs only the chosen blocks: the same multiply-adds as the network
    counted = blocks.profile(supernet, (3, 8, 8), forward=lambda m, inp: m(inp, mask))
    assert counted.macs == blocks.profile(net, (3, 8, 8)).macs
    # extract() builds that network with a copy of the super net's weights and statistics
    extracted = supernet.extract(arch)
    assert extracted.arch == arch and extracted.training
    for key, value in net.state_dict().items():
        assert torch.equal(extracted.state_dict()[key], value), key
    torch.testing.assert_close(extracted(x), supernet(x, mask), rtol=1e-12, atol=1e-12)  # train mode: batch stats
    torch.testing.assert_close(extracted.eval()(x), supernet.eval()(x, mask), rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        next(extracted.parameters()).add_(1.0)  # a copy: the super net is not changed
    assert not torch.equal(next(extracted.parameters()), supernet.stem[0].weight)


def test_mixed_block_is_the_weighted_sum_and_theta_is_a_parameter():
    torch.manual_seed(0)
    supernet = fbnet.FBNetSupernet(_tiny_macro())
    layer = supernet.layers[3]
    x = torch.randn(2, layer.layer.in_channels, 4, 4)
    w = F.softmax(torch.randn(K), -1)
    explicit = sum(w[i] * block(x) for i, block in enumerate(layer.candidates))
    torch.testing.assert_close(layer(x, w), explicit)
    assert supernet.arch_parameters()[0] is supernet.theta and "theta" in supernet.state_dict()
    assert supernet.theta.shape == (7, K) and torch.all(supernet.theta == 0)  # uniform P_theta at the start
    ids = {id(p) for p in supernet.weight_parameters()}
    assert id(supernet.theta) not in ids and len(ids) + 1 == len(list(supernet.parameters()))
    assert supernet(torch.randn(2, 3, 8, 8)).shape == (2, 10)  # no mask: the most likely architecture


def test_sampled_architectures_follow_theta_and_repeat_with_the_seed():
    theta = torch.zeros(5, K)
    theta[torch.arange(5), torch.tensor([0, 8, 2, 7, 5])] = 50.0
    samples = fbnet.sample_architectures(theta, 6)
    assert len(samples) == 6 and all(str(a) == "k3_e1-skip-k3_e3-k5_e6-k5_e1_g2" for a in samples)
    uniform = torch.zeros(22, K)
    assert fbnet.sample_architectures(uniform, 3, seed=1) == fbnet.sample_architectures(uniform, 3, seed=1)
    assert len(set(fbnet.sample_architectures(uniform, 3, seed=1))) == 3


def _learnable(n, seed, num_classes=4, image_size=8):
    """Images that are a fixed pattern per class plus noise: a few dozen steps learn them."""
    patterns = torch.randn(num_classes, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    y = torch.arange(n) % num_classes
    noise = torch.randn(n, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    return patterns[y] + 0.7 * noise, y


def test_recalibration_replaces_statistics_of_mixed_masks_and_restores_a_trained_path():
    torch.manual_seed(0)
    supernet = fbnet.FBNetSupernet(fbnet.cifar_macro(image_size=8, width_mult=0.25, depths=(1,) * 7, num_classes=4))
    arch = fbnet.FBNetArch.parse("k3_e3-k5_e1-k3_e1-skip-k5_e3-k3_e6-k3_e1")
    mask = F.one_hot(torch.tensor([FBNET_BLOCKS.index(b) for b in arch.blocks]), K).float()
    x, y = _learnable(256, 1)
    valid_x, valid_y = _learnable(256, 2)
    optimizer = torch.optim.SGD(supernet.weight_parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for step in range(30):  # weight steps on the path; between them, forward passes under soft masks
        batch = slice(16 * (step % 16), 16 * (step % 16 + 1))
        loss = F.cross_entropy(supernet(x[batch], mask), y[batch])
        optimizer.zero_grad()
        loss.backward(inputs=supernet.weight_parameters())
        optimizer.step()
        with torch.no_grad():  # what a theta step does to the running statistics (train mode, a mixed mask)
            supernet(x[batch], F.softmax(torch.randn(7, K, generator=g), -1))
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    raw = fbnet.evaluate_architecture(supernet, arch, valid_x, valid_y)
    recalibrated = fbnet.evaluate_architecture(supernet, arch, valid_x, valid_y, recalibration_images=x)
    assert all(torch.equal(v, before[k]) for k, v in supernet.state_dict().items())  # the super net is unchanged
    # the statistics change: those of the path on these images, not the mixed masks' running average
    inherited = supernet.extract(arch).state_dict()
    net = recalibrate_bn(supernet.extract(arch), x)
    changed = [k for k, v in net.state_dict().items() if k.endswith("running_var")
               and not torch.allclose(v, inherited[k], rtol=0.05)]
    assert len(changed) >= 5, changed
    stem_out = net.stem[0](x)  # (B, C, H, W): the first batch norm's statistics are those of this output
    torch.testing.assert_close(net.stem[1].running_mean, stem_out.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    # on the path that was trained, recalibration does not lower the accuracy (here it restores it)
    assert recalibrated["acc"] >= raw["acc"] and recalibrated["acc"] > 0.75, (raw, recalibrated)


# -- bad input ----------------------------------------------------------------------------------------
BAD = {
    "unknown block": (lambda: blocks.make_block("k7_e6", 8, 8), "unknown block 'k7_e6'; choose one of: k3_e1"),
    "unknown block in an architecture": (lambda: fbnet.FBNetArch(("k3_e1", "k3_e9")),
                                         "field 'blocks', layer 1: unknown block 'k3_e9'"),
    "architecture text with an empty name": (lambda: fbnet.FBNetArch.parse("k3_e1--skip"),
                                             "'k3_e1--skip' has an empty block name at layer 1"),
    "architecture text that is not text": (lambda: fbnet.FBNetArch.parse(7), "must be block names joined by '-'"),
    "architecture as one string": (lambda: fbnet.FBNetArch("k3_e1-skip"), "field 'blocks' must be a list"),
    "architecture of the wrong length": (lambda: fbnet.FBNet("k3_e1-skip", _tiny_macro()),
                                         "has 2 blocks, but the macro-architecture has 7 searchable layers"),
    "mask of the wrong shape": (lambda: fbnet.FBNetSupernet(_tiny_macro())(torch.zeros(1, 3, 8, 8), torch.zeros(7, 8)),
                                r"weights must have shape \(7, 9\)"),
    "noise of the wrong shape": (lambda: fbnet.gumbel_softmax(torch.zeros(2, 9), 1.0, torch.zeros(2, 8)),
                                 "noise of shape"),
    "zero temperature": (lambda: fbnet.gumbel_softmax(torch.zeros(2, 9), 0.0, torch.zeros(2, 9)),
                         "tau must be positive, got 0.0"),
    "stride 3 in a macro": (lambda: fbnet.Macro(((16, 1, 3),)), r"stage 0: must be .* got \(16, 1, 3\)"),
    "theta never trained": (lambda: fbnet.FBNetConfig(epochs=10, warmup_epochs=10),
                            "'warmup_epochs' must be in 0..epochs-1=9"),
    "theta fraction of one": (lambda: fbnet.FBNetConfig(theta_fraction=1.0), "'theta_fraction' must be in"),
    "unknown latency model": (lambda: fbnet.FBNetConfig(latency="flops"), "'latency' must be 'measure' or 'macs'"),
    "unknown candidate": (lambda: fbnet.FBNetConfig(candidates=("k3_e1", "k9_e1")), "unknown block 'k9_e1'"),
    "sampling from a wrong theta": (lambda: fbnet.sample_architectures(torch.zeros(3, 8)),
                                    r"theta must have shape \(layers, 9\)"),
    "unknown published model": (lambda: fbnet.published_model("fbnet_d"), "unknown published FBNet 'fbnet_d'"),
    "extracting a path of the wrong length": (lambda: fbnet.FBNetSupernet(_tiny_macro()).extract("k3_e1-skip"),
                                              "has 2 blocks, but the macro-architecture has 7 searchable layers"),
    "no recalibration images": (lambda: fbnet.FBNetConfig(recalibration_size=0),
                                "'recalibration_size' must be a positive integer"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_a_value_error_naming_the_value(name):
    call, message = BAD[name]
    with pytest.raises(ValueError, match=message):
        call()


# -- the search -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def subsets(cifar):
    return D.make_subsets(cifar, train_size=64, test_size=20, image_size=8, seed=0)


def _config(**changes):
    settings = dict(image_size=8, epochs=3, warmup_epochs=1, batch_size=4, steps_per_epoch=2, latency="macs",
                    theta_lr=0.05, augment=D.Augment(crop_padding=1), seed=3)
    return fbnet.FBNetConfig.fast(**{**settings, **changes})


def _strip(records):
    return [{k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in r.items() if k != "seconds"}
            for r in records]


def test_config_defaults_are_the_papers():
    c = fbnet.FBNetConfig.paper()
    assert c == fbnet.FBNetConfig() and c.macro() == fbnet.imagenet_macro(num_classes=100)
    assert (c.epochs, c.warmup_epochs, c.theta_fraction, c.tau0, c.alpha, c.beta, c.latency) == \
        (90, 10, 0.2, 5.0, 0.2, 0.6, "measure")
    assert c.tau_decay == pytest.approx(0.956, abs=1e-3) and (c.lr, c.theta_lr) == (0.1, 0.01)
    assert fbnet.FBNetConfig.cifar().macro() == fbnet.cifar_macro()
    fast = fbnet.FBNetConfig.fast()
    # the fast setting anneals tau from 5 to 0.5 in its last epoch, where the paper is after 51 of 90 epochs
    assert fast.macro().num_layers == 7 and fbnet.temperature(7, fast.tau0, fast.tau_decay) == pytest.approx(0.5)
    assert fbnet.temperature(51) == pytest.approx(0.5, abs=0.01)


def test_search_records_train_theta_after_the_warm_up(subsets):
    s = fbnet.FBNetSearch(_config(), subsets)
    records = s.run()
    assert [r["epoch"] for r in records] == [1, 2, 3] and [r["theta_trained"] for r in records] == [False, True, True]
    assert torch.all(records[0]["theta"] == 0) and not torch.all(records[1]["theta"] == 0)
    assert records[0]["theta_loss"] is None and math.isfinite(records[1]["theta_loss"])
    assert [r["tau"] for r in records] == [pytest.approx(fbnet.temperature(i, 5.0, s.config.tau_decay))
                                          for i in range(3)]
    last = records[-1]
    assert last["best_arch"] == str(s.model.architecture()) and last["best_score"] == last["valid_acc"]
    table = s.latency_table()
    assert last["best_latency"] == pytest.approx(table.latency(last["best_arch"])) and last["latency_unit"] == "MMACs"
    assert table.extremes()[0] <= last["expected_latency"] <= table.extremes()[1]
    torch.testing.assert_close(last["theta"], s.model.theta.detach())
    # the score: the most likely architecture with its batch norm recalibrated, which leaves the super net as it is
    state = {k: v.clone() for k, v in s.model.state_dict().items()}
    assert last["valid_acc"] == s.evaluate(last["best_arch"])["acc"]
    n_w = len(subsets.train_x) - round(0.2 * len(subsets.train_x))  # w's part of the training half
    assert n_w < s.config.recalibration_size and torch.equal(s.recalibration_images, subsets.train_x[:n_w])
    assert all(torch.equal(v, state[k]) for k, v in s.model.state_dict().items())


def test_latency_accuracy_points_of_found_and_random_architectures(subsets):
    s = fbnet.FBNetSearch(_config(), subsets)
    s.run()
    points = fbnet.latency_accuracy(s, found=3, random=2, seed=5)
    assert [p["kind"] for p in points] == ["found"] * 3 + ["random"] * 2
    found = fbnet.sample_architectures(s.model.theta.detach(), 3, seed=5)
    random = fbnet.random_architectures(2, 7, seed=6)
    table = s.latency_table()
    for p, arch in zip(points, found + random):
        assert p["arch"] == str(arch) and p["latency"] == pytest.approx(table.latency(arch))
        assert p["acc"] == s.evaluate(arch)["acc"]
    assert fbnet.latency_accuracy(s, found=0, random=0) == []
    with pytest.raises(ValueError, match="found and random must be >= 0, got -1 and 2"):
        fbnet.latency_accuracy(s, found=-1, random=2)


def test_random_architectures_are_uniform():
    archs = fbnet.random_architectures(2000, 1, seed=0)
    counts = torch.bincount(torch.tensor([FBNET_BLOCKS.index(a.blocks[0]) for a in archs]), minlength=K).double()
    chi_square = float(((counts - 2000 / K) ** 2 / (2000 / K)).sum())
    assert chi_square < 26.12  # 8 degrees of freedom, p = 0.001
    assert fbnet.random_architectures(3, 22, seed=1) == fbnet.random_architectures(3, 22, seed=1)


def test_same_seed_same_records_and_resume_gives_the_uninterrupted_result(subsets, tmp_path):
    whole = fbnet.search(_config(), subsets)
    assert _strip(fbnet.search(_config(), subsets)) == _strip(whole)
    path = tmp_path / "run.pt"
    assert len(fbnet.search(_config(), subsets, checkpoint=path, stop_after=2)) == 2
    assert _strip(fbnet.search(_config(), subsets, checkpoint=path)) == _strip(whole)
    assert _strip(fbnet.search(_config(seed=4), subsets)) != _strip(whole)


def test_measured_table_is_kept_in_the_checkpoint(subsets, tmp_path):
    config = _config(latency="measure", latency_cache=None, latency_warmup=0, latency_repeats=1, epochs=2,
                     hard=True)
    first = fbnet.FBNetSearch(config, subsets, checkpoint=tmp_path / "m.pt")
    first.run(stop_after=1)
    resumed = fbnet.FBNetSearch(config, subsets, checkpoint=tmp_path / "m.pt")
    assert resumed.resume() and resumed.table == first.table and resumed.table.unit == "ms"
    assert len(resumed.run()) == 2


def test_search_refuses_data_and_units_that_do_not_fit(subsets):
    with pytest.raises(ValueError, match="field 'image_size' is 16, but the data's images have shape"):
        fbnet.FBNetSearch(_config(image_size=16), subsets)
    with pytest.raises(ValueError, match="field 'batch_size' \\(16\\) is larger than"):
        fbnet.FBNetSearch(_config(batch_size=16), subsets)
    with pytest.raises(ValueError, match="field 'latency_unit' is 1.0 MMACs, but the smallest"):
        fbnet.FBNetSearch(_config(latency_unit=1.0), subsets).run()


# -- the results table: the published networks ------------------------------------------------------------------------
#: Our counts at 224x224, 1000 classes (see blocks.profile for the convention).
OURS = {"fbnet_a": (4_321_464, 4_287_480, 249_921_848), "fbnet_b": (4_813_048, 4_779_640, 296_614_728),
        "fbnet_c": (5_572_200, 5_527_832, 384_960_160)}


@pytest.mark.parametrize("name", sorted(fbnet.PUBLISHED))
def test_published_networks_against_the_papers_counts(name):
    p = blocks.profile(fbnet.published_model(name), (3, 224, 224))
    assert (p.params, p.conv_linear_params, p.macs) == OURS[name]
    paper, readme = fbnet.PAPER_RESULTS[name], fbnet.AUTHORS_README[name]
    # multiply-adds: within 3% of the paper's FLOPs (A +0.4%, B +0.5%, C +2.7%)
    assert abs(p.macs / 1e6 - paper["flops"]) / paper["flops"] < 0.03
    # parameters of the convolutions and the classifier, rounded as printed: the authors' README;
    # the paper's too, except FBNet-B's 4.5M (ours and the README's: 4.8M, +6%)
    assert round(p.conv_linear_params / 1e6, 1) == readme["params"]
    if name != "fbnet_b":
        assert round(p.conv_linear_params / 1e6, 1) == paper["params"]
    assert abs(p.conv_linear_params / 1e6 - paper["params"]) / paper["params"] < 0.07
