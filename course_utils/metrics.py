"""Hole-only metrics and the simple baselines every method is compared with.

Taught in: 02_ddpm_from_scratch_masked_mnist.

Only the missing pixels (m = 0) are scored, with images mapped to [0, 1]:

* ``hole_psnr = 10 log10(1 / MSE_hole)`` per image, then averaged over images;
* ``hole_l1``  = mean absolute error over the hole, per image, then averaged.

Known pixels are excluded because a method that keeps them (data consistency) would
otherwise get credit for copying the input.
"""

from __future__ import annotations

import torch

from .data import check_images, to_unit_range
from .masks import check_mask

# A perfect reconstruction has MSE 0 and infinite PSNR; per-image MSE is floored here (= 100 dB).
MSE_FLOOR = 1e-10


def _hole_errors(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor):
    check_images(pred, "prediction")
    check_images(target, "target")
    check_mask(mask, like=target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    hole = (1 - mask).flatten(1)
    n_hole = hole.sum(dim=1)
    if torch.any(n_hole == 0):
        raise ValueError("every mask needs at least one missing pixel (m = 0) for hole-only metrics")
    diff = (to_unit_range(pred) - to_unit_range(target)).flatten(1)
    return diff, hole, n_hole


def hole_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error over the hole, images in [0, 1]; shape N."""
    diff, hole, n_hole = _hole_errors(pred, target, mask)
    return (diff**2 * hole).sum(dim=1) / n_hole


def hole_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR over the hole: 10 log10(1 / MSE_hole), images in [0, 1]; shape N (average it yourself)."""
    return 10 * torch.log10(1.0 / hole_mse(pred, target, mask).clamp_min(MSE_FLOOR))


def hole_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute error over the hole, images in [0, 1]; shape N."""
    diff, hole, n_hole = _hole_errors(pred, target, mask)
    return (diff.abs() * hole).sum(dim=1) / n_hole


def hole_metrics(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Mean hole PSNR and hole L1 over the batch, as plain floats."""
    return {
        "hole_psnr": hole_psnr(pred, target, mask).mean().item(),
        "hole_l1": hole_l1(pred, target, mask).mean().item(),
    }


def zero_fill(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The observation as it is: y = m * x0, so missing pixels read 0 (mid-grey on the [-1, 1] scale)."""
    check_mask(mask, like=y)
    return mask * y


def nearest_fill(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each missing pixel takes the value of the nearest known pixel (Euclidean distance; ties: lowest index).

    An image with no known pixel is left as zero fill.
    """
    check_mask(mask, like=y)
    n, c, h, w = y.shape
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    coords = torch.stack([yy.flatten(), xx.flatten()], dim=1).float().to(y.device)
    dist = torch.cdist(coords, coords)  # HW x HW distances between pixel centres
    known = mask[:, 0].flatten(1) > 0  # N x HW
    big = torch.finfo(dist.dtype).max
    source = torch.empty(n, h * w, dtype=torch.long, device=y.device)
    for i in range(0, n, 64):  # chunks keep the N x HW x HW distance table small
        k = known[i : i + 64, None, :]
        source[i : i + 64] = torch.where(k, dist[None], torch.full_like(dist[None], big)).argmin(dim=2)
    filled = torch.gather(y.flatten(2), 2, source[:, None, :].expand(n, c, h * w)).view(n, c, h, w)
    filled = torch.where(known.any(dim=1).view(n, 1, 1, 1), filled, y)
    return mask * y + (1 - mask) * filled
