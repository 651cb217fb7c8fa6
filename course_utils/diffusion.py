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

Notebook 03 adds DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models"): the update of
eq. 12 with sigma from eq. 16, where ``eta`` slides from a deterministic sampler (eta = 0) to
one with DDPM's posterior variance (eta = 1), and data consistency repeated ``dc_repeats``
times per step (re-noise the merged sample one step, denoise again; RePaint's resampling,
Lugmayr et al. 2022, Algorithm 1). It also reads other network outputs than eps: the clean
image x0 or the velocity v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0 (Salimans & Ho
2022, "Progressive Distillation", appendix D).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .data import check_images
from .masks import check_mask
from .schedules import Schedule, at

PREDICTIONS = ("eps", "x0", "v")

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


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """``steps`` timesteps T-1, T-1-T/steps, ... evenly spaced by T/steps, each rounded (DDIM section 4.2).

    The last reverse step goes from T/steps - 1 straight to the clean image. This is diffusers'
    ``timestep_spacing="trailing"`` (Lin et al. 2024, "Common Diffusion Noise Schedules...", table 2).
    """
    if not 1 <= steps <= T:
        raise ValueError(f"steps must lie in [1, T={T}], got {steps}")
    return [int(round(T - i * T / steps)) - 1 for i in range(steps)]


def x0_and_eps(
    output: torch.Tensor, x_t: torch.Tensor, t, schedule: Schedule, prediction: str = "eps", clip_x0: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a network output into (x0_hat, eps_hat) with x_t = sqrt(alpha_bar_t) x0_hat + sqrt(1 - alpha_bar_t) eps_hat.

    eps: x0_hat from DDPM eq. 15;  x0: eps_hat = (x_t - sqrt(alpha_bar_t) x0_hat) / sqrt(1 - alpha_bar_t);
    v:   x0_hat = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v,  eps_hat = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v.
    ``t`` is one timestep or one per image. With ``clip_x0`` x0_hat is clipped to [-1, 1] and eps_hat
    moved so that the pair still explains x_t (where nothing was clipped, eps_hat is unchanged).
    """
    ab = schedule.alpha_bars
    a, b = at(ab.sqrt(), t, x_t), at((1 - ab).sqrt().clamp_min(1e-12), t, x_t)
    if prediction == "eps":
        eps, x0 = output, (x_t - b * output) / a
    elif prediction == "x0":
        x0, eps = output, (x_t - a * output) / b
    elif prediction == "v":
        x0, eps = a * x_t - b * output, b * x_t + a * output
    else:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if clip_x0:
        clipped = x0.clamp(-1, 1)
        eps = eps + (a / b) * (x0 - clipped)
        x0 = clipped
    return x0, eps


def ddim_sigma(schedule: Schedule, t: int, s: int, eta: float) -> float:
    """sigma_t(eta) = eta sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_s) (DDIM eq. 16).

    eta = 1 gives the DDPM posterior's standard deviation (eq. 7); eta = 0 a deterministic step.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    ab_t, ab_s = alpha_bar_or_one(schedule, t), alpha_bar_or_one(schedule, s)
    return eta * math.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))


def ddim_step(
    x0_hat: torch.Tensor, eps_hat: torch.Tensor, t: int, s: int, schedule: Schedule, eta: float, noise: torch.Tensor
) -> torch.Tensor:
    """x_s = sqrt(alpha_bar_s) x0_hat + sqrt(1 - alpha_bar_s - sigma^2) eps_hat + sigma noise (DDIM eq. 12).

    ``s = -1`` is the clean image (alpha_bar = 1): the step returns x0_hat.
    """
    if not -1 <= s < t < schedule.T:
        raise ValueError(f"need -1 <= s < t < T={schedule.T}, got t={t}, s={s}")
    ab_s = alpha_bar_or_one(schedule, s)
    sigma = ddim_sigma(schedule, t, s, eta)
    direction = math.sqrt(max(1 - ab_s - sigma**2, 0.0))
    return math.sqrt(ab_s) * x0_hat + direction * eps_hat + sigma * noise


def renoise(x_s: torch.Tensor, s: int, t: int, schedule: Schedule, noise: torch.Tensor) -> torch.Tensor:
    """A draw from q(x_t | x_s) for s < t: sqrt(alpha_bar_t / alpha_bar_s) x_s + sqrt(1 - alpha_bar_t / alpha_bar_s) noise.

    The forward process from s to t in one jump (DDPM eq. 4 between two noise levels); used to resample.
    """
    if not -1 <= s < t < schedule.T:
        raise ValueError(f"need -1 <= s < t < T={schedule.T}, got s={s}, t={t}")
    ratio = alpha_bar_or_one(schedule, t) / alpha_bar_or_one(schedule, s)
    return math.sqrt(ratio) * x_s + math.sqrt(1 - ratio) * noise


@torch.no_grad()
def ddim_inpaint(
    model: Callable[..., torch.Tensor],
    y: torch.Tensor,
    mask: torch.Tensor,
    schedule: Schedule,
    steps: int = 50,
    eta: float = 0.0,
    dc_repeats: int = 1,
    generator: torch.Generator | None = None,
    prediction: str = "eps",
    clip_x0: bool = True,
    trajectory: list | None = None,
) -> torch.Tensor:
    """DDIM sampling with data consistency after every step (taught in notebook 03).

    For each pair of consecutive timesteps t > s of :func:`ddim_timesteps` (s = -1 after the last):

    1. x0_hat, eps_hat from the network output (:func:`x0_and_eps`); a self-conditioned model
       (``model.self_condition``) also gets the previous step's x0_hat;
    2. x_s from the DDIM update (:func:`ddim_step`, eq. 12);
    3. data consistency: known pixels become the observation noised to s,
       x_s = m * (sqrt(alpha_bar_s) y + sqrt(1 - alpha_bar_s) noise) + (1 - m) * x_s;
    4. with ``dc_repeats`` = r > 1, steps 1-3 run r times: each time but the last, x_s is
       re-noised to t (:func:`renoise`) and denoised again, so the hole can agree with the known pixels.

    The output keeps the known pixels exactly: m * y + (1 - m) * x. ``trajectory`` collects
    (t, x_t, x0_hat) on the CPU when it is a list.
    """
    check_mask(mask, like=y)
    check_images(y, "y")
    if dc_repeats < 1:
        raise ValueError(f"dc_repeats must be at least 1, got {dc_repeats}")
    self_condition = bool(getattr(model, "self_condition", False))
    ts = ddim_timesteps(schedule.T, steps)
    x = _randn(y.shape, generator, y)
    x0_hat = None
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < len(ts) else -1
        t_batch = torch.full((y.shape[0],), t, device=y.device, dtype=torch.long)
        for r in range(dc_repeats):
            extra = (x0_hat,) if self_condition else ()
            out = model(x, t_batch, mask, y, *extra)
            x0_hat, eps_hat = x0_and_eps(out, x, t, schedule, prediction, clip_x0)
            if trajectory is not None and r == 0:
                trajectory.append((t, x.cpu(), x0_hat.cpu()))
            noise = _randn(y.shape, generator, y) if eta > 0 and s >= 0 else torch.zeros_like(y)
            x_s = ddim_step(x0_hat, eps_hat, t, s, schedule, eta, noise)
            x_s = mask * noised_known(y, s, schedule, generator) + (1 - mask) * x_s
            if r + 1 < dc_repeats:
                x = renoise(x_s, s, t, schedule, _randn(y.shape, generator, y))
        x = x_s
    return mask * y + (1 - mask) * x
