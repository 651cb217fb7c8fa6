"""Notebook 03's experiment in one place: a U-Net on [x_t, m, y] that fills a square centre hole.

Taught in: 03_ddim_center_hole_data_consistency. Everything that defines the experiment lives here, top to bottom:

- :class:`CenterHoleConfig` and the settings of each profile (:data:`CENTER_HOLE`, :func:`center_hole_config`);
- the model (:func:`build_center_hole_model`) and its loss on a batch (:func:`inpaint_loss`: the eps, x0 or v
  target, P2 and hole weighting, self-conditioning);
- the resumable run (:func:`train_center_hole`, the course's one loop :func:`~course_utils.training.fit` with
  this loss), its folder per configuration (:func:`center_hole_run_dir`) and what to do with a folder
  (:func:`run_status`: reuse, resume or train; never delete);
- reading a checkpoint back (:func:`load_center_hole`) and sampling it as an evaluation method
  (:func:`center_hole_method`: DDIM with data consistency, :func:`~course_utils.diffusion.ddim_inpaint`).

:mod:`course_utils.kinds` registers it as the ``center_hole`` kind, which ``train``, ``sample`` and ``eval`` use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn

from .checkpoints import load_trained, plain
from .checkpoints import run_status as checkpoint_run_status
from .config import Profile, get_profile, output_dir, run_name
from .data import DigitSet, check_images
from .diffusion import ddim_inpaint, diffusion_target, x0_and_eps
from .evaluation import Method, SamplerOptions
from .masks import center_hole, check_mask
from .metrics import psnr_on_mask
from .models import UNet
from .plotting import show_rows
from .schedules import Schedule, make_schedule
from .training import fast_layout, fit, noised_batch, p2_weight, pixel_weights


@dataclass(frozen=True)
class CenterHoleConfig:
    """Everything that defines a notebook-03 run: the task, the model, the training switches, the sampler.

    Taught in: 03_ddim_center_hole_data_consistency. ``python -m course_utils train`` trains exactly
    this, and a checkpoint stores it, so ``sample`` and ``eval`` rebuild the same model.
    """

    profile: str
    hole: int = 12  # side of the square centre hole on the 32x32 canvas
    schedule: str = "cosine"
    T: int = 1000
    prediction: str = "x0"  # what the network outputs: eps, x0 or v
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 4)
    batch_size: int = 64
    steps: int = 2000
    lr: float = 2e-3
    warmup: int = 100
    ema_decay: float = 0.999  # 0 switches EMA off (sample with the trained weights)
    self_condition: bool = False
    coord_conv: bool = True
    p2_k: float = 1.0
    p2_gamma: float = 1.0  # 0 switches P2 weighting off
    hole_weight: float = 1.0  # weight of a hole pixel in the loss relative to a known one; 1 = off
    train_size: int = 60000
    val_size: int = 500
    save_every: int = 250  # write last.pt (and a panel) this often
    sample_steps: int = 25  # DDIM steps the notebook and the commands use by default
    n_samples: int = 8  # K samples per image for the posterior mean
    eval_size: int = 200  # test images the notebook scores
    ablation_steps: int = 250  # training steps of each row of the notebook's switch ablation
    ablation_batch: int = 32


# Chosen on the validation split (notebook 03 shows the measurements): predicting x0 instead of eps was
# worth about +2 dB of hole PSNR at the cpu budget; self-conditioning costs a second forward pass on half
# the batches, which on 2 CPU cores buys fewer steps than it is worth, so it is off by default.
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
}


def center_hole_config(profile: str | Profile | None = None, **changes) -> CenterHoleConfig:
    """The notebook-03 configuration of a profile (default: ``$COURSE_PROFILE``), with ``changes`` applied (notebook 03)."""
    name = profile.name if isinstance(profile, Profile) else get_profile(profile).name
    cfg = dataclasses.replace(CENTER_HOLE[name], **changes)
    if not 1 <= cfg.hole < 32:
        raise ValueError(f"hole must be a side between 1 and 31 pixels on the 32x32 canvas, got {cfg.hole}")
    return cfg


def config_dict(cfg: CenterHoleConfig) -> dict:
    """The config as the plain dict a checkpoint stores (tuples become lists); notebook 03."""
    return plain(dataclasses.asdict(cfg))


def build_center_hole_model(cfg: CenterHoleConfig) -> nn.Module:
    """The notebook-03 U-Net for a :class:`CenterHoleConfig` (inputs x_t, m, y, and the optional extra channels).

    Taught in notebook 03.
    """
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

    t, eps and x_t from :func:`~course_utils.training.noised_batch` (DDPM eq. 4), y = m * x0. The target is
    eps, x0 or v (:func:`~course_utils.diffusion.diffusion_target`); w_t is P2 (:func:`~course_utils.training.p2_weight`)
    and w_pix the hole weight (:func:`~course_utils.training.pixel_weights`). A self-conditioned model gets, for half
    of the images, its own x0_hat from a first pass without gradients, and zeros for the other half (Analog Bits,
    section 3.2). Random numbers come from ``generator`` (CPU) in a fixed order: t, eps, the self-conditioning coin.

    Taught in notebook 03.
    """
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
def validate_center_hole(model: nn.Module, cfg: CenterHoleConfig, images: torch.Tensor, device: torch.device,
                         seed: int = 0):
    """One DDIM sample (cfg.sample_steps, eta 0, data consistency) per image: (reconstruction, mean hole PSNR); notebook 03."""
    x0 = images.to(device)
    mask = center_hole(x0.shape[0], cfg.hole).to(device)
    out = ddim_inpaint(model, mask * x0, mask, make_schedule(cfg.schedule, cfg.T), cfg.sample_steps,
                       generator=torch.Generator().manual_seed(seed), prediction=cfg.prediction)
    return out, psnr_on_mask(out, x0, mask).mean().item()


BatchLoss = Callable[..., torch.Tensor]


def train_center_hole(
    cfg: CenterHoleConfig,
    train: DigitSet,
    out_dir: str | Path,
    device: torch.device,
    seed: int = 0,
    resume: bool = False,
    val_images: torch.Tensor | None = None,
    until: int | None = None,
    progress: bool = True,
    loss: BatchLoss = inpaint_loss,
) -> dict:
    """Train the notebook-03 model with :func:`~course_utils.training.fit`, writing ``out_dir/last.pt`` every
    ``cfg.save_every`` steps and at the end.

    AdamW with warm-up then cosine learning rate, gradients clipped to norm 1, loss :func:`inpaint_loss` (or
    ``loss``, any function with its signature: notebook 03's control row passes its own), EMA weights when
    ``cfg.ema_decay`` > 0. Each step draws its batch (with replacement), t, eps and the self-conditioning coin
    from one CPU generator seeded with ``seed``; last.pt holds the model, EMA, optimizer, generator state, step,
    losses and validation history, so ``resume=True`` continues the very same run (bit for bit on the CPU; on
    a GPU, cuDNN's non-deterministic convolution kernels make even two uninterrupted runs differ in the 4th
    decimal of the loss). At every save the model to sample with draws one sample for each of the first
    ``val_images`` (validation digits, never test) and ``out_dir/panel_<step>.png`` shows 8 of them.
    Returns {"model", "ema", "losses", "history", "step", "seconds"}; "history" lists
    (step, seconds, validation hole PSNR) and "ema" is the model to sample with.
    """
    out_dir = Path(out_dir)
    schedule = make_schedule(cfg.schedule, cfg.T)
    torch.manual_seed(seed)  # the initial weights
    model = fast_layout(build_center_hole_model(cfg), device)  # before the optimizer sees the parameters
    g = torch.Generator().manual_seed(seed)
    mask = center_hole(cfg.batch_size, cfg.hole).to(device)
    state = {"history": []}

    def loss_fn(net: nn.Module, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(train), (cfg.batch_size,), generator=generator)
        x0 = train.images[idx].to(device)
        return loss(net, x0, mask, schedule, generator, cfg.prediction, cfg.p2_k, cfg.p2_gamma, cfg.hole_weight)

    def on_save(step: int, sample_model: nn.Module, seconds: float) -> None:
        if val_images is None:
            return
        recon, psnr = validate_center_hole(sample_model, cfg, val_images, device)
        state["history"].append((step, seconds, psnr))
        x0 = val_images[:8].to(device)
        m8 = mask[: x0.shape[0]] if x0.shape[0] <= mask.shape[0] else center_hole(x0.shape[0], cfg.hole).to(device)
        fig = show_rows({"ground truth": x0, "masked": m8 * x0, "reconstruction": recon[: x0.shape[0]]},
                        masks={"masked": m8}, n=x0.shape[0],
                        title=f"step {step}: validation hole PSNR {psnr:.2f} dB (EMA, DDIM {cfg.sample_steps})")
        fig.savefig(out_dir / f"panel_{step:06d}.png", dpi=80, bbox_inches="tight")
        plt.close(fig)

    run = fit(model, loss_fn, cfg.steps, cfg.lr, g, warmup=cfg.warmup, ema_decay=cfg.ema_decay,
              checkpoint=out_dir / "last.pt", config=config_dict(cfg), save_every=cfg.save_every, on_save=on_save,
              state=state, resume=resume, until=until, seed=seed, progress=progress)
    return {**run, "history": state["history"]}


def center_hole_run_dir(cfg: CenterHoleConfig) -> Path:
    """``outputs/03_center_hole/<profile>-<hash of the config>``: notebook 03's run folder for ``cfg``.

    One folder per configuration, so opening the notebook in another profile (or with another setting)
    trains into a new folder and never touches the checkpoint, panels or metrics of another run.
    """
    return output_dir("03_center_hole", run_name(cfg.profile, config_dict(cfg)))


def run_status(checkpoint: str | Path, cfg: CenterHoleConfig) -> str:
    """``reuse``, ``resume`` or ``train`` for notebook 03's run of ``cfg`` (:func:`~course_utils.checkpoints.run_status`)."""
    return checkpoint_run_status(checkpoint, config_dict(cfg), cfg.steps)


def is_center_hole_config(config: dict) -> bool:
    """Whether a checkpoint's stored config is a :class:`CenterHoleConfig` (the same field names); notebook 03."""
    return set(config) == {f.name for f in dataclasses.fields(CenterHoleConfig)}


def load_center_hole(path: str | Path, map_location="cpu"):
    """Read a checkpoint of notebook 03: (config, model to sample with (EMA if any), extra). weights_only=True.

    Raises ``FileNotFoundError`` without a file and :class:`~course_utils.checkpoints.CheckpointMismatchError`
    when the file is not a notebook-03 checkpoint.
    """
    return load_trained(path, CenterHoleConfig, build_center_hole_model, is_center_hole_config,
                        "is not a notebook-03 center-hole checkpoint; train one with `python -m course_utils train`",
                        map_location)


def center_hole_method(model: nn.Module, cfg: CenterHoleConfig, options: SamplerOptions = SamplerOptions()) -> Method:
    """The notebook-03 model as an evaluation method: DDIM (``options.steps``, ``eta``) with data consistency and
    repeats (:func:`~course_utils.diffusion.ddim_inpaint`); it works on any mask task, trained for ``center:cfg.hole``.
    Taught in notebook 03."""
    schedule = make_schedule(cfg.schedule, cfg.T)

    def sample(obs, generator):
        return ddim_inpaint(model, obs.y, obs.mask, schedule, options.steps, options.eta, options.dc_repeats,
                            generator, prediction=cfg.prediction)

    return Method("ddim_center_hole", sample, stochastic=True, fits=lambda task: task.is_mask_task, network=model,
                  config={"kind": "center_hole", "steps": options.steps, "eta": options.eta,
                          "dc_repeats": options.dc_repeats, "prediction": cfg.prediction,
                          "trained_for": f"center:{cfg.hole}"})
