"""The train / sample / eval commands of notebook 03 (a contract: scripts and the README use these names)."""

import json
import subprocess
import sys

import pytest
import torch

from course_utils import cli, config, training


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
    for option in ("--checkpoint", "--data-dir", "--split", "--n", "--steps", "--eta", "--dc-repeats", "--k", "--hole",
                   "--seed", "--json"):
        assert option in out.stdout


def test_train_writes_a_resumable_checkpoint(trained):
    cfg, _, extra = training.load_center_hole(trained / "last.pt")
    assert cfg.profile == "ci" and cfg.steps == 6 and extra["step"] == 6
    _fails(["train", "--profile", "ci", "--out", str(trained)], "--resume")
    assert cli.main(["train", "--profile", "ci", "--out", str(trained), "--resume", "--steps", "8"]) == 0
    assert training.load_center_hole(trained / "last.pt")[2]["step"] == 8
    _fails(["train", "--profile", "cpu", "--out", str(trained), "--resume"], "profile")


def test_resume_without_a_checkpoint_fails(tmp_path):
    _fails(["train", "--profile", "ci", "--out", str(tmp_path), "--resume"], "no checkpoint")


def test_sample_writes_a_png(trained, tmp_path):
    png = tmp_path / "s.png"
    assert cli.main(["sample", "--checkpoint", str(trained / "last.pt"), "--steps", "3", "--n", "4", "--out", str(png)]) == 0
    assert png.stat().st_size > 1000


def test_eval_prints_and_writes_the_contract_json(trained, tmp_path, capsys):
    path = tmp_path / "e.json"
    argv = ["eval", "--checkpoint", str(trained / "last.pt"), "--data-dir", str(config.data_dir()), "--n", "8",
            "--steps", "3", "--k", "2", "--dc-repeats", "2", "--eta", "1", "--json", str(path)]
    assert cli.main(argv) == 0
    assert "nearest neighbour" in capsys.readouterr().out
    res = json.loads(path.read_text())
    for key in ("hole_psnr", "hole_l1", "ssim"):
        assert isinstance(res[key]["single"], float) and isinstance(res[key]["mean_k"], float)
    for base in ("zero_fill", "nearest_neighbour"):
        assert set(res["baselines"][base]) >= {"hole_psnr", "hole_l1"}
    assert res["known_pixels_max_abs_error"] == 0.0
    assert res["n_images"] == 8 and res["seconds_per_image"] > 0 and isinstance(res["config"], dict)


def test_eval_errors_say_what_to_fix(trained, tmp_path):
    ck, data = str(trained / "last.pt"), str(config.data_dir())
    _fails(["eval", "--checkpoint", str(tmp_path / "none.pt"), "--data-dir", data], "no checkpoint")
    _fails(["eval", "--checkpoint", ck, "--data-dir", str(tmp_path)], "no MNIST")
    _fails(["eval", "--checkpoint", ck, "--data-dir", data, "--hole", "40"], "--hole")
    _fails(["eval", "--checkpoint", ck, "--data-dir", data, "--k", "0"], "--k")
    other = tmp_path / "02.pt"
    training.save_checkpoint(other, torch.nn.Linear(1, 1), {"base_channels": 8})
    _fails(["eval", "--checkpoint", str(other), "--data-dir", data], "not a notebook-03")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    _fails(["sample", "--checkpoint", str(junk), "--out", str(tmp_path / "x.png")], "cannot read")
