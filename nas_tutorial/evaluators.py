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
| ``on_result`` | optional ``on_result(index, result)``, once per candidate as its result arrives (to checkpoint) |
| ``timeout`` | optional time limit per candidate, in seconds |

Three implementations:

- :class:`InProcessEvaluator` (the default): a plain loop, easiest to debug, uses the GPU if the
  fitness function does.
- :class:`ProcessPoolEvaluator`: worker processes started with ``spawn`` (or ``forkserver``), one
  pipe each, one torch thread each; on a CPU-only machine this is the fast one.
- :class:`RayEvaluator`: the same tasks on a Ray cluster (``pip install nas_tutorial[ray]``);
  connect with ``address="auto"`` or start a local instance with ``num_cpus``.

Faults stay with their candidate: an exception in the fitness function, a worker process that dies
(out of memory, a crash in C code), an evaluation over the time limit, or a task that does not
pickle becomes an ``EvalResult`` whose ``error`` names the candidate; the other results are kept.
:class:`FailOn`, :class:`KillOn` and :class:`SleepOn` simulate these faults.

Data travel as arguments: the fitness function is a picklable object that holds a data-root
*path* (workers read the CIFAR-10 subset themselves, once per process) or small tensors.
:class:`TrainFromScratch` is that object for every method that trains candidates from scratch
(Genetic CNN, PNAS, NAO): a network builder, the data settings and the training recipe; each
candidate's training seed is fixed by the run seed and its code (:func:`training_seed`), so a run
repeats exactly whichever evaluator trains it and in whichever order.
"""

from __future__ import annotations

import collections
import functools
import io
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import types
import zlib
from dataclasses import dataclass, field, fields, is_dataclass
from multiprocessing import connection
from typing import Any, Callable, Sequence

OnResult = Callable[[int, "EvalResult"], None]


@dataclass(frozen=True)
class EvalResult:
    """The outcome of evaluating one candidate.

    Attributes:
        code: the candidate's text form (``str(candidate)``), so an error always names its candidate.
        fitness: the fitness (higher is better), ``None`` when the evaluation failed.
        error: ``None``, or the error text (what went wrong, then the traceback if there is one).
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

    This is what every evaluator runs for one candidate, in this process or in a worker.
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
        return EvalResult(code=code, error=f"{type(err).__name__}: {err}\n{_traceback(err)}",
                          seconds=time.perf_counter() - start)
    return EvalResult(code=code, fitness=fitness, seconds=time.perf_counter() - start, info=info)


def _traceback(err: BaseException) -> str:
    return "".join(traceback.format_exception(type(err), err, err.__traceback__))


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds or None (no limit), got {timeout!r}")
    return timeout


def _timeout_error(code: str, timeout: float, what_happened: str) -> str:
    return f"EvaluationTimeout: evaluating {code} took longer than the time limit of {timeout:g} s; {what_happened}"


def _limit_torch_threads(threads: int) -> None:
    """Use ``threads`` torch threads in this (worker) process, without importing torch for a fitness
    function that does not need it: torch reads ``OMP_NUM_THREADS`` when it is first imported."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


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


# -- in this process ---------------------------------------------------------------------------------
class EvaluationTimeout(BaseException):
    """Raised inside an in-process fitness function when its time limit is over.

    A ``BaseException`` (like ``KeyboardInterrupt``), so a fitness function's own ``except Exception``
    does not swallow it.
    """


class InProcessEvaluator(Evaluator):
    """Evaluate one candidate after the other in this process (the default).

    Args:
        fitness_fn: any callable (it is not pickled).
        timeout: time limit per candidate in seconds (``None``: no limit). A ``SIGALRM`` timer raises
            :class:`EvaluationTimeout` inside the fitness function, and the error shows where it was.
            Its limits: Linux and macOS only; ``evaluate`` must run in the main thread; the timer
            replaces any ``SIGALRM`` handler while a candidate runs; Python raises the exception
            only between bytecodes, so a fitness stuck inside one long C call (a huge torch operation,
            a blocking read in C) is interrupted only when that call returns, if ever; and a fitness
            with a bare ``except:`` can swallow it. :class:`ProcessPoolEvaluator`'s limit has none of
            these limits (it kills the worker).
        torch_threads: torch's CPU threads while evaluating (``None``: leave torch's setting alone).
            The same value as a :class:`ProcessPoolEvaluator`'s ``torch_threads`` (default 1) gives
            the same numbers: a reduction split over more threads adds in another order.
    """

    def __init__(self, fitness_fn: Callable[[Any], Any], *, timeout: float | None = None,
                 torch_threads: int | None = None):
        if timeout is not None and not hasattr(signal, "setitimer"):
            raise ValueError(f"InProcessEvaluator(timeout={timeout!r}) needs signal.setitimer (Linux, macOS), "
                             "which this platform lacks: use ProcessPoolEvaluator(timeout=...)")
        if torch_threads is not None and not (isinstance(torch_threads, int) and torch_threads >= 1):
            raise ValueError(f"torch_threads must be a positive integer or None (unchanged), got {torch_threads!r}")
        self.fitness_fn, self.timeout, self.torch_threads = fitness_fn, _check_timeout(timeout), torch_threads

    def evaluate(self, candidates, *, on_result=None):
        if self.timeout is not None and threading.current_thread() is not threading.main_thread():
            raise RuntimeError("InProcessEvaluator(timeout=...) interrupts the fitness function with SIGALRM, "
                               "which works only in the main thread: call evaluate there, or use "
                               "ProcessPoolEvaluator(timeout=...)")
        if self.torch_threads is not None:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(self.torch_threads)
        try:
            results = []
            for i, candidate in enumerate(candidates):
                result = self._evaluate(candidate)
                results.append(result)
                if on_result is not None:
                    on_result(i, result)
            return results
        finally:
            if self.torch_threads is not None:
                torch.set_num_threads(threads)

    def _evaluate(self, candidate: Any) -> EvalResult:
        if self.timeout is None:
            return evaluate_one(self.fitness_fn, candidate)
        code, armed = str(candidate), True

        def alarm(signum, frame):
            if armed:  # not once the fitness function has returned
                raise EvaluationTimeout(f"evaluating {code} took longer than the time limit of {self.timeout:g} s")

        previous = signal.signal(signal.SIGALRM, alarm)
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, self.timeout)
                return evaluate_one(self.fitness_fn, candidate)
            finally:
                armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)
        except EvaluationTimeout as err:
            return EvalResult(code=code, error=f"EvaluationTimeout: {err}; interrupted in this process\n"
                                               f"{_traceback(err)}", seconds=self.timeout)
        finally:
            signal.signal(signal.SIGALRM, previous)


# -- on local worker processes ----------------------------------------------------------------------
class _WorkerPickler(pickle.Pickler):
    """A pickler that refuses what a spawned worker cannot import: functions and classes of ``__main__``."""

    def reducer_override(self, obj):
        if isinstance(obj, (type, types.FunctionType)) and obj.__module__ == "__main__":
            raise ValueError(f"{obj.__qualname__} is defined in __main__ (this notebook or script), which the "
                             "pool's workers cannot import: define it in a module (a .py file) and import it "
                             "from there, or use InProcessEvaluator")
        return NotImplemented


def _pickle_for_workers(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _WorkerPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _exit_with_parent() -> None:
    """A worker's watch: ends the worker as soon as the evaluator's process has ended (even SIGKILLed)."""
    multiprocessing.parent_process().join()  # waits on a pipe that closes when the parent dies
    os._exit(1)


def _worker_main(conn: connection.Connection, torch_threads: int) -> None:
    """A pool worker: receive ``(code, fitness_fn pickle, candidate pickle)``, send back the
    :class:`EvalResult`, until the evaluator closes the pipe."""
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    _limit_torch_threads(torch_threads)
    try:
        conn.send("ready")
        while True:
            code, fitness_bytes, candidate_bytes = conn.recv()
            conn.send_bytes(_run_task(code, fitness_bytes, candidate_bytes, torch_threads))
    except (EOFError, OSError):  # the evaluator closed its end of the pipe
        return


def _run_task(code: str, fitness_bytes: bytes, candidate_bytes: bytes, torch_threads: int) -> bytes:
    """One task in a pool worker: its :class:`EvalResult`, pickled (errors included)."""
    try:
        fitness_fn, candidate = pickle.loads(fitness_bytes), pickle.loads(candidate_bytes)
    except Exception as err:
        result = EvalResult(code=code, error=f"the pool worker could not unpickle the task of candidate {code}: "
                                             f"{type(err).__name__}: {err}\n{_traceback(err)}")
    else:
        _limit_torch_threads(torch_threads)  # unpickling may have imported torch
        result = evaluate_one(fitness_fn, candidate)
    try:
        return pickle.dumps(result)
    except Exception as err:  # e.g. an unpicklable value in ``info``
        return pickle.dumps(EvalResult(code=code, error=f"the result of candidate {code} could not be pickled back "
                                                        f"from the pool worker: {type(err).__name__}: {err}"))


class _Worker:
    """One worker process, the pipe to it, and the task it runs now."""

    def __init__(self, context: multiprocessing.context.BaseContext, torch_threads: int):
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child_conn, torch_threads), daemon=True)
        self.process.start()
        child_conn.close()  # the worker holds the other end
        self.ready = False  # True once it has started and said so
        self.task: tuple[int, str, float] | None = None  # (index, code, start time) of what it runs

    def stop(self) -> None:
        """End the process: an idle worker leaves when its pipe closes, a busy one is killed."""
        if self.task is not None:
            self.process.kill()
        self.conn.close()
        self.process.join(timeout=5)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()


class ProcessPoolEvaluator(Evaluator):
    """Evaluate candidates on ``workers`` local processes, each with a pipe of its own.

    Args:
        fitness_fn: a top-level picklable callable (a function, an instance of a top-level class, or a
            ``functools.partial`` of one), defined in a module: the workers import it, so a function
            or class defined in ``__main__`` (a notebook) is refused with a ``ValueError``.
        workers: number of processes (default: ``os.cpu_count()``).
        context: ``"spawn"`` (default, safe with torch and threads) or ``"forkserver"``.
        torch_threads: torch intra-op threads per worker (1: workers x threads = cores).
        timeout: time limit per candidate in seconds (``None``: no limit); a worker over it is killed
            and replaced. The clock starts when the task reaches a started worker, so a worker's first
            task includes its imports (torch: seconds) and data loading.

    Workers start on first use and are kept for later generations; :meth:`close` stops them, and they
    exit by themselves if this process dies. A worker that dies (out of memory, a crash in C code)
    fails only the candidate it was evaluating, and a new worker takes its place. Workers are daemon
    processes: a fitness function cannot start processes of its own (e.g. ``DataLoader`` workers).
    """

    def __init__(self, fitness_fn: Callable[[Any], Any], *, workers: int | None = None, context: str = "spawn",
                 torch_threads: int = 1, timeout: float | None = None):
        if context not in ("spawn", "forkserver"):
            raise ValueError(f"context must be 'spawn' or 'forkserver' (fork is unsafe with torch), got {context!r}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be positive, got {workers}")
        self.fitness_fn, self.context, self.torch_threads = fitness_fn, context, torch_threads
        self.workers, self.timeout = workers or os.cpu_count() or 1, _check_timeout(timeout)
        self._pickled_fitness()  # refuse a fitness function the workers cannot load, before starting any
        self._workers: list[_Worker] = []

    def _pickled_fitness(self) -> bytes:
        try:
            return _pickle_for_workers(self.fitness_fn)
        except Exception as err:
            raise ValueError(f"ProcessPoolEvaluator cannot send the fitness function to its workers: "
                             f"{type(err).__name__}: {err}") from None

    def evaluate(self, candidates, *, on_result=None):
        candidates = list(candidates)
        results: list[EvalResult | None] = [None] * len(candidates)

        def finish(index: int, result: EvalResult) -> None:
            results[index] = result
            if on_result is not None:
                on_result(index, result)

        fitness_bytes = self._pickled_fitness()
        todo = collections.deque()
        for i, candidate in enumerate(candidates):
            code = str(candidate)
            try:
                todo.append((i, code, _pickle_for_workers(candidate)))
            except Exception as err:
                finish(i, EvalResult(code=code, error=f"candidate {code} cannot be pickled for the pool's workers: "
                                                      f"{type(err).__name__}: {err}"))
        try:
            self._run(todo, fitness_bytes, finish)
        except BaseException:  # (Ctrl-C, or on_result failed) busy workers must not answer a later call
            self.close()
            raise
        return results

    def _run(self, todo: collections.deque, fitness_bytes: bytes, finish: Callable[[int, EvalResult], None]) -> None:
        """Hand each ``(index, code, candidate pickle)`` of ``todo`` to an idle worker and ``finish`` it
        with its result, or with an error if its worker dies or runs over the time limit."""
        context = multiprocessing.get_context(self.context)
        while todo or any(w.task is not None for w in self._workers):
            busy = sum(w.task is not None for w in self._workers)
            while len(self._workers) < min(self.workers, busy + len(todo)):
                self._workers.append(_Worker(context, self.torch_threads))
            for worker in self._workers:
                if worker.ready and worker.task is None and todo:
                    index, code, candidate_bytes = todo.popleft()
                    try:
                        worker.conn.send((code, fitness_bytes, candidate_bytes))
                    except OSError:  # it has just died: the task goes to another worker
                        todo.appendleft((index, code, candidate_bytes))
                        continue
                    worker.task = (index, code, time.monotonic())
            connection.wait([w.conn for w in self._workers] + [w.process.sentinel for w in self._workers],
                            timeout=self._seconds_to_next_deadline())
            for worker in list(self._workers):
                self._check(worker, finish)

    def _seconds_to_next_deadline(self) -> float | None:
        starts = [w.task[2] for w in self._workers if w.task is not None]
        if self.timeout is None or not starts:
            return None
        return max(0.0, min(starts) + self.timeout - time.monotonic())

    def _check(self, worker: _Worker, finish: Callable[[int, EvalResult], None]) -> None:
        """Take the worker's message (``"ready"`` or its result). If it died or ran over the time limit,
        fail its candidate and drop it (a new worker takes its place)."""
        try:
            message = worker.conn.recv() if worker.conn.poll() else None
        except (EOFError, OSError):  # it died
            message = None
        if message == "ready":
            worker.ready = True
        elif isinstance(message, EvalResult):
            finish(worker.task[0], message)
            worker.task = None
        index, code, start = worker.task or (None, None, None)
        if worker.process.is_alive():
            if index is None or self.timeout is None or time.monotonic() - start <= self.timeout:
                return
            error = _timeout_error(code, self.timeout, "its pool worker was killed")
        else:
            how = _describe_exit(worker.process.exitcode)
            if not worker.ready:
                raise RuntimeError(f"a pool worker died while starting ({how}); its error is on stderr")
            error = (f"the pool worker evaluating {code} died ({how}), e.g. killed for lack of memory or crashed "
                     "in C code; the other candidates' results are kept")
        worker.stop()  # kills it if it still runs
        self._workers.remove(worker)
        if index is not None:
            finish(index, EvalResult(code=code, error=error, seconds=time.monotonic() - start))

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []


# -- on a Ray cluster --------------------------------------------------------------------------------
def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("RayEvaluator needs Ray: pip install 'nas_tutorial[ray]' (or pip install ray)") from None
    return ray


def _ray_task(fitness_fn, candidate, torch_threads: int) -> EvalResult:
    # Ray reuses worker processes, so the thread count is set per task.
    _limit_torch_threads(torch_threads)
    return evaluate_one(fitness_fn, candidate)


class RayEvaluator(Evaluator):
    """Evaluate candidates as Ray tasks, on a cluster or on a local Ray instance.

    Args:
        fitness_fn: a picklable callable (Ray ships it to the workers once per ``evaluate``).
        address: ``None`` starts a local instance (or reuses one already started in this process);
            ``"auto"`` or ``"ray://host:10001"`` connects to a running cluster.
        num_cpus: CPUs of the local instance (ignored when connecting to a cluster).
        cpus_per_task: CPUs reserved per evaluation (``torch_threads`` follows it).
        gpus_per_task: GPUs reserved per evaluation (e.g. 1, or 0.5 to share a GPU between two).
        timeout: time limit per candidate in seconds (``None``: no limit); a task over it is cancelled
            with ``ray.cancel(ref, force=True)``, which kills its worker. With a limit, only as many
            tasks as the cluster's CPUs and GPUs hold at once are handed to Ray, and the clock starts
            at hand-over, so it includes a worker's start-up (seconds).
        init_kwargs: more ``ray.init`` arguments (e.g. ``object_store_memory``, ``runtime_env``).

    A Ray instance started here is shut down by :meth:`close`; one that was already running is not.
    """

    def __init__(self, fitness_fn: Callable[[Any], Any], *, address: str | None = None, num_cpus: int | None = None,
                 cpus_per_task: float = 1, gpus_per_task: float = 0, timeout: float | None = None,
                 init_kwargs: dict | None = None):
        self.ray = _import_ray()
        self.fitness_fn, self.timeout = fitness_fn, _check_timeout(timeout)
        self.cpus_per_task, self.gpus_per_task = cpus_per_task, gpus_per_task
        self._started_here = False
        if not self.ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False)
            if address is None and num_cpus is not None:
                kwargs["num_cpus"] = num_cpus
            kwargs.update(init_kwargs or {})
            self.ray.init(address=address, **kwargs)
            self._started_here = True
        self._task = self.ray.remote(_ray_task).options(num_cpus=cpus_per_task, num_gpus=gpus_per_task)

    def _room(self, default: int) -> int:
        """How many tasks the cluster runs at once (``default`` if they reserve no CPU or GPU)."""
        total = self.ray.cluster_resources()
        fits = [total.get(name, 0) // need for name, need in (("CPU", self.cpus_per_task), ("GPU", self.gpus_per_task))
                if need > 0]
        return max(1, int(min(fits))) if fits else default

    def evaluate(self, candidates, *, on_result=None):
        ray = self.ray
        candidates = list(candidates)
        fn_ref = ray.put(self.fitness_fn)  # shipped once, shared by all tasks
        threads = max(1, int(self.cpus_per_task))
        todo = collections.deque(enumerate(candidates))
        room = len(candidates) if self.timeout is None else self._room(len(candidates))
        running = {}  # ref -> (index, code, start time)
        results: list[EvalResult | None] = [None] * len(candidates)

        def finish(index: int, result: EvalResult) -> None:
            results[index] = result
            if on_result is not None:
                on_result(index, result)

        while todo or running:
            while todo and len(running) < room:
                i, candidate = todo.popleft()
                running[self._task.remote(fn_ref, candidate, threads)] = (i, str(candidate), time.monotonic())
            wait = None if self.timeout is None else max(
                0.0, min(start for _, _, start in running.values()) + self.timeout - time.monotonic())
            done, _ = ray.wait(list(running), num_returns=1, timeout=wait)
            for ref in done:
                i, code, _ = running.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as err:  # RayTaskError, WorkerCrashedError, ...: report, keep the others
                    result = EvalResult(code=code, error=f"the Ray task evaluating {code} failed: "
                                                         f"{type(err).__name__}: {err}")
                finish(i, result)
            for ref, (i, code, start) in list(running.items()):
                if self.timeout is not None and time.monotonic() - start > self.timeout:
                    ray.cancel(ref, force=True)  # kills its worker
                    del running[ref]
                    error = _timeout_error(code, self.timeout, "its Ray task was cancelled")
                    finish(i, EvalResult(code=code, error=error, seconds=time.monotonic() - start))
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


@dataclass(frozen=True)
class KillOn:
    """Toy fitness that kills its own process with ``SIGKILL`` (as the out-of-memory killer does) for
    the candidates listed in ``codes`` and otherwise calls ``fitness_fn``.

    Shows that a dead worker fails only its own candidate; meant for a :class:`ProcessPoolEvaluator`
    or a :class:`RayEvaluator`: in-process it kills *this* Python (the notebook's kernel).
    """

    codes: tuple[str, ...]
    fitness_fn: Callable[[Any], Any] = ones_fraction

    def __call__(self, candidate: Any):
        if str(candidate) in self.codes:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.fitness_fn(candidate)


@dataclass(frozen=True)
class SleepOn:
    """Toy fitness that sleeps ``seconds`` for the candidates listed in ``codes`` (a hung evaluation, to
    see a ``timeout`` at work) and otherwise calls ``fitness_fn``."""

    codes: tuple[str, ...]
    seconds: float
    fitness_fn: Callable[[Any], Any] = ones_fraction

    def __call__(self, candidate: Any):
        if str(candidate) in self.codes:
            time.sleep(self.seconds)
        return self.fitness_fn(candidate)
