"""Noise schedules and the forward (noising) process.

Taught in: 01_forward_process.

Notation (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", DDPM; Nichol & Dhariwal
2021, "Improved DDPM", iDDPM), written once here and used the same way everywhere:

* ``T``          number of diffusion steps.
* ``beta_t``     variance added at step t;  ``alpha_t = 1 - beta_t``.
* ``alpha_bar_t`` = prod_{i <= t} alpha_i, the share of the signal's power left at step t.
* ``SNR(t)``     = alpha_bar_t / (1 - alpha_bar_t), the signal-to-noise ratio of x_t.

Timesteps are indexed ``t = 0, ..., T-1`` (as in diffusers): index t is the paper's step t + 1,
so ``x_t`` has been noised t + 1 times and ``alpha_bar`` of "one step before index 0" is 1. The clean
image is always a separate variable ``x0``, never an entry of these tables (notebook 01 says the same).
All tables are float64 for accuracy; they are cast to the image's dtype when used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .data import check_images

SCHEDULE_NAMES = ("linear", "cosine", "quadratic")


@dataclass(frozen=True)
class Schedule:
    """A beta schedule and everything derived from it (all 1-D float64 tensors of length T). Taught in notebook 01."""

    name: str
    betas: torch.Tensor

    @property
    def T(self) -> int:
        return self.betas.shape[0]

    @property
    def alphas(self) -> torch.Tensor:
        """alpha_t = 1 - beta_t (DDPM eq. 4 context)."""
        return 1.0 - self.betas

    @property
    def alpha_bars(self) -> torch.Tensor:
        """alpha_bar_t = prod_{i<=t} alpha_i (DDPM, below eq. 4)."""
        return torch.cumprod(self.alphas, dim=0)

    @property
    def snr(self) -> torch.Tensor:
        """SNR(t) = alpha_bar_t / (1 - alpha_bar_t) (Kingma et al. 2021, eq. 2 context)."""
        ab = self.alpha_bars
        return ab / (1.0 - ab)

    @property
    def log_snr(self) -> torch.Tensor:
        """log SNR(t) = log alpha_bar_t - log(1 - alpha_bar_t)."""
        ab = self.alpha_bars
        return torch.log(ab) - torch.log1p(-ab)


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """beta_t evenly spaced from ``beta_start`` to ``beta_end`` (DDPM section 4).

    The DDPM values are for T = 1000; for another T they are scaled by 1000 / T (iDDPM
    section 3.2) so that the total amount of noise stays about the same. Taught in notebook 01."""
    scale = 1000 / T
    return torch.linspace(beta_start * scale, beta_end * scale, T, dtype=torch.float64)


def quadratic_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """sqrt(beta_t) evenly spaced, then squared (the "quad" schedule of DDPM's code; diffusers' scaled_linear)."""
    scale = 1000 / T
    return torch.linspace((beta_start * scale) ** 0.5, (beta_end * scale) ** 0.5, T, dtype=torch.float64) ** 2


def cosine_alpha_bar(u: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """f(u) = cos^2(((u + s) / (1 + s)) * pi / 2) for u = t / T in [0, 1] (iDDPM eq. 17, before normalising)."""
    return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """beta_t = 1 - alpha_bar(t+1) / alpha_bar(t), clipped at ``max_beta`` (iDDPM eq. 17 and the clip after it)."""
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = cosine_alpha_bar(u, s)
    return (1.0 - f[1:] / f[:-1]).clamp(max=max_beta)


def make_schedule(name: str = "cosine", T: int = 1000) -> Schedule:
    """The schedule called ``name`` (one of :data:`SCHEDULE_NAMES`) with ``T`` steps.

    Taught in notebook 01; used in notebooks 02, 03."""
    makers = {"linear": linear_betas, "cosine": cosine_betas, "quadratic": quadratic_betas}
    if name not in makers:
        raise ValueError(f"Unknown schedule {name!r}: choose one of {', '.join(SCHEDULE_NAMES)}.")
    if not isinstance(T, int) or T < 2:
        raise ValueError(f"T must be an integer >= 2, got {T!r}")
    return Schedule(name, makers[name](T))


def at(values: torch.Tensor, t: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
    """values[t], shaped N x 1 x 1 x 1 to broadcast against the batch ``x`` (t: one index or one per image).

    Taught in notebook 01."""
    t = torch.as_tensor(t, device=values.device).long()
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a single index or one index per image ({x.shape[0]}), got shape {tuple(t.shape)}")
    if torch.any(t < 0) or torch.any(t >= values.shape[0]):
        raise ValueError(f"timesteps must lie in [0, {values.shape[0] - 1}], got {t.min().item()}..{t.max().item()}")
    return values[t].to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.ndim - 1)))


def q_sample(x0: torch.Tensor, t, schedule: Schedule, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, a draw from q(x_t | x0) (DDPM eq. 4).

    Taught in notebook 01; used in notebooks 02, 03."""
    check_images(x0, "x0")
    if eps.shape != x0.shape:
        raise ValueError(f"eps must have x0's shape {tuple(x0.shape)}, got {tuple(eps.shape)}")
    ab = at(schedule.alpha_bars, t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def q_step(x_prev: torch.Tensor, t, schedule: Schedule, eps: torch.Tensor) -> torch.Tensor:
    """One forward step x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps, a draw from q(x_t | x_{t-1}) (DDPM eq. 2).

    Taught in notebook 01."""
    a = at(schedule.alphas, t, x_prev)
    return a.sqrt() * x_prev + (1 - a).sqrt() * eps
