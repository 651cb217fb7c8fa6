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
    with pytest.raises(ValueError, match="at least one missing"):
        metrics.l1_on_mask(x, x, torch.ones_like(x))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        metrics.l1_on_mask(x * 0 + 255, x, torch.zeros_like(x))
    with pytest.raises(ValueError, match="image's shape"):
        metrics.psnr_on_mask(x, x, torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError):
        metrics.l1_on_mask(torch.zeros(1, 1, 2, 2), x, torch.zeros_like(x))


def test_zero_fill_is_the_observation():
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    m = masks.random_dropout(2, 0.5, size=8, seed=0)
    z = metrics.zero_fill(m * x, m)
    assert torch.equal(z, m * x) and torch.all(z[m == 0] == 0)


def test_nearest_fill_copies_the_closest_known_pixel():
    y = torch.zeros(1, 1, 1, 5)
    m = torch.tensor([[[[1.0, 0, 0, 0, 1]]]])
    y[0, 0, 0, 0], y[0, 0, 0, 4] = -1.0, 1.0
    out = metrics.nearest_pixel_fill(y * m, m)
    # pixel 2 is equidistant: ties go to the lower index (pixel 0)
    assert out.flatten().tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0]


def test_nearest_fill_keeps_known_and_beats_zero_fill_on_smooth_images():
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    x = (0.5 * (yy + xx)).expand(70, 1, 32, 32).contiguous()  # > 64 images: exercises chunking
    m = masks.random_dropout(70, 0.5, seed=1)
    nn_fill = metrics.nearest_pixel_fill(m * x, m)
    assert torch.equal(nn_fill[m == 1], x[m == 1])
    assert metrics.l1_on_mask(nn_fill, x, m).mean() < metrics.l1_on_mask(metrics.zero_fill(m * x, m), x, m).mean()
    empty = torch.zeros(1, 1, 32, 32)
    assert torch.equal(metrics.nearest_pixel_fill(empty, empty), empty)  # nothing known: stays zero fill


def test_nearest_neighbour_fill_finds_the_training_digit_that_matches_the_known_pixels():
    g = torch.Generator().manual_seed(0)
    library = torch.rand(50, 1, 8, 8, generator=g) * 2 - 1
    m = masks.center_hole(3, 4, size=8)
    target = library[[7, 21, 42]].clone()
    target[:, :, 2:6, 2:6] = 0.3  # the hole differs, the known pixels match exactly
    out = metrics.nearest_neighbour_fill(m * target, m, library)
    assert torch.equal(out * m, target * m)
    assert torch.equal(out[:, :, 2:6, 2:6], library[[7, 21, 42]][:, :, 2:6, 2:6])
    with pytest.raises(ValueError, match="library"):
        metrics.nearest_neighbour_fill(m * target, m, torch.zeros(5, 1, 4, 4))


def test_ssim():
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    m = masks.center_hole(2, 6, size=16)
    assert torch.allclose(metrics.ssim_on_mask(x, x, m), torch.ones(2))
    noisy = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    worse = (x + 0.8 * torch.randn_like(x)).clamp(-1, 1)
    assert metrics.ssim_on_mask(worse, x, m).mean() < metrics.ssim_on_mask(noisy, x, m).mean() < 1
    assert torch.allclose(metrics.ssim_map(noisy, x), metrics.ssim_map(x, noisy), atol=1e-6)  # symmetric
    with pytest.raises(ValueError, match="missing pixel"):
        metrics.ssim_on_mask(x, x, torch.ones_like(x))


def test_evaluate_center_hole_reports_the_contract_keys():
    from course_utils import config, models

    torch.manual_seed(0)
    cfg = config.center_hole_config("ci")
    net = models.UNet(cfg.base_channels, cfg.channel_mults, coord_conv=True).eval()
    images = torch.rand(6, 1, 32, 32) * 2 - 1
    res, samples = metrics.evaluate_center_hole(net, cfg, images, images.flip(0), steps=3, k=2, progress=False)
    assert samples.shape == (2, 6, 1, 32, 32)
    for key in ("hole_psnr", "hole_l1", "ssim"):
        assert set(res[key]) == {"single", "mean_k"}
        for base in ("zero_fill", "nearest_neighbour"):
            assert isinstance(res["baselines"][base][key], float)
    assert res["known_pixels_max_abs_error"] == 0.0
    assert res["n_images"] == 6 and res["seconds_per_image"] > 0
    mean = samples.mean(0)
    assert res["hole_psnr"]["mean_k"] == pytest.approx(metrics.psnr_on_mask(mean, images, masks.center_hole(6)).mean().item())
    with pytest.raises(ValueError, match="k must"):
        metrics.evaluate_center_hole(net, cfg, images, images, steps=3, k=0)
