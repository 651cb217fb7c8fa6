"""The course's MNIST classifier: the judge of class preservation and the feature space of the Frechet distance.

Taught in: 03_ddim_center_hole_data_consistency (class preservation and the Frechet distance next to PSNR); used by
:mod:`course_utils.evaluation`, notebooks 03 to 06 and ``python -m course_utils eval`` / ``bench``.

PSNR cannot tell a blurry average from a sharp wrong digit. A small CNN trained by the course on the training
digits answers two other questions about a reconstruction: is it still the same digit (**class preservation**:
the share of reconstructions it assigns the true label), and do the reconstructions look like real digits as a
set (a **Frechet distance** between its penultimate-layer features of reconstructions and of clean digits, the
FID recipe of Heusel et al. 2017 with the course's own network instead of Inception). Nothing is downloaded: the
classifier is a model kind like the others (:data:`KIND`, ``train --model classifier``), trained by the course's one
loop :func:`~course_utils.training.fit` on cross-entropy and obtained by :func:`course_classifier`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import config_dict
from .pretrained import fingerprint
from .data import Batches, DigitSet, check_images, load_mnist, take_subset, train_val_split
from .runs import ModelKind, RunConfig


@dataclass(frozen=True)
class ClassifierConfig(RunConfig):
    """Everything that defines a course classifier: the training budget (AdamW with warm-up and cosine decay, no
    EMA) and the network's widths; a checkpoint stores it, and is reused only when it matches."""

    batch_size: int = 128
    steps: int = 400
    lr: float = 3e-3
    warmup: int = 40
    ema_decay: float = 0.0
    save_every: int = 400
    widths: tuple[int, ...] = (16, 32, 64)  # conv channels at 32, 16 and 8 pixels
    features: int = 128  # width of the penultimate layer (the Frechet feature space)
    shift: int = 2  # training augmentation: random translations of up to this many pixels
    val_size: int = 500


CLASSIFIERS: dict[str, ClassifierConfig] = {
    "ci": ClassifierConfig(profile="ci", widths=(8, 16, 32), features=32, steps=30, warmup=3, batch_size=64,
                           save_every=30, train_size=512, val_size=64),
    "cpu": ClassifierConfig(profile="cpu"),
    "full": ClassifierConfig(profile="full", widths=(32, 64, 128), steps=2000, warmup=200, save_every=500),
    "pretrained": ClassifierConfig(profile="pretrained", widths=(32, 64, 128), steps=3000, warmup=300,
                                   save_every=500),
}


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


def batch_loss(cfg: ClassifierConfig, train: DigitSet, device: torch.device):
    """Cross-entropy -sum_c 1[c = label] log softmax(logits)_c on one shuffled mini-batch
    (:class:`~course_utils.data.Batches`), each digit shifted by up to ``cfg.shift`` pixels; batches and shifts come
    from the run's generator and where the batches are in their epoch rides along in the checkpoint."""
    stream = Batches(train, cfg.batch_size, generator=None)

    def loss_fn(net: nn.Module, generator: torch.Generator) -> torch.Tensor:
        stream.generator = generator
        images, labels = next(stream)
        return F.cross_entropy(net(random_shift(images, cfg.shift, generator).to(device)), labels.to(device))

    loss_fn.state = {"batch_order": stream.state}
    return loss_fn


def classifier_splits(cfg: ClassifierConfig, seed: int = 0, root=None) -> tuple[DigitSet, DigitSet, DigitSet]:
    """(train, validation, no test digits) for the classifier: the course's usual split of MNIST's training digits
    (seed 0, the validation digits of every kind that uses :func:`~course_utils.data.load_splits`; notebook 05's
    kinds use :func:`~course_utils.prior.prior_splits`), ``cfg.train_size`` of the rest for training."""
    train_all = load_mnist("train", root)
    train, val = train_val_split(train_all, min(cfg.val_size, len(train_all) // 10), 0)
    return take_subset(train, cfg.train_size, 0), val, val[:0]


KIND = ModelKind(
    name="classifier", notebook="03_ddim_center_hole_data_consistency", folder="classifier",
    description="the course classifier: a small CNN on cross-entropy, judge of class preservation and the "
                "Frechet distance (no reconstruction)",
    presets=CLASSIFIERS, build=build_classifier, loss=batch_loss, splits=classifier_splits,
    validate=lambda model, cfg, val: (100 * accuracy(model, val.images, val.labels), None), validation_digits=500,
    validation_unit="% classified right")


def course_classifier(profile: str | None = None, root=None, device="cpu", progress: bool = True):
    """The course classifier of ``profile`` (default ``$COURSE_PROFILE``) for the MNIST under ``root``: the model
    kind's :meth:`~course_utils.runs.ModelKind.obtain` of its :meth:`~course_utils.runs.ModelKind.default_config`
    (the shipped classifier in cpu and full, else a run trained once into ``outputs/classifier/`` and reused).
    Returns (model on ``device``, info) where info holds the config, the path, what happened (``status``: shipped,
    reused, resumed or trained), the training seconds, the accuracy on the validation digits of this MNIST and a
    ``note`` (else None) when the classifier was trained on other digits than this MNIST's training split.
    Taught in notebook 03."""
    got = KIND.obtain(KIND.default_config(profile), device, root=root, progress=progress)
    train, val, _ = classifier_splits(got.cfg, root=root)
    seen = (got.extra["manifest"]["training_digits"]["fingerprint"] if got.status == "shipped"
            else got.extra.get("training_digits"))
    note = None if seen == fingerprint(train) else (
        "the classifier was trained on other digits than this MNIST's training split, so its validation digits "
        "here may include digits it has seen (test digits cannot)")
    info = {"config": config_dict(got.cfg), "path": str(got.path), "status": got.status,
            "seconds": got.extra["seconds"], "val_accuracy": accuracy(got.model, val.images, val.labels), "note": note}
    return got.model, info


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
