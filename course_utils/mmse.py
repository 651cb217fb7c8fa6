"""The MMSE regressor: notebook 03's U-Net trained to output x0 from the observation in one network call.

Taught in: 06_benchmark, where it is the strongest non-generative baseline (the notebook writes the regression and
its loss out and checks them against this module); :data:`KIND` is the ``mmse`` model kind, which
``python -m course_utils train --model mmse`` trains into ``outputs/06_mmse/<profile>-<hash>/`` (where the notebook
and ``bench`` look), and ``eval --checkpoint`` scores it.

Trained with the squared error, a network estimates the posterior mean E[x0 | y] (the minimum mean squared error,
MMSE, answer): it is the best a deterministic method can do on PSNR, and it is blurry wherever the observation
leaves more than one digit possible. It uses the very backbone of notebook 03 (same widths, same coord-conv
inputs, same batch and, in each profile, the same steps; the shipped regressor trains fewer steps than notebook
03's shipped model, since it overfits when trained longer), fed the observation where the noisy image would be,
at t = 0: ``unet(y, 0, m, y)``. Its answer keeps the known pixels: m * y + (1 - m) * x0_hat.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from . import center_hole as center_hole_
from .data import DigitSet, check_images, random_batch
from .evaluation import Method, SamplerOptions
from .masks import center_hole, check_mask
from .metrics import psnr_on_mask
from .models import UNet
from .runs import ModelKind, RunConfig


@dataclass(frozen=True)
class MMSEConfig(RunConfig):
    """Everything that defines an MMSE-regressor run (notebook 06); the defaults of a profile copy notebook 03's."""

    hole: int = 12
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 4)
    coord_conv: bool = True
    steps: int = 1800
    val_size: int = 500
    save_every: int = 200
    eval_size: int = 200


def _like_center_hole(profile: str) -> MMSEConfig:
    """A profile's regressor: notebook 03's task, widths and training budget in that profile (notebook 06)."""
    ch = center_hole_.CENTER_HOLE[profile]
    return MMSEConfig(**{f.name: getattr(ch, f.name) for f in dataclasses.fields(MMSEConfig)})


MMSE: dict[str, MMSEConfig] = {name: _like_center_hole(name) for name in center_hole_.CENTER_HOLE}
# the shipped regressor: notebook 03's network at 1,000 steps (longer, a regressor on 4,500 digits overfits:
# docs/design.md)
MMSE["pretrained"] = dataclasses.replace(MMSE["pretrained"], steps=1000, warmup=100, save_every=250)


def build_mmse_model(cfg: MMSEConfig) -> nn.Module:
    """Notebook 03's U-Net (inputs [y, m, y] and coord-conv) as a regressor (notebook 06)."""
    return UNet(cfg.base_channels, cfg.channel_mults, coord_conv=cfg.coord_conv)


def regress(model: nn.Module, y: torch.Tensor, mask: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """x0_hat = model(y, 0, m, y), clipped to [-1, 1] when ``clip`` (as the samplers clip theirs), the known pixels
    kept: m * y + (1 - m) * x0_hat (one network call; notebook 06)."""
    check_images(y, "y")
    check_mask(mask, like=y)
    t = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
    x0_hat = model(y, t, mask, y)
    return mask * y + (1 - mask) * (x0_hat.clamp(-1, 1) if clip else x0_hat)


def mmse_loss(model: nn.Module, x0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the missing pixels, ||(1 - m) (x0_hat - x0)||^2 / sum(1 - m), on the unclipped output so
    that every pixel gets a gradient (notebook 06)."""
    missing = 1 - mask
    return (missing * (regress(model, mask * x0, mask, clip=False) - x0) ** 2).sum() / missing.sum().clamp_min(1)


def batch_loss(cfg: MMSEConfig, train: DigitSet, device: torch.device):
    """:func:`mmse_loss` on a batch drawn with replacement, every image with the centre hole (notebook 06)."""
    mask = center_hole(cfg.batch_size, cfg.hole).to(device)
    return lambda net, generator: mmse_loss(net, random_batch(train, cfg.batch_size, generator, device), mask)


@torch.no_grad()
def validate_mmse(model: nn.Module, cfg: MMSEConfig, val: DigitSet):
    """The regressor's mean hole PSNR on validation digits with the centre hole (no figure; notebook 06)."""
    images = val.images
    m = center_hole(images.shape[0], cfg.hole).to(images.device)
    return psnr_on_mask(regress(model, m * images, m), images, m).mean().item(), None


def mmse_method(model: nn.Module, cfg: MMSEConfig, options: SamplerOptions = SamplerOptions()) -> Method:
    """The regressor as a deterministic evaluation method (K = 1, one network call per image) for mask tasks;
    the sampler options do not apply to it (notebook 06)."""
    return Method("mmse_regressor", lambda obs, generator: regress(model, obs.y, obs.mask), stochastic=False,
                  fits=lambda task: task.is_mask_task, network=model,
                  config={"kind": "mmse", "trained_for": f"center:{cfg.hole}"})


KIND = ModelKind(
    name="mmse", description="notebook 06: notebook 03's U-Net regressing x0 in one call (the MMSE baseline)",
    notebook="06_benchmark", folder="06_mmse", presets=MMSE, build=build_mmse_model, loss=batch_loss,
    method=mmse_method, tasks=lambda cfg: (f"center:{cfg.hole}",), default_task=lambda cfg: f"center:{cfg.hole}",
    validate=validate_mmse, check=center_hole_.check_config)
