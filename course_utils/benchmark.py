"""Notebook 06's benchmark: every method of the course on the same held-out digits, observations and metrics.

Taught in: 06_benchmark; ``python -m course_utils bench`` runs the same benchmark outside the notebook. The harness is
notebook 03's (:func:`~course_utils.evaluation.evaluate`); this module says which methods there are, where their
trained models live, and runs them all:

- :data:`TASKS`, :data:`BENCH` and :data:`BENCH_COMMAND` (how many test digits and samples per digit in each
  profile, in notebook 06 and in the ``bench`` command);
- :data:`MODELS`: the trained models the methods need, each a model kind in one configuration, taken from the run
  folder under ``outputs/`` where its notebook keeps it and trained there only when asked (:func:`prepare`);
- :data:`METHODS`: each method once, with its family (classical, regressor, diffusion), the notebook that built it,
  the model it needs and the sampler settings its notebook reports (:func:`build_method`);
- :func:`run_benchmark`: every method on every task it fits, ``None`` (an empty cell) where it cannot, never a
  made-up number; the classical baselines are methods of their own, scored on the very observations the trained
  methods see (one observation seed for the whole table); :func:`markdown_table` and :func:`task_table` print it.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from . import prior
from .config import Profile, get_profile
from .evaluation import Method, SamplerOptions, baseline_method, evaluate, summaries_markdown
from .inpainting import SAMPLERS
from .kinds import KINDS
from .runs import MissingModelError, ModelKind
from .tasks import parse_task

TASKS = ("center:12", "center:16", "rect", "procedural:0.05-0.6", "sparse:0.1", "noise:0.5", "lowres:4",
         "kspace:0.25")


@dataclass(frozen=True)
class BenchConfig:
    """How much of the test split a profile scores: ``n`` digits (MNIST's test split, the first n), ``k`` samples per
    digit for the mean of K, observations and sampler noise from ``seed`` (notebook 06 and ``bench``)."""

    profile: str
    n: int
    k: int
    seed: int = 0


# notebook 06's tables, sized for its ten minutes on a CPU ...
BENCH = {"ci": BenchConfig("ci", n=4, k=2), "cpu": BenchConfig("cpu", n=32, k=1),
         "full": BenchConfig("full", n=500, k=8)}
# ... and the `bench` command's defaults, which may take longer: 200 digits and a mean of 4 on a CPU
BENCH_COMMAND = {"ci": BenchConfig("ci", n=4, k=2), "cpu": BenchConfig("cpu", n=200, k=4),
                 "full": BenchConfig("full", n=1000, k=8)}


def bench_config(profile: str | Profile | None = None, command: bool = False, **changes) -> BenchConfig:
    """The :class:`BenchConfig` of a profile (notebook 06's, or with ``command=True`` the ``bench`` command's) with
    ``changes`` (``n``, ``k``, ``seed``) applied (notebook 06)."""
    name = profile.name if isinstance(profile, Profile) else get_profile(profile).name
    cfg = dataclasses.replace((BENCH_COMMAND if command else BENCH)[name], **changes)
    if cfg.n < 2:
        raise ValueError(f"the benchmark needs at least 2 test digits (the Frechet distance compares sets), "
                         f"got {cfg.n}")
    if cfg.k < 1:
        raise ValueError(f"k must be at least 1 (samples per digit), got {cfg.k}")
    return cfg


# --- The trained models: each a model kind in one configuration, found in its run folder or trained there. ---


@dataclass(frozen=True)
class BenchModel:
    """A trained model the benchmark needs: a model kind (:mod:`course_utils.kinds`), its configuration in a
    profile, and the ``train`` flags beyond ``--model`` that make that configuration (notebook 06)."""

    kind: ModelKind
    config: Callable[[str], object]
    flags: str = ""


def _finetune(mode: str) -> Callable[[str], object]:
    return lambda profile: prior.finetune_config(KINDS["prior"].default_config(profile), mode, budget=profile)


MODELS: dict[str, BenchModel] = {
    **{name: BenchModel(KINDS[name], KINDS[name].default_config)  # the shipped checkpoint where the course has one
       for name in ("ddpm", "center_hole", "conditional", "mmse", "prior")},
    "finetune_full": BenchModel(KINDS["finetune"], _finetune("full")),  # what `train --model finetune` makes
    "finetune_lora_attn": BenchModel(KINDS["finetune"], _finetune("lora_attn"), "--lora-rank 4"),
    "finetune_lora_all": BenchModel(KINDS["finetune"], _finetune("lora_all"), "--lora-rank 4 --lora-targets all"),
}


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

    def __post_init__(self) -> None:
        if self.family not in ("classical", "regressor", "diffusion") or (self.model is None) != (
                self.family == "classical"):
            raise ValueError(f"{self.name}: a classical method has no model, a regressor or diffusion method has one")


def _baseline(name: str, description: str) -> BenchMethod:
    return BenchMethod(name, "classical", "03", description, None,
                       lambda cfg, model, library: baseline_method(name, library))


METHODS: dict[str, BenchMethod] = {m.name: m for m in (
    _baseline("zero_fill", "missing pixels read 0 (mid-grey)"),
    _baseline("nearest_pixel", "each missing pixel copies the nearest known pixel"),
    _baseline("nearest_neighbour", "the hole copied from the best-matching training digit"),
    _baseline("harmonic", "Laplace's equation on the hole, known pixels as boundary"),
    _baseline("smoothing", "noise: Gaussian smoothing, width chosen on training digits"),
    _baseline("bicubic", "low resolution: bicubic upsampling"),
    _baseline("zero_filled_ifft", "k-space: inverse FFT with the missing coefficients set to 0"),
    BenchMethod("mmse", "regressor", "06", "U-Net regressing x0 in one call (notebook 03's backbone)",
                "mmse", lambda cfg, model, library: KINDS["mmse"].method(model, cfg, SamplerOptions())),
    BenchMethod("ddpm_02", "diffusion", "02", "DDPM on [x_t, m, y], mixed masks, ancestral steps + replacement", "ddpm",
                lambda cfg, model, library: KINDS["ddpm"].method(model, cfg, SamplerOptions())),
    BenchMethod("ddim_dc_03", "diffusion", "03", "centre-hole U-Net, DDIM with data consistency", "center_hole",
                lambda cfg, model, library: KINDS["center_hole"].method(model, cfg, SamplerOptions(cfg.sample_steps))),
    BenchMethod("conditional_04", "diffusion", "04", "p(x0 | c): control encoder + cross-attention, no projection",
                "conditional",
                lambda cfg, model, library: KINDS["conditional"].method(model, cfg, SamplerOptions(cfg.sample_steps))),
    *(BenchMethod(f"{sampler}_05", "diffusion", "05", f"unconditional prior, {SAMPLERS[sampler].description}",
                  "prior", lambda cfg, model, library, sampler=sampler: prior.prior_method(model, cfg, sampler=sampler))
      for sampler in SAMPLERS),
    *(BenchMethod(f"{label}_05", "diffusion", "05", f"the prior fine-tuned to see the mask: {what}, sampled with DDNM",
                  f"finetune_{mode}",
                  lambda cfg, model, library: prior.finetuned_method(model, cfg))
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
    "shipped" / "reused" / "resumed" / "trained", "checkpoint", "train_seconds", "notebook"}``. Each model comes from
    :meth:`~course_utils.runs.ModelKind.obtain` in its run folder (the one its notebook and ``train`` use); a
    missing or unfinished one is trained there (on the MNIST under ``root``) only with ``train_missing``, otherwise
    :class:`MissingModelsError` lists them all with the command that makes each (notebook 06 and ``bench``)."""
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; the benchmark has: {', '.join(METHODS)}")
    needed = {key: MODELS[key] for key in dict.fromkeys(METHODS[n].model for n in names) if key is not None}
    models, info, missing = {}, {}, []
    for key, need in needed.items():
        try:
            got = need.kind.obtain(need.config(profile), device, root=root, allow_training=train_missing, log=log)
        except MissingModelError as why:
            missing.append(f"{key}: {why} {need.flags}".rstrip())
            continue
        models[key] = (got.cfg, got.model)
        info[key] = {"status": got.status, "checkpoint": str(got.path), "train_seconds": got.extra.get("seconds"),
                     "notebook": need.kind.notebook}
    if missing:
        raise MissingModelsError("missing trained models (pass --train-missing to train them here):\n  "
                                 + "\n  ".join(missing))
    methods = {name: build_method(name, *models.get(METHODS[name].model, (None, None)), library) for name in names}
    return methods, info


# --- Running it. ---


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
    table: dict[str, dict] = {name: {} for name in methods}
    bar = tqdm([(name, spec) for name in methods for spec in specs], desc="benchmark", disable=not progress)
    for name, spec in bar:
        bar.set_postfix_str(f"{name} on {spec}", refresh=True)
        method = methods[name]
        if method.fits(parse_task(spec)):
            table[name][spec] = evaluate(method, images, labels, spec, k=k, seed=seed, classifier=classifier,
                                         library=library, baselines=False, progress=progress, leave=False)[0]
        else:
            table[name][spec] = None
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

    def cell(summary: dict | None) -> str:
        value = None if summary is None else summary["metrics"][metric].get(which)
        return "" if value is None else f"{value:.{digits}f}"

    for name, row in result["methods"].items():
        lines.append(f"| {name} | " + " | ".join(cell(row.get(spec)) for spec in tasks) + " |")
    return "\n".join(lines)


def task_table(result: dict, task: str) -> str:
    """Every method of a :func:`run_benchmark` result on one task as a markdown table
    (:func:`~course_utils.evaluation.summaries_markdown`; methods that cannot do the task are left out; notebook 06
    and ``bench``)."""
    spec = parse_task(task).spec
    return summaries_markdown({name: row[spec] for name, row in result["methods"].items() if row.get(spec)})
