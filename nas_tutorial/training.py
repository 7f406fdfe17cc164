"""Train and evaluate a fixed network on device-resident data; checkpoints that resume exactly."""

from __future__ import annotations

import os
import time
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .data import DeviceLoader, fingerprint
from .search import Checkpoint, progress_bar
from .utils import autocast


def _logits(output):
    """Networks with an auxiliary head return ``(logits, aux_logits)`` in training mode."""
    return output if isinstance(output, torch.Tensor) else output[0]


def train_epoch(model: nn.Module, loader: DeviceLoader, optimizer: torch.optim.Optimizer, *,
                aux_weight: float = 0.0, grad_clip: float | None = 5.0, amp: bool = True) -> dict:
    """One pass over ``loader``; returns ``{"loss", "acc"}`` averaged over images."""
    model.train()
    device = next(model.parameters()).device
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in loader:
        with autocast(device, amp):
            out = model(x)
            logits = _logits(out)
            loss = F.cross_entropy(logits, y)
            if aux_weight and not isinstance(out, torch.Tensor) and out[1] is not None:
                loss = loss + aux_weight * F.cross_entropy(out[1], y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        # accumulate on the device: no host sync per step
        total_loss += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    return {"loss": total_loss.item() / seen, "acc": correct.item() / seen}


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500,
             amp: bool = True) -> dict:
    """Loss and accuracy of ``model`` on a tensor dataset, in eval mode."""
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"evaluate needs a non-empty set of images with one label each, got {len(images)} images "
                         f"and {len(labels)} labels")
    model.eval()
    total_loss = torch.zeros((), device=images.device)
    correct = torch.zeros((), device=images.device, dtype=torch.long)
    for start in range(0, len(images), batch_size):
        x, y = images[start:start + batch_size], labels[start:start + batch_size]
        with autocast(images.device, amp):
            logits = _logits(model(x))
        total_loss += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    return {"loss": total_loss.item() / len(images), "acc": correct.item() / len(images)}


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: torch.Tensor, *, batch_size: int = 128,
                   forward: Callable[[nn.Module, torch.Tensor], object] | None = None) -> nn.Module:
    """Recompute every batch norm's running statistics on ``images``: reset them, then average the
    statistics of the batches (a cumulative average, ``momentum=None``), with everything else in eval
    mode (no dropout). Returns ``model`` in eval mode. ``forward(model, x)`` replaces ``model(x)`` (e.g.
    a supernet run on one path).

    Why: a network whose weights come from a supernet (SPOS's inherited path, FBNet's sampled one) has
    running statistics that mix every path the supernet trained. SPOS's authors' code runs 200 batches
    of 128 training images with PyTorch's default momentum 0.1 (an exponential average dominated by the
    last few dozen batches); the plain average here uses every batch alike.
    """
    if len(images) == 0:
        raise ValueError("recalibrate_bn needs at least one image")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    model.eval()
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size]
            (forward or (lambda mod, inp: mod(inp)))(model, x)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return model


def fit(model: nn.Module, train_loader: DeviceLoader, valid: tuple[torch.Tensor, torch.Tensor], *,
        epochs: int, lr: float = 0.025, momentum: float = 0.9, weight_decay: float = 3e-4,
        aux_weight: float = 0.0, grad_clip: float | None = 5.0, amp: bool = True,
        checkpoint: str | os.PathLike | None = None, progress: bool = True,
        epoch_hook: Callable[[nn.Module, int, int], None] | None = None) -> list[dict]:
    """Train with SGD + cosine schedule (the cell papers' recipe); return one record per epoch.

    With ``checkpoint`` set, state is saved after every epoch (:class:`~nas_tutorial.search.Checkpoint`)
    and a run that finds the file resumes after its last finished epoch, ending with exactly the
    numbers of an uninterrupted run. A checkpoint of a run with other settings (another number of
    epochs: the cosine schedule depends on it; another learning rate; other data) is refused with
    the differing fields named. ``epoch_hook(model, epoch, epochs)`` runs before each epoch (e.g. to
    set a drop-path rate).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    history: list[dict] = []
    store = None
    if checkpoint is not None:
        settings = {"epochs": epochs, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                    "aux_weight": aux_weight, "grad_clip": grad_clip, "amp": amp,
                    "batch_size": train_loader.batch_size}
        context = {"train": fingerprint(train_loader.images, train_loader.labels), "valid": fingerprint(*valid)}
        store = Checkpoint(checkpoint, method="fit", config=settings, context=context)
        state = store.load()
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            train_loader.load_state_dict(state["loader"])
            torch.set_rng_state(state["torch_rng"])
            history = state["history"]
    bar = progress_bar(total=epochs, initial=len(history), desc="train", enabled=progress)
    for epoch in range(len(history), epochs):
        if epoch_hook is not None:
            epoch_hook(model, epoch, epochs)
        start = time.perf_counter()
        train = train_epoch(model, train_loader, optimizer, aux_weight=aux_weight, grad_clip=grad_clip, amp=amp)
        scheduler.step()
        val = evaluate(model, *valid, amp=amp)
        record = {"epoch": epoch + 1, "train_loss": train["loss"], "train_acc": train["acc"],
                  "valid_loss": val["loss"], "valid_acc": val["acc"], "seconds": time.perf_counter() - start}
        history.append(record)
        bar.set_postfix_str(f"loss {train['loss']:.3f} val_acc {val['acc']:.3f}", refresh=False)
        bar.update(1)
        if store is not None:
            store.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "loader": train_loader.state_dict(),
                        "torch_rng": torch.get_rng_state(), "history": history})
    bar.close()
    return history


class SmallCNN(nn.Sequential):
    """A small fixed network for the tour and the tests: three conv-BN-ReLU blocks and a linear head."""

    def __init__(self, channels: int = 16, num_classes: int = 10):
        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        super().__init__(
            *block(3, channels), nn.MaxPool2d(2),
            *block(channels, 2 * channels), nn.MaxPool2d(2),
            *block(2 * channels, 4 * channels),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * channels, num_classes),
        )
