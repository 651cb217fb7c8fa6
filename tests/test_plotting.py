import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_utils import masks, plotting, schedules  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_to_display_marks_missing_pixels():
    x = torch.full((1, 4, 4), -1.0)
    m = torch.ones(1, 4, 4)
    m[0, 0, 0] = 0
    rgb = plotting.to_display(x, m)
    assert rgb.shape == (4, 4, 3)
    assert tuple(rgb[0, 0]) == plotting.MISSING_RGB and np.all(rgb[1, 1] == 0)


def test_grids_and_panels_save_png(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    x = torch.rand(6, 1, 32, 32) * 2 - 1
    m = masks.center_hole(6)
    fig = plotting.show_images(x, ncols=4, title="grid", mask=m, labels=list("abcdef"), save="grid")
    assert len(fig.axes) == 8 and (tmp_path / "figures" / "ci" / "grid.png").stat().st_size > 0
    fig = plotting.show_rows({"observed": m * x, "reconstructed": x, "ground truth": x}, masks={"observed": m},
                             title="panel", n=5, save="panel")
    assert len(fig.axes) == 15 and fig.axes[0].get_ylabel() == "observed"
    fig = plotting.show_strip([x[:2], x[2:4], x[4:]], ["a", "b", "c"], row_names=["r1", "r2"], masks=[m[:2]] * 3)
    assert len(fig.axes) == 6


def test_curves():
    fig = plotting.plot_schedules([schedules.make_schedule(n, 100) for n in schedules.SCHEDULE_NAMES])
    assert len(fig.axes) == 3 and len(fig.axes[1].lines) == 3
    fig = plotting.plot_loss(list(np.linspace(1, 0.1, 120)), window=10)
    assert len(fig.axes[0].lines) == 2
    fig = plotting.bar_compare({"a": {"l1": 0.2}, "b": {"l1": 0.1}}, "l1", higher_is_better=False)
    assert "lower is better" in fig.axes[0].get_ylabel()


def test_show_noised():
    sch = [schedules.make_schedule(n, 100) for n in ("linear", "cosine")]
    x0 = torch.zeros(1, 1, 32, 32)
    fig = plotting.show_noised(x0, sch, 50, torch.randn(1, 1, 32, 32))
    assert len(fig.axes) == 3 and "cosine" in fig.axes[2].get_title()


def test_save_figure_goes_to_a_folder_per_profile(tmp_path, monkeypatch):
    """A ci run must never overwrite the figures of a cpu run (issue: outputs/figures/ was shared)."""
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    paths = {}
    for profile in ("cpu", "ci"):
        monkeypatch.setenv("COURSE_PROFILE", profile)
        fig, ax = plt.subplots()
        ax.set_title(profile)
        paths[profile] = plotting.save_figure(fig, "x")
        plt.close(fig)
    assert paths["cpu"] == str(tmp_path / "figures" / "cpu" / "x.png") != paths["ci"]
    assert (tmp_path / "figures" / "cpu" / "x.png").exists() and (tmp_path / "figures" / "ci" / "x.png").exists()


def test_show_posterior_columns_and_bad_samples():
    y, truth = torch.zeros(1, 32, 32), torch.zeros(1, 32, 32)
    mask = torch.ones(1, 32, 32)
    mask[:, 10:20, 10:20] = 0
    fig = plotting.show_posterior({"a": (y, mask, torch.zeros(4, 1, 32, 32), truth),
                                   "b": (y, torch.zeros_like(mask), torch.zeros(4, 1, 32, 32), truth)}, n_samples=2)
    assert len(fig.axes) == 2 * (1 + 2 + 3)
    plt.close(fig)
    with pytest.raises(ValueError, match="K >= 2"):
        plotting.show_posterior({"a": (y, mask, torch.zeros(1, 1, 32, 32), truth)})


def test_plot_training_two_panels():
    fig = plotting.plot_training(list(np.linspace(1, 0.1, 40)), [(10, 30.0, 9.0), (20, 60.0, 11.0)], "loss", "PSNR",
                                 "validation")
    assert len(fig.axes) == 2 and fig.axes[1].get_xlabel() == "minutes of training"
    assert list(fig.axes[1].lines[0].get_xdata()) == [0.5, 1.0]
    plt.close(fig)
