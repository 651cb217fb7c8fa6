"""The trained model kinds of the course, each described once: how to read its checkpoint, which task it was
trained for, and how it reconstructs (as an evaluation :class:`~course_utils.evaluation.Method`).

Taught in: 03_ddim_center_hole_data_consistency (the first kind, ``center_hole``); ``python -m course_utils eval``
and the notebooks look kinds up here, so a new kind is one entry in :data:`KINDS`, not an edit in every command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from . import center_hole, conditional, mmse, prior
from .checkpoints import CheckpointMismatchError, read_checkpoint
from .evaluation import Method, SamplerOptions


@dataclass(frozen=True)
class ModelKind:
    """One trainable model kind: ``config(profile, **changes)`` (its settings in a profile),
    ``train(cfg, train digits, out_dir, device, seed=, resume=, val_images=) -> dict`` (a resumable run writing
    out_dir/last.pt), ``trained_on(cfg)`` (the task specs it learned), ``load(path) -> (cfg, model, extra)``,
    ``default_task(cfg)`` (the task ``eval`` scores unless told otherwise),
    ``method(model, cfg, options) -> Method``, ``recognise(config dict)`` to tell its checkpoints apart, and
    ``run_dir(cfg)`` (the folder under ``outputs/`` where the notebook keeps that configuration's ``last.pt``: the
benchmark of notebook 06 looks there), and ``splits(cfg, seed=, root=) -> (train, val, test)`` when the kind trains on other digits than
    :func:`~course_utils.data.load_splits` gives (notebook 05's 75/15/10 split). Used in notebook 03 and by `eval`."""

    name: str
    description: str
    notebook: str
    train_command: str
    config: Callable[..., object]
    train: Callable[..., dict]
    trained_on: Callable[[object], tuple[str, ...]]
    load: Callable[..., tuple]
    recognise: Callable[[dict], bool]
    default_task: Callable[[object], str]
    method: Callable[[nn.Module, object, SamplerOptions], Method]
    run_dir: Callable[[object], Path]
    splits: Callable[..., tuple] | None = None


KINDS: dict[str, ModelKind] = {
    "center_hole": ModelKind(
        name="center_hole",
        description="notebook 03: U-Net on [x_t, m, y] for a centre hole, DDIM with data consistency",
        notebook="03_ddim_center_hole_data_consistency",
        train_command="python -m course_utils train --profile cpu --out DIR",
        config=center_hole.center_hole_config,
        train=center_hole.train_center_hole,
        trained_on=lambda cfg: (f"center:{cfg.hole}",),
        load=center_hole.load_center_hole,
        recognise=center_hole.is_center_hole_config,
        default_task=lambda cfg: f"center:{cfg.hole}",
        method=center_hole.center_hole_method,
        run_dir=center_hole.center_hole_run_dir,
    ),
    "conditional": ModelKind(
        name="conditional",
        description="notebook 04: p(x0 | c) with a control encoder and cross-attention, for every task, no projection",
        notebook="04_conditional_cross_attention",
        train_command="python -m course_utils train --model conditional --profile cpu --out DIR",
        config=conditional.conditional_config,
        train=conditional.train_conditional,
        trained_on=lambda cfg: tuple(cfg.tasks),
        load=conditional.load_conditional,
        recognise=conditional.is_conditional_config,
        default_task=lambda cfg: "sparse:0.1",
        method=conditional.conditional_method,
        run_dir=conditional.conditional_run_dir,
    ),
    "mmse": ModelKind(
        name="mmse",
        description="notebook 06: notebook 03's U-Net regressing x0 in one call (the MMSE baseline)",
        notebook="06_benchmark",
        train_command="python -m course_utils train --model mmse --profile cpu --out DIR",
        config=mmse.mmse_config,
        train=mmse.train_mmse,
        trained_on=lambda cfg: (f"center:{cfg.hole}",),
        load=mmse.load_mmse,
        recognise=mmse.is_mmse_config,
        default_task=lambda cfg: f"center:{cfg.hole}",
        method=mmse.mmse_method,
        run_dir=mmse.mmse_run_dir,
    ),
    "prior": ModelKind(
        name="prior",
        description="notebook 05: an unconditional DDPM prior (U-Net on x_t with self-attention at 8x8), "
                    "inpainting with RePaint",
        notebook="05_unconditional_prior_adaptation",
        train_command="python -m course_utils train --model prior --profile cpu --out DIR",
        config=prior.prior_config,
        train=prior.train_prior,
        trained_on=lambda cfg: (),
        load=prior.load_prior,
        recognise=prior.is_prior_config,
        default_task=lambda cfg: "procedural:0.05-0.6",
        method=prior.prior_method,
        run_dir=prior.run_dir,
        splits=prior.prior_splits,
    ),
    "finetune": ModelKind(
        name="finetune",
        description="notebook 05: the prior with its input widened to [x_t, m, y], fine-tuned on procedural masks "
                    "(fully, or LoRA with --lora-rank R)",
        notebook="05_unconditional_prior_adaptation",
        train_command="python -m course_utils train --model finetune --from PRIOR/last.pt --profile cpu --out DIR",
        config=prior.finetune_kind_config,
        train=prior.train_finetune_kind,
        trained_on=lambda cfg: ("procedural:0.05-0.6",),
        load=prior.load_finetuned,
        recognise=prior.is_finetune_config,
        default_task=lambda cfg: "procedural:0.05-0.6",
        method=prior.finetuned_method,
        run_dir=prior.run_dir,
        splits=prior.prior_splits,
    ),
}


def kind_of_checkpoint(path: str | Path) -> ModelKind:
    """The :class:`ModelKind` whose checkpoint ``path`` is (``FileNotFoundError`` / ``CheckpointMismatchError``
    when there is no file or it is no course model). Used in notebook 03 and by `eval`."""
    payload = read_checkpoint(path)
    named = payload.get("kind")
    if named in KINDS:
        return KINDS[named]
    for kind in KINDS.values():
        if kind.recognise(payload["config"]):
            return kind
    known = "; ".join(f"{k.name} ({k.train_command})" for k in KINDS.values())
    raise CheckpointMismatchError(f"{path} holds no model kind the course knows; train one of: {known}")
