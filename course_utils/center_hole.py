"""Notebook 03's experiment in one place: a U-Net on [x_t, m, y] that fills a square centre hole.

Taught in: 03_ddim_center_hole_data_consistency. Everything that defines the experiment lives here, top to bottom:

- :class:`CenterHoleConfig` and the settings of each profile (:data:`CENTER_HOLE`);
- the model (:func:`build_center_hole_model`) and its loss on a batch (:func:`inpaint_loss`: the eps, x0 or v
  target, P2 and hole weighting, self-conditioning; :func:`batch_loss` draws the batch);
- its validation at every save (:func:`validate_center_hole`) and its sampler as an evaluation method
  (:func:`center_hole_method`: DDIM with data consistency, :func:`~course_utils.diffusion.ddim_inpaint`);
- :data:`KIND`, the ``center_hole`` model kind: :mod:`course_utils.runs` trains, resumes, saves and loads it
  (``KIND.obtain(cfg)``), and ``train``, ``sample`` and ``eval`` find it in :mod:`course_utils.kinds`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .data import DigitSet, check_images, random_batch
from .diffusion import Denoiser, ddim_inpaint, diffusion_target, x0_and_eps
from .evaluation import Method, SamplerOptions
from .masks import center_hole, check_mask
from .metrics import psnr_on_mask
from .models import UNet
from .plotting import show_rows
from .runs import DiffusionConfig, ModelKind
from .schedules import Schedule, make_schedule
from .training import noised_batch, p2_weight, pixel_weights


@dataclass(frozen=True)
class CenterHoleConfig(DiffusionConfig):
    """Everything that defines a notebook-03 run: the task, the model, the training switches, the sampler.

    Taught in: 03_ddim_center_hole_data_consistency. ``python -m course_utils train`` trains exactly
    this, and a checkpoint stores it, so ``sample`` and ``eval`` rebuild the same model.
    """

    hole: int = 12  # side of the square centre hole on the 32x32 canvas
    self_condition: bool = False
    coord_conv: bool = True
    p2_k: float = 1.0
    p2_gamma: float = 1.0  # 0 switches P2 weighting off
    hole_weight: float = 1.0  # weight of a hole pixel in the loss relative to a known one; 1 = off
    val_size: int = 500
    n_samples: int = 8  # K samples per image for the posterior mean
    eval_size: int = 200  # test images the notebook scores
    ablation_steps: int = 250  # training steps of each row of the notebook's switch ablation
    ablation_batch: int = 32


# Chosen on the validation split (notebook 03 shows the measurements): predicting x0 instead of eps was
# worth about +2 dB of hole PSNR at the cpu budget; self-conditioning costs a second (gradient-free) forward pass
# on every batch, which on 2 CPU cores buys fewer steps than it is worth, so it is off by default.
CENTER_HOLE: dict[str, CenterHoleConfig] = {
    "ci": CenterHoleConfig(
        profile="ci", base_channels=8, channel_mults=(1, 2), batch_size=16, steps=30, warmup=5, train_size=512,
        val_size=64, save_every=15, sample_steps=5, n_samples=2, eval_size=16, ablation_steps=6, ablation_batch=8,
    ),
    "cpu": CenterHoleConfig(profile="cpu", steps=1800, save_every=200, ablation_steps=150, ablation_batch=32),
    "full": CenterHoleConfig(
        profile="full", base_channels=32, batch_size=128, steps=1600, val_size=2000, save_every=400,
        eval_size=1000, ablation_steps=1600, ablation_batch=128,
    ),
    # the course's shipped checkpoint (and notebook 06's MMSE regressor, which copies these): the cpu recipe at 1.7
    # times its steps (longer runs lose the mean of 8 samples: docs/design.md)
    "pretrained": CenterHoleConfig(profile="pretrained", steps=3000, warmup=200, save_every=1000, ablation_steps=150,
                                   ablation_batch=32),
}


def check_config(cfg: CenterHoleConfig) -> None:
    """A hole must fit on the 32x32 canvas (notebook 03)."""
    if not 1 <= cfg.hole < 32:
        raise ValueError(f"hole must be a side between 1 and 31 pixels on the 32x32 canvas, got {cfg.hole}")


def build_center_hole_model(cfg: CenterHoleConfig) -> nn.Module:
    """The notebook-03 U-Net for a :class:`CenterHoleConfig` (inputs x_t, m, y, and the optional extra channels).

    Taught in notebook 03."""
    return UNet(cfg.base_channels, cfg.channel_mults, self_condition=cfg.self_condition, coord_conv=cfg.coord_conv)


def inpaint_loss(
    model: nn.Module,
    x0: torch.Tensor,
    mask: torch.Tensor,
    schedule: Schedule,
    generator: torch.Generator,
    prediction: str = "eps",
    p2_k: float = 1.0,
    p2_gamma: float = 0.0,
    hole_weight: float = 1.0,
) -> torch.Tensor:
    """The notebook-03 objective on one batch: sum_pixels w_t w_pix (target - output)^2 / sum_pixels w_pix.

    t, eps and x_t from :func:`~course_utils.training.noised_batch` (DDPM eq. 4), y = m * x0. The target is eps, x0
    or v (:func:`~course_utils.diffusion.diffusion_target`); w_t is P2 (:func:`~course_utils.training.p2_weight`) and
    w_pix the hole weight (:func:`~course_utils.training.pixel_weights`). A self-conditioned model gets, for half of
    the images, its own x0_hat from a first pass without gradients, and zeros for the other half (Analog Bits,
    section 3.2). Random numbers come from ``generator`` (CPU) in a fixed order: t, eps, the self-conditioning coin.
    Taught in notebook 03."""
    check_images(x0, "x0")
    check_mask(mask, like=x0)
    n = x0.shape[0]
    t, eps, x_t = noised_batch(x0, schedule, generator)
    y = mask * x0
    extra = ()
    if getattr(model, "self_condition", False):
        use = (torch.rand(n, generator=generator) < 0.5).to(x0.device).view(n, 1, 1, 1)
        with torch.no_grad():
            first = model(x_t, t, mask, y, torch.zeros_like(x0))
            x0_prev = x0_and_eps(first, x_t, t, schedule, prediction)[0]
        extra = (torch.where(use, x0_prev, torch.zeros_like(x0_prev)),)
    out = model(x_t, t, mask, y, *extra)
    target = diffusion_target(x0, eps, t, schedule, prediction)
    w_pix = pixel_weights(mask, hole_weight)
    w_t = p2_weight(schedule, t, p2_k, p2_gamma).view(n, 1, 1, 1)
    return (w_t * w_pix * (target - out) ** 2).sum() / w_pix.sum()


@torch.no_grad()
def validate_center_hole(model: nn.Module, cfg: CenterHoleConfig, val: DigitSet, seed: int = 0):
    """One DDIM sample (cfg.sample_steps, eta 0, data consistency) per validation digit: (mean hole PSNR, a panel
    of the first 8); notebook 03 shows the panels its run wrote."""
    x0 = val.images
    mask = center_hole(x0.shape[0], cfg.hole).to(x0.device)
    y = mask * x0
    denoiser = Denoiser(model, make_schedule(cfg.schedule, cfg.T), cfg.prediction, (mask, y))
    out = ddim_inpaint(denoiser, y, mask, cfg.sample_steps, generator=torch.Generator().manual_seed(seed))
    psnr = psnr_on_mask(out, x0, mask).mean().item()
    n = min(8, x0.shape[0])
    fig = show_rows({"ground truth": x0[:n], "masked": y[:n], "reconstruction": out[:n]},
                    masks={"masked": mask[:n]}, n=n,
                    title=f"validation hole PSNR {psnr:.2f} dB (EMA, DDIM {cfg.sample_steps})")
    return psnr, fig


def batch_loss(cfg: CenterHoleConfig, train: DigitSet, device: torch.device, loss=None):
    """:func:`inpaint_loss` (or ``loss``, any function with its signature: notebook 03's control row) on a batch
    drawn with replacement, every image with the centre hole (notebook 03)."""
    loss = loss or inpaint_loss
    schedule = make_schedule(cfg.schedule, cfg.T)
    mask = center_hole(cfg.batch_size, cfg.hole).to(device)

    def loss_fn(net: nn.Module, generator: torch.Generator) -> torch.Tensor:
        x0 = random_batch(train, cfg.batch_size, generator, device)
        return loss(net, x0, mask, schedule, generator, cfg.prediction, cfg.p2_k, cfg.p2_gamma, cfg.hole_weight)

    return loss_fn


def center_hole_method(model: nn.Module, cfg: CenterHoleConfig, options: SamplerOptions = SamplerOptions()) -> Method:
    """The notebook-03 model as an evaluation method: DDIM (``options.steps``, ``eta``) with data consistency and
    repeats (:func:`~course_utils.diffusion.ddim_inpaint`); it works on any mask task, trained for ``center:cfg.hole``.
    Taught in notebook 03."""
    schedule = make_schedule(cfg.schedule, cfg.T)
    options = options.resolved()

    def sample(obs, generator):
        denoiser = Denoiser(model, schedule, cfg.prediction, (obs.mask, obs.y))
        return ddim_inpaint(denoiser, obs.y, obs.mask, options.steps, options.eta, options.dc_repeats, generator)

    return Method("ddim_center_hole", sample, fits=lambda task: task.is_mask_task, network=model,
                  config={"kind": "center_hole", "steps": options.steps, "eta": options.eta,
                          "dc_repeats": options.dc_repeats, "prediction": cfg.prediction,
                          "trained_for": f"center:{cfg.hole}"})


KIND = ModelKind(
    name="center_hole", description="notebook 03: U-Net on [x_t, m, y] for a centre hole, DDIM with data consistency",
    notebook="03_ddim_center_hole_data_consistency", folder="03_center_hole", presets=CENTER_HOLE,
    build=build_center_hole_model, loss=batch_loss, method=center_hole_method,
    tasks=lambda cfg: (f"center:{cfg.hole}",), default_task=lambda cfg: f"center:{cfg.hole}",
    validate=validate_center_hole, check=check_config)
