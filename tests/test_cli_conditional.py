"""`train --model conditional`, and `sample` / `eval` on its checkpoint (notebook 04's contract)."""

import json

import pytest

from course_utils import cli, conditional, config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cond")
    assert cli.main(["train", "--model", "conditional", "--profile", "ci", "--out", str(out), "--steps", "4"]) == 0
    return out


def test_train_resume_sample_and_eval(trained, tmp_path, capsys):
    cfg, _, extra = conditional.KIND.load(trained / "last.pt")
    assert cfg.profile == "ci" and cfg.steps == 4 and extra["step"] == 4
    with pytest.raises(SystemExit, match="not a center_hole checkpoint"):
        cli.main(["train", "--profile", "ci", "--out", str(trained), "--resume"])
    assert cli.main(["train", "--model", "conditional", "--profile", "ci", "--out", str(trained), "--resume",
                     "--steps", "5"]) == 0
    png = tmp_path / "s.png"
    assert cli.main(["sample", "--checkpoint", str(trained / "last.pt"), "--task", "kspace:0.25", "--steps", "2",
                     "--n", "3", "--out", str(png)]) == 0
    assert png.stat().st_size > 1000
    out = tmp_path / "r.json"
    assert cli.main(["eval", "--checkpoint", str(trained / "last.pt"), "--task", "noise:0.5", "--data-dir",
                     str(config.data_dir()), "--n", "4", "--k", "2", "--steps", "2", "--profile", "ci",
                     "--json", str(out)]) == 0
    assert "trained on sparse:0.05-0.2, noise:0.3-1.0, lowres:4" in capsys.readouterr().out  # noise:0.5 is not one
    res = json.loads(out.read_text())
    assert res["task"] == "noise:0.5" and res["region"] == "image" and res["network_calls_per_image"] == 2  # per sample
    assert res["config"]["model"]["architecture"] == "control_cross" and "smoothing" in res["baselines"]
    assert res["method"] == "conditional_control_cross"
    # on a mask task the known pixels are not projected, and the harness reports how far they moved
    assert cli.main(["eval", "--checkpoint", str(trained / "last.pt"), "--task", "center:12", "--data-dir",
                     str(config.data_dir()), "--n", "4", "--k", "1", "--steps", "2", "--profile", "ci",
                     "--json", str(out)]) == 0
    assert json.loads(out.read_text())["known_pixels_max_abs_error"] > 0
    with pytest.raises(SystemExit, match="dc_repeats"):
        cli.main(["eval", "--checkpoint", str(trained / "last.pt"), "--data-dir", str(config.data_dir()),
                  "--dc-repeats", "2", "--n", "2", "--profile", "ci"])
