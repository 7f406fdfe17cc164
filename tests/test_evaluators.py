"""Population evaluators: in-process, a local process pool, and a real local Ray instance (2 CPUs)."""

import sys

import numpy as np
import pytest

from nas_tutorial import genetic_cnn as gc
from nas_tutorial.evaluators import (
    EvalResult,
    FailOn,
    InProcessEvaluator,
    ProcessPoolEvaluator,
    evaluate_one,
    make_evaluator,
    ones_fraction,
)

CODES = [gc.random_genome((3, 4), np.random.default_rng(i)) for i in range(6)]
EXPECTED = [ones_fraction(c) for c in CODES]


def _tiny_fitness(data_root):
    return gc.training_fitness(str(data_root), channels=(4, 4), train_size=100, image_size=8, epochs=1,
                               batch_size=25, torch_threads=1)


def test_evaluate_one_wraps_values_dicts_and_errors():
    r = evaluate_one(ones_fraction, "0110")
    assert isinstance(r, EvalResult) and r.ok and (r.code, r.fitness, r.error) == ("0110", 0.5, None)
    r = evaluate_one(lambda c: {"fitness": 0.25, "params": 7}, "x")
    assert r.ok and r.fitness == 0.25 and r.info == {"params": 7}
    r = evaluate_one(lambda c: {"acc": 1.0}, "1-01")
    assert not r.ok and "KeyError" in r.error and r.code == "1-01"
    r = evaluate_one(FailOn(("1-01",)), "1-01")
    assert not r.ok and r.fitness is None and "simulated failure for 1-01" in r.error and "Traceback" in r.error


def test_in_process_keeps_order_and_reports_each_result():
    seen = []
    results = InProcessEvaluator(ones_fraction).evaluate(CODES, on_result=lambda i, r: seen.append(i))
    assert [r.fitness for r in results] == EXPECTED and [r.code for r in results] == [str(c) for c in CODES]
    assert seen == list(range(len(CODES)))


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="'spawn' or 'forkserver'"):
        ProcessPoolEvaluator(ones_fraction, context="fork")
    with pytest.raises(ValueError, match="kind must be one of"):
        make_evaluator("threads", ones_fraction)


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ImportError, match=r"pip install 'nas_tutorial\[ray\]'"):
        make_evaluator("ray", ones_fraction)


# -- the two parallel evaluators, exercised for real ---------------------------------------------------
def _check_parallel_evaluator(make, data_root):
    """One evaluator per backend (workers start once): a real training fitness in which one
    candidate fails. Results match in-process ones (same seeds, one thread), the failure is reported
    with its code, and a short GA runs through the same evaluator."""
    bad = str(CODES[2])
    fitness = FailOn((bad,), _tiny_fitness(data_root))
    reference = InProcessEvaluator(fitness).evaluate(CODES[:4])
    seen = []
    with make(fitness) as ev:
        results = ev.evaluate(CODES[:4], on_result=lambda i, r: seen.append(i))
        assert sorted(seen) == [0, 1, 2, 3]
        assert [r.code for r in results] == [str(c) for c in CODES[:4]]
        assert [r.ok for r in results] == [True, True, False, True]
        assert "simulated failure" in results[2].error
        # the workers read the CIFAR-10 subset themselves and train exactly as in this process
        assert [r.fitness for r in results] == [r.fitness for r in reference]
        records = gc.search(gc.GAConfig.fast(population_size=4, generations=1), ev)
    assert len(records) == 2 and all(0.0 <= ind["fitness"] <= 1.0 for r in records for ind in r["individuals"]
                                     if ind["code"] != bad)


def test_process_pool_evaluator(data_root):
    _check_parallel_evaluator(lambda fn: ProcessPoolEvaluator(fn, workers=2), data_root)


def test_ray_evaluator_on_a_local_two_cpu_instance(data_root):
    ray = pytest.importorskip("ray")
    from nas_tutorial.evaluators import RayEvaluator

    assert not ray.is_initialized()
    owner = RayEvaluator(ones_fraction, num_cpus=2)  # starts a local instance ...
    try:
        assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 2
        # ... which the next evaluators reuse and leave running when they close
        _check_parallel_evaluator(lambda fn: RayEvaluator(fn), data_root)
        assert ray.is_initialized()
    finally:
        owner.close()  # ... and which its starter shuts down
    assert not ray.is_initialized()
