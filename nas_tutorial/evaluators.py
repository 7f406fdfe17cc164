r"""Evaluate a population of candidate architectures: in-process, on a local process pool, or on Ray.

Every population-based method (Genetic CNN here; PNAS, SPOS's evolutionary search and NAO later)
has the same inner step: *given a list of candidates, return one fitness per candidate*. This
module is that step, behind one small interface, so a search written against :class:`Evaluator`
runs unchanged on a laptop, on all its cores, or on a cluster.

| name | what it is |
| --- | --- |
| candidate | any picklable object whose ``str()`` is its code (e.g. a Genetic-CNN genome, or a :class:`Trial`) |
| ``fitness_fn`` | a top-level (picklable) callable returning a float, or a dict with ``"fitness"`` and extras |
| :class:`EvalResult` | one candidate's outcome: ``fitness`` or ``error`` (the traceback text), never both |
| ``on_result`` | optional ``on_result(index, result)``, called as each result arrives (to checkpoint) |

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
:class:`TrainFromScratch` is that object for every method that trains candidates from scratch
(Genetic CNN, PNAS, NAO): a network builder, the data settings and the training recipe; each
candidate's training seed is fixed by the run seed and its code (:func:`training_seed`), so a run
repeats exactly whichever evaluator trains it and in whichever order.
"""

from __future__ import annotations

import functools
import multiprocessing
import time
import traceback
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields, is_dataclass
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


# -- training candidates from scratch ---------------------------------------------------------------
def training_seed(seed: int, code: str, repeat: int = 0) -> int:
    """The seed a candidate is trained with: fixed by the run seed, its code and the repeat number
    (not by the worker or the order of evaluation)."""
    return zlib.crc32(f"{seed}:{code}:{repeat}".encode())


@dataclass(frozen=True)
class Trial:
    """What a search sends to an evaluator when a candidate may be trained more than once: the
    candidate and which training of it this is (``repeat``, which changes its training seed)."""

    candidate: Any
    repeat: int = 0

    def __str__(self) -> str:
        return str(self.candidate)


@functools.lru_cache(maxsize=4)
def _cached_subsets(data_root: str, train_size: int, image_size: int, data_seed: int):
    # One read per process (workers call this too): CPU tensors, moved to the device per evaluation.
    from .data import load_cifar10, make_subsets

    data = load_cifar10(data_root, download=False)
    s = make_subsets(data, train_size=train_size, test_size=10, image_size=image_size, seed=data_seed)
    return s.train_x, s.train_y, s.valid_x, s.valid_y


@dataclass(frozen=True)
class TrainFromScratch:
    r"""Fitness of a candidate: its validation accuracy after training ``build(candidate)`` from scratch
    for ``epochs`` epochs on the training half of ``train_size`` class-balanced CIFAR-10 images, scored
    on the other half.

    A picklable value (``build`` must be picklable too: a top-level function or class, or a
    ``functools.partial`` of one): workers receive it and read the data themselves from
    ``data_root``, once per process. Called with a candidate or a :class:`Trial`; returns a dict
    with ``"fitness"``, ``"valid_loss"``, ``"train_acc"`` and ``"params"``. ``torch_threads`` (if
    set) limits torch's CPU threads during the call: on a small, busy CPU one thread per evaluation
    is steadier than several fighting for the cores.
    """

    build: Callable[[Any], Any]
    data_root: str
    train_size: int = 400
    image_size: int = 16
    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.05
    seed: int = 0
    data_seed: int = 0
    device: str = "cpu"
    torch_threads: int | None = None

    def settings(self) -> dict:
        """What the fitness values depend on (a checkpoint records it): every field but the device and
        the thread count."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("device", "torch_threads")}

    def __call__(self, candidate: Any) -> dict:
        import torch

        from .data import DeviceLoader
        from .training import fit
        from .utils import count_parameters

        repeat = candidate.repeat if isinstance(candidate, Trial) else 0
        candidate = candidate.candidate if isinstance(candidate, Trial) else candidate
        train_x, train_y, valid_x, valid_y = _cached_subsets(str(self.data_root), self.train_size, self.image_size,
                                                             self.data_seed)
        device = torch.device(self.device)
        seed = training_seed(self.seed, str(candidate), repeat)
        threads = torch.get_num_threads()
        try:
            if self.torch_threads is not None:
                torch.set_num_threads(self.torch_threads)
            with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
                torch.manual_seed(seed)
                model = self.build(candidate).to(device)
                loader = DeviceLoader(train_x.to(device), train_y.to(device), self.batch_size, seed=seed)
                history = fit(model, loader, (valid_x.to(device), valid_y.to(device)), epochs=self.epochs,
                              lr=self.lr, progress=False)
        finally:
            torch.set_num_threads(threads)
        last = history[-1]
        return {"fitness": last["valid_acc"], "valid_loss": last["valid_loss"], "train_acc": last["train_acc"],
                "params": count_parameters(model)}


def describe_fitness(fitness_fn: Callable[[Any], Any]) -> dict:
    """Plain data naming a fitness function and its settings (what a population search's checkpoint
    compares on resume): its ``settings()`` if it has one, a dataclass's fields, or its name."""
    from .search import plain

    kind = getattr(fitness_fn, "__qualname__", None) or type(fitness_fn).__qualname__
    name = f"{getattr(fitness_fn, '__module__', type(fitness_fn).__module__)}.{kind}"
    if hasattr(fitness_fn, "settings"):
        return {"type": name, **plain(fitness_fn.settings())}
    if is_dataclass(fitness_fn):
        return {"type": name, **plain(fitness_fn)}
    return {"type": name}


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
