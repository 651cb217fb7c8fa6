import math

import pytest
import torch

from course_utils import masks, metrics


def test_hole_metrics_ignore_known_pixels():
    x = torch.full((2, 1, 4, 4), -1.0)
    m = torch.ones_like(x)
    m[:, :, :2] = 0  # top half missing
    pred = x.clone()
    pred[:, :, 2:] = 1.0  # wrong only where known
    assert torch.all(metrics.l1_on_mask(pred, x, m) == 0)
    assert torch.all(metrics.psnr_on_mask(pred, x, m) == 100.0)  # MSE floored at 1e-10


def test_hole_metric_values():
    x = torch.full((1, 1, 4, 4), -1.0)  # 0 in [0, 1]
    m = torch.ones_like(x)
    m[0, 0, 0, :2] = 0  # two missing pixels
    pred = x.clone()
    pred[0, 0, 0, 0] = 0.0  # 0.5 in [0, 1]: error 0.5 on one of the two
    assert metrics.l1_on_mask(pred, x, m).item() == pytest.approx(0.25)
    assert metrics.hole_mse(pred, x, m).item() == pytest.approx(0.125)
    assert metrics.psnr_on_mask(pred, x, m).item() == pytest.approx(10 * math.log10(1 / 0.125))


def test_psnr_is_averaged_per_image():
    x = torch.full((2, 1, 2, 2), -1.0)
    m = torch.zeros_like(x)
    pred = x.clone()
    pred[0] = 1.0  # image 0 entirely wrong (MSE 1 -> 0 dB); image 1 has MSE 0.25 -> 6.02 dB
    pred[1] = 0.0
    psnr = metrics.psnr_on_mask(pred, x, m)
    assert psnr[0].item() == pytest.approx(0.0)
    assert psnr[1].item() == pytest.approx(10 * math.log10(4))
    assert metrics.hole_metrics(pred, x, m)["hole_psnr"] == pytest.approx(psnr.mean().item())


def test_metric_errors():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        metrics.l1_on_mask(x * 0 + 255, x, torch.zeros_like(x))
    with pytest.raises(ValueError, match="image's shape"):
        metrics.psnr_on_mask(x, x, torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError):
        metrics.l1_on_mask(torch.zeros(1, 1, 2, 2), x, torch.zeros_like(x))


def test_ssim():
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    m = masks.center_hole(2, 6, size=16)
    assert torch.allclose(metrics.ssim_on_mask(x, x, m), torch.ones(2))
    noisy = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    worse = (x + 0.8 * torch.randn_like(x)).clamp(-1, 1)
    assert metrics.ssim_on_mask(worse, x, m).mean() < metrics.ssim_on_mask(noisy, x, m).mean() < 1
    assert torch.allclose(metrics.ssim_map(noisy, x), metrics.ssim_map(x, noisy), atol=1e-6)  # symmetric
    assert torch.allclose(metrics.ssim_on_mask(noisy, x, torch.ones_like(x)), metrics.ssim_map(noisy, x).mean((1, 2, 3)))


def test_a_mask_with_nothing_missing_scores_the_whole_image():
    """Measurement tasks (mask all zeros) and masks with no missing pixel both score every pixel."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1
    pred = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    whole = ((pred - x) / 2).abs().flatten(1).mean(1)
    for mask in (torch.ones_like(x), torch.zeros_like(x)):
        assert torch.allclose(metrics.l1_on_mask(pred, x, mask), whole)
        assert torch.allclose(metrics.hole_mse(pred, x, mask), ((pred - x) / 2).pow(2).flatten(1).mean(1))
    mixed = torch.ones_like(x)
    mixed[0, 0, 0, 0] = 0  # image 0 has one missing pixel: only it is scored there
    assert metrics.l1_on_mask(pred, x, mixed)[0] == pytest.approx(((pred - x) / 2).abs()[0, 0, 0, 0].item())
    assert torch.allclose(metrics.l1_on_mask(pred, x, mixed)[1:], whole[1:])


def test_posterior_mean_std_on_unit_scale():
    samples = torch.stack([torch.full((2, 1, 4, 4), -1.0), torch.full((2, 1, 4, 4), 1.0)])
    mean, std = metrics.posterior_mean_std(samples)
    assert torch.allclose(mean, torch.full((2, 1, 4, 4), 0.5)) and torch.allclose(std, torch.full((2, 1, 4, 4), 0.5))
    with pytest.raises(ValueError, match="K >= 2"):
        metrics.posterior_mean_std(samples[:1])


def test_uncertainty_calibration_coverage_and_correlation():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(4, 1, 8, 8, generator=g) * 0.6 - 0.8  # in [-0.8, -0.2]
    spread = torch.rand(4, 1, 8, 8, generator=g) * 0.1
    # samples centred on the truth, each pixel with its own spread: covered everywhere, and a wider spread
    # goes with a larger error of the mean (the mean is offset by the spread)
    samples = torch.stack([truth + spread, truth - spread, truth + 2 * spread])
    mask = torch.zeros_like(truth)
    out = metrics.uncertainty_calibration(samples, truth, mask)
    assert out["coverage"] == 1.0 and out["std_error_corr"] > 0.99
    shifted = metrics.uncertainty_calibration(samples + 0.5, truth, mask)
    assert shifted["coverage"] == 0.0
    # only the scored (missing) pixels count: a mask that knows the wrong half leaves the covered half
    samples[:, :, :, :, :4] += 3.0
    half = torch.zeros_like(truth)
    half[..., :4] = 1
    assert metrics.uncertainty_calibration(samples.clamp(-1, 1), truth, half)["coverage"] == 1.0
    # exchangeable draws: the truth falls inside the range of K others with chance (K - 1) / (K + 1)
    k = 5
    draws = torch.rand(k + 1, 200, 1, 8, 8, generator=g) * 2 - 1
    cov = metrics.uncertainty_calibration(draws[1:], draws[0], torch.zeros(200, 1, 8, 8))["coverage"]
    assert abs(cov - (k - 1) / (k + 1)) < 0.02
    with pytest.raises(ValueError, match="K x N"):
        metrics.uncertainty_calibration(samples[0], truth, mask)


def test_interval_coverage_of_an_exact_sampler_is_its_nominal_level_even_with_ties():
    g = torch.Generator().manual_seed(3)
    draws = torch.randn(9, 300, 1, 8, 8, generator=g).clamp(-1, 1)  # 32% of the values sit at -1 or 1 and tie
    curve = metrics.interval_coverage(draws[1:], draws[0], torch.zeros(300, 1, 8, 8))
    assert list(curve) == pytest.approx([1 / 9, 3 / 9, 5 / 9, 7 / 9])
    for nominal, coverage in curve.items():
        assert coverage == pytest.approx(nominal, abs=0.01)
    # counting ties as inside (the samples' range of uncertainty_calibration) overshoots on the same draws
    assert metrics.uncertainty_calibration(draws[1:], draws[0], torch.zeros(300, 1, 8, 8))["coverage"] > 7 / 9 + 0.02


def test_interval_coverage_breaks_a_full_tie_uniformly():
    samples = -torch.ones(8, 2, 1, 4, 4)  # every sample and the truth at the background value
    curve = metrics.interval_coverage(samples, -torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4))
    for nominal, coverage in curve.items():
        assert coverage == pytest.approx(nominal)


def test_interval_coverage_of_overconfident_samples_falls_short_and_bad_input_is_refused():
    g = torch.Generator().manual_seed(4)
    truth = torch.randn(200, 1, 8, 8, generator=g).clamp(-0.9, 0.9)
    narrow = (0.3 * torch.randn(8, 200, 1, 8, 8, generator=g)).clamp(-1, 1)  # too sure, around 0
    curve = metrics.interval_coverage(narrow, truth, torch.zeros(200, 1, 8, 8))
    assert all(coverage < nominal for nominal, coverage in curve.items())
    with pytest.raises(ValueError, match="K >= 2"):
        metrics.interval_coverage(narrow[:1], truth, torch.zeros(200, 1, 8, 8))


def test_conformal_scale_reaches_its_level_on_fresh_images():
    g = torch.Generator().manual_seed(5)
    val, test = (torch.randn(9, 200, 1, 8, 8, generator=g).clamp(-1, 1) * 0.5 for _ in range(2))
    mask = torch.zeros(200, 1, 8, 8)
    narrow_val, narrow_test = 0.5 * val[1:], 0.5 * test[1:]  # over-confident samples: the scale must widen them
    scale = metrics.conformal_scale(narrow_val, val[0], mask, level=0.9)
    assert metrics.scaled_interval_coverage(narrow_val, val[0], mask, scale) >= 0.9
    assert metrics.scaled_interval_coverage(narrow_test, test[0], mask, scale) == pytest.approx(0.9, abs=0.02)
    assert metrics.scaled_interval_coverage(narrow_test, test[0], mask, 1.0) < 0.8  # plus-minus one std: too narrow
    with pytest.raises(ValueError, match="level"):
        metrics.conformal_scale(narrow_val, val[0], mask, level=1.5)


def test_conformal_scale_is_the_split_conformal_order_statistic():
    truth = torch.zeros(1, 1, 2, 5)  # 10 scored pixels
    samples = torch.stack([torch.zeros(1, 1, 2, 5), torch.zeros(1, 1, 2, 5)])  # mean 0.5 in [0, 1] units, std 0
    offsets = torch.linspace(0.1, 1.0, 10).reshape(1, 1, 2, 5)  # truth at -1 + offset: |error| = offset / 2
    truth = -1 + offsets
    scores = (offsets.flatten() / 2 - 0.5).abs() / 0.01  # |truth - mean| / (0 + floor), mean at 0.5
    expected = scores.sort().values[math.ceil(11 * 0.8) - 1].item()  # the 9th smallest of 10
    assert metrics.conformal_scale(samples, truth, torch.zeros(1, 1, 2, 5), level=0.8) == pytest.approx(expected)
    assert metrics.conformal_scale(samples, truth, torch.zeros(1, 1, 2, 5), level=0.95) == math.inf  # rank 11 of 10
