"""Population evaluators: in-process, a local process pool, and a real local Ray instance (2 CPUs)."""

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nas_tutorial import genetic_cnn as gc
from nas_tutorial.evaluators import (
    EvalResult,
    FailOn,
    InProcessEvaluator,
    KillOn,
    ProcessPoolEvaluator,
    SleepOn,
    evaluate_one,
    make_evaluator,
    ones_fraction,
)
from nas_tutorial.genetic_cnn_space import network_key

CODES = [gc.random_genome((3, 4), np.random.default_rng(i)) for i in range(6)]
EXPECTED = [ones_fraction(c) for c in CODES]


def _tiny_fitness(data_root):
    # no torch_threads of its own: the evaluators set one thread (in-process: torch_threads=1)
    return gc.training_fitness(str(data_root), channels=(4, 4), train_size=100, image_size=8, epochs=1,
                               batch_size=25)


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


def test_in_process_time_limit_interrupts_only_the_slow_candidate():
    codes = ["0011", "0111", "1111"]
    ev = InProcessEvaluator(SleepOn(("0111",), 60), timeout=0.5)
    handler = signal.getsignal(signal.SIGALRM)
    start = time.perf_counter()
    results = ev.evaluate(codes)
    assert time.perf_counter() - start < 10
    assert [r.fitness for r in results] == [0.5, None, 1.0]
    first_line, *trace = results[1].error.splitlines()
    assert first_line == ("EvaluationTimeout: evaluating 0111 took longer than the time limit of 0.5 s; "
                          "interrupted in this process")
    assert "time.sleep(self.seconds)" in "\n".join(trace)  # where the fitness function was stuck
    assert signal.getsignal(signal.SIGALRM) is handler and signal.getitimer(signal.ITIMER_REAL) == (0, 0)
    # SIGALRM is delivered to the main thread only
    errors = []

    def in_a_thread():
        try:
            ev.evaluate(codes)
        except RuntimeError as err:
            errors.append(str(err))

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "only in the main thread" in errors[0]


def test_in_process_torch_threads_are_set_while_evaluating_and_restored():
    threads = torch.get_num_threads()
    results = InProcessEvaluator(lambda c: torch.get_num_threads(), torch_threads=1).evaluate(["0", "1"])
    assert [r.fitness for r in results] == [1, 1] and torch.get_num_threads() == threads
    results = InProcessEvaluator(lambda c: torch.get_num_threads()).evaluate(["0"])
    assert results[0].fitness == threads


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="'spawn' or 'forkserver'"):
        ProcessPoolEvaluator(ones_fraction, context="fork")
    with pytest.raises(ValueError, match="kind must be one of"):
        make_evaluator("threads", ones_fraction)
    for kind in ("inprocess", "pool"):
        with pytest.raises(ValueError, match=r"timeout must be a positive number of seconds or None .*, got 0"):
            make_evaluator(kind, ones_fraction, timeout=0)
    with pytest.raises(ValueError, match="torch_threads must be a positive integer or None"):
        InProcessEvaluator(ones_fraction, torch_threads=0)


def _from_main(candidate):
    return 1.0


class _FromMain:
    def __call__(self, candidate):
        return 1.0


_from_main.__module__ = _FromMain.__module__ = "__main__"  # as if defined in a notebook


def test_pool_refuses_what_its_workers_cannot_load_before_starting_any():
    # a function or class of __main__ (a notebook) cannot be imported by spawned workers
    for fitness, name in ((_from_main, "_from_main"), (_FromMain(), "_FromMain"), (FailOn(("0",), _from_main),
                                                                                   "_from_main")):
        with pytest.raises(ValueError, match=f"cannot send the fitness function to its workers: ValueError: {name} "
                                             "is defined in __main__ .* define it in a module"):
            ProcessPoolEvaluator(fitness, workers=1)
    with pytest.raises(ValueError, match="cannot send the fitness function to its workers: .*pickle"):
        ProcessPoolEvaluator(lambda c: 1.0, workers=1)
    # a candidate that does not pickle fails alone, named, and no worker is started for it
    children = multiprocessing.active_children()
    with ProcessPoolEvaluator(ones_fraction, workers=1) as ev:
        results = ev.evaluate([_Unpicklable("0101")])
        assert multiprocessing.active_children() == children
    assert results[0].code == "0101" and results[0].error.startswith(
        "candidate 0101 cannot be pickled for the pool's workers: ")


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
    reference = InProcessEvaluator(fitness, torch_threads=1).evaluate(CODES[:4])
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


class _Unpicklable(str):
    """A candidate holding a lock: it cannot be pickled."""

    lock = threading.Lock()

    def __reduce__(self):
        return (_Unpicklable, (str(self),), {"lock": self.lock})


class _FailsToUnpickle(str):
    """A candidate that pickles here but fails to unpickle in a worker."""

    def __reduce__(self):
        return (int, ("not a number",))


def test_pool_fails_only_the_candidate_whose_worker_died_or_hung():
    """Six candidates on two workers: one kills its worker, one hangs past the time limit, one cannot be
    unpickled by its worker. Only those three fail, each named; the others get their fitness."""
    codes = ["0001", "0011", "0111", "1111", "1000", "1100"]
    candidates = codes[:4] + [_FailsToUnpickle(codes[4]), codes[5]]
    seen = []
    with ProcessPoolEvaluator(KillOn((codes[1],), SleepOn((codes[3],), 60)), workers=2, timeout=2) as ev:
        results = ev.evaluate(candidates, on_result=lambda i, r: seen.append(i))
        assert sorted(seen) == list(range(6)) and [r.code for r in results] == codes
        assert [r.fitness for r in results] == [0.25, None, 0.75, None, None, 0.5]
        assert results[1].error == ("the pool worker evaluating 0011 died (killed by signal SIGKILL), e.g. killed "
                                    "for lack of memory or crashed in C code; the other candidates' results are kept")
        assert results[3].error == ("EvaluationTimeout: evaluating 1111 took longer than the time limit of 2 s; "
                                    "its pool worker was killed")
        assert results[4].error.startswith("the pool worker could not unpickle the task of candidate 1000: "
                                           "ValueError: invalid literal for int()")
        # the replaced workers go on
        assert [r.fitness for r in ev.evaluate(["0111", "0000"])] == [0.75, 0.0]


def test_genetic_search_on_a_pool_records_only_the_killed_candidate_as_failed():
    config = gc.GAConfig.fast(population_size=6, generations=1)
    culprit = gc.initial_population(config.stage_sizes, 6, np.random.default_rng(config.seed))[2]
    with ProcessPoolEvaluator(KillOn((str(culprit),)), workers=2) as ev:
        records = gc.search(config, ev)
    individuals = [ind for r in records for ind in r["individuals"]]
    assert str(culprit) in [ind["code"] for ind in records[0]["individuals"]]
    for ind in individuals:  # a network is trained once: its copies share its result
        if ind["key"] == network_key(culprit):
            assert ind["fitness"] is None and ind["error"].startswith(f"the pool worker evaluating {culprit} died "
                                                                      "(killed by signal SIGKILL)")
        else:
            assert ind["error"] is None and 0 <= ind["fitness"] <= 1
    assert records[0]["failed"] == 1


_PARENT = """
import multiprocessing
from nas_tutorial.evaluators import ProcessPoolEvaluator, SleepOn

def show_workers(index, result):  # "1" is done, so "0" sleeps in the other worker
    print(*[p.pid for p in multiprocessing.active_children()], flush=True)

ProcessPoolEvaluator(SleepOn(("0",), 120), workers=2).evaluate(["0", "1"], on_result=show_workers)
"""


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (an orphan's zombie may never be reaped here)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pool_workers_exit_when_their_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    pids, watchdog = [], threading.Timer(60, parent.kill)  # never wait forever for its line
    watchdog.start()
    try:
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_running(pid) for pid in pids)
        parent.kill()  # SIGKILL: no clean-up code runs in the parent
        parent.wait()
        deadline = time.monotonic() + 5
        while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_running(pid) for pid in pids)
    finally:
        watchdog.cancel()
        parent.kill()
        for pid in pids:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def test_ray_evaluator_on_a_local_two_cpu_instance(data_root):
    ray = pytest.importorskip("ray")
    from nas_tutorial.evaluators import RayEvaluator

    assert not ray.is_initialized()
    owner = RayEvaluator(ones_fraction, num_cpus=2)  # starts a local instance ...
    try:
        assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 2
        # ... which the next evaluators reuse and leave running when they close
        _check_parallel_evaluator(lambda fn: RayEvaluator(fn), data_root)
        # a hung task is cancelled (its worker killed), the others are kept
        with RayEvaluator(SleepOn(("0111",), 60), timeout=3) as ev:
            results = ev.evaluate(["0011", "0111", "1111"])
        assert [r.fitness for r in results] == [0.5, None, 1.0]
        assert results[1].error == ("EvaluationTimeout: evaluating 0111 took longer than the time limit of 3 s; "
                                    "its Ray task was cancelled")
        assert ray.is_initialized()
    finally:
        owner.close()  # ... and which its starter shuts down
    assert not ray.is_initialized()
