"""Notebook 02's DDPM as a model kind: the U-Net on [x_t, m, y] trained on the eps objective with mixed masks.

Taught in: 02_ddpm_from_scratch_masked_mnist, which writes every piece out (the U-Net, the loss, the loop,
ancestral sampling) and asserts that they equal the course's; :data:`KIND` is that model as the ``ddpm`` kind, so
``python -m course_utils train --model ddpm`` trains it, ``eval --checkpoint`` scores it and notebook 06 compares it.

- :class:`DDPMConfig`, one per profile (:data:`DDPM`, from the profile's sizes of :mod:`course_utils.config`);
- :func:`batch_loss`: DDPM eq. 14 (:func:`~course_utils.training.eps_loss`) on shuffled mini-batches, one fresh
  mask of the training mix (:func:`~course_utils.masks.mixed_masks`) per image, resumable mid-epoch;
- :func:`ddpm_method`: ancestral sampling (DDPM Algorithm 2) with replacement of the known pixels after each step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from .config import PRETRAINED, PROFILES
from .data import Batches, DigitSet
from .diffusion import Denoiser, ddpm_sample
from .evaluation import Method, SamplerOptions
from .masks import mixed_masks
from .metrics import psnr_on_mask
from .models import UNet
from .runs import ModelKind, RunConfig
from .schedules import make_schedule
from .training import eps_loss


@dataclass(frozen=True)
class DDPMConfig(RunConfig):
    """Everything that defines notebook 02's run: the profile's U-Net widths, schedule and training budget."""

    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 2)
    schedule: str = "cosine"
    T: int = 1000
    warmup: int = 100  # min(100, steps // 10 + 1): notebook 02's warm-up
    ema_decay: float = 0.0  # notebook 02 samples with the trained weights
    val_size: int = 500
    eval_size: int = 200
    save_every: int = 500
    sample_steps: int = 50  # ancestral steps when sampling


DDPM: dict[str, DDPMConfig] = {
    name: DDPMConfig(profile=name, base_channels=p.base_channels, channel_mults=p.channel_mults, schedule=p.schedule,
                     T=p.T, steps=p.train_steps, batch_size=p.batch_size, lr=p.lr,
                     warmup=min(100, p.train_steps // 10 + 1), train_size=p.train_size, val_size=p.val_size,
                     eval_size=p.eval_size, save_every=max(1, p.train_steps // 4), sample_steps=p.sample_steps)
    for name, p in PROFILES.items()
}
# the course's shipped DDPM (notebook 02 shows it beside the one it trains): the cpu network and batch at three
# times its steps, sampled with EMA weights (docs/design.md has how it was chosen)
DDPM[PRETRAINED] = replace(DDPM["cpu"], profile=PRETRAINED, steps=6000, warmup=100, ema_decay=0.999, save_every=1000)


def build_ddpm(cfg: DDPMConfig) -> nn.Module:
    """Notebook 02's U-Net on [x_t, m, y] (no coord-conv, no self-conditioning)."""
    return UNet(cfg.base_channels, cfg.channel_mults)


def batch_loss(cfg: DDPMConfig, train: DigitSet, device: torch.device):
    """DDPM eq. 14 on shuffled mini-batches (:class:`~course_utils.data.Batches`), each image with a mask of the
    training mix; batches, masks, t and eps all come from the run's generator, and where the batches are in their
    epoch rides along in the checkpoint (``loss.state``). Notebook 02 checks it against its own loop."""
    schedule = make_schedule(cfg.schedule, cfg.T)
    stream = Batches(train, cfg.batch_size, generator=None)  # shuffled with the run's generator, given each step

    def loss_fn(net: nn.Module, generator: torch.Generator) -> torch.Tensor:
        stream.generator = generator
        x0, _ = next(stream)
        mask = mixed_masks(x0.shape[0], seed=generator)
        return eps_loss(net, x0.to(device), mask.to(device), schedule, generator)

    loss_fn.state = {"batch_order": stream.state}  # a resumed run refills this very dict from its checkpoint
    return loss_fn


@torch.no_grad()
def validate_ddpm(model: nn.Module, cfg: DDPMConfig, val: DigitSet, seed: int = 0):
    """(hole PSNR of one ancestral sample with replacement, ``cfg.sample_steps`` steps, on masks of the training mix
    drawn with ``seed``, None): the score a run records at every save, on validation digits (notebook 02's test
    metric)."""
    generator = torch.Generator().manual_seed(seed)
    mask = mixed_masks(val.images.shape[0], seed=generator).to(val.images.device)
    y = mask * val.images
    denoiser = Denoiser(model, make_schedule(cfg.schedule, cfg.T), "eps", (mask, y))
    out = ddpm_sample(denoiser, y, mask, cfg.sample_steps, True, generator)
    return psnr_on_mask(out, val.images, mask).mean().item(), None


def ddpm_method(model: nn.Module, cfg: DDPMConfig, options: SamplerOptions = SamplerOptions()) -> Method:
    """Notebook 02's inpainting: ancestral DDPM over ``options.steps`` (default ``cfg.sample_steps``) linspace
    timesteps, the known pixels replaced after each step (:func:`~course_utils.diffusion.ddpm_sample`)."""
    steps = cfg.sample_steps if options.steps is None else options.steps
    schedule = make_schedule(cfg.schedule, cfg.T)
    return Method("ddpm", lambda obs, g: ddpm_sample(Denoiser(model, schedule, "eps", (obs.mask, obs.y)), obs.y,
                                                     obs.mask, steps, True, g),
                  fits=lambda task: task.is_mask_task, network=model,
                  config={"notebook": "02", "sampler": "ddpm", "steps": steps, "replacement": True})


KIND = ModelKind(
    name="ddpm", description="notebook 02: DDPM on [x_t, m, y] with mixed masks, ancestral sampling with replacement",
    notebook="02_ddpm_from_scratch_masked_mnist", folder="02_ddpm", presets=DDPM, build=build_ddpm, loss=batch_loss,
    method=ddpm_method, default_task=lambda cfg: "center:12", validate=validate_ddpm, validation_digits=200)
