r"""The pattern every search method follows: a config, a loop of steps, records, checkpoints, progress.

Each method module (``darts``, ``genetic_cnn``, and the ones to come) subclasses :class:`Search` and
offers one function with the same arguments::

    records = method.search(config, data, *, checkpoint=None, progress=False, callback=None, stop_after=None)

| piece | code | what it is |
| --- | --- | --- |
| config | :class:`Config` | frozen, validated settings; defaults and ``paper()``: the paper's; ``fast()``: CPU |
| data | ``data`` | what candidates are scored on: ``Subsets`` (one-shot) or an ``Evaluator`` (population) |
| step | :meth:`Search.step` | one epoch, generation or beam step; returns the method's own record fields |
| record | ``dict`` | one per step: :data:`COMMON_KEYS` beside the method's own words (``epoch``, ...) |
| checkpoint | :class:`Checkpoint` | atomic file of the state, the config and what else results depend on |
| progress | :func:`progress_bar` | a text bar, readable in a saved notebook; ``callback(record)`` after each step |

A checkpoint written with other settings (config, data, fitness) is refused, naming the fields.
The same seed gives the same records, and a run stopped at any point (``stop_after``, an
exception, a killed process) and started again with the same checkpoint path ends with the
records of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

#: Keys every record has, whatever the method: the step number (1, 2, ...), its wall-clock seconds,
#: the text form of the best architecture the method knows after the step, and its score (higher is better).
COMMON_KEYS = ("step", "seconds", "best_arch", "best_score")

Record = dict[str, Any]


# -- configs -----------------------------------------------------------------------------------------
def plain(value: Any) -> Any:
    """``value`` as plain data (dicts, lists, str, int, float, bool, None): dataclasses become dicts,
    tuples lists, numpy and torch scalars Python numbers, functions and classes their dotted name,
    a ``functools.partial`` its function and arguments, anything else its ``repr``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        return value.item()
    if isinstance(value, functools.partial):  # its repr would carry the function's address
        return {"func": plain(value.func), "args": plain(value.args), "keywords": plain(value.keywords)}
    if callable(value) and hasattr(value, "__qualname__"):  # functions and classes: by name, no address
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def differences(theirs: dict, ours: dict, prefix: str = "") -> list[str]:
    """``"name=old (now new)"`` for every (nested) field where two plain dicts differ, sorted."""
    out = []
    for key in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(key, "<absent>"), ours.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}={a!r} (now {b!r})")
    return out


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every method's settings: a frozen dataclass checked by :meth:`validate` when built.

    Subclasses give every field the paper's value as default (where they follow the authors' code
    instead, their docstring says so) and add a ``fast()`` constructor for the notebook's CPU run.
    """

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field and what would be valid; subclasses extend it."""

    @classmethod
    def paper(cls, **changes):
        """The paper's setting (the defaults), with ``changes``."""
        return cls(**changes)

    @classmethod
    def fast(cls, **changes):
        """A setting small enough for a laptop CPU (the notebooks' fast mode), with ``changes``."""
        raise NotImplementedError(f"{cls.__name__} has no fast setting")

    def replace(self, **changes):
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The settings as plain data (what a checkpoint stores and compares)."""
        return plain(self)


def check(condition: bool, field: str, message: str, value: Any) -> None:
    """Raise ``ValueError("field 'field' message, got value")`` unless ``condition``: the one error form of configs."""
    if not condition:
        raise ValueError(f"field {field!r} {message}, got {value!r}")


# -- checkpoints -------------------------------------------------------------------------------------
class Checkpoint:
    """A search's state on disk: written atomically, read back only by a run with the same settings.

    The file holds ``{"format", "method", "config", "context", "state"}``, all plain data and
    tensors, so it loads with ``torch.load(..., weights_only=True)``: opening a checkpoint never
    runs code. ``context`` names what the results depend on besides the config (a fingerprint of
    the data, the fitness function's settings); :meth:`load` refuses a file whose method, config
    or context differ, naming every differing field.

    Args:
        path: the file (its folder is created on the first save).
        method: the method's name (``"darts"``, ``"genetic_cnn"``, ...).
        config: the run's settings (a :class:`Config` or a plain dict).
        context: other plain data the results depend on.
    """

    FORMAT = "nas_tutorial.checkpoint/1"

    def __init__(self, path: str | os.PathLike, *, method: str, config: Config | dict, context: dict | None = None):
        self.path = Path(path)
        self.method = method
        self.config = config.to_dict() if isinstance(config, Config) else plain(config)
        self.context = plain(context or {})

    def exists(self) -> bool:
        return self.path.exists()

    def save(self, state: dict) -> None:
        """Write ``state`` atomically: a crash leaves the old file or the new one, never half of one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        blob = {"format": self.FORMAT, "method": self.method, "config": self.config, "context": self.context,
                "state": state}
        with open(tmp, "wb") as f:
            torch.save(blob, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def load(self) -> dict | None:
        """The saved state, or ``None`` if there is no file.

        Raises:
            ValueError: the file is not a readable checkpoint, or was written by another method or
                with other settings (every differing field is named).
        """
        if not self.path.exists():
            return None
        try:
            blob = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated, garbage, or a pickle with code in it: all refused alike
            raise ValueError(f"checkpoint {self.path} cannot be read ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}); delete it to start afresh") from None
        if not isinstance(blob, dict) or blob.get("format") != self.FORMAT:
            raise ValueError(f"{self.path} is not a nas_tutorial checkpoint (no {self.FORMAT!r} header); "
                             "delete it or choose another checkpoint path")
        if blob["method"] != self.method:
            raise ValueError(f"checkpoint {self.path} belongs to a {blob['method']!r} search, not {self.method!r}")
        differ = differences({"config": blob["config"], "context": blob["context"]},
                             {"config": self.config, "context": self.context})
        if differ:
            raise ValueError(f"checkpoint {self.path} was written by a run with other settings: {'; '.join(differ)}. "
                             "Resume with the same settings, or use another checkpoint path to start afresh.")
        return blob["state"]


# -- progress ----------------------------------------------------------------------------------------
def progress_bar(*, total: int, initial: int = 0, desc: str = "", enabled: bool = True):
    """A text progress bar on standard output (``tqdm.std``), updated once per step.

    Text, not a widget: a saved notebook keeps its final state as plain output (with
    ``coalesce_streams``, as ``make notebooks`` executes them, or after JupyterLab saves), readable on a
    code host and after a browser reload, where a widget bar would show "model not found".
    """
    from tqdm.std import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, file=sys.stdout, mininterval=0,
                ncols=90, leave=True)


# -- the loop ----------------------------------------------------------------------------------------
class Search:
    """One search run: the loop, the records, the checkpoint and the progress, written once.

    A method subclass sets :attr:`method`, builds its state in ``__init__`` (after calling this
    one) and implements :meth:`num_steps`, :meth:`step`, :meth:`state_dict` and
    :meth:`load_state_dict`, and :meth:`context` if its results depend on more than the config.
    :meth:`step` may call :meth:`save` in the middle of a step (e.g. after each evaluation); the
    state it saves must then let a resumed :meth:`step` finish the same step.
    """

    method: ClassVar[str] = "search"

    def __init__(self, config: Config, data: Any, *, checkpoint: str | os.PathLike | None = None):
        if not isinstance(config, Config):
            raise TypeError(f"config must be a {Config.__module__}.Config (e.g. the method's paper() or fast()), "
                            f"got {type(config).__name__}")
        self.config, self.data = config, data
        self.records: list[Record] = []
        self.checkpoint_path = None if checkpoint is None else Path(checkpoint)
        self._checkpoint: Checkpoint | None = None
        self._resumed = False

    # -- what a method provides ------------------------------------------------------------------------
    def num_steps(self) -> int:
        """Steps of a whole run (epochs, generations + 1, ...)."""
        raise NotImplementedError

    def step(self, index: int) -> Record:
        """Run step ``index`` (0-based); return its record without the ``step`` and ``seconds`` keys."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Everything needed to continue exactly (weights, optimisers, random generators, ...)."""
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    def context(self) -> dict:
        """Plain data the results depend on besides the config (checked on resume)."""
        return {}

    # -- written once --------------------------------------------------------------------------------
    def _store(self) -> Checkpoint | None:
        if self.checkpoint_path is not None and self._checkpoint is None:
            self._checkpoint = Checkpoint(self.checkpoint_path, method=self.method, config=self.config,
                                          context=self.context())
        return self._checkpoint

    def resume(self) -> bool:
        """Load the checkpoint if there is one (once); return whether a run was resumed."""
        if self._resumed:
            return False
        self._resumed = True
        store = self._store()
        state = store.load() if store is not None else None
        if state is None:
            return False
        self.load_state_dict(state["search"])
        self.records = state["records"]
        return True

    def save(self) -> None:
        """Write the checkpoint now (a no-op without a checkpoint path)."""
        store = self._store()
        if store is not None:
            store.save({"search": self.state_dict(), "records": self.records})

    def run(self, *, progress: bool = False, callback: Callable[[Record], None] | None = None,
            stop_after: int | None = None) -> list[Record]:
        """Run (or resume) the search; return the records of every finished step.

        Args:
            progress: show a text progress bar.
            callback: called with each new record (e.g. to plot as the search goes).
            stop_after: stop once this many steps are finished in all (to run a search in parts).
        """
        self.resume()
        total = self.num_steps()
        last = total if stop_after is None else min(stop_after, total)
        bar = progress_bar(total=total, initial=len(self.records), desc=self.method, enabled=progress)
        try:
            for index in range(len(self.records), last):
                start = time.perf_counter()
                own = self.step(index)
                record = {"step": index + 1, "seconds": time.perf_counter() - start, **own}
                missing = [k for k in COMMON_KEYS if k not in record]
                if missing:
                    raise RuntimeError(f"{type(self).__name__}.step returned no {missing}")
                self.records.append(record)
                self.save()
                bar.set_postfix_str(f"best {record['best_score']:.3f}", refresh=False)
                bar.update(1)
                if callback is not None:
                    callback(record)
        finally:
            bar.close()
        return list(self.records)
