"""The timing rule the method benchmarks share: two warm-up calls, then the median of ``repeats`` timed calls."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def timed(fn: Callable[[], object], repeats: int, sync: Callable[[], object] = lambda: None) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after two warm-ups; ``sync`` waits for the
    device (``torch.cuda.synchronize`` on CUDA) so that queued kernels are counted."""
    for _ in range(2):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
