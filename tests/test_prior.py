"""Notebook 05's prior, its mask-aware fine-tunes, LoRA (checked against peft), splits and mask banks."""

import dataclasses
import json

import pytest
import torch
from torch import nn

from course_utils import (adaptation, attention, checkpoints, cli, config, data, inpainting, kinds, masks, prior,
                          schedules, training)
from course_utils.models import ResBlock, UNet, count_parameters


def test_self_attention_is_softmax_attention():
    torch.manual_seed(0)
    block = attention.SelfAttention(8, heads=2)
    x = torch.randn(2, 8, 4, 4)
    out, w = block(x, return_weights=True)
    assert out.shape == x.shape and w.shape == (2, 2, 16, 16)
    assert torch.allclose(w.sum(-1), torch.ones(2, 2, 16))
    h = block.norm(x).flatten(2).transpose(1, 2)
    q, k, v = block.to_qkv(h).chunk(3, dim=-1)
    q0, k0 = q[..., :4], k[..., :4]  # head 0
    a = torch.softmax(q0 @ k0.transpose(1, 2) / 2.0, dim=-1)
    assert torch.allclose(a, w[:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="multiple of heads"):
        attention.SelfAttention(6, heads=4)


def test_unet_attention_switch_adds_parameters_only_when_on():
    plain, attn = UNet(8, (1, 2), cond_channels=0), UNet(8, (1, 2), cond_channels=0, attention=True)
    assert not any("mid_attn" in k for k in plain.state_dict())  # older checkpoints still load
    assert any("mid_attn.to_qkv" in k for k in attn.state_dict())
    assert attn(torch.randn(2, 1, 16, 16), torch.tensor([1, 2])).shape == (2, 1, 16, 16)


def test_expand_input_starts_equal_to_the_prior_and_then_sees_the_mask():
    torch.manual_seed(0)
    net = UNet(8, (1, 2), cond_channels=0, attention=True).eval()
    x, t = torch.randn(3, 1, 16, 16), torch.tensor([5, 500, 900])
    before = net(x, t)
    adaptation.expand_input(net)
    m = masks.center_hole(3, 6, size=16)
    y = m * torch.rand(3, 1, 16, 16)
    assert torch.equal(net(x, t, m, y), before) and net.config["cond_channels"] == 2
    with torch.no_grad():
        net.stem.extra.weight.normal_()
    assert not torch.allclose(net(x, t, m, y), before)
    with pytest.raises(ValueError, match="already has 2"):
        adaptation.expand_input(net)
    with pytest.raises(ValueError, match="prior"):
        adaptation.expand_input(UNet(8, (1, 2), cond_channels=0, coord_conv=True))


@pytest.mark.parametrize("layer", [nn.Linear(6, 5), nn.Conv2d(3, 4, 3, padding=1)])
def test_lora_starts_at_zero_and_merges_exactly(layer):
    torch.manual_seed(1)
    x = torch.randn(2, 6) if isinstance(layer, nn.Linear) else torch.randn(2, 3, 5, 5)
    base_out = layer(x)
    lora = adaptation.LoRA(layer, rank=2, alpha=4)
    assert torch.equal(lora(x), base_out)
    assert count_parameters(lora) == count_parameters(lora.A) + count_parameters(lora.B)  # W is frozen
    with torch.no_grad():
        lora.B.weight.normal_()
    adapted = lora(x)
    assert not torch.allclose(adapted, base_out)
    holder = nn.Sequential(lora)
    adaptation.merge_lora(holder)
    assert type(holder[0]) is type(layer) and torch.allclose(holder[0](x), adapted, atol=1e-5)


def test_add_lora_freezes_all_but_the_adapters_and_the_named_modules():
    net = UNet(8, (1, 2), cond_channels=0, attention=True)
    adaptation.expand_input(net)
    wrapped = adaptation.add_lora(net, ("to_qkv", "to_out"), rank=2, also_train=("stem.extra",))
    assert wrapped == ["mid_attn.to_qkv", "mid_attn.to_out"]
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"stem.extra.weight", "mid_attn.to_qkv.A.weight", "mid_attn.to_qkv.B.weight",
                         "mid_attn.to_out.A.weight", "mid_attn.to_out.B.weight"}
    with pytest.raises(ValueError, match="no nn.Linear"):
        adaptation.add_lora(net, ("nothing_called_this",))
    with pytest.raises(TypeError, match="Linear or nn.Conv2d"):
        adaptation.LoRA(nn.ReLU())


def test_lora_matches_peft():
    peft = pytest.importorskip("peft", reason="peft is the LoRA reference; install the dev extras")

    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
            self.to_out = nn.Linear(4, 3)

        def forward(self, x):
            return self.to_out(self.conv1(x).mean((2, 3)))

    torch.manual_seed(0)
    ours, ref_base = Small(), Small()
    ref_base.load_state_dict(ours.state_dict())
    ref = peft.get_peft_model(ref_base, peft.LoraConfig(r=2, lora_alpha=6, target_modules=["conv1", "to_out"]))
    adaptation.add_lora(ours, ("conv1", "to_out"), rank=2, alpha=6)
    assert count_parameters(ours) == sum(p.numel() for p in ref.parameters() if p.requires_grad)
    with torch.no_grad():  # give both the same (non-zero) adapters
        for name in ("conv1", "to_out"):
            layer = ref.base_model.model.get_submodule(name)
            mine = ours.get_submodule(name)
            mine.A.weight.copy_(layer.lora_A["default"].weight)
            layer.lora_B["default"].weight.normal_()
            mine.B.weight.copy_(layer.lora_B["default"].weight)
    x = torch.randn(3, 2, 5, 5)
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_splits_are_75_15_10_and_disjoint():
    cfg = prior.PRIOR_KIND.config("ci")
    train, val, test = prior.prior_splits(cfg)
    n = len(train) + len(val) + len(test)
    assert n == min(cfg.train_size, len(data.load_mnist("train")))
    assert (len(train), len(val)) == (round(0.75 * n), round(0.15 * n))
    rows = lambda d: {bytes(x.numpy()) for x in (d.images > 0).flatten(1)}
    assert not rows(train) & rows(test) and not rows(val) & rows(test)


def test_mask_banks_are_unique_within_and_across_splits():
    banks = {split: prior.mask_bank(split, 300) for split in ("train", "val", "test")}
    for bank in banks.values():
        missing = masks.missing_fraction(bank)
        assert masks.duplicate_count(bank) == 0 and missing.min() >= 0.05 - 1e-3 and missing.max() <= 0.60 + 1e-3
    assert masks.duplicate_count(torch.cat(list(banks.values()))) == 0
    assert torch.equal(prior.mask_bank("val", 300), banks["val"])  # seeded
    assert masks.duplicate_count(torch.cat([banks["test"][:3], banks["test"][:2]])) == 2
    with pytest.raises(ValueError, match="split"):
        prior.mask_bank("holdout", 3)


def test_prior_trains_resumes_loads_and_fine_tunes(tmp_path):
    digits = data.DigitSet(torch.rand(40, 1, 32, 32) * 2 - 1, torch.arange(40) % 10)
    cfg = prior.PRIOR_KIND.config("ci", steps=4, save_every=2, batch_size=4)
    whole = prior.PRIOR_KIND.train(cfg, digits, tmp_path / "a", torch.device("cpu"), seed=1, progress=False,
                              val=digits[:4])
    prior.PRIOR_KIND.train(cfg, digits, tmp_path / "b", torch.device("cpu"), seed=1, progress=False, until=2)
    resumed = prior.PRIOR_KIND.train(cfg, digits, tmp_path / "b", torch.device("cpu"), seed=1, progress=False,
                                resume=True)
    assert resumed["losses"] == whole["losses"] and len(whole["history"]) == 2
    loaded_cfg, net, extra = prior.PRIOR_KIND.load(tmp_path / "a" / "last.pt")
    assert loaded_cfg == cfg and extra["step"] == 4
    assert kinds.kind_of_checkpoint(tmp_path / "a" / "last.pt").name == "prior"
    res_blocks = sum(isinstance(m, ResBlock) for m in net.modules())  # two convolutions each
    cfg_dict = checkpoints.plain(dataclasses.asdict(cfg))  # a fine-tune names the prior it adapted
    for mode, wrapped in (("full", 0), ("lora_attn", 2), ("lora_all", 2 + 2 * res_blocks)):
        fcfg = prior.finetune_config(cfg, mode, steps=2, save_every=1, batch_size=4, bank_size=16)
        run = prior.FINETUNE_KIND.train(fcfg, digits, tmp_path / mode, torch.device("cpu"), base_from=net,
                                        progress=False)
        assert sum(isinstance(m, adaptation.LoRA) for m in run["model"].modules()) == wrapped
        back_cfg, back, _ = prior.FINETUNE_KIND.load(tmp_path / mode / "last.pt")
        assert back_cfg == fcfg
        x, t = torch.randn(2, 1, 32, 32), torch.tensor([3, 700])
        m = masks.center_hole(2)
        with torch.no_grad():
            assert torch.allclose(back(x, t, m, m * x), run["ema"](x, t, m, m * x), atol=1e-5)
        lora = mode != "full"  # LoRA: a larger learning rate and the loss on the missing pixels only
        assert (fcfg.mode, fcfg.prior) == (mode, cfg_dict)
        assert fcfg.lr == pytest.approx(prior.finetune_config(cfg).lr * (prior.LORA_LR_SCALE if lora else 1))
        assert fcfg.known_weight == (prior.LORA_KNOWN_WEIGHT if lora else 1.0)
    with pytest.raises(ValueError, match="mode"):
        prior.finetune_config(cfg, "half")
    with pytest.raises(ValueError, match="known_weight"):
        prior.finetune_config(cfg, "lora_attn", known_weight=-1.0)
    with pytest.raises(Exception, match="not a prior model"):
        prior.PRIOR_KIND.load(tmp_path / "full" / "last.pt")


def test_prior_methods_count_their_calls():
    cfg = prior.PRIOR_KIND.config("ci")
    net = prior.build_prior(cfg).eval()
    x0 = data.load_mnist("test").images[:3]
    from course_utils.evaluation import SamplerOptions, draw_samples
    from course_utils.tasks import parse_task
    obs = parse_task("procedural:0.05-0.6").observe(x0, 0)
    for sampler, calls, settings in (("replacement", 6, {}),
                                     ("repaint", 6 + 2 * 2, dict(jump_length=2, jump_n_sample=2)),
                                     ("ddnm", 12, dict(repeats=2))):
        method = prior.prior_method(net, cfg, SamplerOptions(steps=6), sampler, **settings)
        samples, _, per_image = draw_samples(method, obs, 1, progress=False)
        assert per_image == calls, sampler
        assert torch.equal((obs.mask * samples[0])[obs.mask == 1], x0[obs.mask == 1])
    with pytest.raises(ValueError, match="sampler"):
        prior.prior_method(net, cfg, sampler="dps")


def test_finetuned_methods_count_their_calls_and_keep_the_known_pixels():
    cfg = prior.finetune_config(prior.PRIOR_KIND.config("ci"), "lora_attn")
    net = prior.build_finetuned(cfg).eval()
    x0 = data.load_mnist("test").images[:3]
    from course_utils.evaluation import SamplerOptions, draw_samples
    from course_utils.tasks import parse_task
    obs = parse_task("procedural:0.05-0.6").observe(x0, 0)
    ddnm = inpainting.ddnm_settings(cfg.prior["sample_steps"])
    for step, options, calls in (("ddnm", SamplerOptions(), ddnm["steps"] * ddnm["repeats"]),
                                 ("ddnm", SamplerOptions(steps=4), 4 * ddnm["repeats"]),
                                 ("ddpm", SamplerOptions(steps=6), 6), ("ddim", SamplerOptions(steps=3, dc_repeats=2), 6)):
        method = prior.finetuned_method(net, cfg, options, step=step)
        samples, _, per_image = draw_samples(method, obs, 1, progress=False)
        assert per_image == calls and method.config["step"] == step, (step, options)
        assert torch.equal((obs.mask * samples[0])[obs.mask == 1], x0[obs.mask == 1])
    assert prior.finetuned_method(net, cfg).config["eta"] == inpainting.DDNM_ETA  # the default: DDNM's own settings
    with pytest.raises(ValueError, match="step must be"):
        prior.finetuned_method(net, cfg, step="repaint")
    with pytest.raises(ValueError, match="dc-repeats"):
        prior.finetuned_method(net, cfg, SamplerOptions(dc_repeats=2))


def test_train_and_eval_commands(tmp_path, capsys):
    out = tmp_path / "prior"
    assert cli.main(["train", "--model", "prior", "--profile", "ci", "--out", str(out), "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    n = min(prior.PRIOR_KIND.config("ci").train_size, len(data.load_mnist("train")))
    assert f"{round(0.75 * n)} training digits" in printed  # the 75 / 15 / 10 split
    result = tmp_path / "r.json"
    assert cli.main(["eval", "--checkpoint", str(out / "last.pt"), "--data-dir", str(config.data_dir()), "--n", "3",
                     "--k", "1", "--steps", "3", "--profile", "ci", "--json", str(result)]) == 0
    res = json.loads(result.read_text())
    assert res["task"] == "procedural:0.05-0.6" and res["method"] == "prior_repaint"
    assert res["known_pixels_max_abs_error"] == 0.0


def test_finetune_command_trains_the_missing_prior_then_the_fine_tune(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "outputs"))  # where the prior's run folder goes
    out = tmp_path / "ft"
    assert cli.main(["train", "--model", "finetune", "--profile", "ci", "--out", str(out), "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "prior: training" in printed and "validation score" in printed
    pcfg = prior.PRIOR_KIND.config("ci")
    where = prior.PRIOR_KIND.run_dir(pcfg)
    assert (where / "last.pt").exists() and str(tmp_path / "outputs") in str(where)
    cfg, _, extra = prior.FINETUNE_KIND.load(out / "last.pt")
    assert (cfg.mode, cfg.steps, extra["step"]) == ("full", 2, 2)
    assert cli.main(["train", "--model", "finetune", "--profile", "ci", "--out", str(tmp_path / "ft2"),
                     "--steps", "2"]) == 0
    assert "prior: training" not in capsys.readouterr().out  # the second run reuses it
    result = tmp_path / "r.json"
    assert cli.main(["eval", "--checkpoint", str(out / "last.pt"), "--data-dir", str(config.data_dir()), "--n", "3",
                     "--k", "1", "--steps", "3", "--profile", "ci", "--json", str(result)]) == 0
    res = json.loads(result.read_text())
    assert res["method"] == "finetuned_full" and res["config"]["method"]["step"] == "ddnm"
    assert res["network_calls_per_image"] == 3 and res["known_pixels_max_abs_error"] == 0.0


def test_issue_command_lines_for_the_prior(tmp_path, monkeypatch, capsys):
    """The contract of notebook 05's issue: train a prior, fine-tune it --from its checkpoint (full and LoRA), score
    each training-free sampler with its network calls counted, and refuse what does not fit in one line."""
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "outputs"))
    data_dir = str(config.data_dir())
    pri = tmp_path / "prior"
    assert cli.main(["train", "--model", "prior", "--profile", "ci", "--out", str(pri), "--steps", "2"]) == 0
    for extra, mode, rank in (([], "full", 4), (["--lora-rank", "0"], "full", 4), (["--lora-rank", "2"], "lora_attn", 2),
                              (["--lora-rank", "3", "--lora-targets", "all"], "lora_all", 3)):
        out = tmp_path / f"ft-{mode}-{len(extra)}"
        assert cli.main(["train", "--model", "finetune", "--from", str(pri / "last.pt"), "--profile", "ci",
                         "--out", str(out), "--steps", "2", *extra]) == 0
        cfg, net, _ = prior.FINETUNE_KIND.load(out / "last.pt")
        assert (cfg.mode, cfg.rank, cfg.steps) == (mode, rank, 2)
        assert cfg == prior.finetune_config(prior.PRIOR_KIND.load(pri / "last.pt")[0], mode, steps=2,
                                            **({} if mode == "full" else {"rank": rank, "alpha": float(rank)}))
        lora_modules = sum(isinstance(m, adaptation.LoRA) for m in net.modules())
        assert (lora_modules == 0) == (mode == "full")
    assert "05_prior" not in capsys.readouterr().out  # --from: notebook 05's run folder is not used
    assert not (tmp_path / "outputs" / "05_prior").exists()
    steps = prior.PRIOR_KIND.config("ci").sample_steps
    ddnm_steps = inpainting.ddnm_settings(steps)["steps"]
    for flags, calls, sampler in (
            (["--sampler", "replace"], steps, "replacement"),
            (["--sampler", "repaint", "--jump-length", "2", "--resamplings", "2"],
             inpainting.walk_calls(inpainting.repaint_walk(steps, jump_length=2, jump_n_sample=2)), "repaint"),
            ([], None, "repaint"),
            (["--sampler", "ddnm", "--resamplings", "2"], 2 * ddnm_steps, "ddnm")):
        result = tmp_path / "r.json"
        assert cli.main(["eval", "--checkpoint", str(pri / "last.pt"), "--task", "center:12", "--data-dir", data_dir,
                         "--n", "2", "--k", "1", "--profile", "ci", "--json", str(result), *flags]) == 0
        res = json.loads(result.read_text())
        assert res["config"]["method"]["sampler"] == sampler and res["known_pixels_max_abs_error"] == 0.0
        if calls is not None:
            assert res["network_calls_per_image"] == calls, flags
        else:  # notebook 05's RePaint setting by default
            m = res["config"]["method"]
            assert {k: m[k] for k in inpainting.REPAINT} == inpainting.REPAINT
    ddnm_settings = res["config"]["method"]
    assert [ddnm_settings[k] for k in ("steps", "eta", "repeats")] == [ddnm_steps, inpainting.DDNM_ETA, 2]
    bad = [
        (["train", "--model", "finetune", "--from", str(tmp_path / "none.pt"), "--profile", "ci", "--out",
          str(tmp_path / "x")], "no checkpoint"),
        (["train", "--model", "finetune", "--from", str(tmp_path / "ft-full-0" / "last.pt"), "--profile", "ci",
          "--out", str(tmp_path / "x")], "not a prior model"),
        (["train", "--model", "finetune", "--from", str(pri / "last.pt"), "--profile", "cpu", "--out",
          str(tmp_path / "x")], "pass --profile ci"),
        (["train", "--model", "finetune", "--from", str(pri / "last.pt"), "--profile", "ci", "--out",
          str(tmp_path / "x"), "--lora-rank", "-1"], "--lora-rank"),
        (["train", "--model", "finetune", "--from", str(pri / "last.pt"), "--profile", "ci", "--out",
          str(tmp_path / "x"), "--lora-targets", "all"], "--lora-rank R > 0"),
        (["train", "--model", "prior", "--profile", "ci", "--out", str(tmp_path / "x"), "--lora-rank", "2"],
         "for --model finetune"),
        (["eval", "--checkpoint", str(pri / "last.pt"), "--data-dir", data_dir, "--sampler", "replace",
          "--jump-length", "2"], "not a setting of the replacement sampler"),
        (["eval", "--checkpoint", str(pri / "last.pt"), "--data-dir", data_dir, "--resamplings", "0"], "at least 1"),
        (["eval", "--checkpoint", str(tmp_path / "ft-full-0" / "last.pt"), "--data-dir", data_dir, "--sampler",
          "repaint"], "is for --model prior"),
        (["eval", "--method", "harmonic", "--task", "center:12", "--data-dir", data_dir, "--sampler", "ddnm"],
         "give --checkpoint"),
    ]
    for argv, message in bad:
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert message in str(exit_.value), (argv, exit_.value)
    assert not (tmp_path / "x").exists()


def test_finetune_loss_weights_known_pixels_as_told():
    """Weight 1 is notebook 02's plain mean; weight 0 ignores the known pixels, where the eps target has a closed
    form in x_t and y and replacement sampling discards the output."""
    sch = schedules.make_schedule("cosine", 1000)
    x0 = torch.rand(3, 1, 32, 32) * 2 - 1
    mask = prior.mask_bank("train", 3)
    zeros = lambda x_t, t, m, y: torch.zeros_like(x_t)  # noqa: E731
    t, eps, x_t = training.noised_batch(x0, sch, torch.Generator().manual_seed(0))
    missing = mask == 0
    loss = lambda net, w: prior.finetune_loss(net, x0, mask, sch, torch.Generator().manual_seed(0), "eps", w)  # noqa: E731
    assert loss(zeros, 1.0).item() == pytest.approx((eps ** 2).mean().item(), rel=1e-5)
    assert loss(zeros, 0.0).item() == pytest.approx((eps[missing] ** 2).mean().item(), rel=1e-5)

    def exact_on_known(x_t, t, m, y):  # eq. 4 solved for eps where y = x0 is known: no learning needed there
        ab = sch.alpha_bars[t].float().view(-1, 1, 1, 1)
        return m * (x_t - ab.sqrt() * y) / (1 - ab).sqrt()

    assert torch.allclose(exact_on_known(x_t, t, mask, mask * x0)[mask == 1], eps[mask == 1], atol=1e-4)
    assert loss(exact_on_known, 0.0).item() == pytest.approx(loss(zeros, 0.0).item(), rel=1e-5)
    assert loss(exact_on_known, 1.0).item() < loss(zeros, 1.0).item()


def test_dc_repeats_is_refused_where_no_ddim_step_takes_it():
    cfg = prior.PRIOR_KIND.config("ci")
    from course_utils.evaluation import SamplerOptions
    with pytest.raises(ValueError, match="dc-repeats"):
        prior.prior_method(prior.build_prior(cfg), cfg, SamplerOptions(dc_repeats=2), "replacement")
    fcfg = prior.finetune_config(cfg)
    with pytest.raises(ValueError, match="dc-repeats"):
        prior.finetuned_method(prior.build_finetuned(fcfg), fcfg, SamplerOptions(dc_repeats=2), step="ddpm")
