"""DARTS (nas_tutorial.darts): relaxation, hypergradients, derivation, search, toy problem, widget callback."""

import math

import matplotlib
import pytest
import torch
from torch.nn import functional as F

from nas_tutorial import darts, ops
from nas_tutorial import data as D
from nas_tutorial.genotypes import DARTS_V1, DARTS_V2
from nas_tutorial.ops import DARTS_OPS
from tests.conftest import smoothed

matplotlib.use("Agg")


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(dtype=torch.float32, seed=0, layers=3, alpha_init_std=0.1, fused=True):
    torch.manual_seed(seed)
    return darts.SearchNetwork(4, 10, layers, alpha_init_std=alpha_init_std, fused=fused).to(dtype).train()


def _batches(dtype=torch.float32, size=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    make = lambda: (torch.randn(4, 3, size, size, generator=g, dtype=dtype), torch.randint(0, 10, (4,), generator=g))
    return make(), make()


def _rel_err(a: dict, b: dict) -> float:
    num = sum(((a[k] - b[k]) ** 2).sum() for k in a).sqrt()
    return float(num / sum((b[k] ** 2).sum() for k in b).sqrt())


# -- search space ----------------------------------------------------------------------------------
@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_is_the_softmax_weighted_sum_of_its_candidates(stride):
    torch.manual_seed(0)
    op = darts.MixedOp(4, stride).train()
    x = torch.randn(2, 4, 8, 8)
    alpha = torch.randn(len(DARTS_OPS))
    weights = F.softmax(alpha, dim=-1)
    explicit = sum(weights[k] * candidate(x) for k, candidate in enumerate(op.candidates))  # none included
    torch.testing.assert_close(op(x, weights), explicit)
    assert op(x, weights).shape == (2, 4, 8 // stride, 8 // stride)


def test_search_space_has_14_edges_of_8_candidates():
    assert darts.num_edges(4) == 14
    assert darts.edge_labels(4)[:5] == ["k-2→0", "k-1→0", "k-2→1", "k-1→1", "0→1"]
    model = darts.SearchNetwork()  # the paper's search network: 16 channels, 8 cells
    assert len(model.cells) == 8 and [i for i, c in enumerate(model.cells) if c.reduction] == [2, 5]
    assert all(len(c.edges) == 14 and len(c.edges[0].candidates) == 8 for c in model.cells)
    assert model.stem[0].out_channels == 3 * 16 and model.classifier.in_features == 4 * 64


def test_alpha_is_a_parameter_in_the_state_dict_reachable_by_one_method():
    model = _tiny()
    normal, reduce = model.arch_parameters()
    assert normal is model.alpha_normal and reduce is model.alpha_reduce
    assert normal.shape == (14, 8) and isinstance(normal, torch.nn.Parameter)
    state = model.state_dict()
    assert {"alpha_normal", "alpha_reduce"} <= set(state)
    ids = {id(p) for p in model.weight_parameters()}
    assert id(normal) not in ids and len(ids) + 2 == len(list(model.parameters()))
    assert torch.all(darts.SearchNetwork(4, 10, 3).alpha_normal == 0)  # the paper's zero initialisation
    other = darts.SearchNetwork(4, 10, 3)
    other.load_state_dict(state)
    torch.testing.assert_close(other.alpha_reduce, model.alpha_reduce)


def test_wrong_alpha_shapes_and_unknown_operations_are_clear_errors():
    model = _tiny()
    with pytest.raises(ValueError, match=r"alpha_normal must have shape \(14, 8\).*got \(14, 7\)"):
        model.set_alphas(torch.zeros(14, 7), torch.zeros(14, 8))
    bad = model.state_dict()
    bad["alpha_reduce"] = torch.zeros(10, 8)
    with pytest.raises(ValueError, match="alpha_reduce must have shape"):
        model.load_state_dict(bad)
    with pytest.raises(ValueError, match="must have shape"):
        darts.derive_genotype(torch.zeros(13, 8), torch.zeros(14, 8))
    with pytest.raises(ValueError, match="one weight per candidate"):
        model.cells[0].edges[0](torch.randn(1, 4, 8, 8), torch.ones(7) / 7)
    with pytest.raises(ValueError, match="unknown operation 'conv_9x9'"):
        darts.SearchNetwork(4, 10, 3, ops=("none", "conv_9x9"))
    with pytest.raises(ValueError, match="unknown operation"):
        darts.derive_genotype(torch.zeros(14, 2), torch.zeros(14, 2), ops=("none", "sep_conv_3x3x"))


# -- the fast path: the same mathematics as the readable one -------------------------------------
def _fused_and_plain(seed=0, layers=3):
    """Two float64 supernets with equal weights, α and batch-norm statistics: fused and readable."""
    fused = _tiny(torch.float64, seed=seed, layers=layers, alpha_init_std=1.0)
    with torch.no_grad():  # running statistics away from their initial 0 / 1
        fused(torch.randn(6, 3, 8, 8, dtype=torch.float64))
    plain = _tiny(torch.float64, seed=seed, layers=layers, fused=False)
    plain.load_state_dict(fused.state_dict())
    return fused, plain


@pytest.mark.parametrize("training", [True, False])
def test_fused_supernet_equals_the_readable_one_in_float64(training):
    fused, plain = _fused_and_plain()
    assert fused.fused and all(c.fused for c in fused.cells) and not any(c.fused for c in plain.cells)
    x, y = torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.randint(0, 10, (6,))
    results = []
    for model in (fused, plain):
        model.train(training)
        logits = model(x)
        F.cross_entropy(logits, y).backward()  # gradients of w and of alpha
        results.append((logits, {n: p.grad for n, p in model.named_parameters()}, model.state_dict()))
    (logits_f, grads_f, state_f), (logits_p, grads_p, state_p) = results
    torch.testing.assert_close(logits_f, logits_p, rtol=1e-10, atol=1e-12)
    assert grads_f.keys() == grads_p.keys() and grads_f["alpha_normal"].abs().sum() > 0
    for name in grads_p:
        torch.testing.assert_close(grads_f[name], grads_p[name], rtol=1e-9, atol=1e-12, msg=name)
    for name in state_p:  # running mean, variance and count of every batch norm, updated alike
        torch.testing.assert_close(state_f[name], state_p[name], rtol=1e-9, atol=1e-12, msg=name)


def test_fused_supernet_follows_modules_swapped_in():
    fused, plain = (smoothed(m) for m in _fused_and_plain(seed=1))  # the notebook's smooth copy
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(fused(x), plain(x), rtol=1e-10, atol=1e-12)
    relu_net = _tiny(torch.float64, seed=1, alpha_init_std=1.0)
    relu_net.load_state_dict(fused.state_dict())
    assert not torch.allclose(relu_net(x), fused(x))  # so the swap did change the function


@pytest.mark.parametrize("order, method", [(1, "finite_difference"), (2, "finite_difference"), (2, "exact")])
def test_fused_architect_hypergradient_and_steps_equal_the_readable_ones_in_float64(order, method):
    fused, plain = _fused_and_plain(seed=2)
    train, valid = _batches(torch.float64, seed=4)
    results = []
    for model in (fused, plain):
        optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
        architect = darts.Architect(model, optimizer, order=order, method=method, arch_lr=0.01)
        hypergradient = architect.hypergradient(train, valid)  # Eq. 7 (or the first-order gradient)
        for _ in range(2):  # two iterations of Alg. 1: alpha step, then weight step (momentum buffers exist)
            architect.step(train, valid)
            optimizer.zero_grad()
            F.cross_entropy(model(train[0]), train[1]).backward(inputs=model.weight_parameters())
            optimizer.step()
        results.append((hypergradient, model.state_dict()))
    (hyper_f, state_f), (hyper_p, state_p) = results
    torch.testing.assert_close(hyper_f.val_loss, hyper_p.val_loss, rtol=1e-10, atol=0)
    for name in hyper_p.grads:
        torch.testing.assert_close(hyper_f.grads[name], hyper_p.grads[name], rtol=1e-7, atol=1e-10)
    for name in state_p:
        torch.testing.assert_close(state_f[name], state_p[name], rtol=1e-7, atol=1e-10, msg=name)


@pytest.mark.parametrize("kernel, stride, dilation", [(3, 1, 1), (5, 1, 1), (3, 1, 2), (5, 1, 2), (3, 2, 1),
                                                      (5, 2, 2), (7, 2, 1)])
def test_depthwise_conv2d_and_its_gradients_equal_conv2d(kernel, stride, dilation):
    padding = dilation * (kernel - 1) // 2
    x = torch.randn(3, 5, 9, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 1, kernel, kernel, dtype=torch.float64, requires_grad=True)
    out = ops.depthwise_conv2d(x, w, stride, padding, dilation)
    ref = F.conv2d(x, w, None, stride, padding, dilation, groups=5)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(out, (x, w), g), torch.autograd.grad(ref, (x, w), g))
    # the backward is itself differentiable (the exact hypergradient needs it)
    assert torch.autograd.gradcheck(lambda a, b: ops.depthwise_conv2d(a, b, stride, padding, dilation),
                                    (x[:1, :2, :6, :6].detach().requires_grad_(), w[:2].detach().requires_grad_()))
    assert torch.autograd.gradgradcheck(lambda a, b: ops.depthwise_conv2d(a, b, stride, padding, dilation),
                                        (x[:1, :2, :6, :6].detach().requires_grad_(), w[:2].detach().requires_grad_()))


@pytest.mark.parametrize("name", sorted(ops.OPS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("training", [True, False])
def test_apply_many_equals_the_modules_one_by_one(name, stride, training):
    torch.manual_seed(0)
    modules = [darts.MixedOp(4, stride, (name,)).candidates[0].double() for _ in range(3)]  # the supernet's form
    twins = [darts.MixedOp(4, stride, (name,)).candidates[0].double() for _ in range(3)]
    x = torch.randn(4, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    for m, twin in zip(modules, twins):
        m.train()(torch.randn(4, 4, 8, 8, dtype=torch.float64))  # distinct running statistics per module
        twin.load_state_dict(m.state_dict())
        m.train(training)
        twin.train(training)
    many = ops.apply_many(modules, x)  # (B, E or 1, C, H', W')
    one_by_one = torch.stack([twin(x) for twin in twins], 1)
    torch.testing.assert_close(many.expand_as(one_by_one), one_by_one, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(one_by_one)
    params = [p for m in modules for p in m.parameters()]
    twin_params = [p for m in twins for p in m.parameters()]
    grads = torch.autograd.grad((many * g).sum(), [x] + params)
    twin_grads = torch.autograd.grad((one_by_one * g).sum(), [x] + twin_params)
    torch.testing.assert_close(grads, twin_grads, rtol=1e-9, atol=1e-12)
    for m, twin in zip(modules, twins):
        for (key, value), twin_value in zip(m.state_dict().items(), twin.state_dict().values()):
            torch.testing.assert_close(value, twin_value, rtol=1e-10, atol=1e-12, msg=key)


def test_the_readable_path_stays_selectable():
    model = darts.SearchNetwork(4, 10, 3)
    assert model.fused  # the default
    model.fused = False
    assert not any(cell.fused for cell in model.cells)
    assert not darts.SearchNetwork(4, 10, 3, fused=False).cells[0].fused


# -- hypergradients ------------------------------------------------------------------------------
def test_finite_difference_hypergradient_matches_exact_autograd_in_float64():
    model = _tiny(torch.float64)
    train, valid = _batches(torch.float64)
    optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    architect = darts.Architect(model, optimizer, order=2)
    exact = architect.hypergradient(train, valid, method="exact").grads
    # a small epsilon: with the paper's 0.01 / ||v|| the ReLU and max-pool kinks dominate the error
    architect.eps_scale = 1e-6
    approx = architect.hypergradient(train, valid, method="finite_difference")
    assert 0 < approx.eps < 1e-6  # eps = 1e-6 / ||grad_w' L_val||, and that norm exceeds 1 here
    assert _rel_err(approx.grads, exact) < 1e-4
    # and the implicit term matters: first order is far from the second-order gradient
    first = architect.hypergradient(train, valid, xi=0.0).grads
    assert _rel_err(first, exact) > 1e-3


def test_eq7_chain_rule_and_exact_hessian_vector_product():
    # the exact gradient through the virtual step equals Eq. 7 with the exact mixed Hessian-vector product
    model = _tiny(torch.float64)
    train, valid = _batches(torch.float64, seed=3)
    optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.1)
    architect = darts.Architect(model, optimizer, order=2, include_momentum=False)
    w = dict(model.named_weight_parameters())
    alpha = {n: p for n, p in model.named_parameters() if n.startswith("alpha_")}
    train_loss, val_loss = architect.loss_fn(*train), architect.loss_fn(*valid)
    xi = 0.1
    w_virtual = darts.virtual_step(train_loss, w, alpha, xi)
    grads = torch.autograd.grad(val_loss(w_virtual, alpha), list(alpha.values()) + list(w_virtual.values()))
    grad_alpha, v = dict(zip(alpha, grads[:2])), dict(zip(w, grads[2:]))
    hvp = darts.exact_hvp(train_loss, w, alpha, v)
    eq7 = {n: grad_alpha[n] - xi * hvp[n] for n in alpha}
    exact = darts.architecture_gradient(train_loss, val_loss, w, alpha, xi=xi, method="exact").grads
    assert _rel_err(eq7, exact) < 1e-10
    fd = darts.finite_difference_hvp(train_loss, w, alpha, v, eps=1e-6)
    assert _rel_err(fd, hvp) < 1e-4


def test_hypergradient_leaves_weights_and_batchnorm_statistics_untouched():
    model = _tiny()
    train, valid = _batches()
    optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9)
    loss = F.cross_entropy(model(train[0]), train[1])  # one real step, so momentum buffers exist
    loss.backward(inputs=model.weight_parameters())
    optimizer.step()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    darts.Architect(model, optimizer, order=2).hypergradient(train, valid)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_first_order_equals_second_order_with_xi_zero():
    train, valid = _batches()
    results = []
    for order, xi in ((1, None), (2, 0.0)):
        model = _tiny(seed=5, layers=2)
        optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9)
        architect = darts.Architect(model, optimizer, order=order, xi=xi, arch_lr=0.01)
        for _ in range(2):
            architect.step(train, valid)
            F.cross_entropy(model(train[0]), train[1]).backward(inputs=model.weight_parameters())
            optimizer.step()
            optimizer.zero_grad()
        results.append(model.state_dict())
    for k in results[0]:
        torch.testing.assert_close(results[0][k], results[1][k], rtol=0, atol=0)


def test_second_order_xi_follows_the_weight_learning_rate():
    model = _tiny()
    optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.0123)
    assert darts.Architect(model, optimizer, order=2).current_xi() == 0.0123
    assert darts.Architect(model, optimizer, order=2, xi=0.5).current_xi() == 0.5
    assert darts.Architect(model, optimizer, order=1).current_xi() == 0.0
    with pytest.raises(ValueError, match="order must be"):
        darts.Architect(model, optimizer, order=3)


# -- Figure 2: the toy problem -------------------------------------------------------------------
@pytest.mark.parametrize("w, alpha, xi", [(-2.0, 2.0, 0.5), (0.3, -1.2, 0.1), (1.5, 0.7, 0.0), (2.0, 2.0, 0.9)])
def test_toy_hypergradients_agree(w, alpha, xi):
    analytic = darts.toy_hypergradient_analytic(w, alpha, xi)
    assert darts.toy_hypergradient(w, alpha, xi, method="exact") == pytest.approx(analytic, abs=1e-12)
    assert darts.toy_hypergradient(w, alpha, xi, method="finite_difference") == pytest.approx(analytic, abs=1e-9)


def test_toy_second_order_reaches_the_bilevel_optimum_and_first_order_does_not():
    second = darts.toy_trajectory(2.0, -2.0, xi=0.5, steps=300)
    first = darts.toy_trajectory(2.0, -2.0, xi=0.0, steps=300)
    assert second.shape == (301, 2)
    torch.testing.assert_close(second[-1], torch.tensor([1.0, 1.0], dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(first[-1], torch.tensor([2.0, 2.0], dtype=torch.float64), atol=1e-4, rtol=0)
    # the toy losses themselves: L_val on the constraint w = alpha is (alpha - 1)^2
    a = torch.tensor(0.3)
    assert darts.toy_val_loss(a, a) == pytest.approx(float((a - 1) ** 2))
    assert darts.toy_train_loss(a, a) == 0


# -- derivation ----------------------------------------------------------------------------------
def _index(op):
    return DARTS_OPS.index(op)


def test_derive_on_hand_made_alpha_including_none_strongest():
    alpha = torch.zeros(14, 8)
    # node 0 (rows 0, 1): none is the strongest operation on row 0; both edges are kept anyway
    alpha[0, _index("none")] = 5.0
    alpha[0, _index("dil_conv_5x5")] = 1.0
    alpha[1, _index("sep_conv_3x3")] = 2.0
    # node 1 (rows 2, 3, 4): row 2 has the largest raw non-none alpha (5) but none (10) swamps it in the
    # softmax, so its strength is tiny and the edge is dropped
    alpha[2, _index("none")] = 10.0
    alpha[2, _index("sep_conv_5x5")] = 5.0
    alpha[3, _index("max_pool_3x3")] = 1.0
    alpha[4, _index("dil_conv_3x3")] = 2.0
    # node 2 (rows 5..8) all zero: ties go to the lower inputs and the first non-none operation
    # node 3 (rows 9..13): input 4 (node 2) strongest, then input 1
    alpha[13, _index("skip_connect")] = 3.0
    alpha[10, _index("avg_pool_3x3")] = 1.5
    genotype = darts.derive_genotype(alpha, torch.zeros(14, 8))
    assert genotype.normal == (
        ("sep_conv_3x3", 1), ("dil_conv_5x5", 0),
        ("dil_conv_3x3", 2), ("max_pool_3x3", 1),
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("skip_connect", 4), ("avg_pool_3x3", 1),
    )
    assert genotype.normal_concat == (2, 3, 4, 5)
    assert genotype.reduce == (("max_pool_3x3", 0), ("max_pool_3x3", 1)) * 4
    assert "none" not in {op for op, _ in genotype.normal}


@pytest.mark.parametrize("published", [DARTS_V1, DARTS_V2])
def test_alpha_that_encodes_a_published_cell_derives_it(published):
    def encode(edges):
        alpha = torch.zeros(14, 8)
        for position, (op, source) in enumerate(edges):
            node = position // 2
            row = sum(i + 2 for i in range(node)) + source
            alpha[row, _index(op)] = 3.0 - position % 2  # the first listed edge is the stronger one
        return alpha

    derived = darts.derive_genotype(encode(published.normal), encode(published.reduce))
    assert derived == published


# -- search --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def subsets(cifar):
    return D.make_subsets(cifar, train_size=64, test_size=20, image_size=8, seed=0)


def _config(**changes):
    settings = dict(channels=4, layers=2, epochs=2, batch_size=8, steps_per_epoch=2, order=1, arch_lr=0.05,
                    augment=D.Augment(crop_padding=1), seed=3)
    return darts.DartsConfig(**{**settings, **changes})


def test_config_defaults_are_the_papers_search_and_bad_values_are_named():
    c = darts.DartsConfig.paper()
    assert c == darts.DartsConfig()
    assert (c.channels, c.layers, c.epochs, c.batch_size, c.lr, c.arch_lr, c.arch_betas, c.order) == \
        (16, 8, 50, 64, 0.025, 3e-4, (0.5, 0.999), 2)
    assert darts.DartsConfig.fast().channels == 4
    for changes, message in [(dict(channels=0), "'channels' must be a positive integer, got 0"),
                             (dict(ops=("none",)), "'ops' must contain an operation other than 'none'"),
                             (dict(ops=("conv_9x9",)), "unknown operation 'conv_9x9'"),
                             (dict(order=3), "'order' must be 1 .* or 2"),
                             (dict(method="hessian"), "'method' must be 'finite_difference' or 'exact'"),
                             (dict(multiplier=5), "'multiplier' must be in 1..num_nodes=4")]:
        with pytest.raises(ValueError, match=message):
            darts.DartsConfig(**changes)


def test_search_returns_records_and_moves_alpha(subsets):
    s = darts.DartsSearch(_config(), subsets)
    records = s.run()
    assert [r["epoch"] for r in records] == [1, 2] == [r["step"] for r in records]
    assert {"train_loss", "train_acc", "valid_loss", "valid_acc", "search_val_loss", "alpha_normal", "alpha_reduce",
            "num_nodes", "lr", "xi", "seconds", "best_arch", "best_score"} <= set(records[0])
    assert records[0]["xi"] == 0.0 and records[0]["lr"] == pytest.approx(0.025)
    assert not torch.equal(records[-1]["alpha_reduce"], torch.zeros(14, 8))
    torch.testing.assert_close(records[-1]["alpha_reduce"], s.model.alpha_reduce.detach())
    assert records[-1]["best_arch"] == str(s.model.genotype()) and records[-1]["best_score"] == records[-1]["valid_acc"]
    assert all(math.isfinite(r["train_loss"]) for r in records)


def test_second_order_search_runs(subsets):
    records = darts.search(_config(order=2, epochs=1), subsets)
    assert records[0]["xi"] == pytest.approx(0.025) and math.isfinite(records[0]["search_val_loss"])


def test_exact_hypergradient_is_a_search_option(subsets):
    records = darts.search(_config(epochs=1, steps_per_epoch=1, order=2, method="exact", augment=None), subsets)
    assert math.isfinite(records[0]["search_val_loss"])


def test_search_checkpoint_resumes_to_the_same_result(subsets, tmp_path):
    whole = darts.search(_config(), subsets)
    path = tmp_path / "search.pt"
    assert len(darts.search(_config(), subsets, checkpoint=path, stop_after=1)) == 1
    resumed = darts.search(_config(), subsets, checkpoint=path)
    assert len(resumed) == 2
    for a, b in zip(whole, resumed, strict=True):
        assert a["train_loss"] == b["train_loss"] and a["valid_acc"] == b["valid_acc"]
        assert torch.equal(a["alpha_normal"], b["alpha_normal"]) and torch.equal(a["alpha_reduce"], b["alpha_reduce"])
    with pytest.raises(ValueError, match="config.epochs=2 \\(now 3\\)"):
        darts.search(_config(epochs=3), subsets, checkpoint=path)


def test_resume_on_other_data_is_refused(cifar, subsets, tmp_path):
    path = tmp_path / "search.pt"
    darts.search(_config(epochs=1), subsets, checkpoint=path)
    other = D.make_subsets(cifar, train_size=64, test_size=20, image_size=8, seed=1)  # another draw
    with pytest.raises(ValueError, match="context.data.train"):
        darts.search(_config(epochs=1), other, checkpoint=path)


def test_non_finite_alpha_stops_with_a_clear_error(subsets):
    s = darts.DartsSearch(_config(epochs=1), subsets)
    with torch.no_grad():
        s.model.alpha_normal[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="epoch 1: the loss or alpha is not finite"):
        s.run()
    with pytest.raises(ValueError, match="alpha_normal has non-finite values"):
        darts.derive_genotype(s.model.alpha_normal, s.model.alpha_reduce)


# -- widget callback -----------------------------------------------------------------------------
def test_alpha_epoch_view_draws_heatmaps_and_derived_cells():
    import matplotlib.pyplot as plt

    alpha = torch.zeros(14, 8)
    alpha[:, _index("skip_connect")] = 1.0
    history = [{"epoch": 1, "num_nodes": 4, "alpha_normal": torch.zeros(14, 8), "alpha_reduce": torch.zeros(14, 8)},
               {"epoch": 2, "num_nodes": 4, "alpha_normal": alpha, "alpha_reduce": torch.zeros(14, 8)}]
    fig, axes = plt.subplots(1, 2)
    view = darts.alpha_epoch_view(history, 1, axes=axes)
    assert view["epoch"] == 2
    assert all(op == "skip_connect" for op, _ in view["genotype"].normal)
    torch.testing.assert_close(view["weights_normal"].sum(1), torch.ones(14, dtype=torch.float64))
    assert len(axes[0].images) == 1 and axes[0].get_title() == "softmax(alpha_normal), epoch 2"
    assert "skip_connect" in view["normal"].source() and view["reduce"].name == "reduce_cell"
    plt.close(fig)
    assert darts.alpha_epoch_view(history, 0)["genotype"].normal[0] == ("max_pool_3x3", 0)
    with pytest.raises(ValueError, match="out of range"):
        darts.alpha_epoch_view(history, 2)
