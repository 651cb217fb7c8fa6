"""Binary inpainting masks: 1 = known pixel, 0 = missing.

Taught in: 01_forward_process (the gallery), 02_ddpm_from_scratch_masked_mnist (training mix).

Every generator returns a float tensor N x 1 x size x size of zeros and ones, is batched, and
is reproducible: pass ``seed`` (an int) or a ``torch.Generator``. The observation of an image
``x0`` under mask ``m`` is ``y = m * x0`` (:func:`observe`), so missing pixels read 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MASK_KINDS = ("center", "rect", "sparse", "strokes", "procedural")  # the mask tasks of course_utils.tasks
# Procedural masks hit their target missing fraction to within this (absolute) tolerance.
PROCEDURAL_TOLERANCE = 0.002


def _generator(seed: int | torch.Generator | None) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(0 if seed is None else int(seed))


def _check_n_size(n: int, size: int) -> None:
    if n <= 0:
        raise ValueError(f"number of masks must be positive, got {n}")
    if size < 4:
        raise ValueError(f"mask size must be at least 4, got {size}")


def check_mask(mask: torch.Tensor, like: torch.Tensor | None = None, name: str = "mask") -> torch.Tensor:
    """Raise ``ValueError`` unless ``mask`` holds only 0 and 1 and (if given) has the shape of ``like``.

    Every function that takes a mask checks it (notebook 02's samplers first).
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if like is not None and mask.shape != like.shape:
        raise ValueError(
            f"{name} must have the image's shape {tuple(like.shape)} (1 = known, 0 = missing), got {tuple(mask.shape)}"
        )
    if mask.ndim != 4:
        raise ValueError(f"{name} must have shape N x 1 x H x W, got {tuple(mask.shape)}")
    if mask.numel() and not torch.all((mask == 0) | (mask == 1)):
        bad = mask[(mask != 0) & (mask != 1)].flatten()[:3].tolist()
        raise ValueError(f"{name} must contain only 0 (missing) and 1 (known), found values such as {bad}")
    return mask


def observe(x0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The observation y = m * x0 (missing pixels read 0). Taught in notebook 01; used in notebook 02."""
    check_mask(mask, like=x0)
    return mask * x0


def missing_fraction(mask: torch.Tensor) -> torch.Tensor:
    """Fraction of missing pixels (m = 0) per mask, shape N. Taught in notebook 01; used in notebooks 02, 03."""
    check_mask(mask)
    return 1.0 - mask.flatten(1).float().mean(dim=1)


def center_hole(n: int, hole: int = 12, size: int = 32) -> torch.Tensor:
    """A square hole of side ``hole`` centred on the canvas (same for every image).

    Taught in notebook 02; used in notebook 03."""
    _check_n_size(n, size)
    if not 0 < hole <= size:
        raise ValueError(f"hole side must be between 1 and {size}, got {hole}")
    m = torch.ones(n, 1, size, size)
    start = (size - hole) // 2
    m[:, :, start : start + hole, start : start + hole] = 0
    return m


def random_rectangles(
    n: int, count: tuple[int, int] = (1, 3), side: tuple[int, int] = (6, 14), size: int = 32, seed=None
) -> torch.Tensor:
    """``count`` (inclusive range) axis-aligned rectangles per image, each side in ``side``, placed at random.

    The ``rect`` kind of :func:`make_masks` (notebook 01's gallery, notebook 02's training mix).
    """
    _check_n_size(n, size)
    if not (1 <= count[0] <= count[1] and 1 <= side[0] <= side[1] <= size):
        raise ValueError(f"need 1 <= count[0] <= count[1] and 1 <= side[0] <= side[1] <= {size}, got {count}, {side}")
    g = _generator(seed)
    m = torch.ones(n, 1, size, size)
    ys = torch.arange(size).view(1, size, 1)
    xs = torch.arange(size).view(1, 1, size)
    k = torch.randint(count[0], count[1] + 1, (n,), generator=g)
    for j in range(count[1]):
        h = torch.randint(side[0], side[1] + 1, (n,), generator=g)
        w = torch.randint(side[0], side[1] + 1, (n,), generator=g)
        top = (torch.rand(n, generator=g) * (size - h + 1)).long()
        left = (torch.rand(n, generator=g) * (size - w + 1)).long()
        inside = (
            (ys >= top.view(n, 1, 1)) & (ys < (top + h).view(n, 1, 1))
            & (xs >= left.view(n, 1, 1)) & (xs < (left + w).view(n, 1, 1))
        )
        inside &= (j < k).view(n, 1, 1)
        m[:, 0][inside] = 0
    return m


def sparse_pixels(n: int, keep: float | torch.Tensor = 0.5, size: int = 32, seed=None) -> torch.Tensor:
    """Each pixel known independently with probability ``keep`` (one number or one per mask; E[known] = keep):
    the ``sparse:P`` task with P = ``keep``. The ``sparse`` kind of :func:`make_masks` (notebook 01's gallery,
    notebook 02's training mix)."""
    _check_n_size(n, size)
    keep = torch.as_tensor(keep, dtype=torch.float32).flatten()
    if keep.numel() not in (1, n):
        raise ValueError(f"keep must be one number or {n} numbers, got {keep.numel()}")
    if torch.any(keep < 0) or torch.any(keep > 1):
        raise ValueError(f"the share of known pixels must be in [0, 1], got {keep.min():.3f}..{keep.max():.3f}")
    g = _generator(seed)
    return (torch.rand(n, 1, size, size, generator=g) >= (1 - keep).view(-1, 1, 1, 1)).float()


def _segment_distance(ys, xs, p0, p1):
    """Distance from each grid point to the segment p0-p1 (batched over the first axis)."""
    p0, d = p0.view(-1, 2, 1, 1), (p1 - p0).view(-1, 2, 1, 1)
    py, px = ys - p0[:, 0], xs - p0[:, 1]
    u = ((py * d[:, 0] + px * d[:, 1]) / (d**2).sum(dim=1).clamp_min(1e-8)).clamp(0, 1)
    return torch.sqrt((py - u * d[:, 0]) ** 2 + (px - u * d[:, 1]) ** 2)


def brush_strokes(
    n: int,
    strokes: tuple[int, int] = (1, 3),
    vertices: tuple[int, int] = (3, 6),
    width: tuple[float, float] = (2.0, 4.0),
    step: tuple[float, float] = (4.0, 9.0),
    size: int = 32,
    seed=None,
) -> torch.Tensor:
    """Free-form brush strokes: random walks of thick line segments (the free-form masks of DeepFill v2).

    The ``strokes`` kind of :func:`make_masks` (notebook 01's gallery, notebook 02's training mix).
    """
    _check_n_size(n, size)
    if not (1 <= strokes[0] <= strokes[1] and 2 <= vertices[0] <= vertices[1] and 0 < width[0] <= width[1]):
        raise ValueError(f"invalid stroke ranges: strokes={strokes}, vertices={vertices}, width={width}")
    g = _generator(seed)
    coords = torch.arange(size, dtype=torch.float32)
    ys, xs = coords.view(1, size, 1), coords.view(1, 1, size)
    covered = torch.zeros(n, size, size, dtype=torch.bool)
    n_strokes = torch.randint(strokes[0], strokes[1] + 1, (n,), generator=g)
    for s in range(strokes[1]):
        active = (s < n_strokes).view(n, 1, 1)
        point = torch.rand(n, 2, generator=g) * (size - 1)
        angle = torch.rand(n, generator=g) * 2 * math.pi
        radius = (width[0] + torch.rand(n, generator=g) * (width[1] - width[0])) / 2
        n_vertices = torch.randint(vertices[0], vertices[1] + 1, (n,), generator=g)
        for v in range(vertices[1] - 1):
            angle = angle + (torch.rand(n, generator=g) - 0.5) * 2 * math.pi / 3
            length = step[0] + torch.rand(n, generator=g) * (step[1] - step[0])
            direction = torch.stack([torch.sin(angle), torch.cos(angle)], dim=1)
            nxt = (point + length.view(n, 1) * direction).clamp(0, size - 1)
            seg = _segment_distance(ys, xs, point, nxt) <= radius.view(n, 1, 1)
            covered |= seg & active & (v < n_vertices - 1).view(n, 1, 1)
            point = nxt
    return (~covered).float().unsqueeze(1)


def procedural_masks(n: int, missing: float | torch.Tensor, size: int = 32, seed=None) -> torch.Tensor:
    """Free-form blob masks with a chosen missing fraction in [0.05, 0.60].

    A smooth random field (white noise, blurred at a random scale per mask) is ranked and the
    ``round(missing * size**2)`` highest pixels are marked missing, so every mask hits its target
    to within half a pixel (well inside :data:`PROCEDURAL_TOLERANCE`). ``missing`` is one number
    or one per mask. Taught in notebook 01."""
    _check_n_size(n, size)
    target = torch.as_tensor(missing, dtype=torch.float32).flatten()
    if target.numel() == 1:
        target = target.expand(n)
    if target.numel() != n:
        raise ValueError(f"missing must be one number or {n} numbers, got {target.numel()}")
    if torch.any(target < 0.05) or torch.any(target > 0.60):
        raise ValueError(f"missing fractions must lie in [0.05, 0.60], got {target.min():.3f}..{target.max():.3f}")
    g = _generator(seed)
    field = torch.zeros(n, 1, size, size)
    for i in range(n):
        cells = int(torch.randint(3, 9, (1,), generator=g))  # blob scale: a 3x3 to 8x8 grid of random values
        coarse = torch.randn(1, 1, cells, cells, generator=g)
        field[i] = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0]
    field = field + 1e-3 * torch.randn(n, 1, size, size, generator=g)  # break ties
    k = torch.round(target * size * size).long()
    ranks = field.flatten(1).argsort(dim=1, descending=True).argsort(dim=1)  # 0 = the highest pixel
    return (ranks >= k.view(n, 1)).float().view(n, 1, size, size)


def duplicate_count(masks: torch.Tensor) -> int:
    """How many masks of a batch repeat an earlier one exactly (0: all unique).

    Taught in notebook 05, which asserts that every split's masks are unique and that no two splits share one
    (``duplicate_count(torch.cat([a, b]))`` counts both kinds of repeat).
    """
    check_mask(masks)
    keys = {bytes(m.flatten().bool().numpy()) for m in masks.cpu()}
    return masks.shape[0] - len(keys)


def make_masks(kind: str, n: int, value: float | torch.Tensor | None = None, size: int = 32, seed=None) -> torch.Tensor:
    """``n`` masks of one ``kind`` (one of :data:`MASK_KINDS`, the names of the mask tasks of
    :mod:`course_utils.tasks`), with the task's number ``value``: the hole side for ``center`` (default 12), the
    share of pixels **kept** for ``sparse`` (default 0.5), the share **missing** for ``procedural`` (default
    0.3); one number or one per mask; ``rect`` and ``strokes`` take none. Taught in notebook 01; used in
    notebook 02 and by every mask task."""
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; choose from {MASK_KINDS}")
    if value is not None and kind in ("rect", "strokes"):
        raise ValueError(f"{kind} masks take no value, got {value}")
    if kind == "center":
        return center_hole(n, 12 if value is None else int(value), size)
    if kind == "rect":
        return random_rectangles(n, size=size, seed=seed)
    if kind == "strokes":
        return brush_strokes(n, size=size, seed=seed)
    if kind == "sparse":
        return sparse_pixels(n, 0.5 if value is None else value, size, seed)
    return procedural_masks(n, 0.3 if value is None else value, size, seed)


def mixed_masks(n: int, kinds: tuple[str, ...] = MASK_KINDS, hole: int = 12, size: int = 32, seed=None) -> torch.Tensor:
    """A batch in which each mask is drawn from a kind chosen uniformly from ``kinds`` (notebook 02's training
    mix): ``center`` holes of side ``hole``, ``sparse`` keeping 10 to 70 percent of the pixels, ``procedural``
    blobs hiding 5 to 60 percent (each drawn uniformly per mask). Taught in notebook 02."""
    _check_n_size(n, size)
    unknown = [k for k in kinds if k not in MASK_KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown mask kinds {unknown}; choose from {MASK_KINDS}")
    g = _generator(seed)
    choice = torch.randint(0, len(kinds), (n,), generator=g)
    m = torch.empty(n, 1, size, size)
    for j, kind in enumerate(kinds):
        idx = (choice == j).nonzero().flatten()
        if len(idx) == 0:
            continue
        k = len(idx)
        if kind == "sparse":
            value = 1 - (0.3 + 0.6 * torch.rand(k, generator=g))  # 10 to 70 percent of the pixels kept
        elif kind == "procedural":
            value = 0.05 + 0.55 * torch.rand(k, generator=g)  # 5 to 60 percent missing
        else:
            value = hole if kind == "center" else None
        m[idx] = make_masks(kind, k, value, size, g)
    return m
