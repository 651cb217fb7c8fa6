"""The MMSE regressor: notebook 03's U-Net trained to output x0 from the observation in one network call.

Taught in: 06_benchmark, where it is the strongest non-generative baseline (the notebook writes the regression and
its loss out and checks them against this module); ``python -m course_utils train --model mmse`` trains it into
``outputs/06_mmse/<profile>-<hash>/`` (:func:`mmse_run_dir`, where the notebook and ``bench`` look), and ``eval
--checkpoint`` scores it.

Trained with the squared error, a network estimates the posterior mean E[x0 | y] (the minimum mean squared error,
MMSE, answer): it is the best a deterministic method can do on PSNR, and it is blurry wherever the observation
leaves more than one digit possible. It uses the very backbone of notebook 03 (same widths, same coord-conv
inputs, same budget of steps and batch), fed the observation where the noisy image would be, at t = 0:
``unet(y, 0, m, y)``. Its answer keeps the known pixels: m * y + (1 - m) * x0_hat.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .center_hole import center_hole_config
from .checkpoints import load_trained, plain
from .config import Profile, get_profile, output_dir, run_name
from .data import DigitSet, check_images
from .evaluation import Method, SamplerOptions
from .masks import center_hole, check_mask
from .metrics import psnr_on_mask
from .models import UNet
from .training import fast_layout, fit


@dataclass(frozen=True)
class MMSEConfig:
    """Everything that defines an MMSE-regressor run (notebook 06); the defaults of a profile copy notebook 03's."""

    profile: str
    hole: int = 12
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 4)
    coord_conv: bool = True
    batch_size: int = 64
    steps: int = 1800
    lr: float = 2e-3
    warmup: int = 100
    ema_decay: float = 0.999
    train_size: int = 60000
    val_size: int = 500
    save_every: int = 200
    eval_size: int = 200
    regressor: str = "mmse"  # tells its checkpoints apart from other kinds'


def mmse_config(profile: str | Profile | None = None, **changes) -> MMSEConfig:
    """The regressor of a profile with notebook 03's task, widths and training budget, ``changes`` applied
    (notebook 06)."""
    name = profile.name if isinstance(profile, Profile) else get_profile(profile).name
    ch = center_hole_config(name)
    same = {f.name: getattr(ch, f.name) for f in dataclasses.fields(MMSEConfig) if hasattr(ch, f.name)}
    cfg = dataclasses.replace(MMSEConfig(**same), **changes)
    if not 1 <= cfg.hole < 32:
        raise ValueError(f"hole must be a side between 1 and 31 pixels on the 32x32 canvas, got {cfg.hole}")
    return cfg


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


def train_mmse(
    cfg: MMSEConfig,
    train: DigitSet,
    out_dir: str | Path,
    device: torch.device,
    seed: int = 0,
    resume: bool = False,
    val_images: torch.Tensor | None = None,
    until: int | None = None,
    progress: bool = True,
) -> dict:
    """Train the regressor on centre holes with :func:`~course_utils.training.fit`, like notebook 03's model:
    batches drawn with replacement from one CPU generator, ``out_dir/last.pt`` every ``cfg.save_every`` steps,
    exact resume; at every save the validation hole PSNR of ``val_images`` goes to the history (notebook 06)."""
    torch.manual_seed(seed)
    model = fast_layout(build_mmse_model(cfg), device)
    g = torch.Generator().manual_seed(seed)
    mask = center_hole(cfg.batch_size, cfg.hole).to(device)
    state = {"history": []}

    def loss_fn(net: nn.Module, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(train), (cfg.batch_size,), generator=generator)
        return mmse_loss(net, train.images[idx].to(device), mask)

    def on_save(step: int, sample_model: nn.Module, seconds: float) -> None:
        if val_images is not None:
            x0 = val_images.to(device)
            m = center_hole(x0.shape[0], cfg.hole).to(device)
            with torch.no_grad():
                psnr = psnr_on_mask(regress(sample_model, m * x0, m), x0, m).mean().item()
            state["history"].append((step, seconds, psnr))

    run = fit(model, loss_fn, cfg.steps, cfg.lr, g, warmup=cfg.warmup, ema_decay=cfg.ema_decay,
              checkpoint=Path(out_dir) / "last.pt", config=plain(dataclasses.asdict(cfg)), save_every=cfg.save_every,
              on_save=on_save, state=state, resume=resume, until=until, seed=seed, progress=progress)
    return {**run, "history": state["history"]}


def mmse_run_dir(cfg: MMSEConfig) -> Path:
    """``outputs/06_mmse/<profile>-<hash of the config>``: one folder per configuration (notebook 06)."""
    return output_dir("06_mmse", run_name(cfg.profile, plain(dataclasses.asdict(cfg))))


def is_mmse_config(config: dict) -> bool:
    """Whether a checkpoint's stored config is an :class:`MMSEConfig` (notebook 06)."""
    return config.get("regressor") == "mmse" and set(config) == {f.name for f in dataclasses.fields(MMSEConfig)}


def load_mmse(path: str | Path, map_location="cpu"):
    """Read a regressor checkpoint: (config, model (EMA weights if any), extra), weights_only=True (notebook 06)."""
    return load_trained(path, MMSEConfig, build_mmse_model, is_mmse_config,
                        "is not an MMSE-regressor checkpoint; train one with `python -m course_utils train --model mmse`",
                        map_location)


def mmse_method(model: nn.Module, cfg: MMSEConfig, options: SamplerOptions = SamplerOptions()) -> Method:
    """The regressor as a deterministic evaluation method (K = 1, one network call per image) for mask tasks;
    the sampler options do not apply to it (notebook 06)."""
    return Method("mmse_regressor", lambda obs, generator: regress(model, obs.y, obs.mask), stochastic=False,
                  fits=lambda task: task.is_mask_task, network=model,
                  config={"kind": "mmse", "trained_for": f"center:{cfg.hole}"})
