"""Real CIFAR-10 (Krizhevsky, 2009), read from the official python batches, kept on the device.

The folder ``cifar-10-batches-py/`` is looked up under a data root: the ``root`` argument, else
the ``NAS_TUTORIAL_DATA`` environment variable, else ``~/.cache/nas_tutorial``. Of the official
files (``data_batch_1`` ... ``data_batch_5``, ``test_batch``) those present are read, so a partial
folder (one training batch, a short test batch) works; any other file (``data_batch_1.bak``) is
ignored. If the folder is absent it is downloaded with torchvision (about 170 MB).

Search-time subsets live as one float tensor on the device and are batched there by
:class:`DeviceLoader`: augmentation (random crop with padding, horizontal flip, cutout) runs on
whole batches, with no per-image Python work in the training loop.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

FOLDER = "cifar-10-batches-py"
#: The official file names, each with the start of the ``batch_label`` the official file holds.
TRAIN_FILES = {f"data_batch_{k}": f"training batch {k} of" for k in range(1, 6)}
TEST_FILE, TEST_LABEL = "test_batch", "testing batch"
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


def _describe(value) -> str:
    """A short name for what was found: ``"a list of float"``, ``"an array of float64, shape (10, 3072)"``."""
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype}, shape {value.shape}"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))}"
    if isinstance(value, list):
        return f"a list of {', '.join(sorted({type(v).__name__ for v in value})) or 'nothing'}"
    return f"a value of type {type(value).__name__}"


def _unpickle(path: Path):
    """The object pickled in ``path``; a damaged file is a ``ValueError`` that names it."""
    with open(path, "rb") as f:
        try:
            return pickle.load(f, encoding="latin1")
        except Exception as err:  # a damaged pickle fails in many ways (UnpicklingError, EOFError, ...)
            raise ValueError(f"{path} cannot be read as a pickled CIFAR-10 batch ({type(err).__name__}: {err}); the "
                             "file is damaged or is not a batch: copy it again from cifar-10-python.tar.gz") from err


def _read_batch(path: Path, expected_label: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``(N, 3, 32, 32)`` and labels int64 ``(N,)`` of one official batch file, checked.

    ``expected_label`` is the start of the official ``batch_label`` for this file name (e.g.
    ``"training batch 2 of"``); a file whose official label says otherwise is refused.
    """
    batch = _unpickle(path)
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path} is not a CIFAR-10 python batch: expected a dict with 'data' and 'labels', "
                         f"found {_describe(batch)}")
    _check_batch_label(path, batch.get("batch_label"), expected_label)
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 \
            or len(data) == 0:
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), N >= 1 (per image 1024 red, "
                         f"1024 green, 1024 blue values, each 32x32 row-major), found {_describe(data)}")
    if not isinstance(labels, list) or not all(isinstance(y, (int, np.integer)) for y in labels):
        raise ValueError(f"{path}: 'labels' must be a list of ints in 0..9, found {_describe(labels)}")
    if len(data) != len(labels):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.min() < 0 or labels.max() >= len(CLASSES):
        raise ValueError(f"{path}: labels must be in 0..{len(CLASSES) - 1} (the CIFAR-10 classes), "
                         f"found labels from {labels.min()} to {labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels  # rows are R, G, B planes: (N, 3, H, W)


def _check_batch_label(path: Path, label, expected_label: str) -> None:
    """Refuse a file whose official ``batch_label`` names another batch (e.g. the test batch in ``data_batch_2``).

    Only official labels are checked ("training batch 1 of 5", "testing batch 1 of 1"); other tools write others.
    """
    official = isinstance(label, str) and label.startswith(("training batch", "testing batch"))
    if official and not label.startswith(expected_label):
        raise ValueError(f"{path} holds {label!r}, but {path.name} must hold '{expected_label} ...': put each "
                         "official batch under its own name (data_batch_1 ... data_batch_5, test_batch)")


def _row_hashes(rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's bytes: uint8 ``(N, 3072)`` -> uint64 ``(N,)``, a weighted sum mod 2**64."""
    words = np.ascontiguousarray(rows).view(np.uint64)  # (N, 384): 8 bytes per word
    weights = np.random.default_rng(0).integers(1, 2**63, words.shape[1], dtype=np.uint64) | np.uint64(1)
    return words @ weights  # wraps around modulo 2**64


def _copies_within(images: np.ndarray) -> int:
    """How many images are byte-for-byte copies of another image of the same array."""
    rows = images.reshape(len(images), -1)  # (N, 3072)
    hashes = _row_hashes(rows)
    order = np.argsort(hashes)
    same = np.nonzero(hashes[order[1:]] == hashes[order[:-1]])[0]  # neighbours in hash order
    first, second = order[same], order[same + 1]
    return int((rows[first] == rows[second]).all(axis=1).sum())  # equal hashes, checked byte for byte


def _copies_between(images: np.ndarray, others: np.ndarray) -> int:
    """How many of ``others`` are byte-for-byte copies of an image in ``images``."""
    rows, other_rows = images.reshape(len(images), -1), others.reshape(len(others), -1)  # (N, 3072), (M, 3072)
    hashes, other_hashes = _row_hashes(rows), _row_hashes(other_rows)
    order = np.argsort(hashes)
    nearest = order[np.searchsorted(hashes, other_hashes, sorter=order).clip(max=len(rows) - 1)]
    match = hashes[nearest] == other_hashes
    return int((rows[nearest[match]] == other_rows[match]).all(axis=1).sum())  # checked byte for byte


def load_cifar10(root: str | os.PathLike | None = None, *, download: bool = True) -> CIFAR10:
    """Read the official CIFAR-10 batches present under ``root / "cifar-10-batches-py"``.

    Only the official names are read: ``data_batch_1`` ... ``data_batch_5`` (those present, at
    least one) and ``test_batch``. Each file must be a pickled dict with ``data``, a uint8
    ``(N, 3072)`` array, and ``labels``, a list of ints in 0..9. A file whose official
    ``batch_label`` names another batch (a test batch saved as ``data_batch_2``) is refused.

    Duplicates: a test image that is an exact copy of a training image is an error (it would leak
    the test set into training). Exact copies within the training set only raise a warning with
    their count, since a copy there is not a leak of the test set (the subset shipped in
    ``shared/data`` has none).

    Args:
        root: data root; ``None`` means :func:`default_data_root`.
        download: fetch the full set with torchvision when the folder is absent.

    Raises:
        FileNotFoundError: no folder and no download possible; the message says where to put it.
        ValueError: a file that is not an official batch, or test images copied from the training set.
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
    train_paths = [folder / name for name in TRAIN_FILES if (folder / name).is_file()]
    test_path = folder / TEST_FILE
    if not train_paths or not test_path.is_file():
        raise FileNotFoundError(
            _missing_message(folder, f"the folder has none of data_batch_1 ... data_batch_5, or no {TEST_FILE}")
        )
    train = [_read_batch(p, TRAIN_FILES[p.name]) for p in train_paths]
    train_x, train_y = np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])
    test_x, test_y = _read_batch(test_path, TEST_LABEL)
    names = ", ".join(p.name for p in train_paths)
    leaked = _copies_between(train_x, test_x)
    if leaked:
        raise ValueError(f"{leaked} of the {len(test_x)} test images in {test_path} are exact copies of training "
                         f"images ({names}): the test set must not overlap the training set; restore the "
                         "official files from cifar-10-python.tar.gz")
    copies = _copies_within(train_x)
    if copies:
        warnings.warn(f"{copies} of the {len(train_x)} training images in {folder} ({names}) are exact copies of "
                      "other training images; a subset may hold a copy in both its training and validation half",
                      stacklevel=2)
    return CIFAR10(
        train_images=torch.from_numpy(train_x),
        train_labels=torch.from_numpy(train_y),
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

    Raises:
        ValueError: ``size`` not in 1..len(labels), or labels that are not class indices in
            0..num_classes-1 (the subset could not be filled from the classes).
    """
    if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex:
        raise ValueError(f"labels must be a 1-D integer tensor of class indices, got {labels.dtype} "
                         f"of shape {tuple(labels.shape)}")
    if not 0 < size <= len(labels):
        raise ValueError(f"subset size must be in 1..{len(labels)} (the number of labels), got {size}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be in 0..{num_classes - 1} (num_classes={num_classes}), found labels "
                         f"from {int(labels.min())} to {int(labels.max())}")
    g = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    per_class = [idx[torch.randperm(len(idx), generator=g)] for idx in per_class]
    # As equal as possible: fill classes level by level, so a class with few images gives all it has.
    # This ends: every label is in a class (checked above), so the classes hold len(labels) >= size images.
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

    A last batch of a single image is merged into the one before (65 images at ``batch_size=32``
    give batches of 32 and 33): batch norm cannot train on one image. Every other size batches
    as usual; ``drop_last=True`` drops the short last batch instead.
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
        if self.drop_last:
            return n // self.batch_size
        if n > self.batch_size and n % self.batch_size == 1:
            return n // self.batch_size  # the single last image joins the batch before it
        return -(-n // self.batch_size)

    def __iter__(self):
        n, num_batches = len(self.images), len(self)
        order = torch.randperm(n, generator=self.generator).to(self.images.device) if self.shuffle else None
        for i in range(num_batches):
            start = i * self.batch_size
            end = n if i == num_batches - 1 and not self.drop_last else start + self.batch_size  # last: the rest
            if order is None:
                x, y = self.images[start:end], self.labels[start:end]
            else:
                idx = order[start:end]
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
    class-balanced) plus ``test_size`` test images (all when ``None``), on ``device``.

    Raises:
        ValueError: ``train_size`` not in 2..(number of training images), or ``test_size`` not
            ``None`` and not in 1..(number of test images).
    """
    num_train, num_test = len(data.train_labels), len(data.test_labels)
    if not 2 <= train_size <= num_train:
        raise ValueError(f"train_size must be in 2..{num_train} (half train, half validation), got {train_size}")
    if test_size is not None and not 1 <= test_size <= num_test:
        raise ValueError(f"test_size must be in 1..{num_test}, or None for all {num_test} test images, got {test_size}")
    train_idx, valid_idx = search_split(data.train_labels, train_size, seed=seed)
    test_idx = (balanced_indices(data.test_labels, test_size, seed=seed) if test_size is not None
                else torch.arange(num_test))

    def put(images, labels, idx):
        return to_device_tensor(images[idx], device=device, image_size=image_size), labels[idx].to(device)

    return Subsets(*put(data.train_images, data.train_labels, train_idx),
                   *put(data.train_images, data.train_labels, valid_idx),
                   *put(data.test_images, data.test_labels, test_idx))
