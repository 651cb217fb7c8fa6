"""The course's shipped checkpoints: made from a finished pretrained run, loaded only when they are the file their
manifest describes and the recipe the code has, and usable as --checkpoint pretrained:KIND."""

import dataclasses
import json
import os

import matplotlib.pyplot as plt
import pytest
import torch

from course_utils import checkpoints, cli, config, data, kinds, pretrained, prior


@pytest.fixture()
def tiny_recipe(monkeypatch, tmp_path):
    """The prior's pretrained recipe replaced by a tiny one, trained into a run folder; (kind, run, digits)."""
    tiny = dataclasses.replace(prior.PRIOR["ci"], profile=config.PRETRAINED, steps=4, save_every=2)
    monkeypatch.setitem(prior.PRIOR, config.PRETRAINED, tiny)
    kind = prior.PRIOR_KIND
    train, val, _ = prior.prior_splits(tiny)
    kind.train(tiny, train, tmp_path / "run", torch.device("cpu"), val=val[:4], progress=False)
    return kind, tmp_path / "run", train, val[:4]


def test_ship_then_load_round_trips_with_a_manifest(tiny_recipe, tmp_path):
    kind, run, train, val = tiny_recipe
    manifest = pretrained.ship(kind, run, train, val, note="a test", folder=tmp_path / "shipped")
    cfg, model, read = pretrained.load_shipped(kind, tmp_path / "shipped")
    assert read == manifest and cfg == kind.config(config.PRETRAINED)
    assert manifest["sha256"] == pretrained.sha256(tmp_path / "shipped" / "prior.pt")
    assert manifest["steps"] == 4 and manifest["training_digits"]["fingerprint"] == pretrained.fingerprint(train)
    assert manifest["command"].startswith("python -m course_utils train --model prior --profile pretrained")
    assert manifest["dtype"] in ("float16", "float32")
    _, ema, _ = kind.load(run / "last.pt")
    for a, b in zip(model.state_dict().values(), ema.state_dict().values()):
        tolerance = 1e-3 * b.abs().max().item() + 1e-6 if manifest["dtype"] == "float16" else 0.0
        assert (a - b).abs().max().item() <= tolerance
    if manifest["dtype"] == "float16":
        assert abs(manifest["validation"]["score_float16"] - manifest["validation"]["score_float32"]) <= 0.05


def test_a_damaged_or_outdated_shipped_file_is_refused_in_one_line(tiny_recipe, tmp_path, monkeypatch):
    kind, run, train, val = tiny_recipe
    folder = tmp_path / "shipped"
    pretrained.ship(kind, run, train, val, folder=folder)
    path = folder / "prior.pt"
    good = path.read_bytes()
    for damaged, why in ((good[:-100], "sha256"), (good[:50] + bytes([good[50] ^ 1]) + good[51:], "sha256")):
        path.write_bytes(damaged)
        with pytest.raises(pretrained.ShippedCheckpointError, match=why) as err:
            pretrained.load_shipped(kind, folder)
        assert "\n" not in str(err.value) and "prior.pt" in str(err.value) and "--profile pretrained" in str(err.value)
    path.write_bytes(good)
    changed = dataclasses.replace(prior.PRIOR[config.PRETRAINED], lr=1e-4)  # the code's recipe moved on
    monkeypatch.setitem(prior.PRIOR, config.PRETRAINED, changed)
    with pytest.raises(pretrained.ShippedCheckpointError, match="another prior recipe .*lr"):
        pretrained.load_shipped(kind, folder)
    with pytest.raises(pretrained.ShippedCheckpointError, match="no shipped prior checkpoint"):
        pretrained.load_shipped(kind, tmp_path / "nowhere")


def test_ship_refuses_an_unfinished_or_other_profile_run(tmp_path):
    kind = prior.PRIOR_KIND
    cfg = dataclasses.replace(prior.PRIOR["ci"], steps=4, save_every=2)
    train, _, _ = prior.prior_splits(cfg)
    kind.train(cfg, train, tmp_path / "ci", torch.device("cpu"), progress=False)
    with pytest.raises(pretrained.ShippedCheckpointError, match="no finished run of the code.s pretrained recipe"):
        pretrained.ship(kind, tmp_path / "ci", train, train[:2], folder=tmp_path / "shipped")


SHIPPED = [kind for kind in kinds.KINDS.values() if pretrained.is_shipped(kind)]


@pytest.mark.parametrize("kind", SHIPPED, ids=[k.name for k in SHIPPED])
def test_every_shipped_checkpoint_loads_into_the_code(kind):
    """Fails when the code's network or recipe for a shipped kind no longer takes the shipped weights."""
    cfg, model, manifest = pretrained.load_shipped(kind)
    assert manifest["kind"] == kind.name and manifest["config"] == checkpoints.config_dict(cfg)
    got = kind.obtain(cfg, allow_training=False)  # obtain takes the shipped file for the pretrained recipe
    assert got.status == "shipped" and got.path == pretrained.SHIPPED_DIR / f"{kind.name}.pt"


@pytest.mark.parametrize("kind", SHIPPED, ids=[k.name for k in SHIPPED])
def test_every_shipped_checkpoint_reproduces_its_validation_score(kind):
    """The headline number of each shipped model, recomputed: the validation score its manifest records (the kind's
    own validation, on the same validation digits and seed as `ship` used), to within float rounding."""
    cfg, model, manifest = pretrained.load_shipped(kind)
    train, val, _ = (kind.splits or data.load_splits)(cfg, seed=0)
    if pretrained.fingerprint(train) != manifest["training_digits"]["fingerprint"]:
        pytest.skip(f"this MNIST is not the digits the shipped {kind.name} was trained and validated on")
    score, fig = kind.validate(model, cfg, val[: manifest["validation"]["digits"]])
    if fig is not None:
        plt.close(fig)
    assert score == pytest.approx(manifest["validation"][f"score_{manifest['dtype']}"], abs=0.02)


def test_the_shipped_folder_stays_small():
    files = list(pretrained.SHIPPED_DIR.glob("*")) if pretrained.SHIPPED_DIR.is_dir() else []
    assert sum(f.stat().st_size for f in files) <= 25e6
    for pt in pretrained.SHIPPED_DIR.glob("*.pt") if files else []:
        assert json.loads(pt.with_suffix(".json").read_text())["sha256"] == pretrained.sha256(pt)
    expected = {f"{kind}.{ext}" for kind in kinds.KINDS for ext in ("pt", "json")}
    stray = sorted(f.name for f in files if f.name not in expected)
    assert not stray, f"pretrained/ holds only shipped checkpoints and their manifests, not {stray}"


@pytest.mark.skipif(not pretrained.is_shipped(prior.PRIOR_KIND), reason="the course ships no prior yet")
def test_eval_takes_the_shipped_prior_as_pretrained_colon_kind(tmp_path):
    out = tmp_path / "r.json"
    assert cli.main(["eval", "--checkpoint", "pretrained:prior", "--task", "center:12", "--sampler", "ddnm",
                     "--steps", "3", "--data-dir", os.environ["COURSE_DATA_DIR"], "--n", "4", "--k", "1",
                     "--profile", "ci", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["config"]["checkpoint"] == "pretrained:prior" and result["config"]["model"]["profile"] == "pretrained"


@pytest.mark.parametrize("kind", [k.name for k in SHIPPED if k.method is not None])
def test_sample_draws_with_every_shipped_model_at_its_own_settings(kind, tmp_path):
    """``sample`` leaves --steps and --eta to the model (a prior's RePaint takes no eta)."""
    png = tmp_path / f"{kind}.png"
    assert cli.main(["sample", "--checkpoint", f"pretrained:{kind}", "--n", "2", "--out", str(png)]) == 0
    assert png.stat().st_size > 0


def test_pretrained_colon_names_a_kind():
    with pytest.raises(SystemExit, match="no model kind 'nope'"):
        cli.main(["eval", "--checkpoint", "pretrained:nope", "--task", "center:12", "--data-dir",
                  os.environ["COURSE_DATA_DIR"]])


def test_fingerprint_tells_digit_sets_apart():
    a = data.DigitSet(torch.zeros(3, 1, 32, 32) - 1, torch.tensor([1, 2, 3]))
    b = data.DigitSet(torch.zeros(3, 1, 32, 32) - 1, torch.tensor([1, 2, 4]))
    assert pretrained.fingerprint(a) == pretrained.fingerprint(a) != pretrained.fingerprint(b)


@pytest.mark.skipif(not pretrained.is_shipped(prior.PRIOR_KIND), reason="the course ships no prior yet")
def test_the_shipped_prior_makes_every_digit():
    """All ten classes among 100 free samples of the shipped prior, each labelled by its nearest training digit (a
    1-nearest-neighbour classifier: no training needed)."""
    from course_utils import diffusion, schedules
    cfg, model, manifest = pretrained.load_shipped(prior.PRIOR_KIND)
    train, _, _ = prior.prior_splits(cfg)
    denoiser = diffusion.Denoiser(model, schedules.make_schedule(cfg.schedule, cfg.T), cfg.prediction)
    free = diffusion.sample(denoiser, torch.zeros(100, 1, 32, 32), diffusion.timesteps(cfg.T, cfg.sample_steps),
                            "ddpm", generator=torch.Generator().manual_seed(0))
    labels = train.labels[torch.cdist(free.flatten(1), train.images.flatten(1)).argmin(1)]
    assert torch.bincount(labels, minlength=10).min() > 0


def test_obtain_takes_the_shipped_file_only_for_the_exact_recipe(tiny_recipe, tmp_path, monkeypatch):
    kind, run, train, val = tiny_recipe
    monkeypatch.setattr(pretrained, "SHIPPED_DIR", tmp_path / "shipped")
    from course_utils import runs
    monkeypatch.setattr(runs, "SHIPPED_DIR", tmp_path / "shipped")
    monkeypatch.setattr(runs, "is_shipped", lambda k: pretrained.is_shipped(k, tmp_path / "shipped"))
    monkeypatch.setattr(runs, "load_shipped", lambda k: pretrained.load_shipped(k, tmp_path / "shipped"))
    pretrained.ship(kind, run, train, val, folder=tmp_path / "shipped")
    got = kind.obtain(kind.config(config.PRETRAINED), allow_training=False)
    assert got.status == "shipped" and got.extra["step"] == 4 and len(got.extra["losses"]) == 4
    assert got.extra["manifest"]["kind"] == "prior" and got.extra["seconds"] >= 0
    longer = kind.config(config.PRETRAINED, steps=8)  # not the shipped recipe: never answered by the shipped file
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "outputs"))
    with pytest.raises(runs.MissingModelError):
        kind.obtain(longer, allow_training=False)


def test_train_and_ship_refuse_a_kind_without_a_pretrained_recipe(tmp_path):
    """Notebook 05's fine-tunes train live from the shipped prior (their lesson), so they ship no recipe."""
    assert "pretrained" not in kinds.KINDS["finetune"].presets
    for argv in (["train", "--model", "finetune", "--profile", "pretrained", "--out", str(tmp_path / "x")],
                 ["ship", "--model", "finetune", "--run", str(tmp_path / "x")]):
        with pytest.raises(SystemExit, match="no pretrained recipe .*ddpm.*prior"):
            cli.main(argv)


def test_provenance_names_the_file_and_warns_about_other_digits(tiny_recipe, tmp_path):
    kind, run, train, val = tiny_recipe
    manifest = pretrained.ship(kind, run, train, val, folder=tmp_path / "shipped")
    text = pretrained.provenance(manifest, train, "the validation digits may overlap")
    assert "prior.pt" in text and manifest["command"] in text and "note:" not in text
    other = data.DigitSet(train.images[:-1], train.labels[:-1])
    assert "note:" in pretrained.provenance(manifest, other, "the validation digits may overlap").splitlines()[-1]
