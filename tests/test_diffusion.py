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


def ddpm_sample(net, y, m, sch, **kwargs):
    """Notebook 02's sampler on a network that reads (x_t, t, mask, y) as eps."""
    return diffusion.ddpm_sample(diffusion.Denoiser(net, sch, "eps", (m, y)), y, m, **kwargs)


def test_x0_from_eps_inverts_q_sample(sch):
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 10, 500, 998])
    x_t = schedules.q_sample(x0, t, sch, eps)
    assert torch.allclose(diffusion.x0_and_eps(eps, x_t, t, sch, "eps", clip_x0=False)[0], x0, atol=1e-3)


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
    assert diffusion.timesteps(1000, 1000, "linspace") == list(range(999, -1, -1))
    ts = diffusion.timesteps(1000, 10, "linspace")
    assert ts[0] == 999 and ts[-1] == 0 and len(set(ts)) == 10 and ts == sorted(ts, reverse=True)
    assert diffusion.timesteps(1000, 1, "linspace") == [999]
    with pytest.raises(ValueError):
        diffusion.timesteps(10, 11, "linspace")


@pytest.mark.parametrize("steps", [1000, 50])
def test_oracle_sampler_walks_the_forward_marginals(sch, steps):
    """With a perfect denoiser every x_t of the chain is a draw from q(x_t | x0) (the posterior step keeps the
    marginals), and the last step returns x0. A wrong posterior mean or variance breaks the first check even though
    the last step would still return x0."""
    x0 = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    m = masks.center_hole(4, hole=12)
    trace = []
    out = ddpm_sample(oracle(x0, sch), m * x0, m, sch, steps=steps, generator=torch.Generator().manual_seed(0),
                                trajectory=trace)
    assert torch.allclose(out, x0, atol=1e-3)
    for t, x_t, _ in trace[1:]:  # every state the sampler produced (the first is the starting noise)
        ab = sch.alpha_bars[t].item()
        z = (x_t - ab**0.5 * x0) / (1 - ab) ** 0.5  # standard normal if x_t ~ q(x_t | x0)
        assert abs(z.mean().item()) < 0.1 and abs(z.std().item() - 1) < 0.1, (t, z.mean().item(), z.std().item())


def test_replacement_keeps_known_pixels_and_is_seeded(sch):
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    m = masks.sparse_pixels(2, 0.5, size=8, seed=0)
    y = m * x0
    zero_model = lambda x_t, t, mask, y: torch.zeros_like(x_t)
    run = lambda: ddpm_sample(zero_model, y, m, sch, steps=20, replace_known=True,
                                        generator=torch.Generator().manual_seed(3))
    a, b = run(), run()
    assert torch.equal(a, b)
    other_seed = ddpm_sample(zero_model, y, m, sch, steps=20, replace_known=True,
                                       generator=torch.Generator().manual_seed(4))
    assert not torch.equal(a, other_seed)  # the seed is used: "seeded" is not "constant"
    assert torch.equal(a[m == 1], y[m == 1])  # known pixels exactly
    free = ddpm_sample(zero_model, y, m, sch, steps=20, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(free[m == 1], y[m == 1])  # conditioning alone does not copy them


def test_trajectory_is_recorded(sch):
    x0 = torch.zeros(1, 1, 8, 8)
    m = masks.center_hole(1, 4, 8)
    traj = []
    ddpm_sample(oracle(x0, sch), m * x0, m, sch, steps=5, trajectory=traj)
    assert [t for t, _, _ in traj] == diffusion.timesteps(1000, 5, "linspace")
    assert traj[0][1].shape == (1, 1, 8, 8) and traj[0][2].abs().max() <= 1


def test_sampler_rejects_bad_inputs(sch):
    y = torch.zeros(2, 1, 8, 8)
    model = lambda x_t, t, mask, y: torch.zeros_like(x_t)
    with pytest.raises(ValueError, match="image's shape"):
        ddpm_sample(model, y, torch.ones(2, 1, 4, 4), sch, steps=2)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        ddpm_sample(model, y + 2, torch.ones_like(y), sch, steps=2)


def test_noised_known(sch):
    y = torch.ones(1, 1, 4, 4)
    assert torch.equal(diffusion.noised_known(y, -1, sch, None), y)
    z = torch.randn(1, 1, 4, 4)
    ab = sch.alpha_bars[500].item()
    assert torch.allclose(diffusion.noised_known(y, 500, sch, None, z), ab**0.5 * y + (1 - ab) ** 0.5 * z)


# --- The sampling contract: denoiser, named timesteps, step, consistency rule, one loop. ---


def test_timesteps_name_their_spacing():
    assert diffusion.timesteps(1000, 10, "linspace")[-1] == 0  # ends at 0, then one step to the clean image
    assert diffusion.timesteps(1000, 10, "trailing") == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert diffusion.timesteps(1000, 1000, "trailing") == diffusion.timesteps(1000, 1000, "linspace")
    with pytest.raises(ValueError, match="spacing"):
        diffusion.timesteps(1000, 10, "backwards")


def test_denoiser_passes_its_condition_and_reads_its_prediction(sch):
    seen = {}

    def net(x_t, t, *condition):
        seen["condition"], seen["t"] = condition, t
        return torch.zeros_like(x_t)

    x_t = torch.randn(2, 1, 4, 4)
    c = torch.ones(2, 1, 4, 4)
    x0_hat, eps_hat = diffusion.Denoiser(net, sch, "x0", (c,))(x_t, 300)
    assert seen["condition"] == (c,) and seen["t"].tolist() == [300, 300]
    assert torch.equal(x0_hat, torch.zeros_like(x_t))  # an x0 network's output is x0_hat
    x0_eps, _ = diffusion.Denoiser(net, sch, "eps")(x_t, 300)
    assert seen["condition"] == () and torch.allclose(x0_eps, (x_t / sch.alpha_bars[300].sqrt()).float().clamp(-1, 1))
    with pytest.raises(ValueError, match="prediction"):
        diffusion.Denoiser(net, sch, "score")


def test_self_conditioned_network_gets_the_previous_x0_hat(sch):
    calls = []

    class Net(torch.nn.Module):
        self_condition = True

        def forward(self, x_t, t, x0_prev):
            calls.append(None if x0_prev is None else x0_prev.clone())
            return torch.full_like(x_t, 0.5)

    diffusion.sample(diffusion.Denoiser(Net(), sch, "x0"), torch.zeros(1, 1, 4, 4), [999, 500, 0],
                     generator=torch.Generator().manual_seed(0))
    assert calls[0] is None and torch.equal(calls[1], torch.full((1, 1, 4, 4), 0.5))


@pytest.mark.parametrize("step", ["ddpm", "ddim"])
def test_sample_calls_the_network_once_per_timestep_and_repeat(sch, step):
    calls = []

    def net(x_t, t):
        calls.append(int(t[0]))
        return torch.zeros_like(x_t)

    ts = diffusion.timesteps(1000, 6, "trailing")
    out = diffusion.sample(diffusion.Denoiser(net, sch, "eps"), torch.zeros(2, 1, 4, 4), ts, step, repeats=3,
                           generator=torch.Generator().manual_seed(1))
    assert out.shape == (2, 1, 4, 4)
    assert calls == [t for t in ts for _ in range(3)]


def test_a_walk_up_renoises_without_a_network_call(sch):
    calls = []

    def net(x_t, t):
        calls.append(int(t[0]))
        return torch.zeros_like(x_t)

    diffusion.sample(diffusion.Denoiser(net, sch, "eps"), torch.zeros(1, 1, 4, 4), [999, 500, 700, 300, 0],
                     generator=torch.Generator().manual_seed(0))
    assert calls == [999, 700, 300, 0]  # 500 -> 700 is forward noising
    assert diffusion.repeated([9, 5], 2) == [9, 5, 9, 5, -1, 5, -1]
    assert diffusion.repeated([9, 5, -1]) == [9, 5, -1]


def test_ddim_inpaint_is_the_loop_with_replacement(sch):
    """The named sampler equals the loop put together by hand, draw for draw; without a rule the known pixels
    are not kept, with Replacement they are kept exactly."""
    torch.manual_seed(0)
    net = lambda x_t, t, m, y: 0.3 * x_t + 0.1 * y
    y = (torch.rand(2, 1, 8, 8) * 2 - 1) * masks.center_hole(2, 4, 8)
    m = masks.center_hole(2, 4, 8)
    named = diffusion.ddim_inpaint(diffusion.Denoiser(net, sch, "v", (m, y)), y, m, 7, 0.5, 2,
                                   torch.Generator().manual_seed(4))
    rule = diffusion.Replacement(y, m, sch)
    by_hand = diffusion.sample(diffusion.Denoiser(net, sch, "v", (m, y)), y, diffusion.timesteps(1000, 7, "trailing"),
                               "ddim", 0.5, rule, 2, torch.Generator().manual_seed(4))
    assert torch.equal(named, by_hand) and torch.equal(named[m == 1], y[m == 1])
    free = diffusion.sample(diffusion.Denoiser(net, sch, "v", (m, y)), y, diffusion.timesteps(1000, 7, "trailing"),
                            "ddim", 0.5, None, 2, torch.Generator().manual_seed(4))
    assert not torch.equal(free[m == 1], y[m == 1])


def test_ddpm_step_is_the_posterior_draw(sch):
    x0, x_t, z = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), torch.randn(1, 1, 2, 2)
    mean, var = diffusion.posterior(x0, x_t, 500, 400, sch)
    assert torch.allclose(diffusion.ddpm_step(x0, x_t, 500, 400, sch, z), mean + var**0.5 * z)
    assert torch.equal(diffusion.ddpm_step(x0, x_t, 5, -1, sch, z), diffusion.posterior(x0, x_t, 5, -1, sch)[0])


def test_sample_rejects_bad_settings(sch):
    d = diffusion.Denoiser(lambda x, t: x, sch)
    like = torch.zeros(1, 1, 2, 2)
    for kwargs, match in [({"step": "euler"}, "step"), ({"repeats": 0}, "repeats"), ({"eta": -1.0}, "eta")]:
        with pytest.raises(ValueError, match=match):
            diffusion.sample(d, like, [999, 0], **kwargs)
    for ts in ([0, 999], [], [1000, 5], [5, 5], [9, 5, -2]):
        with pytest.raises(ValueError, match="timesteps"):
            diffusion.sample(d, like, ts)
