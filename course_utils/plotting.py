"""Figures every notebook uses: image grids, observed / reconstructed / ground-truth panels, curves.

Taught in: 01_forward_process (first use); used by every notebook.

Every function returns its matplotlib Figure. Pass ``save="name"`` to also write
``outputs/figures/<profile>/name.png`` (see :func:`save_figure`).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .config import get_profile, output_dir
from .data import to_unit_range
from .schedules import q_sample

MISSING_RGB = (0.85, 0.25, 0.25)  # how missing pixels are drawn in an observation


def save_figure(fig: plt.Figure, name: str) -> str:
    """Write ``fig`` to outputs/figures/<profile>/<name>.png and return the path.

    One folder per profile (``$COURSE_PROFILE``), so a quick ``ci`` run never overwrites a ``cpu`` run's figures.
    Taught in notebook 01; used in notebooks 02, 03."""
    path = output_dir("figures", get_profile().name) / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return str(path)


def _finish(fig: plt.Figure, save: str | None, title: str | None = None) -> plt.Figure:
    """Title, tight layout, and the figure saved as ``save`` (a name) when given."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if save:
        save_figure(fig, save)
    return fig


def to_display(x: torch.Tensor, mask: torch.Tensor | None = None) -> np.ndarray:
    """One image 1 x H x W in [-1, 1] -> an H x W x 3 array in [0, 1]; missing pixels (m = 0) drawn in red."""
    img = to_unit_range(x.detach().float().cpu()).clamp(0, 1)[0].numpy()
    rgb = np.repeat(img[:, :, None], 3, axis=2)
    if mask is not None:
        hole = mask.detach().cpu()[0].numpy() == 0
        rgb[hole] = MISSING_RGB
    return rgb


def _show(ax: plt.Axes, picture: np.ndarray, title: str | None = None, ylabel: str | None = None, **style) -> None:
    """Draw ``picture`` on ``ax`` without ticks, with an optional column title and row label."""
    ax.imshow(picture, interpolation="nearest", **style)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=8)
    if ylabel is not None:
        ax.set_ylabel(ylabel, rotation=0, ha="right", va="center", fontsize=9)


def show_images(
    x: torch.Tensor, ncols: int = 8, title: str | None = None, mask: torch.Tensor | None = None,
    labels: Sequence[str] | None = None, save: str | None = None, scale: float = 1.2,
) -> plt.Figure:
    """A grid of images N x 1 x H x W in [-1, 1] (with ``mask``: missing pixels in red).

    Taught in notebook 01; used in notebook 02."""
    n = x.shape[0]
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(to_display(x[i], None if mask is None else mask[i]), interpolation="nearest")
            if labels is not None:
                ax.set_title(labels[i], fontsize=8)
    return _finish(fig, save, title)


def show_rows(
    rows: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None = None, title: str | None = None,
    n: int = 8, save: str | None = None, scale: float = 1.2,
) -> plt.Figure:
    """Panels side by side: one labelled row per entry of ``rows`` (e.g. observed / inpainted / ground truth).

    Taught in notebook 02; used in notebook 03."""
    masks = masks or {}
    n = min(n, min(v.shape[0] for v in rows.values()))
    fig, axes = plt.subplots(len(rows), n, figsize=(scale * n + 1.2, scale * len(rows) + (0.4 if title else 0)),
                             squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        for c in range(n):
            picture = to_display(imgs[c], masks[name][c] if name in masks else None)
            _show(axes[r, c], picture, ylabel=name if c == 0 else None)
    return _finish(fig, save, title)


def plot_schedules(schedules: Sequence, save: str | None = None) -> plt.Figure:
    """beta_t, alpha_bar_t and log SNR(t) against t for each schedule, side by side. Taught in notebook 01."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    curves = {"betas": r"$\beta_t$", "alpha_bars": r"$\bar\alpha_t$", "log_snr": r"$\log \mathrm{SNR}(t)$"}
    for sch in schedules:
        for ax, curve in zip(axes, curves):
            ax.plot(np.arange(sch.T), getattr(sch, curve).numpy(), label=sch.name)
    for ax, name in zip(axes, curves.values()):
        ax.set(xlabel="timestep t", ylabel=name, title=name)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_yscale("log")
    return _finish(fig, save)


def _loss_panel(ax: plt.Axes, losses: Sequence[float], window: int, ylabel: str, title: str) -> None:
    losses = np.asarray(losses, dtype=float)
    ax.plot(losses, alpha=0.3, label="per step")
    if len(losses) >= window:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window - 1, len(losses)), smooth, label=f"moving average ({window})")
    ax.set(yscale="log", xlabel="optimiser step", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()


def plot_loss(losses: Sequence[float], window: int = 50, title: str = "training loss", save: str | None = None):
    """The loss of every step (faint) and its moving average over ``window`` steps, log scale. Taught in notebook 02."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    _loss_panel(ax, losses, window, r"$\|\epsilon - \epsilon_\theta\|^2$", title)
    return _finish(fig, save)


def plot_training(losses: Sequence[float], history: Sequence[tuple[int, float, float]], loss_label: str,
                  score_label: str, score_title: str, save: str | None = None) -> plt.Figure:
    """A training run in two panels: the loss (:func:`plot_loss`'s view, window a fifth of the run up to 50) and
    the validation score of each checkpoint, ``history`` = [(step, seconds, score), ...], against minutes of
    training. Used in notebooks 03 and 04."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4))
    _loss_panel(ax1, losses, max(1, min(50, len(losses) // 5)), loss_label, "training loss")
    ax2.plot([h[1] / 60 for h in history], [h[2] for h in history], "o-")
    ax2.set(xlabel="minutes of training", ylabel=score_label, title=score_title)
    ax2.grid(alpha=0.3)
    return _finish(fig, save)


def show_strip(
    images: Sequence[torch.Tensor], labels: Sequence[str], row_names: Sequence[str] | None = None,
    title: str | None = None, save: str | None = None, scale: float = 1.3,
    masks: Sequence[torch.Tensor] | None = None,
) -> plt.Figure:
    """Rows of single images in columns: ``images`` is a list of R x 1 x H x W (one per column).

    ``masks``, if given, holds one R x 1 x H x W mask per column (missing pixels drawn in red).
    Taught in notebook 01; used in notebooks 02, 03."""
    n_cols = len(images)
    n_rows = images[0].shape[0]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(scale * n_cols + 1, scale * n_rows + (0.4 if title else 0)),
                             squeeze=False)
    for c, (col, label) in enumerate(zip(images, labels)):
        for r in range(n_rows):
            picture = to_display(col[r], None if masks is None else masks[c][r])
            row_name = row_names[r] if c == 0 and row_names is not None else None
            _show(axes[r, c], picture, label if r == 0 else None, row_name)
    return _finish(fig, save, title)


def bar_compare(results: dict[str, dict[str, float]], metric: str, title: str | None = None,
                higher_is_better: bool = True, save: str | None = None) -> plt.Figure:
    """A bar per method for one metric (``results[method][metric]``). Taught in notebook 02; used in notebook 03."""
    names = list(results)
    values = [results[k][metric] for k in names]
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2, 3.4))
    bars = ax.bar(names, values, color="tab:blue")
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set(ylabel=metric + (" (higher is better)" if higher_is_better else " (lower is better)"), title=title or metric)
    ax.tick_params(axis="x", rotation=20)
    return _finish(fig, save)


def show_noised(
    x0: torch.Tensor, schedules: Sequence, t: int, eps: torch.Tensor, save: str | None = None
) -> plt.Figure:
    """One digit noised to timestep ``t`` under each schedule, with the same eps (x_t from DDPM eq. 4; notebook 01)."""
    fig, axes = plt.subplots(1, len(schedules) + 1, figsize=(2.1 * (len(schedules) + 1), 2.5))
    axes[0].imshow(to_display(x0[0]), interpolation="nearest")
    axes[0].set_title("x0")
    for ax, sch in zip(axes[1:], schedules):
        x_t = q_sample(x0[:1], t, sch, eps[:1])
        ab = float(sch.alpha_bars[t])
        ax.imshow(to_display(x_t[0].clamp(-1, 1)), interpolation="nearest")
        ax.set_title(f"{sch.name}\n" + r"$\bar\alpha_t$" + f"={ab:.3f}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    return _finish(fig, save, f"t = {t}")


def show_posterior(
    rows: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]], n_samples: int = 3,
    title: str | None = None, save: str | None = None, scale: float = 1.25,
) -> plt.Figure:
    """Posterior samples and their spread, one row per entry ``name: (y, mask, samples, truth)`` (notebook 04).

    ``y``, ``mask`` and ``truth`` are 1 x H x W and ``samples`` K x 1 x H x W (K >= 2), in [-1, 1]. Columns: the
    observation (missing pixels in red for a mask task), ``n_samples`` samples, the mean of all K, their per-pixel
    standard deviation (the uncertainty map) and the absolute error of the mean, the last two on one colour scale.
    """
    if not rows:
        raise ValueError("show_posterior needs at least one row")
    heads = ["observation"] + [f"sample {i + 1}" for i in range(n_samples)] + ["mean of K", "std (uncertainty)",
                                                                                 "|mean - truth|"]
    fig, axes = plt.subplots(len(rows), len(heads), squeeze=False,
                             figsize=(scale * len(heads) + 1.4, scale * len(rows) + (0.5 if title else 0.2)))
    for r, (name, (y, mask, samples, truth)) in enumerate(rows.items()):
        if samples.dim() != 4 or samples.shape[0] < 2:
            raise ValueError(f"row {name!r}: samples must be K x 1 x H x W with K >= 2, got {tuple(samples.shape)}")
        unit = to_unit_range(samples.detach().float().cpu()).clamp(0, 1)
        mean, std = unit.mean(0), unit.std(0, correction=0)
        err = (mean - to_unit_range(truth.detach().float().cpu())).abs()
        shown_mask = mask if mask.sum() > 0 else None  # a measurement task knows no pixel exactly
        panels = [to_display(y, shown_mask)] + [to_display(s) for s in samples[:n_samples]] + [to_display(2 * mean - 1)]
        for c, ax in enumerate(axes[r]):
            head, row_name = heads[c] if r == 0 else None, name if c == 0 else None
            if c < len(panels):
                _show(ax, panels[c], head, row_name)
            else:  # the uncertainty map, then the error, on one colour scale
                _show(ax, (std if c == len(panels) else err)[0].numpy(), head, row_name, cmap="magma", vmin=0, vmax=0.5)
    return _finish(fig, save, title)
