"""Classical baselines: what every learned method has to beat, on the same observations.

Taught in: 02_ddpm_from_scratch_masked_mnist (zero fill, nearest known pixel), 03_ddim_center_hole_data_consistency
(the training-set nearest neighbour and harmonic inpainting), 04_conditional_cross_attention (each task scored
against its classical baselines through the harness); all of them are scored by :mod:`course_utils.evaluation`
and ``python -m course_utils eval``.

Mask tasks (1 = known, y = m * x0): every fill keeps the known pixels, ``m * y + (1 - m) * fill``.

* :func:`zero_fill`              the observation as it is: missing pixels read 0 (mid-grey);
* :func:`nearest_pixel_fill`     each missing pixel copies the nearest known pixel;
* :func:`nearest_neighbour_fill` the hole is copied from the training digit that best matches the known pixels;
* :func:`harmonic_fill`          Laplace's equation on the hole with the known pixels as boundary values.

Measurement tasks (no pixel known exactly): :func:`observation` (the measurement shown as an image),
:func:`smoothing` (a Gaussian denoiser for ``noise``), :func:`bicubic` (for ``lowres``) and
:func:`zero_filled_ifft` (for ``kspace``). :data:`BASELINES` says which baseline fits which task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import check_images
from .masks import check_mask
from .tasks import Observation, Task, gaussian_blur, parse_task


def zero_fill(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The observation as it is: y = m * x0, so missing pixels read 0 (mid-grey on the [-1, 1] scale).

    Taught in notebook 02."""
    check_mask(mask, like=y)
    return mask * y


def nearest_pixel_fill(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each missing pixel takes the value of the nearest known pixel (Euclidean distance; ties: lowest index).

    An image with no known pixel is left as zero fill. Taught in notebook 02."""
    check_mask(mask, like=y)
    n, c, h, w = y.shape
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    coords = torch.stack([yy.flatten(), xx.flatten()], dim=1).float().to(y.device)
    dist = torch.cdist(coords, coords)  # HW x HW distances between pixel centres
    known = mask[:, 0].flatten(1) > 0  # N x HW
    big = torch.finfo(dist.dtype).max
    source = torch.empty(n, h * w, dtype=torch.long, device=y.device)
    for i in range(0, n, 64):  # chunks keep the N x HW x HW distance table small
        source[i : i + 64] = torch.where(known[i : i + 64, None, :], dist, big).argmin(dim=2)
    filled = torch.gather(y.flatten(2), 2, source[:, None, :].expand(n, c, h * w)).view(n, c, h, w)
    filled = torch.where(known.any(dim=1).view(n, 1, 1, 1), filled, y)
    return mask * y + (1 - mask) * filled


def nearest_neighbour_fill(y: torch.Tensor, mask: torch.Tensor, library: torch.Tensor,
                           chunk: int = 256) -> torch.Tensor:
    """Fill each hole from the training image that agrees best with the known pixels (taught in notebook 03).

    For each image, j* = argmin_j || m * (library_j - y) ||^2 over the ``library`` images (the
    training split, N_lib x 1 x H x W in [-1, 1]); the hole takes library_j*'s pixels and the
    known pixels stay: m * y + (1 - m) * library_j*.
    """
    check_mask(mask, like=y)
    check_images(library, "library")
    if library.shape[1:] != y.shape[1:]:
        raise ValueError(f"library images must be {tuple(y.shape[1:])}, got {tuple(library.shape[1:])}")
    lib = library.to(y.device).flatten(1)
    lib_sq = lib**2
    best = torch.empty(y.shape[0], dtype=torch.long, device=y.device)
    for i in range(0, y.shape[0], chunk):
        m, obs = mask[i : i + chunk].flatten(1), (mask * y)[i : i + chunk].flatten(1)
        # ||m (l - y)||^2 = m.l^2 - 2 (m y).l + m.y^2; the last term is the same for every l
        dist = m @ lib_sq.T - 2 * obs @ lib.T
        best[i : i + chunk] = dist.argmin(dim=1)
    return mask * y + (1 - mask) * lib[best].view_as(y)


_NEIGHBOURS = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def _neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of the 4 neighbours of every pixel inside the image (outside counts as absent)."""
    return F.conv2d(x, _NEIGHBOURS.to(x), padding=1)


def harmonic_fill(y: torch.Tensor, mask: torch.Tensor, tol: float = 1e-6, max_iter: int = 2000) -> torch.Tensor:
    """Harmonic inpainting: the hole solves Laplace's equation with the known pixels as boundary values.

    Each missing pixel p becomes the mean of its 4 neighbours, deg(p) x_p - sum_{q ~ p} x_q = 0, where the
    neighbours inside the image count (so the image border is a mirror: a Neumann condition) and known
    neighbours are fixed to y. That is a sparse symmetric positive-definite system A x_U = b over the missing
    pixels U (b = the sum of each missing pixel's known neighbours), solved here for the whole batch at once
    by conjugate gradients in float64 until the residual is below ``tol`` times ||b|| (our own code, tested
    against SciPy's sparse direct solver ``scipy.sparse.linalg.spsolve`` on the same system). It fills a
    linear ramp exactly and never creates values outside the range of the known pixels (maximum principle).
    An image with no known pixel is left as zero fill.
    """
    check_mask(mask, like=y)
    if y.shape[1] != 1:
        raise ValueError(f"harmonic_fill takes one channel, got {y.shape[1]}")
    m = mask.double()
    unknown = 1 - m
    known_values = (m * y).double()
    deg = _neighbour_sum(torch.ones_like(m))

    def apply(v):  # A v on the unknown pixels (v is zero on the known ones)
        return unknown * (deg * v - _neighbour_sum(unknown * v))

    b = unknown * _neighbour_sum(known_values)
    solvable = m.flatten(1).sum(1) > 0
    x, r, p = torch.zeros_like(b), b, b  # r and p are rebound below, never changed in place
    rs = (r * r).flatten(1).sum(1)
    stop = (tol * b.flatten(1).norm(dim=1)) ** 2
    for _ in range(max_iter):
        active = (rs > stop) & solvable
        if not active.any():
            break
        ap = apply(p)
        pap = (p * ap).flatten(1).sum(1)
        alpha = torch.where(active, rs / pap.clamp_min(1e-300), 0.0).view(-1, 1, 1, 1)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).flatten(1).sum(1)
        beta = torch.where(active, rs_new / rs.clamp_min(1e-300), 0.0).view(-1, 1, 1, 1)
        p = r + beta * p
        rs = torch.where(active, rs_new, rs)
    filled = torch.where(solvable.view(-1, 1, 1, 1), known_values + unknown * x, known_values)
    return filled.to(y.dtype)


def observation(y: torch.Tensor) -> torch.Tensor:
    """The measurement itself as the answer, clipped to the image range [-1, 1] (clipping only lowers the error)."""
    return y.clamp(-1, 1)


SMOOTHING_SIGMAS = (0.5, 0.7, 1.0, 1.4, 2.0)


def smoothing(y: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian-smoothing denoiser: blur the noisy image with standard deviation ``sigma`` pixels, clip to [-1, 1]."""
    return gaussian_blur(y, sigma).clamp(-1, 1)


def choose_smoothing_sigma(task: Task | str, library: torch.Tensor, n: int = 256, seed: int = 12345) -> float:
    """The blur width of :func:`smoothing` that best denoises ``task`` on ``n`` training digits (never test ones).

    Tries :data:`SMOOTHING_SIGMAS` and the observation itself (width 0), keeps the lowest mean squared error.
    """
    task = parse_task(task)
    x0 = library[:n]
    y = task.observe(x0, seed).y
    errors = {0.0: ((observation(y) - x0) ** 2).mean().item()}
    errors.update({s: ((smoothing(y, s) - x0) ** 2).mean().item() for s in SMOOTHING_SIGMAS})
    return min(errors, key=errors.get)


def bicubic(small: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Bicubic upsampling of the low-resolution measurement back to ``size`` x ``size``, clipped to [-1, 1]."""
    return F.interpolate(small, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def zero_filled_ifft(coefficients: torch.Tensor) -> torch.Tensor:
    """The classical MRI reconstruction: the inverse FFT with the missing coefficients set to 0 (real part), clipped."""
    return torch.fft.ifft2(coefficients).real.clamp(-1, 1)


@dataclass(frozen=True)
class Baseline:
    """A classical method: ``fill(observation, library)`` returns one reconstruction, ``fits(task)`` says where it
    applies."""

    name: str
    description: str
    fits: Callable[[Task], bool]
    fill: Callable[[Observation, torch.Tensor], torch.Tensor]


def _smoothing_fill(obs: Observation, library: torch.Tensor) -> torch.Tensor:
    sigma = choose_smoothing_sigma(obs.task, library)
    return observation(obs.y) if sigma == 0 else smoothing(obs.y, sigma)


def _mask_task(task: Task) -> bool:
    return task.is_mask_task


BASELINES: dict[str, Baseline] = {b.name: b for b in (
    Baseline("zero_fill", "missing pixels read 0 (mid-grey)", _mask_task, lambda o, lib: zero_fill(o.y, o.mask)),
    Baseline("nearest_pixel", "each missing pixel copies the nearest known pixel", _mask_task,
             lambda o, lib: nearest_pixel_fill(o.y, o.mask)),
    Baseline("nearest_neighbour", "the hole copied from the best-matching training digit", _mask_task,
             lambda o, lib: nearest_neighbour_fill(o.y, o.mask, lib)),
    Baseline("harmonic", "Laplace's equation on the hole, known pixels as boundary", _mask_task,
             lambda o, lib: harmonic_fill(o.y, o.mask)),
    Baseline("observation", "the measurement itself, clipped to [-1, 1]",
             lambda t: t.name in ("noise", "lowres", "blur"), lambda o, lib: observation(o.y)),
    Baseline("smoothing", "Gaussian smoothing, width chosen on training digits", lambda t: t.name == "noise",
             _smoothing_fill),
    Baseline("bicubic", "bicubic upsampling of the low-resolution image", lambda t: t.name == "lowres",
             lambda o, lib: bicubic(o.raw["small"], o.y.shape[-1])),
    Baseline("zero_filled_ifft", "inverse FFT with the missing coefficients set to 0", lambda t: t.name == "kspace",
             lambda o, lib: zero_filled_ifft(o.raw["kspace"])),
)}


def baselines_for(task: Task | str) -> list[str]:
    """The names of the baselines that fit ``task``, in :data:`BASELINES` order."""
    task = parse_task(task)
    return [name for name, b in BASELINES.items() if b.fits(task)]


def get_baseline(name: str, task: Task | str | None = None) -> Baseline:
    """The baseline called ``name``; with ``task``, also check that it fits (a clear ``ValueError`` if not)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    if task is not None:
        task = parse_task(task)
        if not BASELINES[name].fits(task):
            raise ValueError(f"baseline {name!r} does not fit task {task.spec!r}; for {task.spec} use one of "
                             f"{', '.join(baselines_for(task))}")
    return BASELINES[name]
