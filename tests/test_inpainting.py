"""Training-free samplers of notebook 05 (replacement, RePaint, DDNM), checked against diffusers' RePaintScheduler."""

import numpy as np
import pytest
import torch

from course_utils import diffusion, inpainting, masks, schedules
from course_utils.evaluation import CallCounter
from course_utils.models import UNet

diffusers = pytest.importorskip("diffusers", minversion="0.33", reason="diffusers >= 0.33 is the RePaint reference")


class ToyEps(torch.nn.Module):
    """A fixed, non-trivial eps predictor (a convolution and a time-dependent scale)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x_t, t):
        return 0.5 * torch.tanh(self.conv(x_t)) * (1 + t.float()[:, None, None, None] / 1000)


def observation(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1
    m = (torch.rand(n, 1, 8, 8, generator=g) > 0.5).float()
    return x0, m


@pytest.mark.parametrize("steps,jump,n", [(250, 10, 10), (50, 5, 5), (20, 3, 2), (7, 10, 3), (10, 1, 1)])
def test_walk_is_diffusers_schedule(steps, jump, n):
    ref = diffusers.RePaintScheduler(num_train_timesteps=1000)
    ref.set_timesteps(steps, jump_length=jump, jump_n_sample=n)
    walk = inpainting.repaint_walk(steps, jump, n)
    stride = 1000 // steps
    assert [e * stride for e in walk] == ref.timesteps.tolist()
    grid = diffusion.timesteps(1000, steps, "leading")[::-1]  # the same grid, as the course's leading spacing
    assert [grid[e] for e in walk] == ref.timesteps.tolist()


def test_paper_setting_costs_2410_calls_in_4570_entries():
    walk = inpainting.repaint_walk(250, 10, 10)
    assert len(walk) == 4570 and inpainting.walk_calls(walk) == 2410
    assert inpainting.walk_calls(inpainting.repaint_walk(50, 5, 1)) == 50  # no resampling: one call per level
    with pytest.raises(ValueError, match="jump_length"):
        inpainting.repaint_walk(10, 0, 2)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_step_then_replacement_is_diffusers_step(eta):
    """RePaint's step down is the course's DDIM step followed by replacement, with one shared draw."""
    sched = schedules.make_schedule("linear", 1000)
    # without clipping: the course keeps (x0_hat, eps_hat) consistent after a clip, diffusers keeps the raw eps
    ref = diffusers.RePaintScheduler(num_train_timesteps=1000, eta=eta, clip_sample=False)
    ref.set_timesteps(100, jump_length=10, jump_n_sample=10)
    x0, m = observation()
    x_t = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    for t in (990, 500, 30, 0):
        out = ref.step(eps, t, x_t, x0, m, generator=torch.Generator().manual_seed(7))
        z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7))
        x0_hat, eps_hat = diffusion.x0_and_eps(eps, x_t, t, sched, "eps", clip_x0=False)
        s = t - 10 if t else -1
        ours = diffusion.Replacement(m * x0, m, sched)(diffusion.ddim_step(x0_hat, eps_hat, t, s, sched, eta, z), s,
                                                       None, z)
        assert torch.allclose(x0_hat, out.pred_original_sample, atol=1e-5)
        assert torch.allclose(ours, out.prev_sample, atol=1e-4), t


def test_whole_loop_is_diffusers_loop():
    """With one noise level per training step (stride 1) every move is identical, up moves included."""
    T = 20
    sched = schedules.make_schedule("cosine", T)
    ref = diffusers.RePaintScheduler(num_train_timesteps=T, trained_betas=sched.betas.float().numpy(), eta=1.0,
                                     clip_sample=False)
    ref.set_timesteps(T, jump_length=3, jump_n_sample=3)
    net = ToyEps().eval()
    x0, m = observation()
    y = m * x0
    g = torch.Generator().manual_seed(11)
    x = torch.randn(y.shape, generator=g)  # the pipeline's loop (RePaintPipeline.__call__)
    t_last = ref.timesteps[0] + 1
    with torch.no_grad():
        for t in ref.timesteps:
            if t < t_last:
                out = net(x, torch.full((2,), int(t)))
                x = ref.step(out, int(t), x, y, m, generator=g).prev_sample
            else:
                x = ref.undo_step(x, int(t_last), generator=g)
            t_last = t
    den = diffusion.Denoiser(net, sched, "eps", clip_x0=False)
    ours = inpainting.repaint(den, y, m, T, 3, 3, spacing="leading", generator=torch.Generator().manual_seed(11))
    assert torch.allclose(ours, x, rtol=1e-4, atol=1e-4)  # unclipped, the toy model's values grow large


def test_repaint_keeps_known_pixels_counts_calls_and_is_seeded():
    sched = schedules.make_schedule("cosine", 1000)
    net = UNet(8, (1, 2), cond_channels=0, attention=True).eval()
    den = diffusion.Denoiser(net, sched, "eps")
    x0, _ = observation(3)
    x0 = torch.nn.functional.interpolate(x0, size=16)
    m = masks.center_hole(3, 6, size=16)
    counter = CallCounter(net)
    a = inpainting.repaint(den, m * x0, m, 8, 2, 3, generator=torch.Generator().manual_seed(0))
    counter.close()
    assert counter.images == 3 * inpainting.walk_calls(inpainting.repaint_walk(8, 2, 3))
    b = inpainting.repaint(den, m * x0, m, 8, 2, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.equal((m * a)[m == 1], x0[m == 1])
    c = inpainting.repaint(den, m * x0, m, 8, 2, 3, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a, c)


def test_repaint_levels_follow_the_walk():
    """Each entry e of the walk lands on level e - 1 of the grid (-1: the clean image); jumps go back up."""
    assert inpainting.repaint_walk(4, 2, 2) == [3, 2, 1, 0, 1, 2, 1, 0]
    assert inpainting.repaint_levels(1000, 4, 2, 2) == [999, 749, 499, 249, -1, 249, 499, 249, -1]
    assert inpainting.repaint_levels(1000, 5, 5, 3) == diffusion.timesteps(1000, 5, "trailing") + [-1]


def test_ddnm_projects_x0_and_replacement_does_not():
    x0, m = observation()
    x0_hat = torch.zeros_like(x0)
    assert torch.equal(diffusion.NullSpaceProjection(m * x0, m).project(x0_hat), m * x0)
    sched = schedules.make_schedule("cosine", 1000)
    assert torch.equal(diffusion.Replacement(m * x0, m, sched).project(x0_hat), x0_hat)
    net = UNet(8, (1, 2), cond_channels=0).eval()
    den = diffusion.Denoiser(net, sched, "eps")
    x0 = torch.nn.functional.interpolate(x0, size=16)
    m = masks.procedural_masks(2, 0.4, size=16, seed=0)
    counter = CallCounter(net)
    out = inpainting.ddnm_inpaint(den, m * x0, m, 5, repeats=2, generator=torch.Generator().manual_seed(0))
    counter.close()
    assert counter.images == 2 * 5 * 2 and torch.equal((m * out)[m == 1], x0[m == 1])
    with pytest.raises(ValueError, match="mask"):
        inpainting.ddnm_inpaint(den, m * x0, m[:, :, :8], 5)


def test_replacement_with_a_prior_keeps_known_pixels():
    sched = schedules.make_schedule("cosine", 1000)
    net = UNet(8, (1, 2), cond_channels=0).eval()
    x0 = torch.rand(2, 1, 16, 16) * 2 - 1
    m = masks.center_hole(2, 6, size=16)
    out = inpainting.replacement_inpaint(diffusion.Denoiser(net, sched), m * x0, m, 4,
                                         generator=torch.Generator().manual_seed(0))
    assert torch.equal((m * out)[m == 1], x0[m == 1])


def test_border_region_is_the_ring_inside_the_hole():
    m = masks.center_hole(1, 12)
    ring = inpainting.border_region(m, 2)
    assert ring.sum() == 12**2 - 8**2 and torch.all(ring <= 1 - m)
    assert inpainting.border_region(m, 6).sum() == 144  # wide enough: the whole hole
    assert inpainting.border_region(torch.ones(1, 1, 8, 8)).sum() == 0
    with pytest.raises(ValueError, match="width"):
        inpainting.border_region(m, 0)


def test_leading_spacing():
    assert diffusion.timesteps(1000, 4, "leading") == [750, 500, 250, 0]
    assert diffusion.timesteps(10, 10, "leading") == list(range(9, -1, -1))
    assert np.all(np.diff(diffusion.timesteps(1000, 33, "leading")) < 0)
