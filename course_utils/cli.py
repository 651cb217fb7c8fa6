"""Command line: parses arguments and calls the library (run the course, train / ship / sample / evaluate /
benchmark models, badges, runtimes, results, site); every command and flag is listed in docs/commands.md and by
``--help``.

(the installed ``course`` command is the same program.) ``train``, ``sample`` and ``eval`` are taught in
03_ddim_center_hole_data_consistency. ``eval`` runs :func:`course_utils.evaluation.evaluate` on a model kind of
:mod:`course_utils.kinds` or a baseline of :mod:`course_utils.baselines`, on a task of :mod:`course_utils.tasks`;
``bench`` (taught in 06_benchmark) runs :mod:`course_utils.benchmark`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path

import torch

from . import benchmark
from .baselines import BASELINES, baselines_for
from .checkpoints import CheckpointMismatchError, first_line, read_checkpoint
from .classifier import course_classifier
from .config import PRETRAINED, PROFILE_NAMES, get_device, get_profile, hardware, output_dir, seed_everything
from .data import MNIST_RAW_FILES, MNISTNotFoundError, load_mnist, load_splits
from .evaluation import SamplerOptions, baseline_method, evaluate, format_results
from .kinds import KINDS, kind_of_checkpoint
from .runs import ModelKind
from .plotting import show_rows
from .pretrained import load_shipped, ship
from .publishing import write_badges
from .reports import write_results_page, write_runtimes_page
from .runner import run_notebooks
from .site import build_site
from .tasks import TaskSpecError, parse_task
from .training import fast_layout


class UsageError(SystemExit):
    """Bad input to a command: exits with status 1 and one line (on stderr) saying what to fix; every command
    raises it (notebook 03 runs them)."""

    def __init__(self, message: str):
        super().__init__(f"error: {message}")


@contextlib.contextmanager
def _usage_errors(*errors: type[Exception], prefix: str = "", suffix: str = "", one_line: bool = True):
    """Re-raise ``errors`` as a :class:`UsageError`: their message's first line (or all of it), with ``prefix`` and
    ``suffix``."""
    try:
        yield
    except errors as why:
        raise UsageError(prefix + (first_line(why) if one_line else str(why)) + suffix)


_SET_DATA_DIR = " (set COURSE_DATA_DIR to a folder holding MNIST/raw/)"


def _load_model(path: str, device):
    """(kind, cfg, model on ``device``, extra) of a checkpoint ``train`` wrote, or of the course's shipped one
    (``pretrained:KIND``), or one line saying what is wrong."""
    try:
        if path.startswith(f"{PRETRAINED}:"):
            name = path.split(":", 1)[1]
            if name not in KINDS:
                raise UsageError(f"--checkpoint {path}: no model kind {name!r}; the kinds are {', '.join(KINDS)}")
            kind = KINDS[name]
            cfg, model, extra = load_shipped(kind)
        else:
            kind = kind_of_checkpoint(path)
            cfg, model, extra = kind.load(path, map_location="cpu")
    except FileNotFoundError:
        raise UsageError(f"no checkpoint at {path}: train one with "
                         "`python -m course_utils train --profile cpu --out DIR`")
    except CheckpointMismatchError as why:
        raise UsageError(f"cannot use {path}: {first_line(why)}")
    if kind.method is None:
        raise UsageError(f"{path} holds the {kind.name} model, which reconstructs nothing ({kind.description})")
    return kind, cfg, fast_layout(model, device), extra


def _check_sampler_options(args) -> None:
    if args.hole is not None and not 1 <= args.hole <= 31:
        raise UsageError(f"--hole must be between 1 and 31 (the hole must fit inside the 32x32 image), got {args.hole}")
    if args.steps is not None and not 1 <= args.steps <= 1000:
        raise UsageError(f"--steps must be between 1 and T=1000, got {args.steps}")
    if args.eta is not None and args.eta < 0:
        raise UsageError(f"--eta must be >= 0 (0 deterministic DDIM, 1 DDPM-like), got {args.eta}")
    if args.dc_repeats < 1:
        raise UsageError(f"--dc-repeats must be at least 1, got {args.dc_repeats}")
    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")


def _kind_values(args, command: str, kind: ModelKind | None, what: str) -> dict:
    """The values of ``kind``'s own flags of ``command``; a flag of another kind that was given is an error."""
    values = {}
    for other in KINDS.values():
        for option in other.options:
            if option.command != command:
                continue
            value = getattr(args, option.dest)
            if other is kind:
                values[option.dest] = value
            elif value is not None:
                raise UsageError(f"{option.flags[0]} is for --model {other.name} ({other.notebook[:2]}), not {what}")
    return values


def _has_recipe(kind: ModelKind, profile: str) -> None:
    if profile == PRETRAINED and PRETRAINED not in kind.presets:
        having = ", ".join(k.name for k in KINDS.values() if PRETRAINED in k.presets)
        raise UsageError(f"--model {kind.name} has no {PRETRAINED} recipe (the kinds with one: {having})")


def command_train(args) -> int:
    """``train``: a model kind of :mod:`course_utils.kinds` (``--model``; notebook 03's by default), checkpointed to
    DIR/last.pt atomically every cfg.save_every steps, through :meth:`~course_utils.runs.ModelKind.obtain`; a kind's own
    flags (``--from``, ``--lora-rank``, ... of ``--model finetune``) choose its config. Notebook 03 shows it."""
    kind = KINDS[args.model]
    values = _kind_values(args, "train", kind, kind.name)
    out = Path(args.out)
    last = out / "last.pt"
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {args.steps}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    _has_recipe(kind, args.profile)
    with _usage_errors(ValueError, FileNotFoundError):
        cfg = kind.configure(args.profile, values) if kind.configure else kind.config(args.profile)
    if args.resume:
        if not last.is_file():
            raise UsageError(f"--resume: no checkpoint at {last}; leave out --resume to start a new run there")
        with _usage_errors(CheckpointMismatchError):
            saved = read_checkpoint(last)
        if saved.get("kind") != kind.name:
            raise UsageError(f"{last} is not a {kind.name} checkpoint; pass the --model it was trained as")
        if saved["config"].get("profile") != cfg.profile:
            raise UsageError(f"{last} was trained with profile {saved['config'].get('profile')!r}, not {cfg.profile!r}")
        cfg = dataclasses.replace(cfg, steps=args.steps if args.steps is not None else saved["config"]["steps"])
    elif last.exists():
        raise UsageError(f"{last} exists: pass --resume to continue that run, or choose another --out")
    elif args.steps is not None:
        cfg = dataclasses.replace(cfg, steps=args.steps)
    seed_everything(args.seed)
    device = get_device()
    print(f"training the {kind.name} model ({kind.description.split(': ', 1)[-1]}; {cfg.profile} profile) "
          f"on {device}, {cfg.steps} steps -> {last}", flush=True)
    with (_usage_errors(CheckpointMismatchError, one_line=False),
          _usage_errors(MNISTNotFoundError, suffix=_SET_DATA_DIR)):
        got = kind.obtain(cfg, device, out_dir=out, seed=args.seed, base_from=values.get("base_from"))
    history = got.extra.get("history") or []
    digits = got.extra.get("validation_digits", kind.validation_digits)
    score = f", validation score {history[-1][2]:.2f} ({kind.validation_unit}, {digits} digits)" if history else ""
    print(f"done: {got.extra['step']} steps, {got.extra['seconds'] / 60:.1f} min of training{score}; checkpoint {last}")
    return 0


def command_sample(args) -> int:
    """``sample``: reconstruct ``--n`` test digits with a trained model on its task (or ``--task``, ``--hole``) and
    save ground truth / observation / samples as a PNG. Notebook 03 runs it."""
    _check_sampler_options(args)
    device = get_device()
    kind, cfg, model, _ = _load_model(args.checkpoint, device)
    spec = args.task or (f"center:{args.hole}" if args.hole is not None else kind.default_task(cfg))
    with _usage_errors(TaskSpecError, ValueError):
        task = parse_task(spec)
        method = kind.method(model, cfg, SamplerOptions(args.steps, args.eta, args.dc_repeats))
    with _usage_errors(MNISTNotFoundError, suffix=_SET_DATA_DIR):
        test = load_mnist("test", download=True)
    x0 = test.images[: args.n].to(device)
    obs = task.observe(x0.cpu(), seed=args.seed).to(device)
    out = method.sample(obs, torch.Generator().manual_seed(args.seed))
    title = ", ".join(filter(None, (f"{kind.name}: task {task.spec}", _settings(method), f"seed {args.seed}")))
    observed = obs.mask * obs.y if task.is_mask_task else obs.y.clamp(-1, 1)
    fig = show_rows({"ground truth": x0, "observed": observed, "sample": out},
                    masks={"observed": obs.mask} if task.is_mask_task else None, n=args.n, title=title)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"saved {x0.shape[0]} reconstructed test digits ({task.spec}) to {path}")
    return 0


def _settings(method) -> str:
    """The sampler settings a method reports (its config without the kind), e.g. ``sampler repaint, steps 50``."""
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in method.config.items()
                     if k not in ("kind", "notebook", "trained_for"))


def _mnist_root(data_dir: str) -> Path:
    """Accept the folder that holds MNIST/raw/ (torchvision's root) or the MNIST folder itself."""
    root = Path(data_dir).expanduser()
    for candidate in (root, root.parent):
        raw = candidate / "MNIST" / "raw"
        if all((raw / f).exists() for f in MNIST_RAW_FILES):  # what torchvision reads (it unpacks the .gz files)
            return candidate
    raise UsageError(f"no MNIST in {root}: expected {root / 'MNIST' / 'raw'} with the four unpacked IDX files "
                     "(train/t10k images and labels), as torchvision.datasets.MNIST stores them")


def _read_mnist(root: Path):
    """(training digits, test digits) of the MNIST under ``root``, or one line saying why not."""
    with _usage_errors(Exception, prefix=f"cannot read MNIST from {root}: "):
        return load_mnist("train", root, download=False), load_mnist("test", root, download=False)


def _classifier(profile: str, root: Path, device):
    """The course classifier of ``profile`` (:func:`~course_utils.classifier.course_classifier`), said in one line;
    (model, what a results file records of it)."""
    clf, info = course_classifier(profile, root=root, device=device)
    print(f"course classifier ({profile} profile): {info['status']} {info['path']}, validation accuracy "
          f"{100 * info['val_accuracy']:.1f}%" + (f"\nnote: {info['note']}" if info["note"] else ""), flush=True)
    return clf, {k: info[k] for k in ("config", "path", "val_accuracy")}


def _write_json(path: str | Path, results: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


def command_eval(args) -> int:
    """``eval``: score a trained model (``--checkpoint``) or a classical baseline (``--method``) on a task; a
    prior's checkpoint with one of its training-free samplers (``--sampler``, notebook 05). Notebook 03 runs it."""
    _check_sampler_options(args)
    if args.k < 1:
        raise UsageError(f"--k must be at least 1 (samples per image), got {args.k}")
    if (args.checkpoint is None) == (args.method is None):
        raise UsageError("give either --checkpoint PATH (a trained model) or --method NAME (a baseline: "
                         f"{', '.join(BASELINES)})")
    if args.task is not None and args.hole is not None:
        raise UsageError("--hole N is shorthand for --task center:N: give one of them")
    spec = f"center:{args.hole}" if args.hole is not None else args.task
    with _usage_errors(TaskSpecError, one_line=False):
        task = parse_task(spec) if spec is not None else None
    root = _mnist_root(args.data_dir)
    device = get_device()
    if args.checkpoint is not None:
        kind, cfg, model, _ = _load_model(args.checkpoint, device)
        values = _kind_values(args, "eval", kind, f"the {kind.name} model in {args.checkpoint}")
        task = task or parse_task(kind.default_task(cfg))
        with _usage_errors(ValueError, prefix=f"{kind.name} model: "):
            method = kind.method(model, cfg, SamplerOptions(args.steps, args.eta, args.dc_repeats, **values))
        if not method.fits(task):
            raise UsageError(f"the {kind.name} model in {args.checkpoint} cannot do task {task.spec}: it fills masks "
                             "(center:N, rect, strokes, procedural:A-B, sparse:P)")
        model_config = {"kind": kind.name, **dataclasses.asdict(cfg)}
        if kind.tasks(cfg) and task.spec not in kind.tasks(cfg):
            print(f"note: the model was trained on {', '.join(kind.tasks(cfg))}; evaluating on {task.spec}")
    else:
        _kind_values(args, "eval", None, f"the {args.method} baseline (give --checkpoint)")
        if args.method not in BASELINES:
            raise UsageError(f"unknown --method {args.method!r}; baselines: {', '.join(BASELINES)}")
        if task is None:
            raise UsageError(f"--method {args.method} needs --task SPEC (for example --task center:12)")
        if not BASELINES[args.method].fits(task):
            fitting = ", ".join(baselines_for(task))
            raise UsageError(f"--method {args.method} does not fit task {task.spec}; for {task.spec} use: {fitting}")
        method, model_config = None, None
    library, test = _read_mnist(root)
    digits = (test if args.split == "test" else library)[: args.n]
    if method is None:
        method = baseline_method(args.method, library.images)
    if args.split == "train":
        print("note: scoring training images; the model, the classifier and the nearest-neighbour library have "
              "seen them")
    clf, clf_info = _classifier(args.profile, root, device)
    what = args.checkpoint or f"the {args.method} baseline"
    sampler = f", {_settings(method)}, K={args.k}" if method.stochastic else ""
    print(f"evaluating {what} on {len(digits)} {args.split} digits of {root}: task {task.spec}{sampler}", flush=True)
    results, _, _ = evaluate(method, digits.images, digits.labels, task, args.k, args.seed, clf, library.images)
    results["config"].update({"checkpoint": str(args.checkpoint) if args.checkpoint else None,
                              "data_dir": str(root), "split": args.split, "model": model_config,
                              "device": str(device), "classifier": clf_info})
    print(format_results(results))
    if args.json:
        _write_json(args.json, results)
    return 0


def command_ship(args) -> int:
    """``ship``: the course's shipped checkpoint of ``--model`` from a finished ``train --profile pretrained`` run
    in ``--run DIR``, written with its manifest to ``pretrained/`` (:func:`~course_utils.pretrained.ship`;
    notebook 05 starts from the shipped prior)."""
    kind = KINDS[args.model]
    _has_recipe(kind, PRETRAINED)
    with _usage_errors(CheckpointMismatchError, FileNotFoundError, MNISTNotFoundError, KeyError):
        train, val, _ = (kind.splits or load_splits)(kind.config(PRETRAINED), seed=0)
        manifest = ship(kind, args.run, train, val[: kind.validation_digits], note=args.note)
    print(f"shipped {manifest['file']} ({manifest['dtype']}, {manifest['bytes'] / 1e6:.2f} MB, sha256 "
          f"{manifest['sha256'][:12]}...): {manifest['steps']} steps, {manifest['training_minutes']} min of training; "
          f"validation {manifest['validation']['score_float32']} (float32) / {manifest['validation']['score_float16']}"
          f" (float16) on {manifest['validation']['digits']} digits")
    return 0


def command_bench(args) -> int:
    """``bench``: every method of :mod:`course_utils.benchmark` on every task it fits, the same test digits and
    observations, with the trained models of ``outputs/`` (trained first only with ``--train-missing``); writes the
    JSON and prints the PSNR tables. Notebook 06 reads what it writes."""
    changes = {key: getattr(args, key) for key in ("n", "k", "seed") if getattr(args, key) is not None}
    with _usage_errors(ValueError, one_line=False):
        cfg = benchmark.bench_config(args.profile, command=True, **changes)
    if cfg.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {cfg.seed}")
    with _usage_errors(TaskSpecError, one_line=False):
        tasks = [parse_task(spec).spec for spec in args.tasks]
    unknown = [name for name in args.methods if name not in benchmark.METHODS]
    if unknown:
        raise UsageError(f"unknown --methods {', '.join(unknown)}; choose from {', '.join(benchmark.METHODS)}")
    root = _mnist_root(args.data_dir)
    device = get_device()
    library, test = _read_mnist(root)
    if cfg.n > len(test):
        raise UsageError(f"--n {cfg.n} is more than the {len(test)} test digits in {root}")
    with _usage_errors(benchmark.MissingModelsError, one_line=False):
        methods, models = benchmark.prepare(list(dict.fromkeys(args.methods)), cfg.profile, device, root,
                                            library.images, args.train_missing)
    for key, info in models.items():
        took = f", {info['train_seconds'] / 60:.1f} min of training" if info["train_seconds"] is not None else ""
        print(f"{key:<20} {info['status']} {info['checkpoint']}{took}")
    clf, clf_info = _classifier(cfg.profile, root, device)
    digits = test[: cfg.n]
    print(f"benchmark: {len(methods)} methods x {len(tasks)} tasks on the first {cfg.n} test digits of {root}, "
          f"K = {cfg.k}, seed {cfg.seed}, on {device}", flush=True)
    result = benchmark.run_benchmark(methods, digits.images, digits.labels, tasks, cfg.k, cfg.seed, clf,
                                     library.images, profile=cfg.profile, data_dir=str(root),
                                     hardware=hardware(device), models=models,
                                     course_classifier=clf_info)
    print(f"\nPSNR over the missing pixels (mask tasks) or the image (measurements), one sample:\n"
          f"{benchmark.markdown_table(result)}")
    if cfg.k > 1:
        print(f"\nthe same, mean of {cfg.k} samples:\n{benchmark.markdown_table(result, which='mean_k')}")
    _write_json(args.json, result)
    return 0


def _add_sampler_options(p, n: int) -> None:
    """The sampler flags of ``sample`` and ``eval``; an unset ``--steps`` or ``--eta`` leaves it to the model."""
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps (default: the model's own; 50 for notebooks 03 and 04, the profile's "
                        "sample_steps for notebook 02's DDPM and a prior; DDNM, on a prior or a fine-tune: its levels, "
                        "notebook 05's by default, each repeated as notebook 05 sets or --resamplings says)")
    p.add_argument("--eta", type=float, default=None,
                   help="0 = deterministic DDIM, 1 = DDPM-like noise (default 0; DDNM on a prior or a fine-tune: 0.85)")
    p.add_argument("--dc-repeats", type=int, default=1,
                   help="data-consistency repeats per step: re-noise and denoise again (default 1 = none)")
    p.add_argument("--n", type=int, default=n, help=f"number of digits (default {n})")
    p.add_argument("--hole", type=int, default=None,
                   help="side of a centre hole in pixels: short for --task center:N (default: the model's task)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (default 0)")


def command_run(args) -> int:
    """``run``: execute the notebooks of a profile (:func:`~course_utils.runner.run_notebooks`)."""
    run_notebooks(get_profile(args.profile).name, args.notebooks)
    return 0


def command_badges(args) -> int:
    """``badges``: rewrite every Colab badge and setup cell (:func:`~course_utils.publishing.write_badges`)."""
    for path in write_badges():
        print(f"updated {path}")
    return 0


def command_site(args) -> int:
    """``site``: the course as a static HTML site (:func:`~course_utils.site.build_site`)."""
    try:
        print(f"the site's front page: {build_site(args.out, args.profile)}")
    except RuntimeError as why:  # sphinx printed its warnings above
        print(f"error: {why}", file=sys.stderr)
        return 1
    return 0


def command_runtimes(args) -> int:
    """``runtimes``: the markdown page of a run summary's times (:func:`~course_utils.reports.runtimes_page`)."""
    try:
        print(f"wrote {write_runtimes_page(args.summary, args.out)}")
    except (OSError, ValueError) as why:
        print(f"error: {args.summary}: {why}", file=sys.stderr)
        return 2
    return 0


def command_results(args) -> int:
    """``results``: the markdown page of every notebook's results in an outputs folder
    (:func:`~course_utils.reports.results_page`)."""
    try:
        print(f"wrote {write_results_page(args.outputs or output_dir(), args.profile, args.out)}")
    except (OSError, ValueError, KeyError, TypeError) as why:  # json's decode error is a ValueError
        print(f"error: a results file of the {args.profile} run could not be read ({type(why).__name__}: {why}); "
              "run its notebook again to rewrite it", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run one command; returns its exit status. The commands are taught in notebook 03."""
    parser = argparse.ArgumentParser(prog="python -m course_utils", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks into outputs/executed/")
    run.add_argument("--profile", choices=PROFILE_NAMES, default=None,
                     help="ci, cpu or full (default: $COURSE_PROFILE, else full with CUDA and cpu without)")
    run.add_argument("notebooks", nargs="*", help="only notebooks whose name starts with these (e.g. 01 02)")
    sub.add_parser("badges", help="rewrite Colab badges and setup cells from pyproject.toml's Repository URL")
    site_ = sub.add_parser("site", help="the course as one static HTML site (README, notebooks, docs/)")
    site_.add_argument("--out", required=True, help="folder for the site; DIR/index.html is its front page")
    site_.add_argument("--profile", choices=PROFILE_NAMES, default="cpu",
                       help="show the notebooks as a run of this profile left them in outputs/executed/ (default cpu)")
    runtimes = sub.add_parser("runtimes", help="a markdown page of a run's notebook and section times")
    runtimes.add_argument("--summary", required=True, help="the outputs/run_summary_<profile>.json a run wrote")
    runtimes.add_argument("--out", required=True, help="the markdown file to write (docs/section_times.md)")
    results = sub.add_parser("results", help="a markdown page of every notebook's results in a run's outputs folder")
    results.add_argument("--profile", choices=PROFILE_NAMES, default="cpu", help="the run's profile (default cpu)")
    results.add_argument("--outputs", default=None, help="the run's outputs folder (default: $COURSE_OUTPUT_DIR or "
                         "outputs/)")
    results.add_argument("--out", required=True, help="the markdown file to write (docs/results.md)")
    train = sub.add_parser("train", help="train a model kind (notebook 03's by default), checkpointing DIR/last.pt")
    train.add_argument("--model", choices=tuple(KINDS), default="center_hole",
                       help="which model: " + "; ".join(f"{k.name} = {k.description}" for k in KINDS.values()))
    train.add_argument("--profile", choices=PROFILE_NAMES + (PRETRAINED,), required=True,
                       help="size of model and training (pretrained: the recipe of the course's shipped checkpoints)")
    train.add_argument("--out", required=True, help="folder for last.pt and the validation panels")
    train.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the profile's)")
    train.add_argument("--seed", type=int, default=0, help="seed of batches and noise (default 0)")
    train.add_argument("--resume", action="store_true", help="continue the run saved in DIR/last.pt")
    checkpoint = "a last.pt written by train, or pretrained:KIND (the course's shipped checkpoint of KIND)"
    sample = sub.add_parser("sample", help="inpaint test digits with a trained model and save a PNG")
    sample.add_argument("--checkpoint", required=True, help=checkpoint)
    sample.add_argument("--out", required=True, help="PNG to write")
    sample.add_argument("--task", default=None, help="task spec (default: the one the model was trained for)")
    _add_sampler_options(sample, n=16)
    evaluate = sub.add_parser("eval", help="score a trained model or a baseline on a task (PSNR, L1, SSIM, class, "
                                           "Frechet distance, time, network calls)")
    evaluate.add_argument("--checkpoint", default=None, help=checkpoint)
    evaluate.add_argument("--method", default=None,
                          help="score a classical baseline instead: zero_fill, nearest_pixel, nearest_neighbour, "
                               "harmonic (mask tasks); observation, smoothing, bicubic, zero_filled_ifft "
                               "(measurements)")
    evaluate.add_argument("--task", default=None,
                          help="task spec, e.g. center:12, rect, strokes, procedural:0.05-0.6, sparse:0.1, noise:0.5, "
                               "lowres:4, blur:1.5, kspace:0.25 (default: the task the model was trained for)")
    evaluate.add_argument("--data-dir", required=True, help="a folder in torchvision's MNIST layout (DIR/MNIST/raw)")
    evaluate.add_argument("--profile", choices=PROFILE_NAMES, default="cpu",
                          help="which course classifier judges class preservation and the Frechet distance "
                               "(cpu, full: the course's shipped one; ci: trained once into outputs/; default cpu)")
    evaluate.add_argument("--split", choices=("test", "train"), default="test", help="images to score (default test)")
    evaluate.add_argument("--k", type=int, default=8, help="samples per image for the posterior mean (default 8)")
    evaluate.add_argument("--json", default=None, help="also write the results to this JSON file")
    _add_sampler_options(evaluate, n=500)
    bench = sub.add_parser("bench", help="every method of the course on the same test digits and tasks (notebook 06)")
    bench.add_argument("--data-dir", required=True, help="a folder in torchvision's MNIST layout (DIR/MNIST/raw)")
    bench.add_argument("--profile", choices=PROFILE_NAMES, required=True,
                       help="which trained models (from outputs/), classifier and default N and K: "
                            + "; ".join(f"{c.profile}: N={c.n}, K={c.k}" for c in benchmark.BENCH_COMMAND.values()))
    bench.add_argument("--n", type=int, default=None, help="test digits (the first N; default: the profile's)")
    bench.add_argument("--k", type=int, default=None,
                       help="samples per digit for the mean of K (default: the profile's)")
    bench.add_argument("--tasks", nargs="+", default=list(benchmark.TASKS),
                       help=f"task specs (default: {' '.join(benchmark.TASKS)})")
    bench.add_argument("--methods", nargs="+", default=list(benchmark.METHODS),
                       help=f"methods (default: all of {' '.join(benchmark.METHODS)})")
    bench.add_argument("--seed", type=int, default=None, help="seed of the observations and samples (default 0)")
    bench.add_argument("--json", required=True, help="write the results to this JSON file")
    bench.add_argument("--train-missing", action="store_true",
                       help="train the models that are not in outputs/ yet (otherwise: say which and how)")
    ship_ = sub.add_parser("ship", help="make the course's shipped checkpoint of a kind from a finished "
                                        "train --profile pretrained run (pretrained/KIND.pt and its manifest)")
    ship_.add_argument("--model", choices=tuple(KINDS), required=True, help="which kind")
    ship_.add_argument("--run", required=True,
                       help="the run folder (its last.pt) that train --profile pretrained wrote")
    ship_.add_argument("--note", default="", help="how it was trained, for the manifest (threads, other load, ...)")
    for kind in KINDS.values():  # each kind's own flags (its module declares them)
        for option in kind.options:
            {"train": train, "eval": evaluate}[option.command].add_argument(*option.flags, **option.keywords)
    args = parser.parse_args(argv)
    commands = {"train": command_train, "sample": command_sample, "eval": command_eval, "bench": command_bench,
                "ship": command_ship, "runtimes": command_runtimes, "results": command_results, "site": command_site,
                "run": command_run, "badges": command_badges}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
