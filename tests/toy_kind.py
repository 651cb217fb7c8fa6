"""A toy model kind, written the way a new kind of the course is written: one module, then one line in
``course_utils.kinds.KINDS`` (tests/test_extending.py adds that line for the test's duration).

It is the smallest honest diffusion inpainter: a two-layer CNN on [x_t, m, y] (t unused) predicting x0, trained
with the x0 loss on centre holes, sampled with notebook 03's DDIM with data consistency.
"""

from dataclasses import dataclass

import torch
from torch import nn

from course_utils.data import random_batch
from course_utils.diffusion import Denoiser, ddim_inpaint
from course_utils.evaluation import Method, SamplerOptions
from course_utils.masks import center_hole
from course_utils.runs import DiffusionConfig, ModelKind
from course_utils.schedules import make_schedule
from course_utils.training import noised_batch


@dataclass(frozen=True)
class ToyConfig(DiffusionConfig):
    hole: int = 8
    width: int = 8
    val_size: int = 16
    eval_size: int = 16


class ToyNet(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.SiLU(), nn.Conv2d(width, 1, 3, padding=1))

    def forward(self, x_t, t, mask, y):
        return self.net(torch.cat([x_t, mask, y], dim=1))


def toy_loss(cfg: ToyConfig, train, device):
    schedule = make_schedule(cfg.schedule, cfg.T)
    mask = center_hole(cfg.batch_size, cfg.hole).to(device)

    def loss_fn(net, generator):
        x0 = random_batch(train, cfg.batch_size, generator, device)
        t, eps, x_t = noised_batch(x0, schedule, generator)
        return ((net(x_t, t, mask, mask * x0) - x0) ** 2).mean()

    return loss_fn


def toy_method(model, cfg: ToyConfig, options: SamplerOptions = SamplerOptions()) -> Method:
    schedule, options = make_schedule(cfg.schedule, cfg.T), options.resolved(steps=cfg.sample_steps)
    return Method("toy", lambda obs, g: ddim_inpaint(Denoiser(model, schedule, "x0", (obs.mask, obs.y)), obs.y,
                                                     obs.mask, options.steps, options.eta, options.dc_repeats, g),
                  stochastic=True, fits=lambda task: task.is_mask_task, network=model,
                  config={"kind": "toy", "steps": options.steps})


KIND = ModelKind(
    name="toy", description="a test's toy kind: a two-layer CNN on [x_t, m, y]", notebook="none (tests)",
    folder="toy", presets={"ci": ToyConfig(profile="ci", batch_size=8, steps=6, warmup=2, save_every=3,
                                           train_size=64, sample_steps=3)},
    build=lambda cfg: ToyNet(cfg.width), loss=toy_loss, method=toy_method,
    tasks=lambda cfg: (f"center:{cfg.hole}",), default_task=lambda cfg: f"center:{cfg.hole}")
