"""Profiles, device choice and seeding: the three things every notebook does first.

Taught in: every notebook's first code cell (introduced in 01_forward_process).

One environment variable, ``COURSE_PROFILE``, picks the size of everything:

* ``ci``   - proves every cell runs (nbval, quick checks); results are not judged.
* ``cpu``  - a student's laptop without a GPU, about 10 minutes a notebook on 2 cores.
* ``full`` - Colab or any CUDA GPU, the best results in about 15 minutes on a T4.

The default is ``full`` when CUDA is available and ``cpu`` otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PROFILE_NAMES = ("ci", "cpu", "full")
# ``train --profile pretrained``: the long recipe each model kind is trained with once, for the checkpoints the
# course ships (notebooks run in ci, cpu or full and load those weights; a recipe is never a notebook's profile).
PRETRAINED = "pretrained"


@dataclass(frozen=True)
class Profile:
    """Every size a notebook needs, fixed for one profile (frozen: a notebook reads, never edits)."""

    name: str
    train_size: int  # training images taken from MNIST's train split (capped by what is there)
    val_size: int  # validation images carved from the train split (at most a tenth of it; for tuning, never test)
    eval_size: int  # unseen test images used for the reported metrics
    batch_size: int
    train_steps: int  # optimiser steps
    lr: float
    base_channels: int  # U-Net width at 32x32
    channel_mults: tuple[int, ...]  # width multipliers per resolution (32, 16, 8, ...)
    T: int  # diffusion steps used in training
    sample_steps: int  # reverse steps used when sampling (<= T; T means every step)
    n_samples: int  # K samples per image for the posterior mean
    schedule: str  # beta schedule used for training


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", train_size=512, val_size=64, eval_size=32, batch_size=32, train_steps=40, lr=2e-3,
        base_channels=8, channel_mults=(1, 2), T=1000, sample_steps=10, n_samples=2, schedule="cosine",
    ),
    "cpu": Profile(
        name="cpu", train_size=60000, val_size=500, eval_size=200, batch_size=64, train_steps=2000, lr=2e-3,
        base_channels=16, channel_mults=(1, 2, 2), T=1000, sample_steps=50, n_samples=4, schedule="cosine",
    ),
    "full": Profile(
        name="full", train_size=60000, val_size=2000, eval_size=1000, batch_size=128, train_steps=6000, lr=1e-3,
        base_channels=32, channel_mults=(1, 2, 2), T=1000, sample_steps=250, n_samples=4, schedule="cosine",
    ),
}


def default_profile_name() -> str:
    """``full`` when CUDA is available, else ``cpu``."""
    return "full" if torch.cuda.is_available() else "cpu"


def get_profile(name: str | None = None) -> Profile:
    """The settings for ``name`` (default: ``$COURSE_PROFILE``, else :func:`default_profile_name`).
    Taught in notebook 01; used in notebooks 02, 03.

    >>> get_profile("ci").sample_steps
    10
    """
    if name is None:
        name = os.environ.get("COURSE_PROFILE", "").strip() or default_profile_name()
    key = name.strip().lower()
    if key not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}: COURSE_PROFILE must be one of {', '.join(PROFILE_NAMES)}.")
    return PROFILES[key]


def profile_table(profile) -> str:
    """A profile (or a notebook's own settings, any dataclass) as aligned ``name: value`` lines, printed at the top
    of every notebook. Taught in notebook 01; used in notebooks 02, 03."""
    fields = dataclasses.asdict(profile)
    width = max(len(k) for k in fields)
    return "\n".join(f"{k:<{width}} : {v}" for k, v in fields.items())


# With a GPU the CPU only prepares small batches, and on many cores PyTorch's thread pool then spends more time
# synchronising than working (docs/design.md): get_device() caps the CPU threads at this many for an accelerator.
GPU_HOST_THREADS = 4


def get_device(prefer: str | None = None) -> torch.device:
    """Pick the device once: ``prefer`` if given, else ``$COURSE_DEVICE`` if set, else cuda, then mps, then cpu.

    For cuda and mps it also caps torch's CPU threads at :data:`GPU_HOST_THREADS`.
    Taught in notebook 01; used in notebooks 02, 03."""
    mps = getattr(torch.backends, "mps", None)
    available = {"cuda": torch.cuda.is_available(), "mps": mps is not None and mps.is_available()}
    choice = prefer or os.environ.get("COURSE_DEVICE", "").strip()
    if not choice:
        device = torch.device(next((name for name, ok in available.items() if ok), "cpu"))
    else:
        device = torch.device(choice)
        if not available.get(device.type, True):
            what = "CUDA" if device.type == "cuda" else "Apple's MPS"
            raise ValueError(f"Device {choice!r} was asked for, but {what} is not available on this machine.")
    if device.type != "cpu":
        torch.set_num_threads(min(GPU_HOST_THREADS, torch.get_num_threads()))
    return device


def seed_everything(seed: int) -> int:
    """Seed Python's ``random``, NumPy and torch (all devices) with one number, and return it.

    Taught in notebook 01; used in notebooks 02, 03."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def repo_root() -> Path | None:
    """The course checkout that holds this package, or None when installed without one."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir() else None


def _course_folder(variable: str, name: str) -> Path:
    """``$variable`` where it is set, else the checkout's ``name/``, else ``./name``."""
    env = os.environ.get(variable, "").strip()
    if env:
        return Path(env).expanduser()
    root = repo_root()
    return (root / name) if root is not None else Path(name).resolve()


def data_dir() -> Path:
    """Where MNIST lives: ``$COURSE_DATA_DIR``, else the checkout's ``data/``, else ``./data``."""
    return _course_folder("COURSE_DATA_DIR", "data")


def run_name(profile: str, settings: dict) -> str:
    """``<profile>-<8 hex digits>``: a folder name for one configuration (a hash of ``settings``).

    Runs of different profiles or configurations live in different folders, so a notebook or command
    never overwrites (or deletes) what another run wrote.

    Every run folder of notebooks 02 to 06 is named by it.
    """
    text = json.dumps(settings, sort_keys=True, default=str)
    return f"{profile}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def output_dir(*parts: str) -> Path:
    """A folder under the course outputs (``$COURSE_OUTPUT_DIR``, else the checkout's ``outputs/``), created.

    Taught in notebook 02."""
    path = _course_folder("COURSE_OUTPUT_DIR", "outputs").joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def hardware(device: torch.device | str = "cpu") -> str:
    """One line naming the machine the numbers were measured on (notebook 06's benchmark, every shipped
    checkpoint's manifest and the runner's run summary)."""
    device = torch.device(device)
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = platform.processor() or platform.machine()
        cpuinfo = Path("/proc/cpuinfo")
        if cpuinfo.exists():  # Linux names the model there
            names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                     if line.startswith("model name")]
            where = names[0] if names else where
    return (f"{where}, {os.cpu_count()} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
            f"{device.type}")
