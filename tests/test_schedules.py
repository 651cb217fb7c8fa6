import math

import pytest
import torch

from course_utils import schedules as S


@pytest.mark.parametrize("name", S.SCHEDULE_NAMES)
def test_schedule_identities(name):
    s = S.make_schedule(name, 1000)
    assert s.T == 1000 and s.betas.dtype == torch.float64
    assert torch.all(s.betas > 0) and torch.all(s.betas < 1)
    assert torch.allclose(s.alphas, 1 - s.betas)
    assert torch.allclose(s.alpha_bars, torch.cumprod(1 - s.betas, 0))
    assert torch.all(s.alpha_bars[1:] < s.alpha_bars[:-1])  # signal only decays
    assert s.alpha_bars[-1] < 1e-3  # x_{T-1} is essentially pure noise
    assert torch.allclose(s.snr, s.alpha_bars / (1 - s.alpha_bars))
    assert torch.allclose(s.log_snr, torch.log(s.snr))


def test_known_values():
    lin = S.make_schedule("linear", 1000)
    assert lin.betas[0].item() == pytest.approx(1e-4) and lin.betas[-1].item() == pytest.approx(0.02)
    quad = S.make_schedule("quadratic", 1000)
    assert quad.betas[0].item() == pytest.approx(1e-4) and quad.betas[-1].item() == pytest.approx(0.02)
    assert torch.all(quad.betas <= lin.betas + 1e-12)  # sqrt-spacing is below the straight line
    cos = S.make_schedule("cosine", 1000)
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    assert cos.alpha_bars[499].item() == pytest.approx(f(0.5) / f(0.0), rel=1e-9)
    assert cos.betas.max().item() <= 0.999


def test_linear_rescales_with_T():
    s = S.make_schedule("linear", 100)
    assert s.betas[0].item() == pytest.approx(1e-3) and s.betas[-1].item() == pytest.approx(0.2)
    assert abs(s.alpha_bars[-1].item() - S.make_schedule("linear", 1000).alpha_bars[-1].item()) < 1e-3


def test_bad_names_and_T():
    with pytest.raises(ValueError, match="Unknown schedule 'sigmoid'"):
        S.make_schedule("sigmoid")
    with pytest.raises(ValueError, match="T must be"):
        S.make_schedule("linear", 1)


def test_q_sample_closed_form():
    s = S.make_schedule("cosine", 1000)
    x0 = torch.rand(3, 1, 8, 8) * 2 - 1
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 500, 999])
    x_t = S.q_sample(x0, t, s, eps)
    for i in range(3):
        ab = s.alpha_bars[t[i]].float()
        assert torch.allclose(x_t[i], ab.sqrt() * x0[i] + (1 - ab).sqrt() * eps[i], atol=1e-6)
    assert torch.allclose(S.q_sample(x0, 0, s, eps), S.q_sample(x0, torch.zeros(3, dtype=torch.long), s, eps))


def test_q_sample_errors():
    s = S.make_schedule("cosine", 10)
    x0 = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        S.q_sample(x0 + 3, 1, s, torch.zeros_like(x0))
    with pytest.raises(ValueError, match="timesteps must lie"):
        S.q_sample(x0, 10, s, torch.zeros_like(x0))
    with pytest.raises(ValueError, match="one index per image"):
        S.q_sample(x0, torch.tensor([1, 2, 3]), s, torch.zeros_like(x0))
    with pytest.raises(ValueError, match="eps must have"):
        S.q_sample(x0, 1, s, torch.zeros(1, 1, 4, 4))


@pytest.mark.parametrize("name", S.SCHEDULE_NAMES)
def test_iterated_q_step_has_the_closed_form_moments(name):
    """q_step's x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps, iterated from x0, is linear in (x0, eps_1..t):
    its x0 coefficient must be sqrt(alpha_bar_t) and its noise variance 1 - alpha_bar_t (eq. 4)."""
    s = S.make_schedule(name, 1000)
    x0, zero = torch.ones(1, 1, 1, 1, dtype=torch.float64), torch.zeros(1, 1, 1, 1, dtype=torch.float64)
    coef, var = x0, 0.0
    for t in range(s.T):
        coef = S.q_step(coef, t, s, zero)  # the x0 part: no noise
        var = var * s.alphas[t].item() + S.q_step(zero, t, s, x0).item() ** 2  # a fresh unit draw per step
        if t in (0, 10, 500, 999):
            assert coef.item() == pytest.approx(s.alpha_bars[t].sqrt().item(), rel=1e-10)
            assert var == pytest.approx(1 - s.alpha_bars[t].item(), rel=1e-10)


def test_iterated_q_step_matches_q_sample_statistically():
    s = S.make_schedule("linear", 1000)
    x0 = torch.full((4000, 1, 1, 1), 0.5)
    g = torch.Generator().manual_seed(0)
    x_t = x0
    for t in range(301):
        x_t = S.q_step(x_t, t, s, torch.randn(x0.shape, generator=g))
    ab = s.alpha_bars[300].item()
    # 4000 draws: standard error of the mean ~ 0.016, of the variance ~ 0.02
    assert x_t.mean().item() == pytest.approx(math.sqrt(ab) * 0.5, abs=0.06)
    assert x_t.var().item() == pytest.approx(1 - ab, abs=0.08)
