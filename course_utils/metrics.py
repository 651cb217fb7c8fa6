"""Image-quality metrics: pure functions of tensors (no sampling, no models).

Taught in: 02_ddpm_from_scratch_masked_mnist (hole PSNR / L1), 03_ddim_center_hole_data_consistency (SSIM).
The classifier-based metrics (class preservation, Frechet distance) live in :mod:`course_utils.classifier`;
running a method over a task and collecting these numbers is :mod:`course_utils.evaluation`.

Only the missing pixels (m = 0) are scored, with images mapped to [0, 1]:

* ``hole_psnr = 10 log10(1 / MSE_hole)`` per image, then averaged over images;
* ``hole_l1``  = mean absolute error over the hole, per image, then averaged.

Known pixels are excluded because a method that keeps them (data consistency) would
otherwise get credit for copying the input. A mask with no missing pixel, and the all-zero
mask of a measurement task (no pixel known exactly), both score the **whole image**.
"""

from __future__ import annotations

import math

import torch

from .data import check_images, to_unit_range
from .masks import check_mask

# A perfect reconstruction has MSE 0 and infinite PSNR; per-image MSE is floored here (= 100 dB).
MSE_FLOOR = 1e-10


def scored_region(mask: torch.Tensor) -> torch.Tensor:
    """N x HW weights of the scored pixels: the missing ones (1 - m), or every pixel where none is missing."""
    hole = (1 - mask).flatten(1)
    return torch.where(hole.sum(dim=1, keepdim=True) > 0, hole, torch.ones_like(hole))


def _region_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean of N x HW ``values`` over the scored region of ``mask``; shape N."""
    hole = scored_region(mask)
    return (values * hole).sum(dim=1) / hole.sum(dim=1)


def _unit_diff(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """pred - target on the [0, 1] scale, N x HW, once the three are checked."""
    check_images(pred, "prediction")
    check_images(target, "target")
    check_mask(mask, like=target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    return (to_unit_range(pred) - to_unit_range(target)).flatten(1)


def hole_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error over the hole, images in [0, 1]; shape N."""
    return _region_mean(_unit_diff(pred, target, mask) ** 2, mask)


def psnr_on_mask(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR over the hole: 10 log10(1 / MSE_hole), images in [0, 1]; shape N (average it yourself).

    Taught in notebook 02."""
    return 10 * torch.log10(1.0 / hole_mse(pred, target, mask).clamp_min(MSE_FLOOR))


def l1_on_mask(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute error over the hole, images in [0, 1]; shape N. Taught in notebook 02."""
    return _region_mean(_unit_diff(pred, target, mask).abs(), mask)


def hole_metrics(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Mean hole PSNR and hole L1 over the batch, as plain floats. Taught in notebook 02."""
    return {
        "hole_psnr": psnr_on_mask(pred, target, mask).mean().item(),
        "hole_l1": l1_on_mask(pred, target, mask).mean().item(),
    }


def _gaussian_window(size: int = 7, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_map(pred: torch.Tensor, target: torch.Tensor, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM (Wang et al. 2004, eq. 13) of images in [-1, 1], computed on [0, 1], shape N x 1 x H x W.

    SSIM = (2 mu_p mu_t + C1)(2 cov + C2) / ((mu_p^2 + mu_t^2 + C1)(var_p + var_t + C2)), local statistics
    under a Gaussian window (side ``window``, ``sigma``), C1 = 0.01^2, C2 = 0.03^2, reflected borders.
    """
    check_images(pred, "prediction")
    check_images(target, "target")
    if pred.shape != target.shape or pred.shape[1] != 1:
        raise ValueError(f"need two N x 1 x H x W batches of one shape, got {tuple(pred.shape)}, {tuple(target.shape)}")
    p, t = to_unit_range(pred).float(), to_unit_range(target).float()
    w = _gaussian_window(window, sigma).to(p.device)
    pad = window // 2

    def blur(z):
        return torch.nn.functional.conv2d(torch.nn.functional.pad(z, (pad,) * 4, mode="reflect"), w)

    mu_p, mu_t = blur(p), blur(t)
    var_p = blur(p * p) - mu_p**2
    var_t = blur(t * t) - mu_t**2
    cov = blur(p * t) - mu_p * mu_t
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))


def ssim_on_mask(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM averaged over the hole (m = 0) only (the whole image where nothing is missing); shape N.

    1 means a perfect hole."""
    check_mask(mask, like=target)
    return _region_mean(ssim_map(pred, target).flatten(1), mask)


def _scored_samples(samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor):
    """(samples, truth, region) once checked: the K samples and the truth on the [0, 1] scale, and which pixels of
    the flattened N x 1 x H x W batch are scored."""
    if samples.dim() != 5 or samples.shape[1:] != target.shape:
        raise ValueError(f"samples must be K x N x 1 x H x W around targets {tuple(target.shape)}, "
                         f"got {tuple(samples.shape)}")
    if samples.shape[0] < 2:
        raise ValueError("the spread of a posterior needs at least 2 samples (K >= 2)")
    check_images(samples.flatten(0, 1), "samples")
    check_images(target, "target")
    check_mask(mask, like=target)
    return to_unit_range(samples.float()), to_unit_range(target.float()), scored_region(mask).flatten() > 0


def posterior_mean_std(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel mean and standard deviation of K samples (K x N x 1 x H x W, in [-1, 1]), both N x 1 x H x W on
    the [0, 1] scale of the metrics; the standard deviation divides by K (the spread of these samples).

    Notebook 04's uncertainty map (through :func:`uncertainty_calibration`).
    """
    if samples.dim() != 5 or samples.shape[0] < 2:
        raise ValueError(f"need K x N x 1 x H x W samples with K >= 2, got {tuple(samples.shape)}")
    unit = to_unit_range(samples.float())
    return unit.mean(0), unit.std(0, correction=0)


def uncertainty_calibration(samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """How well K posterior samples know where they are wrong, over the scored pixels of all images (notebook 04).

    ``std_error_corr``: Pearson's correlation, pooled over the scored pixels, between a pixel's standard deviation
    across the samples and the absolute error of their mean; ``coverage``: the share of scored pixels whose true
    value lies within the samples' range [min_k, max_k] (ties count as inside). If the truth were one more exact
    posterior sample, the chance that it falls inside the range of K others is (K - 1) / (K + 1).
    """
    unit, truth, region = _scored_samples(samples, target, mask)
    mean, std = posterior_mean_std(samples)
    s, e = std.flatten()[region], (mean - truth).abs().flatten()[region]
    s, e = s - s.mean(), e - e.mean()
    denom = (s.norm() * e.norm()).item()
    corr = (s @ e).item() / denom if denom > 0 else float("nan")
    inside = (unit.amin(0) <= truth) & (truth <= unit.amax(0))
    return {"std_error_corr": corr, "coverage": inside.flatten()[region].float().mean().item()}


def interval_coverage(samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[float, float]:
    """A calibration curve of K posterior samples over the scored pixels (notebook 04): {nominal level: coverage}.

    The interval that drops the ``i`` lowest and ``i`` highest of a pixel's K samples, [X_(i+1), X_(K-i)] for
    i = 0, ..., floor(K/2) - 1, holds the truth when at least i + 1 samples lie below it and at least i + 1 above.
    If the truth is one more exact posterior sample, its rank among the K + 1 values is uniform, so that happens with
    probability (K - 1 - 2i) / (K + 1): the nominal level (i = 0 is the samples' range, (K - 1) / (K + 1)). Ties
    (clipped background: the truth and several samples all at -1) are broken uniformly at random, and the coverage
    is that tie-break's exact average: a truth above ``b`` samples and equal to ``e`` has b, b + 1, ..., b + e
    samples below it with equal chances. So an exact sampler scores its nominal level at every level, ties or not.
    """
    k = samples.shape[0]
    if k < 2:
        raise ValueError(f"a calibration curve needs K >= 2 samples per image, got {k}")
    unit, truth, region = _scored_samples(samples, target, mask)
    below = (unit < truth).sum(0).flatten()[region, None]  # per scored pixel: samples strictly below the truth
    equal = (unit == truth).sum(0).flatten()[region, None]  # and samples equal to it
    u = torch.arange(k + 1)[None]  # after tie-breaking, below + u samples lie below the truth, u = 0 .. equal
    curve = {}
    for i in range(k // 2):
        lo, hi = i + 1, k - 1 - i  # samples below the truth, after tie-breaking, for it to be inside
        u_inside = (below + u >= lo) & (below + u <= hi) & (u <= equal)
        share = u_inside.sum(1).float() / (equal[:, 0] + 1).float()  # each u equally likely
        curve[(k - 1 - 2 * i) / (k + 1)] = share.mean().item()
    return dict(sorted(curve.items()))


def conformal_scale(samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, level: float = 0.9,
                    floor: float = 1e-2) -> float:
    """Split-conformal scale factor (notebook 04): a lambda such that mean +- lambda (std + floor) holds the truth
    in at least a share ``level`` of the scored pixels of these (validation) images.

    The nonconformity score of a pixel is |truth - mean| / (std + floor) (mean and std over the K samples, [0, 1]
    units; ``floor`` keeps a pixel whose samples agree from scoring infinity), and lambda is the
    ceil((n + 1) level)-th smallest of the n scores (split conformal's quantile, slightly above the plain
    ``level`` quantile; infinity when there are too few pixels for it). On other images of the same distribution,
    :func:`scaled_interval_coverage` then comes out near ``level``. It is no guarantee here: conformal prediction
    needs exchangeable units, and those are images, not the pixels of one image, so the share over pixels is
    approximate (an exact guarantee would score whole images).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    scores = _conformal_scores(samples, target, mask, floor)
    n = scores.numel()
    rank = math.ceil((n + 1) * level)
    return math.inf if rank > n else scores.sort().values[rank - 1].item()


def _conformal_scores(samples, target, mask, floor):
    """|truth - mean| / (std + floor) of every scored pixel (:func:`conformal_scale`)."""
    _, truth, region = _scored_samples(samples, target, mask)
    mean, std = posterior_mean_std(samples)
    return (mean - truth).abs().flatten()[region] / (std.flatten()[region] + floor)


def scaled_interval_coverage(samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, scale: float,
                             floor: float = 1e-2) -> float:
    """The share of scored pixels whose truth lies in mean +- scale (std + floor) (notebook 04; ``scale`` from
    :func:`conformal_scale` on validation images)."""
    return (_conformal_scores(samples, target, mask, floor) <= scale).float().mean().item()
