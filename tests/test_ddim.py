"""DDIM, the output parameterisations and data consistency (notebook 03)."""

import math

import pytest
import torch

from course_utils import diffusion, masks, models, schedules

SCH = schedules.make_schedule("cosine", 1000)


def test_ddim_timesteps_are_evenly_spaced_from_T_minus_1():
    ts = diffusion.timesteps(1000, 50, "trailing")
    assert ts[0] == 999 and len(ts) == 50 and ts[-1] == 19
    assert all(a - b == 20 for a, b in zip(ts, ts[1:]))
    assert diffusion.timesteps(1000, 1000, "trailing") == list(range(999, -1, -1))
    assert len(set(diffusion.timesteps(1000, 30, "trailing"))) == 30
    with pytest.raises(ValueError, match="steps"):
        diffusion.timesteps(1000, 0, "trailing")


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_x0_and_eps_invert_the_forward_process(prediction):
    """With the true target as the output, x0_and_eps recovers (x0, eps) exactly."""

    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1
    eps = torch.randn(3, 1, 8, 8, generator=g)
    t = torch.tensor([10, 500, 990])
    x_t = schedules.q_sample(x0, t, SCH, eps)
    out = diffusion.diffusion_target(x0, eps, t, SCH, prediction)
    x0_hat, eps_hat = diffusion.x0_and_eps(out, x_t, t, SCH, prediction, clip_x0=False)
    assert torch.allclose(x0_hat, x0, atol=2e-3)
    assert torch.allclose(eps_hat, eps, atol=2e-3)


def test_clipping_keeps_the_pair_consistent_with_x_t():
    x_t = torch.randn(2, 1, 4, 4) * 3
    out = torch.randn(2, 1, 4, 4)
    x0, eps = diffusion.x0_and_eps(out, x_t, 300, SCH, "eps", clip_x0=True)
    ab = SCH.alpha_bars[300].item()
    assert x0.abs().max() <= 1
    assert torch.allclose(math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps, x_t, atol=1e-4)
    with pytest.raises(ValueError, match="prediction"):
        diffusion.x0_and_eps(out, x_t, 300, SCH, "score")


def test_ddim_sigma_eta_one_is_the_ddpm_posterior_std():
    t, s = 500, 480
    _, var = diffusion.posterior(torch.zeros(1), torch.zeros(1), t, s, SCH)
    assert diffusion.ddim_sigma(SCH, t, s, 1.0) == pytest.approx(math.sqrt(var), rel=1e-9)
    assert diffusion.ddim_sigma(SCH, t, s, 0.0) == 0.0
    with pytest.raises(ValueError, match="eta"):
        diffusion.ddim_sigma(SCH, t, s, -0.5)


def test_ddim_step_with_eta_one_is_the_ddpm_posterior_mean_plus_noise():
    """With eta = 1 the DDIM update is DDPM's posterior (DDIM section 4.1)."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 1, 4, 4, generator=g) * 2 - 1
    eps = torch.randn(2, 1, 4, 4, generator=g)
    t, s = 700, 650
    x_t = schedules.q_sample(x0, t, SCH, eps)
    noise = torch.randn(2, 1, 4, 4, generator=g)
    mean, var = diffusion.posterior(x0, x_t, t, s, SCH)
    assert torch.allclose(diffusion.ddim_step(x0, eps, t, s, SCH, 1.0, noise), mean + math.sqrt(var) * noise, atol=1e-5)
    assert torch.equal(diffusion.ddim_step(x0, eps, t, -1, SCH, 0.0, noise), x0)


def test_renoise_has_the_forward_moments():
    x_s = torch.full((20000, 1, 1, 1), 0.5)
    out = diffusion.renoise(x_s, 100, 400, SCH, torch.randn(x_s.shape, generator=torch.Generator().manual_seed(0)))
    ratio = (SCH.alpha_bars[400] / SCH.alpha_bars[100]).item()
    assert out.mean().item() == pytest.approx(0.5 * math.sqrt(ratio), abs=0.02)
    assert out.var().item() == pytest.approx(1 - ratio, rel=0.05)
    with pytest.raises(ValueError):
        diffusion.renoise(x_s, 400, 100, SCH, x_s)


def _toy_model(self_condition=False):
    torch.manual_seed(0)
    return models.UNet(8, (1, 2), self_condition=self_condition, coord_conv=True).eval()


@pytest.mark.parametrize("eta,dc", [(0.0, 1), (1.0, 1), (0.0, 3)])
def test_ddim_inpaint_keeps_known_pixels_exactly_and_is_seeded(eta, dc):
    x0 = torch.rand(4, 1, 32, 32) * 2 - 1
    m = masks.center_hole(4, 12)
    net = _toy_model()
    den = diffusion.Denoiser(net, SCH, "x0", (m, m * x0))
    run = lambda: diffusion.ddim_inpaint(den, m * x0, m, 5, eta, dc, torch.Generator().manual_seed(3))
    out = run()
    assert out.shape == x0.shape
    assert torch.equal(out * m, x0 * m)
    assert torch.equal(out, run())
    other_seed = diffusion.ddim_inpaint(den, m * x0, m, 5, eta, dc, torch.Generator().manual_seed(4))
    assert not torch.equal(out, other_seed)  # the seed is used: "seeded" is not "constant"
    assert out.abs().max() <= 1 + 1e-6


def test_ddim_inpaint_passes_x0_hat_to_a_self_conditioned_model():
    seen = []
    net = _toy_model(self_condition=True)
    forward = net.forward

    def spy(x, t, m, y, x0_prev=None):
        seen.append(None if x0_prev is None else x0_prev.clone())
        return forward(x, t, m, y, x0_prev)

    net.forward = spy
    x0 = torch.rand(2, 1, 32, 32) * 2 - 1
    m = masks.center_hole(2)
    diffusion.ddim_inpaint(diffusion.Denoiser(net, SCH, "eps", (m, m * x0)), m * x0, m, 3, dc_repeats=2,
                           generator=torch.Generator().manual_seed(0))
    assert len(seen) == 6  # 3 steps x 2 repeats
    assert seen[0] is None and all(s is not None for s in seen[1:])


def test_ddim_inpaint_rejects_bad_input():
    net = _toy_model()
    x = torch.zeros(2, 1, 32, 32)
    m = masks.center_hole(2)
    den = diffusion.Denoiser(net, SCH, "eps", (m, x))
    with pytest.raises(ValueError, match="dc_repeats"):
        diffusion.ddim_inpaint(den, x, m, 5, dc_repeats=0)
    with pytest.raises(ValueError, match="image's shape"):
        diffusion.ddim_inpaint(den, x, masks.center_hole(3), 5)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        diffusion.ddim_inpaint(den, x + 3, m, 5)
