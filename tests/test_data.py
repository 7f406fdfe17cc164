import pickle

import pytest
import torch

from nas_tutorial import data as D
from tests.conftest import SHARED, write_fake_cifar

REAL = (SHARED / "cifar-10-batches-py" / "data_batch_1").exists()


@pytest.mark.skipif(not REAL, reason="real CIFAR-10 subset not beside the repository")
def test_real_batches_match_the_official_values():
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
