"""Notebook 05's models: an unconditional DDPM prior, and the same prior fine-tuned to see the mask (fully or LoRA).

Taught in: 05_unconditional_prior_adaptation. Everything that defines the two runs lives here:

- the data: a 75 / 15 / 10 train / validation / test split of MNIST's training digits (:func:`prior_splits`), and
  banks of procedural masks (5 to 60 percent missing) drawn per split from seeds of their own, unique within a
  split (:func:`mask_bank`);
- the prior (:class:`PriorConfig`, :func:`build_prior`): the course U-Net on x_t alone with self-attention at 8x8,
  trained on DDPM's simple loss (:func:`prior_loss`, eq. 14 without a condition) by :func:`train_prior`, the
  course's one loop; ``python -m course_utils train --model prior`` runs it;
- the mask-aware adaptation (:class:`FinetuneConfig`, :func:`build_finetuned`): the prior with its input expanded
  to [x_t, m, y] (zero-initialised new weights) and either every weight trained (``full``) or LoRA on the
  attention projections (``lora_attn``) or on the attention and the convolutions (``lora_all``), the new input
  weights trained in every mode; :func:`finetune` trains it on the loss of notebook 02 with masks from the bank;
- reading both back (:func:`load_prior`, :func:`load_finetuned`) and the prior as an evaluation method
  (:func:`prior_method`: replacement, RePaint or DDNM, chosen by name).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .adaptation import add_lora, expand_input
from .checkpoints import CheckpointMismatchError, load_trained, plain
from .checkpoints import run_status as checkpoint_run_status
from .config import Profile, get_profile, output_dir, run_name
from .data import DigitSet, check_images, load_mnist, take_subset
from .diffusion import Denoiser, ddim_inpaint, diffusion_target
from .evaluation import Method, SamplerOptions
from .inpainting import ddnm_inpaint, repaint, repaint_walk, replacement_inpaint, walk_calls
from .masks import procedural_masks
from .metrics import psnr_on_mask
from .models import UNet
from .schedules import Schedule, make_schedule
from .training import fast_layout, fit, noised_batch

SPLIT = (0.75, 0.15, 0.10)  # train / validation / test shares of MNIST's training digits (notebook 05)
MODES = ("full", "lora_attn", "lora_all")
LORA_TARGETS = {"lora_attn": ("to_qkv", "to_out"), "lora_all": ("to_qkv", "to_out", "conv1", "conv2")}
SAMPLERS = ("replacement", "repaint", "ddnm")
REPAINT = {"jump_length": 5, "jump_n_sample": 3}  # the RePaint setting of notebook 05's tables (and notebook 06's)
DDNM_ETA = 0.85  # notebook 05's DDNM: DDIM with this eta, at a tenth of RePaint's network calls (ddnm_steps)


def ddnm_steps(cfg) -> int:
    """Notebook 05's DDNM budget: a tenth of the network calls of RePaint (:data:`REPAINT`) over
    ``cfg.sample_steps`` noise levels, at least 2 (notebooks 05 and 06)."""
    return max(2, walk_calls(repaint_walk(cfg.sample_steps, **REPAINT)) // 10)


@dataclass(frozen=True)
class PriorConfig:
    """Everything that defines the unconditional prior's run (notebook 05); a checkpoint stores it."""

    profile: str
    schedule: str = "cosine"
    T: int = 1000
    prediction: str = "eps"  # DDPM's parameterisation, the one RePaint and DDNM are written for
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 4)
    batch_size: int = 32
    steps: int = 1500
    lr: float = 2e-3
    warmup: int = 100
    ema_decay: float = 0.999
    train_size: int = 60000  # MNIST training digits used before the 75/15/10 split (capped by what is there)
    save_every: int = 250
    sample_steps: int = 50  # reverse steps of the samplers by default
    model: str = "prior"  # tells its checkpoints apart from other kinds'


PRIOR: dict[str, PriorConfig] = {
    "ci": PriorConfig(profile="ci", base_channels=8, channel_mults=(1, 2, 2), batch_size=16, steps=30, warmup=5,
                      train_size=800, save_every=15, sample_steps=5),
    "cpu": PriorConfig(profile="cpu"),
    "full": PriorConfig(profile="full", base_channels=32, batch_size=128, steps=6000, lr=1e-3, save_every=1000,
                        sample_steps=100),
}


def prior_config(profile: str | Profile | None = None, **changes) -> PriorConfig:
    """The prior of a profile (default ``$COURSE_PROFILE``) with ``changes`` applied (notebook 05)."""
    name = profile.name if isinstance(profile, Profile) else get_profile(profile).name
    cfg = dataclasses.replace(PRIOR[name], **changes)
    if cfg.prediction not in ("eps", "x0", "v"):
        raise ValueError(f"prediction must be eps, x0 or v, got {cfg.prediction!r}")
    return cfg


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


def run_dir(cfg) -> Path:
    """``outputs/05_prior/<profile>-<hash>`` for a :class:`PriorConfig`, ``outputs/05_finetune/...`` for a
    :class:`FinetuneConfig`: one folder per configuration, never overwritten by another (notebook 05)."""
    where = "05_prior" if isinstance(cfg, PriorConfig) else "05_finetune"
    return output_dir(where, run_name(cfg.profile, plain(dataclasses.asdict(cfg))))


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


def train_prior(cfg: PriorConfig, train: DigitSet, out_dir: str | Path, device: torch.device, seed: int = 0,
                resume: bool = False, val_images: torch.Tensor | None = None, until: int | None = None,
                progress: bool = True) -> dict:
    """Train the prior with :func:`~course_utils.training.fit`: batches drawn with replacement, t and eps from one
    CPU generator, ``out_dir/last.pt`` every ``cfg.save_every`` steps, exact resume; at each save the validation
    PSNR of :func:`validate_prior` goes to the history. Taught in notebook 05."""
    schedule = make_schedule(cfg.schedule, cfg.T)
    torch.manual_seed(seed)
    model = fast_layout(build_prior(cfg), device)
    g = torch.Generator().manual_seed(seed)
    state = {"history": []}

    def loss_fn(net: nn.Module, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(train), (cfg.batch_size,), generator=generator)
        return prior_loss(net, train.images[idx].to(device), schedule, generator, cfg.prediction)

    def on_save(step: int, sample_model: nn.Module, seconds: float) -> None:
        if val_images is not None:
            state["history"].append((step, seconds, validate_prior(sample_model, cfg, val_images.to(device))))

    run = fit(model, loss_fn, cfg.steps, cfg.lr, g, warmup=cfg.warmup, ema_decay=cfg.ema_decay,
              checkpoint=Path(out_dir) / "last.pt", config=plain(dataclasses.asdict(cfg)), save_every=cfg.save_every,
              on_save=on_save, state=state, resume=resume, until=until, seed=seed, progress=progress)
    return {**run, "history": state["history"]}


def is_prior_config(config: dict) -> bool:
    """Whether a checkpoint's stored config is a :class:`PriorConfig` (notebook 05)."""
    return config.get("model") == "prior" and set(config) == {f.name for f in dataclasses.fields(PriorConfig)}


def load_prior(path: str | Path, map_location="cpu"):
    """Read a prior checkpoint: (config, model (EMA weights if any), extra), weights_only=True (notebook 05)."""
    return load_trained(path, PriorConfig, build_prior, is_prior_config,
                        "is not an unconditional-prior checkpoint; train one with "
                        "`python -m course_utils train --model prior`", map_location)


def prior_method(model: nn.Module, cfg: PriorConfig, options: SamplerOptions = SamplerOptions(),
                 sampler: str = "repaint", jump_length: int = REPAINT["jump_length"],
                 jump_n_sample: int = REPAINT["jump_n_sample"], repeats: int = 1,
                 name: str | None = None) -> Method:
    """The prior as an inpainting method for any mask task (notebook 05): ``replacement`` (DDPM steps with
    ground-truth noise injection), ``repaint`` (resampling with ``jump_length`` and ``jump_n_sample``) or ``ddnm``
    (DDIM with the null-space projection, ``repeats`` per step), each over ``options.steps`` noise levels.
    ``eval --checkpoint`` on a prior uses RePaint with these defaults (notebook 05's), or ``--sampler``."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    denoiser = Denoiser(model, make_schedule(cfg.schedule, cfg.T), cfg.prediction)

    def sample(obs, generator):
        if sampler == "replacement":
            return replacement_inpaint(denoiser, obs.y, obs.mask, options.steps, "ddpm", generator=generator)
        if sampler == "repaint":
            return repaint(denoiser, obs.y, obs.mask, options.steps, jump_length, jump_n_sample, generator=generator)
        return ddnm_inpaint(denoiser, obs.y, obs.mask, options.steps, options.eta, repeats, generator)

    settings = {"steps": options.steps}
    if sampler == "repaint":
        settings.update(jump_length=jump_length, jump_n_sample=jump_n_sample)
    if sampler == "ddnm":
        settings.update(eta=options.eta, repeats=repeats)
    return Method(name or f"prior_{sampler}", sample, stochastic=True, fits=lambda task: task.is_mask_task,
                  network=model, config={"kind": "prior", "sampler": sampler, **settings})


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
    model: str = "prior_finetune"


FINETUNE: dict[str, dict] = {
    "ci": dict(batch_size=16, steps=10, warmup=2, bank_size=128, save_every=5),
    "cpu": dict(batch_size=32, steps=400, warmup=40, save_every=200),
    "full": dict(batch_size=128, steps=1500, lr=5e-4, save_every=500, ema_decay=0.999),
}


# What LoRA's few numbers need that a full fine-tune does not, chosen on validation digits in the cpu profile
# (notebook 05): a learning rate LORA_LR_SCALE times the profile's, and a loss on the missing pixels only. With
# replacement sampling the output on known pixels is thrown away, and there the target has a closed form in x_t
# and y (eq. 4 solved for eps), which the adapters otherwise spend themselves on.
LORA_LR_SCALE = 3.0
LORA_KNOWN_WEIGHT = 0.0


def finetune_config(prior: PriorConfig, mode: str = "full", **changes) -> FinetuneConfig:
    """The fine-tune of ``prior`` in its profile with ``mode`` and ``changes`` (notebook 05): every mode the same
    steps and batch; the LoRA modes with :data:`LORA_LR_SCALE` times the learning rate and the known pixels weighted
    :data:`LORA_KNOWN_WEIGHT` in the loss, the full fine-tune with notebook 02's plain mean over all pixels."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    base = FinetuneConfig(profile=prior.profile, mode=mode, prior=plain(dataclasses.asdict(prior)),
                          **FINETUNE[prior.profile])
    if mode != "full":
        base = dataclasses.replace(base, lr=base.lr * LORA_LR_SCALE, known_weight=LORA_KNOWN_WEIGHT)
    cfg = dataclasses.replace(base, **changes)
    if cfg.known_weight < 0:
        raise ValueError(f"known_weight must be 0 or more, got {cfg.known_weight}")
    return cfg


def _prior_of(cfg: FinetuneConfig) -> PriorConfig:
    return PriorConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.prior.items()})


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
    where replacement sampling uses the output). Taught in notebook 05."""
    t, eps, x_t = noised_batch(x0, schedule, generator)
    target = diffusion_target(x0, eps, t, schedule, prediction)
    weights = known_weight * mask + (1 - mask)
    return (weights * (model(x_t, t, mask, mask * x0) - target) ** 2).sum() / weights.sum()


def finetune(cfg: FinetuneConfig, prior: nn.Module, train: DigitSet, out_dir: str | Path, device: torch.device,
             seed: int = 0, resume: bool = False, progress: bool = True) -> dict:
    """Fine-tune the expanded prior on :func:`finetune_loss` (the prior's prediction target, known pixels weighted
    ``cfg.known_weight``), with each batch's masks drawn from the train split's bank
    (:func:`mask_bank`); the course's loop :func:`~course_utils.training.fit` with EMA and checkpoints in
    ``out_dir``. Notebook 05."""
    pcfg = _prior_of(cfg)
    schedule = make_schedule(pcfg.schedule, pcfg.T)
    torch.manual_seed(seed)
    model = fast_layout(build_finetuned(cfg, prior), device)
    bank = mask_bank("train", cfg.bank_size).to(device)
    g = torch.Generator().manual_seed(seed)

    def loss_fn(net: nn.Module, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(train), (cfg.batch_size,), generator=generator)
        mask = bank[torch.randint(len(bank), (cfg.batch_size,), generator=generator).to(device)]
        x0 = train.images[idx].to(device)
        return finetune_loss(net, x0, mask, schedule, generator, pcfg.prediction, cfg.known_weight)

    return fit(model, loss_fn, cfg.steps, cfg.lr, g, warmup=cfg.warmup, ema_decay=cfg.ema_decay,
               checkpoint=Path(out_dir) / "last.pt", config=plain(dataclasses.asdict(cfg)),
               save_every=cfg.save_every, resume=resume, seed=seed, progress=progress)


def finetune_kind_config(profile: str | Profile | None = None, mode: str = "full", **changes) -> FinetuneConfig:
    """The fine-tune of the profile's prior (``prior_config(profile)``) with ``mode`` and ``changes``: what
    ``train --model finetune`` trains without ``--from`` (notebook 05)."""
    return finetune_config(prior_config(profile), mode, **changes)


def train_finetune_kind(cfg: FinetuneConfig, train: DigitSet, out_dir: str | Path, device: torch.device, seed: int = 0,
                        resume: bool = False, val_images: torch.Tensor | None = None, until: int | None = None,
                        progress: bool = True, prior_from: str | Path | None = None) -> dict:
    """``train --model finetune`` (notebook 05): the prior is read from ``prior_from`` (``--from``; its config must be
    ``cfg.prior``) or, without it, reused from its run folder (:func:`run_dir`, where notebook 05 keeps it), trained
    or resumed there first when missing or unfinished; then :func:`finetune` into ``out_dir``. The history holds the
    validation PSNR of the result (replacement sampling with the fine-tuned network, as :func:`validate_prior` scores
    the prior)."""
    pcfg = _prior_of(cfg)
    if prior_from is not None:
        given, prior_net, _ = load_prior(prior_from)
        if plain(dataclasses.asdict(given)) != cfg.prior:
            raise CheckpointMismatchError(f"the prior in {prior_from} is not the one this fine-tune adapts")
    else:
        where = run_dir(pcfg)
        status = checkpoint_run_status(where / "last.pt", plain(dataclasses.asdict(pcfg)), pcfg.steps)
        if status != "reuse":
            print(f"the prior is not in {where} yet: training it there first ({pcfg.steps} steps)", flush=True)
            train_prior(pcfg, train, where, device, seed=seed, resume=status == "resume", progress=progress)
        _, prior_net, _ = load_prior(where / "last.pt")
    run = finetune(cfg, prior_net, train, out_dir, device, seed=seed, resume=resume, progress=progress)
    history = []
    if val_images is not None:
        psnr = validate_prior(run["ema"], pcfg, val_images.to(device), sees_mask=True)
        history.append((run["step"], run["seconds"], psnr))
    return {**run, "history": history}


def is_finetune_config(config: dict) -> bool:
    """Whether a checkpoint's stored config is a :class:`FinetuneConfig` (notebook 05)."""
    return config.get("model") == "prior_finetune" and set(config) == {f.name for f in
                                                                      dataclasses.fields(FinetuneConfig)}


def load_finetuned(path: str | Path, map_location="cpu"):
    """Read a fine-tune checkpoint: (config, model with EMA weights, extra), weights_only=True (notebook 05)."""
    return load_trained(path, FinetuneConfig, build_finetuned, is_finetune_config,
                        "is not a fine-tuned-prior checkpoint (notebook 05)", map_location)


def finetuned_method(model: nn.Module, cfg: FinetuneConfig, options: SamplerOptions = SamplerOptions(),
                     step: str = "ddpm", name: str | None = None) -> Method:
    """The fine-tuned prior as an inpainting method (notebook 05): ``options.steps`` ancestral (DDPM) steps with
    replacement after each (the default: notebook 05 measured DDIM with eta = 0 well below it for this
    eps-predicting model), or with ``step="ddim"`` DDIM (``eta``) with data consistency, like notebook 03's model."""
    pcfg = _prior_of(cfg)
    schedule = make_schedule(pcfg.schedule, pcfg.T)

    def sample(obs, generator):
        if step == "ddim":
            return ddim_inpaint(model, obs.y, obs.mask, schedule, options.steps, options.eta, options.dc_repeats,
                                generator, prediction=pcfg.prediction)
        denoiser = Denoiser(model, schedule, pcfg.prediction, (obs.mask, obs.y))
        return replacement_inpaint(denoiser, obs.y, obs.mask, options.steps, "ddpm", generator=generator)

    return Method(name or f"finetuned_{cfg.mode}", sample, stochastic=True, fits=lambda task: task.is_mask_task,
                  network=model, config={"kind": "finetune", "mode": cfg.mode, "step": step,
                                         "steps": options.steps, "eta": options.eta})
