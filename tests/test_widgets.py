import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_utils import schedules, widgets  # noqa: E402


def test_timestep_slider_range_and_redraw(monkeypatch):
    calls = []

    def fake_show_noised(x0, schedules, t, eps):
        calls.append(t)
        return plt.figure()

    monkeypatch.setattr(widgets, "show_noised", fake_show_noised)
    sch = [schedules.make_schedule(n, 200) for n in schedules.SCHEDULE_NAMES]
    w = widgets.timestep_slider(torch.zeros(1, 1, 32, 32), sch, torch.randn(1, 1, 32, 32), t=20)
    slider = w.children[0]
    assert (slider.min, slider.max, slider.value) == (0, 199, 20)
    slider.value = 150
    assert calls[-1] == 150
    with pytest.raises(ValueError):
        widgets.timestep_slider(torch.zeros(1, 1, 32, 32), sch, torch.randn(1, 1, 32, 32), t=500)


def test_explorer_observation_every_family():
    img = torch.rand(1, 32, 32) * 2 - 1
    for family, (_, low, high, _, default) in widgets.STRENGTHS.items():
        obs = widgets.explorer_observation(img, family, default, seed=3)
        assert obs.y.shape == (1, 1, 32, 32) and obs.mask.shape == (1, 1, 32, 32)
        assert obs.task.is_mask_task == (family in ("sparse", "center", "rect"))
    rect = widgets.explorer_observation(img, "rect", rect=(2, 5, 4, 3))
    assert rect.mask.sum().item() == 1024 - 12 and rect.mask[0, 0, 5:8, 2:6].sum() == 0
    assert torch.equal(rect.y, rect.mask * img[None])
    assert widgets.explorer_observation(img, "center", 12.4).task.spec == "center:12"
    with pytest.raises(ValueError, match="family"):
        widgets.explorer_observation(img, "blurry", 1.0)
    with pytest.raises(ValueError, match="canvas"):
        widgets.explorer_observation(img, "rect", rect=(40, 0, 3, 3))


def test_posterior_explorer_samples_on_click(monkeypatch):
    from course_utils import conditional

    cfg = conditional.KIND.config("ci", sample_steps=2)
    torch.manual_seed(0)
    model = conditional.build_conditional_model(cfg).eval()
    images = torch.rand(3, 1, 32, 32) * 2 - 1
    obs = widgets.explorer_observation(images[1], "sparse", 0.2)
    fig = widgets.posterior_figure(model, cfg, images[1], obs, k=3)
    assert len(fig.axes) == 1 + 3 + 3  # observation, 3 samples, mean, std, error
    plt.close(fig)
    drawn = []
    monkeypatch.setattr(widgets, "posterior_figure", lambda m, c, img, o, k: drawn.append((o.task.spec, k)) or plt.figure())
    w = widgets.posterior_explorer(model, cfg, images, k=2)
    (_, family, strength), rect, (count, button) = w.children[0].children, w.children[1].children, w.children[2].children
    for name in ("noise", "lowres", "center", "kspace", "rect", "sparse"):
        family.value = name  # the strength slider is re-ranged for each family without an error
        label, low, high, _, default = widgets.STRENGTHS[name]
        assert (strength.min, strength.max, strength.value) == (low, high, default) or name == "rect"
        assert strength.disabled == (name == "rect") and rect[0].disabled == (name != "rect")
    family.value, count.value = "lowres", 3
    strength.value = 6.0  # snaps to a valid factor
    button.click()
    family.value = "rect"
    button.click()
    assert drawn == [("lowres:4", 3), ("rect", 3)]
