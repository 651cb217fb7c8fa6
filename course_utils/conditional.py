"""Notebook 04's experiment in one place: a diffusion model that learns p(x0 | c) for many degradations at once.

Taught in: 04_conditional_cross_attention. The model is told only the condition image c (the observation y of a
task of :mod:`course_utils.tasks`) and, for mask tasks, the mask; it samples without replacing known pixels
(no projection, no guidance): reconstruction is sampling the learned posterior. Top to bottom:

- :class:`ConditionalConfig` and the settings of each profile (:data:`CONDITIONAL`);
- :class:`ConditionalUNet`: a U-Net on x_t with linear self-attention at 32x32 and 16x16, cross-attention to the
  control encoder's tokens at 16x16 and 8x8, and the control encoder's features added at every resolution
  (:mod:`course_utils.attention`); ``architecture`` picks the full model or an ablation (``cross``: no
  per-resolution features; ``concat``: notebook 02's U-Net fed [m, c] as channels);
- the training mixture (:func:`observe_mixture`) and the loss on a batch (:func:`conditional_loss`);
- its validation (:func:`validate_conditional`) and its sampler (:func:`conditional_method`: DDIM or DDPM through
  :func:`~course_utils.diffusion.sample`, with no consistency rule);
- :data:`KIND`, the ``conditional`` model kind, which :mod:`course_utils.runs` trains, resumes and loads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .attention import ControlEncoder, CrossAttention, LinearAttention
from .data import DigitSet, check_images, random_batch
from .diffusion import Denoiser, diffusion_target, sample, timesteps
from .evaluation import Method, SamplerOptions
from .metrics import psnr_on_mask
from .models import ResBlock, UNet, group_norm, sinusoidal_embedding
from .runs import DiffusionConfig, ModelKind
from .schedules import Schedule, make_schedule
from .tasks import parse_task
from .training import noised_batch, p2_weight

# The conditions of notebook 04, as task specs: sparse pixels (5 to 20 percent kept), additive noise (sigma 0.3 to
# 1.0), low resolution (x4), large occlusions (rectangles and the centre hole) and undersampled k-space.
TRAINING_TASKS = ("sparse:0.05-0.2", "noise:0.3-1.0", "lowres:4", "rect", "center:12", "kspace:0.25")
# How often each is drawn: the sparse pixels and the centre hole leave the most to the model, so they get four and
# two times the others' share (chosen on validation digits at the cpu budget; docs/history.md has the runs).
TASK_WEIGHTS = (4.0, 1.0, 1.0, 1.0, 2.0, 1.0)
ARCHITECTURES = ("control_cross", "cross", "concat")
# Where the conditional U-Net attends (see ConditionalUNet): linear self-attention at 32x32 and 16x16,
# cross-attention to the condition's tokens at 16x16 (down) and 8x8 (middle).
ATTENTION_SITES = ("linear32", "linear16", "cross16", "cross8")


@dataclass(frozen=True)
class ConditionalConfig(DiffusionConfig):
    """Everything that defines a notebook-04 run; a checkpoint stores it (notebook 04)."""

    architecture: str = "control_cross"  # control encoder + cross-attention; "cross": no added features; "concat"
    tasks: tuple[str, ...] = TRAINING_TASKS  # each training image gets one of these ...
    task_weights: tuple[float, ...] = TASK_WEIGHTS  # ... drawn with these relative frequencies
    heads: int = 2
    attention_at: tuple[str, ...] = ATTENTION_SITES  # which attention blocks the U-Net has (ConditionalUNet)
    p2_k: float = 1.0
    p2_gamma: float = 1.0
    val_size: int = 500
    ddpm_steps: int = 100  # ancestral (DDPM) steps in the sampler comparison
    n_samples: int = 8  # K, samples per observation
    eval_size: int = 200  # test digits per task
    ablation_steps: int = 150  # each architecture of the equal-budget ablation trains this many steps ...
    ablation_batch: int = 32  # ... of this many digits
    ablation_size: int = 64  # validation digits per task in the ablation


CONDITIONAL: dict[str, ConditionalConfig] = {
    "ci": ConditionalConfig(profile="ci", base_channels=8, channel_mults=(1, 2, 2), batch_size=16, steps=30,
                            warmup=5, train_size=512, val_size=64, save_every=15, sample_steps=5, ddpm_steps=8,
                            n_samples=2, eval_size=16, ablation_steps=6, ablation_batch=8, ablation_size=8),
    # cpu: 1,500 steps of 64 digits, a budget chosen on validation digits (docs/history.md)
    "cpu": ConditionalConfig(profile="cpu", batch_size=64, steps=1500, warmup=100, save_every=300, sample_steps=10),
    "full": ConditionalConfig(profile="full", base_channels=32, batch_size=128, steps=3000, val_size=2000,
                              save_every=500, eval_size=1000),
    # the shipped model: the cpu network (notebooks 04 and 06 sample it on a CPU) at 5.3 times its steps (it is
    # step-limited, notebook 04), EMA over more steps
    "pretrained": ConditionalConfig(profile="pretrained", batch_size=64, steps=8000, warmup=200, ema_decay=0.9995,
                                    save_every=1000, sample_steps=10),
}


def check_config(cfg: ConditionalConfig) -> None:
    """A known architecture, task specs that parse, a positive weight per task (notebook 04)."""
    if cfg.architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {cfg.architecture!r}")
    for spec in cfg.tasks:
        parse_task(spec)  # a bad spec fails here, with the list of valid ones
    if len(cfg.task_weights) != len(cfg.tasks) or min(cfg.task_weights) <= 0:
        raise ValueError(f"task_weights must give each of the {len(cfg.tasks)} tasks a positive weight, "
                         f"got {cfg.task_weights}")


class ConditionalUNet(nn.Module):
    """x0 (or eps, v) predictor for p(x0 | c): ``model(x_t, t, mask, c)`` (notebook 04).

    Level i of the U-Net works at 32 / 2^i pixels. Down: a residual block per level; then the control encoder's
    level-i features are added (``control_features``), and the attention blocks named in ``attention_at`` follow:
    ``linear32`` and ``linear16``, linear self-attention at 32x32 and 16x16 (levels 0 and 1); ``cross16``,
    cross-attention at 16x16 to the 64 tokens of the encoder's 8x8 features (tokens at 16x16 would be 4 times as
    many, and cross-attention to them cost more than the rest of the U-Net). Middle: residual block, ``cross8``
    (cross-attention at 8x8), residual block. Up: a residual block per level with the skip concatenated.

    The layout was set by a step-time target: at most 1.5 times notebook 03's U-Net of the same width on 2 CPU
    cores (docs/history.md has the layouts measured); notebook 04 measures the ratio on yours.
    """

    def __init__(self, base_channels: int = 16, channel_mults: tuple[int, ...] = (1, 2, 4), heads: int = 2,
                 control_features: bool = True, size: int = 32, attention_at: tuple[str, ...] = ATTENTION_SITES):
        super().__init__()
        if len(channel_mults) != 3:
            raise ValueError(f"the conditional U-Net has three levels (32, 16, 8), got channel_mults={channel_mults}")
        unknown = set(attention_at) - set(ATTENTION_SITES)
        if unknown:
            raise ValueError(f"attention_at takes names from {ATTENTION_SITES}, got {sorted(unknown)}")
        widths = [base_channels * m for m in channel_mults]
        self.attention_at = tuple(attention_at)
        self.control_features = bool(control_features)
        self.time_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, self.time_dim), nn.SiLU(),
                                      nn.Linear(self.time_dim, self.time_dim))
        self.encoder = ControlEncoder(tuple(widths), token_levels=(2,), size=size, add_features=control_features)
        self.stem = nn.Conv2d(1, base_channels, 3, padding=1)

        def attention(level: int, ch: int) -> nn.ModuleDict:
            side = size >> level
            blocks = nn.ModuleDict()
            if f"linear{side}" in self.attention_at:
                blocks["linear"] = LinearAttention(ch, heads)
            if f"cross{side}" in self.attention_at and level < 2:  # cross8 sits between the middle blocks
                blocks["cross"] = CrossAttention(ch, widths[2], heads)
            return blocks

        self.down, self.down_attn, self.downsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        ch = base_channels
        for level, w in enumerate(widths):
            self.down.append(ResBlock(ch, w, self.time_dim))
            self.down_attn.append(attention(level, w))
            ch = w
            self.downsample.append(nn.Identity() if level == 2 else nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid1 = ResBlock(ch, ch, self.time_dim)
        self.mid_attn = CrossAttention(ch, widths[2], heads) if "cross8" in self.attention_at else None
        self.mid2 = ResBlock(ch, ch, self.time_dim)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, w in reversed(list(enumerate(widths))):
            self.up.append(ResBlock(ch + w, w, self.time_dim))
            ch = w
            self.upsample.append(nn.Identity() if level == 0 else
                                 nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(ch, ch, 3, padding=1)))
        self.out_norm = group_norm(ch)
        self.out = nn.Conv2d(ch, 1, 3, padding=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if x_t.shape[-2:] != c.shape[-2:] or mask.shape != c.shape:
            raise ValueError(f"x_t {tuple(x_t.shape)}, mask {tuple(mask.shape)} and c {tuple(c.shape)} must agree")
        features, tokens = self.encoder(torch.cat([c, mask], dim=1))
        temb = self.time_mlp(sinusoidal_embedding(t, self.time_mlp[0].in_features).to(x_t.device))
        h = self.stem(x_t)
        skips = []
        for level, (block, attn, down) in enumerate(zip(self.down, self.down_attn, self.downsample)):
            h = block(h, temb)
            if self.control_features:
                h = h + features[level]
            if "linear" in attn:
                h = attn["linear"](h)
            if "cross" in attn:
                h = attn["cross"](h, tokens[2])
            skips.append(h)
            h = down(h)
        h = self.mid1(h, temb)
        if self.mid_attn is not None:
            h = self.mid_attn(h, tokens[2])
        h = self.mid2(h, temb)
        for block, up in zip(self.up, self.upsample):
            h = up(block(torch.cat([h, skips.pop()], dim=1), temb))
        return self.out(nn.functional.silu(self.out_norm(h)))


def build_conditional_model(cfg: ConditionalConfig) -> nn.Module:
    """The network of a :class:`ConditionalConfig`: :class:`ConditionalUNet` with or without the control encoder's
    added features, or (``concat``) notebook 02's U-Net with [m, c] as input channels (notebook 04)."""
    if cfg.architecture == "concat":
        return UNet(cfg.base_channels, cfg.channel_mults, cond_channels=2)
    return ConditionalUNet(cfg.base_channels, cfg.channel_mults, cfg.heads,
                           control_features=cfg.architecture == "control_cross", attention_at=cfg.attention_at)


def observe_mixture(x0: torch.Tensor, specs: tuple[str, ...], generator: torch.Generator,
                    weights: tuple[float, ...] | None = None):
    """(c, mask, task index) for a batch: each image gets a task drawn from ``specs``, uniformly or with relative
    ``weights`` (notebook 04).

    Draws on the CPU from ``generator`` in a fixed order: the task of every image, then each task's observation
    of its images, task by task.
    """
    check_images(x0, "x0")
    tasks = [parse_task(spec) for spec in specs]
    if weights is None:
        which = torch.randint(len(tasks), (x0.shape[0],), generator=generator)
    else:
        if len(weights) != len(tasks) or min(weights) <= 0:
            raise ValueError(f"weights must give each of the {len(tasks)} tasks a positive weight, got {weights}")
        which = torch.multinomial(torch.tensor(weights, dtype=torch.float), x0.shape[0], replacement=True,
                                  generator=generator)
    c, mask = torch.zeros_like(x0), torch.zeros_like(x0)
    for j, task in enumerate(tasks):
        rows = (which == j).nonzero().flatten().to(x0.device)
        if len(rows):
            obs = task.observe(x0[rows], generator)
            c[rows], mask[rows] = obs.y.to(x0), obs.mask.to(x0)
    return c, mask, which


def conditional_loss(model: nn.Module, x0: torch.Tensor, c: torch.Tensor, mask: torch.Tensor, schedule: Schedule,
                     generator: torch.Generator, prediction: str = "x0", p2_k: float = 1.0,
                     p2_gamma: float = 1.0) -> torch.Tensor:
    """mean over pixels and images of lambda_t (target - model(x_t, t, m, c))^2, every pixel scored (notebook 04).

    t, eps and x_t from :func:`~course_utils.training.noised_batch` (DDPM eq. 4); the
    target is eps, x0 or v (:func:`~course_utils.diffusion.diffusion_target`); lambda_t is P2
    (:func:`~course_utils.training.p2_weight`).
    """
    n = x0.shape[0]
    t, eps, x_t = noised_batch(x0, schedule, generator)
    out = model(x_t, t, mask, c)
    w_t = p2_weight(schedule, t, p2_k, p2_gamma).view(n, 1, 1, 1)
    return (w_t * (diffusion_target(x0, eps, t, schedule, prediction) - out) ** 2).mean()


def batch_loss(cfg: ConditionalConfig, train: DigitSet, device: torch.device):
    """:func:`conditional_loss` on a batch drawn with replacement, each image observed through a task of the
    mixture (:func:`observe_mixture`); notebook 04."""
    schedule = make_schedule(cfg.schedule, cfg.T)

    def loss_fn(net: nn.Module, generator: torch.Generator) -> torch.Tensor:
        x0 = random_batch(train, cfg.batch_size, generator, device)
        c, mask, _ = observe_mixture(x0, cfg.tasks, generator, cfg.task_weights)
        return conditional_loss(net, x0, c, mask, schedule, generator, cfg.prediction, cfg.p2_k, cfg.p2_gamma)

    return loss_fn


@torch.no_grad()
def task_scores(model: nn.Module, cfg: ConditionalConfig, images: torch.Tensor, seed: int = 0) -> dict:
    """PSNR of one DDIM sample (``cfg.sample_steps``) per image and training task, {spec: dB} (notebook 04).

    Mask tasks are scored on the missing pixels, measurement tasks on the whole image.
    """
    method = conditional_method(model, cfg, SamplerOptions(cfg.sample_steps))
    scores = {}
    for j, spec in enumerate(cfg.tasks):
        obs = parse_task(spec).observe(images.cpu(), seed + j).to(images.device)
        out = method.sample(obs, torch.Generator().manual_seed(seed))
        scores[spec] = psnr_on_mask(out, images, obs.mask).mean().item()
    return scores


def conditional_method(model: nn.Module, cfg: ConditionalConfig, options: SamplerOptions = SamplerOptions(),
                       sampler: str = "ddim") -> Method:
    """The notebook-04 model as an evaluation method: ``sampler`` ``ddim`` (``options.steps``, ``eta``, trailing
    timesteps) or ``ddpm`` (``linspace`` timesteps) from x_T ~ N(0, I), with no consistency rule: the known
    pixels are whatever the model samples (notebook 04)."""
    if sampler not in ("ddim", "ddpm"):
        raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {sampler!r}")
    options = options.resolved()
    if options.dc_repeats != 1:
        raise ValueError("the conditional model samples without data consistency: dc_repeats must be 1")
    schedule = make_schedule(cfg.schedule, cfg.T)
    ts = timesteps(cfg.T, options.steps, "trailing" if sampler == "ddim" else "linspace")

    def draw(obs, generator):
        denoiser = Denoiser(model, schedule, cfg.prediction, (obs.mask, obs.y))
        return sample(denoiser, obs.y, ts, sampler, options.eta, None, 1, generator)

    return Method(f"conditional_{cfg.architecture}", draw, network=model,
                  config={"kind": "conditional", "architecture": cfg.architecture, "sampler": sampler,
                          "steps": options.steps, "eta": options.eta, "prediction": cfg.prediction,
                          "trained_for": list(cfg.tasks)})


def validate_conditional(model: nn.Module, cfg: ConditionalConfig, val: DigitSet):
    """The mean over the training tasks of :func:`task_scores` (no figure): notebook 04's validation score at
    every save."""
    scores = task_scores(model, cfg, val.images)
    return sum(scores.values()) / len(scores), None


KIND = ModelKind(
    name="conditional", notebook="04_conditional_cross_attention", folder="04_conditional",
    description="notebook 04: p(x0 | c) with a control encoder and cross-attention, for every task, no projection",
    presets=CONDITIONAL, build=build_conditional_model, loss=batch_loss, method=conditional_method,
    tasks=lambda cfg: tuple(cfg.tasks), default_task=lambda cfg: "sparse:0.1", validate=validate_conditional,
    validation_digits=32, check=check_config)
