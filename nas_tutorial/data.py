"""Real CIFAR-10 (Krizhevsky, 2009), read from the official python batches, kept on the device.

The folder ``cifar-10-batches-py/`` is looked up under a data root: the ``root`` argument, else
the ``NAS_TUTORIAL_DATA`` environment variable, else ``~/.cache/nas_tutorial``. Whatever batches
are present are read, so a partial folder (one training batch, a short test batch) works. If
the folder is absent it is downloaded with torchvision (about 170 MB).

Search-time subsets live as one float tensor on the device and are batched there by
:class:`DeviceLoader`: augmentation (random crop with padding, horizontal flip, cutout) runs on
whole batches, with no per-image Python work in the training loop.
"""

from __future__ import annotations

import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

FOLDER = "cifar-10-batches-py"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: Per-channel mean and standard deviation of the CIFAR-10 training set (RGB, in [0, 1]).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def default_data_root() -> Path:
    """``$NAS_TUTORIAL_DATA`` if set, else ``~/.cache/nas_tutorial`` (``$XDG_CACHE_HOME`` honoured)."""
    if os.environ.get("NAS_TUTORIAL_DATA"):
        return Path(os.environ["NAS_TUTORIAL_DATA"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return cache / "nas_tutorial"


@dataclass(frozen=True)
class CIFAR10:
    """Images as uint8 ``(N, 3, 32, 32)`` CPU tensors and labels as int64 ``(N,)``."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...] = CLASSES


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    try:
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # (N, 3, H, W)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{path} is not a CIFAR-10 python batch (need 'data' (N, 3072) and 'labels'): {err}") from None
    if len(data) != len(labels):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data, labels


def load_cifar10(root: str | os.PathLike | None = None, *, download: bool = True) -> CIFAR10:
    """Read every CIFAR-10 batch present under ``root / "cifar-10-batches-py"``.

    Args:
        root: data root; ``None`` means :func:`default_data_root`.
        download: fetch the full set with torchvision when the folder is absent.

    Raises:
        FileNotFoundError: no folder and no download possible; the message says where to put it.
    """
    root = Path(root).expanduser() if root is not None else default_data_root()
    folder = root / FOLDER
    if not folder.is_dir() and download:
        try:
            import torchvision

            torchvision.datasets.CIFAR10(str(root), train=True, download=True)
        except Exception as err:  # network errors come in many types; report them all the same way
            raise FileNotFoundError(_missing_message(folder, f"download failed: {err}")) from None
    if not folder.is_dir():
        raise FileNotFoundError(_missing_message(folder, "download=False"))
    train_files = sorted(folder.glob("data_batch_*"))
    test_file = folder / "test_batch"
    if not train_files or not test_file.exists():
        raise FileNotFoundError(
            _missing_message(folder, "the folder has no data_batch_* file or no test_batch file")
        )
    train = [_read_batch(p) for p in train_files]
    test_x, test_y = _read_batch(test_file)
    return CIFAR10(
        train_images=torch.from_numpy(np.concatenate([x for x, _ in train])),
        train_labels=torch.from_numpy(np.concatenate([y for _, y in train])),
        test_images=torch.from_numpy(test_x),
        test_labels=torch.from_numpy(test_y),
    )


def _missing_message(folder: Path, why: str) -> str:
    return (
        f"CIFAR-10 not found at {folder} ({why}). Put the official python batches "
        f"(data_batch_1 ... data_batch_5, test_batch, from cifar-10-python.tar.gz) in that folder, "
        f"or point NAS_TUTORIAL_DATA (or the root argument) at the folder that contains {FOLDER}/."
    )


def balanced_indices(labels: torch.Tensor, size: int, *, seed: int = 0, num_classes: int = 10) -> torch.Tensor:
    """``size`` indices with as near as possible the same count per class, seeded, shuffled.

    A class with fewer images than its share gives all it has; the others make up the rest.
    """
    if not 0 < size <= len(labels):
        raise ValueError(f"subset size must be in 1..{len(labels)}, got {size}")
    g = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    per_class = [idx[torch.randperm(len(idx), generator=g)] for idx in per_class]
    # As equal as possible: fill classes level by level, so a class with few images gives all it has.
    quota = [0] * num_classes
    while sum(quota) < size:
        for c in sorted(range(num_classes), key=lambda c: (quota[c], c)):
            if quota[c] < len(per_class[c]) and sum(quota) < size:
                quota[c] += 1
    chosen = torch.cat([idx[:q] for idx, q in zip(per_class, quota)])
    return chosen[torch.randperm(len(chosen), generator=g)]


def search_split(labels: torch.Tensor, size: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a balanced subset of the training images into weight-training and validation halves.

    The one-shot papers (DARTS, ENAS, ...) search on half of the CIFAR-10 training set and use
    the other half as the validation set that scores architectures; the test set stays untouched.
    """
    idx = balanced_indices(labels, size, seed=seed)
    order = torch.argsort(labels[idx], stable=True)  # group by class, then alternate: both halves balanced
    idx = idx[order]
    train, valid = idx[0::2], idx[1::2]
    g = torch.Generator().manual_seed(seed + 1)
    return train[torch.randperm(len(train), generator=g)], valid[torch.randperm(len(valid), generator=g)]


def to_device_tensor(images: torch.Tensor, *, device: torch.device | str = "cpu", image_size: int = 32) -> torch.Tensor:
    """uint8 ``(N, 3, 32, 32)`` -> normalised float32 ``(N, 3, S, S)`` on ``device``.

    ``image_size < 32`` downscales by area averaging (e.g. 16 for fast CPU runs).
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images of shape (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    x = images.to(device).float().div_(255)  # (N, 3, 32, 32)
    if image_size != x.shape[-1]:
        x = F.interpolate(x, size=(image_size, image_size), mode="area")
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def denormalise(x: torch.Tensor) -> torch.Tensor:
    """Inverse of the normalisation, for showing images: float ``(N, 3, H, W)`` in [0, 1]."""
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x * std + mean).clamp(0, 1)


@dataclass(frozen=True)
class Augment:
    """Standard CIFAR augmentation, applied to whole batches on the device.

    Attributes:
        crop_padding: pad by this many pixels, then crop back at a random offset (0: off).
        flip: random horizontal flip with probability 1/2.
        cutout: side of a square zeroed at a random centre (DeVries & Taylor, 2017; 0: off).
    """

    crop_padding: int = 4
    flip: bool = True
    cutout: int = 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        if self.crop_padding:
            p = self.crop_padding
            padded = F.pad(x, (p, p, p, p))  # (B, C, H + 2p, W + 2p)
            dy = torch.randint(0, 2 * p + 1, (b, 1), generator=generator).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (b, 1), generator=generator).to(x.device)
            rows = (dy + torch.arange(h, device=x.device))[:, None, :, None].expand(b, c, h, w + 2 * p)
            x = padded.gather(2, rows)  # (B, C, H, W + 2p)
            cols = (dx + torch.arange(w, device=x.device))[:, None, None, :].expand(b, c, h, w)
            x = x.gather(3, cols)  # (B, C, H, W)
        if self.flip:
            flip = (torch.rand(b, generator=generator) < 0.5).to(x.device).view(b, 1, 1, 1)
            x = torch.where(flip, x.flip(3), x)
        if self.cutout:
            cy = torch.randint(0, h, (b, 1, 1), generator=generator).to(x.device)
            cx = torch.randint(0, w, (b, 1, 1), generator=generator).to(x.device)
            ys = torch.arange(h, device=x.device).view(1, h, 1)
            xs = torch.arange(w, device=x.device).view(1, 1, w)
            top, left = cy - self.cutout // 2, cx - self.cutout // 2  # square of side `cutout`
            hole = (ys >= top) & (ys < top + self.cutout) & (xs >= left) & (xs < left + self.cutout)  # (B, H, W)
            x = x * (~hole).unsqueeze(1)
        return x


class DeviceLoader:
    """Shuffled mini-batches of a tensor dataset that already lives on the device.

    Iterating gives ``(images, labels)`` batches; each pass reshuffles with its own generator,
    so a loader seeded the same way yields the same batches.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *,
                 shuffle: bool = True, augment: Augment | None = None, seed: int = 0, drop_last: bool = False):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.images, self.labels = images, labels.to(images.device)
        self.batch_size, self.shuffle, self.augment, self.drop_last = batch_size, shuffle, augment, drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.images)
        order = torch.randperm(n, generator=self.generator).to(self.images.device) if self.shuffle else None
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            if order is None:
                x, y = self.images[start:start + self.batch_size], self.labels[start:start + self.batch_size]
            else:
                idx = order[start:start + self.batch_size]
                x, y = self.images[idx], self.labels[idx]
            if self.augment is not None:
                x = self.augment(x, self.generator)
            yield x, y

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def fingerprint(images: torch.Tensor, labels: torch.Tensor) -> dict:
    """A short identity of a tensor dataset, to tell whether a checkpoint was made on the same data:
    size, image shape, a CRC of the labels, and the float64 sum and sum of squares of the pixels
    (computed where the tensors live; equal for the same subset on any device to ~12 digits)."""
    x = images.detach().double()
    return {"size": len(labels), "shape": list(images.shape[1:]),
            "labels_crc": zlib.crc32(labels.detach().cpu().numpy().tobytes()),
            "sum": f"{float(x.sum()):.10e}", "sum_sq": f"{float((x * x).sum()):.10e}"}


@dataclass
class Subsets:
    """Train / validation / test tensors on one device, ready for :class:`DeviceLoader`."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    valid_x: torch.Tensor
    valid_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def fingerprint(self) -> dict:
        """:func:`fingerprint` of the training and validation halves (what a search depends on)."""
        return {"train": fingerprint(self.train_x, self.train_y), "valid": fingerprint(self.valid_x, self.valid_y)}


def make_subsets(data: CIFAR10, *, train_size: int, test_size: int | None = None, image_size: int = 32,
                 device: torch.device | str = "cpu", seed: int = 0) -> Subsets:
    """The search-time split of ``train_size`` training images (half train, half validation,
    class-balanced) plus ``test_size`` test images (all when ``None``), on ``device``."""
    train_idx, valid_idx = search_split(data.train_labels, train_size, seed=seed)
    test_idx = (balanced_indices(data.test_labels, test_size, seed=seed) if test_size
                else torch.arange(len(data.test_labels)))

    def put(images, labels, idx):
        return to_device_tensor(images[idx], device=device, image_size=image_size), labels[idx].to(device)

    return Subsets(*put(data.train_images, data.train_labels, train_idx),
                   *put(data.train_images, data.train_labels, valid_idx),
                   *put(data.test_images, data.test_labels, test_idx))
