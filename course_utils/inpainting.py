"""Training-free inpainting with an unconditional prior: replacement, RePaint resampling, and DDNM's projection.

Taught in: 05_unconditional_prior_adaptation. The prior eps_theta(x_t, t) was trained to generate digits and knows
nothing of masks; every sampler here makes it inpaint by acting on its reverse process from outside, and they
differ in where they act and in how many network calls they spend:

- **replacement** (ground-truth noise injection; Song et al. 2021, "Score-Based Generative Modeling", appendix I.2):
  after every reverse step the known pixels become the observation noised to the step landed on. It is
  :func:`~course_utils.diffusion.sample` with :class:`~course_utils.diffusion.Replacement`, one call per step.
  The unknown pixels never see the known ones except through the network's next call, so the border can stay
  incoherent.
- **RePaint** (Lugmayr et al. 2022, Algorithm 1 and section 4.2): the same step, but after every ``jump_length``
  steps down the chain jumps back up by ``jump_length`` steps (pure forward noising, no network call) and
  descends again, ``jump_n_sample`` times in all, so the unknown region is harmonised with the known one.
  :func:`repaint_walk` is the schedule of up and down moves (the one of diffusers' ``RePaintScheduler``),
  :func:`repaint_levels` the timesteps it visits, and :func:`repaint` the course's one sampling loop along them.
- **DDNM** (Wang et al. 2023, "Zero-Shot Image Restoration Using Denoising Diffusion Null-Space Model"): a DDIM
  step whose x0_hat first takes the known pixels, x0_hat <- m * y + (1 - m) * x0_hat
  (:class:`~course_utils.diffusion.NullSpaceProjection`), on a few levels, each repeated (DDNM+'s time travel).

Network calls are what cost: a RePaint walk has more entries than calls (the up moves are free), and
:func:`walk_calls` counts the calls. :data:`SAMPLERS` registers the three with notebook 05's settings, which
``eval --sampler``, notebook 06's benchmark and :func:`~course_utils.prior.prior_method` read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .diffusion import Denoiser, NullSpaceProjection, Replacement, ddim_inpaint, sample, timesteps
from .masks import check_mask


def replacement_inpaint(denoiser: Denoiser, y: torch.Tensor, mask: torch.Tensor, steps: int, step: str = "ddpm",
                        eta: float = 1.0, generator: torch.Generator | None = None,
                        trajectory: list | None = None) -> torch.Tensor:
    """Ground-truth noise injection with an unconditional ``denoiser``: ``steps`` reverse steps (trailing
    timesteps, DDPM or DDIM), the known pixels replaced by y noised to s after each, kept exactly at the end.
    One network call per step (notebook 05): notebook 03's :func:`~course_utils.diffusion.ddim_inpaint` without
    repeats, on DDPM's step by default."""
    return ddim_inpaint(denoiser, y, mask, steps, eta, 1, generator, trajectory, step)


def ddnm_inpaint(denoiser: Denoiser, y: torch.Tensor, mask: torch.Tensor, steps: int, eta: float = 0.85,
                 repeats: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """DDNM for a mask (notebook 05's fewer-call sampler): DDIM over ``steps`` trailing timesteps with
    x0_hat <- m * y + (1 - m) * x0_hat before each step (DDNM eq. 13), each step run ``repeats`` times with
    re-noising in between (DDNM+'s "time travel" of one step). ``steps * repeats`` network calls."""
    rule = NullSpaceProjection(y, mask)  # checks y and the mask
    ts = timesteps(denoiser.schedule.T, steps, "trailing")
    return sample(denoiser, y, ts, "ddim", eta, rule, repeats, generator)


def repaint_walk(steps: int, jump_length: int = 10, jump_n_sample: int = 10) -> list[int]:
    """RePaint's schedule as indices into a grid of ``steps`` noise levels (0 = least noisy), in walking order.

    Start at the top (index steps - 1) and walk down one index at a time; at every index j = 0, L, 2L, ... below
    steps - L (L = ``jump_length``), the first ``jump_n_sample`` - 1 arrivals jump back up L indices, one at a
    time, before walking down again (Lugmayr et al. 2022, section 4.2 and their figure of the schedule; diffusers'
    ``RePaintScheduler.set_timesteps`` builds the same list). An entry lower than the one before it is a step
    down (one network call); a higher one is a step up (forward noising, no call). Taught in notebook 05.
    """
    if steps < 1 or jump_length < 1 or jump_n_sample < 1:
        raise ValueError(f"steps, jump_length and jump_n_sample must be >= 1, got {steps}, {jump_length}, "
                         f"{jump_n_sample}")
    jumps = {j: jump_n_sample - 1 for j in range(0, steps - jump_length, jump_length)}
    walk, i = [], steps
    while i >= 1:
        i -= 1
        walk.append(i)
        if jumps.get(i, 0) > 0:
            jumps[i] -= 1
            walk += range(i + 1, i + 1 + jump_length)
            i += jump_length
    return walk


def walk_calls(walk: list[int]) -> int:
    """Network calls of a RePaint walk: its steps down (the first entry is one). Notebook 05.

    The paper's setting (250 steps, jump length 10, 10 resamplings) has 4570 entries and 2410 calls.
    """
    return sum(1 for i, e in enumerate(walk) if i == 0 or e < walk[i - 1])


def repaint_levels(T: int, steps: int, jump_length: int = 10, jump_n_sample: int = 10,
                   spacing: str = "trailing") -> list[int]:
    """RePaint's walk as the timesteps it visits, from the top to the clean image (-1): a grid of ``steps`` noise
    levels with ``spacing``, and after each entry e of :func:`repaint_walk` the level below e (a step down from
    level e lands on e - 1; a step up to entry u re-noises from level u - 2 to u - 1). Notebook 05."""
    grid = timesteps(T, steps, spacing)[::-1]  # ascending: grid[0] least noisy
    walk = repaint_walk(steps, jump_length, jump_n_sample)
    return [grid[walk[0]]] + [grid[e - 1] if e >= 1 else -1 for e in walk]


def repaint(denoiser: Denoiser, y: torch.Tensor, mask: torch.Tensor, steps: int, jump_length: int = 10,
            jump_n_sample: int = 10, eta: float = 1.0, spacing: str = "trailing",
            generator: torch.Generator | None = None) -> torch.Tensor:
    """RePaint (Lugmayr et al. 2022, Algorithm 1) over ``steps`` noise levels with ``spacing``: the course's one
    loop :func:`~course_utils.diffusion.sample` along :func:`repaint_levels`, each step down DDIM's step with
    ``eta`` (1: DDPM's posterior noise) followed by :class:`~course_utils.diffusion.Replacement` (Algorithm 1,
    lines 4-8), each step up forward noising q(x_t | x_s) (diffusers' ``undo_step`` composes single-step noisings
    to the same level). One draw per step down serves the unknown pixels' step and the known pixels' noise, as
    diffusers' ``RePaintScheduler.step`` does. The finished sample keeps the known pixels exactly. Taught in
    notebook 05.
    """
    ts = repaint_levels(denoiser.schedule.T, steps, jump_length, jump_n_sample, spacing)
    return sample(denoiser, y, ts, "ddim", eta, Replacement(y, mask, denoiser.schedule), generator=generator,
                  shared_noise=True)


def border_region(mask: torch.Tensor, width: int = 2) -> torch.Tensor:
    """The missing pixels within ``width`` pixels (chessboard distance) of a known pixel: 1 there, else 0.

    Where replacement's incoherence shows (notebook 05): the known region dilated by a (2 width + 1)-square
    max-pool, intersected with the missing region. Score a method there with the harness's metrics on this mask's
    complement, ``metrics.psnr_on_mask(pred, x0, 1 - border_region(m))``.
    """
    check_mask(mask)
    if width < 1:
        raise ValueError(f"width must be at least 1 pixel, got {width}")
    near_known = F.max_pool2d(mask, 2 * width + 1, stride=1, padding=width)
    return near_known * (1 - mask)


# --- One registry of the training-free samplers, with the settings notebook 05 uses (and notebook 06 reports). ---

# notebook 05's settings, chosen on validation digits with the shipped prior (docs/design.md). RePaint: jump back 5
# levels, walk each stretch 30 times (three times the paper's resampling count). DDNM (ddnm_settings): DDIM with
# this eta on DDNM_LEVELS noise levels, each run several times with re-noising in between (DDNM+'s time travel).
REPAINT = {"jump_length": 5, "jump_n_sample": 30}
DDNM_ETA = 0.85
DDNM_LEVELS = 9


def ddnm_settings(levels: int) -> dict:
    """Notebook 05's DDNM for a prior sampled over ``levels`` levels: a budget of a tenth of the network calls of
    RePaint (:data:`REPAINT`) over those levels, at least 2, spent on :data:`DDNM_LEVELS` DDIM steps (fewer if the
    budget is smaller), each repeated as often as the budget allows, with eta :data:`DDNM_ETA`."""
    calls = max(2, walk_calls(repaint_walk(levels, **REPAINT)) // 10)
    steps = min(DDNM_LEVELS, calls)
    return {"steps": steps, "eta": DDNM_ETA, "repeats": calls // steps}


@dataclass(frozen=True)
class Sampler:
    """A training-free sampler of an unconditional prior (notebook 05): ``run(denoiser, y, mask, generator,
    **settings)``; ``defaults(levels)`` are notebook 05's settings for a prior sampled over ``levels`` noise
    levels; ``flags`` maps the command line's ``--steps`` / ``--eta`` / ``--jump-length`` / ``--resamplings``
    (their argparse names) to the settings they set. A new sampler is one function and one entry here."""

    name: str
    description: str
    run: Callable[..., torch.Tensor]
    defaults: Callable[[int], dict]
    flags: dict


SAMPLERS: dict[str, Sampler] = {s.name: s for s in (
    Sampler("replacement", "DDPM steps, known pixels replaced by the observation noised to each level",
            lambda d, y, m, g, steps: replacement_inpaint(d, y, m, steps, "ddpm", generator=g),
            lambda levels: {"steps": levels}, {"steps": "steps"}),
    Sampler("repaint", "RePaint: replacement, jumping back and walking each jump again",
            lambda d, y, m, g, steps, jump_length, jump_n_sample: repaint(d, y, m, steps, jump_length, jump_n_sample,
                                                                        generator=g),
            lambda levels: {"steps": levels, **REPAINT},
            {"steps": "steps", "jump_length": "jump_length", "resamplings": "jump_n_sample"}),
    Sampler("ddnm", "DDNM: DDIM with the null-space projection of x0_hat on a few levels, each repeated, at a tenth "
            "of RePaint's calls",
            lambda d, y, m, g, steps, eta, repeats: ddnm_inpaint(d, y, m, steps, eta, repeats, g),
            ddnm_settings,
            {"steps": "steps", "eta": "eta", "resamplings": "repeats"}),
)}


def sampler_settings(name: str, levels: int, **given) -> dict:
    """The settings of sampler ``name``: notebook 05's :attr:`Sampler.defaults` for ``levels`` noise levels, with
    the ``given`` command-line values (by their flag names; None = not given) in their place. A flag the sampler
    has no use for is a ``ValueError`` that says so (notebook 05 and ``eval --sampler``)."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {tuple(SAMPLERS)}, got {name!r}")
    sampler, settings = SAMPLERS[name], SAMPLERS[name].defaults(levels)
    for flag, value in given.items():
        if value is None:
            continue
        if flag not in sampler.flags:
            raise ValueError(f"--{flag.replace('_', '-')} is not a setting of the {name} sampler "
                             f"(it takes {', '.join('--' + f.replace('_', '-') for f in sampler.flags)})")
        if flag != "eta" and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
        settings[sampler.flags[flag]] = value
    return settings
