"""The reverse process: from a noise prediction to x0_hat, the DDPM posterior, and ancestral sampling.

Taught in: 02_ddpm_from_scratch_masked_mnist.

Notation as in :mod:`course_utils.schedules`. A denoiser is any callable
``eps_model(x_t, t, mask, y) -> eps_hat`` that predicts the noise in ``x_t`` at timestep
``t`` (one index per image) given the mask and the observation ``y = mask * x0``.

DDPM samples by walking t = T-1, ..., 0 one step at a time. To sample with fewer steps we
walk any decreasing sub-sequence t_1 > t_2 > ... and use the posterior q(x_s | x_t, x0) between
consecutive entries t and s; for s = t - 1 it is exactly DDPM eq. 6-7, and for a shorter
sequence it is DDPM on the "respaced" chain of iDDPM (Nichol & Dhariwal 2021, section 4).
Noise is always drawn on the CPU from a ``torch.Generator``, so a seed gives the same samples
on every device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .data import check_images
from .masks import check_mask
from .schedules import Schedule, at

EpsModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def alpha_bar_or_one(schedule: Schedule, s: int) -> float:
    """alpha_bar_s, with alpha_bar of index -1 (the clean image) equal to 1."""
    return 1.0 if s < 0 else float(schedule.alpha_bars[s])


def predict_x0(x_t: torch.Tensor, t, eps: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t): DDPM eq. 4 solved for x0 (used in eq. 15)."""
    ab = schedule.alpha_bars  # coefficients in float64, cast once: the same numbers as math.sqrt of Python floats
    return (x_t - at((1 - ab).sqrt(), t, x_t) * eps) / at(ab.sqrt(), t, x_t)


def posterior(x0: torch.Tensor, x_t: torch.Tensor, t: int, s: int, schedule: Schedule):
    """Mean and variance of q(x_s | x_t, x0) for s < t (DDPM eq. 6-7 with alpha_t -> alpha_bar_t / alpha_bar_s).

    mean = sqrt(alpha_bar_s) beta_ts / (1 - alpha_bar_t) * x0 + sqrt(alpha_ts) (1 - alpha_bar_s) / (1 - alpha_bar_t) * x_t
    var  = (1 - alpha_bar_s) / (1 - alpha_bar_t) * beta_ts,   where alpha_ts = alpha_bar_t / alpha_bar_s, beta_ts = 1 - alpha_ts.

    ``s = -1`` means the clean image (alpha_bar = 1, variance 0).
    """
    if not -1 <= s < t < schedule.T:
        raise ValueError(f"need -1 <= s < t < T={schedule.T}, got t={t}, s={s}")
    ab_t, ab_s = alpha_bar_or_one(schedule, t), alpha_bar_or_one(schedule, s)
    alpha_ts = ab_t / ab_s
    beta_ts = 1.0 - alpha_ts
    mean = (math.sqrt(ab_s) * beta_ts / (1 - ab_t)) * x0 + (math.sqrt(alpha_ts) * (1 - ab_s) / (1 - ab_t)) * x_t
    var = (1 - ab_s) / (1 - ab_t) * beta_ts
    return mean, var


def sampling_timesteps(T: int, steps: int) -> list[int]:
    """``steps`` timesteps evenly spaced from T-1 down to 0 (all of T-1, ..., 0 when steps == T)."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must lie in [1, T={T}], got {steps}")
    if steps == 1:
        return [T - 1]
    return torch.linspace(T - 1, 0, steps).round().long().tolist()


def _randn(shape, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(device=like.device, dtype=like.dtype)


def noised_known(y: torch.Tensor, s: int, schedule: Schedule, generator: torch.Generator | None) -> torch.Tensor:
    """The observation noised to the step being landed on: sqrt(alpha_bar_s) y + sqrt(1 - alpha_bar_s) noise."""
    ab_s = alpha_bar_or_one(schedule, s)
    return math.sqrt(ab_s) * y + math.sqrt(1 - ab_s) * _randn(y.shape, generator, y)


@torch.no_grad()
def ddpm_sample(
    eps_model: EpsModel,
    y: torch.Tensor,
    mask: torch.Tensor,
    schedule: Schedule,
    steps: int | None = None,
    replace_known: bool = False,
    generator: torch.Generator | None = None,
    clip_x0: bool = True,
    trajectory: list | None = None,
) -> torch.Tensor:
    """Ancestral DDPM sampling (DDPM Algorithm 2, on an evenly spaced sub-sequence of ``steps`` timesteps).

    At each step: eps_hat = eps_model(x_t, t, mask, y); x0_hat from eq. 15 (clipped to [-1, 1]
    when ``clip_x0``); x_s ~ N(posterior mean, posterior var). With ``replace_known`` the known
    pixels are then replaced by the observation noised to s (data consistency), and the
    output keeps them exactly: m * y + (1 - m) * x. Without it, the model's conditioning
    alone fills the hole and the output is returned as sampled.

    If ``trajectory`` is a list, (t, x_t, x0_hat) of every step is appended to it (on the CPU).
    """
    check_mask(mask, like=y)
    check_images(y, "y")
    ts = sampling_timesteps(schedule.T, steps or schedule.T)
    x = _randn(y.shape, generator, y)
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < len(ts) else -1
        t_batch = torch.full((y.shape[0],), t, device=y.device, dtype=torch.long)
        eps = eps_model(x, t_batch, mask, y)
        x0_hat = predict_x0(x, t, eps, schedule)
        if clip_x0:
            x0_hat = x0_hat.clamp(-1, 1)
        if trajectory is not None:
            trajectory.append((t, x.cpu(), x0_hat.cpu()))
        mean, var = posterior(x0_hat, x, t, s, schedule)
        x = mean + math.sqrt(var) * _randn(y.shape, generator, y) if s >= 0 else mean
        if replace_known and s >= 0:
            x = mask * noised_known(y, s, schedule, generator) + (1 - mask) * x
    if replace_known:
        x = mask * y + (1 - mask) * x
    return x


def posterior_samples(sampler: Callable[[torch.Generator], torch.Tensor], k: int, seed: int) -> torch.Tensor:
    """K independent samples from ``sampler(generator)``, stacked K x N x ..., seeds ``seed``, ``seed + 1``, ...

    Their mean over K estimates the posterior mean E[x0 | y], which minimises the expected squared error.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return torch.stack([sampler(torch.Generator().manual_seed(seed + i)) for i in range(k)])
