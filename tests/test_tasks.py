"""Degradation tasks: specs, shapes, seeding, and the measured missing fraction or noise level."""

import math

import pytest
import torch

from course_utils import data, tasks

ALL = ["center:12", "center:16", "rect", "strokes", "procedural:0.05-0.6", "sparse:0.1", "sparse:0.05-0.2",
       "noise:0.5", "noise:0.3-1.0", "lowres:4", "blur:1.5", "kspace:0.25"]


@pytest.fixture(scope="module")
def digits():
    return data.load_mnist("test").images[:200]


@pytest.mark.parametrize("spec", ALL)
def test_every_task_is_shaped_seeded_and_batched(spec, digits):
    task = tasks.parse_task(spec)
    a, b, c = task.observe(digits, 7), task.observe(digits, 7), task.observe(digits, 8)
    assert a.y.shape == digits.shape and a.mask.shape == digits.shape and len(a) == len(digits)
    assert torch.equal(a.y, b.y) and torch.equal(a.mask, b.mask)  # same seed, same observation
    if spec not in ("center:12", "center:16", "lowres:4", "blur:1.5"):  # the deterministic ones
        assert not torch.equal(a.y, c.y)
    part = a[3:5]
    assert torch.equal(part.y, a.y[3:5]) and all(torch.equal(part.raw[k], a.raw[k][3:5]) for k in a.raw)
    if task.is_mask_task:
        assert task.region == "missing"
        assert torch.equal(a.y, a.mask * digits)  # y = m * x0, 1 = known
        assert set(a.mask.unique().tolist()) <= {0.0, 1.0} and (a.mask == 0).any()
    else:
        assert task.region == "image" and torch.all(a.mask == 0)  # no pixel is known exactly


def test_parse_gives_canonical_specs():
    assert tasks.parse_task(" Center:12 ").spec == "center:12"
    assert tasks.parse_task("noise:0.30-1.0").spec == "noise:0.3-1"
    assert tasks.parse_task("procedural:0.05-0.6").value == (0.05, 0.6)
    assert tasks.parse_task("sparse:0.1").value == (0.1, 0.1)
    assert tasks.parse_task("noise:5e-1").spec == "noise:0.5"  # a number in exponent form is not a range
    task = tasks.parse_task("rect")
    assert tasks.parse_task(task) is task


@pytest.mark.parametrize("bad", ["", "foo", "center", "center:0", "center:32", "center:12.5", "rect:3", "lowres:3",
                                 "noise:0", "noise:-1", "noise:abc", "sparse:1", "sparse:0.5-0.2", "procedural:0.01-0.5",
                                 "kspace:1.2", "kspace:0.1-0.3", "blur:0"])
def test_bad_specs_list_the_valid_forms(bad):
    with pytest.raises(tasks.TaskSpecError) as err:
        tasks.parse_task(bad)
    message = str(err.value)
    assert "Valid forms" in message and "center:N" in message and "kspace:P" in message


def test_mask_tasks_hit_their_missing_fraction(digits):
    center = tasks.parse_task("center:16").observe(digits, 0).mask
    assert torch.all(1 - center.mean((1, 2, 3)) == 256 / 1024)
    sparse = tasks.parse_task("sparse:0.1").observe(digits, 0).mask
    assert sparse.mean().item() == pytest.approx(0.1, abs=0.005)  # 200 x 1024 Bernoulli(0.1): sd 0.0007
    ranged = tasks.parse_task("sparse:0.05-0.2").observe(digits, 0).mask.mean((1, 2, 3))
    assert ranged.min() > 0.03 and ranged.max() < 0.22 and ranged.mean().item() == pytest.approx(0.125, abs=0.01)
    proc = 1 - tasks.parse_task("procedural:0.05-0.6").observe(digits, 0).mask.mean((1, 2, 3))
    assert proc.min() >= 0.05 - 0.002 and proc.max() <= 0.6 + 0.002 and proc.std() > 0.1
    for spec in ("rect", "strokes"):
        missing = 1 - tasks.parse_task(spec).observe(digits, 0).mask.mean((1, 2, 3))
        assert torch.all(missing > 0) and missing.mean() < 0.5


def test_noise_has_the_stated_sigma(digits):
    obs = tasks.parse_task("noise:0.5").observe(digits, 0)
    residual = obs.y - digits
    assert residual.std().item() == pytest.approx(0.5, rel=0.02) and abs(residual.mean().item()) < 0.01
    ranged = tasks.parse_task("noise:0.3-1.0").observe(digits, 0).y - digits
    per_image = ranged.flatten(1).std(dim=1)
    assert per_image.min() > 0.25 and per_image.max() < 1.05


def test_lowres_is_block_averages_shown_with_nearest_neighbours(digits):
    obs = tasks.parse_task("lowres:4").observe(digits, 0)
    small = obs.raw["small"]
    assert small.shape == (len(digits), 1, 8, 8)
    assert torch.allclose(small[0, 0, 2, 3], digits[0, 0, 8:12, 12:16].mean())
    assert torch.all(obs.y[:, :, 8:12, 12:16] == small[:, :, 2:3, 3:4])
    assert torch.allclose(obs.y.mean((1, 2, 3)), digits.mean((1, 2, 3)), atol=1e-5)  # averaging keeps the mean


def test_blur_keeps_constants_and_its_kernel_has_the_stated_sigma():
    flat = torch.full((2, 1, 32, 32), 0.3)
    assert torch.allclose(tasks.gaussian_blur(flat, 1.5), flat, atol=1e-6)
    k = tasks.gaussian_kernel1d(1.5)
    x = torch.arange(k.numel()) - k.numel() // 2
    assert k.sum().item() == pytest.approx(1.0) and math.sqrt((k * x**2).sum()) == pytest.approx(1.5, rel=0.01)
    point = torch.full((1, 1, 32, 32), 0.0)
    point[0, 0, 16, 16] = 1.0
    blurred = tasks.gaussian_blur(point, 1.5)
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5) and blurred.max() < 0.1
    with pytest.raises(ValueError, match="positive"):
        tasks.gaussian_kernel1d(0)


def test_kspace_keeps_the_fraction_the_lowest_frequencies_and_a_real_image(digits):
    obs = tasks.parse_task("kspace:0.25").observe(digits, 0)
    kmask = obs.raw["kmask"]
    kept = kmask.mean((1, 2, 3))
    assert torch.all((kept - 0.25).abs() <= 1 / 1024)  # round(0.25 * 1024) coefficients, or one less
    freq = tasks.kspace_frequencies(32)
    assert torch.all(kmask[:, 0][:, freq <= 3]) == 1  # the centre of k-space is always acquired
    assert not torch.equal(kmask[0], kmask[1])  # the rest is random per image
    assert torch.equal(kmask, torch.flip(torch.roll(kmask, (-1, -1), (2, 3)), (2, 3)))  # symmetric under k -> -k
    assert torch.fft.ifft2(obs.raw["kspace"]).imag.abs().max() < 1e-5  # so the zero-filled image is real
    assert torch.allclose(obs.y, torch.fft.ifft2(torch.fft.fft2(digits) * kmask).real, atol=1e-5)
    assert torch.allclose(obs.y.mean((1, 2, 3)), digits.mean((1, 2, 3)), atol=1e-5)  # DC kept: the mean is exact


def test_observe_rejects_bad_images():
    task = tasks.parse_task("center:12")
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        task.observe(torch.full((1, 1, 32, 32), 5.0))
    with pytest.raises(ValueError, match="32 x 32"):
        task.observe(torch.zeros(1, 1, 28, 28))
