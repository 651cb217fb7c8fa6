"""Interactive controls for the notebooks (ipywidgets).

Taught in: 01_forward_process (the timestep slider).

A widget only lives in a running kernel, so every notebook cell that shows one also draws the
same view as a static figure (via :mod:`course_utils.plotting`) that reads on GitHub and runs
under nbval.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .plotting import show_noised


def timestep_slider(x0: torch.Tensor, schedules: Sequence, eps: torch.Tensor, t: int = 250):
    """A slider over t that redraws :func:`~course_utils.plotting.show_noised` for every schedule.

    Returns the ipywidgets container; display it (or leave it as a cell's last expression).

    Taught in notebook 01.
    """
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
