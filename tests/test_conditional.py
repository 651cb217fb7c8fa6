"""Notebook 04's kind: the conditional U-Net, its training mixture and loss, its resumable run, its checkpoint,
and sampling without projection."""

import pytest
import torch

from course_utils import attention, checkpoints, conditional, data, evaluation, kinds, models, schedules, tasks, training

SCH = schedules.make_schedule("cosine", 1000)


def tiny_cfg(**changes):
    return conditional.KIND.config("ci", **changes)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("architecture", conditional.ARCHITECTURES)
def test_every_architecture_maps_x_t_to_an_image(n, architecture):
    torch.manual_seed(0)
    net = conditional.build_conditional_model(tiny_cfg(architecture=architecture)).eval()
    x, c, m = torch.randn(n, 1, 32, 32), torch.rand(n, 1, 32, 32), torch.ones(n, 1, 32, 32)
    assert net(x, torch.full((n,), 500), m, c).shape == (n, 1, 32, 32)
    assert isinstance(net, models.UNet) == (architecture == "concat")


def test_the_output_depends_on_c_and_not_on_another_image_of_the_batch():
    torch.manual_seed(1)
    net = conditional.ConditionalUNet(8, (1, 2, 2), heads=2).eval()
    for block in net.encoder.zero_convs:  # a trained encoder: its zero convolutions have moved away from 0
        torch.nn.init.normal_(block.weight, std=0.1)
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([300, 300])
    c, m = torch.rand(2, 1, 32, 32) * 2 - 1, torch.ones(2, 1, 32, 32)
    out = net(x, t, m, c)
    c2 = c.clone()
    c2[1] = -c2[1]  # change image 1's condition only
    out2 = net(x, t, m, c2)
    assert not torch.allclose(out2[1], out[1], atol=1e-4)  # c is used
    assert torch.allclose(out2[0], out[0], atol=1e-6)  # nothing leaks between the images of a batch
    with pytest.raises(ValueError, match="must agree"):
        net(x, t, m[:, :, :16, :16], c)


def test_cross_attention_alone_still_sees_c():
    """Without the added features (ablation ``cross``), c reaches the U-Net only through cross-attention."""
    torch.manual_seed(2)
    net = conditional.ConditionalUNet(8, (1, 2, 2), control_features=False).eval()
    x, t, m = torch.randn(1, 1, 32, 32), torch.tensor([100]), torch.zeros(1, 1, 32, 32)
    assert not torch.allclose(net(x, t, m, torch.zeros(1, 1, 32, 32)), net(x, t, m, torch.ones(1, 1, 32, 32)))


def test_attention_at_places_the_attention_blocks():
    full = conditional.ConditionalUNet(8, (1, 2, 2))
    blocks = (attention.LinearAttention, attention.CrossAttention)
    names = {n for n, module in full.named_modules() if isinstance(module, blocks)}
    assert names == {"down_attn.0.linear", "down_attn.1.linear", "down_attn.1.cross", "mid_attn"}
    bare = conditional.ConditionalUNet(8, (1, 2, 2), attention_at=("linear16",))
    assert bare.mid_attn is None and set(bare.down_attn[1]) == {"linear"} and not bare.down_attn[0]
    x, t, m, c = torch.randn(2, 1, 32, 32), torch.tensor([5, 500]), torch.ones(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    assert bare(x, t, m, c).shape == (2, 1, 32, 32)
    assert sum(p.numel() for p in bare.parameters()) < sum(p.numel() for p in full.parameters())
    with pytest.raises(ValueError, match="attention_at takes names from"):
        conditional.ConditionalUNet(8, (1, 2, 2), attention_at=("cross32",))
    cfg = tiny_cfg(attention_at=("linear32", "cross8"))
    net = conditional.build_conditional_model(cfg)
    assert set(net.down_attn[0]) == {"linear"} and not net.down_attn[1] and net.mid_attn is not None
    assert conditional.KIND.run_dir(cfg) != conditional.KIND.run_dir(tiny_cfg())


def test_config_checks_its_settings():
    assert tiny_cfg().tasks == conditional.TRAINING_TASKS and tiny_cfg().prediction == "x0"
    with pytest.raises(ValueError, match="architecture"):
        tiny_cfg(architecture="mlp")
    with pytest.raises(tasks.TaskSpecError):
        tiny_cfg(tasks=("sparse:2",))


def test_observe_mixture_gives_each_image_one_task_seeded():
    x0 = torch.rand(12, 1, 32, 32) * 2 - 1
    specs = ("center:12", "noise:0.5")
    c, m, which = conditional.observe_mixture(x0, specs, torch.Generator().manual_seed(0))
    c2, m2, which2 = conditional.observe_mixture(x0, specs, torch.Generator().manual_seed(0))
    assert torch.equal(c, c2) and torch.equal(m, m2) and torch.equal(which, which2)
    hole = which == 0
    assert hole.any() and (~hole).any()
    assert torch.equal(c[hole], (m * x0)[hole]) and torch.all(m[~hole] == 0)  # y = m x0 vs a noisy image, no mask
    assert torch.allclose((c - x0)[~hole].std(), torch.tensor(0.5), atol=0.05)


def test_loss_is_seeded_and_weighted():
    torch.manual_seed(3)
    net = conditional.build_conditional_model(tiny_cfg())
    x0 = torch.rand(4, 1, 32, 32) * 2 - 1
    c, m = x0.clone(), torch.ones_like(x0)
    loss = lambda **kw: conditional.conditional_loss(net, x0, c, m, SCH, torch.Generator().manual_seed(1), **kw)
    assert loss().item() == loss().item() > 0
    # the same draws by hand: the x0 target's squared error, weighted by P2's 1 / (1 + SNR) (gamma 1) or not
    t, eps, x_t = training.noised_batch(x0, SCH, torch.Generator().manual_seed(1))
    with torch.no_grad():
        err = (x0 - net(x_t, t, m, c)) ** 2
    assert loss(p2_gamma=0.0).item() == pytest.approx(err.mean().item(), rel=1e-5)
    w_t = (1 / (1 + SCH.snr[t])).float().view(-1, 1, 1, 1)
    assert loss().item() == pytest.approx((w_t * err).mean().item(), rel=1e-5)


def test_run_resumes_bit_for_bit_and_round_trips(tmp_path):
    digits = data.DigitSet(torch.rand(40, 1, 32, 32) * 2 - 1, torch.arange(40) % 10)
    cfg = tiny_cfg(steps=4, save_every=2, batch_size=4)
    whole = conditional.KIND.train(cfg, digits, tmp_path / "a", torch.device("cpu"), seed=1, progress=False,
                                          val=digits[:4])
    assert [h[0] for h in whole["history"]] == [2, 4]
    conditional.KIND.train(cfg, digits, tmp_path / "b", torch.device("cpu"), seed=1, progress=False, until=2)
    resumed = conditional.KIND.train(cfg, digits, tmp_path / "b", torch.device("cpu"), seed=1, progress=False,
                                            resume=True)
    assert resumed["losses"] == whole["losses"]
    loaded_cfg, model, extra = conditional.KIND.load(tmp_path / "a" / "last.pt")
    assert loaded_cfg == cfg and extra["step"] == 4
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), whole["ema"].state_dict().values()))
    assert kinds.kind_of_checkpoint(tmp_path / "a" / "last.pt").name == "conditional"
    with pytest.raises(checkpoints.CheckpointMismatchError, match="not a conditional model"):
        conditional.KIND.load(checkpoints.save_checkpoint(tmp_path / "x.pt", torch.nn.Linear(1, 1), {"a": 1}))


def test_method_samples_every_task_without_projection():
    torch.manual_seed(4)
    cfg = tiny_cfg()
    net = conditional.build_conditional_model(cfg).eval()
    x0 = torch.rand(3, 1, 32, 32) * 2 - 1
    for sampler in ("ddim", "ddpm"):
        method = conditional.conditional_method(net, cfg, evaluation.SamplerOptions(steps=3), sampler)
        for spec in ("sparse:0.1", "kspace:0.25"):
            obs = tasks.parse_task(spec).observe(x0, 0)
            out = method.sample(obs, torch.Generator().manual_seed(0))
            assert out.shape == x0.shape and method.fits(obs.task)
            assert torch.equal(out, method.sample(obs, torch.Generator().manual_seed(0)))
    obs = tasks.parse_task("center:12").observe(x0, 0)
    out = method.sample(obs, torch.Generator().manual_seed(0))
    assert not torch.equal(out * obs.mask, obs.y)  # known pixels are sampled, not copied in
    with pytest.raises(ValueError, match="dc_repeats"):
        conditional.conditional_method(net, cfg, evaluation.SamplerOptions(steps=3, dc_repeats=2))
    with pytest.raises(ValueError, match="sampler"):
        conditional.conditional_method(net, cfg, sampler="euler")


def test_observe_mixture_weights_set_the_task_frequencies():
    x0 = torch.zeros(4000, 1, 32, 32) - 1
    specs = ("sparse:0.1", "noise:0.5", "center:12")
    _, _, which = conditional.observe_mixture(x0, specs, torch.Generator().manual_seed(0), (2.0, 1.0, 1.0))
    share = torch.bincount(which, minlength=3).float() / len(which)
    assert torch.allclose(share, torch.tensor([0.5, 0.25, 0.25]), atol=0.03)
    with pytest.raises(ValueError, match="positive weight"):
        conditional.observe_mixture(x0[:4], specs, torch.Generator(), (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="positive weight"):
        conditional.KIND.config("ci", task_weights=(1.0, 1.0))
