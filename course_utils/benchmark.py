"""The benchmark's core: every method on every task it can do, the same digits, observations and metrics.

For notebook 06 (not written yet) and the ``bench`` command it will get; notebook 03 taught the harness this runs
(:func:`~course_utils.evaluation.evaluate`). A method that cannot do a task gets ``None`` for that task (an empty
cell), never a made-up number; the classical baselines are scored as methods of their own, on the very
observations the trained methods see (one observation seed for the whole table).
"""

from __future__ import annotations

import datetime

import torch
from torch import nn

from .evaluation import Method, evaluate
from .tasks import parse_task


def run_benchmark(methods: dict[str, Method], images: torch.Tensor, labels: torch.Tensor, tasks: list[str],
                  k: int = 8, seed: int = 0, classifier: nn.Module | None = None,
                  library: torch.Tensor | None = None, progress: bool = True, **about) -> dict:
    """Score each method of ``methods`` on each task it fits (``method.fits``) with :func:`evaluate` (``k``
    samples, the same ``seed``: the same observations for every method). Returns the benchmark's JSON:
    ``{"methods": {name: {task: summary or None}}, "tasks", "n_images", "k", "seed", "date", **about}``
    (``about``: the profile, the data folder, ...). Notebook 06 and ``bench``; the harness is notebook 03's."""
    if not methods:
        raise ValueError("give at least one method to benchmark")
    specs = [parse_task(spec).spec for spec in tasks]
    table: dict[str, dict] = {}
    for name, method in methods.items():
        table[name] = {}
        for spec in specs:
            if not method.fits(parse_task(spec)):
                table[name][spec] = None
                continue
            summary, _, _ = evaluate(method, images, labels, spec, k=k, seed=seed, classifier=classifier,
                                     library=library, baselines=False, progress=progress)
            table[name][spec] = summary
    return {"methods": table, "tasks": specs, "n_images": int(len(images)), "k": k, "seed": seed,
            "date": datetime.date.today().isoformat(), **about}


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
