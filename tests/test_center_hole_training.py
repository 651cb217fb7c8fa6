"""The notebook-03 training switches, the resumable run and its checkpoints."""

import dataclasses
import math

import pytest
import torch

from course_utils import center_hole, checkpoints, config, data, diffusion, masks, models, runs, schedules, training

SCH = schedules.make_schedule("cosine", 1000)


def test_center_hole_configs():
    for name in config.PROFILE_NAMES:
        cfg = center_hole.KIND.config(name)
        assert cfg.profile == name and cfg.hole == 12 and cfg.prediction in ("eps", "x0", "v")
        assert cfg.steps >= cfg.save_every > 0
    assert center_hole.KIND.config("cpu", hole=8).hole == 8
    with pytest.raises(ValueError, match="hole"):
        center_hole.KIND.config("cpu", hole=40)
    with pytest.raises(ValueError, match="COURSE_PROFILE"):
        center_hole.KIND.config("gpu")


def test_p2_weight():
    t = torch.tensor([0, 500, 999])
    assert torch.equal(training.p2_weight(SCH, t, 1.0, 0.0), torch.ones(3))
    snr = SCH.snr[t]
    assert torch.allclose(training.p2_weight(SCH, t, 1.0, 1.0), (1 / (1 + snr)).float())
    w = training.p2_weight(SCH, torch.arange(1000), 1.0, 0.5)
    assert torch.all(w[1:] >= w[:-1])  # noisier steps weigh more
    with pytest.raises(ValueError, match="k > 0"):
        training.p2_weight(SCH, t, 0.0, 1.0)


def test_pixel_weights():
    m = masks.center_hole(2, 4, size=8)
    w = training.pixel_weights(m, 4.0)
    assert torch.all(w[m == 1] == 1) and torch.all(w[m == 0] == 4)
    assert torch.equal(training.pixel_weights(m, 1.0), torch.ones_like(m))
    with pytest.raises(ValueError, match="positive"):
        training.pixel_weights(m, 0)


def test_v_target_is_the_velocity():
    x0, eps = torch.rand(2, 1, 4, 4) * 2 - 1, torch.randn(2, 1, 4, 4)
    t = torch.tensor([100, 900])
    v = diffusion.diffusion_target(x0, eps, t, SCH, "v")
    ab = SCH.alpha_bars[t].float().view(2, 1, 1, 1)
    assert torch.allclose(v, ab.sqrt() * eps - (1 - ab).sqrt() * x0)
    with pytest.raises(ValueError, match="prediction"):
        diffusion.diffusion_target(x0, eps, t, SCH, "score")


def test_ema_update_and_warm_up():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = a.weight.detach().clone()
    training.ema_update(a, b, 0.9)
    assert torch.allclose(a.weight, 0.9 * before + 0.1 * b.weight)
    assert training.ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert training.ema_decay_at(10**6, 0.999) == 0.999


def test_inpaint_loss_hole_weight_and_p2_change_the_weighting():
    torch.manual_seed(0)
    net = models.UNet(8, (1, 2), coord_conv=True)
    x0 = torch.rand(4, 1, 32, 32) * 2 - 1
    m = masks.center_hole(4)
    loss = lambda **kw: center_hole.inpaint_loss(net, x0, m, SCH, torch.Generator().manual_seed(1), "x0", **kw).item()
    plain = loss()
    assert math.isfinite(plain) and plain > 0
    assert loss() == plain  # seeded
    # the same draws by hand: the squared error of every pixel, then the two weightings written out
    t, eps, x_t = training.noised_batch(x0, SCH, torch.Generator().manual_seed(1))
    with torch.no_grad():
        err = (x0 - net(x_t, t, m, m * x0)) ** 2
    assert plain == pytest.approx(err.mean().item(), rel=1e-5)
    hole, known = err[m == 0].sum().item(), err[m == 1].sum().item()
    weighted = (known + 4 * hole) / ((m == 1).sum().item() + 4 * (m == 0).sum().item())
    assert loss(hole_weight=4.0) == pytest.approx(weighted, rel=1e-5)
    w_t = (1 / (1 + SCH.snr[t])).float().view(-1, 1, 1, 1)
    assert loss(p2_gamma=1.0) == pytest.approx((w_t * err).mean().item(), rel=1e-5)


def test_inpaint_loss_self_conditioning_feeds_x0_hat_to_half_the_batch():
    torch.manual_seed(0)
    net = models.UNet(8, (1, 2), self_condition=True)
    calls = []
    forward = net.forward
    net.forward = lambda *a: calls.append(a[4]) or forward(*a)
    x0 = torch.rand(64, 1, 32, 32) * 2 - 1
    center_hole.inpaint_loss(net, x0, masks.center_hole(64), SCH, torch.Generator().manual_seed(0), "x0")
    assert len(calls) == 2 and torch.all(calls[0] == 0)
    used = calls[1].flatten(1).abs().sum(1) > 0
    assert 16 < used.sum().item() < 48


def _tiny_run(tmp_path, name, **kw):
    cfg = center_hole.KIND.config("ci", steps=8, save_every=4, batch_size=4, train_size=32)
    torch.manual_seed(0)
    digits = data.DigitSet(torch.rand(32, 1, 32, 32) * 2 - 1, torch.arange(32) % 10)
    val = data.DigitSet(torch.rand(4, 1, 32, 32) * 2 - 1, torch.arange(4))
    return cfg, center_hole.KIND.train(cfg, digits, tmp_path / name, torch.device("cpu"), seed=3, val=val,
                                       progress=False, **kw)


def test_resume_continues_the_same_run(tmp_path):
    _, whole = _tiny_run(tmp_path, "whole")
    _, first = _tiny_run(tmp_path, "split", until=4)
    assert len(first["losses"]) == 4 and (tmp_path / "split" / "last.pt").is_file()
    _, rest = _tiny_run(tmp_path, "split", resume=True)
    assert rest["losses"] == whole["losses"]
    for a, b in zip(rest["model"].state_dict().values(), whole["model"].state_dict().values()):
        assert torch.equal(a, b)
    assert sorted(p.name for p in (tmp_path / "whole").glob("panel_*.png")) == ["panel_000004.png", "panel_000008.png"]


def test_ema_never_changes_the_trained_weights(tmp_path):
    """Notebook 03's switch ablation samples the default run's trained weights as its "EMA off" row instead of
    training again: EMA only reads the weights, so a run with it and a run without train the same ones."""
    cfg = center_hole.KIND.config("ci", steps=8, save_every=8, batch_size=4, train_size=32)
    assert cfg.ema_decay > 0
    digits = data.DigitSet(torch.rand(32, 1, 32, 32) * 2 - 1, torch.arange(32) % 10)
    runs = {}
    for name, decay in (("with", cfg.ema_decay), ("without", 0.0)):
        torch.manual_seed(0)
        runs[name] = center_hole.KIND.train(dataclasses.replace(cfg, ema_decay=decay), digits,
                                                   tmp_path / name, torch.device("cpu"), seed=3, progress=False)
    assert runs["with"]["losses"] == runs["without"]["losses"]
    trained = runs["with"]["model"].state_dict()
    for key, value in runs["without"]["model"].state_dict().items():
        assert torch.equal(value, trained[key]), key
    assert runs["without"]["ema"] is runs["without"]["model"]  # nothing to average: sample the trained weights
    assert not torch.equal(runs["with"]["ema"].state_dict()["stem.weight"], trained["stem.weight"])


def test_checkpoint_holds_everything_and_loads_weights_only(tmp_path):
    cfg, run = _tiny_run(tmp_path, "run")
    payload = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert {"ema", "optimizer", "step", "losses", "rng", "history"} <= set(payload["extra"])
    assert payload["extra"]["step"] == 8 and payload["config"]["steps"] == 8
    loaded_cfg, model, extra = center_hole.KIND.load(tmp_path / "run" / "last.pt")
    assert loaded_cfg == cfg
    for a, b in zip(model.state_dict().values(), run["ema"].state_dict().values()):
        assert torch.equal(a, b.cpu())


def test_load_center_hole_rejects_other_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError):
        center_hole.KIND.load(tmp_path / "missing.pt")
    other = tmp_path / "02.pt"
    checkpoints.save_checkpoint(other, models.UNet(8, (1, 2)), {"base_channels": 8})
    with pytest.raises(checkpoints.CheckpointMismatchError, match="not a center_hole model"):
        center_hole.KIND.load(other)


def test_resume_refuses_another_configuration(tmp_path):
    cfg, _ = _tiny_run(tmp_path, "run")
    digits = data.DigitSet(torch.rand(8, 1, 32, 32) * 2 - 1, torch.arange(8))
    other = center_hole.KIND.config("ci", steps=8, save_every=4, batch_size=4, train_size=32, hole=8)
    with pytest.raises(checkpoints.CheckpointMismatchError, match="hole"):
        center_hole.KIND.train(other, digits, tmp_path / "run", torch.device("cpu"), resume=True, progress=False)


def test_runs_of_other_profiles_or_configs_never_touch_each_others_checkpoints(tmp_path, monkeypatch):
    """Notebook 03 used to unlink last.pt when its config differed; now every config has its own folder."""
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    cpu, ci = center_hole.KIND.config("cpu"), center_hole.KIND.config("ci")
    longer = center_hole.KIND.config("ci", steps=ci.steps + 10)
    dirs = {center_hole.KIND.run_dir(c) for c in (cpu, ci, longer)}
    assert len(dirs) == 3 and all(d.parent == tmp_path / "03_center_hole" for d in dirs)
    assert center_hole.KIND.run_dir(ci) == center_hole.KIND.run_dir(center_hole.KIND.config("ci"))
    cpu_ckpt = center_hole.KIND.run_dir(cpu) / "last.pt"
    net = models.UNet(8, (1, 2))
    checkpoints.save_checkpoint(cpu_ckpt, net, runs.config_dict(cpu), kind="center_hole", step=cpu.steps)
    before = cpu_ckpt.read_bytes()
    assert runs.run_status(cpu_ckpt, center_hole.KIND, cpu) == "reuse"
    assert runs.run_status(center_hole.KIND.run_dir(ci) / "last.pt", center_hole.KIND, ci) == "train"
    with pytest.raises(checkpoints.CheckpointMismatchError, match="left as it is"):
        runs.run_status(cpu_ckpt, center_hole.KIND, ci)  # another config's checkpoint is an error, never deleted
    assert cpu_ckpt.read_bytes() == before
    checkpoints.save_checkpoint(cpu_ckpt, net, runs.config_dict(cpu), kind="center_hole", step=5)
    assert runs.run_status(cpu_ckpt, center_hole.KIND, cpu) == "resume"
