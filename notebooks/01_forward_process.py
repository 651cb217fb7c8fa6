# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,colab,accelerator
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The forward process: how noise destroys a digit
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffusion-course/mnist-diffusion-inpainting/blob/main/notebooks/01_forward_process.ipynb)
#
# A diffusion model learns to *undo* noise. Before we can teach a network anything, we need to
# know exactly what it has to undo: a fixed recipe, the **forward process**, that adds a little
# Gaussian noise to an image at each of `T` steps until nothing of the digit is left. The recipe
# has one knob, the **beta schedule**, and it matters: it decides how many of the `T` steps the
# model spends on images that still show a digit. This notebook builds the forward process on real
# MNIST digits, checks that its shortcut formula is exact, compares three schedules, and
# introduces the masks that the rest of the course fills in.
#
# ## What you will learn
#
# - The one-step forward process $q(x_t \mid x_{t-1})$ and its closed form $q(x_t \mid x_0)$, and why they agree.
# - What $\beta_t$, $\alpha_t$, $\bar\alpha_t$ and the signal-to-noise ratio (SNR) mean, and how to read them off a plot.
# - Linear, quadratic and cosine schedules, and why the cosine schedule spreads destruction more evenly over time.
# - The inpainting masks of the course (1 = known pixel, 0 = missing) and how to measure what they hide.
#
# ## What you need
#
# - Python and PyTorch basics (tensors, broadcasting). No earlier notebook.
# - Runtime: seconds in every profile (the README's table). This notebook trains nothing.

# %% [markdown]
# ## Setup
#
# In Colab this cell downloads the course and installs it; on your own machine it uses the
# `course_utils` you installed with `pip install -e .` (see the README).

# %%
import importlib
import subprocess
import sys
from pathlib import Path

REPO_URL = "https://github.com/diffusion-course/mnist-diffusion-inpainting"  # written by `course badges`
if "google.colab" in sys.modules:  # a bare Colab runtime: fetch and install the course
    if not Path("course").exists():
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "course"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "course"], check=True)
    sys.path.insert(0, str(Path("course").resolve()))
    importlib.invalidate_caches()

import course_utils

print("course_utils from", Path(course_utils.__file__).parent)

# %% [markdown]
# One switch, `COURSE_PROFILE` (`ci`, `cpu` or `full`), sizes everything in the course. We print it,
# pick the device once, and set every random seed once.

# %%
import math

import matplotlib.pyplot as plt
import torch
from IPython.display import display

from course_utils import config, data, masks, plotting, schedules, widgets

profile = config.get_profile()
device = config.get_device()
SEED = config.seed_everything(0)
print(config.profile_table(profile))
print("device:", device, "| seed:", SEED)

# %% [markdown]
# ## 1. Real digits, scaled to [-1, 1]
#
# MNIST digits are 28x28 grey levels in 0..255. The course pads them with background to 32x32 (so a
# U-Net can halve the size several times) and maps them to $[-1, 1]$: $x = 2u - 1$ with $u \in [0, 1]$.
# Background is $-1$, ink is $+1$, and $0$ is mid-grey. Noise with variance 1 is on the same scale.

# %%
train = data.load_mnist("train")
x0 = data.take_subset(train, 8, seed=SEED).images
print("images:", tuple(x0.shape), "range:", x0.min().item(), "to", x0.max().item())
assert x0.shape[1:] == (1, 32, 32) and x0.min() == -1 and x0.max() == 1
plotting.show_images(x0, title="Eight training digits (32x32, [-1, 1])", save="01_digits")
plt.show()

# %% [markdown]
# ## 2. One step of noise
#
# The forward process is a Markov chain. Each step shrinks the image a little and adds a little
# Gaussian noise (DDPM, eq. 2):
#
# $$q(x_t \mid x_{t-1}) = \mathcal{N}\big(x_t;\ \sqrt{1-\beta_t}\, x_{t-1},\ \beta_t I\big)
# \quad\Longleftrightarrow\quad x_t = \sqrt{\alpha_t}\, x_{t-1} + \sqrt{\beta_t}\,\epsilon,\ \ \alpha_t = 1-\beta_t,\ \epsilon \sim \mathcal{N}(0, I).$$
#
# The shrink factor $\sqrt{\alpha_t}$ is what keeps the total variance bounded: if $x_{t-1}$ has
# variance 1, so does $x_t$.
#
# **Indexing, once for the whole course.** The formulas count steps as the papers do: $x_0$ is the clean image
# and $x_t$ has been noised $t$ times, $t = 1, \dots, T$. The code indexes the $T$ steps `t = 0, ..., T-1` as
# diffusers does: code index `t` is the paper's step $t + 1$ (`x_t` in code has been noised `t + 1` times), and the
# clean image is a separate variable `x0`, never an entry of the per-step tables (`betas[0]` is the first step's
# $\beta$). `course_utils.schedules` writes the same convention down once.

# %%
def q_step(x_prev, alpha_t, eps):
    """x_t = sqrt(alpha_t) x_{t-1} + sqrt(1 - alpha_t) eps."""
    return math.sqrt(alpha_t) * x_prev + math.sqrt(1 - alpha_t) * eps


def linear_betas(T, beta_start=1e-4, beta_end=0.02):
    """DDPM's schedule: beta_t evenly spaced from 1e-4 to 0.02 (for T = 1000)."""
    return torch.linspace(beta_start * 1000 / T, beta_end * 1000 / T, T, dtype=torch.float64)


T = profile.T
betas = linear_betas(T)
alphas = 1 - betas
x = x0[:1]
g = torch.Generator().manual_seed(SEED)
chain = [x]
for t in range(T):
    x = q_step(x, alphas[t].item(), torch.randn(x.shape, generator=g))
    chain.append(x)
steps_to_show = [0, 50, 100, 200, 300, 500, 700, 999]
plotting.show_strip([chain[t + 1].clamp(-1, 1) for t in steps_to_show], [f"t={t}" for t in steps_to_show],
                    title="Step by step: one digit through the linear schedule", save="01_chain_strip")
plt.show()

# %% [markdown]
# ## 3. Jumping straight to step t
#
# Unrolling the chain, every step multiplies the signal by $\sqrt{\alpha_t}$ and the noises add up as
# independent Gaussians. With $\bar\alpha_t = \prod_{s \le t} \alpha_s$ (DDPM, eq. 4):
#
# $$q(x_t \mid x_0) = \mathcal{N}\big(x_t;\ \sqrt{\bar\alpha_t}\, x_0,\ (1-\bar\alpha_t) I\big)
# \quad\Longleftrightarrow\quad x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon.$$
#
# This closed form is what makes training cheap: we can draw $x_t$ for any $t$ in one line, without
# running $t$ steps. Let us write it and check it against the chain two ways.

# %%
def q_sample(x0, alpha_bar_t, eps):
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps  (DDPM eq. 4)."""
    return math.sqrt(alpha_bar_t) * x0 + math.sqrt(1 - alpha_bar_t) * eps


alpha_bars = torch.cumprod(alphas, dim=0)

# (a) Exactly: iterate the chain's mean coefficient c and variance v: c_t = sqrt(alpha_t) c_{t-1}, v_t = alpha_t v_{t-1} + beta_t.
c, v = 1.0, 0.0
for t in range(T):
    c, v = math.sqrt(alphas[t]) * c, alphas[t].item() * v + betas[t].item()
    assert abs(c - math.sqrt(alpha_bars[t])) < 1e-12 and abs(v - (1 - alpha_bars[t])) < 1e-12
print(f"after {T} steps: chain mean coefficient {c:.6f} = sqrt(alpha_bar) {math.sqrt(alpha_bars[-1]):.6f}, "
      f"variance {v:.6f} = 1 - alpha_bar {1 - alpha_bars[-1]:.6f}")

# %% [markdown]
# (b) Empirically: run the chain many times on the *same* digit, up to one timestep, and compare the
# per-pixel mean and variance of the results with $\sqrt{\bar\alpha_t}\,x_0$ and $1-\bar\alpha_t$.
# Closed-form draws go through the same test, so both are judged by the same tolerance.

# %%
n_runs = 256 if profile.name == "ci" else 2000
t_check = 150
digit = x0[:1].expand(n_runs, -1, -1, -1)
g = torch.Generator().manual_seed(SEED)
x = digit
for t in range(t_check + 1):
    x = q_step(x, alphas[t].item(), torch.randn(x.shape, generator=g))
x_closed = q_sample(digit, alpha_bars[t_check].item(), torch.randn(digit.shape, generator=g))

want_mean = math.sqrt(alpha_bars[t_check]) * x0[0]
want_var = 1 - alpha_bars[t_check].item()
# Over n_runs draws an estimated mean has standard error sqrt(var / n), an estimated variance var * sqrt(2 / n).
# Averaged over all pixels, |error| of an unbiased estimate is about sqrt(2 / pi) = 0.8 standard errors: allow twice that.
tol_mean = 2 * math.sqrt(2 / math.pi) * math.sqrt(want_var / n_runs)
tol_var = 2 * math.sqrt(2 / math.pi) * want_var * math.sqrt(2 / n_runs)
for name, samples in [("step by step", x), ("closed form", x_closed)]:
    mean_err = (samples.mean(0) - want_mean).abs().mean().item()
    var_err = (samples.var(0) - want_var).abs().mean().item()
    print(f"{name:>12}: mean |error| {mean_err:.4f} (tol {tol_mean:.4f}), variance |error| {var_err:.4f} (tol {tol_var:.4f})")
    assert mean_err < tol_mean and var_err < tol_var
assert (x.mean(0) - x_closed.mean(0)).abs().mean() < 2 * tol_mean
print("key result: step by step and closed form give the same mean and variance.")

# %% [markdown]
# `course_utils.schedules` holds the same two functions (`q_step`, `q_sample`, taking a schedule and a
# timestep index). From now on we use the module; this check shows it is the code we just wrote.

# %%
lin = schedules.make_schedule("linear", T)
eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
assert torch.allclose(lin.betas, betas)
assert torch.allclose(schedules.q_sample(x0, 300, lin, eps), q_sample(x0, alpha_bars[300].item(), eps), atol=1e-6)
assert torch.allclose(schedules.q_step(x0, 300, lin, eps), q_step(x0, alphas[300].item(), eps), atol=1e-6)
print("course_utils.schedules agrees with this notebook.")

# %% [markdown]
# ## 4. Three schedules
#
# - **Linear** (DDPM): $\beta_t$ grows linearly from $10^{-4}$ to $0.02$.
# - **Quadratic** (DDPM's code): $\sqrt{\beta_t}$ grows linearly between the same end points.
# - **Cosine** (Nichol & Dhariwal 2021, eq. 17): choose $\bar\alpha_t$ directly,
#   $\bar\alpha_t = f(t)/f(0)$ for the paper's step $t$, with $f(t) = \cos^2\!\big(\frac{t/T + s}{1 + s}\cdot\frac{\pi}{2}\big)$,
#   $s = 0.008$, and derive $\beta_t = 1 - \bar\alpha_t / \bar\alpha_{t-1}$ (clipped at 0.999). In code index `t`
#   (the paper's step $t + 1$) that is `f(t + 1) / f(0)`.
#
# The signal-to-noise ratio $\mathrm{SNR}(t) = \bar\alpha_t / (1-\bar\alpha_t)$ says how much of $x_t$ is
# still digit. We plot $\beta_t$, $\bar\alpha_t$ and $\log \mathrm{SNR}$.

# %%
def cosine_alpha_bars(T, s=0.008):
    """alpha_bar_t = f(t + 1) / f(0) for the course's index t = 0..T-1 (iDDPM eq. 17)."""
    f = lambda u: torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    u = torch.arange(T + 1, dtype=torch.float64) / T
    return (f(u) / f(u[:1]))[1:]


all_schedules = [schedules.make_schedule(name, T) for name in schedules.SCHEDULE_NAMES]
cos = all_schedules[schedules.SCHEDULE_NAMES.index("cosine")]
# the clip at 0.999 only touches the very last step
assert torch.allclose(cos.alpha_bars[:-1], cosine_alpha_bars(T)[:-1], rtol=1e-9)
plotting.plot_schedules(all_schedules, save="01_schedules")
plt.show()

# %% [markdown]
# The same digit and the same noise $\epsilon$, pushed to the same timesteps under each schedule:

# %%
eps = torch.randn(x0[:1].shape, generator=torch.Generator().manual_seed(2))
ts = [0, 100, 200, 300, 400, 500, 600, 700, 800, 999]
rows = [torch.cat([schedules.q_sample(x0[:1], t, sch, eps) for sch in all_schedules]).clamp(-1, 1) for t in ts]
plotting.show_strip(rows, [f"t={t}" for t in ts], row_names=[s.name for s in all_schedules],
                    title="One digit, one noise, three schedules", save="01_schedules_digit")
plt.show()

# %% [markdown]
# ## 5. Why the cosine schedule spreads destruction more evenly
#
# A model learns something useful only at steps where $x_t$ still carries some information about
# the digit but is not yet clean. Under the linear schedule $\bar\alpha_t$ collapses early, so a large share of the
# last steps see images that are pure noise for all practical purposes, and they all look alike.
# The cosine schedule (Nichol & Dhariwal 2021) was designed so that $\bar\alpha_t$ drops about linearly in the middle
# of the process and changes slowly near $t = 0$ and $t = T$, with no abrupt jumps in noise level, so that fewer of
# the steps see images that are already noise. Let us count, per schedule, how many of the $T$ steps
# are "almost clean" ($\mathrm{SNR} > 100$), "almost pure noise" ($\mathrm{SNR} < 0.01$), and in between.

# %%
print(f"{'schedule':>10} | almost clean | in between | almost noise | t where alpha_bar < 0.5")
counts = {}
for sch in all_schedules:
    snr = sch.snr
    clean, noise = (snr > 100).sum().item(), (snr < 0.01).sum().item()
    counts[sch.name] = (clean, T - clean - noise, noise)
    half = int((sch.alpha_bars < 0.5).nonzero()[0])
    print(f"{sch.name:>10} | {clean:12d} | {T - clean - noise:10d} | {noise:12d} | {half}")
assert counts["cosine"][2] < counts["linear"][2], "cosine should waste fewer steps on pure noise"
assert counts["cosine"][1] > counts["linear"][1]

# %% [markdown]
# The table is the reason the course trains with the cosine schedule by default: far fewer steps
# are spent on images that are indistinguishable from noise, and the informative middle range gets
# most of them. A second view: how much $\log\mathrm{SNR}$ falls per step. A flat curve would remove the same
# amount of information at every step; none of the three is flat, and flat is not the aim. In the middle of the
# process, where the SNR is near 1 and a digit is half visible, the cosine curve is the lowest: it takes its smallest
# steps there, so more of its $T$ steps fall in that range. It pays in its last few dozen steps, which rush through
# the noise levels that the linear schedule spends hundreds of steps on (the table's "almost noise" column).

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.4))
for sch in all_schedules:
    ax.plot(range(1, T), -torch.diff(sch.log_snr).numpy(), label=sch.name)
ax.set_yscale("log")
ax.set_xlabel("timestep t")
ax.set_ylabel(r"$\log\mathrm{SNR}(t-1) - \log\mathrm{SNR}(t)$")
ax.set_title("Information removed per step")
ax.grid(alpha=0.3)
ax.legend()
plotting.save_figure(fig, "01_logsnr_per_step")
plt.show()

# %% [markdown]
# ## 6. Explore: a timestep slider
#
# Move the slider to see the digit at any $t$ under the three schedules (same $\epsilon$). A widget
# only works in a live kernel, so the static figure below shows one setting for readers on GitHub.

# %%
eps = torch.randn(x0[:1].shape, generator=torch.Generator().manual_seed(3))
plotting.show_noised(x0[:1], all_schedules, 400, eps, save="01_noised_t400")
plt.show()
display(widgets.timestep_slider(x0[:1], all_schedules, eps, t=400))

# %% [markdown]
# ## 7. The masks of the course
#
# Inpainting means filling in the pixels we do not know. A **mask** $m$ has the image's shape with
# **1 = known pixel, 0 = missing**, and what we observe is $y = m \odot x_0$ (missing pixels read 0,
# mid-grey). The course uses five kinds, all generated in batches from a seed by `course_utils.masks`; their
# names are the mask tasks of notebooks 03 to 06 (`center:12`, `rect`, `sparse:0.1`, ...), with the same number:
#
# | kind | what it models | its number |
# | --- | --- | --- |
# | `center` | a square hole in the middle (the classic benchmark) | the hole's side (12) |
# | `rect` | one to three random boxes (occlusions) | |
# | `sparse` | every pixel known independently (sparse measurements) | the share of pixels **kept** (0.5) |
# | `strokes` | free-form brush strokes (scribbles, scratches) | |
# | `procedural` | free-form blobs drawn to an exact missing fraction, 5 to 60 percent | the share **missing** (0.3) |
#
# Missing pixels are drawn in red. Each title gives the *measured* missing fraction.

# %%
n_show = 6
digits6 = x0[:n_show]
for kind in masks.MASK_KINDS:
    m = masks.make_masks(kind, n_show, seed=SEED)
    frac = masks.missing_fraction(m)
    assert torch.equal(masks.observe(digits6, m)[m == 1], digits6[m == 1])  # known pixels are the image
    plotting.show_images(masks.observe(digits6, m), ncols=n_show, mask=m,
                         labels=[f"{100 * f:.1f}% missing" for f in frac],
                         title=f"{kind} masks", save=f"01_masks_{kind}", scale=1.4)
    plt.show()

# %% [markdown]
# Procedural masks are drawn to a **target** missing fraction: a smooth random field is ranked and its
# highest `round(target * 1024)` pixels are removed. We measure how close each mask gets, for the
# targets 5 %, 15 %, 30 %, 45 % and 60 %.

# %%
targets = torch.tensor([0.05, 0.15, 0.30, 0.45, 0.60])
batch = 64
worst = 0.0
for target in targets:
    m = masks.procedural_masks(batch, float(target), seed=SEED)
    worst = max(worst, (masks.missing_fraction(m) - target).abs().max().item())
print(f"largest |measured - target| over {batch} masks per target: {worst:.5f} "
      f"(tolerance {masks.PROCEDURAL_TOLERANCE})")
assert worst <= masks.PROCEDURAL_TOLERANCE
procedural = [masks.procedural_masks(4, float(tg), seed=SEED) for tg in targets]
plotting.show_strip([masks.observe(x0[:4], m) for m in procedural], [f"target {100 * tg:.0f}%" for tg in targets],
                    masks=procedural, title="Procedural masks at five target fractions",
                    save="01_masks_procedural_targets")
plt.show()

# %% [markdown]
# ## Summary
#
# - The forward process adds Gaussian noise in `T` small steps; $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon$
#   jumps to any step at once, and we checked it gives the chain's mean and variance exactly and empirically.
# - $\bar\alpha_t$ is the share of signal power left; $\mathrm{SNR}(t) = \bar\alpha_t / (1-\bar\alpha_t)$.
# - The schedule decides how the `T` steps are spent; the linear one wastes many steps on pure noise,
#   the cosine one spreads them over noise levels. The course trains with cosine.
# - Masks: 1 = known, 0 = missing, observation $y = m \odot x_0$; five kinds, seeded and batched.
#
# Next, in `02_ddpm_from_scratch_masked_mnist`, we train a network to run this process backwards and
# fill in the missing pixels.
#
# ## Exercises
#
# 1. For each schedule, find the first $t$ at which the SNR drops below 1 (signal and noise equally strong).
#    Where does it sit relative to $T/2$?
# 2. A **sigmoid** schedule sets $\bar\alpha_t$ from a sigmoid of $t$. Write
#    `alpha_bar = torch.sigmoid(-12 * (u - 0.5))` normalised so that $\bar\alpha$ starts at 1, derive $\beta_t$,
#    and count its "almost noise" steps as in section 5.
# 3. Draw 500 `sparse` masks keeping 70 percent of the pixels (`masks.make_masks("sparse", 500, 0.7)`). What is
#    the spread (standard deviation) of the measured missing fraction, and what does the binomial distribution
#    predict?
# 4. *Pen and paper.* Two noising steps: $x_1 = \sqrt{\alpha_1}\,x_0 + \sqrt{1-\alpha_1}\,\epsilon_1$ and
#    $x_2 = \sqrt{\alpha_2}\,x_1 + \sqrt{1-\alpha_2}\,\epsilon_2$, with $\epsilon_1, \epsilon_2$ independent standard
#    normals. Show that $x_2 = \sqrt{\alpha_1\alpha_2}\,x_0 + \sqrt{1-\alpha_1\alpha_2}\,\epsilon$ for one standard
#    normal $\epsilon$, and conclude the closed form $q(x_t \mid x_0)$ with $\bar\alpha_t = \prod_{s \le t} \alpha_s$.
#
# <details><summary>Solution 1</summary>
#
# ```python
# for sch in all_schedules:
#     print(sch.name, int((sch.snr < 1).nonzero()[0]))
# ```
# The linear schedule crosses SNR = 1 well before $T/2$; the cosine one close to $T/2$, because
# its $\log\mathrm{SNR}$ is nearly antisymmetric around the middle ($\log\mathrm{SNR}(T - t) \approx -\log\mathrm{SNR}(t)$).
# </details>
#
# <details><summary>Solution 2</summary>
#
# ```python
# u = torch.arange(T + 1, dtype=torch.float64) / T
# f = torch.sigmoid(-12 * (u - 0.5))
# ab = (f / f[0])[1:]
# sig_betas = (1 - ab / torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])).clamp(max=0.999)
# sig = schedules.Schedule("sigmoid", sig_betas)
# print((sig.snr < 0.01).sum().item(), "almost-noise steps")
# ```
# </details>
#
# <details><summary>Solution 3</summary>
#
# ```python
# frac = masks.missing_fraction(masks.make_masks("sparse", 500, 0.7, seed=0))
# print(frac.std().item(), math.sqrt(0.3 * 0.7 / 1024))  # measured, and the binomial prediction 0.0143
# ```
# The two agree to within the uncertainty of the measurement: a standard deviation estimated from 500 masks is
# itself uncertain by about $1/\sqrt{2 \cdot 500} \approx 3$ percent. Draw 5,000 masks and it settles at the prediction.
# </details>
#
# <details><summary>Solution 4</summary>
#
# Substitute: $x_2 = \sqrt{\alpha_1\alpha_2}\,x_0 + \sqrt{\alpha_2(1-\alpha_1)}\,\epsilon_1 + \sqrt{1-\alpha_2}\,\epsilon_2$.
# The last two terms are independent zero-mean Gaussians, so their sum is Gaussian with variance
# $\alpha_2(1-\alpha_1) + (1-\alpha_2) = 1 - \alpha_1\alpha_2$: it is $\sqrt{1-\alpha_1\alpha_2}\,\epsilon$. By induction
# over $t$ steps the signal is scaled by $\sqrt{\prod_s \alpha_s} = \sqrt{\bar\alpha_t}$ and the noise variance is
# $1 - \bar\alpha_t$, which is the closed form this notebook checks against the step-by-step chain.
# </details>
