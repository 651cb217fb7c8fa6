"""Classical baselines: each on a case whose answer is known, or against a reference library."""

import numpy as np
import pytest
import torch

from course_utils import baselines, masks, metrics, tasks


def test_zero_fill_is_the_observation():
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    m = masks.sparse_pixels(2, 0.5, size=8, seed=0)
    z = baselines.zero_fill(m * x, m)
    assert torch.equal(z, m * x) and torch.all(z[m == 0] == 0)


def test_nearest_fill_copies_the_closest_known_pixel():
    y = torch.zeros(1, 1, 1, 5)
    m = torch.tensor([[[[1.0, 0, 0, 0, 1]]]])
    y[0, 0, 0, 0], y[0, 0, 0, 4] = -1.0, 1.0
    out = baselines.nearest_pixel_fill(y * m, m)
    # pixel 2 is equidistant: ties go to the lower index (pixel 0)
    assert out.flatten().tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0]


def test_nearest_fill_keeps_known_and_beats_zero_fill_on_smooth_images():
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    x = (0.5 * (yy + xx)).expand(70, 1, 32, 32).contiguous()  # > 64 images: exercises chunking
    m = masks.sparse_pixels(70, 0.5, seed=1)
    nn_fill = baselines.nearest_pixel_fill(m * x, m)
    assert torch.equal(nn_fill[m == 1], x[m == 1])
    assert metrics.l1_on_mask(nn_fill, x, m).mean() < metrics.l1_on_mask(baselines.zero_fill(m * x, m), x, m).mean()
    empty = torch.zeros(1, 1, 32, 32)
    assert torch.equal(baselines.nearest_pixel_fill(empty, empty), empty)  # nothing known: stays zero fill


def test_nearest_neighbour_fill_finds_the_training_digit_that_matches_the_known_pixels():
    g = torch.Generator().manual_seed(0)
    library = torch.rand(50, 1, 8, 8, generator=g) * 2 - 1
    m = masks.center_hole(3, 4, size=8)
    target = library[[7, 21, 42]].clone()
    target[:, :, 2:6, 2:6] = 0.3  # the hole differs, the known pixels match exactly
    out = baselines.nearest_neighbour_fill(m * target, m, library)
    assert torch.equal(out * m, target * m)
    assert torch.equal(out[:, :, 2:6, 2:6], library[[7, 21, 42]][:, :, 2:6, 2:6])
    with pytest.raises(ValueError, match="library"):
        baselines.nearest_neighbour_fill(m * target, m, torch.zeros(5, 1, 4, 4))


def ramp(n=2, size=32):
    return torch.linspace(-1, 1, size).view(1, 1, 1, size).expand(n, 1, size, size).contiguous()


def test_harmonic_fills_a_linear_ramp_exactly():
    x = ramp()
    for m in (masks.center_hole(2, 12), masks.center_hole(2, 20)):
        out = baselines.harmonic_fill(m * x, m)
        assert torch.allclose(out, x, atol=1e-5)
    # a plane in both directions too
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    plane = (0.3 * yy - 0.6 * xx).expand(1, 1, 32, 32).contiguous()
    m = masks.center_hole(1, 16)
    assert torch.allclose(baselines.harmonic_fill(m * plane, m), plane, atol=1e-5)


def test_harmonic_keeps_known_pixels_and_obeys_the_maximum_principle():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 32, 32, generator=g) * 2 - 1
    m = masks.procedural_masks(4, 0.5, seed=1)
    out = baselines.harmonic_fill(m * x, m)
    assert torch.equal(out * m, x * m)
    for i in range(4):
        known = x[i][m[i] == 1]
        assert out[i].min() >= known.min() - 1e-6 and out[i].max() <= known.max() + 1e-6
        # each missing pixel is the mean of its neighbours inside the image (Laplace's equation)
        o = out[i, 0].double()
        padded_sum = torch.nn.functional.conv2d(o[None, None], baselines._NEIGHBOURS.double(), padding=1)[0, 0]
        deg = torch.nn.functional.conv2d(torch.ones(1, 1, 32, 32, dtype=torch.float64), baselines._NEIGHBOURS.double(),
                                         padding=1)[0, 0]
        residual = (deg * o - padded_sum)[m[i, 0] == 0]
        assert residual.abs().max() < 1e-4
    empty = torch.zeros(1, 1, 32, 32)
    assert torch.equal(baselines.harmonic_fill(empty, empty), empty)  # nothing known: zero fill


def test_harmonic_agrees_with_scipys_sparse_solver():
    sp = pytest.importorskip("scipy.sparse")
    spl = pytest.importorskip("scipy.sparse.linalg")
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 1, 32, 32, generator=g) * 2 - 1
    m = masks.brush_strokes(1, seed=3)
    ours = baselines.harmonic_fill(m * x, m, tol=1e-12)[0, 0].double().numpy()
    known, y = m[0, 0].numpy() == 1, (m * x)[0, 0].double().numpy()
    unknown = np.argwhere(~known)
    index = -np.ones((32, 32), dtype=int)
    index[~known] = np.arange(len(unknown))
    a = sp.lil_matrix((len(unknown), len(unknown)))
    b = np.zeros(len(unknown))
    for k, (r, c) in enumerate(unknown):
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < 32 and 0 <= cc < 32:
                a[k, k] += 1
                if known[rr, cc]:
                    b[k] += y[rr, cc]
                else:
                    a[k, index[rr, cc]] -= 1
    reference = spl.spsolve(a.tocsr(), b)
    assert np.abs(ours[~known] - reference).max() < 1e-6


def test_measurement_baselines():
    x = ramp(3)
    small = tasks.lowres_measure(x, 4)
    up = baselines.bicubic(small)
    assert up.shape == x.shape and up.min() >= -1 and up.max() <= 1
    # a constant stays constant, and on a smooth ramp bicubic beats repeating each low-resolution pixel
    assert torch.allclose(baselines.bicubic(torch.full((1, 1, 8, 8), 0.4)), torch.full((1, 1, 32, 32), 0.4), atol=1e-6)
    blocky = tasks.upsample_nearest(small)
    assert (up - x)[..., 4:-4].abs().mean() < 0.5 * (blocky - x)[..., 4:-4].abs().mean()
    coeffs = torch.fft.fft2(x)
    assert torch.allclose(baselines.zero_filled_ifft(coeffs), x, atol=1e-5)  # nothing missing: exact
    obs = tasks.parse_task("kspace:0.25").observe(x, 0)
    assert torch.allclose(baselines.zero_filled_ifft(obs.raw["kspace"]), obs.y.clamp(-1, 1), atol=1e-6)
    assert torch.equal(baselines.observation(torch.tensor([[[[-3.0, 0.5, 2.0]]]])), torch.tensor([[[[-1.0, 0.5, 1.0]]]]))


def test_smoothing_denoises_and_its_width_is_chosen_on_training_digits():
    from course_utils import data

    library = data.load_mnist("train").images[:300]
    digits = data.load_mnist("test").images[:100]
    task = tasks.parse_task("noise:0.5")
    sigma = baselines.choose_smoothing_sigma(task, library)
    assert sigma in baselines.SMOOTHING_SIGMAS
    obs = task.observe(digits, 1)
    zero = torch.zeros_like(digits)
    noisy = metrics.psnr_on_mask(baselines.observation(obs.y), digits, zero).mean()
    smooth = metrics.psnr_on_mask(baselines.smoothing(obs.y, sigma), digits, zero).mean()
    assert smooth > noisy + 1.0  # smoothing must actually denoise


def test_baseline_registry_fits_the_right_tasks():
    assert baselines.baselines_for("center:12") == ["zero_fill", "nearest_pixel", "nearest_neighbour", "harmonic"]
    assert baselines.baselines_for("noise:0.5") == ["observation", "smoothing"]
    assert baselines.baselines_for("lowres:4") == ["observation", "bicubic"]
    assert baselines.baselines_for("blur:1.5") == ["observation"]
    assert baselines.baselines_for("kspace:0.25") == ["zero_filled_ifft"]
    with pytest.raises(ValueError, match="does not fit"):
        baselines.get_baseline("harmonic", "noise:0.5")
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.get_baseline("magic")
