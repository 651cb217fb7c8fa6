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
    assert torch.all(metrics.hole_l1(pred, x, m) == 0)
    assert torch.all(metrics.hole_psnr(pred, x, m) == 100.0)  # MSE floored at 1e-10


def test_hole_metric_values():
    x = torch.full((1, 1, 4, 4), -1.0)  # 0 in [0, 1]
    m = torch.ones_like(x)
    m[0, 0, 0, :2] = 0  # two missing pixels
    pred = x.clone()
    pred[0, 0, 0, 0] = 0.0  # 0.5 in [0, 1]: error 0.5 on one of the two
    assert metrics.hole_l1(pred, x, m).item() == pytest.approx(0.25)
    assert metrics.hole_mse(pred, x, m).item() == pytest.approx(0.125)
    assert metrics.hole_psnr(pred, x, m).item() == pytest.approx(10 * math.log10(1 / 0.125))


def test_psnr_is_averaged_per_image():
    x = torch.full((2, 1, 2, 2), -1.0)
    m = torch.zeros_like(x)
    pred = x.clone()
    pred[0] = 1.0  # image 0 entirely wrong (MSE 1 -> 0 dB); image 1 has MSE 0.25 -> 6.02 dB
    pred[1] = 0.0
    psnr = metrics.hole_psnr(pred, x, m)
    assert psnr[0].item() == pytest.approx(0.0)
    assert psnr[1].item() == pytest.approx(10 * math.log10(4))
    assert metrics.hole_metrics(pred, x, m)["hole_psnr"] == pytest.approx(psnr.mean().item())


def test_metric_errors():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="at least one missing"):
        metrics.hole_l1(x, x, torch.ones_like(x))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        metrics.hole_l1(x * 0 + 255, x, torch.zeros_like(x))
    with pytest.raises(ValueError, match="image's shape"):
        metrics.hole_psnr(x, x, torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError):
        metrics.hole_l1(torch.zeros(1, 1, 2, 2), x, torch.zeros_like(x))


def test_zero_fill_is_the_observation():
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    m = masks.random_dropout(2, 0.5, size=8, seed=0)
    z = metrics.zero_fill(m * x, m)
    assert torch.equal(z, m * x) and torch.all(z[m == 0] == 0)


def test_nearest_fill_copies_the_closest_known_pixel():
    y = torch.zeros(1, 1, 1, 5)
    m = torch.tensor([[[[1.0, 0, 0, 0, 1]]]])
    y[0, 0, 0, 0], y[0, 0, 0, 4] = -1.0, 1.0
    out = metrics.nearest_fill(y * m, m)
    # pixel 2 is equidistant: ties go to the lower index (pixel 0)
    assert out.flatten().tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0]


def test_nearest_fill_keeps_known_and_beats_zero_fill_on_smooth_images():
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    x = (0.5 * (yy + xx)).expand(70, 1, 32, 32).contiguous()  # > 64 images: exercises chunking
    m = masks.random_dropout(70, 0.5, seed=1)
    nn_fill = metrics.nearest_fill(m * x, m)
    assert torch.equal(nn_fill[m == 1], x[m == 1])
    assert metrics.hole_l1(nn_fill, x, m).mean() < metrics.hole_l1(metrics.zero_fill(m * x, m), x, m).mean()
    empty = torch.zeros(1, 1, 32, 32)
    assert torch.equal(metrics.nearest_fill(empty, empty), empty)  # nothing known: stays zero fill
