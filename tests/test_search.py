"""The search pattern (nas_tutorial.search): checkpoints, configs, and the contract every method module keeps."""

import dataclasses
import inspect
import math
import os
import pickle

import pytest
import torch

from nas_tutorial import darts, enas, fbnet, genetic_cnn, nao, pnas, spos
from nas_tutorial import data as D
from nas_tutorial.evaluators import ones_fraction
from nas_tutorial.search import COMMON_KEYS, Checkpoint, Config, Search, differences, plain

pytestmark = pytest.mark.usefixtures("one_thread")


# -- checkpoints -------------------------------------------------------------------------------------
def test_checkpoint_round_trip_is_atomic_and_plain(tmp_path):
    store = Checkpoint(tmp_path / "a" / "b.pt", method="m", config={"lr": 0.1}, context={"data": [1, 2]})
    assert store.load() is None and not store.exists()
    store.save({"x": torch.arange(3), "records": [{"step": 1, "arch": "a", "score": None}]})
    back = store.load()
    assert torch.equal(back["x"], torch.arange(3)) and back["records"] == [{"step": 1, "arch": "a", "score": None}]
    assert not list((tmp_path / "a").glob("*.tmp"))
    assert torch.load(tmp_path / "a" / "b.pt", weights_only=True)["method"] == "m"  # loads without pickled code


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="other"), "belongs to a 'm' search, not 'other'"),
    (dict(config={"lr": 0.2}), "config.lr=0.1 \\(now 0.2\\)"),
    (dict(config={"lr": 0.1, "epochs": 3}), "config.epochs='<absent>' \\(now 3\\)"),
    (dict(context={"data": [1, 3]}), "context.data=\\[1, 2\\] \\(now \\[1, 3\\]\\)"),
])
def test_checkpoint_of_other_settings_is_refused_naming_the_fields(tmp_path, kwargs, message):
    Checkpoint(tmp_path / "c.pt", method="m", config={"lr": 0.1}, context={"data": [1, 2]}).save({})
    settings = {**dict(method="m", config={"lr": 0.1}, context={"data": [1, 2]}), **kwargs}
    with pytest.raises(ValueError, match=message):
        Checkpoint(tmp_path / "c.pt", **settings).load()


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/nas_tutorial_pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_bad_checkpoint_files_are_clear_errors_and_never_run_code(tmp_path):
    path = tmp_path / "c.pt"
    store = Checkpoint(path, method="m", config={})
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot be read .* delete it"):
        store.load()
    store.save({"x": 1})
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(ValueError, match="cannot be read"):
        store.load()
    torch.save({"just": "a dict"}, path)  # a torch file, but not ours
    with pytest.raises(ValueError, match="is not a nas_tutorial checkpoint"):
        store.load()
    if os.path.exists("/tmp/nas_tutorial_pwned"):
        os.remove("/tmp/nas_tutorial_pwned")
    torch.save({"format": Checkpoint.FORMAT, "payload": _Evil()}, path)
    with pytest.raises(ValueError, match="cannot be read"):
        store.load()
    assert not os.path.exists("/tmp/nas_tutorial_pwned")
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match=str(path)):
        store.load()


def test_plain_and_differences():
    assert plain({"a": (1, 2), "b": D.Augment(), "f": ones_fraction, "t": torch.tensor(2.5)}) == {
        "a": [1, 2], "b": {"crop_padding": 4, "flip": True, "cutout": 0},
        "f": "nas_tutorial.evaluators.ones_fraction", "t": 2.5}
    assert differences({"a": {"b": 1}, "c": 2}, {"a": {"b": 2}, "c": 2}) == ["a.b=1 (now 2)"]
    import functools

    assert plain(functools.partial(ones_fraction, 3, k=2)) == {
        "func": "nas_tutorial.evaluators.ones_fraction", "args": [3], "keywords": {"k": 2}}  # no address


def test_config_base_is_frozen_and_has_no_fast_setting_by_default():
    with pytest.raises(NotImplementedError):
        Config.fast()
    c = darts.DartsConfig.fast()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lr = 1.0
    assert c.replace(lr=0.5).lr == 0.5 and c.lr != 0.5
    with pytest.raises(TypeError, match="config must be a nas_tutorial.search.Config"):
        darts.DartsSearch({"epochs": 1}, None)


# -- the contract every method module keeps ------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_subsets(cifar):
    return D.make_subsets(cifar, train_size=64, test_size=20, image_size=8, seed=0)


def _darts_case(tiny_subsets):
    config = darts.DartsConfig.fast(channels=4, layers=2, epochs=3, batch_size=8, steps_per_epoch=1,
                                    augment=D.Augment(crop_padding=1))
    return darts, config, tiny_subsets, "epoch"


def _genetic_cnn_case(tiny_subsets):
    return genetic_cnn, genetic_cnn.GAConfig.fast(population_size=4, generations=2), ones_fraction, "generation"


def _enas_case(tiny_subsets):
    config = enas.EnasConfig.fast(channels=4, layers=2, num_blocks=2, epochs=3, batch_size=8, steps_per_epoch=1,
                                  controller_steps=2, samples_per_step=2, hidden_size=8, final_samples=2,
                                  augment=D.Augment(crop_padding=1))
    return enas, config, tiny_subsets, "epoch"


def _fbnet_case(tiny_subsets):
    config = fbnet.FBNetConfig.fast(image_size=8, epochs=3, warmup_epochs=0, batch_size=4, steps_per_epoch=1,
                                    latency="macs", augment=D.Augment(crop_padding=1))
    return fbnet, config, tiny_subsets, "epoch"


def _pnas_case(tiny_subsets):
    config = pnas.PNASConfig.fast(num_blocks=2, beam_size=3, first_beam=6, ensemble_size=2, hidden_size=8,
                                  embedding_size=8, surrogate_epochs=2)
    return pnas, config, pnas.toy_fitness, "b"


def _nao_case(tiny_subsets):
    config = nao.NAOConfig.fast(num_blocks=2, seed_archs=6, top_k=3, new_archs=3, iterations=2, embedding_size=8,
                                hidden_size=8, mlp_layers=1, mlp_hidden_size=8, epochs=2, batch_size=6,
                                max_step_size=5.0)
    return nao, config, nao.toy_fitness, "iteration"


def _spos_case(tiny_subsets):
    config = spos.SPOSConfig.fast(image_size=8, epochs=2, batch_size=8, steps_per_epoch=1, population_size=4,
                                  iterations=2, top_k=2, crossover_size=2, mutation_size=2, recalibration_batches=1,
                                  recalibration_batch_size=8, augment=D.Augment(crop_padding=1))
    return spos, config, tiny_subsets, "phase"


CASES = {"darts": _darts_case, "enas": _enas_case, "fbnet": _fbnet_case, "genetic_cnn": _genetic_cnn_case,
         "nao": _nao_case, "pnas": _pnas_case, "spos": _spos_case}


def _strip(records):
    """Records without the wall-clock seconds, tensors as lists (comparable with ==)."""
    return [{k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in r.items() if k != "seconds"}
            for r in records]


@pytest.fixture(params=sorted(CASES), ids=sorted(CASES))
def case(request, tiny_subsets):
    return CASES[request.param](tiny_subsets)


def test_every_method_module_has_the_same_search_function(case):
    module, config, _, _ = case
    params = inspect.signature(module.search).parameters
    assert list(params)[:2] == ["config", "data"]
    assert {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY} == {"checkpoint", "progress", "callback",
                                                                         "stop_after"}
    searches = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, Search) and c is not Search]
    assert len(searches) == 1 and searches[0].method == module.__name__.rsplit(".", 1)[1]
    assert type(config).paper() == type(config)()  # the defaults are the paper's setting


def test_records_share_the_common_keys_and_callback_sees_each(case):
    module, config, data, word = case
    seen = []
    records = module.search(config, data, callback=seen.append)
    assert seen == records and [r["step"] for r in records] == list(range(1, len(records) + 1))
    for r in records:
        assert set(COMMON_KEYS) <= set(r) and word in r
        assert isinstance(r["best_arch"], str) and math.isfinite(r["best_score"]) and r["seconds"] >= 0


def test_same_seed_same_records_and_resume_gives_the_uninterrupted_result(case, tmp_path):
    module, config, data, _ = case
    whole = module.search(config, data)
    assert _strip(module.search(config, data)) == _strip(whole)
    path = tmp_path / "run.pt"
    assert len(module.search(config, data, checkpoint=path, stop_after=1)) == 1
    assert _strip(module.search(config, data, checkpoint=path)) == _strip(whole)
    with pytest.raises(ValueError, match="other settings: config.seed=0 \\(now 1\\)"):
        module.search(config.replace(seed=1), data, checkpoint=path)


def test_progress_is_a_text_bar_on_stdout(case, capsys):
    module, config, data, _ = case
    short = next({name: 1} for name in ("epochs", "generations", "num_blocks") if name in config.to_dict())
    module.search(config.replace(**short), data, progress=True)
    out = capsys.readouterr().out
    assert module.__name__.rsplit(".", 1)[1] in out and "100%" in out and "best" in out
