
import pytest
import torch

from course_utils import checkpoints, data, ddpm, masks, models, schedules, training


def tiny_setup(seed=0):
    torch.manual_seed(seed)
    net = models.UNet(base_channels=8, channel_mults=(1, 2))
    digits = data.DigitSet(torch.rand(16, 1, 32, 32) * 2 - 1, torch.arange(16) % 10)
    return net, digits, schedules.make_schedule("cosine", 100)


def test_eps_loss_matches_hand_computation():
    net, digits, sch = tiny_setup()
    x0 = digits.images[:4]
    m = masks.center_hole(4)
    loss = training.eps_loss(net, x0, m, sch, torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    t = torch.randint(0, sch.T, (4,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    x_t = schedules.q_sample(x0, t, sch, eps)
    expected = ((eps - net(x_t, t, m, m * x0)) ** 2).mean()
    assert torch.allclose(loss, expected)


def test_eps_loss_rejects_bad_input():
    net, digits, sch = tiny_setup()
    g = torch.Generator()
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        training.eps_loss(net, digits.images[:2] * 5, masks.center_hole(2), sch, g)
    with pytest.raises(ValueError, match="image's shape"):
        training.eps_loss(net, digits.images[:2], masks.center_hole(3), sch, g)


def test_warmup_cosine():
    assert training.warmup_cosine(0, 1000, 100) == pytest.approx(0.01)
    assert training.warmup_cosine(99, 1000, 100) == pytest.approx(1.0)
    assert training.warmup_cosine(100, 1000, 100) == pytest.approx(1.0)
    assert training.warmup_cosine(1000, 1000, 100) == pytest.approx(0.0)


def test_ddpm_kind_draws_notebook_02s_batches_and_resumes_them_exactly(tmp_path):
    """The ddpm kind's loss draws data.batches' shuffled order (notebook 02's loop), and that order is saved, so a
    run stopped mid-epoch and resumed has the losses of an uninterrupted one."""
    _, digits, _ = tiny_setup()
    cfg = ddpm.KIND.config("ci", base_channels=8, channel_mults=(1, 2), steps=7, batch_size=6, warmup=2, save_every=3)
    sch = schedules.make_schedule(cfg.schedule, cfg.T)
    g = torch.Generator().manual_seed(1)
    loss_fn, expected = ddpm.batch_loss(cfg, digits, torch.device("cpu")), []
    g_ref = torch.Generator().manual_seed(1)
    stream = data.batches(digits, cfg.batch_size, g_ref)
    torch.manual_seed(0)
    net = ddpm.build_ddpm(cfg)
    for _ in range(4):  # 16 digits, batches of 6: two per epoch, so the permutation is redrawn at step 2
        x0, _ = next(stream)
        mask = masks.mixed_masks(x0.shape[0], seed=g_ref)
        expected.append(training.eps_loss(net, x0, mask, sch, g_ref).item())
        assert loss_fn(net, g).item() == expected[-1]
    whole = ddpm.KIND.train(cfg, digits, tmp_path / "a", torch.device("cpu"), seed=3, progress=False)
    assert len(whole["losses"]) == 7 and sum(whole["losses"][-2:]) < sum(whole["losses"][:2])
    ddpm.KIND.train(cfg, digits, tmp_path / "b", torch.device("cpu"), seed=3, progress=False, until=3)
    resumed = ddpm.KIND.train(cfg, digits, tmp_path / "b", torch.device("cpu"), seed=3, progress=False, resume=True)
    assert resumed["losses"] == whole["losses"]


def test_ddpm_validation_is_one_seeded_replacement_sample_scored_on_the_hole():
    """validate_ddpm draws masks of the training mix and one ancestral sample with replacement from one seed: the
    same score twice, another with another seed, and exactly the hole PSNR of diffusion.ddpm_sample's output."""
    from course_utils import diffusion, metrics

    net, digits, _ = tiny_setup()
    cfg = ddpm.KIND.config("ci", base_channels=8, channel_mults=(1, 2), sample_steps=4)
    net.eval()
    score, fig = ddpm.validate_ddpm(net, cfg, digits)
    assert fig is None and score == ddpm.validate_ddpm(net, cfg, digits)[0] != ddpm.validate_ddpm(net, cfg, digits, 1)[0]
    g = torch.Generator().manual_seed(0)
    mask = masks.mixed_masks(len(digits), seed=g)
    y = mask * digits.images
    denoiser = diffusion.Denoiser(net, schedules.make_schedule(cfg.schedule, cfg.T), "eps", (mask, y))
    with torch.no_grad():
        out = diffusion.ddpm_sample(denoiser, y, mask, cfg.sample_steps, True, g)
    assert score == pytest.approx(metrics.psnr_on_mask(out, digits.images, mask).mean().item())


def test_checkpoint_round_trip(tmp_path):
    net, _, _ = tiny_setup()
    cfg = {"base_channels": 8, "channel_mults": (1, 2), "T": 100}
    path = checkpoints.save_checkpoint(tmp_path / "ck.pt", net, cfg, losses=[1.0, 0.5])
    other, _, _ = tiny_setup(seed=5)
    extra = checkpoints.load_checkpoint(path, other, cfg)
    assert extra["losses"] == [1.0, 0.5]
    for a, b in zip(net.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left


def test_checkpoint_from_another_config_is_refused(tmp_path):
    net, _, _ = tiny_setup()
    path = checkpoints.save_checkpoint(tmp_path / "ck.pt", net, {"base_channels": 8, "T": 100})
    with pytest.raises(checkpoints.CheckpointMismatchError, match="T: checkpoint 100 vs wanted 1000"):
        checkpoints.load_checkpoint(path, net, {"base_channels": 8, "T": 1000})
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(checkpoints.CheckpointMismatchError, match="not a course checkpoint"):
        checkpoints.load_checkpoint(tmp_path / "foreign.pt", net, {})


def test_checkpoint_loads_with_weights_only(tmp_path, monkeypatch):
    net, _, _ = tiny_setup()
    path = checkpoints.save_checkpoint(tmp_path / "ck.pt", net, {"a": 1})
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    checkpoints.load_checkpoint(path, net, {"a": 1})
    assert seen.get("weights_only") is True


def test_interrupted_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    net, _, _ = tiny_setup()
    path = checkpoints.save_checkpoint(tmp_path / "ck.pt", net, {"v": 1})
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save_checkpoint(path, net, {"v": 2})
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def _toy_run(tmp_path, **kwargs):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    target = torch.tensor([[1.0], [-2.0], [0.5]])

    def loss_fn(model, g):
        x = torch.randn(8, 3, generator=g)
        return ((model(x) - x @ target) ** 2).mean()

    state = {"saves": []}
    on_save = lambda step, sample_model, seconds: state["saves"].append(step)
    saving = training.Checkpointing(tmp_path / "last.pt", {"toy": 1, "steps": 12}, 5, kind="toy", state=state,
                                    on_save=on_save, resume=kwargs.pop("resume", False))
    run = training.fit(net, loss_fn, 12, 0.05, torch.Generator().manual_seed(1), warmup=2, ema_decay=0.9,
                       checkpoint=saving, **kwargs)
    return run, state


def test_fit_saves_on_schedule_and_resumes_the_same_run(tmp_path):
    whole, state = _toy_run(tmp_path / "a")
    assert state["saves"] == [5, 10, 12] and whole["step"] == 12
    assert whole["losses"][-1] < whole["losses"][0]
    assert whole["ema"] is not whole["model"]  # with EMA on, the model to sample with is the average
    _toy_run(tmp_path / "b", until=5)
    resumed, state_b = _toy_run(tmp_path / "b", resume=True)
    assert resumed["losses"] == whole["losses"]  # bit for bit
    assert state_b["saves"] == [5, 10, 12]  # the state was read back from the checkpoint, then extended
    assert torch.equal(resumed["ema"].weight, whole["ema"].weight)
    saved = checkpoints.read_checkpoint(tmp_path / "b" / "last.pt")
    assert saved["extra"]["saves"] == [5, 10, 12] and saved["extra"]["step"] == 12


def test_fit_refuses_unsafe_settings(tmp_path):
    net = torch.nn.Linear(1, 1)
    loss = lambda model, g: model(torch.ones(1, 1)).sum()
    g = torch.Generator()
    with pytest.raises(ValueError, match="steps"):
        training.fit(net, loss, 0, 0.1, g)
    with pytest.raises(ValueError, match="every"):
        training.Checkpointing(tmp_path / "x.pt", {"toy": 1}, 0)
    with pytest.raises(FileNotFoundError):
        training.fit(net, loss, 3, 0.1, g, checkpoint=training.Checkpointing(tmp_path / "none.pt", {}, 1, resume=True))
    _toy_run(tmp_path, until=5)
    torch.manual_seed(0)
    with pytest.raises(checkpoints.CheckpointMismatchError, match="toy"):
        training.fit(torch.nn.Linear(3, 1), loss, 12, 0.1, g,
                     checkpoint=training.Checkpointing(tmp_path / "last.pt", {"toy": 2, "steps": 12}, 5, resume=True))


def test_noised_batch_draws_t_then_eps_and_applies_eq_4():
    sch = schedules.make_schedule("cosine", 1000)
    x0 = torch.rand(5, 1, 4, 4) * 2 - 1
    t, eps, x_t = training.noised_batch(x0, sch, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    assert torch.equal(t, torch.randint(0, 1000, (5,), generator=g)) and torch.equal(eps, torch.randn(5, 1, 4, 4, generator=g))
    ab = sch.alpha_bars[t].float().view(5, 1, 1, 1)
    assert torch.allclose(x_t, ab.sqrt() * x0 + (1 - ab).sqrt() * eps, atol=1e-6)
    t2, _, _ = training.noised_batch(x0, sch, torch.Generator().manual_seed(4))
    assert not torch.equal(t, t2)


def test_first_line_of_an_error_never_fails_on_an_empty_message():
    assert checkpoints.first_line(ValueError("bad value\nmore detail")) == "bad value"
    assert checkpoints.first_line(ValueError("  \n")) == "ValueError"
    assert checkpoints.first_line(EOFError()) == "EOFError"
