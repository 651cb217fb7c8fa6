"""The trained model kinds of the course, each described once: how to read its checkpoint, which task it was
trained for, and how it reconstructs (as an evaluation :class:`~course_utils.evaluation.Method`).

Taught in: 03_ddim_center_hole_data_consistency (the first kind, ``center_hole``); ``python -m course_utils eval``
and the notebooks look kinds up here, so a new kind is one entry in :data:`KINDS`, not an edit in every command.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .checkpoints import CheckpointMismatchError, read_checkpoint
from .config import CenterHoleConfig
from .diffusion import ddim_inpaint
from .evaluation import Method
from .schedules import make_schedule
from .training import load_center_hole


@dataclass(frozen=True)
class SamplerOptions:
    """How a diffusion model samples at evaluation time (``eval --steps --eta --dc-repeats``)."""

    steps: int = 50
    eta: float = 0.0
    dc_repeats: int = 1


@dataclass(frozen=True)
class ModelKind:
    """One trainable model kind: ``load(path) -> (cfg, model, extra)``, ``default_task(cfg)`` (a task spec),
    ``method(model, cfg, options) -> Method``, and ``recognise(config dict)`` to tell its checkpoints apart."""

    name: str
    description: str
    notebook: str
    train_command: str
    load: Callable[..., tuple]
    recognise: Callable[[dict], bool]
    default_task: Callable[[object], str]
    method: Callable[[nn.Module, object, SamplerOptions], Method]


def center_hole_method(model: nn.Module, cfg, options: SamplerOptions = SamplerOptions()) -> Method:
    """The notebook-03 model as a method: DDIM (``options.steps``, ``eta``) with data consistency and repeats
    (:func:`~course_utils.diffusion.ddim_inpaint`); it works on any mask task, trained for ``center:cfg.hole``."""
    schedule = make_schedule(cfg.schedule, cfg.T)

    def sample(obs, generator):
        return ddim_inpaint(model, obs.y, obs.mask, schedule, options.steps, options.eta, options.dc_repeats,
                            generator, prediction=cfg.prediction)

    return Method("ddim_center_hole", sample, stochastic=True, fits=lambda task: task.is_mask_task, network=model,
                  config={"kind": "center_hole", "steps": options.steps, "eta": options.eta,
                          "dc_repeats": options.dc_repeats, "prediction": cfg.prediction, "trained_for": f"center:{cfg.hole}"})


def _is_center_hole(config: dict) -> bool:
    return set(config) == {f.name for f in dataclasses.fields(CenterHoleConfig)}


KINDS: dict[str, ModelKind] = {
    "center_hole": ModelKind(
        name="center_hole",
        description="notebook 03: U-Net on [x_t, m, y] for a centre hole, DDIM with data consistency",
        notebook="03_ddim_center_hole_data_consistency",
        train_command="python -m course_utils train --profile cpu --out DIR",
        load=load_center_hole,
        recognise=_is_center_hole,
        default_task=lambda cfg: f"center:{cfg.hole}",
        method=center_hole_method,
    ),
}


def kind_of_checkpoint(path: str | Path) -> ModelKind:
    """The :class:`ModelKind` whose checkpoint ``path`` is (``FileNotFoundError`` / ``CheckpointMismatchError``
    when there is no file or it is no course model)."""
    payload = read_checkpoint(path)
    named = payload.get("kind")
    if named in KINDS:
        return KINDS[named]
    for kind in KINDS.values():
        if kind.recognise(payload["config"]):
            return kind
    known = "; ".join(f"{k.name} ({k.train_command})" for k in KINDS.values())
    raise CheckpointMismatchError(f"{path} holds no model kind the course knows; train one of: {known}")
