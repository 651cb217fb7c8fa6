"""Notebook 06's benchmark: every method of the course on the same held-out digits, observations and metrics.

Taught in: 06_benchmark; ``python -m course_utils bench`` runs the same benchmark outside the notebook. The harness is
notebook 03's (:func:`~course_utils.evaluation.evaluate`); this module says which methods there are, where their
trained models live, and runs them all:

- :data:`TASKS` and :data:`BENCH` (how many test digits and samples per digit in each profile);
- :data:`MODELS`: the trained models the methods need, each looked up in the run folder under ``outputs/`` where its
  notebook keeps it (the same configuration, the same folder), and trained there only when asked (:func:`prepare`);
- :data:`METHODS`: each method once, with its family (classical, regressor, diffusion), the notebook that built it,
  the model it needs and the sampler settings its notebook reports (:func:`build_method`);
- :func:`run_benchmark`: every method on every task it fits, ``None`` (an empty cell) where it cannot, never a
  made-up number; the classical baselines are methods of their own, scored on the very observations the trained
  methods see (one observation seed for the whole table); :func:`markdown_table` and :func:`task_table` print it.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from . import prior
from .checkpoints import CheckpointMismatchError, load_checkpoint, plain, read_checkpoint, run_status, save_checkpoint
from .config import Profile, get_profile, output_dir, run_name
from .data import load_splits
from .diffusion import ddpm_sample
from .evaluation import Method, SamplerOptions, baseline_method, evaluate
from .kinds import KINDS
from .masks import mixed_masks
from .models import UNet
from .schedules import make_schedule
from .tasks import parse_task
from .training import ddpm_config, fast_layout, train_denoiser

TASKS = ("center:12", "center:16", "rect", "procedural:0.05-0.6", "sparse:0.1", "noise:0.5", "lowres:4",
         "kspace:0.25")
FAMILIES = ("classical", "regressor", "diffusion")


@dataclass(frozen=True)
class BenchConfig:
    """How much of the test split a profile scores: ``n`` digits (MNIST's test split, the first n), ``k`` samples per
    digit for the mean of K, observations and sampler noise from ``seed`` (notebook 06 and ``bench``)."""

    profile: str
    n: int
    k: int
    seed: int = 0


BENCH = {"ci": BenchConfig("ci", n=4, k=2), "cpu": BenchConfig("cpu", n=32, k=1),
         "full": BenchConfig("full", n=500, k=8)}


def bench_config(profile: str | Profile | None = None, **changes) -> BenchConfig:
    """The :class:`BenchConfig` of a profile with ``changes`` (``n``, ``k``, ``seed``) applied (notebook 06)."""
    name = profile.name if isinstance(profile, Profile) else get_profile(profile).name
    cfg = dataclasses.replace(BENCH[name], **changes)
    if cfg.n < 2:
        raise ValueError(f"the benchmark needs at least 2 test digits (the Frechet distance compares sets), got {cfg.n}")
    if cfg.k < 1:
        raise ValueError(f"k must be at least 1 (samples per digit), got {cfg.k}")
    return cfg


# --- The trained models: where each notebook keeps its run, how to read it, how to train it. ---


@dataclass(frozen=True)
class TrainedModel:
    """One trained model of the course as the benchmark finds it: ``locate(profile, root) -> (cfg, checkpoint,
    stored config, steps)``, ``load(cfg, checkpoint) -> (model, extra)``, ``train(cfg, checkpoint, root, device,
    resume)`` writing that checkpoint, and ``how`` (a command or notebook that makes it). Notebook 06."""

    name: str
    notebook: str
    locate: Callable[[str, Path | None], tuple]
    load: Callable[[object, Path], tuple[nn.Module, dict]]
    train: Callable[[object, Path, Path | None, torch.device, bool], None]
    how: Callable[[str, Path], str]


def _kind_model(name: str, kind_name: str, config: Callable | None = None) -> TrainedModel:
    """A model kind of :mod:`course_utils.kinds` in its run folder (``kind.run_dir``), as ``train`` writes it."""
    kind = KINDS[kind_name]
    config = config or kind.config

    def locate(profile, root):
        cfg = config(profile)
        return cfg, kind.run_dir(cfg) / "last.pt", plain(dataclasses.asdict(cfg)), cfg.steps

    def load(cfg, path):
        _, model, extra = kind.load(path)
        return model, extra

    def train(cfg, path, root, device, resume):
        digits, val, _ = (kind.splits or load_splits)(cfg, seed=0, root=root)
        kind.train(cfg, digits, path.parent, device, seed=0, resume=resume, val_images=val.images[:64])

    def how(profile, path):
        if config is kind.config:
            return f"python -m course_utils train --model {kind_name} --profile {profile} --out {path.parent}"
        return f"run notebook {kind.notebook[:2]} in the {profile} profile (./run_course.sh {profile} {kind.notebook[:2]})"

    return TrainedModel(name, kind.notebook, locate, load, train, how)


def _ddpm_locate(profile, root):
    prof = get_profile(profile)
    digits, _, _ = load_splits(prof, seed=0, root=root)
    cfg = ddpm_config(prof, len(digits), seed=0)
    return cfg, output_dir("checkpoints") / f"02_ddpm_{run_name(prof.name, cfg)}.pt", cfg, None


def _ddpm_build(cfg: dict) -> nn.Module:
    return UNet(cfg["base_channels"], tuple(cfg["channel_mults"]))


def _ddpm_load(cfg, path):
    model = _ddpm_build(cfg)
    extra = load_checkpoint(path, model, cfg)
    return model.eval(), extra


def _ddpm_train(cfg, path, root, device, resume):
    """Notebook 02's training (:func:`~course_utils.training.train_denoiser`, the loop notebook 02 asserts equal to
    its own) on its mixed masks, saved where notebook 02 looks."""
    prof = get_profile(cfg["profile"])
    digits, _, _ = load_splits(prof, seed=cfg["seed"], root=root)
    torch.manual_seed(cfg["seed"])
    model = _ddpm_build(cfg)
    start = time.perf_counter()
    losses = train_denoiser(model, digits, make_schedule(cfg["schedule"], cfg["T"]),
                            lambda n, g: mixed_masks(n, seed=g), cfg["train_steps"], cfg["batch_size"], cfg["lr"],
                            device, seed=cfg["seed"])
    save_checkpoint(path, model, cfg, losses=losses, seconds=time.perf_counter() - start)


MODELS: dict[str, TrainedModel] = {
    "ddpm": TrainedModel("ddpm", "02_ddpm_from_scratch_masked_mnist", _ddpm_locate, _ddpm_load, _ddpm_train,
                         lambda profile, path: f"run notebook 02 in the {profile} profile (./run_course.sh {profile} 02)"),
    "center_hole": _kind_model("center_hole", "center_hole"),
    "conditional": _kind_model("conditional", "conditional"),
    "mmse": _kind_model("mmse", "mmse"),
    "prior": _kind_model("prior", "prior"),
    "finetune_full": _kind_model("finetune_full", "finetune"),  # what `train --model finetune` makes
    **{f"finetune_{mode}": _kind_model(f"finetune_{mode}", "finetune",
                                       lambda profile, mode=mode: prior.finetune_kind_config(profile, mode))
       for mode in prior.MODES if mode != "full"},
}


def _status(path: Path, stored: dict, steps: int | None) -> str:
    """``reuse``, ``resume`` or ``train`` for a checkpoint (:func:`~course_utils.checkpoints.run_status`); notebook
    02's file has no step count (``steps`` None): reused when its config matches."""
    if steps is not None or not path.exists():
        return run_status(path, stored, steps or 0)
    if read_checkpoint(path)["config"] != plain(stored):
        raise CheckpointMismatchError(f"{path} holds a run of another configuration; it is left as it is")
    return "reuse"


# --- The methods: each once, with the sampler settings its notebook reports. ---


@dataclass(frozen=True)
class BenchMethod:
    """A row of the benchmark: ``make(cfg, model, library) -> Method`` builds it from its trained model (``model``
    names a :data:`MODELS` entry, or ``None`` for a classical baseline, which gets the training digits). Notebook 06."""

    name: str
    family: str
    notebook: str
    description: str
    model: str | None
    make: Callable[[object, nn.Module | None, torch.Tensor | None], Method]


def _baseline(name: str, description: str) -> BenchMethod:
    return BenchMethod(name, "classical", "03", description, None, lambda cfg, model, library: baseline_method(name, library))


def _ddpm_method(cfg: dict, model: nn.Module) -> Method:
    """Notebook 02's inpainting: ancestral DDPM over the profile's sample steps, replacement after each step."""
    prof = get_profile(cfg["profile"])
    schedule = make_schedule(cfg["schedule"], cfg["T"])
    return Method("ddpm", lambda obs, g: ddpm_sample(model, obs.y, obs.mask, schedule, prof.sample_steps, True, g),
                  fits=lambda task: task.is_mask_task, network=model,
                  config={"notebook": "02", "sampler": "ddpm", "steps": prof.sample_steps, "replacement": True})


METHODS: dict[str, BenchMethod] = {m.name: m for m in (
    _baseline("zero_fill", "missing pixels read 0 (mid-grey)"),
    _baseline("nearest_pixel", "each missing pixel copies the nearest known pixel"),
    _baseline("nearest_neighbour", "the hole copied from the best-matching training digit"),
    _baseline("harmonic", "Laplace's equation on the hole, known pixels as boundary"),
    _baseline("smoothing", "noise: Gaussian smoothing, width chosen on training digits"),
    _baseline("bicubic", "low resolution: bicubic upsampling"),
    _baseline("zero_filled_ifft", "k-space: inverse FFT with the missing coefficients set to 0"),
    BenchMethod("mmse", "regressor", "06", "U-Net regressing x0 in one call (notebook 03's backbone and budget)", "mmse",
                lambda cfg, model, library: KINDS["mmse"].method(model, cfg, SamplerOptions())),
    BenchMethod("ddpm_02", "diffusion", "02", "DDPM on [x_t, m, y], mixed masks, ancestral steps + replacement", "ddpm",
                lambda cfg, model, library: _ddpm_method(cfg, model)),
    BenchMethod("ddim_dc_03", "diffusion", "03", "centre-hole U-Net, DDIM with data consistency", "center_hole",
                lambda cfg, model, library: KINDS["center_hole"].method(model, cfg, SamplerOptions(cfg.sample_steps))),
    BenchMethod("conditional_04", "diffusion", "04", "p(x0 | c): control encoder + cross-attention, no projection",
                "conditional",
                lambda cfg, model, library: KINDS["conditional"].method(model, cfg, SamplerOptions(cfg.sample_steps))),
    BenchMethod("replacement_05", "diffusion", "05", "unconditional prior, replacement (ground-truth noise injection)",
                "prior", lambda cfg, model, library: prior.prior_method(model, cfg, SamplerOptions(cfg.sample_steps),
                                                                        "replacement")),
    BenchMethod("repaint_05", "diffusion", "05", "unconditional prior, RePaint resampling", "prior",
                lambda cfg, model, library: prior.prior_method(model, cfg, SamplerOptions(cfg.sample_steps), "repaint",
                                                               **prior.REPAINT)),
    BenchMethod("ddnm_05", "diffusion", "05", "unconditional prior, DDNM null-space projection (a tenth of RePaint's "
                "calls)", "prior",
                lambda cfg, model, library: prior.prior_method(
                    model, cfg, SamplerOptions(prior.ddnm_steps(cfg), prior.DDNM_ETA), "ddnm")),
    *(BenchMethod(f"{label}_05", "diffusion", "05", f"the prior fine-tuned to see the mask: {what}", f"finetune_{mode}",
                  lambda cfg, model, library: prior.finetuned_method(model, cfg,
                                                                     SamplerOptions(cfg.prior["sample_steps"])))
      for label, mode, what in (("finetune_full", "full", "every weight"),
                                ("lora_attn", "lora_attn", "LoRA on the attention"),
                                ("lora_all", "lora_all", "LoRA on the attention and the convolutions"))),
)}


def build_method(name: str, cfg: object = None, model: nn.Module | None = None,
                 library: torch.Tensor | None = None) -> Method:
    """The evaluation :class:`~course_utils.evaluation.Method` of :data:`METHODS` entry ``name``, named ``name``
    (notebook 06)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; the benchmark has: {', '.join(METHODS)}")
    return dataclasses.replace(METHODS[name].make(cfg, model, library), name=name)


class MissingModelsError(RuntimeError):
    """Raised by :func:`prepare` when trained models are missing and training was not asked for; the message
    says, one line each, which and how to make them (notebook 06 and ``bench``)."""


def prepare(names: list[str], profile: str, device: torch.device, root: str | Path | None = None,
            library: torch.Tensor | None = None, train_missing: bool = False,
            log: Callable[[str], None] = print) -> tuple[dict[str, Method], dict[str, dict]]:
    """The methods ``names`` ready to run on ``device``, and per trained model what happened: ``{"status":
    "reused" / "trained", "checkpoint", "train_seconds", "notebook"}``. Each model is read from its notebook's run
    folder when its configuration matches (an unfinished run is resumed); a missing one is trained there (on the
    MNIST under ``root``) only with ``train_missing``, otherwise :class:`MissingModelsError` lists them all with how
    to make each (notebook 06 and ``bench``)."""
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; the benchmark has: {', '.join(METHODS)}")
    needed = list(dict.fromkeys(METHODS[n].model for n in names if METHODS[n].model is not None))
    found, missing = {}, []
    for key in needed:
        cfg, path, stored, steps = MODELS[key].locate(profile, root)
        status = _status(path, stored, steps)
        found[key] = (cfg, path, status)
        if status != "reuse":
            missing.append(f"{key} ({MODELS[key].notebook}): {'unfinished' if status == 'resume' else 'no'} "
                           f"checkpoint at {path}; make it with: {MODELS[key].how(profile, path)}")
    if missing and not train_missing:
        raise MissingModelsError("missing trained models (pass --train-missing to train them here):\n  "
                                 + "\n  ".join(missing))
    models, info = {}, {}
    for key, (cfg, path, status) in found.items():
        if status != "reuse":
            log(f"{key}: {'resuming' if status == 'resume' else 'training'} into {path}")
            MODELS[key].train(cfg, path, None if root is None else Path(root), device, status == "resume")
        model, extra = MODELS[key].load(cfg, path)
        models[key] = (cfg, fast_layout(model, device).eval())
        info[key] = {"status": "reused" if status == "reuse" else "trained", "checkpoint": str(path),
                     "train_seconds": extra.get("seconds"), "notebook": MODELS[key].notebook}
    methods = {}
    for name in names:
        cfg, model = models.get(METHODS[name].model, (None, None))
        methods[name] = build_method(name, cfg, model, library)
    return methods, info


# --- Running it. ---


def hardware(device: torch.device | str = "cpu") -> str:
    """One line naming the machine the numbers were measured on (the README quotes it; notebook 06)."""
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


def run_benchmark(methods: dict[str, Method], images: torch.Tensor, labels: torch.Tensor, tasks: list[str],
                  k: int = 8, seed: int = 0, classifier: nn.Module | None = None,
                  library: torch.Tensor | None = None, progress: bool = True, **about) -> dict:
    """Score each method of ``methods`` on each task it fits (``method.fits``) with :func:`evaluate` (``k``
    samples, the same ``seed``: the same observations for every method). Returns the benchmark's JSON:
    ``{"methods": {name: {task: summary or None}}, "tasks", "n", "k", "seed", "date", "method_info", **about}``
    (``method_info``: family, notebook and description of each :data:`METHODS` entry; ``about``: the profile, the
    data folder, ...). Notebook 06 and ``bench``."""
    if not methods:
        raise ValueError("give at least one method to benchmark")
    specs = [parse_task(spec).spec for spec in tasks]
    cells = [(name, spec) for name in methods for spec in specs]
    table: dict[str, dict] = {name: {} for name in methods}
    bar = tqdm(cells, desc="benchmark", disable=not progress)
    for name, spec in bar:
        bar.set_postfix_str(f"{name} on {spec}", refresh=True)
        method = methods[name]
        if not method.fits(parse_task(spec)):
            table[name][spec] = None
            continue
        summary, _, _ = evaluate(method, images, labels, spec, k=k, seed=seed, classifier=classifier,
                                 library=library, baselines=False, progress=progress, leave=False)
        table[name][spec] = summary
    info = {name: {"family": METHODS[name].family, "notebook": METHODS[name].notebook,
                   "description": METHODS[name].description} for name in methods if name in METHODS}
    return {"methods": table, "tasks": specs, "n": int(len(images)), "k": k, "seed": seed,
            "date": datetime.date.today().isoformat(), "method_info": info, **about}


def markdown_table(result: dict, metric: str = "psnr", which: str = "single", digits: int = 2) -> str:
    """One metric of a :func:`run_benchmark` result as a markdown table, a row per method and a column per task;
    an empty cell where a method cannot do the task (notebook 06 and ``bench``)."""
    tasks = result["tasks"]
    lines = ["| method | " + " | ".join(f"`{t}`" for t in tasks) + " |",
             "| --- | " + " | ".join("---:" for _ in tasks) + " |"]
    for name, row in result["methods"].items():
        cells = []
        for spec in tasks:
            summary = row.get(spec)
            value = None if summary is None else summary["metrics"][metric].get(which)
            cells.append("" if value is None else f"{value:.{digits}f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def task_table(result: dict, task: str) -> str:
    """Every method of a :func:`run_benchmark` result on one task as a markdown table: PSNR and L1 of one sample and
    of the mean of K, SSIM, class preservation, Frechet distance, seconds and network calls per image and sample
    (methods that cannot do the task are left out; notebook 06 and ``bench``)."""
    spec = parse_task(task).spec
    lines = ["| method | PSNR, 1 sample | PSNR, mean of K | L1, 1 sample | SSIM | class | Frechet | ms / image "
             "| calls / image |", "| --- |" + " ---: |" * 8]

    def cell(value, fmt):
        return "" if value is None else f"{value:{fmt}}"

    for name, row in result["methods"].items():
        s = row.get(spec)
        if s is None:
            continue
        m = s["metrics"]
        mean_k = cell(m["psnr"]["mean_k"], ".2f") + (f" (K={s['k']})" if s["k"] > 1 else " (K=1)")
        lines.append(f"| {name} | {m['psnr']['single']:.2f} | {mean_k} | {m['l1']['single']:.4f} | "
                     f"{m['ssim']['single']:.3f} | {cell(m['class_acc']['single'], '.3f')} | "
                     f"{cell(m['frechet']['single'], '.1f')} | {1000 * s['seconds_per_image']:.1f} | "
                     f"{s['network_calls_per_image']:g} |")
    return "\n".join(lines)
