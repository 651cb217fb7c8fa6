"""Checkpoints that are safe to interrupt and safe to load.

Taught in: 02_ddpm_from_scratch_masked_mnist (atomic saves, configs stored beside the weights); used by every
trained model of the course (notebooks 02 to 06, the course classifier, ``python -m course_utils train``).

A checkpoint is a dict {kind, config, state_dict, extra} of plain values and tensors, written atomically (a temporary
file renamed over the old one, so an interrupted save never destroys the last good checkpoint) and read with
``torch.load(..., weights_only=True)``, which never runs code from the file.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import tempfile
from pathlib import Path

import torch
from torch import nn


class CheckpointMismatchError(ValueError):
    """A checkpoint was written for another configuration, or the file is not a course checkpoint."""


def first_line(why: Exception) -> str:
    """The first line of an error's message, or its type's name where the message is empty: what a one-line error
    of the command line (notebook 03 runs it) or a checkpoint check quotes."""
    lines = str(why).strip().splitlines()
    return lines[0] if lines else type(why).__name__


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The payload of a course checkpoint, read with ``weights_only=True``.

    Raises ``FileNotFoundError`` when there is no file and :class:`CheckpointMismatchError` when the file is not
    a course checkpoint (a foreign pickle, a truncated file, any other file): the course never loads such a file
    with ``weights_only=False``, which would run whatever code it holds.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError, ImportError) as why:
        first = first_line(why)
        if "weights_only" in first or "Weights only" in first or "pickle" in first.lower():
            first = "it holds objects other than tensors and plain values"
        raise CheckpointMismatchError(
            f"{path} is not a course checkpoint ({first[:120]}); make one with `python -m course_utils train`"
        ) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict) or "state_dict" not in payload:
        raise CheckpointMismatchError(f"{path} is not a course checkpoint (no config/state_dict); "
                                      "make one with `python -m course_utils train`")
    return payload


def save_checkpoint(path: str | Path, model: nn.Module, config: dict, kind: str | None = None, **extra) -> Path:
    """Write {kind, config, state_dict, extra} atomically: to a temporary file, then renamed over ``path``.
    ``kind`` names the model kind (the name ``train --model`` takes) so the file says what it holds.

    An interrupted save leaves the previous checkpoint intact. ``config`` and ``extra`` hold only
    plain values (numbers, strings, lists, dicts, tensors), so :func:`load_checkpoint` can use
    ``weights_only=True``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"kind": kind, "config": plain(config), "state_dict": state, "extra": plain(extra)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def config_dict(cfg) -> dict:
    """A config (a dataclass) as the plain dict a checkpoint stores (tuples become lists). What every run of
    notebooks 02 to 06 stores."""
    return plain(dataclasses.asdict(cfg))


def plain(value):
    """Tuples become lists so a saved config compares equal to the one it was made from."""
    if isinstance(value, dict):
        return {k if isinstance(k, (int, str)) else str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def load_checkpoint(path: str | Path, model: nn.Module, config: dict, map_location="cpu") -> dict:
    """Load weights saved by :func:`save_checkpoint` into ``model`` and return the saved ``extra``.

    Raises :class:`CheckpointMismatchError` naming the differing keys when the checkpoint's config
    is not ``config``, and ``FileNotFoundError`` when there is no file.
    """
    payload = read_checkpoint(path, map_location)
    want, got = plain(config), payload["config"]
    if want != got:
        keys = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        diffs = ", ".join(f"{k}: checkpoint {got.get(k)!r} vs wanted {want.get(k)!r}" for k in keys)
        raise CheckpointMismatchError(f"{path} was written for another configuration ({diffs})")
    model.load_state_dict(payload["state_dict"])
    return payload["extra"]
