"""The reverse process, as one sampling contract: a denoiser, timesteps, a step, a consistency rule, one loop.

Taught in: 02_ddpm_from_scratch_masked_mnist (the DDPM step and ancestral sampling) and
03_ddim_center_hole_data_consistency (other network outputs, the DDIM step, data consistency with repeats).

Notation as in :mod:`course_utils.schedules`: timesteps t = 0 .. T-1, the clean image x0 apart, and index -1
standing for the clean image (alpha_bar = 1) as the target of the last reverse step. The pieces:

- a :class:`Denoiser` wraps a network with what it predicts (eps, x0 or v; the conversions are
  :func:`x0_and_eps` and, for training, :func:`diffusion_target`) and what it is told besides (x_t, t): the mask
  and the observation for notebooks 02-03, a condition image in 04, nothing for the prior of 05;
- :func:`timesteps` walks T-1 down to 0 with a named spacing;
- a step goes from t to the next timestep s given (x0_hat, eps_hat): :func:`ddpm_step` (the posterior
  q(x_s | x_t, x0), DDPM eq. 6-7, on a respaced chain as in iDDPM, Nichol & Dhariwal 2021, section 4) or
  :func:`ddim_step` (Song et al. 2021, eq. 12, with eta choosing sigma by eq. 16);
- a consistency rule acts on each step: none, :class:`Replacement` (after the step, known pixels become the
  observation noised to s), or :class:`NullSpaceProjection` (before the step, x0_hat takes the observation's known
  pixels: DDNM, Wang et al. 2023, eq. 13 for a mask), optionally repeated by re-noising s -> t and denoising again
  (the resampling of RePaint, Lugmayr et al. 2022, Algorithm 1);
- :func:`sample` is the one loop, along a walk of noise levels (down: a step; up: re-noising): every sampler of
  the course is that loop with its settings, :func:`ddpm_sample` (notebook 02), :func:`ddim_inpaint` (notebook
  03) and notebook 05's replacement, RePaint and DDNM (:mod:`course_utils.inpainting`).

Noise is always drawn on the CPU from a ``torch.Generator``, so a seed gives the same samples on every device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .data import check_images
from .masks import check_mask
from .schedules import Schedule, at

PREDICTIONS = ("eps", "x0", "v")
SPACINGS = ("linspace", "trailing", "leading")
STEPS = ("ddpm", "ddim")


def alpha_bar_or_one(schedule: Schedule, s: int) -> float:
    """alpha_bar_s, with alpha_bar of index -1 (the clean image) equal to 1 (notebooks 02 and 03)."""
    return 1.0 if s < 0 else float(schedule.alpha_bars[s])


# --- What the network predicts: one set of conversions (notebook 03, section 2). ---


def x0_and_eps(
    output: torch.Tensor, x_t: torch.Tensor, t, schedule: Schedule, prediction: str = "eps", clip_x0: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a network output into (x0_hat, eps_hat) with x_t = sqrt(alpha_bar_t) x0_hat + sqrt(1 - alpha_bar_t) eps_hat.

    Taught in notebook 02 (eps: x0_hat by DDPM eq. 15) and notebook 03 (x0 and v).
    eps: x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t);
    x0:  eps_hat = (x_t - sqrt(alpha_bar_t) x0_hat) / sqrt(1 - alpha_bar_t);
    v:   x0_hat = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v,  eps_hat = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v
    (Salimans & Ho 2022, appendix D). ``t`` is one timestep or one per image. With ``clip_x0`` x0_hat is clipped
    to [-1, 1] and eps_hat moved so that the pair still explains x_t (where nothing was clipped, eps_hat is unchanged).
    """
    ab = schedule.alpha_bars  # coefficients in float64, cast once: the same numbers as math.sqrt of Python floats
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


def diffusion_target(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, schedule: Schedule, prediction: str):
    """What the network should output for x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps (notebook 03):
    eps, x0, or v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0. :func:`x0_and_eps` inverts it."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        ab = at(schedule.alpha_bars, t, x0)
        return ab.sqrt() * eps - (1 - ab).sqrt() * x0
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


@dataclass
class Denoiser:
    """A network with its prediction type and its conditioning: ``denoiser(x_t, t) -> (x0_hat, eps_hat)``.

    Taught in notebook 03 (section 4); every sampler of the course calls the network through one.
    The network is called as ``network(x_t, t_batch, *condition)``: ``condition`` is (mask, y) for the models of
    notebooks 02-03, and () for an unconditional prior. A self-conditioned network (``network.self_condition``)
    also gets the previous x0_hat (None at the first call). The output is read as ``prediction`` (eps, x0 or v)
    by :func:`x0_and_eps`, clipping x0_hat to [-1, 1] when ``clip_x0``.
    """

    network: Callable[..., torch.Tensor]
    schedule: Schedule
    prediction: str = "eps"
    condition: tuple = field(default_factory=tuple)
    clip_x0: bool = True

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")

    @property
    def self_condition(self) -> bool:
        return bool(getattr(self.network, "self_condition", False))

    def __call__(self, x_t: torch.Tensor, t: int, x0_prev: torch.Tensor | None = None):
        t_batch = torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.long)
        extra = (x0_prev,) if self.self_condition else ()
        out = self.network(x_t, t_batch, *self.condition, *extra)
        return x0_and_eps(out, x_t, t, self.schedule, self.prediction, self.clip_x0)


# --- Timesteps (notebook 02: linspace; notebook 03: trailing). ---


def timesteps(T: int, steps: int, spacing: str = "trailing") -> list[int]:
    """``steps`` decreasing timesteps from T-1 for a sampler; each reverse step goes to the next, the last to the clean image.

    ``linspace`` (notebook 02): round(linspace(T-1, 0, steps)), ending at 0, diffusers' ``timestep_spacing="linspace"``
    (for steps = 1 diffusers gives [0]; a sampler starting from pure noise needs [T-1]).
    ``trailing`` (notebook 03, DDIM section 4.2): round(T - i T/steps) - 1, evenly spaced by T/steps, so the last
    step goes from T/steps - 1 straight to the clean image; diffusers' ``"trailing"`` (Lin et al. 2024, table 2).
    ``leading`` (the grid of diffusers' ``RePaintScheduler``; notebook 03 names it): i * (T // steps) for
    i = steps-1 .. 0, ending at 0 and starting at (steps - 1)(T // steps), T - T // steps when steps divides T (so
    not from pure noise unless steps == T).
    With steps == T all three are T-1, ..., 0.
    """
    if not 1 <= steps <= T:
        raise ValueError(f"steps must lie in [1, T={T}], got {steps}")
    if spacing == "linspace":
        return [T - 1] if steps == 1 else torch.linspace(T - 1, 0, steps).round().long().tolist()
    if spacing == "trailing":
        return [int(round(T - i * T / steps)) - 1 for i in range(steps)]
    if spacing == "leading":
        return [i * (T // steps) for i in reversed(range(steps))]
    raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")


# --- Steps from t to s (s = -1: the clean image). ---


def _check_pair(t: int, s: int, schedule: Schedule) -> None:
    if not -1 <= s < t < schedule.T:
        raise ValueError(f"need -1 <= s < t < T={schedule.T}, got t={t}, s={s}")


def posterior(x0: torch.Tensor, x_t: torch.Tensor, t: int, s: int, schedule: Schedule):
    """Mean and variance of q(x_s | x_t, x0) for s < t (DDPM eq. 6-7 with alpha_t -> alpha_bar_t / alpha_bar_s; notebook 02).

    mean = sqrt(alpha_bar_s) beta_ts / (1 - alpha_bar_t) * x0 + sqrt(alpha_ts) (1 - alpha_bar_s) / (1 - alpha_bar_t) * x_t
    var  = (1 - alpha_bar_s) / (1 - alpha_bar_t) * beta_ts,   where alpha_ts = alpha_bar_t / alpha_bar_s, beta_ts = 1 - alpha_ts.

    ``s = -1`` means the clean image (alpha_bar = 1, variance 0).
    """
    _check_pair(t, s, schedule)
    ab_t, ab_s = alpha_bar_or_one(schedule, t), alpha_bar_or_one(schedule, s)
    alpha_ts = ab_t / ab_s
    beta_ts = 1.0 - alpha_ts
    mean = (math.sqrt(ab_s) * beta_ts / (1 - ab_t)) * x0 + (math.sqrt(alpha_ts) * (1 - ab_s) / (1 - ab_t)) * x_t
    var = (1 - ab_s) / (1 - ab_t) * beta_ts
    return mean, var


def ddpm_step(x0_hat: torch.Tensor, x_t: torch.Tensor, t: int, s: int, schedule: Schedule, noise: torch.Tensor):
    """x_s = posterior mean + sqrt(posterior var) noise (DDPM Algorithm 2, line 4, with x0_hat in eq. 7; notebook 02).

    At ``s = -1`` the variance is 0 and the step returns the posterior mean.
    """
    mean, var = posterior(x0_hat, x_t, t, s, schedule)
    return mean + math.sqrt(var) * noise if s >= 0 else mean


def ddim_sigma(schedule: Schedule, t: int, s: int, eta: float) -> float:
    """sigma_t(eta) = eta sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_s) (DDIM eq. 16).

    Notebook 03's DDIM step (:func:`ddim_step`). eta = 1 gives the DDPM posterior's standard deviation (eq. 7);
    eta = 0 a deterministic step.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    ab_t, ab_s = alpha_bar_or_one(schedule, t), alpha_bar_or_one(schedule, s)
    return eta * math.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))


def ddim_step(
    x0_hat: torch.Tensor, eps_hat: torch.Tensor, t: int, s: int, schedule: Schedule, eta: float, noise: torch.Tensor
) -> torch.Tensor:
    """x_s = sqrt(alpha_bar_s) x0_hat + sqrt(1 - alpha_bar_s - sigma^2) eps_hat + sigma noise (DDIM eq. 12; notebook 03).

    ``s = -1`` is the clean image (alpha_bar = 1): the step returns x0_hat.
    """
    _check_pair(t, s, schedule)
    ab_s = alpha_bar_or_one(schedule, s)
    sigma = ddim_sigma(schedule, t, s, eta)
    direction = math.sqrt(max(1 - ab_s - sigma**2, 0.0))
    return math.sqrt(ab_s) * x0_hat + direction * eps_hat + sigma * noise


def renoise(x_s: torch.Tensor, s: int, t: int, schedule: Schedule, noise: torch.Tensor) -> torch.Tensor:
    """A draw from q(x_t | x_s) for s < t: sqrt(alpha_bar_t / alpha_bar_s) x_s + sqrt(1 - alpha_bar_t / alpha_bar_s) noise.

    The forward process from s to t in one jump (DDPM eq. 4 between two noise levels); notebook 03 uses it to
    repeat a step (resampling).
    """
    _check_pair(t, s, schedule)
    ratio = alpha_bar_or_one(schedule, t) / alpha_bar_or_one(schedule, s)
    return math.sqrt(ratio) * x_s + math.sqrt(1 - ratio) * noise


# --- Consistency with the observation (notebook 02: replacement; notebook 03: after every DDIM step). ---


def _randn(shape, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(device=like.device, dtype=like.dtype)


def noised_known(y: torch.Tensor, s: int, schedule: Schedule, generator: torch.Generator | None,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
    """The observation noised to the step being landed on: sqrt(alpha_bar_s) y + sqrt(1 - alpha_bar_s) noise (notebook 02).

    It draws its noise (unless ``noise`` is given) even at s = -1, where it returns y exactly, so the random stream
    does not depend on s.
    """
    ab_s = alpha_bar_or_one(schedule, s)
    return math.sqrt(ab_s) * y + math.sqrt(1 - ab_s) * (_randn(y.shape, generator, y) if noise is None else noise)


@dataclass
class KnownPixels:
    """What both data-consistency rules share: the observation y on the known pixels (mask 1), checked once, and
    the finished sample that keeps those pixels exactly, m * y + (1 - m) * x."""

    y: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        check_images(self.y, "y")
        check_mask(self.mask, like=self.y)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.mask * self.y + (1 - self.mask) * x


@dataclass
class Replacement(KnownPixels):
    """Data consistency by replacement (notebooks 02 and 03): after a step lands on s, the known pixels
    become the observation noised to s, x_s <- m * (sqrt(alpha_bar_s) y + sqrt(1 - alpha_bar_s) noise) + (1 - m) * x_s,
    and the finished sample keeps them exactly."""

    schedule: Schedule

    def project(self, x0_hat: torch.Tensor) -> torch.Tensor:
        """Replacement leaves the network's x0_hat as it is (it acts on x_s after the step)."""
        return x0_hat

    def __call__(self, x_s: torch.Tensor, s: int, generator: torch.Generator | None,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.mask * noised_known(self.y, s, self.schedule, generator, noise) + (1 - self.mask) * x_s


@dataclass
class NullSpaceProjection(KnownPixels):
    """Data consistency on the clean estimate (DDNM, Wang et al. 2023, eq. 13 with A = diag(m), so A^+ = A):
    before each step x0_hat <- m * y + (1 - m) * x0_hat, the range part from the observation and the null-space
    part from the network; the step then uses this x0_hat with the network's eps_hat, x_s is left alone, and the
    finished sample keeps the known pixels exactly. Taught in notebook 05 (the fewer-call sampler)."""

    def project(self, x0_hat: torch.Tensor) -> torch.Tensor:
        return self.mask * self.y + (1 - self.mask) * x0_hat

    def __call__(self, x_s: torch.Tensor, s: int, generator: torch.Generator | None,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
        return x_s


# --- The loop. ---


def repeated(ts: list[int], repeats: int = 1) -> list[int]:
    """The walk of levels that runs each step of ``ts`` (then the clean image, -1) ``repeats`` times: t, s, t, s,
    ... s, re-noising s -> t between runs (notebook 03's data-consistency repeats; RePaint's resampling with jump
    length 1). Used by :func:`sample`."""
    if repeats < 1:
        raise ValueError(f"repeats (dc_repeats) must be at least 1, got {repeats}")
    levels = [*ts, -1] if ts and ts[-1] != -1 else list(ts)
    walk = levels[:1]
    for t, s in zip(levels, levels[1:]):
        walk += [s, t] * (repeats - 1) + [s] if s < t else [s]
    return walk


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    like: torch.Tensor,
    ts: list[int],
    step: str = "ddim",
    eta: float = 0.0,
    consistency: Replacement | NullSpaceProjection | None = None,
    repeats: int = 1,
    generator: torch.Generator | None = None,
    trajectory: list | None = None,
    shared_noise: bool = False,
) -> torch.Tensor:
    """Reverse diffusion along the walk of noise levels ``ts`` (notebook 03 writes this loop out; notebook 02 its
    DDPM case; notebook 05 walks it up and down for RePaint).

    x ~ N(0, I) shaped like ``like`` (on its device) at the first level ``ts[0]``, the highest; the walk ends at
    the clean image (-1, appended when missing). A move **down** t -> s is one step, one network call:
    (x0_hat, eps_hat) = denoiser(x_t, t, previous x0_hat); with a ``consistency`` rule x0_hat <- its ``project``;
    x_s by ``step`` (``"ddpm"``: :func:`ddpm_step`; ``"ddim"``: :func:`ddim_step` with ``eta``); then the rule (if
    any) on x_s. A move **up** s -> t re-noises, x_t ~ q(x_t | x_s) (:func:`renoise`), no call. With ``repeats``
    = r > 1 every step runs r times, re-noised to t in between (:func:`repeated`). The random draws come from
    ``generator`` in a fixed order: x_T; then per step the step's noise (only when the step is stochastic and
    s >= 0) and the consistency rule's, per move up the re-noising's. ``shared_noise`` (RePaint's convention, as
    in diffusers' ``RePaintScheduler``): one draw per step serves both the step and the rule. ``trajectory``
    collects (t, x_t, x0_hat) of the first step from each level on the CPU when it is a list.
    """
    if step not in STEPS:
        raise ValueError(f"step must be one of {STEPS}, got {step!r}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    walk = repeated(ts, repeats)
    T = denoiser.schedule.T
    if len(walk) < 2 or walk[0] != max(walk) or not walk[0] < T or any(a == b or b < -1 for a, b in zip(walk, walk[1:])):
        raise ValueError(f"timesteps must walk from the highest level (< T={T}) to -1 without standing still, "
                         f"got {ts[:5]}...")
    schedule = denoiser.schedule
    x, x0_hat, seen = _randn(like.shape, generator, like), None, set()
    for t, s in zip(walk, walk[1:]):
        if s > t:
            x = renoise(x, t, s, schedule, _randn(like.shape, generator, like))
            continue
        x0_hat, eps_hat = denoiser(x, t, x0_hat)
        if consistency is not None:
            x0_hat = consistency.project(x0_hat)
        if trajectory is not None and t not in seen:
            trajectory.append((t, x.cpu(), x0_hat.cpu()))
        seen.add(t)
        stochastic = shared_noise or (s >= 0 and (step == "ddpm" or eta > 0))
        noise = _randn(like.shape, generator, like) if stochastic else torch.zeros_like(like)
        if step == "ddpm":
            x = ddpm_step(x0_hat, x, t, s, schedule, noise)
        else:
            x = ddim_step(x0_hat, eps_hat, t, s, schedule, eta, noise)
        if consistency is not None:
            x = consistency(x, s, generator, noise if shared_noise else None)
    return consistency.finish(x) if consistency is not None else x


def ddpm_sample(denoiser: Denoiser, y: torch.Tensor, mask: torch.Tensor, steps: int | None = None,
                replace_known: bool = False, generator: torch.Generator | None = None,
                trajectory: list | None = None) -> torch.Tensor:
    """Ancestral DDPM sampling of notebook 02 (DDPM Algorithm 2, on ``steps`` timesteps with ``linspace`` spacing).

    :func:`sample` with the ``ddpm`` step and, with ``replace_known``, :class:`Replacement` (the output then keeps
    the known pixels exactly; without it the model's conditioning alone fills the hole and the output is returned
    as sampled). Notebook 02's ``denoiser`` reads ``network(x_t, t, mask, y)`` as eps.
    """
    check_mask(mask, like=y)
    check_images(y, "y")
    rule = Replacement(y, mask, denoiser.schedule) if replace_known else None
    ts = timesteps(denoiser.schedule.T, steps or denoiser.schedule.T, "linspace")
    return sample(denoiser, y, ts, "ddpm", consistency=rule, generator=generator, trajectory=trajectory)


def ddim_inpaint(denoiser: Denoiser, y: torch.Tensor, mask: torch.Tensor, steps: int = 50, eta: float = 0.0,
                 dc_repeats: int = 1, generator: torch.Generator | None = None, trajectory: list | None = None,
                 step: str = "ddim") -> torch.Tensor:
    """DDIM sampling with data consistency after every step, repeated ``dc_repeats`` times (notebook 03, section 4).

    :func:`sample` on ``trailing`` timesteps with the ``ddim`` step (``eta``) and :class:`Replacement`: for each
    t > s, x0_hat and eps_hat, x_s by DDIM eq. 12, known pixels <- y noised to s, and with r = ``dc_repeats`` > 1
    the step is re-noised to t and run again, r times in all. The output keeps the known pixels exactly.
    ``step="ddpm"`` takes DDPM's posterior step instead (notebook 05's replacement sampler).
    """
    rule = Replacement(y, mask, denoiser.schedule)  # checks y and the mask
    ts = timesteps(denoiser.schedule.T, steps, "trailing")
    return sample(denoiser, y, ts, step, eta, rule, dc_repeats, generator, trajectory)
