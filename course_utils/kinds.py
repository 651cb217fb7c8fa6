"""Every trainable model kind of the course, by the name ``train --model`` takes.

Taught in: 03_ddim_center_hole_data_consistency; ``train``, ``sample``, ``eval`` and ``bench`` look kinds up here.
Each kind is described once, in its own module (:class:`~course_utils.runs.ModelKind`); a new kind is one module
and one entry in :data:`KINDS`.
"""

from __future__ import annotations

from pathlib import Path

from . import center_hole, classifier, conditional, ddpm, mmse, prior
from .checkpoints import CheckpointMismatchError, read_checkpoint
from .runs import ModelKind

KINDS: dict[str, ModelKind] = {kind.name: kind for kind in (
    center_hole.KIND, ddpm.KIND, conditional.KIND, prior.PRIOR_KIND, prior.FINETUNE_KIND, mmse.KIND, classifier.KIND)}


def kind_of_checkpoint(path: str | Path) -> ModelKind:
    """The :class:`~course_utils.runs.ModelKind` a checkpoint records (``FileNotFoundError`` without a file,
    :class:`~course_utils.checkpoints.CheckpointMismatchError` when it is no course model). Used by ``eval`` and in
    notebook 03's command-line section."""
    named = read_checkpoint(path).get("kind")
    if named not in KINDS:
        known = "; ".join(f"{k.name} (`{k.command()}`)" for k in KINDS.values())
        raise CheckpointMismatchError(f"{path} holds no model kind the course knows ({named or 'no kind recorded'}); "
                                      f"train one of: {known}")
    return KINDS[named]
