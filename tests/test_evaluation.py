"""The evaluation harness: any method on any task, scored the same way, with honest costs."""

import json

import pytest
import torch
from torch import nn

from course_utils import center_hole, checkpoints, classifier, config, data, evaluation, kinds, metrics, models, runs, tasks

KEYS = {"task", "region", "n_images", "k", "method", "metrics", "baselines", "classifier_test_accuracy",
        "known_pixels_max_abs_error", "seconds_per_image", "network_calls_per_image", "config"}


@pytest.fixture(scope="module")
def digits():
    test = data.load_mnist("test")[:24]
    return test.images, test.labels


@pytest.fixture(scope="module")
def library():
    return data.load_mnist("train").images[:200]


class Wobbly(nn.Module):
    """A stand-in network: returns its input plus seeded noise; counts nothing itself."""

    def forward(self, x):
        return x


def noisy_method(calls_per_sample=3, touch_known=False):
    net = Wobbly()

    def sample(obs, g):
        x = obs.y
        for _ in range(calls_per_sample):
            x = net(x)
        out = obs.mask * obs.y + (1 - obs.mask) * (0.5 * torch.rand(obs.y.shape, generator=g) - 0.25)
        if touch_known:
            out = out.clone()
            out[:, :, 0, 0] = out[:, :, 0, 0] + 0.5 * obs.mask[:, :, 0, 0]
        return out.clamp(-1, 1)

    return evaluation.Method("noisy", sample, stochastic=True, fits=lambda t: t.is_mask_task, network=net)


def test_summary_has_exactly_the_contract_keys_and_honest_costs(digits, library):
    images, labels = digits
    summary, per_image, samples = evaluation.evaluate(noisy_method(3), images, labels, "center:12", k=4, seed=0,
                                                      library=library, batch_size=10, progress=False)
    assert set(summary) == KEYS
    assert summary["task"] == "center:12" and summary["region"] == "missing" and summary["k"] == 4
    assert set(summary["metrics"]) == {"psnr", "l1", "ssim", "class_acc", "frechet"}
    assert samples.shape == (4, 24, 1, 32, 32)
    assert summary["network_calls_per_image"] == 3  # counted by the hook, over uneven batches of 10
    assert summary["known_pixels_max_abs_error"] == 0.0 and summary["seconds_per_image"] > 0
    assert set(summary["baselines"]) == {"zero_fill", "nearest_pixel", "nearest_neighbour", "harmonic"}
    mask = tasks.parse_task("center:12").make_mask(24)
    assert summary["metrics"]["psnr"]["mean_k"] == pytest.approx(
        metrics.psnr_on_mask(samples.mean(0), images, mask).mean().item())
    assert summary["metrics"]["psnr"]["single"] == pytest.approx(per_image["psnr_single"].mean().item())
    assert summary["metrics"]["class_acc"]["single"] is None  # no classifier given


def test_samples_are_seeded_and_differ_between_k(digits, library):
    images, labels = digits
    _, _, a = evaluation.evaluate(noisy_method(), images, labels, "rect", k=2, seed=5, library=library,
                                  baselines=False, progress=False)
    _, _, b = evaluation.evaluate(noisy_method(), images, labels, "rect", k=2, seed=5, library=library,
                                  baselines=False, progress=False)
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])


def test_a_changed_known_pixel_is_reported(digits):
    images, labels = digits
    summary, _, _ = evaluation.evaluate(noisy_method(touch_known=True), images, labels, "center:12", k=1,
                                        baselines=False, progress=False)
    assert summary["known_pixels_max_abs_error"] > 0.1


def test_a_baseline_scored_as_a_method_matches_its_baseline_row(digits, library):
    images, labels = digits
    for spec, name in (("sparse:0.1", "harmonic"), ("lowres:4", "bicubic"), ("noise:0.5", "smoothing")):
        summary, _, _ = evaluation.evaluate(evaluation.baseline_method(name, library), images, labels, spec, k=8,
                                            library=library, progress=False)
        assert summary["k"] == 1 and summary["network_calls_per_image"] == 0
        for metric in ("psnr", "l1", "ssim"):
            assert summary["metrics"][metric]["single"] == summary["metrics"][metric]["mean_k"]
            assert summary["metrics"][metric]["single"] == pytest.approx(summary["baselines"][name][metric])
        if spec != "sparse:0.1":
            assert summary["region"] == "image" and summary["known_pixels_max_abs_error"] is None


def test_classifier_metrics(digits, library):
    images, labels = digits
    torch.manual_seed(0)
    clf = classifier.build_classifier(classifier.KIND.config("ci")).eval()
    summary, per_image, _ = evaluation.evaluate(evaluation.baseline_method("zero_fill"), images, labels, "center:12",
                                                classifier=clf, library=library, progress=False)
    preds = classifier.predict(clf, tasks.parse_task("center:12").observe(
        images, evaluation.OBSERVATION_SEED_OFFSET).y)
    assert summary["metrics"]["class_acc"]["single"] == pytest.approx((preds == labels).float().mean().item())
    assert summary["classifier_test_accuracy"] == pytest.approx(classifier.accuracy(clf, images, labels))
    assert isinstance(summary["metrics"]["frechet"]["single"], float)
    assert summary["baselines"]["zero_fill"]["frechet"] == pytest.approx(summary["metrics"]["frechet"]["single"])


def test_one_samples_class_is_estimated_from_every_sample(digits, library):
    images, labels = digits
    torch.manual_seed(0)
    clf = classifier.build_classifier(classifier.KIND.config("ci")).eval()
    summary, per_image, samples = evaluation.evaluate(noisy_method(1), images, labels, "center:12", k=3, seed=1,
                                                      classifier=clf, library=library, baselines=False,
                                                      progress=False)
    correct = torch.stack([classifier.predict(clf, s) == labels for s in samples]).float()  # K x N
    acc = summary["metrics"]["class_acc"]
    assert acc["each_sample"] == pytest.approx(correct.mean().item())
    assert acc["single"] == pytest.approx(correct[0].mean().item())
    assert torch.allclose(per_image["class_correct_each_sample"], correct.mean(0))
    assert f"one sample keeps the class {acc['each_sample']:.3f} of the time" in evaluation.format_results(summary)


def test_bad_input(digits, library):
    images, labels = digits
    with pytest.raises(ValueError, match="cannot do task"):
        evaluation.evaluate(noisy_method(), images, labels, "noise:0.5", progress=False)
    with pytest.raises(ValueError, match="k must"):
        evaluation.evaluate(noisy_method(), images, labels, "rect", k=0, progress=False)
    with pytest.raises(ValueError, match="labels"):
        evaluation.evaluate(noisy_method(), images, labels[:3], "rect", progress=False)
    with pytest.raises(tasks.TaskSpecError):
        evaluation.evaluate(noisy_method(), images, labels, "center:99", progress=False)
    with pytest.raises(ValueError, match="training digits"):
        evaluation.baseline_method("nearest_neighbour")


def test_the_center_hole_kind_samples_with_ddim_and_counts_its_calls(digits, tmp_path):
    images, labels = digits
    cfg = center_hole.KIND.config("ci")
    torch.manual_seed(0)
    net = models.UNet(cfg.base_channels, cfg.channel_mults, coord_conv=cfg.coord_conv).eval()
    kind = kinds.KINDS["center_hole"]
    method = kind.method(net, cfg, evaluation.SamplerOptions(steps=4, eta=0.0, dc_repeats=2))
    assert method.fits(tasks.parse_task("sparse:0.1")) and not method.fits(tasks.parse_task("kspace:0.25"))
    summary, _, _ = evaluation.evaluate(method, images[:6], labels[:6], kind.default_task(cfg), k=2,
                                        baselines=False, progress=False)
    assert summary["network_calls_per_image"] == 8 and summary["known_pixels_max_abs_error"] == 0.0
    path = checkpoints.save_checkpoint(tmp_path / "last.pt", net, runs.config_dict(cfg), kind="center_hole")
    assert kinds.kind_of_checkpoint(path).name == "center_hole"
    other = checkpoints.save_checkpoint(tmp_path / "other.pt", nn.Linear(1, 1), {"width": 3})
    with pytest.raises(checkpoints.CheckpointMismatchError, match="no model kind"):
        kinds.kind_of_checkpoint(other)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(checkpoints.CheckpointMismatchError, match="not a course checkpoint"):
        kinds.kind_of_checkpoint(junk)


def test_the_harness_reproduces_notebook_03s_former_evaluation_exactly(digits):
    """Before the harness, notebook 03 scored its model with its own loop (sample j seeded seed + j, batches of
    128, hole metrics of sample 0 and of the mean). The harness must give the very same numbers, so the README's
    earlier notebook-03 results stay comparable."""
    from course_utils import diffusion, masks, schedules

    images, labels = digits
    cfg = center_hole.KIND.config("ci")
    torch.manual_seed(1)
    net = models.UNet(cfg.base_channels, cfg.channel_mults, coord_conv=cfg.coord_conv).eval()
    sch = schedules.make_schedule(cfg.schedule, cfg.T)
    mask = masks.center_hole(len(images), cfg.hole)
    y = mask * images
    former = torch.empty((3,) + tuple(images.shape))
    for j in range(3):
        gen = torch.Generator().manual_seed(7 + j)
        for i in range(0, len(images), 10):
            den = diffusion.Denoiser(net, sch, cfg.prediction, (mask[i : i + 10], y[i : i + 10]))
            former[j, i : i + 10] = diffusion.ddim_inpaint(den, y[i : i + 10], mask[i : i + 10], 4, 0.0, 1, gen)
    method = center_hole.center_hole_method(net, cfg, evaluation.SamplerOptions(steps=4))
    summary, _, samples = evaluation.evaluate(method, images, labels, "center:12", k=3, seed=7, baselines=False,
                                              batch_size=10, progress=False)
    assert torch.equal(samples, former)
    assert summary["metrics"]["psnr"]["mean_k"] == metrics.psnr_on_mask(former.mean(0), images, mask).mean().item()
    assert summary["metrics"]["psnr"]["single"] == metrics.psnr_on_mask(former[0], images, mask).mean().item()


def test_the_results_page_shows_what_the_runs_json_holds_and_names_what_is_missing(digits, library, tmp_path):
    from course_utils import cli, reports

    images, labels = digits
    summary, _, _ = evaluation.evaluate(noisy_method(), images, labels, "center:12", k=2, library=library,
                                        progress=False)
    folder = tmp_path / "03_center_hole" / "shipped-cpu"
    folder.mkdir(parents=True)
    (folder / "metrics_cpu.json").write_text(json.dumps(summary))
    assert cli.main(["results", "--outputs", str(tmp_path), "--profile", "cpu", "--out", str(tmp_path / "r.md")]) == 0
    page = (tmp_path / "r.md").read_text()
    psnr = summary["metrics"]["psnr"]
    assert f"| noisy, 1 sample | {psnr['single']:.2f} |" in page and f"| noisy, mean of 2 | {psnr['mean_k']:.2f} |" in page
    nn_psnr = summary["baselines"]["nearest_neighbour"]["psnr"]
    assert f"| nearest_neighbour | {nn_psnr:.2f} |" in page
    assert "### With the shipped model" in page and "From `outputs/03_center_hole/shipped-cpu/metrics_cpu.json`" in page
    for missing in ("metrics/02_ddpm_cpu.json", "05_prior/results_cpu.json", "benchmark_cpu.json",
                    "04_conditional/shipped-cpu/metrics_cpu.json"):
        assert f"Not in this run: `outputs/{missing}` is missing" in page
    assert reports.results_page(tmp_path, "cpu") == page
    own = center_hole.KIND.config("cpu")  # the profile's own run is shown too, a run of an older config is not
    for name in (config.run_name("cpu", checkpoints.config_dict(own)), "cpu-00000000"):
        (tmp_path / "03_center_hole" / name).mkdir()
        (tmp_path / "03_center_hole" / name / "metrics_cpu.json").write_text(json.dumps(summary))
    page = reports.results_page(tmp_path, "cpu")
    assert "### With the profile's own model" in page and "cpu-00000000" not in page
