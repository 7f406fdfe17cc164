"""Shared fixtures: the real CIFAR-10 subset when present, else a tiny batch in the official format."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_fake_cifar(root: Path, n_train: int = 200, n_test: int = 50, seed: int = 0, *, train_batches: int = 1,
                     official_labels: bool = False) -> Path:
    """Write batches in the official python format (random pixels, balanced labels) under ``root``.

    ``train_batches`` files ``data_batch_1`` ... of ``n_train`` images each; ``batch_label`` is the file
    name, or with ``official_labels`` what CIFAR-10 writes ("training batch 1 of 5", "testing batch 1 of 1").
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    files = [(f"data_batch_{k}", n_train, f"training batch {k} of 5") for k in range(1, train_batches + 1)]
    for name, n, official in [*files, ("test_batch", n_test, "testing batch 1 of 1")]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(n)],
                 "batch_label": official if official_labels else name, "filenames": [f"{i}.png" for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"]}, f)
    return root


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """``$NAS_TUTORIAL_DATA``, else ``../shared/data`` (real images), else a tiny fake folder."""
    for candidate in (os.environ.get("NAS_TUTORIAL_DATA"), SHARED):
        if candidate and (Path(candidate) / "cifar-10-batches-py" / "data_batch_1").exists():
            return Path(candidate)
    return write_fake_cifar(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(scope="session")
def cifar(data_root):
    from nas_tutorial.data import load_cifar10

    return load_cifar10(data_root, download=False)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: tiny tensors go faster, and other processes do not slow it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def smoothed(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with softplus for every ReLU and average for every max pooling, in place (the DARTS
    notebook's smooth copy: the same weights, a loss without kinks)."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, torch.nn.Softplus(beta=4))
            elif isinstance(child, torch.nn.MaxPool2d):
                setattr(module, name, torch.nn.AvgPool2d(3, child.stride, 1, count_include_pad=False))
    return model
