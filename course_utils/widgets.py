"""Interactive controls for the notebooks (ipywidgets).

Taught in: 01_forward_process (the timestep slider), 04_conditional_cross_attention (the posterior explorer:
pick a digit, a degradation and its strength, and see K reconstructions with their uncertainty).

A widget only lives in a running kernel, so every notebook cell that shows one also draws the
same view as a static figure (via :mod:`course_utils.plotting`) that reads on GitHub and runs
under nbval.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .conditional import conditional_method
from .evaluation import SamplerOptions
from .plotting import show_noised, show_posterior
from .tasks import Observation, Task, parse_task


def timestep_slider(x0: torch.Tensor, schedules: Sequence, eps: torch.Tensor, t: int = 250):
    """A slider over t that redraws :func:`~course_utils.plotting.show_noised` for every schedule.

    Returns the ipywidgets container; display it (or leave it as a cell's last expression). Taught in notebook 01."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    T = min(s.T for s in schedules)
    if not 0 <= t < T:
        raise ValueError(f"t must lie in [0, {T - 1}], got {t}")

    def draw(t: int) -> None:
        fig = show_noised(x0, schedules, t, eps)
        plt.show()
        plt.close(fig)

    slider = widgets.IntSlider(value=t, min=0, max=T - 1, step=1, description="t", continuous_update=False,
                               layout=widgets.Layout(width="600px"))
    return widgets.interactive(draw, t=slider)


# The degradations of the posterior explorer: (slider label, min, max, step, default) of each one's strength.
STRENGTHS = {
    "sparse": ("kept fraction", 0.02, 0.5, 0.01, 0.1),
    "noise": ("noise sigma", 0.1, 1.5, 0.05, 0.5),
    "lowres": ("factor 2/4/8", 2, 8, None, 4),  # the slider's 6 snaps to 4
    "center": ("hole side", 4, 24, 1, 12),
    "kspace": ("kept fraction", 0.05, 0.9, 0.05, 0.25),
    "rect": ("(position, size below)", 0, 0, None, 0),
}


def explorer_observation(image: torch.Tensor, family: str, strength: float = 0.0,
                         rect: tuple[int, int, int, int] = (9, 9, 14, 14), seed: int = 0) -> Observation:
    """The observation of one digit (1 x 32 x 32) for the posterior explorer (notebook 04).

    ``family`` is a key of :data:`STRENGTHS`; ``strength`` its parameter (kept fraction, noise sigma, factor, hole
    side); for ``rect``, ``rect = (left, top, width, height)`` in pixels is the one hidden rectangle.
    """
    if family not in STRENGTHS:
        raise ValueError(f"family must be one of {sorted(STRENGTHS)}, got {family!r}")
    x0 = image.reshape(1, 1, 32, 32).float().cpu()
    if family != "rect":
        if family in ("lowres", "center"):
            strength = int(round(strength))
        return parse_task(f"{family}:{strength:g}").observe(x0, seed)
    left, top, width, height = (int(v) for v in rect)
    if not (0 <= left < 32 and 0 <= top < 32 and width >= 1 and height >= 1):
        raise ValueError(f"rect = (left, top, width, height) must lie on the 32 x 32 canvas, got {rect}")
    mask = torch.ones_like(x0)
    mask[..., top : top + height, left : left + width] = 0
    return Observation(Task("rect", "rect"), mask * x0, mask)


def posterior_figure(model: nn.Module, cfg, image: torch.Tensor, obs: Observation, k: int = 4, seed: int = 0,
                     steps: int | None = None):
    """Draw K samples of notebook 04's model for one observation and show them with
    :func:`~course_utils.plotting.show_posterior` (observation, samples, mean, uncertainty, error); notebook 04."""
    device = next(model.parameters()).device
    method = conditional_method(model, cfg, SamplerOptions(steps or cfg.sample_steps))
    batch = Observation(obs.task, obs.y.expand(k, -1, -1, -1), obs.mask.expand(k, -1, -1, -1), {})
    with torch.no_grad():
        samples = method.sample(batch.to(device), torch.Generator().manual_seed(seed)).cpu()
    return show_posterior({obs.task.spec: (obs.y[0], obs.mask[0], samples, image.reshape(1, 32, 32))},
                          n_samples=min(3, k), title=f"{obs.task.spec}: {k} samples of the posterior")


def posterior_explorer(model: nn.Module, cfg, images: torch.Tensor, k: int = 4):
    """The classroom widget of notebook 04: a digit slider, a degradation dropdown, its strength (for a rectangle:
    position and size), K, and a button that draws K samples and shows :func:`posterior_figure`.

    ``images`` are N x 1 x 32 x 32 test digits. Returns the ipywidgets container to display.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    digit = widgets.IntSlider(0, 0, len(images) - 1, description="digit")
    family = widgets.Dropdown(options=list(STRENGTHS), value="sparse", description="task")
    strength = widgets.FloatSlider(description="strength", continuous_update=False)
    rect = [widgets.IntSlider(v, 0, 31, description=d)
            for v, d in zip((9, 9, 14, 14), ("left", "top", "width", "height"))]
    count = widgets.IntSlider(k, 2, 16, description="K")
    button = widgets.Button(description="Sample", button_style="primary")
    out = widgets.Output()

    def on_family(_=None) -> None:
        label, low, high, step, default = STRENGTHS[family.value]
        strength.max = max(strength.max, high)  # widen first: a slider refuses min > max at every moment
        strength.min, strength.max = low, high
        strength.step = step or 2.0
        strength.value = default
        strength.description = label[:13]
        strength.disabled = family.value == "rect"
        for slider in rect:
            slider.disabled = family.value != "rect"

    def on_click(_=None) -> None:
        value = strength.value
        if family.value == "lowres":
            value = min((2, 4, 8), key=lambda f: abs(f - value))
        obs = explorer_observation(images[digit.value], family.value, value, tuple(s.value for s in rect))
        with out:
            out.clear_output(wait=True)
            fig = posterior_figure(model, cfg, images[digit.value], obs, count.value)
            display(fig)
            plt.close(fig)

    family.observe(on_family, names="value")
    button.on_click(on_click)
    on_family()
    return widgets.VBox([widgets.HBox([digit, family, strength]), widgets.HBox(rect), widgets.HBox([count, button]),
                         out])
