"""Our schedules and DDPM posterior against diffusers' DDPMScheduler (the reference implementation).

diffusers indexes timesteps 0..T-1 exactly as the course does, so the tables must agree.
"""

import pytest
import torch

from course_utils import diffusion, schedules

diffusers = pytest.importorskip("diffusers", reason="diffusers is the reference; install the dev extras")

MAPPING = {"linear": "linear", "quadratic": "scaled_linear", "cosine": "squaredcos_cap_v2"}


def reference(name, T=1000, **kw):
    return diffusers.DDPMScheduler(
        num_train_timesteps=T, beta_schedule=MAPPING[name], beta_start=1e-4, beta_end=0.02, clip_sample=False, **kw
    )


@pytest.mark.parametrize("name", list(MAPPING))
def test_schedules_match_diffusers(name):
    ours = schedules.make_schedule(name, 1000)
    ref = reference(name)
    # diffusers builds the betas in float32, ours are float64
    assert torch.allclose(ours.betas.float(), ref.betas, rtol=1e-5, atol=1e-8)
    assert torch.allclose(ours.alpha_bars.float(), ref.alphas_cumprod, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", list(MAPPING))
def test_ddpm_step_matches_diffusers(name):
    """One ancestral step with every timestep (s = t - 1): same posterior mean, same variance."""
    ours = schedules.make_schedule(name, 1000)
    ref = reference(name, variance_type="fixed_small")
    ref.set_timesteps(1000)
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(2, 1, 8, 8, generator=g)
    eps = torch.randn(2, 1, 8, 8, generator=g)
    for t in [999, 600, 250, 10, 1]:
        # diffusers: prev_sample = mean + sigma * z, with z drawn from the generator we pass
        out = ref.step(eps, t, x_t, generator=torch.Generator().manual_seed(5))
        x0_hat = diffusion.x0_and_eps(eps, x_t, t, ours, "eps", clip_x0=False)[0]
        assert torch.allclose(x0_hat, out.pred_original_sample, rtol=1e-4, atol=1e-4)
        mean, var = diffusion.posterior(x0_hat, x_t, t, t - 1, ours)
        ref_var = ref._get_variance(t)
        # near t = 0, 1 - alpha_bar is ~1e-4 and diffusers' float32 loses ~3 digits there
        assert var == pytest.approx(ref_var.item(), rel=2e-3)
        z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(5))
        assert torch.allclose(mean + var**0.5 * z, out.prev_sample, rtol=1e-4, atol=1e-4)


def test_last_step_is_the_mean():
    ours = schedules.make_schedule("cosine", 1000)
    ref = reference("cosine")
    ref.set_timesteps(1000)
    x_t, eps = torch.randn(1, 1, 4, 4), torch.randn(1, 1, 4, 4)
    out = ref.step(eps, 0, x_t)
    x0_hat = diffusion.x0_and_eps(eps, x_t, 0, ours, "eps", clip_x0=False)[0]
    mean, var = diffusion.posterior(x0_hat, x_t, 0, -1, ours)
    assert var == 0 and torch.allclose(mean, out.prev_sample, atol=1e-5)


def ddim_reference(T=1000):
    return diffusers.DDIMScheduler(
        num_train_timesteps=T, beta_schedule="squaredcos_cap_v2", clip_sample=False, set_alpha_to_one=True,
        timestep_spacing="trailing", prediction_type="epsilon",
    )


@pytest.mark.parametrize("steps", [10, 25, 50, 100])
def test_ddim_timesteps_match_diffusers_trailing(steps):
    ref = ddim_reference()
    ref.set_timesteps(steps)
    assert diffusion.timesteps(1000, steps, "trailing") == ref.timesteps.tolist()


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_update_matches_diffusers(eta):
    """Whole DDIM chains on the same (fake) model outputs: every intermediate x_s agrees with diffusers."""
    ours = schedules.make_schedule("cosine", 1000)
    ref = ddim_reference()
    steps = 20
    ref.set_timesteps(steps)
    g = torch.Generator().manual_seed(0)
    x_ours = torch.randn(2, 1, 8, 8, generator=g)
    x_ref = x_ours.clone()
    ts = diffusion.timesteps(1000, steps, "trailing")
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < len(ts) else -1
        eps = torch.tanh(x_ours) * 0.5 + 0.1 * t / 1000  # a smooth stand-in for a network
        noise = torch.randn(x_ours.shape, generator=g)
        x0_hat, eps_hat = diffusion.x0_and_eps(eps, x_ours, t, ours, "eps", clip_x0=False)
        x_ours = diffusion.ddim_step(x0_hat, eps_hat, t, s, ours, eta, noise)
        x_ref = ref.step(torch.tanh(x_ref) * 0.5 + 0.1 * t / 1000, t, x_ref, eta=eta, variance_noise=noise).prev_sample
        assert torch.allclose(x_ours, x_ref, rtol=1e-3, atol=1e-3), f"t={t}: {(x_ours - x_ref).abs().max()}"


def test_ddim_sigma_matches_diffusers_variance():
    ours = schedules.make_schedule("cosine", 1000)
    ref = ddim_reference()
    ref.set_timesteps(50)
    ts = diffusion.timesteps(1000, 50, "trailing")
    for t, s in zip(ts[:-1], ts[1:]):
        assert diffusion.ddim_sigma(ours, t, s, 1.0) ** 2 == pytest.approx(ref._get_variance(t, s).item(), rel=1e-3)


@pytest.mark.parametrize("steps", [2, 10, 37, 250])
def test_linspace_timesteps_match_diffusers(steps):
    """Notebook 02's DDPM walks diffusers' ``timestep_spacing="linspace"`` (for one step diffusers' linspace is [0],
    a single step from nearly clean data; ours starts from noise at T-1)."""
    ref = reference("cosine", timestep_spacing="linspace")
    ref.set_timesteps(steps)
    assert diffusion.timesteps(1000, steps, "linspace") == ref.timesteps.tolist()
