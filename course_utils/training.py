"""Training the noise predictor, and checkpoints that are safe to interrupt.

Taught in: 02_ddpm_from_scratch_masked_mnist.

The objective is DDPM's simplified loss (eq. 14): L = E_{x0, t, eps} || eps - eps_theta(x_t, t, m, y) ||^2,
t uniform over the T steps, x_t from q_sample (eq. 4), a fresh mask per image.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import DigitSet, batches, check_images
from .masks import check_mask
from .schedules import Schedule, q_sample

MaskFn = Callable[[int, torch.Generator], torch.Tensor]


def eps_loss(
    model: nn.Module, x0: torch.Tensor, mask: torch.Tensor, schedule: Schedule, generator: torch.Generator
) -> torch.Tensor:
    """DDPM eq. 14 on one batch: draw t ~ U{0..T-1} and eps ~ N(0, I) (in that order, on the CPU), return the MSE.

    ``x0`` and ``mask`` are on the model's device; the observation is y = mask * x0.
    """
    check_images(x0, "x0")
    check_mask(mask, like=x0)
    n = x0.shape[0]
    t = torch.randint(0, schedule.T, (n,), generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0.device)
    x_t = q_sample(x0, t, schedule, eps)
    y = mask * x0
    return ((eps - model(x_t, t, mask, y)) ** 2).mean()


def warmup_cosine(step: int, total: int, warmup: int = 100) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_denoiser(
    model: nn.Module,
    digits: DigitSet,
    schedule: Schedule,
    mask_fn: MaskFn,
    steps: int,
    batch_size: int,
    lr: float,
    device: torch.device,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Train ``model`` with :func:`eps_loss` for ``steps`` Adam steps and return the loss of every step.

    Batches and masks (``mask_fn(n, generator)``) are drawn from one generator seeded with
    ``seed``; the learning rate follows :func:`warmup_cosine`; gradients are clipped to norm 1.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    model.to(device).train()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: warmup_cosine(i, steps, min(100, steps // 10 + 1)))
    data = batches(digits, batch_size, g)
    losses = []
    bar = tqdm(range(steps), desc="training", disable=not progress)
    for _ in bar:
        x0, _labels = next(data)
        mask = mask_fn(x0.shape[0], g)
        loss = eps_loss(model, x0.to(device), mask.to(device), schedule, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}", refresh=False)
    model.eval()
    return losses


def save_checkpoint(path: str | Path, model: nn.Module, config: dict, **extra) -> Path:
    """Write {config, state_dict, extra} atomically: to a temporary file, then renamed over ``path``.

    An interrupted save leaves the previous checkpoint intact. ``config`` and ``extra`` hold only
    plain values (numbers, strings, lists, dicts, tensors), so :func:`load_checkpoint` can use
    ``weights_only=True``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"config": _plain(config), "state_dict": state, "extra": _plain(extra)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _plain(value):
    """Tuples become lists so a saved config compares equal to the one it was made from."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class CheckpointMismatchError(ValueError):
    """A checkpoint was written for another configuration."""


def load_checkpoint(path: str | Path, model: nn.Module, config: dict, map_location="cpu") -> dict:
    """Load weights saved by :func:`save_checkpoint` into ``model`` and return the saved ``extra``.

    Raises :class:`CheckpointMismatchError` naming the differing keys when the checkpoint's config
    is not ``config``, and ``FileNotFoundError`` when there is no file.
    """
    payload = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
        raise CheckpointMismatchError(f"{path} is not a course checkpoint (no config/state_dict)")
    want, got = _plain(config), payload["config"]
    if want != got:
        keys = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        diffs = ", ".join(f"{k}: checkpoint {got.get(k)!r} vs wanted {want.get(k)!r}" for k in keys)
        raise CheckpointMismatchError(f"{path} was written for another configuration ({diffs})")
    model.load_state_dict(payload["state_dict"])
    return payload["extra"]


def load_or_train(
    path: str | Path, model: nn.Module, config: dict, train: Callable[[], list[float]]
) -> tuple[list[float], bool]:
    """Reuse the checkpoint at ``path`` when its config matches, else run ``train()`` and save.

    Returns (losses, reused). A missing or mismatched checkpoint means training; the notebooks
    never depend on files another notebook wrote.
    """
    try:
        extra = load_checkpoint(path, model, config)
        return list(extra.get("losses", [])), True
    except FileNotFoundError:
        print(f"no checkpoint at {path}: training")
    except CheckpointMismatchError as why:
        print(f"not reusing the checkpoint: {why}; training")
    losses = train()
    save_checkpoint(path, model, config, losses=losses)
    return losses, False
