"""Notebook 05's models: an unconditional DDPM prior, and the same prior fine-tuned to see the mask (fully or LoRA).

Taught in: 05_unconditional_prior_adaptation. Everything that defines the two runs lives here:

- the data: a 75 / 15 / 10 train / validation / test split of MNIST's training digits (:func:`prior_splits`), and
  banks of procedural masks (5 to 60 percent missing) drawn per split from seeds of their own, unique within a
  split (:func:`mask_bank`);
- the prior (:class:`PriorConfig`, :func:`build_prior`): the course U-Net on x_t alone with self-attention at 8x8,
  trained on DDPM's simple loss (:func:`prior_loss`, eq. 14 without a condition); :data:`PRIOR_KIND` is the
  ``prior`` model kind (``python -m course_utils train --model prior``), sampled by :func:`prior_method` with any
  training-free sampler of :data:`~course_utils.inpainting.SAMPLERS` (RePaint by default);
- the mask-aware adaptation (:class:`FinetuneConfig`, :func:`build_finetuned`): the prior with its input expanded
  to [x_t, m, y] (zero-initialised new weights) and either every weight trained (``full``) or LoRA on the
  attention projections (``lora_attn``) or on the attention and the convolutions (``lora_all``), the new input
  weights trained in every mode, on the loss of notebook 02 with masks from the bank (:func:`finetune_loss`);
  :data:`FINETUNE_KIND` is the ``finetune`` kind, which starts from a trained prior (:func:`finetune_base`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .adaptation import add_lora, expand_input
from .checkpoints import CheckpointMismatchError
from .config import PRETRAINED
from .data import DigitSet, check_images, load_mnist, random_batch, take_subset
from .diffusion import Denoiser, ddim_inpaint, diffusion_target
from .evaluation import Method, SamplerOptions
from .inpainting import SAMPLERS, replacement_inpaint, sampler_settings
from .masks import procedural_masks
from .metrics import psnr_on_mask
from .models import UNet
from .runs import DiffusionConfig, ModelKind, Option, config_dict, config_from_dict
from .schedules import Schedule, make_schedule
from .training import noised_batch

SPLIT = (0.75, 0.15, 0.10)  # train / validation / test shares of MNIST's training digits (notebook 05)
MODES = ("full", "lora_attn", "lora_all")
LORA_TARGETS = {"lora_attn": ("to_qkv", "to_out"), "lora_all": ("to_qkv", "to_out", "conv1", "conv2")}


@dataclass(frozen=True)
class PriorConfig(DiffusionConfig):
    """Everything that defines the unconditional prior's run (notebook 05); a checkpoint stores it."""

    prediction: str = "eps"  # DDPM's parameterisation, the one RePaint and DDNM are written for
    batch_size: int = 32
    steps: int = 1500
    sample_steps: int = 50  # reverse steps of the samplers by default


PRIOR: dict[str, PriorConfig] = {
    "ci": PriorConfig(profile="ci", base_channels=8, channel_mults=(1, 2, 2), batch_size=16, steps=30, warmup=5,
                      train_size=800, save_every=15, sample_steps=5),
    "cpu": PriorConfig(profile="cpu"),
    "full": PriorConfig(profile="full", base_channels=32, batch_size=128, steps=6000, lr=1e-3, save_every=1000,
                        sample_steps=100),
    # the shipped prior: the cpu network, a longer budget (the choices: docs/design.md)
    "pretrained": PriorConfig(profile="pretrained", batch_size=64, steps=8000, warmup=200, ema_decay=0.9995,
                              save_every=500),
}


def check_prior(cfg: PriorConfig) -> None:
    """The prior predicts eps, x0 or v (notebook 05)."""
    if cfg.prediction not in ("eps", "x0", "v"):
        raise ValueError(f"prediction must be eps, x0 or v, got {cfg.prediction!r}")


def prior_splits(cfg, seed: int = 0, root: str | Path | None = None) -> tuple[DigitSet, DigitSet, DigitSet]:
    """Notebook 05's (train, validation, test): MNIST's training digits (at most ``cfg.train_size`` of them, in a
    seeded order) split 75 / 15 / 10. The test tenth is never trained or tuned on; MNIST's own test split is left
    to ``eval`` and notebook 06. ``cfg`` is a :class:`PriorConfig` or a :class:`FinetuneConfig` (its prior's split).
    Taught in notebook 05."""
    size = cfg.prior["train_size"] if isinstance(cfg, FinetuneConfig) else cfg.train_size
    digits = take_subset(load_mnist("train", root), size, seed)
    n = len(digits)
    n_train, n_val = round(SPLIT[0] * n), round(SPLIT[1] * n)
    return digits[:n_train], digits[n_train : n_train + n_val], digits[n_train + n_val :]


MASK_SEEDS = {"train": 5_000_011, "val": 5_000_023, "test": 5_000_039}  # one seed stream per split


def mask_bank(split: str, n: int, low: float = 0.05, high: float = 0.60) -> torch.Tensor:
    """``n`` procedural masks of a split (missing fraction uniform in [low, high]) from that split's own seed
    (:data:`MASK_SEEDS`), so train, validation and test never share a mask; notebook 05 asserts each bank is
    unique (:func:`~course_utils.masks.duplicate_count`)."""
    if split not in MASK_SEEDS:
        raise ValueError(f"split must be one of {tuple(MASK_SEEDS)}, got {split!r}")
    g = torch.Generator().manual_seed(MASK_SEEDS[split])
    return procedural_masks(n, low + (high - low) * torch.rand(n, generator=g), seed=g)


def build_prior(cfg: PriorConfig) -> UNet:
    """The course U-Net on x_t alone (no condition channels) with self-attention at the lowest resolution
    (notebook 05)."""
    return UNet(cfg.base_channels, cfg.channel_mults, cond_channels=0, attention=True)


def prior_loss(model: nn.Module, x0: torch.Tensor, schedule: Schedule, generator: torch.Generator,
               prediction: str = "eps") -> torch.Tensor:
    """DDPM eq. 14 without a condition: t ~ U{0..T-1}, eps ~ N(0, I), x_t by eq. 4, and the mean squared error of
    the network's output against the ``prediction`` target (eps, x0 or v). Taught in notebook 05."""
    check_images(x0, "x0")
    t, eps, x_t = noised_batch(x0, schedule, generator)
    return ((model(x_t, t) - diffusion_target(x0, eps, t, schedule, prediction)) ** 2).mean()


@torch.no_grad()
def validate_prior(model: nn.Module, cfg: PriorConfig, images: torch.Tensor, seed: int = 0,
                   sees_mask: bool = False) -> float:
    """Validation hole PSNR of replacement (DDPM, ``cfg.sample_steps`` steps) on procedural masks of the
    validation bank: how well the prior inpaints, the quantity notebook 05 cares about. ``sees_mask``: the model
    is a mask-aware fine-tune and is also given (m, y)."""
    schedule = make_schedule(cfg.schedule, cfg.T)
    mask = mask_bank("val", images.shape[0]).to(images.device)
    denoiser = Denoiser(model, schedule, cfg.prediction, (mask, mask * images) if sees_mask else ())
    out = replacement_inpaint(denoiser, mask * images, mask, cfg.sample_steps,
                              generator=torch.Generator().manual_seed(seed))
    return psnr_on_mask(out, images, mask).mean().item()


def prior_batch_loss(cfg: PriorConfig, train: DigitSet, device: torch.device):
    """:func:`prior_loss` on a batch drawn with replacement (notebook 05)."""
    schedule = make_schedule(cfg.schedule, cfg.T)
    return lambda net, generator: prior_loss(net, random_batch(train, cfg.batch_size, generator, device), schedule,
                                             generator, cfg.prediction)


def prior_method(model: nn.Module, cfg: PriorConfig, options: SamplerOptions = SamplerOptions(),
                 sampler: str | None = None, name: str | None = None, **settings) -> Method:
    """The prior as an inpainting method for any mask task (notebook 05): one of the training-free samplers of
    :data:`~course_utils.inpainting.SAMPLERS` (``sampler``, else ``options.sampler``, else RePaint) with notebook
    05's settings for ``cfg.sample_steps`` levels, changed by the ``options`` given (``--steps``, ``--eta``,
    ``--jump-length``, ``--resamplings``) and by ``settings`` (the sampler's own names, e.g. ``jump_n_sample``)."""
    sampler = sampler or options.sampler or "repaint"
    if options.dc_repeats != 1:
        raise ValueError("--dc-repeats is for DDIM with data consistency; a prior's samplers repeat with --resamplings")
    chosen = {**sampler_settings(sampler, cfg.sample_steps, steps=options.steps, eta=options.eta,
                                 jump_length=options.jump_length, resamplings=options.resamplings), **settings}
    denoiser = Denoiser(model, make_schedule(cfg.schedule, cfg.T), cfg.prediction)
    run = SAMPLERS[sampler].run
    return Method(name or f"prior_{sampler}", lambda obs, g: run(denoiser, obs.y, obs.mask, g, **chosen),
                  stochastic=True, fits=lambda task: task.is_mask_task, network=model,
                  config={"kind": "prior", "sampler": sampler, **chosen})


PRIOR_KIND = ModelKind(
    name="prior", notebook="05_unconditional_prior_adaptation", folder="05_prior",
    description="notebook 05: an unconditional DDPM prior (U-Net on x_t with self-attention at 8x8), "
                "inpainting with RePaint",
    presets=PRIOR, build=build_prior, loss=prior_batch_loss, method=prior_method,
    default_task=lambda cfg: "procedural:0.05-0.6", validation_digits=32, check=check_prior, splits=prior_splits,
    validate=lambda model, cfg, val: (validate_prior(model, cfg, val.images), None),
    options=(Option("eval", "--sampler", type=lambda name: {"replace": "replacement"}.get(name, name),
                    choices=SAMPLERS.keys(), default=None, metavar="{replace,repaint,ddnm}",
                    help="a prior's training-free sampler (notebook 05): replace (ground-truth noise injection), "
                         "repaint (resampling; the default) or ddnm (null-space projection on DDIM)"),
             Option("eval", "--jump-length", type=int, default=None,
                    help=f"RePaint: levels to jump back (default {SAMPLERS['repaint'].defaults(1)['jump_length']})"),
             Option("eval", "--resamplings", type=int, default=None,
                    help=f"RePaint: times each jump is walked (default "
                         f"{SAMPLERS['repaint'].defaults(1)['jump_n_sample']}); DDNM: repeats per level (default: "
                         "its budget, a tenth of RePaint's calls, over notebook 05's levels; --steps leaves it)")))


# --- Mask-aware adaptation. ---


@dataclass(frozen=True)
class FinetuneConfig:
    """A mask-aware fine-tune of a prior (notebook 05): ``mode`` full / lora_attn / lora_all, LoRA's rank and
    alpha, the training budget, and the prior's own config (``prior``), so a checkpoint names what it adapted."""

    profile: str
    mode: str = "full"
    rank: int = 4
    alpha: float = 4.0
    batch_size: int = 64
    steps: int = 300
    lr: float = 1e-3
    known_weight: float = 1.0  # weight of a known pixel in the loss (a missing one weighs 1); 0 = missing only
    warmup: int = 30
    ema_decay: float = 0.99
    bank_size: int = 4096  # training masks, drawn once from the train split's seed
    save_every: int = 100
    prior: dict = dataclasses.field(default_factory=dict)


FINETUNE: dict[str, dict] = {
    "ci": dict(batch_size=16, steps=10, warmup=2, bank_size=128, save_every=5),
    "cpu": dict(batch_size=32, steps=400, warmup=40, save_every=200),
    "full": dict(batch_size=128, steps=1500, lr=5e-4, save_every=500, ema_decay=0.999),
}


# What LoRA needs that a full fine-tune does not (notebook 05; chosen on validation digits, docs/design.md): a
# larger learning rate, and a loss on the missing pixels only, since replacement sampling (with which they were
# chosen) throws away the output on the known ones (there the target has a closed form in x_t and y, which the
# adapters would spend themselves on).
LORA_LR_SCALE = 3.0
LORA_KNOWN_WEIGHT = 0.0


def finetune_config(prior: PriorConfig, mode: str = "full", budget: str | None = None,
                    **changes) -> FinetuneConfig:
    """The fine-tune of ``prior`` with ``mode`` and ``changes`` on the training budget of profile ``budget`` (default:
    the prior's; the shipped prior, trained with the ``pretrained`` recipe, is fine-tuned on a notebook profile's
    budget) (notebook 05): every mode the same steps and batch; the LoRA modes with :data:`LORA_LR_SCALE` times
    the learning rate and the known pixels weighted :data:`LORA_KNOWN_WEIGHT` in the loss, the full fine-tune with
    notebook 02's plain mean over all pixels."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    budget = budget or prior.profile
    if budget not in FINETUNE:
        raise ValueError(f"a fine-tune's budget is a notebook profile ({', '.join(FINETUNE)}), got {budget!r}")
    base = FinetuneConfig(profile=budget, mode=mode, prior=config_dict(prior), **FINETUNE[budget])
    if mode != "full":
        base = dataclasses.replace(base, lr=base.lr * LORA_LR_SCALE, known_weight=LORA_KNOWN_WEIGHT)
    cfg = dataclasses.replace(base, **changes)
    if cfg.known_weight < 0:
        raise ValueError(f"known_weight must be 0 or more, got {cfg.known_weight}")
    return cfg


def _prior_of(cfg: FinetuneConfig) -> PriorConfig:
    return config_from_dict(PRIOR_KIND, cfg.prior)


def build_finetuned(cfg: FinetuneConfig, prior: nn.Module | None = None) -> UNet:
    """The prior (``prior``'s weights, or a fresh one of ``cfg.prior`` to load a checkpoint into) with the input
    expanded to [x_t, m, y] and, for the LoRA modes, LoRA on :data:`LORA_TARGETS` and everything else frozen but
    the new input weights (notebook 05)."""
    model = build_prior(_prior_of(cfg))
    if prior is not None:
        model.load_state_dict(prior.state_dict())
    expand_input(model)
    if cfg.mode != "full":
        add_lora(model, LORA_TARGETS[cfg.mode], cfg.rank, cfg.alpha, also_train=("stem.extra",))
    return model


def finetune_loss(model: nn.Module, x0: torch.Tensor, mask: torch.Tensor, schedule: Schedule,
                  generator: torch.Generator, prediction: str = "eps", known_weight: float = 1.0) -> torch.Tensor:
    """Notebook 02's loss for the widened prior, sum_i w_i (net(x_t, t, m, m x0) - target)_i^2 / sum_i w_i with
    w = 1 on missing pixels and ``known_weight`` on known ones (1: the plain mean; 0: the missing pixels only,
    where replacement sampling uses the output). Notebook 05's fine-tuning loss (:func:`finetune_batch_loss`)."""
    t, eps, x_t = noised_batch(x0, schedule, generator)
    target = diffusion_target(x0, eps, t, schedule, prediction)
    weights = known_weight * mask + (1 - mask)
    return (weights * (model(x_t, t, mask, mask * x0) - target) ** 2).sum() / weights.sum()


def finetune_batch_loss(cfg: FinetuneConfig, train: DigitSet, device: torch.device):
    """:func:`finetune_loss` (the prior's prediction target, known pixels weighted ``cfg.known_weight``) on a batch
    drawn with replacement, each image with a mask drawn from the train split's bank (:func:`mask_bank`);
    notebook 05."""
    pcfg = _prior_of(cfg)
    schedule = make_schedule(pcfg.schedule, pcfg.T)
    bank = mask_bank("train", cfg.bank_size).to(device)

    def loss_fn(net: nn.Module, generator: torch.Generator) -> torch.Tensor:
        x0 = random_batch(train, cfg.batch_size, generator, device)
        mask = bank[torch.randint(len(bank), (cfg.batch_size,), generator=generator).to(device)]
        return finetune_loss(net, x0, mask, schedule, generator, pcfg.prediction, cfg.known_weight)

    return loss_fn


def finetune_base(cfg: FinetuneConfig, device: torch.device,
                  source: str | Path | nn.Module | None = None) -> nn.Module:
    """The prior a fine-tune starts from: the network ``source`` (notebook 05 passes the prior it trained), the
    checkpoint ``source`` (``train --from``; its config must be ``cfg.prior``) or, without it, the prior of
    ``cfg.prior`` from its run folder, trained or resumed there first when missing or unfinished
    (:meth:`~course_utils.runs.ModelKind.obtain`); notebook 05."""
    if isinstance(source, nn.Module):
        return source
    if source is None:
        return PRIOR_KIND.obtain(_prior_of(cfg), device).model
    given, net, _ = PRIOR_KIND.load(source)
    if config_dict(given) != cfg.prior:
        raise CheckpointMismatchError(f"the prior in {source} is not the one this fine-tune adapts")
    return net


LORA_TARGET_MODES = {"attention": "lora_attn", "all": "lora_all"}  # train --lora-targets -> a LoRA mode


def configure_finetune(profile: str, values: dict) -> FinetuneConfig:
    """``train --model finetune``'s config (notebook 05): the fine-tune of the prior of ``--from`` (else of
    :meth:`~course_utils.runs.ModelKind.default_config`'s prior: the shipped one in cpu and full) on the budget of
    ``--profile``, full with ``--lora-rank`` 0 or absent, else LoRA of that rank (alpha = rank, as in notebook
    05) on ``--lora-targets`` (the attention projections by default). Bad values are a ``ValueError``."""
    rank = values.get("lora_rank") or 0
    if rank < 0:
        raise ValueError(f"--lora-rank must be 0 (full fine-tuning) or a positive rank, got {rank}")
    if rank == 0 and values.get("lora_targets") is not None:
        raise ValueError("--lora-targets chooses where LoRA goes: give it with --lora-rank R > 0")
    mode = "full" if rank == 0 else LORA_TARGET_MODES[values.get("lora_targets") or "attention"]
    lora = {} if rank == 0 else {"rank": rank, "alpha": float(rank)}
    source = values.get("base_from")
    pcfg = PRIOR_KIND.default_config(profile) if source is None else PRIOR_KIND.load(source)[0]
    if pcfg.profile not in (profile, PRETRAINED):
        raise ValueError(f"the prior in {source} was trained in the {pcfg.profile} profile: pass --profile "
                         f"{pcfg.profile} (a fine-tune's budget goes with its prior's profile; the shipped prior's "
                         "with any notebook profile)")
    return finetune_config(pcfg, mode, budget=profile, **lora)


def finetuned_method(model: nn.Module, cfg: FinetuneConfig, options: SamplerOptions = SamplerOptions(),
                     step: str = "ddnm", name: str | None = None) -> Method:
    """The fine-tuned prior as an inpainting method (notebook 05), the network given (m, y) at every call:
    ``step="ddnm"`` (the default, chosen on validation digits) the prior's DDNM, the null-space projection of
    x0_hat on notebook 05's few repeated levels (:func:`~course_utils.inpainting.ddnm_settings`; ``options.steps``
    and ``eta`` change its levels and eta); ``"ddpm"`` ``options.steps`` ancestral steps with replacement after
    each (the prior's replacement sampler); ``"ddim"`` DDIM (``eta``) with data consistency, like notebook 03's
    model."""
    if step not in ("ddnm", "ddpm", "ddim"):
        raise ValueError(f"step must be ddnm, ddpm or ddim, got {step!r}")
    pcfg = _prior_of(cfg)
    schedule = make_schedule(pcfg.schedule, pcfg.T)
    if step != "ddim" and options.dc_repeats != 1:
        raise ValueError(f"--dc-repeats is for DDIM with data consistency, not for {step} (DDNM repeats its levels)")
    if step == "ddnm":
        chosen = sampler_settings("ddnm", pcfg.sample_steps, steps=options.steps, eta=options.eta,
                                  resamplings=options.resamplings)
    else:
        options = options.resolved()
        chosen = {"steps": options.steps, **({"eta": options.eta, "dc_repeats": options.dc_repeats}
                                              if step == "ddim" else {})}

    run = {"ddnm": SAMPLERS["ddnm"].run, "ddpm": SAMPLERS["replacement"].run,  # the prior's samplers, and DDIM
           "ddim": lambda d, y, m, g, steps, eta, dc_repeats: ddim_inpaint(d, y, m, steps, eta, dc_repeats, g)}[step]

    def sample(obs, generator):
        denoiser = Denoiser(model, schedule, pcfg.prediction, (obs.mask, obs.y))
        return run(denoiser, obs.y, obs.mask, generator, **chosen)

    return Method(name or f"finetuned_{cfg.mode}", sample, stochastic=True, fits=lambda task: task.is_mask_task,
                  network=model, config={"kind": "finetune", "mode": cfg.mode, "step": step, **chosen})


FINETUNE_KIND = ModelKind(
    name="finetune", notebook="05_unconditional_prior_adaptation", folder="05_finetune",
    description="notebook 05: the prior with its input widened to [x_t, m, y], fine-tuned on procedural masks "
                "(fully, or LoRA with --lora-rank R)",
    presets={name: finetune_config(PRIOR_KIND.default_config(name), budget=name) for name in FINETUNE},
    build=build_finetuned, loss=finetune_batch_loss,
    method=finetuned_method, tasks=lambda cfg: ("procedural:0.05-0.6",), default_task=lambda cfg: "procedural:0.05-0.6",
    validate=lambda model, cfg, val: (validate_prior(model, _prior_of(cfg), val.images, sees_mask=True), None),
    splits=prior_splits, base=finetune_base, configure=configure_finetune,
    options=(Option("train", "--from", dest="base_from", default=None, metavar="PRIOR_CHECKPOINT",
                    help="--model finetune: the prior's last.pt to adapt (default: notebook 05's run folder, "
                         "trained there first if missing)"),
             Option("train", "--lora-rank", type=int, default=None,
                    help="--model finetune: 0 or absent = full fine-tuning, R > 0 = LoRA of rank R"),
             Option("train", "--lora-targets", choices=tuple(LORA_TARGET_MODES), default=None,
                    help="--model finetune with LoRA: the attention projections (default) or all (attention and "
                         "every residual convolution)")))
