"""The course's MNIST classifier: the judge of class preservation and the feature space of the Frechet distance.

Taught in: 03_ddim_center_hole_data_consistency (class preservation and the Frechet distance next to PSNR); used by
:mod:`course_utils.evaluation`, notebooks 04 to 06 and ``python -m course_utils eval``.

PSNR cannot tell a blurry average from a sharp wrong digit. A small CNN trained by the course on the training
digits answers two other questions about a reconstruction: is it still the same digit (**class preservation**:
the share of reconstructions it assigns the true label), and do the reconstructions look like real digits as a
set (a **Frechet distance** between its penultimate-layer features of reconstructions and of clean digits, the
FID recipe of Heusel et al. 2017 with the course's own network instead of Inception). Nothing is downloaded: the
classifier is trained once per profile and training set (under a minute on 2 CPU cores in ``cpu``), cached under
``outputs/classifier/`` with its config, and reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .checkpoints import CheckpointMismatchError, load_checkpoint, plain, save_checkpoint
from .config import get_profile, output_dir
from .data import DigitSet, batches, check_images, load_mnist, take_subset, train_val_split


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything that defines a course classifier (a checkpoint stores it, and is reused only when it matches)."""

    profile: str
    widths: tuple[int, ...] = (16, 32, 64)  # conv channels at 32, 16 and 8 pixels
    features: int = 128  # width of the penultimate layer (the Frechet feature space)
    steps: int = 400  # optimiser steps (a budget in steps, so the full MNIST download costs no more time)
    batch_size: int = 128
    lr: float = 3e-3
    shift: int = 2  # training augmentation: random translations of up to this many pixels
    train_size: int = 60000
    val_size: int = 500


CLASSIFIERS: dict[str, ClassifierConfig] = {
    "ci": ClassifierConfig(profile="ci", widths=(8, 16, 32), features=32, steps=30, batch_size=64, train_size=512,
                           val_size=64),
    "cpu": ClassifierConfig(profile="cpu"),
    "full": ClassifierConfig(profile="full", widths=(32, 64, 128), steps=2000),
}


def classifier_config(profile: str | None = None, **changes) -> ClassifierConfig:
    """The classifier configuration of a profile (default: ``$COURSE_PROFILE``), with ``changes`` applied."""
    return dataclasses.replace(CLASSIFIERS[get_profile(profile).name], **changes)


class DigitClassifier(nn.Module):
    """Three conv blocks (conv 3x3, batch norm, ReLU, 2x2 max-pool: 32 -> 16 -> 8 -> 4 pixels), a hidden layer
    of ``features`` units (the penultimate features) and a linear layer to the 10 class logits."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), features: int = 128):
        super().__init__()
        layers, ch = [], 1
        for w in widths:
            layers += [nn.Conv2d(ch, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
            ch = w
        self.conv = nn.Sequential(*layers)
        side = 32 // 2 ** len(widths)
        self.hidden = nn.Sequential(nn.Flatten(), nn.Dropout(0.25), nn.Linear(ch * side * side, features), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(features, 10))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features, N x ``features``."""
        return self.hidden(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_classifier(cfg: ClassifierConfig) -> DigitClassifier:
    """The network of a :class:`ClassifierConfig`. Part of the course classifier (notebook 03)."""
    return DigitClassifier(cfg.widths, cfg.features)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by its own random (dy, dx) in [-max_shift, max_shift], filling with background (-1)."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).to(x.device)
    rows = (torch.arange(h, device=x.device)[None] + dy[:, None])[:, :, None]  # N x H x 1
    cols = (torch.arange(w, device=x.device)[None] + dx[:, None])[:, None, :]  # N x 1 x W
    return padded[torch.arange(n, device=x.device)[:, None, None], 0, rows, cols].unsqueeze(1)


def train_classifier(cfg: ClassifierConfig, train: DigitSet, device, seed: int = 0, progress: bool = True):
    """Train a :class:`DigitClassifier` with cross-entropy: AdamW, a one-cycle learning rate, random shifts.

    Returns (model in eval mode, seconds of training).
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_classifier(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    data = batches(train, cfg.batch_size, g)
    start = time.perf_counter()
    model.train()
    for _ in tqdm(range(cfg.steps), desc="training the course classifier", disable=not progress):
        images, labels = next(data)
        loss = F.cross_entropy(model(random_shift(images.to(device), cfg.shift, g)), labels.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return model, time.perf_counter() - start


def _batched(model: DigitClassifier, images: torch.Tensor, fn, batch_size: int = 500) -> torch.Tensor:
    check_images(images, "images")
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([fn(images[i : i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)])


def predict(model: DigitClassifier, images: torch.Tensor) -> torch.Tensor:
    """The predicted class of each image (N x 1 x 32 x 32 in [-1, 1]), shape N."""
    return _batched(model, images, lambda x: model(x).argmax(1))


def features(model: DigitClassifier, images: torch.Tensor) -> torch.Tensor:
    """The penultimate features of each image, N x F (the space of the Frechet distance)."""
    return _batched(model, images, model.features)


def accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of ``images`` the classifier assigns their ``labels``: class preservation when the images are
    reconstructions and the labels those of the clean digits."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    return (predict(model, images) == labels.cpu()).float().mean().item()


def _fingerprint(train: DigitSet) -> str:
    """A short hash of the training digits, so a classifier trained on other data is never reused."""
    h = hashlib.sha1(train.images.numpy().tobytes())
    h.update(train.labels.numpy().tobytes())
    return h.hexdigest()[:10]


def classifier_splits(cfg: ClassifierConfig, root=None) -> tuple[DigitSet, DigitSet]:
    """(train, validation) for the classifier: the course's usual split of MNIST's training digits (seed 0)."""
    train_all = load_mnist("train", root)
    train, val = train_val_split(train_all, min(cfg.val_size, len(train_all) // 10), 0)
    return take_subset(train, cfg.train_size, 0), val


def load_or_train_classifier(profile: str | None = None, root=None, device=None, progress: bool = True):
    """The course classifier of ``profile`` for the MNIST under ``root`` (default: ``$COURSE_DATA_DIR``).

    Reused from ``outputs/classifier/<profile>-<hash>/classifier.pt`` when its config matches, trained and saved
    there otherwise. The hash covers the config and the training digits, so a classifier of another config or
    data lives in another folder and is never overwritten. Returns (model on ``device``, info) where info holds the config, the validation accuracy,
    the training seconds, the path and whether it was reused.

    Taught in notebook 03.
    """
    cfg = classifier_config(profile)
    device = torch.device("cpu") if device is None else torch.device(device)
    train, val = classifier_splits(cfg, root)
    want = {**plain(dataclasses.asdict(cfg)), "data": _fingerprint(train)}
    key = hashlib.sha1(repr(sorted(want.items())).encode()).hexdigest()[:10]
    path = output_dir("classifier", f"{cfg.profile}-{key}") / "classifier.pt"
    model = build_classifier(cfg)
    try:
        extra = load_checkpoint(path, model, want)
        reused = True
    except (FileNotFoundError, CheckpointMismatchError):
        model, seconds = train_classifier(cfg, train, device, progress=progress)
        extra = {"seconds": seconds, "val_accuracy": accuracy(model, val.images, val.labels),
                 "train_images": len(train)}
        save_checkpoint(path, model, want, **extra)
        reused = False
    model = model.to(device).eval()
    info = {"config": want, "path": str(path), "reused": reused, **extra}
    return model, info


def frechet_distance_from_stats(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^(1/2)): the squared 2-Wasserstein (Frechet) distance of two Gaussians.

    Tr (C1 C2)^(1/2) is computed as the sum of square roots of the eigenvalues of C1^(1/2) C2 C1^(1/2), which is
    symmetric positive semi-definite and has the same eigenvalues as C1 C2; in float64.
    """
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(f"need two means of one length d and two d x d covariances, got {tuple(mu1.shape)}, "
                         f"{tuple(cov1.shape)}, {tuple(mu2.shape)}, {tuple(cov2.shape)}")
    vals, vecs = torch.linalg.eigh(cov1)
    root1 = (vecs * vals.clamp_min(0).sqrt()) @ vecs.T
    middle = root1 @ cov2 @ root1
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    return float(((mu1 - mu2) ** 2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * trace_root)


def frechet_distance(feats1: torch.Tensor, feats2: torch.Tensor) -> float:
    """The Frechet distance between two sets of features (N1 x d and N2 x d), each summarised by its mean and
    covariance. 0 for identical sets; it grows as one set drifts from the other (in mean or in spread)."""
    if feats1.ndim != 2 or feats2.ndim != 2 or feats1.shape[1] != feats2.shape[1]:
        raise ValueError(f"need two N x d feature sets of one d, got {tuple(feats1.shape)} and {tuple(feats2.shape)}")
    if len(feats1) < 2 or len(feats2) < 2:
        raise ValueError("the Frechet distance needs at least 2 feature vectors in each set")
    f1, f2 = feats1.double(), feats2.double()
    return frechet_distance_from_stats(f1.mean(0), torch.cov(f1.T), f2.mean(0), torch.cov(f2.T))
