"""Hole-only metrics and the simple baselines every method is compared with.

Taught in: 02_ddpm_from_scratch_masked_mnist (hole PSNR / L1, zero and nearest-pixel fill), 03_ddim_center_hole_data_consistency
(SSIM, the training-set nearest neighbour, the evaluation behind `python -m course_utils eval`).

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


def psnr_on_mask(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR over the hole: 10 log10(1 / MSE_hole), images in [0, 1]; shape N (average it yourself)."""
    return 10 * torch.log10(1.0 / hole_mse(pred, target, mask).clamp_min(MSE_FLOOR))


def l1_on_mask(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute error over the hole, images in [0, 1]; shape N."""
    diff, hole, n_hole = _hole_errors(pred, target, mask)
    return (diff.abs() * hole).sum(dim=1) / n_hole


def hole_metrics(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Mean hole PSNR and hole L1 over the batch, as plain floats."""
    return {
        "hole_psnr": psnr_on_mask(pred, target, mask).mean().item(),
        "hole_l1": l1_on_mask(pred, target, mask).mean().item(),
    }


def zero_fill(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The observation as it is: y = m * x0, so missing pixels read 0 (mid-grey on the [-1, 1] scale)."""
    check_mask(mask, like=y)
    return mask * y


def nearest_pixel_fill(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
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


def nearest_neighbour_fill(y: torch.Tensor, mask: torch.Tensor, library: torch.Tensor, chunk: int = 256) -> torch.Tensor:
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
    """Per-image SSIM averaged over the hole (m = 0) only; shape N. 1 means a perfect hole."""
    check_mask(mask, like=target)
    hole = (1 - mask).flatten(1)
    if torch.any(hole.sum(dim=1) == 0):
        raise ValueError("every mask needs at least one missing pixel (m = 0) for hole-only metrics")
    return (ssim_map(pred, target).flatten(1) * hole).sum(dim=1) / hole.sum(dim=1)


def evaluate_center_hole(
    model,
    cfg,
    images: torch.Tensor,
    library: torch.Tensor,
    steps: int,
    eta: float = 0.0,
    dc_repeats: int = 1,
    k: int = 8,
    hole: int | None = None,
    seed: int = 0,
    batch_size: int = 128,
    progress: bool = True,
) -> tuple[dict, torch.Tensor]:
    """Score a notebook-03 model on ``images`` with a centre hole; returns (results, samples K x N x ...).

    For each image: K DDIM samples (seeds seed, seed + 1, ...; :func:`~course_utils.diffusion.ddim_inpaint`).
    Reported (hole-only, images in [0, 1], averaged over images): PSNR, L1 and SSIM of the first
    sample ("single") and of the mean of the K samples ("mean_k", the posterior mean); the zero-fill
    and training-set nearest-neighbour baselines (:func:`nearest_neighbour_fill` over ``library``);
    the largest change to a known pixel (0 with data consistency); sampling seconds per image and sample.
    This is what ``python -m course_utils eval`` prints and writes as JSON.
    """
    import time

    from tqdm.auto import tqdm

    from .diffusion import ddim_inpaint
    from .masks import center_hole
    from .schedules import make_schedule

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    hole = cfg.hole if hole is None else hole
    device = next(model.parameters()).device
    schedule = make_schedule(cfg.schedule, cfg.T)
    mask = center_hole(images.shape[0], hole)
    y = mask * images
    samples = torch.empty((k,) + tuple(images.shape))
    seconds = 0.0
    chunks = list(range(0, images.shape[0], batch_size))
    bar = tqdm(total=len(chunks) * k, desc="sampling", disable=not progress)
    for j in range(k):
        gen = torch.Generator().manual_seed(seed + j)
        for i in chunks:
            sl = slice(i, i + batch_size)
            start = time.perf_counter()
            out = ddim_inpaint(model, y[sl].to(device), mask[sl].to(device), schedule, steps, eta, dc_repeats,
                               gen, prediction=cfg.prediction)
            samples[j, sl] = out.cpu()
            seconds += time.perf_counter() - start
            bar.update(1)
    bar.close()
    mean = samples.mean(0)

    def scores(pred):
        return {"hole_psnr": psnr_on_mask(pred, images, mask).mean().item(),
                "hole_l1": l1_on_mask(pred, images, mask).mean().item(),
                "ssim": ssim_on_mask(pred, images, mask).mean().item()}

    single, mean_k = scores(samples[0]), scores(mean)
    zero = scores(zero_fill(y, mask))
    nn_fill = scores(nearest_neighbour_fill(y, mask, library))
    results = {
        name: {"single": single[name], "mean_k": mean_k[name]} for name in ("hole_psnr", "hole_l1", "ssim")
    }
    results["baselines"] = {
        "zero_fill": {key: zero[key] for key in ("hole_psnr", "hole_l1", "ssim")},
        "nearest_neighbour": {key: nn_fill[key] for key in ("hole_psnr", "hole_l1", "ssim")},
    }
    results["known_pixels_max_abs_error"] = (mask * (samples - y)).abs().max().item()
    results["seconds_per_image"] = seconds / (images.shape[0] * k)
    results["n_images"] = int(images.shape[0])
    results["k"] = k
    results["sampler"] = {"steps": steps, "eta": eta, "dc_repeats": dc_repeats, "hole": hole, "seed": seed}
    return results, samples
