"""Adapting a trained network: a wider first convolution that starts as the old one, and LoRA.

Taught in: 05_unconditional_prior_adaptation (LoRA written out there and checked against this module;
:func:`expand_input` used there, its zero start asserted).

- :func:`expand_input` gives the prior's U-Net two more input channels (the mask m and the observation y, after
  x_t: the inputs of notebooks 02-03) through :class:`ExpandedStem`. The new channels' weights start at zero, so
  before fine-tuning the expanded network computes exactly what the prior did, whatever m and y are.
- :class:`LoRA` (Hu et al. 2022, "LoRA: Low-Rank Adaptation of Large Language Models", eq. 3): a frozen layer W
  plus a trainable low-rank update, h = W x + (alpha / r) B A x, with A (r x in) random and B (out x r) zero, so
  the update starts at nothing. For a convolution, A is a convolution with W's kernel to r channels and B a 1x1
  convolution back (the form of the ``peft`` library). :func:`add_lora` wraps the layers whose names match,
  :func:`merge_lora` folds B A into W for sampling at no extra cost.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .models import UNet


class ExpandedStem(nn.Module):
    """The prior's first convolution W on x_t plus a new convolution V on the extra channels [m, y]:
    stem([x_t, m, y]) = W * x_t + V * [m, y], V zero at the start (notebook 05). Equal to one wider convolution
    [W, V]; kept apart so that LoRA can freeze W and still train V, the only weights that see the mask."""

    def __init__(self, stem: nn.Conv2d, extra: int):
        super().__init__()
        self.stem = stem
        self.extra = nn.Conv2d(extra, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False)
        self.extra.to(device=stem.weight.device, dtype=stem.weight.dtype)
        nn.init.zeros_(self.extra.weight)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        c = self.stem.in_channels
        return self.stem(h[:, :c]) + self.extra(h[:, c:])


def expand_input(model: UNet, extra: int = 2) -> UNet:
    """Give an unconditional U-Net ``extra`` more input channels (m and y) with zero weights, in place (notebook 05).

    The stem W * x_t becomes :class:`ExpandedStem`, W * x_t + V * [m, y] with V = 0: the output on [x_t, m, y]
    equals the prior's output on x_t exactly until training moves V. The model then takes ``model(x_t, t, m, y)``
    like notebook 03's, and its ``config`` says ``cond_channels = extra``.
    """
    if model.cond_channels:
        raise ValueError(f"the U-Net already has {model.cond_channels} condition channels; expand a prior (0)")
    if model.self_condition or model.coord_conv:
        raise ValueError("expand_input expects the prior's U-Net (x_t only, no self-conditioning or coord-conv)")
    if extra < 1:
        raise ValueError(f"extra must be at least 1 channel, got {extra}")
    model.stem = ExpandedStem(model.stem, extra)
    model.cond_channels = extra
    model.config = {**model.config, "cond_channels": extra}
    return model


class LoRA(nn.Module):
    """h = W x + (alpha / r) B(A(x)) around a frozen ``nn.Linear`` or ``nn.Conv2d`` W (LoRA, eq. 3; notebook 05).

    A: Linear(in, r) or Conv2d(in, r) with W's kernel, stride and padding, Kaiming-uniform like an nn.Linear;
    B: Linear(r, out) or a 1x1 Conv2d(r, out), zero. No bias of its own; W's weights and bias stay frozen.
    """

    def __init__(self, base: nn.Linear | nn.Conv2d, rank: int = 4, alpha: float = 4.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be at least 1, got {rank}")
        self.base = base.requires_grad_(False)
        self.rank, self.scale = rank, alpha / rank
        if isinstance(base, nn.Linear):
            self.A = nn.Linear(base.in_features, rank, bias=False)
            self.B = nn.Linear(rank, base.out_features, bias=False)
        elif isinstance(base, nn.Conv2d):
            if base.groups != 1:
                raise ValueError("LoRA here supports convolutions with groups = 1")
            self.A = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding,
                               base.dilation, bias=False)
            self.B = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        else:
            raise TypeError(f"LoRA wraps nn.Linear or nn.Conv2d, got {type(base).__name__}")
        self.A.to(device=base.weight.device, dtype=base.weight.dtype)
        self.B.to(device=base.weight.device, dtype=base.weight.dtype)
        nn.init.kaiming_uniform_(self.A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.B(self.A(x))

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) B A as a weight of W's shape (for a convolution: B's 1x1 mixing of A's kernels)."""
        a, b = self.A.weight, self.B.weight
        if isinstance(self.base, nn.Linear):
            return self.scale * b @ a
        return self.scale * torch.einsum("or,rikl->oikl", b[:, :, 0, 0], a)


def add_lora(model: nn.Module, targets: tuple[str, ...], rank: int = 4, alpha: float = 4.0,
             also_train: tuple[str, ...] = ()) -> list[str]:
    """Freeze every parameter of ``model`` and wrap each Linear / Conv2d whose qualified name ends with one of
    ``targets`` (e.g. ``"to_qkv"``, or ``"conv1"``) in a :class:`LoRA`, in place; the submodules named in
    ``also_train`` (e.g. ``"stem.extra"``, the expanded input's new weights) stay trainable. Returns the wrapped
    names (an error if none matched). Notebook 05's LoRA modes (:func:`~course_utils.prior.build_finetuned`)."""
    model.requires_grad_(False)
    for name in also_train:
        model.get_submodule(name).requires_grad_(True)
    chosen = [name for name, module in model.named_modules()
              if isinstance(module, (nn.Linear, nn.Conv2d)) and any(name.endswith(t) for t in targets)]
    if not chosen:
        raise ValueError(f"no nn.Linear or nn.Conv2d in the model has a name ending in {targets}")
    for name in chosen:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, LoRA(model.get_submodule(name), rank, alpha))
    return chosen


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRA` by its base layer with W <- W + (alpha / r) B A, in place: the same outputs, no
    extra cost at sampling, and a model that loads like the prior's (notebook 05)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRA):
            module.base.weight += module.delta_weight()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.base)  # get_submodule("") is the model
    return model
