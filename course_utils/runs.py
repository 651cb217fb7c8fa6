"""A trainable model kind, described once, and the one way to get a trained model of any kind: ``KIND.obtain``.

Taught in: 03_ddim_center_hole_data_consistency (the first resumable run); every notebook that uses a trained
model, ``train``, ``sample``, ``eval`` and ``bench`` get it through :func:`obtain` or :func:`load`.

A :class:`ModelKind` holds only what is its own: its settings per profile (a frozen dataclass with at least
``profile``, ``steps``, ``lr``, ``warmup``, ``ema_decay`` and ``save_every``), its network, its loss on a batch,
how it validates and how it reconstructs. What every kind shares lives here, once:

- :meth:`ModelKind.config` (a profile's settings with changes) and :func:`config_dict` (what a checkpoint stores);
- :meth:`ModelKind.run_dir`: one folder per configuration, ``outputs/<kind folder>/<profile>-<hash of the config>``;
- :meth:`ModelKind.train`: the kind's loss handed to the course's one loop :func:`~course_utils.training.fit`,
  with EMA, a checkpoint every ``cfg.save_every`` steps (which records the kind by name) and exact resume;
- :meth:`ModelKind.load`: a checkpoint read back with ``weights_only=True``, its kind and config checked;
- :meth:`ModelKind.obtain`: the course's shipped checkpoint for the ``pretrained`` recipe
  (:mod:`course_utils.pretrained`); else reuse a finished run of the configuration, resume an unfinished one, or
  train it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn

from .checkpoints import CheckpointMismatchError, config_dict, first_line, read_checkpoint
from .config import PRETRAINED, Profile, get_profile, output_dir, run_name
from .data import DigitSet, load_splits
from .pretrained import SHIPPED_DIR, fingerprint, is_shipped, load_shipped
from .training import Checkpointing, LossFn, fast_layout, fit

Validate = Callable[[nn.Module, object, DigitSet], tuple[float, object]]


@dataclass(frozen=True)
class RunConfig:
    """What every kind's run has: its training budget (a kind's config adds its own fields and may change these
    defaults; notebook 03's is the first). A checkpoint stores the whole config."""

    profile: str
    batch_size: int = 64
    steps: int = 2000
    lr: float = 2e-3
    warmup: int = 100
    ema_decay: float = 0.999  # 0 switches EMA off (sample with the trained weights)
    save_every: int = 250  # write last.pt (and a validation panel) this often
    train_size: int = 60000  # MNIST training digits used (capped by what is there)


@dataclass(frozen=True)
class DiffusionConfig(RunConfig):
    """A run of a diffusion kind (notebooks 03 to 05): the schedule, what the network predicts, the U-Net's widths
    and the sampler's default number of steps."""

    schedule: str = "cosine"
    T: int = 1000
    prediction: str = "x0"  # what the network outputs: eps, x0 or v (notebook 03's finding: x0 at this budget)
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 4)
    sample_steps: int = 25


class Option:
    """A command-line flag of one kind's own, for ``command`` (``train`` or ``eval``): ``Option("train",
    "--lora-rank", type=int, default=None, help=...)`` is added to that command's parser with argparse's
    keywords, and only that kind takes it (notebook 05's kinds have some)."""

    def __init__(self, command: str, *flags: str, **argparse_keywords):
        self.command, self.flags, self.keywords = command, flags, argparse_keywords

    @property
    def dest(self) -> str:
        return self.keywords.get("dest") or self.flags[0].lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class ModelKind:
    """One trainable model kind (notebook 03 introduces the first; ``train --model NAME`` takes ``name``).

    ``presets`` maps each profile to its config; ``build(cfg)`` makes the network (``build(cfg, base)`` for a kind
    that starts from another trained network, which ``base(cfg, device, source)`` returns); ``loss(cfg, train
    digits, device)`` returns the loss of one batch drawn from a generator, ``(model, generator) -> loss``;
    ``method(model, cfg, options)`` samples it as an evaluation :class:`~course_utils.evaluation.Method` (a kind
    that reconstructs nothing, the course classifier, has none); ``tasks(cfg)`` lists the task specs it was trained
    for and ``default_task(cfg)`` the one ``eval`` scores; ``validate(model, cfg, validation digits)`` returns
    (score in ``validation_unit``, figure or None) at every save; ``check(cfg)`` raises
    ``ValueError`` on a bad setting; ``splits(cfg, seed, root)`` gives (train, validation, test) when the kind
    trains on other digits than :func:`~course_utils.data.load_splits`; ``options`` are the kind's own
    command-line flags (:class:`Option`; :mod:`course_utils.cli` adds them), and ``configure(profile, values of
    its train flags)`` makes the config ``train`` trains (default: the profile's)."""

    name: str
    description: str
    notebook: str
    folder: str
    presets: Mapping[str, object]
    build: Callable[..., nn.Module]
    loss: Callable[[object, DigitSet, torch.device], LossFn]
    method: Callable[..., object] | None = None  # (model, cfg, SamplerOptions) -> evaluation Method
    tasks: Callable[[object], tuple[str, ...]] = lambda cfg: ()
    default_task: Callable[[object], str] | None = None
    validate: Validate | None = None
    validation_digits: int = 64
    validation_unit: str = "dB, 1 sample"
    check: Callable[[object], None] | None = None
    splits: Callable[..., tuple] | None = None
    base: Callable[..., nn.Module] | None = None
    options: tuple[Option, ...] = ()
    configure: Callable[[str, dict], object] | None = None

    @property
    def config_class(self) -> type:
        return type(next(iter(self.presets.values())))

    def command(self, out: str | Path = "DIR", profile: str = "cpu") -> str:
        """The command line that trains this kind into ``out``."""
        return f"python -m course_utils train --model {self.name} --profile {profile} --out {out}"

    def config(self, profile: str | Profile | None = None, **changes):
        """The settings of this kind in ``profile`` (default ``$COURSE_PROFILE``) with ``changes`` applied, checked
        by the kind. Used in notebooks 02 to 06."""
        name = profile.name if isinstance(profile, Profile) else (
            PRETRAINED if profile == PRETRAINED else get_profile(profile).name)
        cfg = dataclasses.replace(self.presets[name], **changes)
        if self.check is not None:
            self.check(cfg)
        return cfg

    def default_config(self, profile: str | Profile | None = None):
        """The config notebooks and ``bench`` use in ``profile``: the course's shipped ``pretrained`` recipe in the
        cpu and full profiles when it ships this kind (:func:`~course_utils.pretrained.is_shipped`), else the
        profile's own (ci keeps its tiny models). Used in notebooks 03 to 06 (and by ``bench``)."""
        name = profile.name if isinstance(profile, Profile) else get_profile(profile).name
        return self.config(PRETRAINED if name in ("cpu", "full") and is_shipped(self) else name)

    def run_dir(self, cfg) -> Path:
        """``outputs/<folder>/<profile>-<hash of the config>``: the run folder of one configuration, so runs of
        other profiles or settings never share (or overwrite) a checkpoint."""
        return output_dir(self.folder, run_name(cfg.profile, config_dict(cfg)))

    def train(self, cfg, digits: DigitSet, out_dir: str | Path, device: torch.device, seed: int = 0,
              resume: bool = False, val: DigitSet | None = None, until: int | None = None,
              progress: bool = True, loss: LossFn | None = None,
              base_from: str | Path | nn.Module | None = None) -> dict:
        """Train this kind in ``cfg`` on ``digits`` with :func:`~course_utils.training.fit`, writing
        ``out_dir/last.pt`` every ``cfg.save_every`` steps and at the end (notebook 03).

        The initial weights come from ``torch.manual_seed(seed)`` (after the base network, if the kind has one,
        was obtained from ``base_from``); batches, t, eps and everything else the loss draws come from one CPU
        generator seeded with ``seed``, so ``resume=True`` continues the very same run (bit for bit on the CPU).
        ``loss`` replaces the kind's loss (a notebook's control experiment). At every save the model to sample
        with is scored on ``val`` (validation digits, never test) by the kind's ``validate``; a figure it
        returns goes to ``out_dir/panel_<step>.png``. Returns {"model", "ema" (the model to sample with),
        "losses", "history" (step, seconds, validation score), "step", "seconds"}.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        base = self.base(cfg, device, base_from) if self.base is not None else None
        torch.manual_seed(seed)  # the initial weights
        model = fast_layout(self.build(cfg) if base is None else self.build(cfg, base), device)
        history: list = []

        def on_save(step: int, sample_model: nn.Module, seconds: float) -> None:
            if val is None or self.validate is None:
                return
            score, fig = self.validate(sample_model, cfg, DigitSet(val.images.to(device), val.labels.to(device)))
            history.append((step, seconds, score))
            if fig is not None:
                fig.savefig(out_dir / f"panel_{step:06d}.png", dpi=80, bbox_inches="tight")
                plt.close(fig)

        loss_fn = loss or self.loss(cfg, digits, device)
        state = {"history": history, "seed": seed, "validation_digits": 0 if val is None else len(val),
                 "training_digits": fingerprint(digits),
                 **getattr(loss_fn, "state", {})}  # a loss may keep a batch order
        saving = Checkpointing(out_dir / "last.pt", config_dict(cfg), cfg.save_every, kind=self.name, state=state,
                               on_save=on_save, resume=resume)
        run = fit(model, loss_fn, cfg.steps, cfg.lr, torch.Generator().manual_seed(seed), warmup=cfg.warmup,
                  ema_decay=cfg.ema_decay, checkpoint=saving, until=until, progress=progress)
        return {**run, "history": saving.state["history"]}

    def load(self, path: str | Path, map_location="cpu"):
        """(config, model to sample with (the EMA weights if the run kept them), extra) of a checkpoint of this
        kind, read with ``weights_only=True``. A file of another kind, or one whose config this code no longer
        builds, is a :class:`~course_utils.checkpoints.CheckpointMismatchError` naming the command that makes a
        new one. Used in notebook 06 and by ``sample`` / ``eval``."""
        payload = read_checkpoint(path, map_location)
        if payload.get("kind") != self.name:
            raise CheckpointMismatchError(f"{path} holds a {payload.get('kind') or 'model of no recorded kind'}, "
                                          f"not a {self.name} model; make one with `{self.command()}`")
        try:
            cfg = config_from_dict(self, payload["config"])
            if self.check is not None:
                self.check(cfg)
            model = self.build(cfg)
            extra = payload["extra"]
            model.load_state_dict(extra["ema"] if "ema" in extra else payload["state_dict"])
        except (TypeError, ValueError, RuntimeError, KeyError) as why:
            raise CheckpointMismatchError(f"{path} was written by another version of the course's {self.name} "
                                          f"model ({first_line(why)[:160]}); make a new one with "
                                          f"`{self.command()}`")
        return cfg, model.eval(), extra

    def obtain(self, cfg, device: torch.device | str = "cpu", *, out_dir: str | Path | None = None,
               root: str | Path | None = None, seed: int = 0, allow_training: bool = True, progress: bool = True,
               base_from: str | Path | nn.Module | None = None, log: Callable[[str], None] = print) -> "Trained":
        """A trained model of this kind for ``cfg``: for the ``pretrained`` recipe the course's shipped checkpoint
        (:func:`~course_utils.pretrained.load_shipped`, status ``shipped``) when it ships one; otherwise the
        finished run in ``out_dir`` (default :meth:`run_dir`) is
        reused, an unfinished one resumed, and a missing one trained there on the kind's training digits of the
        MNIST under ``root`` (validated on its first ``validation_digits`` validation digits). With
        ``allow_training=False`` a missing or unfinished run is a :class:`MissingModelError` that names the
        command to make it. Used in notebooks 02 to 05 and by ``train`` and ``bench``."""
        device = torch.device(device)
        if out_dir is None and is_shipped(self) and config_dict(cfg) == config_dict(self.config(PRETRAINED)):
            cfg, model, manifest = load_shipped(self)  # the course's own checkpoint, checked; never retrained
            history = [(step, 60 * minutes, score) for step, minutes, score in manifest["validation"]["history"]]
            extra = {"losses": manifest["losses"], "history": history, "step": manifest["steps"],
                     "seconds": 60 * manifest["training_minutes"], "manifest": manifest}
            return Trained(self, cfg, fast_layout(model, device), SHIPPED_DIR / f"{self.name}.pt", "shipped", extra)
        folder = Path(out_dir) if out_dir is not None else self.run_dir(cfg)
        path = folder / "last.pt"
        status = run_status(path, self, cfg)
        if status != "reuse":
            if not allow_training:
                raise MissingModelError(f"{self.name} ({self.notebook}): "
                                        f"{'unfinished' if status == 'resume' else 'no'} run at {path}; make it "
                                        f"with: {self.command(folder, cfg.profile)}")
            digits, val, _ = (self.splits or load_splits)(cfg, seed=0, root=root)
            log(f"{self.name}: {'resuming' if status == 'resume' else 'training'} {cfg.steps} steps into {folder} "
                f"({len(digits)} training digits, {device})")
            self.train(cfg, digits, folder, device, seed=seed, resume=status == "resume", progress=progress,
                       val=val[: self.validation_digits], base_from=base_from)
        cfg, model, extra = self.load(path)
        return Trained(self, cfg, fast_layout(model, device), path,
                       {"reuse": "reused", "resume": "resumed", "train": "trained"}[status], extra)


def config_from_dict(kind: ModelKind, stored: dict):
    """The config a checkpoint stored, rebuilt as ``kind``'s config class (lists back to tuples); notebook 05's
    fine-tunes rebuild their prior's config with it."""
    return kind.config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})


def run_status(path: str | Path, kind: ModelKind, cfg) -> str:
    """``reuse`` a finished run at ``path``, ``resume`` an unfinished run of the same configuration (or of the
    same one with fewer steps: a run may be lengthened), or ``train`` (no file yet). A file of another kind or
    configuration is an error, never a reason to overwrite it (notebook 03)."""
    path = Path(path)
    if not path.exists():
        return "train"
    saved, want = read_checkpoint(path), config_dict(cfg)
    same = {**saved["config"], "steps": want["steps"]} == want and saved["config"].get("steps", 0) <= cfg.steps
    if saved.get("kind") != kind.name or not same:
        raise CheckpointMismatchError(f"{path} holds a run of another kind or configuration; it is left as it is: "
                                      "train into another folder")
    return "reuse" if saved["extra"]["step"] >= cfg.steps else "resume"


class MissingModelError(RuntimeError):
    """:meth:`ModelKind.obtain` found no finished run and was told not to train; the message says how to make it
    (notebook 06's benchmark lists them)."""


@dataclass
class Trained:
    """What :meth:`ModelKind.obtain` returns: the config, the network to sample with (on the device, in eval mode), its
    checkpoint, what happened (``shipped``, ``reused``, ``resumed`` or ``trained``) and the checkpoint's extras (losses,
    history, seconds, step; for a shipped checkpoint also its ``manifest``). Notebooks 02 to 06 read their models
    from one."""

    kind: ModelKind
    cfg: object
    model: nn.Module
    path: Path
    status: str
    extra: dict
