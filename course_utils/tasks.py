"""Degradation tasks: how a clean digit becomes the observation a method has to work from.

Taught in: 04_conditional_cross_attention (every task, as the conditions of one model); used by the evaluation
harness (:mod:`course_utils.evaluation`), notebooks 03 to 06 and ``python -m course_utils eval --task SPEC``.

A task is named by one short **spec** string, the same in notebooks, on the command line and in result JSON:

====================  ==============================================================================
mask tasks            (1 = known, the observation is y = m * x0: missing pixels read 0, mid-grey)
``center:12``         a centred square hole of that side (1 to 31)
``rect``              one to three random rectangles (sides 6 to 14)
``strokes``           one to three free-form brush strokes
``procedural:A-B``    blob masks, target missing fraction drawn uniformly in [A, B] within [0.05, 0.6]
``sparse:P``          keep a random fraction P of the pixels (``sparse:A-B``: P drawn in [A, B])
measurement tasks     (no pixel is known exactly; the mask is all zeros and every pixel is scored)
``noise:S``           y = x0 + S * z, z ~ N(0, I), on the [-1, 1] scale (``noise:A-B``: S drawn in [A, B])
``lowres:F``          average-pool by F (2, 4 or 8), then upsample back with nearest neighbours
``blur:S``            Gaussian blur of standard deviation S pixels
``kspace:P``          keep a fraction P of the 2-D Fourier coefficients (the lowest frequencies always),
                      y = the zero-filled inverse transform, as in an undersampled MRI scan
====================  ==============================================================================

Every task is seeded (``seed`` an int or a ``torch.Generator``) and batched: :meth:`Task.observe` turns
N clean digits into an :class:`Observation` holding ``y``, ``mask`` and, for measurement tasks, the raw
measurement (the low-resolution image, the kept Fourier coefficients) that the classical baselines use.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import masks as masks_
from .data import check_images

MASK_TASKS = masks_.MASK_KINDS  # center, rect, sparse, strokes, procedural
MEASUREMENT_TASKS = ("noise", "lowres", "blur", "kspace")
VALID_FORMS = (
    "center:N (N = 1..31, e.g. center:12)",
    "rect",
    "strokes",
    "procedural:A-B (0.05 <= A <= B <= 0.6, e.g. procedural:0.05-0.6)",
    "sparse:P or sparse:A-B (fraction of pixels kept, 0 < P < 1, e.g. sparse:0.1)",
    "noise:S or noise:A-B (noise sigma on the [-1, 1] scale, 0 < S <= 2, e.g. noise:0.5)",
    "lowres:F (F = 2, 4 or 8)",
    "blur:S (blur sigma in pixels, 0 < S <= 4, e.g. blur:1.5)",
    "kspace:P (fraction of Fourier coefficients kept, 0 < P < 1, e.g. kspace:0.25)",
)


class TaskSpecError(ValueError):
    """A task spec that is unknown or malformed; the message lists the valid forms."""

    def __init__(self, spec: str, why: str):
        super().__init__(f"bad task {spec!r}: {why}. Valid forms: " + "; ".join(VALID_FORMS))


@dataclass
class Observation:
    """What a method is given: ``y`` (N x 1 x 32 x 32) and ``mask`` (1 = known exactly; all zeros for a
    measurement task), plus ``raw``: the measurement itself where it is not an image on the canvas
    (``lowres:F``: the N x 1 x 32/F x 32/F block averages; ``kspace``: the kept coefficients and the k-space mask)."""

    task: "Task"
    y: torch.Tensor
    mask: torch.Tensor
    raw: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.y.shape[0]

    def __getitem__(self, index) -> "Observation":
        """The observation of a subset of the images (a slice or index tensor), raw measurements included."""
        raw = {k: v[index] for k, v in self.raw.items()}
        return Observation(self.task, self.y[index], self.mask[index], raw)

    def to(self, device) -> "Observation":
        return Observation(self.task, self.y.to(device), self.mask.to(device),
                           {k: v.to(device) for k, v in self.raw.items()})


def _generator(seed) -> torch.Generator:
    return seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))


def _draw(value: tuple[float, float], n: int, g: torch.Generator) -> torch.Tensor:
    """One value per image, uniform in [low, high] (exactly ``low`` when the two are equal)."""
    low, high = value
    return low + (high - low) * torch.rand(n, generator=g) if high > low else torch.full((n,), low)


@dataclass(frozen=True)
class Task:
    """One degradation, parsed from its spec by :func:`parse_task`."""

    spec: str  # the canonical spec, e.g. "center:12" or "noise:0.5"
    name: str  # the family: one of MASK_TASKS or MEASUREMENT_TASKS
    value: tuple[float, float] = (0.0, 0.0)  # the parameter (a range; low == high for one value)

    @property
    def is_mask_task(self) -> bool:
        """True when some pixels are known exactly (y = m * x0) and only the missing ones are scored."""
        return self.name in MASK_TASKS

    @property
    def region(self) -> str:
        """What the metrics score: ``missing`` pixels for mask tasks, the whole ``image`` for measurement tasks."""
        return "missing" if self.is_mask_task else "image"

    def make_mask(self, n: int, seed=0) -> torch.Tensor:
        """The N x 1 x 32 x 32 masks of a mask task (1 = known), seeded: :func:`~course_utils.masks.make_masks`
        with this task's number (a range draws one per mask)."""
        if not self.is_mask_task:
            raise ValueError(f"{self.spec} is a measurement task: it has no mask")
        g = _generator(seed)
        value = self.value[0] if self.name == "center" else None
        if self.name in ("procedural", "sparse"):
            value = _draw(self.value, n, g)
        return masks_.make_masks(self.name, n, value, seed=g)

    def observe(self, x0: torch.Tensor, seed=0) -> Observation:
        """Degrade clean digits ``x0`` (N x 1 x 32 x 32 in [-1, 1]) into an :class:`Observation`, seeded.

        Random numbers are drawn on the CPU, so a seed gives the same observation on every device.
        """
        check_images(x0, "x0")
        if x0.shape[1:] != (1, 32, 32):
            raise ValueError(f"tasks work on N x 1 x 32 x 32 digits, got {tuple(x0.shape)}")
        n, g = x0.shape[0], _generator(seed)
        if self.is_mask_task:
            m = self.make_mask(n, g).to(x0.device)
            return Observation(self, m * x0, m)
        zeros = torch.zeros_like(x0)
        if self.name == "noise":
            sigma = _draw(self.value, n, g).view(n, 1, 1, 1).to(x0)
            return Observation(self, x0 + sigma * torch.randn(x0.shape, generator=g).to(x0), zeros)
        if self.name == "lowres":
            small = lowres_measure(x0, int(self.value[0]))
            return Observation(self, upsample_nearest(small, x0.shape[-1]), zeros, {"small": small})
        if self.name == "blur":
            return Observation(self, gaussian_blur(x0, self.value[0]), zeros)
        kmask = kspace_mask(n, self.value[0], x0.shape[-1], g).to(x0.device)
        coeffs = torch.fft.fft2(x0) * kmask
        return Observation(self, torch.fft.ifft2(coeffs).real, zeros, {"kspace": coeffs, "kmask": kmask})


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TaskSpecError(spec, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise TaskSpecError(spec, f"{text!r} is not a finite number")
    return value


def _range(text: str, spec: str) -> tuple[float, float]:
    try:  # one number (also in exponent form, 1e-1), else a range A-B
        float(text)
        parts = [text]
    except ValueError:
        parts = text.split("-") if re.fullmatch(r"[0-9.eE+]+-[0-9.eE+]+", text) else [text]
    low, high = (_number(parts[0], spec), _number(parts[-1], spec))
    if low > high:
        raise TaskSpecError(spec, f"the range {text} runs backwards")
    return low, high


def parse_task(spec: str | Task) -> Task:
    """The :class:`Task` named by ``spec`` (e.g. ``"center:12"``, ``"sparse:0.1"``, ``"noise:0.3-1.0"``).

    Raises :class:`TaskSpecError`, listing the valid forms, for an unknown or malformed spec.
    """
    if isinstance(spec, Task):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise TaskSpecError(str(spec), "a task is a non-empty string")
    text = spec.strip().lower()
    name, _, arg = text.partition(":")
    if name not in MASK_TASKS + MEASUREMENT_TASKS:
        raise TaskSpecError(spec, f"unknown task {name!r}")
    if name in ("rect", "strokes"):
        if arg:
            raise TaskSpecError(spec, f"{name} takes no parameter")
        return Task(name, name)
    if not arg:
        raise TaskSpecError(spec, f"{name} needs a parameter after ':'")
    low, high = _range(arg, spec)
    if name == "center":
        if low != high or low != int(low) or not 1 <= low <= 31:
            raise TaskSpecError(spec, "the hole side must be one whole number from 1 to 31")
        return Task(f"center:{int(low)}", name, (low, low))
    if name == "lowres":
        if low != high or low not in (2, 4, 8):
            raise TaskSpecError(spec, "the factor must be 2, 4 or 8 (it must divide 32)")
        return Task(f"lowres:{int(low)}", name, (low, low))
    # the allowed interval, its brackets saying which ends are included
    opening, lo, hi, closing = {"procedural": ("[", 0.05, 0.6, "]"), "sparse": ("(", 0.0, 1.0, ")"),
                                "noise": ("(", 0.0, 2.0, "]"), "blur": ("(", 0.0, 4.0, "]"),
                                "kspace": ("(", 0.0, 1.0, ")")}[name]
    if (low < lo if opening == "[" else low <= lo) or (high > hi if closing == "]" else high >= hi):
        raise TaskSpecError(spec, f"{name} needs values in {opening}{lo:g}, {hi:g}{closing}")
    if name in ("blur", "kspace") and low != high:
        raise TaskSpecError(spec, f"{name} takes one value, not a range")
    canonical = f"{low:g}" if low == high else f"{low:g}-{high:g}"
    return Task(f"{name}:{canonical}", name, (low, high))


def lowres_measure(x0: torch.Tensor, factor: int) -> torch.Tensor:
    """The low-resolution measurement: the mean of each ``factor`` x ``factor`` block (average pooling)."""
    return F.avg_pool2d(x0, factor)


def upsample_nearest(small: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Back to the canvas by repeating each low-resolution pixel (what ``lowres`` shows a model)."""
    return F.interpolate(small, size=(size, size), mode="nearest")


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """exp(-x^2 / (2 sigma^2)) on x = -r..r with r = ceil(3 sigma), normalised to sum 1."""
    if sigma <= 0:
        raise ValueError(f"blur sigma must be positive, got {sigma}")
    r = max(1, math.ceil(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of standard deviation ``sigma`` pixels, borders extended by reflection.

    Reflection keeps a constant image constant (a zero-padded blur would darken the border).
    """
    k = gaussian_kernel1d(sigma).to(x)
    r = k.numel() // 2
    if r >= x.shape[-1]:
        raise ValueError(f"blur sigma {sigma} is too wide for a {x.shape[-1]}-pixel image")
    c = x.shape[1]
    out = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def kspace_frequencies(size: int = 32) -> torch.Tensor:
    """|k| of every coefficient of a ``size`` x ``size`` FFT (fft2's layout, 0 = the DC term)."""
    f = torch.fft.fftfreq(size) * size
    return torch.sqrt(f.view(-1, 1) ** 2 + f.view(1, -1) ** 2)


def kspace_mask(n: int, keep: float, size: int = 32, seed=0) -> torch.Tensor:
    """N x 1 x size x size masks over the FFT's coefficients (1 = kept), a fraction ``keep`` of them.

    Half of the budget goes to the lowest frequencies (by |k|, the DC term first), as an MRI scan always
    acquires the centre of k-space; the other half is drawn at random from the rest. A coefficient is kept
    together with its mirror image at -k, so the zero-filled inverse transform is a real image. The kept
    count is ``round(keep * size**2)`` or one less (a pair cannot be split).
    """
    if not 0 < keep < 1:
        raise ValueError(f"the kept fraction must be in (0, 1), got {keep}")
    g = _generator(seed)
    total = size * size
    budget = round(keep * total)
    idx = torch.arange(total)
    mirror = ((-(idx // size)) % size) * size + ((-(idx % size)) % size)  # flat index of -k
    pair = torch.minimum(idx, mirror)  # one id per {k, -k} pair
    pairs, pair_of = torch.unique(pair, return_inverse=True)
    pair_size = torch.bincount(pair_of, minlength=len(pairs))  # 1 for the self-mirrored, else 2
    pair_freq = kspace_frequencies(size).flatten()[pairs]
    by_freq = torch.argsort(pair_freq + 1e-6 * pairs, stable=True)  # lowest first, ties by index
    low = torch.zeros(len(pairs), dtype=torch.bool)
    low[by_freq[torch.cumsum(pair_size[by_freq], 0) <= budget // 2]] = True
    # the random half: the low pairs first (key -1), then the others in random order, while the budget lasts
    key = torch.rand(n, len(pairs), generator=g).masked_fill(low, -1.0)
    order = key.argsort(dim=1)
    taken_sorted = torch.cumsum(pair_size[order], dim=1) <= budget
    taken = torch.zeros(n, len(pairs), dtype=torch.bool).scatter(1, order, taken_sorted)
    return taken[:, pair_of].float().view(n, 1, size, size)
