import pytest
import torch

from course_utils import diffusion, masks, schedules


@pytest.fixture
def sch():
    return schedules.make_schedule("cosine", 1000)


def oracle(x0, sch):
    """An eps-predictor that knows x0: eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab)."""

    def eps_model(x_t, t, mask, y):
        ab = schedules.at(sch.alpha_bars, t, x_t)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    return eps_model


def test_predict_x0_inverts_q_sample(sch):
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 10, 500, 998])
    x_t = schedules.q_sample(x0, t, sch, eps)
    assert torch.allclose(diffusion.predict_x0(x_t, t, eps, sch), x0, atol=1e-3)


def test_posterior_reduces_to_ddpm_eq7(sch):
    x0, x_t = torch.randn(1, 1, 4, 4), torch.randn(1, 1, 4, 4)
    t = 400
    ab_t, ab_prev = sch.alpha_bars[t].item(), sch.alpha_bars[t - 1].item()
    beta, alpha = sch.betas[t].item(), sch.alphas[t].item()
    mean, var = diffusion.posterior(x0, x_t, t, t - 1, sch)
    eq7_mean = ab_prev**0.5 * beta / (1 - ab_t) * x0 + alpha**0.5 * (1 - ab_prev) / (1 - ab_t) * x_t
    assert torch.allclose(mean, eq7_mean, atol=1e-6)
    assert var == pytest.approx((1 - ab_prev) / (1 - ab_t) * beta)


def test_posterior_is_consistent_with_the_forward_marginals(sch):
    """If x0 is fixed and x_t ~ q(x_t | x0), then x_s ~ posterior has the marginal q(x_s | x0) (any s < t)."""
    t, s = 700, 350
    x0 = torch.full((20000, 1, 1, 1), 0.3)
    g = torch.Generator().manual_seed(0)
    x_t = schedules.q_sample(x0, t, sch, torch.randn(x0.shape, generator=g))
    mean, var = diffusion.posterior(x0, x_t, t, s, sch)
    x_s = mean + var**0.5 * torch.randn(x0.shape, generator=g)
    ab_s = sch.alpha_bars[s].item()
    assert x_s.mean().item() == pytest.approx(ab_s**0.5 * 0.3, abs=0.02)
    assert x_s.var().item() == pytest.approx(1 - ab_s, abs=0.03)


def test_posterior_errors(sch):
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError):
        diffusion.posterior(x, x, 10, 10, sch)
    with pytest.raises(ValueError):
        diffusion.posterior(x, x, 1000, 5, sch)


def test_sampling_timesteps():
    assert diffusion.sampling_timesteps(1000, 1000) == list(range(999, -1, -1))
    ts = diffusion.sampling_timesteps(1000, 10)
    assert ts[0] == 999 and ts[-1] == 0 and len(set(ts)) == 10 and ts == sorted(ts, reverse=True)
    assert diffusion.sampling_timesteps(1000, 1) == [999]
    with pytest.raises(ValueError):
        diffusion.sampling_timesteps(10, 11)


@pytest.mark.parametrize("steps", [1000, 50])
def test_oracle_sampler_walks_the_forward_marginals(sch, steps):
    """With a perfect denoiser every x_t of the chain is a draw from q(x_t | x0) (the posterior step keeps the
    marginals), and the last step returns x0. A wrong posterior mean or variance breaks the first check even though
    the last step would still return x0."""
    x0 = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    m = masks.center_hole(4, hole=12)
    trace = []
    out = diffusion.ddpm_sample(oracle(x0, sch), m * x0, m, sch, steps=steps, generator=torch.Generator().manual_seed(0),
                                trajectory=trace)
    assert torch.allclose(out, x0, atol=1e-3)
    for t, x_t, _ in trace[1:]:  # every state the sampler produced (the first is the starting noise)
        ab = sch.alpha_bars[t].item()
        z = (x_t - ab**0.5 * x0) / (1 - ab) ** 0.5  # standard normal if x_t ~ q(x_t | x0)
        assert abs(z.mean().item()) < 0.1 and abs(z.std().item() - 1) < 0.1, (t, z.mean().item(), z.std().item())


def test_replacement_keeps_known_pixels_and_is_seeded(sch):
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    m = masks.random_dropout(2, p=0.5, size=8, seed=0)
    y = m * x0
    zero_model = lambda x_t, t, mask, y: torch.zeros_like(x_t)
    run = lambda: diffusion.ddpm_sample(zero_model, y, m, sch, steps=20, replace_known=True,
                                        generator=torch.Generator().manual_seed(3))
    a, b = run(), run()
    assert torch.equal(a, b)
    assert torch.equal(a[m == 1], y[m == 1])  # known pixels exactly
    free = diffusion.ddpm_sample(zero_model, y, m, sch, steps=20, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(free[m == 1], y[m == 1])  # conditioning alone does not copy them


def test_trajectory_is_recorded(sch):
    x0 = torch.zeros(1, 1, 8, 8)
    m = masks.center_hole(1, 4, 8)
    traj = []
    diffusion.ddpm_sample(oracle(x0, sch), m * x0, m, sch, steps=5, trajectory=traj)
    assert [t for t, _, _ in traj] == diffusion.sampling_timesteps(1000, 5)
    assert traj[0][1].shape == (1, 1, 8, 8) and traj[0][2].abs().max() <= 1


def test_sampler_rejects_bad_inputs(sch):
    y = torch.zeros(2, 1, 8, 8)
    model = lambda x_t, t, mask, y: torch.zeros_like(x_t)
    with pytest.raises(ValueError, match="image's shape"):
        diffusion.ddpm_sample(model, y, torch.ones(2, 1, 4, 4), sch, steps=2)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        diffusion.ddpm_sample(model, y + 2, torch.ones_like(y), sch, steps=2)


def test_noised_known_and_posterior_samples(sch):
    y = torch.ones(1, 1, 4, 4)
    assert torch.equal(diffusion.noised_known(y, -1, sch, None), y)
    stack = diffusion.posterior_samples(lambda g: torch.randn(2, generator=g), 3, seed=10)
    assert stack.shape == (3, 2) and not torch.equal(stack[0], stack[1])
    assert torch.equal(stack, diffusion.posterior_samples(lambda g: torch.randn(2, generator=g), 3, seed=10))
    with pytest.raises(ValueError):
        diffusion.posterior_samples(lambda g: torch.zeros(1), 0, seed=0)
