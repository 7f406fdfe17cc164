import pickle
import re
import shutil
import threading
import time
import warnings

import numpy as np
import pytest
import torch

from nas_tutorial import data as D
from tests.conftest import SHARED, write_fake_cifar

REAL = (SHARED / "cifar-10-batches-py" / "data_batch_1").exists()


@pytest.mark.skipif(not REAL, reason="real CIFAR-10 subset not beside the repository")
def test_real_batches_match_the_official_values():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the real data loads cleanly: no duplicate warning
        data = D.load_cifar10(SHARED, download=False)
    assert data.train_images.shape == (10_000, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (1_000, 3, 32, 32)
    # Check values from ../shared/data/README.md: first pixel and first ten labels of each batch.
    assert data.train_images[0, :, 0, 0].tolist() == [59, 62, 63]
    assert data.train_labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert data.test_images[0, :, 0, 0].tolist() == [158, 112, 49]
    assert data.test_labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    # the per-channel means of real CIFAR-10 are close to the standard constants
    means = data.train_images.float().div(255).mean(dim=(0, 2, 3))
    torch.testing.assert_close(means, torch.tensor(D.MEAN), atol=0.01, rtol=0)


def test_fake_folder_in_official_format_loads(tmp_path):
    write_fake_cifar(tmp_path, n_train=30, n_test=20)
    data = D.load_cifar10(tmp_path, download=False)
    assert data.train_images.shape == (30, 3, 32, 32) and len(data.test_labels) == 20


def test_environment_variable_sets_the_root(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_TUTORIAL_DATA", str(tmp_path))
    assert D.default_data_root() == tmp_path
    monkeypatch.delenv("NAS_TUTORIAL_DATA")
    assert D.default_data_root().name == "nas_tutorial"


def test_missing_folder_says_where_to_put_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="NAS_TUTORIAL_DATA") as err:
        D.load_cifar10(tmp_path / "nowhere", download=False)
    assert "cifar-10-batches-py" in str(err.value)


def test_offline_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(FileNotFoundError, match="download failed: network unreachable"):
        D.load_cifar10(tmp_path, download=True)


def test_malformed_batch_is_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "test_batch"):
        with open(folder / name, "wb") as f:
            pickle.dump({"pixels": []}, f)
    with pytest.raises(ValueError, match="data_batch_1 is not a CIFAR-10 python batch"):
        D.load_cifar10(tmp_path, download=False)


def test_balanced_subset_is_balanced_and_seeded(cifar):
    idx = D.balanced_indices(cifar.train_labels, 100, seed=3)
    assert torch.bincount(cifar.train_labels[idx], minlength=10).tolist() == [10] * 10
    assert len(set(idx.tolist())) == 100
    assert torch.equal(idx, D.balanced_indices(cifar.train_labels, 100, seed=3))
    assert not torch.equal(idx, D.balanced_indices(cifar.train_labels, 100, seed=4))
    with pytest.raises(ValueError, match="subset size"):
        D.balanced_indices(cifar.train_labels, 0)


def test_search_split_gives_disjoint_balanced_halves(cifar):
    train, valid = D.search_split(cifar.train_labels, 200, seed=0)
    assert len(train) == len(valid) == 100
    assert not set(train.tolist()) & set(valid.tolist())
    for half in (train, valid):
        assert torch.bincount(cifar.train_labels[half], minlength=10).tolist() == [10] * 10


def test_normalise_downscale_and_back(cifar):
    x = D.to_device_tensor(cifar.train_images[:8], image_size=16)
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32
    full = D.to_device_tensor(cifar.train_images[:8])
    torch.testing.assert_close(D.denormalise(full), cifar.train_images[:8].float() / 255, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="uint8 images"):
        D.to_device_tensor(cifar.train_images[:8].float())


def test_augment_crop_flip_cutout():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    # crop only: each output is an 8x8 window of the zero-padded input
    out = D.Augment(crop_padding=2, flip=False)(x, g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):
        windows = [padded[b, :, i:i + 8, j:j + 8] for i in range(5) for j in range(5)]
        assert any(torch.equal(out[b], w) for w in windows)
    # flip only: each image is itself or its mirror
    out = D.Augment(crop_padding=0, flip=True)(x, g)
    assert all(torch.equal(out[b], x[b]) or torch.equal(out[b], x[b].flip(2)) for b in range(2))
    # cutout only: at most a 4x4 hole per image, the same pixels in every channel
    out = D.Augment(crop_padding=0, flip=False, cutout=4)(x, g)
    holes = out == 0
    assert (holes.sum(dim=(2, 3)) <= 16).all() and (holes.sum(dim=(2, 3)) > 0).all()
    assert torch.equal(holes[:, 0], holes[:, 1])


def test_device_loader_batches_everything_once_and_repeats_with_seed():
    x = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1)
    y = torch.arange(10)
    loader = D.DeviceLoader(x, y, 4, seed=1)
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [4, 4, 2] and len(loader) == 3
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(10))
    assert all(torch.equal(bx.flatten(), by.float()) for bx, by in batches)
    again = [b[1] for b in D.DeviceLoader(x, y, 4, seed=1)]
    assert all(torch.equal(a, b[1]) for a, b in zip(again, batches))
    assert len(D.DeviceLoader(x, y, 4, drop_last=True)) == 2


def test_make_subsets_shapes(cifar):
    s = D.make_subsets(cifar, train_size=100, test_size=50, image_size=16)
    assert s.train_x.shape == (50, 3, 16, 16) and s.valid_x.shape == (50, 3, 16, 16)
    assert s.test_x.shape == (50, 3, 16, 16) and s.test_y.shape == (50,)


def test_balanced_when_a_class_is_short():
    labels = torch.tensor([0] * 2 + [1] * 10 + [2] * 10)
    idx = D.balanced_indices(labels, 12, num_classes=3)
    assert torch.bincount(labels[idx], minlength=3).tolist() == [2, 5, 5]
    assert len(D.balanced_indices(labels, 22, num_classes=3)) == 22


@pytest.mark.skipif(not REAL, reason="real CIFAR-10 subset not beside the repository")
def test_real_batches_have_no_exact_copies_and_load_fast():
    data = D.load_cifar10(SHARED, download=False)
    train, test = data.train_images.numpy(), data.test_images.numpy()
    assert D._copies_within(train) == 0 and D._copies_between(train, test) == 0
    assert D._copies_within(np.concatenate([train[:100], train[:3]])) == 3  # the check does find copies
    seconds = []
    for _ in range(3):  # every notebook reads it: the checks must stay cheap (about 0.05 s here)
        start = time.perf_counter()
        D.load_cifar10(SHARED, download=False)
        seconds.append(time.perf_counter() - start)
    assert min(seconds) < 0.5, seconds


# ---- bad input: each case writes a faulty folder under tmp_path, then loading it must fail clearly ----

def _path(root, name):
    return root / "cifar-10-batches-py" / name


def _read(root, name):
    with open(_path(root, name), "rb") as f:
        return pickle.load(f)


def _write(root, name, obj):
    with open(_path(root, name), "wb") as f:
        pickle.dump(obj, f)


def _edit(root, name, **changes):
    _write(root, name, {**_read(root, name), **changes})


def labels_0_to_99(root):
    write_fake_cifar(root)
    _edit(root, "data_batch_1", labels=[i % 100 for i in range(200)])


def labels_1_to_10(root):
    write_fake_cifar(root)
    _edit(root, "data_batch_1", labels=[i % 10 + 1 for i in range(200)])


def labels_as_floats(root):
    write_fake_cifar(root)
    _edit(root, "data_batch_1", labels=[float(i % 10) for i in range(200)])


def labels_as_an_array(root):
    write_fake_cifar(root)
    _edit(root, "test_batch", labels=np.arange(50) % 10)


def fewer_labels_than_images(root):
    write_fake_cifar(root)
    _edit(root, "data_batch_1", labels=[0] * 150)


def channels_last_pixels(root):
    write_fake_cifar(root)
    _edit(root, "data_batch_1", data=_read(root, "data_batch_1")["data"].reshape(200, 32, 32, 3))


def float_pixels_in_0_1(root):
    write_fake_cifar(root)
    _edit(root, "data_batch_1", data=_read(root, "data_batch_1")["data"] / 255.0)


def no_images(root):
    write_fake_cifar(root)
    _edit(root, "data_batch_1", data=np.zeros((0, 3072), np.uint8), labels=[])


def truncated_file(root):
    write_fake_cifar(root)
    raw = _path(root, "data_batch_1").read_bytes()
    _path(root, "data_batch_1").write_bytes(raw[: len(raw) // 2])


def garbage_file(root):
    write_fake_cifar(root)
    _path(root, "test_batch").write_bytes(b"<html>404 Not Found</html>")


def pickled_list(root):
    write_fake_cifar(root)
    _write(root, "data_batch_1", [1, 2, 3])


def dict_without_data(root):
    write_fake_cifar(root)
    _write(root, "data_batch_1", {"labels": [0, 1]})


def copy_of_test_batch_as_data_batch_2(root):
    write_fake_cifar(root, official_labels=True)
    shutil.copy(_path(root, "test_batch"), _path(root, "data_batch_2"))


def training_batch_saved_as_test_batch(root):
    write_fake_cifar(root, official_labels=True)
    shutil.copy(_path(root, "data_batch_1"), _path(root, "test_batch"))


def data_batch_1_copied_to_data_batch_2(root):
    write_fake_cifar(root, official_labels=True)
    shutil.copy(_path(root, "data_batch_1"), _path(root, "data_batch_2"))


def copy_of_unlabelled_test_batch_as_data_batch_2(root):
    write_fake_cifar(root)
    _edit(root, "test_batch", batch_label="")
    shutil.copy(_path(root, "test_batch"), _path(root, "data_batch_2"))


def five_test_images_copied_from_training(root):
    write_fake_cifar(root)
    test = _read(root, "test_batch")
    test["data"][10:15] = _read(root, "data_batch_1")["data"][:5]
    _write(root, "test_batch", test)


def only_a_stray_copy_of_data_batch_1(root):
    write_fake_cifar(root)
    _path(root, "data_batch_1").rename(_path(root, "data_batch_1.bak"))


BAD_FOLDERS = [
    (labels_0_to_99, ValueError, r"data_batch_1: labels must be in 0\.\.9 .*found labels from 0 to 99"),
    (labels_1_to_10, ValueError, r"data_batch_1: labels must be in 0\.\.9 .*found labels from 1 to 10"),
    (labels_as_floats, ValueError, r"data_batch_1: 'labels' must be a list of ints in 0\.\.9, found a list of float"),
    (labels_as_an_array, ValueError, r"test_batch: 'labels' must be a list of ints .*found an array of int64"),
    (fewer_labels_than_images, ValueError, r"data_batch_1: 200 images but 150 labels"),
    (channels_last_pixels, ValueError,
     r"data_batch_1: 'data' must be a uint8 array of shape \(N, 3072\).*found an array of uint8, "
     r"shape \(200, 32, 32, 3\)"),
    (float_pixels_in_0_1, ValueError, r"data_batch_1: 'data' must be a uint8 array .*found an array of float64"),
    (no_images, ValueError, r"data_batch_1: 'data' must be .*N >= 1.*shape \(0, 3072\)"),
    (truncated_file, ValueError, r"data_batch_1 cannot be read as a pickled CIFAR-10 batch \((EOFError|Unpickling)"),
    (garbage_file, ValueError, r"test_batch cannot be read as a pickled CIFAR-10 batch .*copy it again"),
    (pickled_list, ValueError, r"data_batch_1 is not a CIFAR-10 python batch: .*found a list of int"),
    (dict_without_data, ValueError,
     r"data_batch_1 is not a CIFAR-10 python batch: .*found a dict with keys \['labels'\]"),
    (copy_of_test_batch_as_data_batch_2, ValueError,
     r"data_batch_2 holds 'testing batch 1 of 1', but data_batch_2 must hold 'training batch 2 of \.\.\.'"),
    (training_batch_saved_as_test_batch, ValueError,
     r"test_batch holds 'training batch 1 of 5', but test_batch must hold 'testing batch \.\.\.'"),
    (data_batch_1_copied_to_data_batch_2, ValueError, r"data_batch_2 holds 'training batch 1 of 5'"),
    (copy_of_unlabelled_test_batch_as_data_batch_2, ValueError,
     r"50 of the 50 test images in .*test_batch are exact copies of training images \(data_batch_1, data_batch_2\)"),
    (five_test_images_copied_from_training, ValueError, r"5 of the 50 test images in .*test_batch are exact copies"),
    (only_a_stray_copy_of_data_batch_1, FileNotFoundError, r"none of data_batch_1 \.\.\. data_batch_5"),
]


@pytest.mark.parametrize("write_bad, error, message", BAD_FOLDERS, ids=[case[0].__name__ for case in BAD_FOLDERS])
def test_bad_folder_is_refused_with_a_clear_message(tmp_path, write_bad, error, message):
    write_bad(tmp_path)
    with pytest.raises(error, match=message):
        D.load_cifar10(tmp_path, download=False)


def test_stray_copy_beside_a_batch_is_ignored(tmp_path):
    write_fake_cifar(tmp_path, n_train=30, n_test=20)
    shutil.copy(_path(tmp_path, "data_batch_1"), _path(tmp_path, "data_batch_1.bak"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = D.load_cifar10(tmp_path, download=False)
    assert len(data.train_labels) == 30


def test_partial_folder_of_official_batches_loads_in_order(tmp_path):
    write_fake_cifar(tmp_path, n_train=30, n_test=20, train_batches=3, official_labels=True)
    _path(tmp_path, "data_batch_2").unlink()
    third = _read(tmp_path, "data_batch_3")["data"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = D.load_cifar10(tmp_path, download=False)
    assert len(data.train_labels) == 60 and len(data.test_labels) == 20
    assert data.train_images[30].flatten().tolist() == third.tolist()  # data_batch_1, then data_batch_3


def test_copies_within_the_training_set_warn_with_their_count(tmp_path):
    write_fake_cifar(tmp_path, n_train=30, n_test=20)
    batch = _read(tmp_path, "data_batch_1")
    batch["data"][1:4] = batch["data"][0]
    _write(tmp_path, "data_batch_1", batch)
    with pytest.warns(UserWarning, match=r"3 of the 30 training images in .* are exact copies"):
        data = D.load_cifar10(tmp_path, download=False)
    assert len(data.train_labels) == 30


def _error_within(seconds, fn):
    """The exception ``fn`` raises, failing the test instead of hanging if it runs longer than ``seconds``."""
    raised = []

    def run():
        try:
            fn()
        except Exception as err:
            raised.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (an endless loop?)"
    return raised[0] if raised else None


@pytest.mark.parametrize("labels, size, message", [
    (torch.arange(200) % 100, 50, r"labels must be in 0\.\.9 \(num_classes=10\), found labels from 0 to 99"),
    (torch.arange(200) % 10 + 1, 50, r"labels must be in 0\.\.9 \(num_classes=10\), found labels from 1 to 10"),
    (torch.arange(200.0) % 10, 50, r"labels must be a 1-D integer tensor of class indices, got torch.float32"),
    (torch.arange(200) % 10, 201, r"subset size must be in 1\.\.200 \(the number of labels\), got 201"),
    (torch.arange(200) % 10, 0, r"subset size must be in 1\.\.200 \(the number of labels\), got 0"),
])
def test_balanced_indices_refuses_what_it_cannot_fill(labels, size, message):
    err = _error_within(10, lambda: D.balanced_indices(labels, size))
    assert isinstance(err, ValueError) and re.search(message, str(err)), err


def test_make_subsets_sizes_name_the_argument(cifar):
    n_test = len(cifar.test_labels)
    message = rf"test_size must be in 1\.\.{n_test}, or None for all {n_test} test images, got 0"
    with pytest.raises(ValueError, match=message):
        D.make_subsets(cifar, train_size=100, test_size=0)
    with pytest.raises(ValueError, match=r"train_size must be in 2\.\.\d+ \(half train, half validation\), got 1"):
        D.make_subsets(cifar, train_size=1)
    assert len(D.make_subsets(cifar, train_size=20, test_size=None, image_size=8).test_y) == n_test


@pytest.mark.parametrize("n, batch_size, drop_last, sizes", [
    (65, 32, False, [32, 33]),  # a last batch of one joins the batch before
    (33, 32, False, [33]),
    (64, 32, False, [32, 32]),  # every other size as before
    (66, 32, False, [32, 32, 2]),
    (10, 4, False, [4, 4, 2]),
    (1, 32, False, [1]),
    (3, 1, False, [1, 1, 1]),
    (65, 32, True, [32, 32]),
])
def test_device_loader_never_ends_on_a_batch_of_one(n, batch_size, drop_last, sizes):
    x, y = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1), torch.arange(n)
    for shuffle in (True, False):
        loader = D.DeviceLoader(x, y, batch_size, shuffle=shuffle, drop_last=drop_last)
        batches = [by for _, by in loader]
        assert [len(b) for b in batches] == sizes and len(loader) == len(sizes)
        seen = torch.cat(batches).tolist()
        assert len(set(seen)) == len(seen) == sum(sizes)


def test_batch_norm_trains_on_65_images_at_batch_32(one_thread):
    from nas_tutorial.training import train_epoch

    torch.manual_seed(0)
    # batch norm after global pooling sees one value per channel and image: it needs two images
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 10))
    x, y = torch.randn(65, 3, 8, 8), torch.arange(65) % 10
    loader = D.DeviceLoader(x, y, 32, seed=0)
    record = train_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=0.01), amp=False)
    assert record["loss"] > 0
