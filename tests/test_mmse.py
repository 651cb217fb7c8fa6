"""The MMSE regressor kind (issue: notebook 06's strongest non-generative baseline) and its commands."""

import json

import pytest
import torch

from course_utils import center_hole, checkpoints, cli, config, data, kinds, masks, mmse


def test_config_has_notebook_03s_budget_and_backbone():
    for profile in config.PROFILE_NAMES:
        cfg, ch = mmse.KIND.config(profile), center_hole.KIND.config(profile)
        assert (cfg.steps, cfg.batch_size, cfg.base_channels, cfg.channel_mults, cfg.lr, cfg.hole) == \
               (ch.steps, ch.batch_size, ch.base_channels, ch.channel_mults, ch.lr, ch.hole)
    with pytest.raises(ValueError, match="hole"):
        mmse.KIND.config("ci", hole=0)


def test_regress_keeps_known_pixels_and_the_loss_scores_only_the_hole():
    torch.manual_seed(0)
    net = mmse.build_mmse_model(mmse.KIND.config("ci"))
    x0 = torch.rand(3, 1, 32, 32) * 2 - 1
    m = masks.center_hole(3, 12)
    out = mmse.regress(net, m * x0, m)
    assert torch.equal(out[m == 1], x0[m == 1]) and not torch.equal(out[m == 0], torch.zeros_like(out[m == 0]))
    assert out.abs().max() <= 1
    x_changed = x0.clone()
    x_changed[m == 1] = 0.3  # known pixels differ, the hole does not: the loss (over the hole) still changes,
    assert mmse.mmse_loss(net, x0, m).item() != mmse.mmse_loss(net, x_changed, m).item()  # since they are the input
    perfect = lambda y, t, mask, y2: x0  # a network that outputs the truth has zero loss
    assert mmse.mmse_loss(perfect, x0, m).item() == 0.0
    with pytest.raises(ValueError, match="shape"):
        mmse.regress(net, x0, m[:, :, :16])


def test_run_resumes_and_round_trips(tmp_path):
    digits = data.DigitSet(torch.rand(40, 1, 32, 32) * 2 - 1, torch.arange(40) % 10)
    cfg = mmse.KIND.config("ci", steps=4, save_every=2, batch_size=4)
    whole = mmse.KIND.train(cfg, digits, tmp_path / "a", torch.device("cpu"), seed=1, progress=False,
                            val=digits[:4])
    assert [h[0] for h in whole["history"]] == [2, 4] and whole["losses"][-1] < whole["losses"][0] * 2
    mmse.KIND.train(cfg, digits, tmp_path / "b", torch.device("cpu"), seed=1, progress=False, until=2)
    resumed = mmse.KIND.train(cfg, digits, tmp_path / "b", torch.device("cpu"), seed=1, progress=False, resume=True)
    assert resumed["losses"] == whole["losses"]
    loaded, _, extra = mmse.KIND.load(tmp_path / "a" / "last.pt")
    assert loaded == cfg and extra["step"] == 4
    assert kinds.kind_of_checkpoint(tmp_path / "a" / "last.pt").name == "mmse"
    with pytest.raises(checkpoints.CheckpointMismatchError, match="not a mmse model"):
        mmse.KIND.load(checkpoints.save_checkpoint(tmp_path / "x.pt", torch.nn.Linear(1, 1), {"a": 1}))


def test_train_and_eval_commands(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["train", "--model", "mmse", "--profile", "ci", "--out", str(out), "--steps", "3"]) == 0
    path = tmp_path / "r.json"
    assert cli.main(["eval", "--checkpoint", str(out / "last.pt"), "--data-dir", str(config.data_dir()), "--n", "4",
                     "--k", "8", "--profile", "ci", "--json", str(path)]) == 0
    res = json.loads(path.read_text())
    assert res["task"] == "center:12" and res["k"] == 1 and res["network_calls_per_image"] == 1
    assert res["metrics"]["psnr"]["single"] == res["metrics"]["psnr"]["mean_k"]
    assert res["known_pixels_max_abs_error"] == 0.0 and res["method"] == "mmse_regressor"
