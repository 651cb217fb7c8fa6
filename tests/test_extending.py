"""Extending the course: a new model kind is one module plus one registry line, a new training-free sampler one
function plus one registry line, and both then work through the same commands (train, eval, sample) as the
course's own."""

import json
import os
from pathlib import Path

import torch

import toy_kind
from course_utils import cli, inpainting, kinds


def _data_dir() -> str:
    return os.environ["COURSE_DATA_DIR"]


def test_a_toy_kind_trains_saves_reloads_and_evaluates_through_the_commands(tmp_path, monkeypatch):
    monkeypatch.setitem(kinds.KINDS, "toy", toy_kind.KIND)  # the one registry line
    out = tmp_path / "toy"
    assert cli.main(["train", "--model", "toy", "--profile", "ci", "--out", str(out)]) == 0
    checkpoint = out / "last.pt"
    assert kinds.kind_of_checkpoint(checkpoint) is toy_kind.KIND
    cfg, model, extra = toy_kind.KIND.load(checkpoint)
    assert isinstance(model, toy_kind.ToyNet) and extra["step"] == cfg.steps == 6
    again = toy_kind.KIND.obtain(cfg, out_dir=out, allow_training=False)  # reused, not retrained
    assert again.status == "reused"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.model.state_dict().values()))
    report = tmp_path / "toy.json"
    assert cli.main(["eval", "--checkpoint", str(checkpoint), "--data-dir", _data_dir(), "--n", "6", "--k", "2",
                     "--profile", "ci", "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["task"] == "center:8" and result["config"]["model"]["kind"] == "toy"
    assert result["network_calls_per_image"] == cfg.sample_steps  # per image and sample: 3 DDIM steps
    assert cli.main(["sample", "--checkpoint", str(checkpoint), "--steps", "2", "--n", "3",
                     "--out", str(tmp_path / "toy.png")]) == 0
    assert (tmp_path / "toy.png").stat().st_size > 0


def toy_ddim(denoiser, y, mask, generator, steps):
    """The toy sampler: replacement on DDIM's deterministic step (eta = 0) instead of DDPM's."""
    return inpainting.replacement_inpaint(denoiser, y, mask, steps, "ddim", eta=0.0, generator=generator)


def test_a_toy_sampler_is_one_function_and_one_registry_line(tmp_path, monkeypatch):
    monkeypatch.setitem(inpainting.SAMPLERS, "toy_ddim", inpainting.Sampler(
        "toy_ddim", "replacement on DDIM steps", toy_ddim, lambda levels: {"steps": levels}, {"steps": "steps"}))
    out = tmp_path / "prior"
    assert cli.main(["train", "--model", "prior", "--profile", "ci", "--out", str(out), "--steps", "4"]) == 0
    report = tmp_path / "toy_sampler.json"
    assert cli.main(["eval", "--checkpoint", str(out / "last.pt"), "--task", "center:12", "--sampler", "toy_ddim",
                     "--steps", "3", "--data-dir", _data_dir(), "--n", "4", "--k", "1", "--profile", "ci",
                     "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["config"]["method"]["sampler"] == "toy_ddim" and result["config"]["method"]["steps"] == 3
    assert result["network_calls_per_image"] == 3
    assert Path(report).stat().st_size > 0
