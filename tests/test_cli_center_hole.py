"""The train / sample / eval commands of notebook 03 (a contract: scripts and the README use these names)."""

import json
import subprocess
import sys

import pytest
import torch

from course_utils import center_hole, checkpoints, cli, config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert cli.main(["train", "--profile", "ci", "--out", str(out), "--steps", "6"]) == 0
    return out


def _fails(argv, match):
    with pytest.raises(SystemExit) as err:
        cli.main(argv)
    message = str(err.value.code)
    assert err.value.code not in (0, None)
    assert "\n" not in message.strip(), message
    assert match in message, message


def test_python_m_course_utils_help():
    out = subprocess.run([sys.executable, "-m", "course_utils", "eval", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for option in ("--checkpoint", "--method", "--task", "--data-dir", "--split", "--n", "--steps", "--eta",
                   "--dc-repeats", "--k", "--hole", "--seed", "--profile", "--json"):
        assert option in out.stdout


def test_train_writes_a_resumable_checkpoint(trained):
    cfg, _, extra = center_hole.KIND.load(trained / "last.pt")
    assert cfg.profile == "ci" and cfg.steps == 6 and extra["step"] == 6
    _fails(["train", "--profile", "ci", "--out", str(trained)], "--resume")
    assert cli.main(["train", "--profile", "ci", "--out", str(trained), "--resume", "--steps", "8"]) == 0
    assert center_hole.KIND.load(trained / "last.pt")[2]["step"] == 8
    _fails(["train", "--profile", "cpu", "--out", str(trained), "--resume"], "profile")


def test_resume_without_a_checkpoint_fails(tmp_path):
    _fails(["train", "--profile", "ci", "--out", str(tmp_path), "--resume"], "no checkpoint")


def test_sample_writes_a_png(trained, tmp_path):
    png = tmp_path / "s.png"
    assert cli.main(["sample", "--checkpoint", str(trained / "last.pt"), "--steps", "3", "--n", "4", "--out", str(png)]) == 0
    assert png.stat().st_size > 1000


KEYS = {"task", "region", "n_images", "k", "method", "metrics", "baselines", "classifier_test_accuracy",
        "known_pixels_max_abs_error", "seconds_per_image", "network_calls_per_image", "config"}


def test_eval_prints_and_writes_the_contract_json(trained, tmp_path, capsys):
    path = tmp_path / "e.json"
    argv = ["eval", "--checkpoint", str(trained / "last.pt"), "--data-dir", str(config.data_dir()), "--n", "8",
            "--steps", "3", "--k", "2", "--dc-repeats", "2", "--eta", "1", "--profile", "ci", "--json", str(path)]
    assert cli.main(argv) == 0
    assert "nearest_neighbour" in capsys.readouterr().out
    res = json.loads(path.read_text())
    assert set(res) == KEYS
    assert res["task"] == "center:12" and res["region"] == "missing" and res["k"] == 2  # the trained task by default
    for key in ("psnr", "l1", "ssim", "class_acc"):
        assert isinstance(res["metrics"][key]["single"], float) and isinstance(res["metrics"][key]["mean_k"], float)
    assert isinstance(res["metrics"]["frechet"]["single"], float)
    assert set(res["baselines"]) == {"zero_fill", "nearest_pixel", "nearest_neighbour", "harmonic"}
    for row in res["baselines"].values():
        assert set(row) == {"psnr", "l1", "ssim", "class_acc", "frechet"}
    assert 0 <= res["metrics"]["class_acc"]["single"] <= 1 and 0 <= res["classifier_test_accuracy"] <= 1
    assert 0 <= res["metrics"]["class_acc"]["each_sample"] <= 1  # one sample's class, estimated from all K samples
    assert res["known_pixels_max_abs_error"] == 0.0
    assert res["network_calls_per_image"] == 6  # 3 steps x 2 data-consistency repeats
    assert res["n_images"] == 8 and res["seconds_per_image"] > 0 and isinstance(res["config"], dict)


def test_eval_hole_is_shorthand_for_a_center_task(trained, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    common = ["--checkpoint", str(trained / "last.pt"), "--data-dir", str(config.data_dir()), "--n", "6", "--steps",
              "2", "--k", "1", "--profile", "ci"]
    assert cli.main(["eval", *common, "--hole", "8", "--json", str(a)]) == 0
    assert cli.main(["eval", *common, "--task", "center:8", "--json", str(b)]) == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ra["task"] == rb["task"] == "center:8" and ra["metrics"] == rb["metrics"]


def test_eval_scores_a_baseline_without_a_checkpoint(tmp_path):
    path = tmp_path / "b.json"
    assert cli.main(["eval", "--method", "bicubic", "--task", "lowres:4", "--data-dir", str(config.data_dir()),
                     "--n", "10", "--profile", "ci", "--json", str(path)]) == 0
    res = json.loads(path.read_text())
    assert set(res) == KEYS and res["method"] == "bicubic" and res["region"] == "image" and res["k"] == 1
    assert res["metrics"]["psnr"]["single"] == res["metrics"]["psnr"]["mean_k"] == res["baselines"]["bicubic"]["psnr"]
    assert res["known_pixels_max_abs_error"] is None and res["network_calls_per_image"] == 0


def test_eval_errors_say_what_to_fix(trained, tmp_path):
    ck, data = str(trained / "last.pt"), str(config.data_dir())
    _fails(["eval", "--checkpoint", str(tmp_path / "none.pt"), "--data-dir", data], "no checkpoint")
    _fails(["eval", "--checkpoint", ck, "--data-dir", str(tmp_path)], "no MNIST")
    _fails(["eval", "--checkpoint", ck, "--data-dir", data, "--hole", "40"], "--hole")
    _fails(["eval", "--checkpoint", ck, "--data-dir", data, "--k", "0"], "--k")
    _fails(["eval", "--checkpoint", ck, "--data-dir", data, "--task", "center:40"], "Valid forms")
    _fails(["eval", "--checkpoint", ck, "--data-dir", data, "--task", "noise:0.5"], "cannot do task")
    _fails(["eval", "--checkpoint", ck, "--data-dir", data, "--task", "rect", "--hole", "8"], "shorthand")
    _fails(["eval", "--data-dir", data, "--task", "rect"], "either --checkpoint")
    _fails(["eval", "--method", "harmonic", "--data-dir", data, "--task", "kspace:0.25"], "does not fit")
    _fails(["eval", "--method", "harmonic", "--data-dir", data], "needs --task")
    _fails(["eval", "--method", "magic", "--data-dir", data, "--task", "rect"], "unknown --method")
    other = tmp_path / "02.pt"
    checkpoints.save_checkpoint(other, torch.nn.Linear(1, 1), {"base_channels": 8})
    _fails(["eval", "--checkpoint", str(other), "--data-dir", data], "no model kind")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    _fails(["sample", "--checkpoint", str(junk), "--out", str(tmp_path / "x.png")], "not a course checkpoint")


def test_a_foreign_pickle_is_refused_without_advising_weights_only_false(tmp_path):
    """torch's own message suggests weights_only=False; the course never points students at that."""
    import argparse

    evil = tmp_path / "evil.pt"
    torch.save({"config": {}, "state_dict": {}, "object": argparse.Namespace(a=1)}, evil)  # not weights-only
    for path in (evil, config.repo_root() / "README.md"):
        with pytest.raises(SystemExit) as err:
            cli.main(["sample", "--checkpoint", str(path), "--out", str(tmp_path / "x.png")])
        message = str(err.value.code)
        assert "not a course checkpoint" in message and "weights_only" not in message and "train" in message
