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
