import pytest
import torch

from nas_tutorial import data as D
from nas_tutorial import training, utils


@pytest.fixture(scope="module")
def small(cifar):
    return D.make_subsets(cifar, train_size=400, test_size=100, image_size=16, seed=0)


def _interrupt_at(epoch):
    def hook(model, e, epochs):
        if e == epoch:
            raise KeyboardInterrupt

    return hook


def _run(small, epochs, checkpoint=None, seed=0, hook=None):
    utils.seed_everything(seed)
    model = training.SmallCNN(channels=8)
    loader = D.DeviceLoader(small.train_x, small.train_y, 50, augment=D.Augment(crop_padding=2), seed=seed)
    history = training.fit(model, loader, (small.valid_x, small.valid_y), epochs=epochs, lr=0.05,
                           checkpoint=checkpoint, progress=False, epoch_hook=hook)
    return model, history


def test_loss_falls_on_a_small_subset(small):
    _, history = _run(small, epochs=4)
    assert len(history) == 4 and history[0]["epoch"] == 1
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert set(history[0]) == {"epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "seconds"}


def test_same_seed_same_numbers(small):
    (_, a), (_, b) = _run(small, epochs=2), _run(small, epochs=2)
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert [r["valid_acc"] for r in a] == [r["valid_acc"] for r in b]


def test_interrupted_run_resumes_exactly(small, tmp_path):
    full_model, full = _run(small, epochs=3)
    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):  # interrupted at the start of the second epoch
        _run(small, epochs=3, checkpoint=ckpt, hook=_interrupt_at(1))
    state = torch.load(ckpt, weights_only=True)["state"]  # plain data and tensors only
    assert len(state["history"]) == 1
    # resume: a fresh process would rebuild the model from scratch (other seed on purpose)
    resumed_model, resumed = _run_resume(small, ckpt, epochs=3)
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in full]
    for (name, p), q in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def _run_resume(small, ckpt, epochs):
    utils.seed_everything(123)
    model = training.SmallCNN(channels=8)
    loader = D.DeviceLoader(small.train_x, small.train_y, 50, augment=D.Augment(crop_padding=2), seed=999)
    history = training.fit(model, loader, (small.valid_x, small.valid_y), epochs=epochs, lr=0.05,
                           checkpoint=ckpt, progress=False)
    return model, history


def test_resume_with_more_epochs_is_refused_not_rescheduled(small, tmp_path):
    ckpt = tmp_path / "run.pt"
    _run(small, epochs=2, checkpoint=ckpt)
    with pytest.raises(ValueError, match="epochs=2 \\(now 4\\)"):  # the cosine schedule's T_max depends on it
        _run(small, epochs=4, checkpoint=ckpt)


def test_evaluate_counts_correct_predictions():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1, 1])
    assert training.evaluate(model, x, y, batch_size=3)["acc"] == 0.75


def test_pick_device_and_seed():
    assert utils.pick_device("cpu").type == "cpu"
    assert utils.pick_device().type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            utils.pick_device("cuda")
    utils.seed_everything(5)
    a = torch.rand(3)
    utils.seed_everything(5)
    assert torch.equal(a, torch.rand(3))
    assert utils.count_parameters(torch.nn.Linear(3, 2)) == 8
