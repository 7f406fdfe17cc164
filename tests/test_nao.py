"""NAO: tokens, encoder-predictor-decoder, the joint loss, the ascent, the search (resumable, NAO-WS), NAONet."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from nas_tutorial import data as D
from nas_tutorial import nao
from nas_tutorial.cells import NetworkCIFAR, parameter_count
from nas_tutorial.enas import random_arch
from nas_tutorial.enas_space import ENAS_OPS, from_enas_arc, to_enas_arc
from nas_tutorial.evaluators import Evaluator, FailOn, InProcessEvaluator, describe_fitness
from nas_tutorial.genotypes import DARTS_V2, Genotype
from nas_tutorial.ops import OPS, make_op
from nas_tutorial.pnas import spearman
from nas_tutorial.search import Search, plain

pytestmark = pytest.mark.usefixtures("one_thread")


def _archs(n, num_blocks=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [random_arch("micro", num_blocks=num_blocks, generator=g) for _ in range(n)]


def _model(num_blocks=2, **kwargs):
    settings = dict(embedding_size=16, hidden_size=48, mlp_layers=1, mlp_hidden_size=16)
    torch.manual_seed(0)
    return nao.NAO(nao.Vocab(num_blocks), **{**settings, **kwargs})


# -- Sec. 3.1: tokens ---------------------------------------------------------------------------------------------
def test_vocabulary_is_the_authors():
    v = nao.Vocab()
    assert (v.size, v.length) == (12, 40) and nao.NAO_OPS == ENAS_OPS  # controller_*_vocab_size=12, length 40
    assert v.names() == ["<sos>"] + [f"node {j}" for j in range(6)] + list(ENAS_OPS)
    # the authors' parse_arch_to_seq: node + 1, op + 7
    arc = "0 1 0 2 0 1 2 2 1 3 0 2 4 0 1 3 2 1 0 3 1 1 1 0 2 1 2 4 1 0 2 3 3 1 2 2 0 2 0 2".split()
    assert v.encode(nao.NAONET_WS) == [int(a) + (1 if i % 2 == 0 else 7) for i, a in enumerate(arc)]
    mask = v.mask()
    assert mask.shape == (40, 12) and not mask[:, 0].any()  # <sos> is never an architecture's token
    assert [int(mask[r].sum()) for r in range(0, 20, 4)] == [2, 3, 4, 5, 6]  # block b reads nodes 0..b+1
    assert all(int(mask[r].sum()) == 5 for r in range(1, 40, 2))  # every operation slot: the five operations


@pytest.mark.parametrize("num_blocks", [1, 2, 5])
def test_tokens_round_trip(num_blocks):
    v = nao.Vocab(num_blocks)
    for arch in _archs(50, num_blocks, seed=num_blocks):
        tokens = v.encode(arch)
        assert len(tokens) == 8 * num_blocks and v.is_valid(tokens)
        assert v.decode(tokens) == arch and v.decode(torch.tensor(tokens)) == arch
        assert v.encode(Genotype.parse(str(arch))) == tokens


def test_the_evaluation_network_is_built_from_decoded_tokens():
    v = nao.Vocab(2)
    arch = v.decode(v.encode(_archs(1, 2)[0]))
    model = nao.build_network(arch, cells_per_stack=1, channels=4)
    assert isinstance(model, NetworkCIFAR) and len(model.cells) == 5  # 3N + 2 cells
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("call, message", [
    (lambda v: v.check([1] * 39), "a token sequence has 40 tokens .* got 39"),
    (lambda v: v.check("1 7 1 7"), "must be a list of 40 integers"),
    (lambda v: v.check([1, 2] + [7] * 38), "token 1 \\(normal cell, block 0, operation of branch 0\\) is 2"),
    (lambda v: v.check([3] + [7] * 39), "token 0 \\(normal cell, block 0, input of branch 0\\) is 3; "
                                        "valid: 1 \\(node 0\\), 2 \\(node 1\\)"),
    (lambda v: v.check([1, 7, 1, 12] + [1, 7] * 18), "token 3 .* is 12; valid: 7 \\(sep_conv_3x3\\)"),
    (lambda v: v.check([1, 7, 1, 0] + [1, 7] * 18), "token 3 .* is 0"),
    (lambda v: v.check([1.0] + [7] * 39), "token 0 .* is 1.0"),
    (lambda v: v.decode([1, 7] * 10 + [0, 7] * 10), "token 20 \\(reduce cell, block 0, input of branch 0\\) is 0"),
    (lambda v: v.encode(DARTS_V2), "the normal cell has 4 blocks; this vocabulary has B = 5"),
    (lambda v: v.encode(from_enas_arc("0 0 0 0", "0 0 0 0")), "has 1 blocks"),
    (lambda v: v.encode("Genotype(...)"), "expected a Genotype, got str"),
    (lambda v: nao.Vocab(1).encode(Genotype(normal=[("dil_conv_3x3", 0), ("skip_connect", 1)], normal_concat=[2],
                                            reduce=[("skip_connect", 0), ("skip_connect", 1)], reduce_concat=[2])),
     "normal cell: unknown operation 'dil_conv_3x3'; choose one of"),
    (lambda v: nao.Vocab(2).encode(Genotype(normal=[("skip_connect", 0)] * 4, normal_concat=[2, 3],
                                            reduce=[("skip_connect", 0)] * 4, reduce_concat=[3])),
     "reduce cell: its output concatenates \\[3\\], not its loose ends \\[2, 3\\]"),
    (lambda v: nao.Vocab(0), "num_blocks must be an integer >= 1, got 0"),
    (lambda v: nao.Vocab(2, ("sep_conv_3x3", "conv_9x9")), "unknown operation 'conv_9x9'"),
    (lambda v: nao.Vocab(2, ("none", "skip_connect")), "must not contain 'none'"),
    (lambda v: v.swap(v.encode(nao.NAONET_WS), "middle", 0), "cell must be one of \\['normal', 'reduce'\\]"),
    (lambda v: nao.NAO(v, tokens_per_step=3), "tokens_per_step must be 1 .* got 3"),
])
def test_malformed_tokens_and_architectures_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call(nao.Vocab())


def test_swapping_a_blocks_branches():
    v = nao.Vocab()
    tokens = v.encode(nao.NAONET_WS)
    swapped = v.swap(tokens, "reduce", 1)
    assert swapped[24:28] == tokens[26:28] + tokens[24:26] and swapped[:24] == tokens[:24]
    g = v.decode(swapped)
    assert g.reduce[2:4] == nao.NAONET_WS.reduce[2:4][::-1] and g.normal == nao.NAONET_WS.normal
    assert nao.canonical(g) == nao.canonical(nao.NAONET_WS) != str(nao.NAONET_WS)
    assert nao.toy_fitness(g) == nao.toy_fitness(nao.NAONET_WS)  # a toy that knows the symmetry
    # the batched augmentation: one block per cell, the rest untouched, the same network
    batch = torch.tensor([v.encode(a) for a in _archs(64)])
    out = nao.random_swaps(batch, 5, torch.Generator().manual_seed(0))
    again = nao.random_swaps(batch, 5, torch.Generator().manual_seed(0))
    assert torch.equal(out, again) and not torch.equal(out, batch)
    for row, new in zip(batch.tolist(), out.tolist()):
        for cell in range(2):
            blocks = [row[cell * 20 + 4 * b:cell * 20 + 4 * b + 4] for b in range(5)]
            moved = [new[cell * 20 + 4 * b:cell * 20 + 4 * b + 4] for b in range(5)]
            changed = [b for b in range(5) if blocks[b] != moved[b]]
            assert len(changed) <= 1 and all(moved[b] == blocks[b][2:] + blocks[b][:2] for b in changed)
        assert nao.canonical(v.decode(new)) == nao.canonical(v.decode(row))


def test_swapping_the_branches_leaves_the_built_network_unchanged():
    v = nao.Vocab(2)
    arch = Genotype.parse("Genotype(normal=[('sep_conv_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_5x5', 2), "
                          "('skip_connect', 0)], normal_concat=[3], reduce=[('avg_pool_3x3', 1), "
                          "('sep_conv_3x3', 0), ('sep_conv_5x5', 2), ('max_pool_3x3', 1)], reduce_concat=[3])")
    swapped = v.decode(v.swap(v.swap(v.encode(arch), "normal", 0), "reduce", 1))
    assert swapped != arch
    torch.manual_seed(0)
    net = NetworkCIFAR(arch, 4, 10, 5, auxiliary=False).eval()
    twin = NetworkCIFAR(swapped, 4, 10, 5, auxiliary=False).eval()
    state = {}
    for key, value in net.state_dict().items():  # the same weights, each edge's weights with its edge
        parts = key.split(".")
        if parts[0] == "cells" and parts[2] == "ops":
            reduction = net.cells[int(parts[1])].reduction
            swap_block = 1 if reduction else 0
            edge = int(parts[3])
            if edge // 2 == swap_block:
                parts[3] = str(edge ^ 1)
        state[".".join(parts)] = value
    twin.load_state_dict(state)
    x = torch.randn(3, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), net(x))
    assert any(c.reduction for c in net.cells) and any(not c.reduction for c in net.cells)


# -- Sec. 3.2: attention, the three parts ------------------------------------------------------------------------------
def test_attention_weights_are_a_distribution_and_equal_the_seeds_attention():
    torch.manual_seed(0)
    attention = nao.Attention(8, 6, 5)
    output, source = torch.randn(3, 4, 8), torch.randn(3, 7, 6)
    mixed, attn = attention(output, source)
    assert mixed.shape == (3, 4, 5) and attn.shape == (3, 4, 7)
    assert (attn >= 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 4))
    # the seed's Attention, step by step (its view/softmax over dim 1 of (n * T_dec, T'))
    x = output @ attention.input_proj.weight.T
    scores = torch.bmm(x, source.transpose(1, 2))
    weights = F.softmax(scores.view(-1, 7), dim=1).view(3, -1, 7)
    combined = torch.cat((torch.bmm(weights, source), output), dim=2)
    expected = torch.tanh(combined.view(-1, 14) @ attention.output_proj.weight.T).view(3, -1, 5)
    torch.testing.assert_close(attn, weights)
    torch.testing.assert_close(mixed, expected)
    # inside the model: one distribution over the T' encoder states per decoded token
    model = _model(5)
    f, log_probs, attn = model(model.tokens(_archs(3)))
    assert f.shape == (3,) and ((0 < f) & (f < 1)).all() and log_probs.shape == (3, 40, 12)
    assert attn.shape == (3, 40, 20) and (attn >= 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 40))
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 40))


def test_the_model_has_the_authors_sizes():
    model = nao.NAO()
    assert model.encoder.embedding.embedding_dim == 48 and model.encoder.lstm.input_size == 96
    assert model.encoder.lstm.hidden_size == model.decoder.lstm.hidden_size == 96
    assert [m.out_features for m in model.predictor.mlp if isinstance(m, torch.nn.Linear)] == [200, 200, 200]
    assert model.decoder.out.out_features == 12 and model.decoder.attention.input_proj.bias is None
    h = model.encoder(model.tokens(_archs(2)))
    assert h.shape == (2, 20, 96)
    torch.testing.assert_close(h.norm(dim=-1), torch.ones(2, 20))  # unit states (code)
    h0, c0 = model.decoder.initial_state(h)
    torch.testing.assert_close(h0[0], nao.mean_state(h))
    torch.testing.assert_close(c0, h0)  # (e, e): the mean state as both hidden and cell state
    assert nao.NAO(tokens_per_step=1).encoder(model.tokens(_archs(1))).shape == (1, 40, 96)  # a state per token


def test_the_joint_loss_is_equation_1():
    model = _model(2).eval()
    tokens = model.tokens(_archs(4, 2))
    targets = torch.tensor([0.1, 0.5, 0.9, 0.3])
    loss, mse, nll = model.loss(tokens, targets, 0.8)
    f, log_probs, _ = model(tokens)
    expected_nll = -log_probs.gather(2, tokens.unsqueeze(-1)).mean()  # mean -log P of every target token
    torch.testing.assert_close(mse, ((f - targets) ** 2).mean())
    torch.testing.assert_close(nll, expected_nll)
    torch.testing.assert_close(loss, 0.8 * mse + 0.2 * nll)
    assert nao.normalise_targets([0.5, 0.7, 0.6]) == pytest.approx([0.0, 1.0, 0.5])
    assert nao.normalise_targets([0.4, 0.4]) == [0.5, 0.5]


# -- Sec. 3.3: inference -------------------------------------------------------------------------------------------
def test_the_ascent_raises_f_to_first_order():
    model = _model(5).double().eval()
    with torch.no_grad():
        model.predictor.regressor.weight.mul_(20)  # a predictor with some slope
    h = model.encoder(model.tokens(_archs(4)))
    f, grad = model.gradient(h)
    torch.testing.assert_close(model.ascend(h, 0.3), h + 0.3 * grad)  # Eq. 2
    squared = (grad ** 2).sum((1, 2))  # ||df/dh||^2 per architecture
    assert (squared > 0).all()
    for eta in (1e-3, 1e-4):
        rise = model.predictor(model.ascend(h, eta)) - f
        # f(h + eta g) - f(h) = eta ||g||^2 + O(eta^2)
        torch.testing.assert_close(rise / (eta * squared), torch.ones(4, dtype=torch.float64), rtol=2e-2, atol=0)
    rises = [model.predictor(model.ascend(h, eta)) - f for eta in (0.01, 0.02, 0.04)]
    assert all((r > 0).all() for r in rises) and all((b > a).all() for a, b in zip(rises, rises[1:]))


def test_the_decoder_reconstructs_its_training_architectures():
    archs = _archs(24, 2, seed=1)
    targets = nao.normalise_targets([nao.toy_fitness(a) for a in archs])
    model = _model(2)
    tokens = model.tokens(archs)
    before = nao.fit_metrics(model, tokens, targets)
    losses = nao.train_nao(model, tokens, targets, epochs=80, batch_size=8, lr=0.005, swap=False, seed=0)
    after = nao.fit_metrics(model, tokens, targets)
    # measured over 6 seeds of this set up: token and whole-architecture accuracy 1.0 in all six; untrained
    # 0.27-0.31 and 0
    assert before["arch_accuracy"] == 0 and after["token_accuracy"] >= 0.95 and after["arch_accuracy"] >= 0.8
    assert after["pairwise_accuracy"] > 0.85 and after["mse"] < 0.02 and losses["nll"] < 0.1
    decoded = model.reconstruct(tokens)
    assert [model.vocab.decode(row) for row in decoded.tolist()] == archs
    # with the branch-swap augmentation the decoder has more to learn (both orders of every block, from states
    # that the symmetric targets pull together): token accuracy 0.67-0.82 over the same 6 seeds
    swapped = _model(2)
    nao.train_nao(swapped, tokens, targets, epochs=80, batch_size=8, lr=0.005, swap=True, seed=0)
    assert 0.5 <= nao.fit_metrics(swapped, tokens, targets)["token_accuracy"] < 1.0


def test_generation_finds_new_valid_architectures_and_counts_the_rest():
    archs = _archs(24, 2, seed=1)
    targets = nao.normalise_targets([nao.toy_fitness(a) for a in archs])
    model = _model(2)
    nao.train_nao(model, model.tokens(archs), targets, epochs=30, batch_size=8, lr=0.01, seed=0)
    known = {str(a) for a in archs}
    new, counts = nao.generate_architectures(model, archs[:8], known, num_new=6, max_step_size=20)
    assert 1 <= len(new) <= 6 and len({e["arch"] for e in new}) == len(new)
    assert not {e["arch"] for e in new} & known and counts["num_invalid"] == 0  # constrained: always valid
    assert counts["num_decoded"] == counts["num_invalid"] + counts["num_known"] + len(new)
    etas = [e["eta"] for e in new]
    assert etas == sorted(etas) and max(etas) <= counts["max_eta"] <= 20
    assert all(e["parent"] in known for e in new)
    # unconstrained decoding of an untrained model: invalid sequences are rejected and counted
    raw = _model(2)
    new, counts = nao.generate_architectures(raw, archs[:8], known, num_new=50, max_step_size=3,
                                             constrained=False)
    assert counts["num_invalid"] > 0 and all(Genotype.parse(e["arch"]) for e in new)
    path = nao.ascent_path(model, archs[0], [0.0, 1.0, 10.0])
    assert path[0]["arch"] == str(model.vocab.decode(model.reconstruct(model.tokens(archs[:1]))[0].tolist()))
    assert [p["eta"] for p in path] == [0.0, 1.0, 10.0] and all(p["valid"] for p in path)


# -- settings ----------------------------------------------------------------------------------------------------
def test_config_defaults_are_the_papers_text_else_the_authors_code():
    c = nao.NAOConfig.paper()
    assert c == nao.NAOConfig() and not c.weight_sharing and nao.NAOConfig.paper(trade_off=0.7).trade_off == 0.7
    assert {k: getattr(c, k) for k in nao.PAPER_TEXT} == nao.PAPER_TEXT == dict(trade_off=0.9, embedding_size=32,
                                                                                step_size=10.0)
    assert (c.num_blocks, c.ops, c.seed_archs, c.top_k, c.new_archs, c.max_step_size) == (5, ENAS_OPS, 600, 100, 300,
                                                                                           50.0)
    assert (c.embedding_size, c.hidden_size, c.tokens_per_step, c.mlp_layers, c.mlp_hidden_size) == (32, 96, 2, 3, 200)
    assert (c.trade_off, c.epochs, c.batch_size, c.lr, c.weight_decay, c.grad_clip) == (0.9, 1000, 100, 0.001, 1e-4,
                                                                                         5.0)
    ws = nao.NAOConfig.paper(weight_sharing=True)
    assert ws.weight_sharing and ws.iterations == 4 and ws.supernet_epochs * 5 == 150 and ws.trade_off == 0.9
    assert c.models_evaluated() == 600 + 3 * 300
    assert nao.NAOConfig.fast().vocab() == nao.Vocab(3) and nao.NAOConfig.fast().step_size == 1.0


@pytest.mark.parametrize("changes, message", [
    (dict(num_blocks=0), "field 'num_blocks' must be an integer >= 1, got 0"),
    (dict(num_blocks=1, seed_archs=10_001), "field 'seed_archs' must be at most the 10000 architectures"),
    (dict(trade_off=1.5), "field 'trade_off' must be a number in \\[0.0, 1.0\\], got 1.5"),
    (dict(tokens_per_step=3), "field 'tokens_per_step' must be 1 .* got 3"),
    (dict(ops=("sep_conv_3x3", "conv_9x9")), "field 'ops': unknown operation 'conv_9x9'"),
    (dict(ops=("none", "skip_connect")), "field 'ops' must not contain 'none'"),
    (dict(step_size=2.0, max_step_size=1.0), "field 'max_step_size' must be a number in \\[2.0, inf\\]"),
    (dict(step_size=0), "field 'step_size' must be a number in \\(0.0, inf\\]"),
    (dict(mlp_dropout=1.0), "field 'mlp_dropout' must be below 1"),
    (dict(top_k=0), "field 'top_k' must be an integer >= 1, got 0"),
    (dict(weight_sharing=True, ops=("sep_conv_3x3", "dil_conv_3x3")), "field 'ops' must be among"),
    (dict(weight_sharing=True, supernet_channels=5), "field 'supernet_channels' must be even"),
    (dict(supernet_augment="flip"), "field 'supernet_augment' must be None or"),
])
def test_impossible_configs_are_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        nao.NAOConfig(**changes)


# -- Algorithm 1: the search ---------------------------------------------------------------------------------------
def _strip(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def _cfg(**changes):
    return nao.NAOConfig.fast(**{**dict(num_blocks=2, seed_archs=12, top_k=4, new_archs=4, iterations=2,
                                        embedding_size=8, hidden_size=16, mlp_layers=1, mlp_hidden_size=16,
                                        epochs=20, batch_size=6, max_step_size=10.0), **changes})


def test_search_follows_algorithm_1_and_repeats_with_the_same_seed():
    cfg = _cfg()
    s = nao.NAOSearch(cfg, nao.toy_fitness)
    records = s.run()
    assert _strip(nao.search(cfg, nao.toy_fitness)) == _strip(records)
    assert _strip(nao.search(cfg.replace(seed=1), nao.toy_fitness)) != _strip(records)
    assert [r["iteration"] for r in records] == [0, 1, 2] and len(records[0]["evaluated"]) == 12
    seeds = {e["arch"] for e in records[0]["evaluated"]}
    assert len(seeds) == 12 and all(e["predicted"] is None and e["parent"] is None for e in records[0]["evaluated"])
    measured = set(seeds)
    for previous, r in zip(records, records[1:]):
        assert len(r["evaluated"]) == previous["num_new"] <= 4
        for e in r["evaluated"]:
            assert e["arch"] not in measured and e["parent"] in measured and 0 < e["eta"] <= 10
            assert e["accuracy"] == nao.toy_fitness(Genotype.parse(e["arch"])) and 0 < e["predicted"] < 1
            measured.add(e["arch"])
        assert r["num_evaluated"] == len(measured)
    for r in records[:-1]:
        assert 0 <= r["token_accuracy"] <= 1 and r["num_invalid"] == 0 and r["max_eta"] <= 10
        assert r["num_decoded"] >= r["num_new"] and math.isfinite(r["train_loss"])
    assert records[-1]["train_loss"] is None and records[-1]["num_new"] is None  # the last step only evaluates
    best = max(measured, key=lambda a: nao.toy_fitness(Genotype.parse(a)))
    assert records[-1]["best_score"] == nao.toy_fitness(Genotype.parse(best)) == s.best()[1]
    assert s.evaluations == len(measured)  # every architecture evaluated once


def test_the_search_finds_better_architectures_on_the_toy_fitness():
    gains, rho = [], []
    for seed in range(3):  # measured (seeds 0-3): last generation 0.06-0.10 above the seed set; held-out rho 0.3-0.95
        records = nao.search(_cfg(num_blocks=3, seed_archs=30, top_k=10, new_archs=10, embedding_size=16,
                                  hidden_size=32, epochs=40, batch_size=10, lr=0.005, seed=seed), nao.toy_fitness)
        gains.append(records[-1]["new_mean_accuracy"] - records[0]["mean_accuracy"])
        rho += [r["held_out_spearman"] for r in records[1:]]
    assert min(gains) > 0.03 and np.mean(rho) > 0.5


def test_resume_after_whole_steps(tmp_path):
    cfg = _cfg()
    full = nao.search(cfg, nao.toy_fitness)
    path = tmp_path / "nao.pt"
    assert len(nao.search(cfg, nao.toy_fitness, checkpoint=path, stop_after=1)) == 1
    assert _strip(nao.search(cfg, nao.toy_fitness, checkpoint=path)) == _strip(full)
    with pytest.raises(ValueError, match="other settings: config.new_archs=4 \\(now 5\\)"):
        nao.search(cfg.replace(new_archs=5), nao.toy_fitness, checkpoint=path)
    with pytest.raises(ValueError, match="context.fitness.type='nas_tutorial.nao.toy_fitness' \\(now "):
        nao.search(cfg, FailOn(("x",), nao.toy_fitness), checkpoint=path)


class _PowerCut(Evaluator):
    """Evaluates ``limit`` candidates, then fails like a machine switched off mid-iteration."""

    def __init__(self, fitness_fn, limit):
        self.fitness_fn, self.limit, self.calls = fitness_fn, limit, 0

    def evaluate(self, candidates, *, on_result=None):
        inner = InProcessEvaluator(self.fitness_fn)
        for i, c in enumerate(candidates):
            if self.calls == self.limit:
                raise KeyboardInterrupt("power cut")
            self.calls += 1
            on_result(i, inner.evaluate([c])[0])


def test_a_bad_model_device_is_named():
    cfg = _cfg(iterations=1)
    with pytest.raises(RuntimeError, match="banana"):
        nao.NAOSearch(cfg, nao.toy_fitness, device="banana")
    assert next(nao.NAOSearch(cfg, nao.toy_fitness).model.parameters()).device.type == "cpu"  # the default
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            nao.NAOSearch(cfg, nao.toy_fitness, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_model_trains_on_a_gpu_and_the_run_resumes_on_the_cpu(tmp_path):
    cfg = _cfg()
    path = tmp_path / "nao.pt"
    on_gpu = nao.NAOSearch(cfg, nao.toy_fitness, checkpoint=path, device="cuda")
    assert next(on_gpu.model.parameters()).device.type == "cuda"
    first = on_gpu.run(stop_after=1)  # step 0: the seed set measured, the model trained, new ones generated
    assert len(first) == 1 and first[0]["num_invalid"] == 0 and len(on_gpu.new) == first[0]["num_new"] > 0
    tensors = list(torch.load(path, weights_only=True)["state"]["search"]["model"].values())
    assert tensors and all(t.device.type == "cpu" for t in tensors)  # written for any machine
    on_cpu = nao.NAOSearch(cfg, nao.toy_fitness, checkpoint=path, device="cpu")
    records = on_cpu.run()
    assert next(on_cpu.model.parameters()).device.type == "cpu" and len(records) == 3
    assert [e["arch"] for e in records[1]["evaluated"]] == on_gpu.new  # what the GPU's model generated


@pytest.mark.parametrize("limit", [5, 12, 14])  # inside the seed set; after it (model not trained); inside step 1
def test_resume_mid_iteration_loses_no_evaluation(tmp_path, limit):
    cfg = _cfg()
    reference = nao.NAOSearch(cfg, nao.toy_fitness)
    full = reference.run()
    path = tmp_path / "nao.pt"
    cut = _PowerCut(nao.toy_fitness, limit=limit)
    with pytest.raises(KeyboardInterrupt):
        nao.NAOSearch(cfg, cut, checkpoint=path).run()
    counting = _PowerCut(nao.toy_fitness, limit=10**9)
    resumed = nao.NAOSearch(cfg, counting, checkpoint=path)
    assert resumed.resume() and resumed.evaluations == limit  # the finished evaluations survived the crash
    assert _strip(resumed.run()) == _strip(full)
    assert cut.calls + counting.calls == reference.evaluations  # nothing evaluated twice


class _CrashAfter(nao.NAOSearch):
    """Crashes once, right after the named stage of step 0 is on disk."""

    def __init__(self, *args, stage, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage = stage

    def _train(self, index):
        super()._train(index)
        if self.stage == "train":
            raise KeyboardInterrupt("crash after training")

    def _generate(self, index):
        super()._generate(index)
        if self.stage == "generate":
            raise KeyboardInterrupt("crash after the generation, before the record")


@pytest.mark.parametrize("stage", ["train", "generate"])
def test_a_crash_between_the_stages_neither_skips_nor_repeats_one(tmp_path, stage):
    cfg = _cfg()
    full = nao.search(cfg, nao.toy_fitness)
    path = tmp_path / "nao.pt"
    with pytest.raises(KeyboardInterrupt):
        _CrashAfter(cfg, nao.toy_fitness, checkpoint=path, stage=stage).run()
    resumed = nao.NAOSearch(cfg, nao.toy_fitness, checkpoint=path)
    assert resumed.resume() and resumed.records == [] and resumed.trained == 0
    assert resumed.generated == (0 if stage == "generate" else -1)
    assert _strip(resumed.run()) == _strip(full)


def test_a_failed_evaluation_is_recorded_and_the_search_goes_on():
    cfg = _cfg(iterations=1)
    bad = nao.NAOSearch(cfg, nao.toy_fitness).seed_set()[3]
    records = nao.search(cfg, FailOn((bad,), nao.toy_fitness))
    failed = [e for e in records[0]["evaluated"] if e["arch"] == bad]
    assert failed[0]["accuracy"] is None and "simulated failure" in failed[0]["error"]
    assert records[0]["failed"] == 1 and records[0]["num_evaluated"] == 12 and len(records) == 2


def test_unconstrained_decoding_rejects_and_counts_invalid_sequences():
    records = nao.search(_cfg(constrained_decoding=False, epochs=2), nao.toy_fitness)
    assert sum(r["num_invalid"] for r in records[:-1]) > 0  # an untrained decoder breaks the grammar
    assert all(Genotype.parse(e["arch"]) for r in records for e in r["evaluated"])


class _Backwards(Evaluator):
    """Reports results last to first, as a process pool may: the records must not depend on the order."""

    def __init__(self, fitness_fn):
        self.fitness_fn = fitness_fn

    def evaluate(self, candidates, *, on_result=None):
        results = InProcessEvaluator(self.fitness_fn).evaluate(candidates)
        for i in reversed(range(len(results))):
            on_result(i, results[i])
        return results


def test_the_records_do_not_depend_on_the_order_results_arrive_in():
    cfg = _cfg(iterations=1)
    assert _strip(nao.search(cfg, _Backwards(nao.toy_fitness))) == _strip(nao.search(cfg, nao.toy_fitness))


def test_a_search_that_trains_networks_resumes_and_names_its_fitness(tmp_path, data_root):
    fitness = nao.training_fitness(str(data_root), cells_per_stack=1, channels=4, epochs=1, train_size=40,
                                   image_size=8, batch_size=20)
    described = describe_fitness(fitness)
    assert "0x" not in str(described) and described["build"] == {"cells_per_stack": 1, "channels": 4,
                                                                  "num_classes": 10}
    cfg = _cfg(seed_archs=3, new_archs=2, top_k=2, iterations=1, epochs=5)
    path = tmp_path / "nao.pt"
    assert len(nao.search(cfg, fitness, checkpoint=path, stop_after=1)) == 1
    records = nao.search(cfg, fitness, checkpoint=path)
    assert [r["num_evaluated"] for r in records] == [3, 3 + records[0]["num_new"]]
    assert all(0 <= r["best_score"] <= 1 for r in records)
    assert _strip(records) == _strip(nao.search(cfg, fitness))
    with pytest.raises(ValueError, match="context.fitness.epochs=1 \\(now 2\\)"):
        nao.search(cfg, dataclasses.replace(fitness, epochs=2), checkpoint=path)


# -- NAO-WS ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_subsets(cifar):
    return D.make_subsets(cifar, train_size=64, test_size=20, image_size=8, seed=0)


def _ws_cfg(**changes):
    return _cfg(**{**dict(weight_sharing=True, seed_archs=6, top_k=3, new_archs=3, supernet_channels=4,
                          supernet_layers=2, supernet_epochs=1, supernet_batch_size=8, supernet_steps_per_epoch=2,
                          supernet_augment=D.Augment(crop_padding=1), eval_batches=2, eval_batch_size=8), **changes})


def test_weight_sharing_scores_the_pool_on_a_shared_network_and_resumes(tmp_path, tiny_subsets):
    cfg = _ws_cfg()
    s = nao.NAOSearch(cfg, tiny_subsets)
    records = s.run()
    assert [len(r["evaluated"]) for r in records] == [6, 6, 6]  # the pool keeps its size
    for previous, r in zip(records, records[1:]):
        pool = [e["arch"] for e in r["evaluated"]]
        new = [e["arch"] for e in r["evaluated"] if e["parent"] is not None]  # this step's held-out ones
        assert len(new) == previous["num_new"] >= 1 and pool[-len(new):] == new
        assert not set(new) & {e["arch"] for e in previous["evaluated"]}
        ranked = sorted(previous["evaluated"], key=lambda e: -e["accuracy"])  # stable: ties in pool order
        assert pool[:6 - len(new)] == [e["arch"] for e in ranked[:6 - len(new)]]  # the worst were replaced
    for r in records:
        assert all(0 <= e["accuracy"] <= 1 for e in r["evaluated"]) and math.isfinite(r["supernet_loss"])
        assert r["best_score"] == max(e["accuracy"] for e in r["evaluated"])
    assert _strip(nao.search(cfg, tiny_subsets)) == _strip(records)
    path = tmp_path / "ws.pt"
    assert len(nao.search(cfg, tiny_subsets, checkpoint=path, stop_after=1)) == 1
    assert _strip(nao.search(cfg, tiny_subsets, checkpoint=path)) == _strip(records)
    with pytest.raises(ValueError, match="context.data.train"):
        other = dataclasses.replace(tiny_subsets, train_x=tiny_subsets.train_x * 0.5)
        nao.search(cfg, other, checkpoint=path)


@pytest.mark.parametrize("weight_sharing, data, message", [
    (True, "fitness", "with weight_sharing=True, data must be a nas_tutorial.data.Subsets"),
    (False, "subsets", "data is a Subsets: pass an evaluator or a fitness function"),
])
def test_the_wrong_kind_of_data_is_a_clear_error(tiny_subsets, weight_sharing, data, message):
    data = nao.toy_fitness if data == "fitness" else tiny_subsets
    with pytest.raises(ValueError, match=message):
        nao.NAOSearch(_ws_cfg(weight_sharing=weight_sharing), data)
    with pytest.raises(ValueError, match="'eval_batches' x 'eval_batch_size' \\(2 x 100\\)"):
        nao.NAOSearch(_ws_cfg(eval_batch_size=100), tiny_subsets)
    with pytest.raises(ValueError, match="field 'supernet_batch_size' \\(64\\) is larger than the training \\(32\\)"):
        nao.NAOSearch(_ws_cfg(supernet_batch_size=64), tiny_subsets)


# -- the longer run the notebook loads --------------------------------------------------------------------------------
def test_chance_spearman_is_the_quantile_of_random_rankings():
    assert nao.chance_spearman(8, samples=4000) == pytest.approx(0.64, abs=0.05)  # tables: n = 8, 5% one-sided
    assert nao.chance_spearman(12, runs=3) < nao.chance_spearman(12) < nao.chance_spearman(6)
    with pytest.raises(ValueError, match="need n >= 3 items, got 2"):
        nao.chance_spearman(2)
    with pytest.raises(ValueError, match="runs must be an integer >= 1, got 0"):
        nao.chance_spearman(5, runs=0)


def test_the_recorded_run_is_complete_and_says_how_it_was_made():
    rec = nao.load_recorded()
    assert rec["command"] == f"python -m nas_tutorial.nao record --seed {rec['seed']} --threads 1"
    assert rec["seconds"] > 0 and "1 torch thread(s)" in rec["machine"]
    assert {"machine", "torch", "date", "data", "seed", "config", "setting", "runs",
            "chance_mean_spearman_95"} <= set(rec)
    s = nao.RECORDED_SETTING
    assert rec["setting"] == s and rec["config"] == plain(nao.NAOConfig.fast(**s["config"], seed=rec["seed"]))
    assert [r["seed"] for r in rec["runs"]] == [rec["seed"] + i for i in range(s["seeds"])]
    vocab = nao.NAOConfig.fast().vocab()
    held_out = []
    for r in rec["runs"]:
        assert len(r["seed_set_accuracy"]) == s["config"]["seed_archs"] and len(r["noise"]) == s["noise_archs"]
        assert len(r["new"]) == s["config"]["new_archs"] and 1 <= len(r["parents"]) <= s["config"]["top_k"]
        assert sorted({e["parent"] for e in r["new"]}) == list(range(len(r["parents"])))
        new, parents = [e["arch"] for e in r["new"]], [e["arch"] for e in r["parents"]]
        assert len(set(new)) == len(new) and not set(new) & set(parents + [e["arch"] for e in r["noise"]])
        for arch in new + parents + [e["arch"] for e in r["noise"]]:
            vocab.decode([int(t) for t in arch.split()])  # a valid token form
        accuracies = r["seed_set_accuracy"] + [e[k] for e in r["parents"] + r["noise"] for k in ("accuracy",
                                                                                             "accuracy_again")]
        assert all(0 <= a <= 1 for a in accuracies + [e["accuracy"] for e in r["new"]])
        held = [e for e in r["new"] if e["accuracy"] is not None]
        held_out.append(len(held))
        rho = spearman([e["predicted"] for e in held], [e["accuracy"] for e in held])
        assert r["held_out_spearman"] == pytest.approx(rho, abs=0.02)  # the file's predictions are rounded
        assert r["chance_spearman_95"] == pytest.approx(nao.chance_spearman(len(held)), abs=1e-4)
        d = [e["accuracy"] - e["accuracy_again"] for e in r["noise"]]
        assert r["noise_sd"] == pytest.approx(math.sqrt(np.mean(np.square(d)) / 2), abs=1e-4)
    assert rec["chance_mean_spearman_95"] == pytest.approx(nao.chance_spearman(min(held_out), runs=s["seeds"]),
                                                           abs=1e-4)
    with pytest.raises(FileNotFoundError, match="python -m nas_tutorial.nao record"):
        nao.load_recorded("no/such/file.json")


# -- the published cells -------------------------------------------------------------------------------------------
def test_naonet_ws_is_the_released_cell_and_has_the_papers_parameter_count():
    v = nao.Vocab()
    assert v.decode(v.encode(nao.NAONET_WS)) == nao.NAONET_WS
    assert [op for op, _ in nao.NAONET_WS.normal[:4]] == ["sep_conv_5x5", "avg_pool_3x3", "sep_conv_5x5",
                                                           "avg_pool_3x3"]
    assert nao.NAONET_WS.normal_concat == (3, 5, 6) and nao.NAONET_WS.reduce_concat == (4, 5, 6)
    assert {n for _, n in nao.NAONET_WS.normal} >= {0, 1} and {n for _, n in nao.NAONET_WS.reduce} >= {0, 1}
    count = nao.paper_parameter_count()  # N = 5 (17 cells), F = 36, no auxiliary head
    assert count == 2_492_902 and round(count / 1e6, 1) == 2.5  # the paper's NAONet-WS: 2.5M
    assert len(nao.build_network(nao.NAONET_WS, **nao.NAONET_WS_CIFAR).cells) == 17
    assert parameter_count(nao.build_network(nao.NAONET_WS, cells_per_stack=6, channels=36)) == 2_921_302


def test_naonet_is_the_released_cell_in_eleven_operations_and_builds():
    assert len(nao.NAONET_OPS) == 11 and set(nao.NAONET_OPS) <= set(OPS)  # every operation is built here
    g = nao.NAONET
    assert isinstance(g, Genotype) and {op for op, _ in g.normal + g.reduce} <= set(nao.NAONET_OPS)
    assert g.normal[:2] == (("conv_3x3", 0), ("avg_pool_5x5", 1))  # dag.NAONet.json's node_3
    assert g.reduce[4:6] == (("conv_1x7_7x1", 0), ("max_pool_2x2", 1))  # "0 9 1 10" (the TF json swaps the inputs)
    assert g.normal_concat == (3, 5, 6) and g.reduce_concat == (3, 4, 5, 6)  # the unread blocks
    assert {n for _, n in g.normal} >= {0, 1} and {n for _, n in g.reduce} >= {0, 1}  # no unread cell input
    normal, reduce = to_enas_arc(g, nao.NAONET_OPS)  # back to the authors' string (op codes 5..15)
    released = "0 7 1 15 2 8 1 7 0 6 1 7 0 8 4 7 1 5 0 7 0 7 1 13 0 6 0 14 0 9 1 10 0 14 2 6 1 11 0 7"
    assert [v + 5 if i % 2 else v for i, v in enumerate(normal + reduce)] == [int(v) for v in released.split()]
    torch.manual_seed(0)
    model = nao.build_network(g, cells_per_stack=1, channels=4, auxiliary=True)  # 5 cells: every operation runs
    assert model.train()(torch.randn(2, 3, 16, 16))[0].shape == (2, 10)
    assert model.eval()(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_naonet_parameter_count_is_the_authors_code_not_the_papers_table():
    count = nao.naonet_parameter_count()  # N = 6 (20 cells), F = 128, no auxiliary head
    assert count == 144_576_394  # = the authors' NASNetworkCIFAR("NAONet-A", channels=128) without its aux head
    assert round(count / 1e6) == 145 != 128  # the paper's 128M is not reproduced (see naonet_parameter_count)
    small = nao.naonet_parameter_count(channels=36)
    assert small == 11_470_150 and round(small / 1e6, 1) == 11.5 != 10.6  # nor its 10.6M at F = 36
    with torch.device("meta"):  # shapes only: no memory for 145M weights
        model = nao.build_network(nao.NAONET, **nao.NAONET_CIFAR, auxiliary=True)
        fewer_cells = NetworkCIFAR(nao.NAONET, 128, layers=18, auxiliary=False)  # 3N cells instead of 3N + 2
    assert len(model.cells) == 20 and [c.reduction for c in model.cells].count(True) == 2
    assert parameter_count(model) == count
    assert sum(p.numel() for p in model.parameters()) - count == 664_842  # the auxiliary head only adds
    assert round(parameter_count(fewer_cells) / 1e6) == 124  # another depth does not give 128M either


@pytest.mark.parametrize("name", ["conv_1x1", "conv_3x3", "conv_1x3_3x1", "conv_1x7_7x1", "max_pool_2x2",
                                  "avg_pool_2x2", "max_pool_5x5", "avg_pool_5x5"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [7, 8])
def test_naonet_operations_keep_channels_and_apply_the_stride(name, stride, size):
    op = make_op(name, 6, stride)
    assert op(torch.randn(2, 6, size, size)).shape == (2, 6, -(-size // stride), -(-size // stride))  # ceil


def test_naonet_operations_are_the_authors():
    c = 6
    weights = {name: sum(p.numel() for p in make_op(name, c).parameters()) for name in nao.NAONET_OPS}
    assert weights == {"skip_connect": 0, "conv_1x1": c * c + 2 * c, "conv_3x3": 9 * c * c + 2 * c,
                       "conv_1x3_3x1": 6 * c * c + 4 * c, "conv_1x7_7x1": 14 * c * c + 4 * c,  # two conv-BN units
                       "max_pool_2x2": 0, "max_pool_3x3": 0, "max_pool_5x5": 0, "avg_pool_2x2": 0, "avg_pool_3x3": 0,
                       "avg_pool_5x5": 0}
    pair = make_op("conv_1x3_3x1", c, stride=2)  # ReLU, 1x3 (stride 1, 2), BN, ReLU, 3x1 (stride 2, 1), BN
    assert [type(m).__name__ for m in pair] == ["ReLU", "Conv2d", "BatchNorm2d"] * 2
    assert (pair[1].kernel_size, pair[1].stride) == ((1, 3), (1, 2))
    assert (pair[4].kernel_size, pair[4].stride) == ((3, 1), (2, 1))
    conv = make_op("conv_3x3", c, stride=2)
    assert [type(m).__name__ for m in conv] == ["ReLU", "Conv2d", "BatchNorm2d"] and conv[1].stride == (2, 2)

    ones = torch.ones(1, 1, 4, 4)
    # 2x2: a zero row and column appended, then pooled without padding; at stride 1 the last ones see the zero
    avg = make_op("avg_pool_2x2", 1)(ones)[0, 0]
    assert avg[:3, :3].eq(1).all() and avg[3, :3].eq(0.5).all() and avg[:3, 3].eq(0.5).all() and avg[3, 3] == 0.25
    assert make_op("max_pool_2x2", 1)(-ones)[0, 0, 3].eq(0).all()  # the max of a border window is the zero pad
    x = torch.randn(2, 3, 8, 8)  # at stride 2 on an even size the zeros are never read
    torch.testing.assert_close(make_op("max_pool_2x2", 3, 2)(x), F.max_pool2d(x, 2))
    torch.testing.assert_close(make_op("avg_pool_2x2", 3, 2)(x), F.avg_pool2d(x, 2))
    # 5x5 counts its zero padding in the average (the authors' code); DARTS's avg_pool_3x3 does not (unchanged)
    assert make_op("avg_pool_5x5", 1)(ones)[0, 0, 0, 0] == 9 / 25
    assert make_op("avg_pool_3x3", 1)(ones).eq(1).all()
    assert make_op("max_pool_5x5", 1)(-ones).eq(-1).all()  # max pooling's padding never wins


_BLOCK = " 0 7 1 7"  # a block of two conv_3x3 on the cell inputs, in the authors' codes
_CELL = _BLOCK.strip() + _BLOCK * 4


@pytest.mark.parametrize("call, message", [
    (lambda: make_op("conv_2x2", 4), "unknown operation 'conv_2x2'; choose one of: .*conv_1x3_3x1"),
    (lambda: make_op("conv_3x3", 4, stride=3), "stride must be 1 or 2"),
    (lambda: nao.from_large_arc("0 7 1 16" + _BLOCK * 4, _CELL), "normal cell, block 0: operation code 16 must be"),
    (lambda: nao.from_large_arc(_CELL, "0 7 1 7 0 4 1 7" + _BLOCK * 3), "reduce cell, block 1: operation code 4"),
    (lambda: nao.from_large_arc("0 7 3 7" + _BLOCK * 4, _CELL), "normal cell, block 0: input 3 must be in 0..1"),
    (lambda: Genotype(normal=[("conv_5x5", 0), ("conv_3x3", 1)], normal_concat=[2], reduce=[("conv_3x3", 0),
                      ("conv_3x3", 1)], reduce_concat=[2]), "unknown operation 'conv_5x5'"),
])
def test_bad_naonet_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_module_has_one_search_class():
    searches = [c for c in vars(nao).values() if isinstance(c, type) and issubclass(c, Search) and c is not Search]
    assert searches == [nao.NAOSearch] and nao.NAOSearch.method == "nao"
