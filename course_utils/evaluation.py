"""The evaluation harness: run any method on any task and score it the same way.

Taught in: 03_ddim_center_hole_data_consistency (scoring unseen test digits); used by notebooks 04 to 06 and
``python -m course_utils eval``. The protocol is the course's:

1. the clean digits become one :class:`~course_utils.tasks.Observation` per task and seed (the same for every method);
2. the method draws K reconstructions of every image (seeds ``seed``, ``seed + 1``, ...); a deterministic method once;
3. PSNR, L1 and SSIM over the missing pixels (mask tasks) or the whole image (measurement tasks), images in
   [0, 1], of one sample ("single") and of the mean of the K samples ("mean_k", the posterior-mean estimate);
4. with the course classifier: class preservation of one sample and of the mean of K, and the Frechet distance
   between the classifier's features of single samples and of the clean digits;
5. the cost: seconds per image and sample, and network calls per image and sample, counted by a hook on the
   network (so a sampler cannot under-report), and for mask tasks the largest change to a known pixel;
6. every classical baseline that fits the task, on the same observations.

:func:`evaluate` returns all of it as one JSON-ready dict (the schema of ``eval --json``), the per-image scores,
and the samples.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from . import classifier as classifier_
from .baselines import baselines_for, get_baseline
from .data import check_images
from .metrics import l1_on_mask, psnr_on_mask, ssim_on_mask
from .tasks import Observation, Task, parse_task

# Observations are drawn from their own seed stream, so the masks or measurement noise never share random
# numbers with a sampler's starting noise (which uses seed, seed + 1, ...).
OBSERVATION_SEED_OFFSET = 1_000_003


@dataclass
class Method:
    """A way to reconstruct digits from an observation.

    ``sample(observation, generator)`` returns one reconstruction per image (N x 1 x 32 x 32 in [-1, 1]);
    ``stochastic`` says whether more samples differ (if not, K = 1); ``fits(task)`` whether it can do a
    task; ``network`` (if any) is the network whose forward calls are counted; ``config`` goes to the JSON.
    """

    name: str
    sample: Callable[[Observation, torch.Generator], torch.Tensor]
    stochastic: bool = True
    fits: Callable[[Task], bool] = lambda task: True
    network: nn.Module | None = None
    config: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SamplerOptions:
    """How a diffusion model samples at evaluation time (``eval --steps --eta --dc-repeats``, and for a prior
    ``--sampler --jump-length --resamplings``; notebook 03). None leaves a setting to the model kind: 50 steps and
    eta 0 for the models that see the mask, notebook 05's settings for a prior's samplers."""

    steps: int | None = None
    eta: float | None = None
    dc_repeats: int = 1
    sampler: str | None = None
    jump_length: int | None = None
    resamplings: int | None = None

    def resolved(self, steps: int = 50, eta: float = 0.0) -> "SamplerOptions":
        """These options with an unset ``steps`` or ``eta`` given the defaults."""
        return dataclasses.replace(self, steps=steps if self.steps is None else self.steps,
                                   eta=eta if self.eta is None else self.eta)


def baseline_method(name: str, library: torch.Tensor | None = None) -> Method:
    """A classical baseline of :mod:`course_utils.baselines` as a deterministic :class:`Method`.

    ``library`` (the training digits) is needed by ``nearest_neighbour`` and ``smoothing``.
    """
    b = get_baseline(name)
    if name in ("nearest_neighbour", "smoothing") and library is None:
        raise ValueError(f"baseline {name!r} needs the training digits (library=...)")
    return Method(name, lambda obs, g: b.fill(obs, library), stochastic=False, fits=b.fits,
                  config={"baseline": name, "description": b.description})


class CallCounter:
    """Counts the images a network is called on (a forward hook adds each call's batch size)."""

    def __init__(self, network: nn.Module | None):
        self.images = 0
        self._handle = network.register_forward_hook(self._hook) if network is not None else None

    def _hook(self, module, inputs, output) -> None:
        self.images += inputs[0].shape[0]

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()


def score(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image PSNR, L1 and SSIM over the scored region (:func:`~course_utils.metrics.scored_region`)."""
    return {"psnr": psnr_on_mask(pred, target, mask), "l1": l1_on_mask(pred, target, mask),
            "ssim": ssim_on_mask(pred, target, mask)}


def draw_samples(method: Method, obs: Observation, k: int, seed: int = 0, batch_size: int = 128,
                 device=None, progress: bool = True, leave: bool = True) -> tuple[torch.Tensor, float, float]:
    """K reconstructions of every image: (samples K x N x 1 x 32 x 32 on the CPU, seconds per image and sample,
    network calls per image and sample). Sample j uses one generator seeded ``seed + j`` across all batches.
    ``leave=False`` clears the progress bar when done (the benchmark's bar stays)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    n = len(obs)
    if device is None:  # where the network's weights are (the CPU for a baseline)
        weights = next(method.network.parameters(), None) if method.network is not None else None
        device = weights.device if weights is not None else torch.device("cpu")
    samples = torch.empty((k, n, 1) + tuple(obs.y.shape[-2:]))
    counter, seconds = CallCounter(method.network), 0.0
    chunks = list(range(0, n, batch_size))
    bar = tqdm(total=len(chunks) * k, desc=f"{method.name}: sampling", disable=not progress, leave=leave)
    try:
        for j in range(k):
            gen = torch.Generator().manual_seed(seed + j)
            for i in chunks:
                part = obs[i : i + batch_size].to(device)
                start = time.perf_counter()
                out = method.sample(part, gen)
                if out.device.type == "cuda":
                    torch.cuda.synchronize(out.device)
                seconds += time.perf_counter() - start
                samples[j, i : i + batch_size] = out.detach().float().cpu()
                bar.update(1)
    finally:
        bar.close()
        counter.close()
    return samples, seconds / (n * k), counter.images / (n * k)


def evaluate(method: Method, images: torch.Tensor, labels: torch.Tensor, task: Task | str, k: int = 8, seed: int = 0,
             classifier: nn.Module | None = None, library: torch.Tensor | None = None,
             baselines: bool | list[str] = True, batch_size: int = 128, progress: bool = True,
             leave: bool = True) -> tuple[dict, dict, torch.Tensor]:
    """Score ``method`` on ``task`` over ``images`` (N x 1 x 32 x 32 in [-1, 1]) with ``labels`` (N).

    Returns (summary, per_image, samples). ``summary`` has the keys of ``eval --json``: task, region,
    n_images, k, method, metrics, baselines, classifier_test_accuracy, known_pixels_max_abs_error,
    seconds_per_image, network_calls_per_image, config. ``per_image`` holds each image's scores
    (psnr / l1 / ssim / class_correct, single and mean_k; class_correct_each_sample, the share of a digit's K
    samples that keep its class, whose mean is ``metrics["class_acc"]["each_sample"]``, P(one sample keeps the
    class) estimated from every sample). ``samples`` is K x N x 1 x 32 x 32.
    ``baselines`` is True (every baseline that fits the task), False, or a list of names; ``library``
    (training digits) is needed by the nearest-neighbour and smoothing baselines. Without ``classifier``
    class_acc and frechet are None. Taught in notebook 03."""
    task = parse_task(task)
    check_images(images, "images")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if len(images) < 2:
        raise ValueError("evaluate needs at least 2 images (the Frechet distance compares two sets)")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not method.fits(task):
        raise ValueError(f"method {method.name!r} cannot do task {task.spec!r}")
    images, labels = images.cpu(), labels.cpu()
    obs = task.observe(images, seed + OBSERVATION_SEED_OFFSET)
    k_used = k if method.stochastic else 1
    samples, seconds, calls = draw_samples(method, obs, k_used, seed, batch_size, progress=progress, leave=leave)
    single, mean = samples[0], samples.mean(0)
    per_image = {f"{name}_{which}": values for which, pred in (("single", single), ("mean_k", mean))
                 for name, values in score(pred, images, obs.mask).items()}
    metrics = {name: {"single": per_image[f"{name}_single"].mean().item(),
                      "mean_k": per_image[f"{name}_mean_k"].mean().item()} for name in ("psnr", "l1", "ssim")}
    classifier_accuracy = None
    metrics["class_acc"] = {"single": None, "mean_k": None, "each_sample": None}
    metrics["frechet"] = {"single": None}
    if classifier is not None:
        clean_feats = classifier_.features(classifier, images)
        classifier_accuracy = classifier_.accuracy(classifier, images, labels)
        # P(one sample keeps the class): every one of the K samples is "one sample", so all of them estimate it
        # (the "single" entry reads the first sample only: the same number with more noise)
        each = torch.stack([classifier_.predict(classifier, s) == labels for s in samples]).float()  # K x N
        mean_correct = (classifier_.predict(classifier, mean) == labels).float()
        for which, correct in (("single", each[0]), ("mean_k", mean_correct), ("each_sample", each.mean(0))):
            per_image[f"class_correct_{which}"] = correct
            metrics["class_acc"][which] = correct.mean().item()
        metrics["frechet"]["single"] = classifier_.frechet_distance(classifier_.features(classifier, single),
                                                                    clean_feats)
    names = baselines_for(task) if baselines is True else (list(baselines) if baselines else [])
    baseline_scores = {}
    for name in names:
        get_baseline(name, task)  # an unknown name, or one that does not fit the task, is an error
        fill = baseline_method(name, library).sample(obs, None)
        row = {key: values.float().mean().item() for key, values in score(fill, images, obs.mask).items()}
        row["class_acc"] = classifier_.accuracy(classifier, fill, labels) if classifier is not None else None
        row["frechet"] = (classifier_.frechet_distance(classifier_.features(classifier, fill), clean_feats)
                          if classifier is not None else None)
        baseline_scores[name] = row
    known = (obs.mask * (samples - obs.y)).abs().max().item() if task.is_mask_task else None
    summary = {
        "task": task.spec,
        "region": task.region,
        "n_images": int(len(images)),
        "k": k_used,
        "method": method.name,
        "metrics": metrics,
        "baselines": baseline_scores,
        "classifier_test_accuracy": classifier_accuracy,
        "known_pixels_max_abs_error": known,
        "seconds_per_image": seconds,
        "network_calls_per_image": calls,
        "config": {"method": method.config, "seed": seed, "k_requested": k},
    }
    return summary, per_image, samples


def result_rows(summary: dict) -> list[tuple[str, dict]]:
    """An eval summary's rows, (name, {psnr, l1, ssim, class_acc, frechet}): each baseline, then the method's single
    sample and its mean of K (no Frechet distance: the mean is not a sample). :func:`format_results` prints them,
    :func:`~course_utils.reports.results_page` writes them as markdown."""
    m, k, name = summary["metrics"], summary["k"], summary["method"]
    rows = list(summary["baselines"].items())
    scores = ("psnr", "l1", "ssim", "class_acc")
    if name not in summary["baselines"]:  # a baseline scored with --method is already a row
        rows.append((f"{name}, 1 sample" if k > 1 else name,
                     {**{s: m[s]["single"] for s in scores}, "frechet": m["frechet"]["single"]}))
    if k > 1:
        rows.append((f"{name}, mean of {k}", {**{s: m[s]["mean_k"] for s in scores}, "frechet": None}))
    return rows


def format_results(summary: dict) -> str:
    """An eval summary as a readable table: each baseline, then the method's single sample and mean of K.

    Taught in notebook 03."""
    region = "hole" if summary["region"] == "missing" else "image"
    k = summary["k"]

    def cell(value, fmt):
        return f"{value:{fmt}}" if value is not None else f"{'-':>{int(fmt.split('.')[0])}}"

    lines = [f"task {summary['task']}: {summary['n_images']} digits, metrics over the {region}",
             f"{'method':<34}{region + ' PSNR':>11}{region + ' L1':>10}{'SSIM':>7}{'class':>7}{'Frechet':>9}"]
    for name, r in result_rows(summary):
        lines.append(f"{name:<34}{cell(r['psnr'], '11.2f')}{cell(r['l1'], '10.4f')}{cell(r['ssim'], '7.3f')}"
                     f"{cell(r['class_acc'], '7.3f')}{cell(r['frechet'], '9.2f')}")
    each = summary["metrics"]["class_acc"].get("each_sample")
    if k > 1 and each is not None:
        lines.append(f"one sample keeps the class {each:.3f} of the time, estimated from all {k} samples of every "
                     "digit (the 1-sample row reads the first)")
    known = summary["known_pixels_max_abs_error"]
    acc = summary["classifier_test_accuracy"]
    lines.append(
        (f"known pixels max |change| {known:.2e}; " if known is not None else "")
        + f"{summary['seconds_per_image'] * 1000:.1f} ms and {summary['network_calls_per_image']:g} network calls "
        + "per image and sample"
        + (f"; the classifier recognises {100 * acc:.1f}% of the clean digits" if acc is not None else "")
    )
    return "\n".join(lines)


def summaries_markdown(summaries: dict[str, dict]) -> str:
    """Eval summaries, one per named method, as a markdown table: PSNR of one sample and of the mean of K, L1 of one
    sample, SSIM, class preservation, Frechet distance, ms and network calls per image and sample (``bench``,
    notebook 06 and docs/results.md)."""
    lines = ["| method | PSNR, 1 sample | PSNR, mean of K | L1, 1 sample | SSIM | class | Frechet | ms / image "
             "| calls / image |", "| --- |" + " ---: |" * 8]

    def cell(value, fmt):
        return "" if value is None else f"{value:{fmt}}"

    for name, s in summaries.items():
        m = s["metrics"]
        lines.append(f"| {name} | {m['psnr']['single']:.2f} | {cell(m['psnr']['mean_k'], '.2f')} (K={s['k']}) | "
                     f"{m['l1']['single']:.4f} | {m['ssim']['single']:.3f} | {cell(m['class_acc']['single'], '.3f')} | "
                     f"{cell(m['frechet']['single'], '.1f')} | {1000 * s['seconds_per_image']:.1f} | "
                     f"{s['network_calls_per_image']:g} |")
    return "\n".join(lines)

