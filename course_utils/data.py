"""MNIST as the course uses it: 32x32 tensors in [-1, 1], labels kept.

Taught in: 01_forward_process (loading and scaling), 02_ddpm_from_scratch_masked_mnist (splits).

MNIST's 28x28 digits are padded with background (-1) to 32x32 so that a U-Net can halve
the resolution three times. Files come through ``torchvision.datasets.MNIST`` rooted at
:func:`course_utils.config.data_dir`; they are downloaded when the machine can reach the
internet, and otherwise the error says which files to put where.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import data_dir

MNIST_RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGE_SIZE = 32


class MNISTNotFoundError(FileNotFoundError):
    """MNIST is neither on disk nor downloadable."""


@dataclass(frozen=True)
class DigitSet:
    """Images N x 1 x 32 x 32 in [-1, 1] and their labels N, on the CPU."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index) -> "DigitSet":
        index = torch.as_tensor(index) if not isinstance(index, slice) else index
        return DigitSet(self.images[index], self.labels[index])


def check_images(x: torch.Tensor, name: str = "images", atol: float = 1e-4) -> torch.Tensor:
    """Raise ``ValueError`` unless ``x`` is a float batch N x C x H x W with values in [-1, 1]."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape N x C x H x W, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor scaled to [-1, 1], got dtype {x.dtype}")
    if x.numel() and (x.min() < -1 - atol or x.max() > 1 + atol):
        raise ValueError(
            f"{name} must lie in [-1, 1] (the course's image scale), "
            f"got values in [{x.min().item():.3f}, {x.max().item():.3f}]; use to_model_range() on [0, 1] images"
        )
    return x


def to_model_range(x01: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]: x = 2 u - 1."""
    return x01 * 2 - 1


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]: u = (x + 1) / 2 (the range metrics and plots use)."""
    return (x + 1) / 2


def prepare_digits(raw: torch.Tensor) -> torch.Tensor:
    """uint8 N x 28 x 28 -> float N x 1 x 32 x 32 in [-1, 1], padded with background (-1)."""
    if raw.ndim != 3 or raw.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images N x H x W, got {raw.dtype} {tuple(raw.shape)}")
    x = to_model_range(raw.float().div(255.0)).unsqueeze(1)
    pad_h, pad_w = IMAGE_SIZE - x.shape[-2], IMAGE_SIZE - x.shape[-1]
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"images larger than {IMAGE_SIZE}x{IMAGE_SIZE}: {tuple(raw.shape)}")
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=-1.0)


def _missing_message(root: Path, cause: Exception) -> str:
    files = "\n".join(f"  {root / 'MNIST' / 'raw' / f}" for f in MNIST_RAW_FILES)
    return (
        f"MNIST was not found under {root} and could not be downloaded ({cause}).\n"
        f"Put the four uncompressed IDX files here (or their .gz versions in the same folder):\n{files}\n"
        "or set COURSE_DATA_DIR to a folder that already holds MNIST/raw/ "
        "(for example the course's offline pack, shared/data/mnist-offline)."
    )


def load_mnist(split: str = "train", root: str | Path | None = None, download: bool = True) -> DigitSet:
    """Load MNIST's ``train`` or ``test`` split as a :class:`DigitSet` (32x32, [-1, 1]).

    Files are read from ``root/MNIST/raw`` (default root: :func:`course_utils.config.data_dir`).
    When they are missing and ``download`` is true, torchvision downloads them; when that fails
    too, :class:`MNISTNotFoundError` names the folder and the files to put there. Taught in notebook 01."""
    from torchvision import datasets

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root) if root is not None else data_dir()
    train = split == "train"
    try:
        ds = datasets.MNIST(str(root), train=train, download=False)
    except RuntimeError as missing:
        if not download:
            raise MNISTNotFoundError(_missing_message(root, missing)) from missing
        try:
            ds = datasets.MNIST(str(root), train=train, download=True)
        except Exception as failed:  # no network, proxy, disk full, ...
            raise MNISTNotFoundError(_missing_message(root, failed)) from failed
    return DigitSet(prepare_digits(ds.data), ds.targets.clone().long())


def train_val_split(digits: DigitSet, val_size: int, seed: int = 0) -> tuple[DigitSet, DigitSet]:
    """Shuffle with ``seed`` and carve ``val_size`` validation images off; the rest is for training."""
    if not 0 < val_size < len(digits):
        raise ValueError(f"val_size must be between 1 and {len(digits) - 1}, got {val_size}")
    perm = torch.randperm(len(digits), generator=torch.Generator().manual_seed(seed))
    return digits[perm[val_size:]], digits[perm[:val_size]]


def take_subset(digits: DigitSet, size: int, seed: int = 0) -> DigitSet:
    """A seeded random subset of ``size`` images (all of them, shuffled, when fewer are there).

    Taught in notebook 01."""
    if size <= 0:
        raise ValueError(f"subset size must be positive, got {size}")
    perm = torch.randperm(len(digits), generator=torch.Generator().manual_seed(seed))
    return digits[perm[: min(size, len(digits))]]


def load_splits(profile, seed: int = 0, root: str | Path | None = None) -> tuple[DigitSet, DigitSet, DigitSet]:
    """(train, val, test) sized by a :class:`~course_utils.config.Profile` (or a ``CenterHoleConfig``: any object
    with ``train_size``, ``val_size`` and ``eval_size``).

    Validation is carved from MNIST's training split (tune on it): ``profile.val_size`` images,
    but never more than a tenth of what is there (a 5,000-image offline subset keeps 4,500 for
    training). Test images are MNIST's test split, ``profile.eval_size`` of them after a seeded
    shuffle, and are only for the reported numbers. Taught in notebook 02; used in notebook 03."""
    train_all = load_mnist("train", root)
    train, val = train_val_split(train_all, min(profile.val_size, len(train_all) // 10), seed)
    train = take_subset(train, profile.train_size, seed)
    test = take_subset(load_mnist("test", root), profile.eval_size, seed)
    return train, val, test


class Batches:
    """Endless shuffled mini-batches (images, labels), reshuffled every epoch with ``generator``: ``next(it)``.

    Full batches only (one short batch if the set is smaller than a batch). Where it is in the epoch is ``state``
    (the epoch's permutation and the next position), a dict a checkpoint can carry, so a resumed run draws the very
    batches an uninterrupted one would. Notebook 02's batch order (its ``ddpm`` kind draws from one).
    """

    def __init__(self, digits: DigitSet, batch_size: int, generator: torch.Generator | None):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.digits, self.batch_size, self.generator = digits, batch_size, generator
        self.state = {"perm": None, "next": 0}

    def __iter__(self) -> "Batches":
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        n, state = len(self.digits), self.state
        if state["perm"] is None or state["next"] > max(n - self.batch_size, 0):
            state["perm"], state["next"] = torch.randperm(n, generator=self.generator), 0
        idx = state["perm"][state["next"] : state["next"] + self.batch_size]
        state["next"] += self.batch_size
        return self.digits.images[idx], self.digits.labels[idx]


batches = Batches  # notebook 02 draws its training batches with next(data.batches(train, batch_size, generator))


def random_batch(digits: DigitSet, batch_size: int, generator: torch.Generator, device=None) -> torch.Tensor:
    """``batch_size`` images drawn with replacement (indices from ``generator``, on the CPU), moved to ``device``:
    the batch the diffusion and MMSE kinds of notebooks 03 to 06 draw at each step (``ddpm`` and the classifier
    use :class:`Batches`), so a saved generator resumes it."""
    idx = torch.randint(len(digits), (batch_size,), generator=generator)
    return digits.images[idx].to(device)
