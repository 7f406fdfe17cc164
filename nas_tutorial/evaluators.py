r"""Evaluate a population of candidate architectures: in-process, on a local process pool, or on Ray.

Every population-based method (Genetic CNN here; PNAS, SPOS's evolutionary search and NAO later)
has the same inner step: *given a list of candidates, return one fitness per candidate*. This
module is that step, behind one small interface, so a search written against :class:`Evaluator`
runs unchanged on a laptop, on all its cores, or on a cluster.

==============  ===========================================================================
name            meaning
==============  ===========================================================================
candidate       any picklable object whose ``str()`` is its code (e.g. a Genetic-CNN genome)
fitness_fn      a *top-level* (picklable) callable ``fitness_fn(candidate) -> float | dict``;
                a dict must hold ``"fitness"``, its other entries are kept in ``info``
EvalResult      one candidate's outcome: ``fitness`` or ``error`` (the traceback text), never both
on_result       optional callback ``on_result(index, result)``, called as each result arrives,
                so a search can checkpoint after every finished candidate
==============  ===========================================================================

Three implementations:

- :class:`InProcessEvaluator` (the default): a plain loop, easiest to debug, uses the GPU if the
  fitness function does.
- :class:`ProcessPoolEvaluator`: ``concurrent.futures`` with a ``spawn`` (or ``forkserver``)
  context, one torch thread per worker; on a CPU-only machine this is the fast one.
- :class:`RayEvaluator`: the same tasks on a Ray cluster (``pip install nas_tutorial[ray]``);
  connect with ``address="auto"`` or start a local instance with ``num_cpus``.

A failing candidate (an exception in the fitness function, or a worker that dies) becomes an
``EvalResult`` with ``error`` set and the candidate's code; the other results are kept.

Data travel as arguments: the fitness function is a picklable object that holds a data-root
*path* (workers read the CIFAR-10 subset themselves, once per process) or small tensors.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

OnResult = Callable[[int, "EvalResult"], None]


@dataclass(frozen=True)
class EvalResult:
    """The outcome of evaluating one candidate.

    Attributes:
        code: the candidate's text form (``str(candidate)``), so an error always names its candidate.
        fitness: the fitness (higher is better), ``None`` when the evaluation failed.
        error: ``None``, or the error text (exception type, message and traceback).
        seconds: wall-clock time of the evaluation (in the worker).
        info: extra numbers returned by the fitness function (losses, parameter count, ...).
    """

    code: str
    fitness: float | None = None
    error: str | None = None
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the evaluation succeeded."""
        return self.error is None


def evaluate_one(fitness_fn: Callable[[Any], Any], candidate: Any) -> EvalResult:
    """Run ``fitness_fn(candidate)`` and wrap the outcome; never raises for an ``Exception``.

    This is the task every evaluator ships to its workers (a top-level function, so it pickles).
    """
    code = str(candidate)
    start = time.perf_counter()
    try:
        value = fitness_fn(candidate)
        if isinstance(value, dict):
            if "fitness" not in value:
                raise KeyError(f"the fitness function returned a dict without a 'fitness' key: {sorted(value)}")
            info = {k: v for k, v in value.items() if k != "fitness"}
            value = value["fitness"]
        else:
            info = {}
        fitness = float(value)
    except Exception as err:  # a failing candidate must not lose the others' results
        text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        return EvalResult(code=code, error=f"{type(err).__name__}: {err}\n{text}",
                          seconds=time.perf_counter() - start)
    return EvalResult(code=code, fitness=fitness, seconds=time.perf_counter() - start, info=info)


def _init_worker(torch_threads: int) -> None:
    """Process-pool initializer: one (or a few) torch threads per worker, so workers do not fight."""
    import torch

    torch.set_num_threads(torch_threads)


def _pool_task(fitness_fn, candidate, torch_threads: int) -> EvalResult:
    # Ray reuses worker processes, so the thread count is set per task as well (cheap).
    import torch

    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    return evaluate_one(fitness_fn, candidate)


class Evaluator:
    """Interface: ``evaluate(candidates) -> list[EvalResult]``, in the order of ``candidates``.

    Subclasses implement :meth:`evaluate`; :meth:`close` releases workers. Evaluators are context
    managers (``with ProcessPoolEvaluator(fn, workers=2) as ev: ...``).
    """

    fitness_fn: Callable[[Any], Any]

    def evaluate(self, candidates: Sequence[Any], *, on_result: OnResult | None = None) -> list[EvalResult]:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers (a no-op for the in-process evaluator)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcessEvaluator(Evaluator):
    """Evaluate one candidate after the other in this process (the default)."""

    def __init__(self, fitness_fn: Callable[[Any], Any]):
        self.fitness_fn = fitness_fn

    def evaluate(self, candidates, *, on_result=None):
        results = []
        for i, candidate in enumerate(candidates):
            result = evaluate_one(self.fitness_fn, candidate)
            results.append(result)
            if on_result is not None:
                on_result(i, result)
        return results


class ProcessPoolEvaluator(Evaluator):
    """Evaluate candidates on ``workers`` local processes (``concurrent.futures``).

    Args:
        fitness_fn: a top-level picklable callable (a function, or an instance of a top-level class).
        workers: number of processes (default: ``os.cpu_count()``).
        context: ``"spawn"`` (default, safe with torch and threads) or ``"forkserver"``.
        torch_threads: torch intra-op threads per worker (1: workers x threads = cores).

    The pool starts on first use and is kept for later generations; :meth:`close` stops it.
    """

    def __init__(self, fitness_fn: Callable[[Any], Any], *, workers: int | None = None, context: str = "spawn",
                 torch_threads: int = 1):
        if context not in ("spawn", "forkserver"):
            raise ValueError(f"context must be 'spawn' or 'forkserver' (fork is unsafe with torch), got {context!r}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be positive, got {workers}")
        self.fitness_fn, self.workers, self.context, self.torch_threads = fitness_fn, workers, context, torch_threads
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                             mp_context=multiprocessing.get_context(self.context),
                                             initializer=_init_worker, initargs=(self.torch_threads,))
        return self._pool

    def evaluate(self, candidates, *, on_result=None):
        pool = self._executor()
        futures = {pool.submit(_pool_task, self.fitness_fn, c, self.torch_threads): i
                   for i, c in enumerate(candidates)}
        results: list[EvalResult | None] = [None] * len(candidates)
        broken = False
        for future in as_completed(futures):
            i = futures[future]
            try:
                result = future.result()
            except Exception as err:  # a worker died (BrokenProcessPool) or the task did not pickle
                broken = broken or "BrokenProcessPool" in type(err).__name__
                result = EvalResult(code=str(candidates[i]), error=f"{type(err).__name__}: {err}")
            results[i] = result
            if on_result is not None:
                on_result(i, result)
        if broken:  # a dead pool cannot be reused: start a fresh one next time
            self.close()
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("RayEvaluator needs Ray: pip install 'nas_tutorial[ray]' (or pip install ray)") from None
    return ray


class RayEvaluator(Evaluator):
    """Evaluate candidates as Ray tasks, on a cluster or on a local Ray instance.

    Args:
        fitness_fn: a picklable callable (Ray ships it to the workers once per ``evaluate``).
        address: ``None`` starts a local instance (or reuses one already started in this process);
            ``"auto"`` or ``"ray://host:10001"`` connects to a running cluster.
        num_cpus: CPUs of the local instance (ignored when connecting to a cluster).
        cpus_per_task: CPUs reserved per evaluation (``torch_threads`` follows it).
        gpus_per_task: GPUs reserved per evaluation (e.g. 1, or 0.5 to share a GPU between two).
        init_kwargs: more ``ray.init`` arguments (e.g. ``object_store_memory``, ``runtime_env``).

    A Ray instance started here is shut down by :meth:`close`; one that was already running is not.
    """

    def __init__(self, fitness_fn: Callable[[Any], Any], *, address: str | None = None, num_cpus: int | None = None,
                 cpus_per_task: float = 1, gpus_per_task: float = 0, init_kwargs: dict | None = None):
        self.ray = _import_ray()
        self.fitness_fn = fitness_fn
        self.cpus_per_task, self.gpus_per_task = cpus_per_task, gpus_per_task
        self._started_here = False
        if not self.ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False)
            if address is None and num_cpus is not None:
                kwargs["num_cpus"] = num_cpus
            kwargs.update(init_kwargs or {})
            self.ray.init(address=address, **kwargs)
            self._started_here = True
        self._task = self.ray.remote(_pool_task).options(num_cpus=cpus_per_task, num_gpus=gpus_per_task)

    def evaluate(self, candidates, *, on_result=None):
        ray = self.ray
        fn_ref = ray.put(self.fitness_fn)  # shipped once, shared by all tasks
        threads = max(1, int(self.cpus_per_task))
        refs = [self._task.remote(fn_ref, c, threads) for c in candidates]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[EvalResult | None] = [None] * len(candidates)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = index[done[0]]
            try:
                result = ray.get(done[0])
            except Exception as err:  # RayTaskError, WorkerCrashedError, ...: report, keep the others
                result = EvalResult(code=str(candidates[i]), error=f"{type(err).__name__}: {err}")
            results[i] = result
            if on_result is not None:
                on_result(i, result)
        return results

    def close(self) -> None:
        if self._started_here and self.ray.is_initialized():
            self.ray.shutdown()
        self._started_here = False


def make_evaluator(kind: str, fitness_fn: Callable[[Any], Any], **kwargs) -> Evaluator:
    """``"inprocess"``, ``"pool"`` or ``"ray"``: the evaluator of that kind, ``kwargs`` passed on."""
    kinds = {"inprocess": InProcessEvaluator, "pool": ProcessPoolEvaluator, "ray": RayEvaluator}
    if kind not in kinds:
        raise ValueError(f"evaluator kind must be one of {sorted(kinds)}, got {kind!r}")
    return kinds[kind](fitness_fn, **kwargs)


# -- toy fitness functions: instant, for demos and for testing the evaluators -----------------------
def ones_fraction(candidate: Any) -> float:
    """Toy fitness: the fraction of ``1`` characters among the ``0``/``1`` characters of ``str(candidate)``."""
    bits = [ch for ch in str(candidate) if ch in "01"]
    if not bits:
        raise ValueError(f"candidate {str(candidate)!r} has no 0/1 characters")
    return sum(ch == "1" for ch in bits) / len(bits)


@dataclass(frozen=True)
class FailOn:
    """Toy fitness that raises for the candidates listed in ``codes`` and otherwise calls ``fitness_fn``.

    Used to check that one failing evaluation is reported with its code and loses nothing else.
    """

    codes: tuple[str, ...]
    fitness_fn: Callable[[Any], Any] = ones_fraction

    def __call__(self, candidate: Any):
        if str(candidate) in self.codes:
            raise RuntimeError(f"simulated failure for {candidate}")
        return self.fitness_fn(candidate)
