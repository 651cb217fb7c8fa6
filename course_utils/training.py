"""Training: the eps objective, the one training loop every model kind uses, and the loss weightings.

Taught in: 02_ddpm_from_scratch_masked_mnist (eps loss, the training loop with warm-up and cosine decay,
checkpoints) and 03_ddim_center_hole_data_consistency (AdamW, EMA, P2 and hole weighting, resumable runs).

The objective of notebook 02 is DDPM's simplified loss (eq. 14):
L = E_{x0, t, eps} || eps - eps_theta(x_t, t, m, y) ||^2, t uniform over the T steps, x_t from q_sample (eq. 4),
a fresh mask per image. :func:`fit` is the loop: it takes a model kind's loss on one batch
(``loss_fn(model, generator)``) and does the rest (optimizer, learning-rate schedule, gradient clipping, EMA, atomic
checkpoints that resume bit for bit, a progress bar). Each model kind (:class:`~course_utils.runs.ModelKind`;
notebook 03's lives in :mod:`course_utils.center_hole`) supplies its loss.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from .data import check_images
from .masks import check_mask
from .schedules import Schedule, q_sample

LossFn = Callable[[nn.Module, torch.Generator], torch.Tensor]


def noised_batch(x0: torch.Tensor, schedule: Schedule, generator: torch.Generator):
    """(t, eps, x_t) for one batch: t ~ U{0..T-1}, then eps ~ N(0, I), both drawn on the CPU from ``generator`` and
    moved to x0's device, and x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps (DDPM eq. 4). Notebook 02's
    loss, written out there, starts here.

    Every loss of the course starts here, so a seed draws the same timesteps and noise on every device.
    """
    t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0.device)
    return t, eps, q_sample(x0, t, schedule, eps)


def eps_loss(
    model: nn.Module, x0: torch.Tensor, mask: torch.Tensor, schedule: Schedule, generator: torch.Generator
) -> torch.Tensor:
    """DDPM eq. 14 on one batch: draw t ~ U{0..T-1} and eps ~ N(0, I) (in that order, on the CPU), return the MSE.

    ``x0`` and ``mask`` are on the model's device; the observation is y = mask * x0. Taught in notebook 02."""
    check_images(x0, "x0")
    check_mask(mask, like=x0)
    t, eps, x_t = noised_batch(x0, schedule, generator)
    return ((eps - model(x_t, t, mask, mask * x0)) ** 2).mean()


def warmup_cosine(step: int, total: int, warmup: int = 100) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``.

    Taught in notebook 02."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def p2_weight(schedule: Schedule, t: torch.Tensor, k: float = 1.0, gamma: float = 0.0) -> torch.Tensor:
    """P2 weighting lambda_t = 1 / (k + SNR(t))^gamma (Choi et al. 2022, eq. 8); gamma = 0 gives 1 (off). Notebook 03.

    Low-noise steps (high SNR) only polish details; gamma > 0 moves the loss towards the
    noisy steps, where the content of the hole is decided. The paper weights the eps loss; on an x0 target
    ||x0 - x0_hat||^2 = ||eps - eps_hat||^2 / SNR(t), so the same lambda_t on x0 is an eps weight of
    lambda_t / SNR(t) (notebook 03 writes this identity out).
    """
    if k <= 0 or gamma < 0:
        raise ValueError(f"P2 needs k > 0 and gamma >= 0, got k={k}, gamma={gamma}")
    snr = schedule.snr.to(t.device)[t]
    return (1.0 / (k + snr) ** gamma).float()


def pixel_weights(mask: torch.Tensor, hole_weight: float = 1.0) -> torch.Tensor:
    """Per-pixel loss weights (notebook 03): 1 on known pixels, ``hole_weight`` on missing ones (1 = a plain mean)."""
    if hole_weight <= 0:
        raise ValueError(f"hole_weight must be positive, got {hole_weight}")
    return 1.0 + (hole_weight - 1.0) * (1 - mask)


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay with warm-up (notebook 03): min(decay, (1 + step) / (10 + step)); early weights are forgotten fast."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """theta_ema <- decay * theta_ema + (1 - decay) * theta (Polyak averaging of the weights; notebook 03)."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def fast_layout(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device``; on the CPU also to channels-last memory layout, in which the notebook-03 U-Net
    runs about 1.7x faster on 2 cores with the same numbers up to float rounding
    (:meth:`~course_utils.runs.ModelKind.train` and :meth:`~course_utils.runs.ModelKind.obtain` use it, and notebooks
    02, 04 and 05)."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if torch.device(device).type == "cpu" else model


def _optimizer_state_like_parameters(opt: torch.optim.Optimizer) -> None:
    """Put loaded Adam moments in their parameter's memory layout, as an uninterrupted run has them."""
    for param, state in opt.state.items():
        if param.dim() != 4:
            continue
        channels_last = not param.is_contiguous() and param.is_contiguous(memory_format=torch.channels_last)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        for key, value in state.items():
            if torch.is_tensor(value) and value.dim() == 4:
                state[key] = value.contiguous(memory_format=layout)


@dataclass
class Checkpointing:
    """Where and how :func:`fit` saves a run (notebook 03): ``path`` is written atomically every ``every`` steps
    and at the end with the weights, ``config``, the model ``kind``'s name, and as extras the optimizer, the
    generator's state, step, losses, seconds, the EMA weights and every entry of ``state`` (a dict the caller
    fills: a validation history, the seed). ``on_save(step, model to sample with, seconds)`` runs before each
    save. ``resume=True`` continues the run in ``path`` (bit for bit on the CPU): its config must equal
    ``config`` except for ``steps`` (a run may be lengthened), and ``state`` is refilled from it."""

    path: Path
    config: dict
    every: int
    kind: str | None = None
    state: dict = field(default_factory=dict)
    on_save: Callable[[int, nn.Module, float], None] | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.every < 1:
            raise ValueError(f"a checkpointed run saves every >= 1 steps, got {self.every}")


def fit(model: nn.Module, loss_fn: LossFn, steps: int, lr: float, generator: torch.Generator, *, warmup: int = 100,
        ema_decay: float = 0.0, checkpoint: Checkpointing | None = None, until: int | None = None,
        progress: bool = True) -> dict:
    """The course's one training loop (notebook 02 writes it out; notebook 03 adds EMA and checkpoints).

    Each step: learning rate lr * :func:`warmup_cosine`, ``loss = loss_fn(model, generator)`` (the model kind's
    loss on a batch it draws from ``generator``), AdamW (no weight decay: Adam's update), gradients clipped to
    norm 1, and with ``ema_decay`` > 0 an EMA copy of the weights (:func:`ema_update`, :func:`ema_decay_at`).
    With ``checkpoint`` (a :class:`Checkpointing`) the run is saved and can be resumed; ``until`` stops early,
    after a save (for tests of resuming).

    Returns {"model", "ema" (the model to sample with: the EMA copy, or the model), "losses", "step", "seconds"}.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    ck = checkpoint
    device = next(model.parameters()).device
    ema = copy.deepcopy(model).requires_grad_(False) if ema_decay > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    step, losses, seconds = 0, [], 0.0
    if ck is not None and ck.resume:
        expected = {**ck.config, "steps": read_checkpoint(ck.path)["config"].get("steps")}
        extra = load_checkpoint(ck.path, model, expected, map_location=device)
        if ema is not None:
            ema.load_state_dict(extra["ema"])
        opt.load_state_dict(extra["optimizer"])
        _optimizer_state_like_parameters(opt)
        generator.set_state(extra["rng"].cpu())  # the generator lives on the CPU whatever map_location did
        step, losses, seconds = extra["step"], list(extra["losses"]), extra["seconds"]
        for key in ck.state:
            if key in extra:
                value = ck.state[key]
                if isinstance(value, list):  # refilled in place: the caller's callbacks hold these very objects
                    value[:] = extra[key]
                elif isinstance(value, dict):
                    value.clear()
                    value.update(extra[key])
                else:
                    ck.state[key] = extra[key]
        print(f"resuming {ck.path} at step {step} of {steps}")
    sample_model = ema if ema is not None else model

    def save(done: int) -> None:
        if ck.on_save is not None:
            ck.on_save(done, sample_model, seconds)
        extra = dict(optimizer=opt.state_dict(), rng=generator.get_state(), step=done, losses=losses,
                     seconds=seconds, **ck.state)
        if ema is not None:
            extra["ema"] = {k: v.detach().cpu() for k, v in ema.state_dict().items()}
        save_checkpoint(ck.path, model, ck.config, kind=ck.kind, **extra)

    stop = steps if until is None else min(until, steps)
    bar = tqdm(range(step, stop), desc="training", disable=not progress, initial=step, total=stop)
    model.train()
    for step in bar:
        start = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr * warmup_cosine(step, steps, warmup)
        loss = loss_fn(model, generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if ema is not None:
            ema_update(ema, model, ema_decay_at(step, ema_decay))
        losses.append(loss.item())
        seconds += time.perf_counter() - start
        bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}", refresh=False)
        if ck is not None and ((step + 1) % ck.every == 0 or step + 1 == stop):
            model.eval()
            save(step + 1)
            model.train()
    model.eval()
    return {"model": model, "ema": sample_model, "losses": losses, "step": len(losses), "seconds": seconds}
