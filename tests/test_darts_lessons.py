"""The finite-difference lesson of the DARTS notebook, on a realistic case: Eq. 8 converges as eps^2 on a
smooth network, and on the real (ReLU, max pooling) supernet its error grows as eps shrinks until no kink
is crossed."""

import pytest
import torch

from nas_tutorial import darts
from nas_tutorial import data as D
from tests.conftest import smoothed

pytestmark = pytest.mark.usefixtures("one_thread")


def _smooth_copy(model):
    copy = darts.SearchNetwork(4, 10, 3, fused=False).double()  # the readable path: ReLU and pooling as modules
    copy.load_state_dict(model.state_dict())
    return smoothed(copy)


def _errors(model, train, valid, scales, xi=0.025):
    arch = darts.Architect(model, torch.optim.SGD(model.weight_parameters(), lr=xi), order=2, include_momentum=False)
    loss_train, loss_val = arch.loss_fn(*train), arch.loss_fn(*valid)
    w, alpha = model.named_weight_parameters(), model.named_arch_parameters()
    exact = darts.architecture_gradient(loss_train, loss_val, w, alpha, xi=xi, method="exact").grads
    norm = None
    errors = []
    for scale in scales:
        if norm is None:  # the paper's eps = scale / ||grad_{w'} L_val(w', alpha)||, found as the library does
            eps_scaled = darts.architecture_gradient(loss_train, loss_val, w, alpha, xi=xi, eps_scale=1.0)
            norm = 1.0 / eps_scaled.eps
        approx = darts.architecture_gradient(loss_train, loss_val, w, alpha, xi=xi, eps=scale / norm).grads
        num = sum(((approx[n] - exact[n]) ** 2).sum() for n in exact)
        errors.append(float(torch.sqrt(num / sum((exact[n] ** 2).sum() for n in exact))))
    return dict(zip(scales, errors, strict=True))


@pytest.fixture(scope="module")
def real_batches(cifar):
    real = D.make_subsets(cifar, train_size=512, test_size=10, image_size=16, seed=0)
    return (real.train_x[:16].double(), real.train_y[:16]), (real.valid_x[:16].double(), real.valid_y[:16])


@pytest.fixture(scope="module")
def fast_supernet():
    torch.manual_seed(0)
    return darts.SearchNetwork(4, 10, 3).double().train()


def test_finite_difference_converges_as_eps_squared_on_a_smooth_network(fast_supernet, real_batches):
    errors = _errors(_smooth_copy(fast_supernet), *real_batches, (1e-1, 1e-2, 1e-3))
    assert errors[1e-3] < 1e-3
    assert 30 < errors[1e-2] / errors[1e-3] < 300  # a hundredfold per decade: second order


@pytest.mark.slow
def test_finite_difference_on_relu_and_max_pooling_grows_as_eps_shrinks_until_no_kink_is_crossed(
        fast_supernet, real_batches, cifar):
    if len(cifar.train_labels) < 512:
        pytest.skip("needs the real CIFAR-10 subset (documented behaviour measured on it)")
    errors = _errors(fast_supernet, *real_batches, (1e-1, 1e-2, 1e-4, 1e-8))
    assert errors[1e-4] > errors[1e-2] > errors[1e-1] > 0.05  # crossing kinks: not a converging estimate
    assert errors[1e-8] < 1e-4  # a step too short to cross any kink agrees with autograd
