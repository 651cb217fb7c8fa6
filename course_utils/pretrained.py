"""The course's shipped checkpoints: each model kind trained once with its ``pretrained`` recipe, by the course's own
``train`` command, and kept in the repository's ``pretrained/`` folder with a manifest.

Taught in: 02_ddpm_from_scratch_masked_mnist (section 11 loads the shipped DDPM); used in notebooks 02 to 06 (their
shipped models; notebook 05's adaptation starts from the shipped prior); ``eval``, ``sample`` and ``bench`` take a
shipped model as ``--checkpoint pretrained:KIND``.

A shipped file (``pretrained/KIND.pt``) holds what sampling needs: the kind, its config and the weights it samples
with (EMA where the run kept them), in float16 when that moves the validation score by at most
:data:`FLOAT16_TOLERANCE`, read with ``weights_only=True``. Its manifest (``pretrained/KIND.json``) says how it was
made: the exact command, seed, steps, training time and hardware, the code commit, a fingerprint of the training
digits, the file's sha256 and the validation numbers. A file that is missing, truncated or modified (its sha256), or
that was made for another recipe than the code's (its config), is refused with one line naming the file and the
command that remakes it: a shipped checkpoint is never silently replaced, retrained over or used.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn

from .checkpoints import CheckpointMismatchError, config_dict, first_line, read_checkpoint, save_checkpoint
from .config import PRETRAINED, hardware
from .data import DigitSet

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
FLOAT16_TOLERANCE = 0.05  # largest validation loss (in the kind's score: dB, or % for the classifier) float16 may cost


class ShippedCheckpointError(CheckpointMismatchError):
    """A shipped checkpoint that is missing, damaged or made for another recipe; the message names the file and
    the command that remakes it (notebook 05)."""


def remake_command(kind) -> str:
    """The two commands that make ``kind``'s shipped checkpoint again: its ``pretrained`` recipe, then ``ship``."""
    return f"{kind.command('RUN', PRETRAINED)} && python -m course_utils ship --model {kind.name} --run RUN"


def sha256(path: str | Path) -> str:
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(digits: DigitSet) -> str:
    """A short sha256 of a set of digits (images and labels): which training digits a checkpoint saw."""
    digest = hashlib.sha256(digits.images.numpy().tobytes())
    digest.update(digits.labels.numpy().tobytes())
    return digest.hexdigest()[:16]


def is_shipped(kind, folder: str | Path = SHIPPED_DIR) -> bool:
    """Whether the course ships a checkpoint of ``kind`` (its file is there; :func:`load_shipped` checks it)."""
    return (Path(folder) / f"{kind.name}.pt").is_file()


def load_shipped(kind, folder: str | Path = SHIPPED_DIR, map_location="cpu"):
    """(config, network in eval mode, manifest) of ``kind``'s shipped checkpoint, after checking that the file is
    the one its manifest describes (sha256), that it reads with ``weights_only=True``, that its config is the code's
    ``pretrained`` recipe of the kind and that the code's network takes its weights. Anything else is a
    :class:`ShippedCheckpointError` of one line (notebook 02 calls it directly;
    :meth:`~course_utils.runs.ModelKind.obtain` uses it for every shipped kind)."""
    path, manifest_path = Path(folder) / f"{kind.name}.pt", Path(folder) / f"{kind.name}.json"
    remake = f"restore it with `git checkout -- {path.parent.name}/` or remake it: {remake_command(kind)}"
    if not path.is_file() or not manifest_path.is_file():
        raise ShippedCheckpointError(f"no shipped {kind.name} checkpoint at {path} (and its manifest): {remake}")
    manifest = json.loads(manifest_path.read_text())
    if sha256(path) != manifest.get("sha256"):
        raise ShippedCheckpointError(f"{path} is not the file its manifest describes (sha256 differs: truncated or "
                                     f"modified); {remake}")
    payload = read_checkpoint(path, map_location)
    recipe = kind.config(PRETRAINED)
    want = config_dict(recipe)
    if payload.get("kind") != kind.name or payload["config"] != want:
        changed = sorted(k for k in set(want) | set(payload["config"]) if want.get(k) != payload["config"].get(k))
        raise ShippedCheckpointError(f"{path} was made for another {kind.name} recipe than this code's "
                                     f"(differs in {', '.join(changed) or 'kind'}); {remake}")
    model = kind.build(recipe)
    try:
        model.load_state_dict(payload["state_dict"])  # float16 weights are copied into the float32 network
    except RuntimeError as why:
        raise ShippedCheckpointError(f"{path} no longer loads into the code's {kind.name} network "
                                     f"({first_line(why)[:120]}); {remake}") from None
    return recipe, model.eval(), manifest


def provenance(manifest: dict, train: DigitSet, may_overlap: str) -> str:
    """What a notebook prints about a shipped checkpoint it uses: the file, its dtype and sha256, the command that
    made it, on how many training digits and where; and, when ``train`` is not the digits it was trained on (another
    MNIST folder), that ``may_overlap`` (which of the notebook's splits may hold digits the model has seen).
    Notebooks 02 to 05 print it."""
    lines = [f"the course's shipped {manifest['kind']} model {manifest['file']} ({manifest['dtype']}, sha256 "
             f"{manifest['sha256'][:12]}...), made by", f"  {manifest['command']}",
             f"on {manifest['training_digits']['count']} training digits; {manifest['hardware']}"]
    if manifest["training_digits"]["fingerprint"] != fingerprint(train):
        lines.append(f"note: this MNIST is not the one the shipped model was trained on (its "
                     f"{manifest['training_digits']['count']} training digits), so {may_overlap}")
    return "\n".join(lines)


def _commit() -> str:
    """The checkout's commit, with ``-dirty`` when it has uncommitted changes (commit before shipping)."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _score(kind, model: nn.Module, cfg, val: DigitSet) -> float:
    score, fig = kind.validate(model, cfg, val)
    if fig is not None:
        plt.close(fig)
    return score


def ship(kind, run: str | Path, train_digits: DigitSet, val: DigitSet, note: str = "",
         folder: str | Path = SHIPPED_DIR) -> dict:
    """Write ``kind``'s shipped checkpoint from the finished ``pretrained`` run in ``run`` (its ``last.pt``): the
    EMA weights in float16 when that costs at most :data:`FLOAT16_TOLERANCE` of the kind's validation score on
    ``val`` (validation digits, same seed both ways), else in float32, and the manifest. Returns the
    manifest. ``python -m course_utils ship`` runs it."""
    cfg, model, extra = kind.load(Path(run) / "last.pt")
    stored, seed = config_dict(cfg), extra.get("seed", 0)
    if stored != config_dict(kind.config(PRETRAINED)) or extra["step"] < cfg.steps:
        raise ShippedCheckpointError(f"{run} holds no finished run of the code's {PRETRAINED} recipe of {kind.name} "
                                     f"(profile {cfg.profile}, step {extra['step']} of {cfg.steps})")
    commit = _commit()  # before the file below is written: replacing a shipped file would make the tree dirty
    full = rounded = None
    if kind.validate is not None:  # a kind without a validation score ships float32
        full = _score(kind, model, cfg, val)
        half = kind.build(cfg)
        half.load_state_dict({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()})
        rounded = _score(kind, half.eval(), cfg, val)
    use_half = full is not None and abs(full - rounded) <= FLOAT16_TOLERANCE
    path = Path(folder) / f"{kind.name}.pt"
    save_checkpoint(path, model.half() if use_half else model, stored, kind=kind.name)
    history = extra.get("history") or []
    manifest = {
        "kind": kind.name, "file": path.name, "sha256": sha256(path), "bytes": path.stat().st_size,
        "dtype": "float16" if use_half else "float32", "config": stored,
        "command": f"{kind.command(run, PRETRAINED)} --seed {seed}",
        "seed": seed, "steps": extra["step"], "training_minutes": round(extra["seconds"] / 60, 1),
        "hardware": hardware("cpu"), "note": note, "code_commit": commit,
        "shipped": datetime.date.today().isoformat(),
        "training_digits": {"count": len(train_digits), "fingerprint": fingerprint(train_digits)},
        "validation": {"digits": len(val), "score_float32": full and round(full, 3),
                       "score_float16": rounded and round(rounded, 3),
                       "history": [[step, round(sec / 60, 2), round(score, 3)] for step, sec, score in history]},
        "losses": [round(loss, 5) for loss in extra["losses"]],  # every step's, for the notebooks' training curve
    }
    Path(folder, f"{kind.name}.json").write_text(manifest_text(manifest))
    return manifest


def manifest_text(manifest: dict) -> str:
    """A manifest as JSON, one key a line and every list of numbers on one line (the training curve included)."""
    text = json.dumps(manifest, indent=1)
    return re.sub(r"\[[^\[\]{}]*\]", lambda m: json.dumps(json.loads(m.group(0))), text) + "\n"
