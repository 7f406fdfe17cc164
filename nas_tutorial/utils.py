"""Device choice, seeding and mixed precision: the three things every run needs."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """Return the best available device: CUDA, then Apple MPS, then CPU.

    Args:
        prefer: force a device (``"cpu"``, ``"cuda"``, ``"mps"``); ``None`` picks automatically.
    """
    if prefer is not None:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU; use 'cpu'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def parse_flag(value: str | None, name: str = "flag") -> bool:
    """An on/off setting from text (an environment variable): ``1/true/yes/on`` or ``0/false/no/off``
    (any case; unset or empty is off). Anything else is a ``ValueError`` naming ``name``.

    The notebooks read ``NAS_TUTORIAL_FAST`` with it in their first cell; library functions never
    read the environment, they take explicit arguments.
    """
    text = (value or "").strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1/true/yes/on or 0/false/no/off, got {value!r}")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded the same way.

    With the same seed on the same machine and thread count, CPU runs repeat exactly.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return torch.Generator().manual_seed(seed)


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision where it helps: bfloat16 autocast on CUDA GPUs that support it, else a no-op.

    bfloat16 has float32's exponent range, so no gradient scaler is needed; older GPUs without it
    simply train in float32.
    """
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def count_parameters(module: torch.nn.Module, *, exclude: str | None = None) -> int:
    """Number of trainable parameters, optionally skipping names that contain ``exclude``."""
    return sum(
        p.numel()
        for name, p in module.named_parameters()
        if p.requires_grad and (exclude is None or exclude not in name)
    )


# -- longer runs recorded for a notebook (METHOD_CHECKLIST: "a longer run recorded with the package's own command")
def save_recorded(path: str | os.PathLike, result: dict, *, command: str, seed: int, seconds: float, data: str,
                  threads: int) -> dict:
    """Write ``result`` (plain data) to the JSON file ``path`` with what a reader needs to trust and remake
    it: the ``command`` that re-creates it, the seed, the duration, the date, the machine, torch's version
    and a description of the ``data``. Returns what was written."""
    import json
    import platform
    import time
    from pathlib import Path

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU used"
    out = {"command": command, "seed": seed, "seconds": round(seconds, 1), "date": time.strftime("%Y-%m-%d"),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {threads} torch thread(s), {gpu}",
           "torch": torch.__version__, "data": data, **result}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1) + "\n")
    return out


def load_recorded(path: str | os.PathLike, command: str) -> dict:
    """A run written by :func:`save_recorded`; a missing file names the ``command`` that makes it."""
    import json
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no recorded run here; make it with `{command}`")
    return json.loads(path.read_text())


def record_command(prog: str, record, default_path, argv=None, **extra) -> dict:
    """The command line ``python -m nas_tutorial.<method> record [--seed S] [--threads T] [--out F] [--data D]``
    shared by the methods' ``record`` functions (``extra``: further keywords for ``record``)."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=record.__doc__)
    parser.add_argument("command", choices=["record"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(default_path))
    parser.add_argument("--data", default=None, help="CIFAR-10 folder (default: $NAS_TUTORIAL_DATA or the cache)")
    args = parser.parse_args(argv)
    result = record(args.out, data_root=args.data, seed=args.seed, threads=args.threads, **extra)
    print(f"wrote {args.out} in {result['seconds']:.0f} s")
    return result
