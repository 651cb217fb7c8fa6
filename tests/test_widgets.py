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
