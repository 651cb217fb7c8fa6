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
# # 03 · DDIM on a center hole: fast sampling, data consistency, and the training tricks that matter
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffusion-course/mnist-diffusion-inpainting/blob/main/notebooks/03_ddim_center_hole_data_consistency.ipynb)
#
# Notebook 02 sampled with 50 to 250 ancestral steps and trained for as long as it liked. Here the budget is the
# enemy: a 12x12 hole in the middle of every digit, a model small enough to train on a laptop CPU, and a sampler
# that should take a few dozen network calls. We derive DDIM (Song et al. 2021), which takes large deterministic
# (or partly random) steps, keep the known pixels right with data consistency, and then go through the training
# improvements people use (EMA weights, self-conditioning, coord-conv, P2 weighting, a hole-weighted loss, and
# what the network predicts) switching each one off and on, and measuring. The same model is trained by
# `python -m course_utils train`, and scored by `python -m course_utils eval` on any MNIST folder.
#
# ## What you will learn
#
# - Center-hole inpainting with a U-Net on $[x_t, m, y]$, and what the network should output: $\epsilon$, $x_0$ or $v$.
# - The DDIM update, derived, with $\eta$ from deterministic ($\eta = 0$) to DDPM-like ($\eta = 1$).
# - Data consistency after every reverse step, and repeating it (re-noise, denoise again).
# - EMA, self-conditioning, coord-conv, P2 weighting and a hole-weighted loss, each as a switch, with an ablation.
# - Hole-only PSNR, L1 and SSIM of one sample and of the mean of K samples, and why the two differ (for an exact
#   posterior sampler, by 2.5 dB in expected squared error at K = 8); class preservation and a Frechet distance
#   measured by a course classifier.
# - Checkpoints you can resume, and the `train` / `sample` / `eval` commands.
#
# ## What you need
#
# - Notebooks 01 (schedules, $q(x_t \mid x_0)$) and 02 (the U-Net, the DDPM posterior, hole metrics).
# - Runtime: the README's table (`ci` seconds; in `cpu` the course's shipped model is used and the minutes go to the
#   ablations; `TRAIN_YOUR_OWN = True` adds the training of your own, whose cell prints its time).

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

# %%
import dataclasses
import json
import math
import shutil
import time

import matplotlib.pyplot as plt
import torch
from IPython.display import Image, display

from course_utils import (baselines, center_hole, classifier, cli, config, data, diffusion, evaluation, masks,
                          metrics, models, plotting, pretrained, schedules, training)

profile = config.get_profile()
# The course ships this notebook's model, trained once with the `pretrained` recipe (pretrained/center_hole.json
# says how); in the cpu and full profiles the notebook uses it. TRAIN_YOUR_OWN = True trains this profile's own
# model here instead (and lets you change its settings, e.g. center_hole.KIND.config(profile, schedule="linear")).
# The ci profile always trains a tiny one.
TRAIN_YOUR_OWN = False
own = center_hole.KIND.config(profile)  # this profile's settings: its own recipe, evaluation sizes, ablation budget
cfg = own if TRAIN_YOUR_OWN else center_hole.KIND.default_config(profile)  # the model's settings
device = config.get_device()
# This notebook checks its own code against course_utils on a GPU too. GPUs multiply float32 matrices in TF32
# (10-bit mantissa) by default, which turns 1-ulp differences into visible ones (notebook 02): full float32 here.
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
SEED = config.seed_everything(0)
print(f"profile {profile.name}: the model's settings "
      f"({'the shipped recipe' if cfg.profile == 'pretrained' else 'this profile'})")
print(config.profile_table(cfg))
print(f"this profile's evaluation: {own.eval_size} test digits, K = {own.n_samples}; ablation rows: "
      f"{own.ablation_steps} steps of {own.ablation_batch} digits")
print("device:", device, "| seed:", SEED)

# %% [markdown]
# ## 1. The task: a 12x12 hole in the middle
#
# The mask is the same for every image: a square of side `cfg.hole` centred on the 32x32 canvas (1 = known,
# 0 = missing). It hides the middle of the digit, where a 3 and an 8, or a 0 and an 8, differ, so the known
# pixels often leave more than one answer. The observation is $y = m \odot x_0$. Train, validation (carved
# from MNIST's training split, for every choice made below) and test digits (only for the reported numbers):

# %%
train, val, test = data.load_splits(dataclasses.replace(cfg, eval_size=own.eval_size), seed=SEED)
print(f"train {len(train)} | validation {len(val)} | test {len(test)} digits (train_size {cfg.train_size} above is "
      "a cap: the training split of this MNIST, up to that many)")
hole = masks.center_hole(8, cfg.hole)
x_show = val.images[:8]
assert masks.missing_fraction(hole[:1]).item() == cfg.hole**2 / 32**2
plotting.show_rows({"digit": x_show, "observed y": hole * x_show}, masks={"observed y": hole},
                   title=f"Validation digits with a {cfg.hole}x{cfg.hole} center hole "
                         f"({100 * cfg.hole**2 / 1024:.0f}% of the pixels)", save="03_task")
plt.show()

# %% [markdown]
# The network gets the same inputs as in notebook 02, stacked as channels: the noisy image $x_t$, the mask
# $m$ and the observation $y$. Two optional extra inputs come in section 5: its own previous estimate of $x_0$
# (self-conditioning) and two channels with each pixel's coordinates (coord-conv).
#
# ## 2. What should the network predict?
#
# Every $x_t$ is a mix $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$. Knowing either $x_0$ or
# $\epsilon$ gives the other, so the network can output either, or the *velocity*
# $v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\,x_0$ (Salimans & Ho 2022):
#
# $$\text{from } \hat\epsilon:\ \hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon}{\sqrt{\bar\alpha_t}}, \qquad
# \text{from } \hat x_0:\ \hat\epsilon = \frac{x_t - \sqrt{\bar\alpha_t}\,\hat x_0}{\sqrt{1-\bar\alpha_t}}, \qquad
# \text{from } \hat v:\ \hat x_0 = \sqrt{\bar\alpha_t}\,x_t - \sqrt{1-\bar\alpha_t}\,\hat v,\ \
# \hat\epsilon = \sqrt{1-\bar\alpha_t}\,x_t + \sqrt{\bar\alpha_t}\,\hat v .$$
#
# The sampler needs both $\hat x_0$ and $\hat\epsilon$. If $\hat x_0$ falls outside $[-1, 1]$ we clip it and move
# $\hat\epsilon$ so that the pair still explains $x_t$.

# %%
def to_x0_eps(output, x_t, alpha_bar_t, prediction, clip=True):
    a, b = math.sqrt(alpha_bar_t), math.sqrt(1 - alpha_bar_t)
    if prediction == "eps":
        eps, x0 = output, (x_t - b * output) / a
    elif prediction == "x0":
        x0, eps = output, (x_t - a * output) / b
    else:  # "v"
        x0, eps = a * x_t - b * output, b * x_t + a * output
    if clip:
        clipped = x0.clamp(-1, 1)
        eps, x0 = eps + a / b * (x0 - clipped), clipped
    return x0, eps


sch = schedules.make_schedule(cfg.schedule, cfg.T)
x_t, out = torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32)
for prediction in ("eps", "x0", "v"):
    ours = to_x0_eps(out, x_t, sch.alpha_bars[400].item(), prediction)
    module = diffusion.x0_and_eps(out, x_t, 400, sch, prediction)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours, module)), prediction
    a, b = math.sqrt(sch.alpha_bars[400]), math.sqrt(1 - sch.alpha_bars[400])
    assert torch.allclose(a * ours[0] + b * ours[1], x_t, atol=1e-4)  # the pair explains x_t
print("to_x0_eps == diffusion.x0_and_eps for eps, x0 and v")

# %% [markdown]
# Why this matters here: with $\epsilon$-prediction, $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon)/\sqrt{\bar\alpha_t}$
# multiplies the network's error by $\sqrt{(1-\bar\alpha_t)/\bar\alpha_t} = 1/\sqrt{\mathrm{SNR}_t}$ (the cell below prints
# it, times 0.1). It is large only at the noisy end of the cosine schedule and falls below 1 about halfway down,
# but the noisy end is exactly where the content of a large hole is decided (the known pixels fix everything else);
# clipping $\hat x_0$ to [-1, 1] caps the damage there but cannot make it right. Predicting $x_0$ (or $v$) keeps the error of $\hat x_0$ at
# the size of the network's error. That is one explanation; section 5 shows a second one hidden in the loss, and
# section 9 measures which of the two carries the difference.

# %%
for t in (999, 900, 700, 400, 100):
    print(f"t = {t:4d}: an error of 0.1 in eps becomes an error of {0.1 * math.sqrt((1 - sch.alpha_bars[t]) / sch.alpha_bars[t]):9.3f} in x0_hat")

# %% [markdown]
# ## 3. DDIM: the same marginals, bigger steps
#
# DDPM's reverse step uses the posterior $q(x_{t-1} \mid x_t, x_0)$ of the Markov forward chain. Song et al. (2021)
# notice that training only ever uses the marginals $q(x_t \mid x_0)$, and build a family of *non-Markovian*
# forward processes with the same marginals. For two timesteps $s < t$ they ask for a Gaussian
# $q_\sigma(x_s \mid x_t, x_0)$ whose mean is a mix of $x_0$ and the noise direction of $x_t$,
#
# $$x_s = \sqrt{\bar\alpha_s}\,x_0 + \sqrt{1-\bar\alpha_s-\sigma_t^2}\;\underbrace{\frac{x_t - \sqrt{\bar\alpha_t}\,x_0}{\sqrt{1-\bar\alpha_t}}}_{\epsilon} + \sigma_t\,z, \qquad z \sim \mathcal N(0, I).$$
#
# If $x_t \sim q(x_t \mid x_0)$, the $\epsilon$ term is a standard normal independent of $z$, so $x_s$ has mean
# $\sqrt{\bar\alpha_s}\,x_0$ and variance $(1-\bar\alpha_s-\sigma_t^2) + \sigma_t^2 = 1-\bar\alpha_s$: the right marginal
# for any $\sigma_t$. Sampling replaces $x_0, \epsilon$ by the network's $\hat x_0, \hat\epsilon$ (DDIM eq. 12), and
# the free $\sigma_t$ is set with one knob $\eta$ (eq. 16):
#
# $$\sigma_t(\eta) = \eta \sqrt{\frac{1-\bar\alpha_s}{1-\bar\alpha_t}}\sqrt{1-\frac{\bar\alpha_t}{\bar\alpha_s}} .$$
#
# $\eta = 1$ gives back DDPM's posterior (notebook 02); $\eta = 0$ makes the DDIM update itself deterministic.
# (For plain sampling the only randomness is then the starting noise; the inpainting sampler of section 4 adds
# fresh noise to the known pixels at every step, so its samples still vary beyond the starting noise.) The steps
# need not be $t \to t-1$: the course's DDIM walks an evenly spaced sub-sequence $T-1, T-1-T/n, \dots, T/n-1$ and
# then jumps to the clean image. This grid is called *trailing* (diffusers' name; Lin et al. 2024 compare it with a
# `leading` grid, whose first step treats the pure-noise start as a less noisy level than it is). Notebook 02's
# `linspace` grid also starts at $T-1$ but ends at step 0, with rounded gaps.

# %%
def ddim_update(x0_hat, eps_hat, alpha_bar_t, alpha_bar_s, eta, z):
    sigma = eta * math.sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_s))
    return math.sqrt(alpha_bar_s) * x0_hat + math.sqrt(max(1 - alpha_bar_s - sigma**2, 0.0)) * eps_hat + sigma * z


g = torch.Generator().manual_seed(SEED)
x0_hat, eps_hat, z = (torch.randn(4, 1, 32, 32, generator=g) for _ in range(3))
t, s = 700, 650
ab_t, ab_s = sch.alpha_bars[t].item(), sch.alpha_bars[s].item()
for eta in (0.0, 0.5, 1.0):
    assert torch.allclose(ddim_update(x0_hat, eps_hat, ab_t, ab_s, eta, z),
                          diffusion.ddim_step(x0_hat, eps_hat, t, s, sch, eta, z), atol=1e-6)
# eta = 1 is DDPM: the posterior mean of notebook 02 plus its standard deviation times z
x_t = math.sqrt(ab_t) * x0_hat + math.sqrt(1 - ab_t) * eps_hat
mean, var = diffusion.posterior(x0_hat, x_t, t, s, sch)
assert torch.allclose(ddim_update(x0_hat, eps_hat, ab_t, ab_s, 1.0, z), mean + math.sqrt(var) * z, atol=1e-5)
# any eta keeps the marginal: start from x_t ~ q(x_t | x0) with the true x0, eps
x0_true = torch.full((200_000,), 0.5)
eps_true = torch.randn(200_000, generator=g)
x_t = math.sqrt(ab_t) * x0_true + math.sqrt(1 - ab_t) * eps_true
for eta in (0.0, 1.0):
    x_s = ddim_update(x0_true, eps_true, ab_t, ab_s, eta, torch.randn(200_000, generator=g))
    assert abs(x_s.mean() - 0.5 * math.sqrt(ab_s)) < 0.01 and abs(x_s.var() - (1 - ab_s)) < 0.01
print("DDIM update == diffusion.ddim_step; eta = 1 is the DDPM posterior; the marginal q(x_s | x0) is kept")
print("DDIM timesteps for 10 steps:", diffusion.timesteps(cfg.T, 10, "trailing"))

# %% [markdown]
# ## 4. Data consistency, and repeating it
#
# The model sees $y$ and $m$, but nothing forces its samples to agree with the known pixels. After every reverse
# step $t \to s$ we overwrite them with the observation *noised to the step we landed on*, so that the whole
# image is again a plausible $x_s$:
#
# $$x_s \leftarrow m \odot \big(\sqrt{\bar\alpha_s}\,y + \sqrt{1-\bar\alpha_s}\,z\big) + (1 - m) \odot x_s ,$$
#
# and the output keeps them exactly: $\hat x = m \odot y + (1 - m) \odot x$. The hole and the freshly noised known
# pixels may not fit together perfectly. One remedy is to *repeat* the step: re-noise the merged $x_s$ back to $t$
# with the forward process, $x_t = \sqrt{\bar\alpha_t/\bar\alpha_s}\,x_s + \sqrt{1-\bar\alpha_t/\bar\alpha_s}\,z$,
# and denoise again; `dc_repeats` = r denoises r times per step (r - 1 re-noisings; r = 1: no repeat), costing r
# network calls per step.
# This is RePaint's resampling (Lugmayr et al. 2022) with a jump of a single step, which the RePaint paper found too
# short to harmonise the image (it jumps back 10 steps); section 8 measures what repeats do for this model, and
# notebook 05 builds RePaint's longer jumps. Here is the whole sampler, written out:

# %%
@torch.no_grad()
def inpaint(model, y, m, steps, eta=0.0, dc_repeats=1, generator=None, prediction="x0"):
    randn = lambda: torch.randn(y.shape, generator=generator).to(y.device)
    ab = lambda i: 1.0 if i < 0 else sch.alpha_bars[i].item()  # index -1 = the clean image
    ts = diffusion.timesteps(sch.T, steps, "trailing")
    x, x0_hat = randn(), None
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < len(ts) else -1
        for r in range(dc_repeats):
            extra = (x0_hat,) if getattr(model, "self_condition", False) else ()
            out = model(x, torch.full((y.shape[0],), t, device=y.device), m, y, *extra)
            x0_hat, eps_hat = to_x0_eps(out, x, ab(t), prediction)
            z = randn() if eta > 0 and s >= 0 else torch.zeros_like(y)
            x_s = ddim_update(x0_hat, eps_hat, ab(t), ab(s), eta, z)
            x_s = m * (math.sqrt(ab(s)) * y + math.sqrt(1 - ab(s)) * randn()) + (1 - m) * x_s  # data consistency
            if r + 1 < dc_repeats:  # re-noise s -> t and denoise again
                x = math.sqrt(ab(t) / ab(s)) * x_s + math.sqrt(1 - ab(t) / ab(s)) * randn()
        x = x_s
    return m * y + (1 - m) * x


torch.manual_seed(SEED)
untrained = center_hole.build_center_hole_model(cfg).to(device).eval()
x_chk = val.images[:4].to(device)
m_chk = masks.center_hole(4, cfg.hole).to(device)
for eta, dc in ((0.0, 1), (1.0, 2)):
    ours = inpaint(untrained, m_chk * x_chk, m_chk, 5, eta, dc, torch.Generator().manual_seed(1), cfg.prediction)
    denoiser = diffusion.Denoiser(untrained, sch, cfg.prediction, (m_chk, m_chk * x_chk))
    module = diffusion.ddim_inpaint(denoiser, m_chk * x_chk, m_chk, 5, eta, dc, torch.Generator().manual_seed(1))
    assert torch.allclose(ours, module, atol=1e-4), (ours - module).abs().max()
    assert torch.equal(ours * m_chk, x_chk * m_chk), "known pixels must be kept exactly"
print("inpaint == diffusion.ddim_inpaint (eta 0 and 1, with and without repeats); known pixels kept exactly")

# %% [markdown]
# ## 5. The training improvements, each a switch
#
# This notebook's whole experiment lives in one module, `course_utils.center_hole`: the settings
# (`CenterHoleConfig`), the model, the loss on a batch (`inpaint_loss`, with every switch below) and the run
# (`center_hole.KIND.train`, which hands that loss to the course's one training loop, `training.fit`).
#
# **EMA.** Sample with an exponential moving average of the weights, $\theta_{\text{EMA}} \leftarrow d\,\theta_{\text{EMA}} + (1-d)\,\theta$,
# which smooths out the noise of the last optimiser steps. With few steps a fixed $d = 0.999$ would still remember
# the random initialisation, so the decay warms up: $d_k = \min(d, (1+k)/(10+k))$ at step $k$, which stays below
# $d = 0.999$ until step 8,990: the average spans roughly the last $(10+k)/9$ steps, a few hundred for a run of a
# few thousand steps and under twenty for a 150-step ablation row. The average only
# reads the weights and never feeds back into training, so a run with EMA and one without train exactly the same
# weights; switching EMA off is a choice of which weights to sample with, and costs no training run of its own.

# %%
def ema_step(ema, model, decay):
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.copy_(decay * e + (1 - decay) * p)


torch.manual_seed(1)
net_a, net_b, online = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
net_b.load_state_dict(net_a.state_dict())
ema_step(net_a, online, 0.9)
training.ema_update(net_b, online, 0.9)
assert torch.allclose(net_a.weight, net_b.weight) and torch.allclose(net_a.bias, net_b.bias)
print("EMA decay at steps 0, 10, 100, 1000:", [round(training.ema_decay_at(k, cfg.ema_decay or 0.999), 4)
                                             for k in (0, 10, 100, 1000)])

# %% [markdown]
# **Self-conditioning** (Chen et al. 2022). While sampling, the previous step's $\hat x_0$ is a good hint; feed it
# to the network as one more channel. In training, every batch first runs the network once without gradients to
# get that $\hat x_0$; half of the images (a coin per image) are given it on the second, trained pass, the other
# half zeros. The price is that extra forward pass at every step.
#
# **Coord-conv** (Liu et al. 2018). Convolutions are translation-equivariant: a filter does not know whether it is
# at the edge or in the middle. Two constant channels with each pixel's $(x, y)$ in $[-1, 1]$ tell it.

# %%
line = torch.linspace(-1, 1, 32)
coords = torch.stack(torch.meshgrid(line, line, indexing="xy"))  # channel 0: x (column), channel 1: y (row)
assert torch.equal(coords[None], models.coord_channels(1, 32))
print("input channels of this notebook's U-Net:",
      center_hole.build_center_hole_model(cfg).stem.in_channels, "(x_t, m, y",
      "+ x0_prev" if cfg.self_condition else "", "+ x, y" if cfg.coord_conv else "", ")")

# %% [markdown]
# **P2 weighting** (Choi et al. 2022). The loss at step $t$ is multiplied by $\lambda_t = 1/(k + \mathrm{SNR}(t))^\gamma$.
# Nearly clean steps (high SNR) only polish details a hole-filler hardly needs; $\gamma > 0$ moves the effort to
# the noisy steps where the digit's shape is decided. $\gamma = 0$ switches it off.
#
# **P2 on an $x_0$ target is not the paper's P2.** Choi et al. weight the $\epsilon$ loss. This notebook's network
# predicts $x_0$ and the weight multiplies the $x_0$ error. Both pairs explain the same $x_t$,
# $\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon = \sqrt{\bar\alpha_t}\,\hat x_0 + \sqrt{1-\bar\alpha_t}\,\hat\epsilon$, so
# $x_0 - \hat x_0 = (\hat\epsilon - \epsilon)\,\sqrt{1-\bar\alpha_t}/\sqrt{\bar\alpha_t}$ and
#
# $$\|x_0 - \hat x_0\|^2 = \frac{\|\epsilon - \hat\epsilon\|^2}{\mathrm{SNR}(t)}, \qquad
# \lambda_t\,\|x_0 - \hat x_0\|^2 = \frac{1}{\mathrm{SNR}(t)\,(1 + \mathrm{SNR}(t))}\,\|\epsilon - \hat\epsilon\|^2
# \quad (k = \gamma = 1).$$
#
# An $x_0$ loss is already an $\epsilon$ loss weighted by $1/\mathrm{SNR}(t)$; with P2 on top the noisy steps
# weigh even more. So "predict $x_0$" changes two things at once: what the network outputs, and how the loss
# weighs the timesteps. Section 9's control row separates them.
#
# **Hole-weighted loss.** The known pixels are given, and the evaluation scores only the hole; the loss scores every
# pixel, and this switch makes the hole count more. Pixels in the hole get weight
# `hole_weight` relative to known ones: $\mathcal L = \sum_p w_p \lambda_t (\text{target}_p - \text{output}_p)^2 / \sum_p w_p$.

# %%
def p2(snr, k, gamma):
    return 1.0 / (k + snr) ** gamma


t_all = torch.arange(sch.T)
assert torch.allclose(p2(sch.snr, 1.0, 1.0).float(), training.p2_weight(sch, t_all, 1.0, 1.0))
m1 = masks.center_hole(1, cfg.hole)
assert torch.equal(1 + (4.0 - 1) * (1 - m1), training.pixel_weights(m1, 4.0))

# the identity, on random digits, noise and network errors at five timesteps
x0_id, eps_id = torch.rand(5, 1, 32, 32) * 2 - 1, torch.randn(5, 1, 32, 32)
t_id = torch.tensor([10, 200, 500, 800, 990])
x_t_id = schedules.q_sample(x0_id, t_id, sch, eps_id)
eps_hat_id = eps_id + 0.1 * torch.randn_like(eps_id)
x0_hat_id = diffusion.x0_and_eps(eps_hat_id, x_t_id, t_id, sch, "eps", clip_x0=False)[0]
x0_err, eps_err = ((x0_id - x0_hat_id) ** 2).sum((1, 2, 3)), ((eps_id - eps_hat_id) ** 2).sum((1, 2, 3))
snr_id = sch.snr[t_id].float()
assert torch.allclose(x0_err, eps_err / snr_id, rtol=1e-3)
print("||x0 - x0_hat||^2 = ||eps - eps_hat||^2 / SNR(t); the eps weight of P2 on an x0 target at t =",
      t_id.tolist(), ":", [f"{w:.3g}" for w in (1 / (snr_id * (1 + snr_id))).tolist()])
fig, ax = plt.subplots(figsize=(6, 3.2))
for gamma in (0.0, 0.5, 1.0):
    ax.semilogy(t_all, p2(sch.snr, cfg.p2_k, gamma), label=f"gamma = {gamma:g}")
ax.set(xlabel="timestep t", ylabel="loss weight", title=f"P2 weights, k = {cfg.p2_k:g} ({cfg.schedule} schedule)")
ax.legend()
plotting.save_figure(fig, "03_p2_weights")
plt.show()

# %% [markdown]
# ## 6. Training, with checkpoints like a real run
#
# `center_hole.KIND.obtain(cfg)` gives the trained model. In the `cpu` and `full` profiles that is the course's
# shipped model (`pretrained/center_hole.pt`, checked against its sha256 and config), made once by the loop below
# with the `pretrained` recipe (`python -m course_utils train --profile pretrained --out DIR`, longer); its
# manifest keeps the losses and validation scores plotted below. With `TRAIN_YOUR_OWN = True` (and in `ci`) it
# trains here, with `training.fit`, notebook 02's loop grown up: AdamW, warm-up then cosine learning rate, gradient
# clipping, EMA. Every `cfg.save_every` steps it writes `last.pt` atomically (model, EMA, optimiser, generator
# state, step, losses, config) into this configuration's own folder,
# `outputs/03_center_hole/<profile>-<hash of the config>/`, so an interrupted run resumes exactly where it stopped,
# and a panel of validation digits reconstructed by the EMA model. A finished run of the same configuration is
# reused; a run of another profile or setting lives in another folder and is never touched. From a terminal:
# `python -m course_utils train --profile cpu --out DIR` (add `--resume` to continue).

# %%
trained = center_hole.KIND.obtain(cfg, device)  # the shipped model, or reuse / resume / train this profile's own
checkpoint, model = trained.path, trained.model
# where this notebook writes its results: the run's folder, or outputs/03_center_hole/shipped-<profile>/ for the
# shipped model
run_dir = (config.output_dir("03_center_hole", f"shipped-{profile.name}") if trained.status == "shipped"
           else trained.path.parent)
losses, history, train_seconds = trained.extra["losses"], trained.extra["history"], trained.extra["seconds"]
if trained.status == "shipped":  # its manifest says how it was made
    print(pretrained.provenance(trained.extra["manifest"], train, "the validation digits may hold digits it has "
                                "seen (the test digits, MNIST's test split, cannot)"))
    print("how it ran:", trained.extra["manifest"]["note"])
cfg_dict = json.loads(json.dumps(dataclasses.asdict(cfg)))  # the settings as plain JSON, for the metrics file
print(f"{trained.status} {checkpoint}: {len(losses)} steps, {train_seconds / 60:.1f} min of training")

# %%
plotting.plot_training(losses, history, "weighted loss", "hole PSNR (dB)",
                       f"validation: 64 digits, 1 sample, DDIM {cfg.sample_steps}", save="03_training_curves")
plt.show()
for step, seconds, psnr in history:
    print(f"step {step:5d}  {seconds / 60:5.1f} min  validation hole PSNR {psnr:6.2f} dB")
assert sum(losses[-(len(losses) // 10):]) < sum(losses[: len(losses) // 10]), "the loss should go down"

# %% [markdown]
# The last panel written during training (ground truth / masked / EMA reconstruction; a run trained here writes
# them, the shipped model's are not shipped):

# %%
panels = sorted(run_dir.glob("panel_[0-9]*.png"))
print(f"{len(panels)} panels in {run_dir}")
if panels:
    display(Image(filename=str(panels[-1]), width=700))

# %% [markdown]
# ## 7. Scoring unseen test digits
#
# The course's evaluation harness (`evaluation.evaluate`, what `python -m course_utils eval` runs) draws K samples
# per digit with DDIM (`cfg.sample_steps` steps, $\eta = 0$, data consistency) and reports hole PSNR, hole L1 and
# hole SSIM for one sample and for the mean of the K samples, against classical baselines on the same digits and
# masks: zero fill, nearest known pixel, harmonic inpainting (the smoothest fill: Laplace's equation with the known
# pixels as boundary values), and the **nearest neighbour**, which copies the hole from the training digit whose
# known pixels are closest.
#
# PSNR cannot tell a blurry average from a sharp wrong digit, so the harness also asks a small MNIST classifier
# that the course trained itself with the same loop as every model (`course_utils.classifier`; `ci` trains a
# tiny one): **class preservation** is the share of reconstructions it assigns the digit's true label, and the
# **Frechet distance** compares its penultimate-layer features of single samples with those of the clean digits
# (0: the two sets look alike to the classifier; the FID recipe, with the course's network instead of Inception).
# The estimate is biased upward on few digits, so compare Frechet distances only at the same number of digits.

# %%
clf, clf_info = classifier.course_classifier(profile.name, device=device)
print(f"course classifier: {clf_info['status']} ({clf_info['seconds']:.0f} s of training), "
      f"validation accuracy {100 * clf_info['val_accuracy']:.1f}%" + (f"; note: {clf_info['note']}" if clf_info["note"] else ""))
task = f"center:{cfg.hole}"
x_test, y_labels = test.images[: own.eval_size], test.labels[: own.eval_size]
method = center_hole.center_hole_method(model, cfg, evaluation.SamplerOptions(steps=cfg.sample_steps))
results, per_image, samples = evaluation.evaluate(method, x_test, y_labels, task, k=own.n_samples, seed=SEED,
                                                  classifier=clf, library=train.images)
results["config"].update({"notebook": "03", "profile": profile.name, "model": cfg_dict, "device": str(device),
                          "train_images": len(train), "train_steps": len(losses), "train_minutes": train_seconds / 60})
print(evaluation.format_results(results))
metrics_file = run_dir / f"metrics_{profile.name}.json"
metrics_file.write_text(json.dumps(results, indent=2))
print("saved", metrics_file)

# %%
m = results["metrics"]
nn_psnr = results["baselines"]["nearest_neighbour"]["psnr"]
mean_psnr, single_psnr = m["psnr"]["mean_k"], m["psnr"]["single"]
assert results["known_pixels_max_abs_error"] == 0.0, "data consistency must keep every known pixel"
if profile.name in ("cpu", "full"):
    assert mean_psnr >= nn_psnr + 1.0, f"the mean of K should beat nearest neighbour by 1 dB: {mean_psnr:.2f} vs {nn_psnr:.2f}"
    assert single_psnr > results["baselines"]["zero_fill"]["psnr"]
    print(f"key result: hole PSNR, mean of {own.n_samples}: {mean_psnr:.2f} dB, {mean_psnr - nn_psnr:+.2f} dB over "
          "nearest neighbour")
else:
    print(f"key result: ci profile, not judged (mean of K {mean_psnr:.2f} dB, nearest neighbour {nn_psnr:.2f} dB)")
best_class = max(results["baselines"], key=lambda b: results["baselines"][b]["class_acc"])
print(f"class preservation: one sample {m['class_acc']['single']:.3f}, mean of {own.n_samples} "
      f"{m['class_acc']['mean_k']:.3f}, best baseline ({best_class}) {results['baselines'][best_class]['class_acc']:.3f}; "
      f"the classifier recognises {results['classifier_test_accuracy']:.3f} of the clean digits")
print(f"Frechet distance of single samples {m['frechet']['single']:.2f}, nearest neighbour "
      f"{results['baselines']['nearest_neighbour']['frechet']:.2f}, harmonic {results['baselines']['harmonic']['frechet']:.2f}")

# %% [markdown]
# What the two classifier numbers add: PSNR rewards being close on average, and says nothing about whether the fill
# still reads as the right digit or looks like a real one. Class preservation asks whether the digit survived the
# hole; read it against zero fill's line, which shows how often the known pixels alone already give the class away.
# The Frechet distance asks whether the reconstructions, as a set, look like real digits: compare the smooth fills
# (harmonic, zero fill: a grey smear or a grey square) with the sharp ones (nearest neighbour, one sample) in the
# lines above.

# %% [markdown]
# **Why one sample scores below the mean of K.** A sample $\tilde x$ from the posterior $p(x_0 \mid y)$
# is a different plausible digit from the true $x_0$, drawn independently given $y$. With $\mu = E[x_0 \mid y]$,
#
# $$E\lVert \tilde x - x_0 \rVert^2 = E\lVert \tilde x - \mu \rVert^2 + E\lVert x_0 - \mu \rVert^2 = 2\,E\lVert x_0 - \mu \rVert^2 ,$$
#
# twice the error of the posterior mean, $10 \log_{10} 2 = 3.01$ dB worse. The mean of K samples estimates $\mu$
# (its error is $(1 + 1/K)$ times the minimum), so the ideal gap between one sample and the mean of K is
# $10 \log_{10}(2 / (1 + 1/K))$: 2.5 dB for K = 8, 1.25 dB for K = 2. The mean of K wins PSNR by construction while looking blurry
# where the digit is ambiguous, and a single sample is sharp and plausible, which PSNR punishes. Report both.
#
# A measured gap below that ideal is not, by itself, proof that the samples vary too little. Let the samples spread
# by $V$ around their own mean, and let that mean miss $\mu$ by $B$ (both per image, in squared error). Then one
# sample has error $\mathrm{MMSE} + B + V$ and the mean of K has $\mathrm{MMSE} + B + V/K$; exact posterior samples
# ($V = \mathrm{MMSE}$, $B = 0$) give the ideal gap (so does any $V = \mathrm{MMSE} + B$), and a smaller one only
# says $V < \mathrm{MMSE} + B$: too little spread, a biased mean, or both (notebook 06 measures $V$ and $B$). A
# sampler that always returned the posterior mean would show no gap at all (and a blurry "sample"). The ideal gap
# is a statement about the squared error pooled over all images; the harness averages PSNR per image, which weighs
# the images differently, so the cell below prints the gap both ways.

# %%
gap = mean_psnr - single_psnr
hole_mask = masks.center_hole(len(x_test), cfg.hole)
pooled = lambda pred: 10 * math.log10(1 / metrics.hole_mse(pred, x_test, hole_mask).mean().item())  # PSNR of the pooled MSE
pooled_gap = pooled(samples.mean(0)) - pooled(samples[0])
print(f"measured gap: {gap:.2f} dB averaging PSNR per image, {pooled_gap:.2f} dB from the pooled squared error "
      f"(an exact posterior sampler: 3.01 dB minus 10 log10(1 + 1/K) = "
      f"{10 * math.log10(2) - 10 * math.log10(1 + 1 / own.n_samples):.2f} dB for K = {own.n_samples}, pooled)")
pick = torch.arange(8)
mask8 = masks.center_hole(8, cfg.hole)
nn_fill = baselines.nearest_neighbour_fill(mask8 * x_test[pick], mask8, train.images)
fig = plotting.show_rows({"ground truth": x_test[pick], "masked": mask8 * x_test[pick], "nearest neighbour": nn_fill,
                          "1 sample": samples[0, pick], f"mean of {own.n_samples}": samples[:, pick].mean(0)},
                         masks={"masked": mask8}, n=8,
                         title=f"Unseen test digits ({profile.name} profile, DDIM {cfg.sample_steps} steps, eta 0)")
fig.savefig(run_dir / "panel_final.png", dpi=110, bbox_inches="tight")
plotting.save_figure(fig, "03_panel_final")
plt.show()

# %% [markdown]
# The K samples of a few digits, and where they disagree (per-pixel standard deviation): the uncertainty sits
# in the hole, on strokes that could go more than one way.

# %%
k_show = min(own.n_samples, 6)
rows = {"masked": mask8[:4] * x_test[:4]}
for j in range(k_show):
    rows[f"sample {j + 1}"] = samples[j, :4]
rows["std (x4)"] = (samples[:, :4].std(0) * 4 - 1).clamp(-1, 1)  # 0 std = black, 0.5 or more = white
rows["ground truth"] = x_test[:4]
fig = plotting.show_rows(rows, masks={"masked": mask8[:4]}, n=4,
                         title="Posterior samples and their per-pixel standard deviation")
fig.savefig(run_dir / "samples.png", dpi=110, bbox_inches="tight")
plotting.save_figure(fig, "03_samples")
plt.show()

# %% [markdown]
# ## 8. Ablation 1: the sampler
#
# On the trained model, on validation digits: the number of DDIM steps, $\eta$, and data-consistency repeats, each
# varied from the default (`cfg.sample_steps` steps, $\eta = 0$, no repeat). Seconds are per image and sample,
# batched, on this machine.

# %%
n_abl = {"ci": 8, "cpu": 32, "full": 500}[profile.name]
k_abl = {"ci": 2, "cpu": 4, "full": 8}[profile.name]
start = 64 if len(val) >= 64 + 2 else 0  # after the 64 validation digits training scored (ci has too few)
x_abl = val.images[start : start + n_abl]
settings = [(steps, 0.0, 1) for steps in sorted({10, 25, 50, 100, cfg.sample_steps})]  # with the default
settings += [(cfg.sample_steps, 1.0, 1), (cfg.sample_steps, 0.0, 2), (cfg.sample_steps, 0.0, 4)]
labels_abl = val.labels[start : start + n_abl]


def score_on_validation(net, row_cfg, steps, eta=0.0, dc=1):
    """One sampler setting of a model on the ablation digits (validation, never test), without baselines: the
    harness's summary, plus each digit's hole PSNR of the mean of K (``psnr_mean_k_each``)."""
    method = center_hole.center_hole_method(net, row_cfg, evaluation.SamplerOptions(steps, eta, dc))
    summary, each, _ = evaluation.evaluate(method, x_abl, labels_abl, task, k=k_abl, seed=SEED, baselines=False,
                                           progress=False)
    return dict(summary, psnr_mean_k_each=each["psnr_mean_k"].tolist())


def paired_difference(row, base):
    """Mean and standard error over the digits of a row's PSNR (mean of K) minus the base row's on the same digits."""
    d = torch.tensor(row["psnr_mean_k_each"]) - torch.tensor(base["psnr_mean_k_each"])
    return d.mean().item(), (d.std() / math.sqrt(len(d))).item()


sampler_rows = {(steps, eta, dc): score_on_validation(model, cfg, steps, eta, dc) for steps, eta, dc in settings}
default_row = sampler_rows[(cfg.sample_steps, 0.0, 1)]
print(f"{len(x_abl)} validation digits, K = {k_abl}; 'vs default' is the mean of K's PSNR minus the default "
      f"setting's ({cfg.sample_steps} steps, eta 0, dc 1) on the same digits, +- its standard error")
print(f"{'steps':>5} {'eta':>4} {'dc':>3} {'PSNR 1':>7} {'PSNR K':>7} {'vs default':>15} {'L1 K':>7} {'calls':>6} "
      f"{'ms/img':>7}")
for (steps, eta, dc), r in sampler_rows.items():
    diff, se = paired_difference(r, default_row)
    print(f"{steps:>5} {eta:>4g} {dc:>3} {r['metrics']['psnr']['single']:>7.2f} {r['metrics']['psnr']['mean_k']:>7.2f} "
          f"{diff:>+7.2f} +- {se:4.2f} {r['metrics']['l1']['mean_k']:>7.4f} {r['network_calls_per_image']:>6g} "
          f"{1000 * r['seconds_per_image']:>7.1f}")

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for (steps, eta, dc), r in sampler_rows.items():
    ax.scatter(1000 * r["seconds_per_image"], r["metrics"]["psnr"]["mean_k"], color="C0" if eta == 0 and dc == 1 else "C1")
    ax.annotate(f"{steps} st, eta {eta:g}, dc {dc}", (1000 * r["seconds_per_image"], r["metrics"]["psnr"]["mean_k"]),
                fontsize=7, xytext=(3, 3), textcoords="offset points")
ax.set(xscale="log", xlabel="ms per image and sample (log)", ylabel=f"hole PSNR, mean of {k_abl} (dB)",
       title="Sampler settings: quality against cost (validation digits)")
plotting.save_figure(fig, "03_sampler_ablation")
plt.show()

# %% [markdown]
# How to read the table: every row samples the same model on the same digits, so compare rows through their
# difference from the default, not through the raw PSNRs. A difference smaller than about twice its standard error
# could be the draw of digits and noise rather than the setting. The rows with $\eta = 0$ and dc 1 ask what more
# DDIM steps buy, at a cost proportional to the steps (section 3: the update keeps the right marginal for any gap
# between steps when $\hat x_0$ is the true $x_0$; a network gives only its estimate, and a long step leans on it
# longer, so coarse steps can cost quality even with a perfect network; the mean of K can also score higher when
# the samples spread less, so fewer steps need not show a loss in this column); $\eta = 1$ asks whether
# fresh noise at every step helps the spread of the K samples; the repeat rows ask what section 4's repeated data
# consistency buys for its extra network calls. A prediction to check against them: this model is *given* the
# known pixels and the mask as input channels, so its $\hat x_0$ is already fitted to them, and repeats, a remedy
# for a network that never sees the observation (notebook 05's prior), have little left to fix here; the repeat
# rows' "vs default" column says whether that holds. Choose a setting on rows like these, then report it once on
# test digits, as section 7 did.

# %% [markdown]
# ## 9. Ablation 2: the training switches
#
# Each row trains a fresh model with one switch flipped from the defaults, and samples it the default way. The
# cost of a row is a whole training run, so the rows start from this profile's own recipe (`own`, not the shipped
# one) and their budget depends on the profile: in `full` every row gets that profile's own training budget (a
# wider network than the shipped model's, so its default row is not the main model); in `cpu` and `ci` the rows are
# **short equal-budget runs** (`own.ablation_steps` steps of `own.ablation_batch` digits), much shorter than the
# main model above, so they rank the switches early in training and say nothing about where each would end. They
# are trained afresh on every run, in class too. The training minutes show what a switch costs. One row
# needs no run of its own: EMA does not change what is trained (section 5), so "EMA off" samples the default
# row's trained weights where the default row samples their average.

# %%
flips = {
    "defaults": {},
    ("EMA off" if own.ema_decay else "EMA on (0.999)"): {"ema_decay": 0.0} if own.ema_decay else {"ema_decay": 0.999},
    "self-conditioning " + ("off" if own.self_condition else "on"): {"self_condition": not own.self_condition},
    "coord-conv " + ("off" if own.coord_conv else "on"): {"coord_conv": not own.coord_conv},
    "P2 " + ("off" if own.p2_gamma else "on (gamma 1)"): {"p2_gamma": 0.0 if own.p2_gamma else 1.0},
    "hole weight " + ("1 (off)" if own.hole_weight != 1 else "4"): {"hole_weight": 1.0 if own.hole_weight != 1 else 4.0},
    "predict eps instead of " + own.prediction: {"prediction": "eps"},
}
if own.prediction == "eps":
    flips.pop("predict eps instead of eps")
    flips["predict x0 instead of eps"] = {"prediction": "x0"}


def eps_output_x0_loss(model, x0, mask, schedule, generator, prediction, p2_k, p2_gamma, hole_weight):
    """The control row's loss: the network outputs eps (and is sampled as such), the loss scores the x0_hat it
    implies, with the same P2 and hole weights as the x0 row. Same draws as center_hole.inpaint_loss."""
    assert prediction == "eps" and not getattr(model, "self_condition", False)
    n = x0.shape[0]
    t, eps, x_t = training.noised_batch(x0, schedule, generator)  # t, eps, then x_t by DDPM eq. 4
    x0_hat = diffusion.x0_and_eps(model(x_t, t, mask, mask * x0), x_t, t, schedule, "eps", clip_x0=False)[0]
    w_pix, w_t = training.pixel_weights(mask, hole_weight), training.p2_weight(schedule, t, p2_k, p2_gamma).view(n, 1, 1, 1)
    return (w_t * w_pix * (x0 - x0_hat) ** 2).sum() / w_pix.sum()


CONTROL = "eps output, loss on its x0"
losses_of = {}
if own.prediction == "x0" and not own.self_condition:  # the control is only defined against an x0 model
    flips[CONTROL] = {"prediction": "eps"}
    losses_of[CONTROL] = eps_output_x0_loss
budget = dict(steps=own.ablation_steps, batch_size=own.ablation_batch, save_every=own.ablation_steps,
              warmup=min(own.warmup, own.ablation_steps // 10 + 1))
switch_rows, runs = {}, {}
for name, change in flips.items():
    row_cfg = dataclasses.replace(own, **budget, **change)
    if change == {"ema_decay": 0.0}:
        # EMA only reads the weights (section 5), so a run without it trains the very weights the default run
        # trained (tests/test_center_hole_training.py checks it bit for bit): sample those instead of training again
        row, how = runs["defaults"], "the default row's run, sampled with its trained weights"
        net = row["model"]
    else:
        row_dir = run_dir / "ablation" / name.replace(" ", "_")
        shutil.rmtree(row_dir, ignore_errors=True)
        torch.manual_seed(SEED)
        control = losses_of.get(name)
        row = runs[name] = center_hole.KIND.train(
            row_cfg, train, row_dir, device, seed=SEED, progress=False,
            loss=None if control is None else center_hole.batch_loss(row_cfg, train, device, control))
        net, how = row["ema"], f"trained in {row['seconds'] / 60:4.1f} min"
    res = score_on_validation(net, row_cfg, own.sample_steps)
    switch_rows[name] = dict(res, train_minutes=row["seconds"] / 60)
    print(f"{name:<32} {how}: hole PSNR 1 sample "
          f"{res['metrics']['psnr']['single']:.2f}, mean of {k_abl} {res['metrics']['psnr']['mean_k']:.2f} dB")

# %%
print(f"Training switches, {own.ablation_steps} steps of {own.ablation_batch} digits per row "
      f"({'the full profile recipe' if profile.name == 'full' else 'a short equal-budget run, not the main model'}); "
      f"{len(x_abl)} validation digits, K = {k_abl}, DDIM {own.sample_steps}")
print(f"{'row':<32} {'PSNR 1':>7} {'PSNR K':>7} {'vs default':>15} {'train min':>9}")
for name, r in switch_rows.items():
    diff, se = paired_difference(r, switch_rows["defaults"])
    print(f"{name:<32} {r['metrics']['psnr']['single']:>7.2f} {r['metrics']['psnr']['mean_k']:>7.2f} "
          f"{diff:>+7.2f} +- {se:4.2f} {r['train_minutes']:>9.2f}")
plotting.bar_compare({name: {"hole_psnr": r["metrics"]["psnr"]["mean_k"]} for name, r in switch_rows.items()}, "hole_psnr",
                     title=f"Training switches ({profile.name}: {own.ablation_steps} steps each), "
                           f"hole PSNR of the mean of {k_abl}", save="03_switch_ablation")
plt.show()
if CONTROL in switch_rows:
    # the x0 row (defaults) and the control share the loss weighting over t and differ in what the network outputs;
    # the control and the eps row share the output and differ in the weighting
    for which, label in (("single", "1 sample"), ("mean_k", f"mean of {k_abl}")):
        psnr = {name: switch_rows[name]["metrics"]["psnr"][which] for name in ("defaults", CONTROL, "predict eps instead of x0")}
        print(f"predict x0 vs eps, {label}: {psnr['defaults'] - psnr['predict eps instead of x0']:+.2f} dB = "
              f"{psnr['defaults'] - psnr[CONTROL]:+.2f} from what the network outputs (same loss weights) "
              f"+ {psnr[CONTROL] - psnr['predict eps instead of x0']:+.2f} from how the loss weighs the timesteps "
              "(same output)")
(run_dir / f"ablations_{profile.name}.json").write_text(json.dumps(
    {"sampler": {f"steps={s},eta={e:g},dc={d}": r for (s, e, d), r in sampler_rows.items()},
     "switches": switch_rows, "n_images": len(x_abl), "k": k_abl,
     "switch_budget": {"steps": own.ablation_steps, "batch_size": own.ablation_batch}}, indent=2))

# %% [markdown]
# How to read the rows: each is one seed of a short run scored on few validation digits, so differences of a few
# tenths of a dB may be noise. The $\pm$ column is the standard error over the digits only; how far a row moves
# with another training seed comes on top (train one row again with another seed to see it). Look for
# the switch that stands out, on one sample and on the mean of K alike. When we tuned the recipe on the validation
# split, that was **what the network predicts** (predicting $\epsilon$ leaves $\hat x_0$ poor at the noisy steps,
# section 2); self-conditioning did not pay there either, at equal steps or at equal time (its extra forward pass
# makes a step slower; `docs/history.md` has the numbers of that tuning). A row that differs from the defaults by
# about half a dB is worth a longer run before it changes the recipe.
#
# The row *eps output, loss on its x0* is the control section 5 asked for: an $\epsilon$-output network trained on
# the error of the $\hat x_0$ it implies, with the same weights over $t$ as the default $x_0$ model (the identity
# of section 5 makes that loss an $\epsilon$ loss weighted by $1/(\mathrm{SNR}(1+\mathrm{SNR}))$). The two lines
# printed under the table split "predict $x_0$ instead of $\epsilon$" in two, for one sample and for the mean of
# K: the default row against the control is what the network outputs, at equal loss weights; the control against
# the $\epsilon$ row is how the loss weighs the timesteps, at equal output. The rows are short and scored on few
# validation digits, so read tenths of a dB as noise, and trust a share only where the two lines agree on its
# sign. Where the output's share dominates, one plausible reason (not measured here) is how the output is
# parameterised: an $\epsilon$ output
# reaches $\hat x_0$ only through section 2's factor $1/\sqrt{\mathrm{SNR}_t}$, so to be as right in $x_0$ at the
# noisy steps it must be that factor more precise, and those steps' weights in its loss dominate the gradient,
# which is clipped to norm 1.
#
# ## 10. Into the module
#
# The sampler written in section 4 and `diffusion.ddim_inpaint` give the same reconstructions on the trained model
# too, and `python -m course_utils sample` samples the same model from the command line (its own digits and seed).

# %%
y8 = (mask8 * x_test[pick]).to(device)
ours = inpaint(model, y8, mask8.to(device), cfg.sample_steps, 0.0, 2, torch.Generator().manual_seed(5), cfg.prediction)
denoiser = diffusion.Denoiser(model, sch, cfg.prediction, (mask8.to(device), y8))
module = diffusion.ddim_inpaint(denoiser, y8, mask8.to(device), cfg.sample_steps, 0.0, 2,
                                torch.Generator().manual_seed(5))
assert torch.allclose(ours, module, atol=1e-4), (ours - module).abs().max()
print("trained model: notebook sampler == diffusion.ddim_inpaint")
checkpoint_arg = "pretrained:center_hole" if trained.status == "shipped" else str(checkpoint)
assert cli.main(["sample", "--checkpoint", checkpoint_arg, "--steps", str(cfg.sample_steps), "--n", "8",
                 "--out", str(run_dir / "cli_sample.png")]) == 0

# %% [markdown]
# ## Summary
#
# - DDIM keeps the marginals $q(x_t \mid x_0)$ of DDPM and takes large steps:
#   $x_s = \sqrt{\bar\alpha_s}\,\hat x_0 + \sqrt{1-\bar\alpha_s-\sigma^2}\,\hat\epsilon + \sigma z$; $\eta$ sets $\sigma$ from 0
#   (deterministic) to DDPM's posterior (1).
# - Data consistency re-imposes the known pixels, noised to the step landed on, after every step; repeating a step
#   (re-noise, denoise: RePaint with a one-step jump) costs a network call per repeat, and section 8 measures
#   whether it pays for this model.
# - Under a tight budget, what the network predicts mattered most; each other trick is a switch, to be measured on
#   validation data at the budget you have, counting its cost in time as well as in steps.
# - A single posterior sample is sharp and, for an exact posterior sampler, $10\log_{10}(2/(1+1/K))$ dB (2.5 dB at
#   K = 8) worse in expected pooled squared error than the mean of K samples by construction; report both, and let a classifier judge what PSNR cannot
#   (class preservation, Frechet distance).
#
# Next, notebook 04 conditions on sparse or corrupted observations through a control encoder and cross-attention.
#
# ## Exercises
#
# 1. The model was trained with a 12x12 hole. Evaluate it with holes of side 8 and 16 (16 digits, K = 2). How does
#    it cope with a hole size it never saw?
# 2. Trace the deterministic sampler: for one test digit, show $\hat x_0$ at every DDIM step (`trajectory=`).
#    When is the digit's identity decided?
# 3. Sweep $\eta$ over 0, 0.5 and 1 (validation digits, K = 4). Does randomness in the steps help the single
#    sample, the mean of K, or neither?
# 4. *Pen and paper.* Let $\hat x = \mathbb E[x_0 \mid y]$ be the posterior mean and $\mathrm{MMSE} = \mathbb E\|x_0 - \hat x\|^2$.
#    If $\tilde x$ is an exact posterior sample, drawn independently of $x_0$ given $y$, show that
#    $\mathbb E\|\tilde x - x_0\|^2 = 2\,\mathrm{MMSE}$, and that the mean of K such samples has error
#    $(1 + 1/K)\,\mathrm{MMSE}$. Where does this notebook's expected gap $10\log_{10}(2/(1+1/K))$ come from?
#
# <details><summary>Solution 1</summary>
#
# ```python
# for side in (8, 16):
#     res, _, _ = evaluation.evaluate(method, test.images[:16], test.labels[:16], f"center:{side}", k=2,
#                                     library=train.images, baselines=["nearest_neighbour"], progress=False)
#     print(side, round(res["metrics"]["psnr"]["mean_k"], 2), "dB; nearest neighbour",
#           round(res["baselines"]["nearest_neighbour"]["psnr"], 2))
# ```
# The network sees the mask as an input, so it does something sensible with other sizes, but it was never trained
# on them: compare its margin over the nearest neighbour with the 12x12 margin. A model meant for several sizes
# should be trained on several sizes.
# </details>
#
# <details><summary>Solution 2</summary>
#
# ```python
# trace = []
# m1 = masks.center_hole(1, cfg.hole).to(device)
# x1 = test.images[:1].to(device)
# denoiser = diffusion.Denoiser(model, sch, cfg.prediction, (m1, m1 * x1))
# diffusion.ddim_inpaint(denoiser, m1 * x1, m1, cfg.sample_steps, generator=torch.Generator().manual_seed(0),
#                        trajectory=trace)
# plotting.show_strip([x0 for _, _, x0 in trace[::max(1, len(trace) // 8)]],
#                     [f"t={t}" for t, _, _ in trace[::max(1, len(trace) // 8)]], title="x0_hat along the DDIM path")
# plt.show()
# ```
# The identity of the digit shows up in the first few, noisiest steps; the rest sharpen strokes.
# </details>
#
# <details><summary>Solution 3</summary>
#
# ```python
# for eta in (0.0, 0.5, 1.0):
#     eta_method = center_hole.center_hole_method(model, cfg, evaluation.SamplerOptions(cfg.sample_steps, eta))
#     res, _, _ = evaluation.evaluate(eta_method, x_abl, labels_abl, task, k=k_abl, seed=SEED, baselines=False,
#                                     progress=False)
#     print(f"eta {eta}: 1 sample {res['metrics']['psnr']['single']:.2f} dB, "
#           f"mean of {k_abl} {res['metrics']['psnr']['mean_k']:.2f} dB")
# ```
# Compare with the eta rows of section 8 (the same digits and K). The extra noise of eta = 1 gives the sampler a
# chance to correct early mistakes, but with few steps each noise injection is large; which effect wins depends on the step count, so
# measure it at the count you will use.
# </details>
#
# <details><summary>Solution 4</summary>
#
# Write $\tilde x - x_0 = (\tilde x - \hat x) - (x_0 - \hat x)$. Given $y$, both brackets have mean zero, the same
# distribution (both are a posterior draw minus the posterior mean) and are independent, so the cross term vanishes
# and $\mathbb E\|\tilde x - x_0\|^2 = \mathrm{MMSE} + \mathrm{MMSE}$. The mean of K samples is
# $\hat x + \frac1K\sum_k(\tilde x_k - \hat x)$; its error is $\frac1K \sum_k(\tilde x_k - \hat x) - (x_0 - \hat x)$, with
# variance $\mathrm{MMSE}/K + \mathrm{MMSE}$ when the K samples are independent of each other and of $x_0$ given
# $y$. PSNR is $-10\log_{10}$ of the MSE plus a constant, so the mean of K beats
# one sample by $10\log_{10}\big(2 / (1 + 1/K)\big)$ dB on pooled squared error: 2.5 dB for $K = 8$, 3 dB in the limit.
# Averaging PSNR per image, as the tables do, gives a different number, which is why the notebook prints both.
# </details>
