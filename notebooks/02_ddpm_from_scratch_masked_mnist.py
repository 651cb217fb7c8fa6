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
# # 02 · A DDPM from scratch: inpainting masked MNIST
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffusion-course/mnist-diffusion-inpainting/blob/main/notebooks/02_ddpm_from_scratch_masked_mnist.ipynb)
#
# In notebook 01 we destroyed digits with noise. Here we train a network to undo it, one small
# step at a time, and we use it to fill in the pixels a mask hides. Everything is written in this
# notebook: a time embedding, a small U-Net, the training objective, the training loop and the
# ancestral sampler of Ho et al. (2020), "Denoising Diffusion Probabilistic Models" (DDPM). The
# network sees the noisy image together with the mask and the known pixels, so its reverse chain samples
# $p(x_0 \mid y, m)$ directly (as well as its training allows). At the end we measure it on test digits it has
# never seen, against two simple baselines, and we check that `course_utils` holds exactly the code we wrote.
#
# ## What you will learn
#
# - How to build training data for inpainting: digits, random masks, observations $y = m \odot x_0$.
# - The sinusoidal time embedding and a small U-Net noise predictor $\epsilon_\theta(x_t, t, m, y)$.
# - The simplified DDPM objective $\lVert \epsilon - \epsilon_\theta \rVert^2$ and a training loop.
# - Ancestral sampling from the posterior $q(x_{t-1} \mid x_t, x_0)$, and two ways to inpaint with it:
#   the learned conditioning alone, and replacing the known pixels at every step.
# - Hole-only evaluation (PSNR, L1) against zero fill and nearest-known-pixel fill, per sample and for the
#   mean of K samples.
#
# ## What you need
#
# - Notebook 01 (the forward process, schedules, masks). PyTorch's `nn.Module`, optimisers and autograd.
# - Runtime: the README's table (in `cpu` most of it trains the model, which a second run reuses; the training cell
#   prints its time).

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
import tempfile
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from course_utils import baselines, config, data, ddpm, diffusion, masks, metrics, models, plotting, schedules, training

profile = config.get_profile()
device = config.get_device()
SEED = config.seed_everything(0)
print(config.profile_table(profile))
print("device:", device, "| seed:", SEED)

# %% [markdown]
# ## 1. Masked MNIST
#
# Three disjoint sets: **train** (to fit the network), **validation** (carved from MNIST's training
# split, for any tuning) and **test** (MNIST's test split, only for the numbers we report). `train_size` caps how
# many of MNIST's training digits are used; the validation digits come out of them, and a smaller MNIST folder
# (such as CI's offline pack) gives fewer.

# %%
train, val, test = data.load_splits(profile, seed=SEED)
print(f"train {len(train)} | validation {len(val)} | test {len(test)} images")

# %% [markdown]
# Every training image gets a fresh mask, drawn from the five kinds of notebook 01 in equal shares
# (`masks.mixed_masks`): `center` holes, `rect` boxes, `sparse` pixels (10 to 70 percent kept), brush `strokes`
# and `procedural` blobs (5 to 60 percent missing). A model that has seen all of them can fill in any. The
# observation is $y = m \odot x_0$: known pixels as they are, missing ones 0.

# %%
def mask_fn(n, generator):
    """The training mix: one mask per image, kind chosen uniformly."""
    return masks.mixed_masks(n, seed=generator)


example = train.images[:16]
m_example = mask_fn(16, torch.Generator().manual_seed(SEED))
y_example = masks.observe(example, m_example)
assert torch.equal(y_example[m_example == 1], example[m_example == 1]) and torch.all(y_example[m_example == 0] == 0)
plotting.show_images(y_example, ncols=8, mask=m_example,
                     labels=[f"{100 * f:.0f}% missing" for f in masks.missing_fraction(m_example)],
                     title="Masked training digits (missing pixels in red)", save="02_masked_training")
plt.show()

# %% [markdown]
# ## 2. The forward process, as the model will see it
#
# Training pairs come from the closed form of notebook 01, $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$
# (now imported: `schedules.q_sample`), with the **cosine** schedule and $T = 1000$.

# %%
sch = schedules.make_schedule(profile.schedule, profile.T)
T = sch.T
ts_show = [0, 50, 150, 300, 450, 600, 750, 900, 999]
eps = torch.randn(example[:1].shape, generator=torch.Generator().manual_seed(SEED))
plotting.show_strip([schedules.q_sample(example[:1], t, sch, eps).clamp(-1, 1) for t in ts_show],
                    [f"t={t}" for t in ts_show], title="Forward noising of one training digit (cosine schedule)",
                    save="02_forward_noising")
plt.show()

# %% [markdown]
# ## 3. Telling the network the time
#
# One network denoises at every noise level, so it must know $t$. DDPM encodes $t$ like a transformer
# encodes positions (Vaswani et al. 2017, section 3.5): a vector of sines and cosines of $t$ at
# geometrically spaced frequencies,
#
# $$\mathrm{emb}(t)_i = \sin(t\,\omega_i),\quad \mathrm{emb}(t)_{d/2+i} = \cos(t\,\omega_i),\quad \omega_i = 10000^{-i/(d/2)}.$$
#
# Within each half, low-index dimensions oscillate fast (they tell nearby steps apart), high-index ones slowly (they
# tell early from late). A small MLP then turns this into the vector each block receives.

# %%
def timestep_embedding(t, dim, max_period=10000.0):
    """Sinusoidal embedding of integer timesteps t (shape N) -> N x dim."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


emb = timestep_embedding(torch.arange(T), 64)
assert emb.shape == (T, 64)
fig, ax = plt.subplots(figsize=(8, 3))
ax.imshow(emb.T.numpy(), aspect="auto", cmap="RdBu", interpolation="nearest")
ax.set_xlabel("timestep t")
ax.set_ylabel("embedding dimension")
ax.set_title("Sinusoidal time embedding (d = 64): sines on top, cosines below")
plotting.save_figure(fig, "02_time_embedding")
plt.show()

# %% [markdown]
# ## 4. A small U-Net noise predictor
#
# The network $\epsilon_\theta(x_t, t, m, y)$ takes three input channels, the noisy image $x_t$, the mask
# $m$ and the observation $y$, and predicts the noise $\epsilon$ that was added. Its building block is a
# **residual block**: normalise, activate, convolve, *add the time embedding* (projected to the block's
# width, one number per channel), normalise, activate, convolve, and add the input back.

# %%
class ResBlock(nn.Module):
    def __init__(self, in_ch, out_ch, time_dim):
        super().__init__()
        self.norm1 = nn.GroupNorm(math.gcd(8, in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time = nn.Linear(time_dim, out_ch)
        self.norm2 = nn.GroupNorm(math.gcd(8, out_ch), out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(temb)[:, :, None, None]  # time enters every block
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


block = ResBlock(8, 16, time_dim=32)
assert block(torch.randn(2, 8, 32, 32), torch.randn(2, 32)).shape == (2, 16, 32, 32)

# %% [markdown]
# The **U-Net** (Ronneberger et al. 2015) applies blocks on a down path that halves the resolution
# (32 → 16 → 8), a middle, and an up path that doubles it again. Each up block also receives the
# down path's features at the same resolution (a *skip*), so fine detail from the known pixels is
# not lost in the bottleneck.

# %%
class UNet(nn.Module):
    def __init__(self, base, mults):
        super().__init__()
        time_dim = 4 * base
        self.time_mlp = nn.Sequential(nn.Linear(base, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.stem = nn.Conv2d(3, base, 3, padding=1)  # input channels: x_t, m, y
        widths = [base * k for k in mults]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        ch = base
        for i, w in enumerate(widths):
            self.down.append(ResBlock(ch, w, time_dim))
            ch = w
            self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1) if i < len(widths) - 1 else nn.Identity())
        self.mid1, self.mid2 = ResBlock(ch, ch, time_dim), ResBlock(ch, ch, time_dim)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(widths))):
            self.up.append(ResBlock(ch + widths[i], widths[i], time_dim))
            ch = widths[i]
            self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(ch, ch, 3, padding=1))
                                 if i > 0 else nn.Identity())
        self.out_norm = nn.GroupNorm(math.gcd(8, ch), ch)
        self.out = nn.Conv2d(ch, 1, 3, padding=1)

    def forward(self, x_t, t, mask, y):
        temb = self.time_mlp(timestep_embedding(t, self.time_mlp[0].in_features))
        h = self.stem(torch.cat([x_t, mask, y], dim=1))
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, temb)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid1(h, temb), temb)
        for block, up in zip(self.up, self.upsample):
            h = up(block(torch.cat([h, skips.pop()], dim=1), temb))
        return self.out(F.silu(self.out_norm(h)))


torch.manual_seed(SEED)
model = UNet(profile.base_channels, profile.channel_mults).to(device)
n_params = sum(p.numel() for p in model.parameters())
x_dummy = torch.zeros(4, 1, 32, 32, device=device)
assert model(x_dummy, torch.zeros(4, dtype=torch.long, device=device), x_dummy, x_dummy).shape == x_dummy.shape
print(f"U-Net: base width {profile.base_channels}, multipliers {profile.channel_mults}, {n_params:,} parameters")

# %% [markdown]
# ## 5. The objective
#
# DDPM's simplified loss (eq. 14): pick a random timestep and a random noise, noise the image in one
# jump, and ask the network for the noise back,
#
# $$L = \mathbb{E}_{x_0,\, m,\, t \sim \mathcal{U}\{0..T-1\},\, \epsilon \sim \mathcal{N}(0, I)}
# \big\lVert \epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\ t,\ m,\ m \odot x_0)\big\rVert^2 .$$
#
# The code averages the squared error over the pixels instead of summing it, so the loss reads per pixel. We draw
# $t$ and $\epsilon$ from an explicit generator so that a seed fixes every run.

# %%
def loss_fn(model, x0, mask, generator):
    t = torch.randint(0, T, (x0.shape[0],), generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0.device)
    x_t = schedules.q_sample(x0, t, sch, eps)
    return ((eps - model(x_t, t, mask, mask * x0)) ** 2).mean()


with torch.no_grad():
    x_b, m_b = train.images[:8].to(device), mask_fn(8, torch.Generator().manual_seed(1)).to(device)
    print(f"loss of the untrained network: {loss_fn(model, x_b, m_b, torch.Generator().manual_seed(2)).item():.3f} "
          "(about 1: it has not learned anything about eps yet)")

# %% [markdown]
# ## 6. Training
#
# Adam, a short linear warm-up followed by a cosine decay of the learning rate, and gradient clipping
# at norm 1, for `profile.train_steps` steps of `profile.batch_size` images: the loop `train_model` below. The run
# itself goes through the course's `ddpm` model kind, whose `training.fit` is this loop plus checkpoints (section
# 10 checks the two step by step). If an earlier run with exactly this configuration finished in `outputs/02_ddpm/`,
# we reuse it; otherwise we train (saving checkpoints atomically).

# %%
def train_model(model, steps, seed=SEED, progress=True):
    model.train()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=profile.lr)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: training.warmup_cosine(i, steps, min(100, steps // 10 + 1)))
    batches = data.batches(train, profile.batch_size, g)
    losses = []
    for _ in (bar := tqdm(range(steps), desc="training", disable=not progress)):
        x0, _ = next(batches)
        mask = mask_fn(x0.shape[0], g)
        loss = loss_fn(model, x0.to(device), mask.to(device), g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lr_schedule.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}", refresh=False)
    model.eval()
    return losses


# The same run is the course's `ddpm` model kind (`python -m course_utils train --model ddpm`): its settings are
# this profile's, and the library trains it with `training.fit`, this very loop with checkpoints (section 10 checks
# the two step by step). A finished run of this configuration in `outputs/02_ddpm/` is reused.
run_cfg = ddpm.KIND.config(profile)
assert (run_cfg.base_channels, run_cfg.channel_mults, run_cfg.steps, run_cfg.batch_size, run_cfg.lr) == (
    profile.base_channels, profile.channel_mults, profile.train_steps, profile.batch_size, profile.lr)
start = time.perf_counter()
trained = ddpm.KIND.obtain(run_cfg, device)
model.load_state_dict(trained.model.state_dict())  # the notebook's own U-Net class, the same architecture
# on a CPU the channels-last memory layout runs these convolutions faster (training.fast_layout); the numbers
# are the same up to float rounding
model = training.fast_layout(model, device).eval()
losses = trained.extra["losses"]
print(f"{trained.status} {trained.path} in {time.perf_counter() - start:.0f} s")

# %%
plotting.plot_loss(losses, window=max(1, min(50, len(losses) // 5)), title="DDPM training loss (eps-MSE)",
                   save="02_loss_curve")
plt.show()
print(f"mean loss, first 10% of steps: {sum(losses[:len(losses) // 10]) / max(1, len(losses) // 10):.4f}; "
      f"last 10%: {sum(losses[-(len(losses) // 10):]) / max(1, len(losses) // 10):.4f}")
assert sum(losses[-(len(losses) // 10):]) < sum(losses[:len(losses) // 10]), "the loss should go down"

# %% [markdown]
# ## 7. Sampling: running the chain backwards
#
# Given $x_t$, the network's noise estimate gives an estimate of the clean image by solving the
# forward formula for $x_0$ (DDPM eq. 15):
#
# $$\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\epsilon_\theta(x_t, t, m, y)}{\sqrt{\bar\alpha_t}} ,$$
#
# which we clip to $[-1, 1]$, the range of real images. If $\hat x_0$ were the true $x_0$, the previous
# step would follow the Gaussian **posterior** $q(x_{t-1} \mid x_t, x_0)$ (DDPM eq. 6-7):
#
# $$\tilde\mu = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,\hat x_0 + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t,
# \qquad \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t .$$
#
# Ancestral sampling starts from pure noise and draws $x_{t-1} \sim \mathcal{N}(\tilde\mu, \tilde\beta_t I)$ for
# $t = T-1, \dots, 0$. To sample with fewer steps on a CPU we may jump from $t$ to an earlier $s$: the same
# formulas hold with $\bar\alpha_{t-1}$ replaced by $\bar\alpha_s$, $\alpha_t$ by $\alpha_{t|s} = \bar\alpha_t / \bar\alpha_s$ and $\beta_t$ by $1 - \alpha_{t|s}$
# (Nichol & Dhariwal 2021, section 4). Landing on $s = -1$ means the clean image ($\bar\alpha = 1$, no noise).

# %%
def alpha_bar(s):
    return 1.0 if s < 0 else sch.alpha_bars[s].item()


def predict_x0(x_t, t, eps):
    return (x_t - math.sqrt(1 - alpha_bar(t)) * eps) / math.sqrt(alpha_bar(t))


def posterior_mean_var(x0_hat, x_t, t, s):
    """Mean and variance of q(x_s | x_t, x0) for s < t."""
    alpha_ts = alpha_bar(t) / alpha_bar(s)
    beta_ts = 1 - alpha_ts
    mean = (math.sqrt(alpha_bar(s)) * beta_ts / (1 - alpha_bar(t)) * x0_hat
            + math.sqrt(alpha_ts) * (1 - alpha_bar(s)) / (1 - alpha_bar(t)) * x_t)
    return mean, (1 - alpha_bar(s)) / (1 - alpha_bar(t)) * beta_ts


# With s = t - 1 this is exactly DDPM eq. 7:
t_chk = 500
x0_chk, xt_chk = torch.randn(1, 1, 4, 4), torch.randn(1, 1, 4, 4)
mean, var = posterior_mean_var(x0_chk, xt_chk, t_chk, t_chk - 1)
beta_t, ab_t, ab_prev = sch.betas[t_chk].item(), alpha_bar(t_chk), alpha_bar(t_chk - 1)
eq7 = math.sqrt(ab_prev) * beta_t / (1 - ab_t) * x0_chk + math.sqrt(1 - beta_t) * (1 - ab_prev) / (1 - ab_t) * xt_chk
assert torch.allclose(mean, eq7, atol=1e-6) and math.isclose(var, (1 - ab_prev) / (1 - ab_t) * beta_t, rel_tol=1e-9)

# %% [markdown]
# Two ways to inpaint with the same network:
#
# 1. **Conditioning alone.** The network sees $m$ and $y$ at every step and was trained to produce digits that
#    agree with them; we just run the sampler.
# 2. **Replacement.** After every step, overwrite the known pixels with the observation noised to the step we
#    just landed on, $x_s \leftarrow m \odot (\sqrt{\bar\alpha_s}\,y + \sqrt{1-\bar\alpha_s}\,\epsilon') + (1-m) \odot x_s$,
#    and at the end keep them exactly: $m \odot y + (1-m) \odot x$. The sample can never drift from what we know.

# %%
@torch.no_grad()
def sample(model, y, mask, steps, replace_known, generator, trajectory=None):
    ts = torch.linspace(T - 1, 0, steps).round().long().tolist()
    randn = lambda: torch.randn(y.shape, generator=generator).to(y.device)
    x = randn()
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < len(ts) else -1
        eps = model(x, torch.full((y.shape[0],), t, device=y.device), mask, y)
        x0_hat = predict_x0(x, t, eps).clamp(-1, 1)
        if trajectory is not None:
            trajectory.append((t, x.cpu(), x0_hat.cpu()))
        mean, var = posterior_mean_var(x0_hat, x, t, s)
        x = mean + math.sqrt(var) * randn() if s >= 0 else mean
        if replace_known and s >= 0:
            x = mask * (math.sqrt(alpha_bar(s)) * y + math.sqrt(1 - alpha_bar(s)) * randn()) + (1 - mask) * x
    return mask * y + (1 - mask) * x if replace_known else x


print(f"sampling with {profile.sample_steps} of the {T} steps")

# %% [markdown]
# ## 8. Seeing it
#
# Eight test digits the network has never seen, with masks of all five kinds. We sample both ways from
# the same starting noise (same seed) and keep the trajectory of the replacement run.

# %%
kinds_show = ["center", "rect", "sparse", "strokes", "procedural", "center", "strokes", "sparse"]
x_show = test.images[:8].to(device)
m_show = torch.cat([masks.make_masks(k, 1, seed=SEED + i) for i, k in enumerate(kinds_show)]).to(device)
y_show = masks.observe(x_show, m_show)
trajectory = []
free = sample(model, y_show, m_show, profile.sample_steps, False, torch.Generator().manual_seed(SEED))
pasted = sample(model, y_show, m_show, profile.sample_steps, True, torch.Generator().manual_seed(SEED), trajectory)
assert torch.equal(pasted[m_show == 1], y_show[m_show == 1]), "replacement must keep every known pixel"
plotting.show_rows({"observed": y_show, "conditioning alone": free, "replacement": pasted, "ground truth": x_show},
                   masks={"observed": m_show}, title="Inpainting unseen test digits two ways", save="02_inpainting_two_ways")
plt.show()

# %% [markdown]
# The reverse trajectory of the replacement run: the current sample $x_t$ (top rows) and the network's
# running guess $\hat x_0$ (bottom rows) at a few steps. Early on $\hat x_0$ is a blurry average of the digits
# that fit the known pixels; the noise level falls and the guess commits to one of them.

# %%
picks = [round(i * (len(trajectory) - 1) / 6) for i in range(7)]
cols = [torch.cat([trajectory[k][1][:2], trajectory[k][2][:2]]).clamp(-1, 1) for k in picks]
plotting.show_strip(cols, [f"t={trajectory[k][0]}" for k in picks],
                    row_names=["x_t (1)", "x_t (2)", "x0_hat (1)", "x0_hat (2)"],
                    title="Reverse trajectory: samples and predicted clean images", save="02_reverse_trajectory")
plt.show()

# %% [markdown]
# ## 9. Evaluation on unseen test digits
#
# `profile.eval_size` test digits, split evenly over the five mask kinds (procedural masks spread from 5 to
# 60 percent missing), with seeded masks so every method sees exactly the same inputs. Metrics are taken
# **only over the missing pixels**, with images in $[0, 1]$ (`course_utils.metrics`):
# $\mathrm{PSNR}_\text{hole} = 10\log_{10}(1/\mathrm{MSE}_\text{hole})$ per image, then averaged, and the hole L1.
#
# Baselines on the same images and masks: **zero fill** (the observation itself, missing pixels mid-grey) and
# **nearest known pixel** (each missing pixel copies the closest known one). A diffusion model is stochastic, so
# we report a **single sample** and the **mean of K samples**, which estimates the posterior mean
# $\mathbb{E}[x_0 \mid y]$: blurrier, but closer on average in squared error.

# %%
n_eval = len(test)
kinds = list(masks.MASK_KINDS)
kind_of = torch.arange(n_eval) * len(kinds) // n_eval  # contiguous, equal shares
eval_masks = torch.empty(n_eval, 1, 32, 32)
for j, kind in enumerate(kinds):
    idx = (kind_of == j).nonzero().flatten()
    value = torch.linspace(0.05, 0.60, len(idx)) if kind == "procedural" else None  # share missing
    eval_masks[idx] = masks.make_masks(kind, len(idx), value, seed=1000 + j)
x_eval, m_eval = test.images.to(device), eval_masks.to(device)
y_eval = masks.observe(x_eval, m_eval)
print(f"{n_eval} test digits, mean missing fraction {masks.missing_fraction(eval_masks).mean():.1%}")


def evaluate(pred):
    """Per-image hole PSNR and L1 (CPU tensors)."""
    return {"hole_psnr": metrics.psnr_on_mask(pred, x_eval, m_eval).cpu(), "hole_l1": metrics.l1_on_mask(pred, x_eval, m_eval).cpu()}


per_image = {"zero fill": evaluate(baselines.zero_fill(y_eval, m_eval)),
             "nearest known pixel": evaluate(baselines.nearest_pixel_fill(y_eval, m_eval))}
samples = {}
for name, replace in [("DDPM conditioning", False), ("DDPM replacement", True)]:
    start = time.perf_counter()
    runs = [sample(model, y_eval, m_eval, profile.sample_steps, replace, torch.Generator().manual_seed(100 + k))
            for k in tqdm(range(profile.n_samples), desc=name)]
    samples[name] = torch.stack(runs)
    per_image[f"{name}, 1 sample"] = evaluate(runs[0])
    per_image[f"{name}, mean of {profile.n_samples}"] = evaluate(samples[name].mean(0))
    print(f"{name}: {profile.n_samples} x {n_eval} samples in {time.perf_counter() - start:.0f} s")
drift = (m_eval * (samples["DDPM conditioning"] - y_eval)).abs()  # how far the known pixels moved, in [-1, 1] units
drift_mean = (drift.sum() / (m_eval.sum() * profile.n_samples)).item()
print(f"known pixels under conditioning alone: mean change {drift_mean:.3f}, largest {drift.max().item():.2f} "
      f"(replacement keeps them exactly: {(m_eval * (samples['DDPM replacement'] - y_eval)).abs().max().item():.1f})")

# %%
results = {name: {k: v.mean().item() for k, v in r.items()} for name, r in per_image.items()}
print(f"{'method':<38} {'hole PSNR (dB)':>15} {'hole L1':>9}")
for name, r in results.items():
    print(f"{name:<38} {r['hole_psnr']:>15.2f} {r['hole_l1']:>9.4f}")
plotting.bar_compare(results, "hole_l1", higher_is_better=False,
                     title=f"Hole L1 on {n_eval} unseen test digits ({profile.name} profile)", save="02_hole_l1")
plt.show()

# %% [markdown]
# Per mask kind, hole L1 (lower is better). Which kinds are hard, and where does the nearest-known-pixel
# baseline do well?

# %%
print(f"{'method':<38}" + "".join(f"{k:>12}" for k in kinds))
for name, r in per_image.items():
    print(f"{name:<38}" + "".join(f"{r['hole_l1'][kind_of == j].mean().item():>12.4f}" for j in range(len(kinds))))

metrics_file = config.output_dir("metrics") / f"02_ddpm_{profile.name}.json"


def save_results():
    """Write the results table (section 11 adds the shipped model's rows) for docs/results.md."""
    metrics_file.write_text(json.dumps({"profile": profile.name, "n_test": n_eval, "sample_steps": profile.sample_steps,
                                        "k": profile.n_samples, "results": results}, indent=2))


save_results()
print("saved", metrics_file)

# %% [markdown]
# The self-check: in the `cpu` and `full` profiles one sample of the trained model (with replacement) must beat
# the stronger baseline, nearest known pixel, on hole L1 (in `ci` the network has trained for a few seconds and
# is not judged). Why L1 and not PSNR: one sample is one plausible digit. Where a pixel could be ink or
# background with even odds, a sample that draws either is wrong half the time by the full range, while a grey
# guess between the two is always wrong by half of it: the same absolute error on average, but twice the squared
# error (notebook 03 derives the factor 2 for exact posterior samples). So one sample can be behind nearest known
# pixel on hole PSNR and ahead on hole L1 (compare the two columns of the first table); the mean of K, which
# averages the plausible digits, is what PSNR judges fairly.

# %%
ours, bar = results["DDPM replacement, 1 sample"]["hole_l1"], results["nearest known pixel"]["hole_l1"]
if profile.name in ("cpu", "full"):
    assert ours < bar, f"one DDPM sample should beat nearest known pixel on hole L1: {ours:.4f} vs {bar:.4f}"
    print(f"key result: DDPM replacement, one sample: hole L1 {ours:.4f} < nearest known pixel {bar:.4f}")
else:
    print(f"key result: ci profile, not judged (DDPM {ours:.4f}, nearest known pixel {bar:.4f})")

# %% [markdown]
# A few evaluation digits per mask kind: observed, one sample, the mean of the K samples, and the truth.

# %%
pick = torch.cat([(kind_of == j).nonzero().flatten()[:2] for j in range(len(kinds))])
plotting.show_rows({"observed": y_eval[pick], "1 sample": samples["DDPM replacement"][0][pick],
                    f"mean of {profile.n_samples}": samples["DDPM replacement"].mean(0)[pick],
                    "ground truth": x_eval[pick]},
                   masks={"observed": m_eval[pick]}, n=len(pick),
                   title="Replacement sampling on evaluation digits (two per mask kind)", save="02_eval_panel")
plt.show()

# %% [markdown]
# ## 10. Into the module
#
# What we wrote here now lives in `course_utils` so later notebooks can import it: `models.sinusoidal_embedding`
# and `models.UNet`, `training.eps_loss`, and the `ddpm` model kind (`ddpm.KIND`), whose loss on a batch is this
# notebook's and whose loop is `training.fit` (the course's one training loop; later kinds hand it their own loss).
# The sampler is `diffusion.ddpm_sample`: the course's one sampling loop, `diffusion.sample`, with a `Denoiser` that
# reads the network's output as $\epsilon$ (`predict_x0` here is `diffusion.x0_and_eps`), `linspace` timesteps
# (`diffusion.timesteps`), the DDPM step (`diffusion.ddpm_step`, the posterior of `diffusion.posterior`) and,
# for replacement, the consistency rule `diffusion.Replacement`. The checks below show that, on fixed seeds, the
# module and this notebook give the same numbers.

# %%
# GPUs run float32 convolutions in TF32 (10-bit mantissa) by default (and matrix products where enabled), which
# turns a 1-ulp difference between two ways of writing the same formula into visible differences after a few
# network calls. Full float32 for the checks:
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
t_all = torch.arange(T)
assert torch.allclose(models.sinusoidal_embedding(t_all, 64), timestep_embedding(t_all, 64))
x_chk, eps_chk = torch.rand(2, 1, 32, 32) * 2 - 1, torch.randn(2, 1, 32, 32)
for t_chk in (5, 500, 995):
    assert torch.allclose(predict_x0(x_chk, t_chk, eps_chk),
                          diffusion.x0_and_eps(eps_chk, x_chk, t_chk, sch, "eps", clip_x0=False)[0], atol=1e-4)
    mean, var = posterior_mean_var(x_chk, eps_chk, t_chk, t_chk - 5)  # any two tensors serve as x0_hat and x_t
    mean_lib, var_lib = diffusion.posterior(x_chk, eps_chk, t_chk, t_chk - 5, sch)
    assert torch.allclose(mean, mean_lib, atol=1e-5) and math.isclose(var, var_lib, rel_tol=1e-5)

module_model = training.fast_layout(models.UNet(profile.base_channels, profile.channel_mults), device)
module_model.load_state_dict(model.state_dict())  # same architecture and memory layout: the weights fit exactly
module_model.eval()
with torch.no_grad():
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.allclose(loss_fn(model, x_eval[:16], m_eval[:16], g1),
                          training.eps_loss(module_model, x_eval[:16], m_eval[:16], sch, g2), atol=1e-6)

for replace in (False, True):
    ours = sample(model, y_eval[:16], m_eval[:16], 20, replace, torch.Generator().manual_seed(3))
    denoiser = diffusion.Denoiser(module_model, sch, "eps", (m_eval[:16], y_eval[:16]))
    theirs = diffusion.ddpm_sample(denoiser, y_eval[:16], m_eval[:16], steps=20, replace_known=replace,
                                   generator=torch.Generator().manual_seed(3))
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
print("embedding, x0 from eps, posterior, loss and sampler: notebook == course_utils")

# %% [markdown]
# And training: two fresh networks with the same initial weights, trained for a few steps from the same
# seed, one with this notebook's loop and one with the `ddpm` kind's training (`ddpm.KIND.train`), end with the same
# losses.

# %%
torch.manual_seed(5)  # the library seeds its initial weights with the run's seed
net_a = UNet(profile.base_channels, profile.channel_mults).to(device)
losses_a = train_model(net_a, steps=5, seed=5, progress=False)
short = dataclasses.replace(run_cfg, steps=5, warmup=min(100, 5 // 10 + 1), save_every=5)
with tempfile.TemporaryDirectory() as scratch:
    losses_b = ddpm.KIND.train(short, train, scratch, device, seed=5, progress=False)["losses"]
assert all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6) for a, b in zip(losses_a, losses_b)), (losses_a, losses_b)
print("training loop: notebook == course_utils", [f"{v:.4f}" for v in losses_a])

# %% [markdown]
# ## 11. The course's shipped DDPM
#
# The model above trained for a few minutes. The course also ships a DDPM it trained once, with `cpu`'s network for
# longer and sampled with an exponential moving average (EMA) of its weights, which notebook 03 explains:
# `pretrained/ddpm.pt`, made by `python -m course_utils train --model ddpm --profile pretrained` on MNIST training
# digits only and checked here against its manifest (sha256 and config). Below it fills the same test digits with
# the same masks, with the sampler you wrote in section 7 and replacement. In the `cpu` profile the two models have
# the same network, so the table answers: how much do longer training and EMA buy? (In `ci` and `full` the widths
# differ too; the first lines print both recipes.)

# %%
from course_utils import pretrained

shipped_cfg, shipped, manifest = pretrained.load_shipped(ddpm.KIND, map_location=device)
shipped = training.fast_layout(shipped, device).eval()
assert (shipped_cfg.schedule, shipped_cfg.T) == (profile.schedule, T), "the sampler above assumes the same schedule"
print(pretrained.provenance(manifest, data.load_splits(shipped_cfg, seed=SEED)[0], "the test digits below are "
                            "still ones it never saw (it trained on training digits only)"))
print(f"shipped: widths {shipped_cfg.base_channels} x {shipped_cfg.channel_mults}, {manifest['steps']} steps of "
      f"{shipped_cfg.batch_size} digits, {manifest['training_minutes']} min of training, EMA decay "
      f"{shipped_cfg.ema_decay}\nthis notebook's: widths {run_cfg.base_channels} x {run_cfg.channel_mults}, "
      f"{run_cfg.steps} steps of {run_cfg.batch_size}, no EMA")
start = time.perf_counter()
shipped_runs = torch.stack([sample(shipped, y_eval, m_eval, profile.sample_steps, True,
                                   torch.Generator().manual_seed(100 + k))
                            for k in tqdm(range(profile.n_samples), desc="shipped DDPM")])
print(f"{profile.n_samples} x {n_eval} samples in {time.perf_counter() - start:.0f} s")
results["shipped DDPM replacement, 1 sample"] = {k: v.mean().item() for k, v in evaluate(shipped_runs[0]).items()}
results[f"shipped DDPM replacement, mean of {profile.n_samples}"] = {
    k: v.mean().item() for k, v in evaluate(shipped_runs.mean(0)).items()}
print(f"{'method':<44} {'hole PSNR (dB)':>15} {'hole L1':>9}")
for name in ("nearest known pixel", "DDPM replacement, 1 sample", f"DDPM replacement, mean of {profile.n_samples}",
             "shipped DDPM replacement, 1 sample", f"shipped DDPM replacement, mean of {profile.n_samples}"):
    print(f"{name:<44} {results[name]['hole_psnr']:>15.2f} {results[name]['hole_l1']:>9.4f}")
save_results()
plotting.show_rows({"observed": y_eval[pick], "this notebook's model": samples["DDPM replacement"][0][pick],
                    "shipped model": shipped_runs[0][pick], "ground truth": x_eval[pick]},
                   masks={"observed": m_eval[pick]}, n=len(pick),
                   title="One sample each, the same masks and seeds", save="02_shipped_panel")
plt.show()

# %% [markdown]
# Same masks, same seeds, same sampler: in `cpu` the two models share the network, so what separates the rows is
# training: its length, EMA and, where the full MNIST was downloaded, the number of training digits (the shipped
# model saw the training digits its provenance line counts).
# Notebook 03 measures what EMA alone is worth, and why a model predicting $x_0$ instead of $\epsilon$ does better
# on large holes.

# %% [markdown]
# ## Summary
#
# - A DDPM needs four pieces: a forward process (notebook 01), a network $\epsilon_\theta(x_t, t, \cdot)$ with a time
#   embedding, the loss $\lVert\epsilon - \epsilon_\theta\rVert^2$ at a uniformly random $t$, and ancestral sampling
#   from the posterior $q(x_{t-1} \mid x_t, \hat x_0)$.
# - Feeding the mask and the known pixels to the network turns it into an inpainting model. Replacing the known
#   pixels at every step guarantees they are kept; conditioning alone lets the model drift from them (section 9
#   prints by how much).
# - Evaluate only the hole, against baselines, on images the model never saw. A single sample is a plausible
#   digit; the mean of K samples trades sharpness for a lower average error.
#
# Next, notebook 03 makes sampling fast with DDIM and studies data consistency, EMA and other training tricks.
#
# ## Exercises
#
# 1. Sample the same eight test digits with 10, 25 and 100 steps (conditioning alone). How do the results change?
# 2. Sample one digit with a center hole 16 times. Show the 16 samples and their per-pixel standard deviation:
#    where is the model uncertain?
# 3. Train a model that sees only center holes (change `mask_fn`) for the same number of steps, and evaluate it on
#    the `sparse` masks. What happens, and why?
# 4. *Pen and paper.* A network that ignores its input and always predicts the same value $c$ for $\epsilon$: which
#    $c$ minimises the loss $\mathbb E\,\|\epsilon - c\|^2$ per pixel, and what is the loss then? What does that say
#    about reading this notebook's training curve?
#
# <details><summary>Solution 1</summary>
#
# ```python
# rows = {"observed": y_show}
# for steps in (10, 25, 100):
#     rows[f"{steps} steps"] = sample(model, y_show, m_show, steps, False, torch.Generator().manual_seed(0))
# rows["ground truth"] = x_show
# plotting.show_rows(rows, masks={"observed": m_show}); plt.show()
# ```
# Look at the strokes: with few steps each jump is large, so watch for blotches and broken strokes, and for the
# point past which more steps no longer change the picture.
# </details>
#
# <details><summary>Solution 2</summary>
#
# ```python
# x1 = test.images[:1].repeat(16, 1, 1, 1).to(device)
# m1 = masks.center_hole(16).to(device)
# draws = sample(model, m1 * x1, m1, profile.sample_steps, True, torch.Generator().manual_seed(0))
# plotting.show_images(draws, title="16 posterior samples"); plt.show()
# plt.imshow(draws.std(0)[0].cpu(), cmap="magma"); plt.colorbar(); plt.title("per-pixel std"); plt.show()
# ```
# The standard deviation is exactly zero on the known pixels (replacement keeps them) and largest where the
# hidden strokes could go more than one way.
# </details>
#
# <details><summary>Solution 3</summary>
#
# ```python
# mask_fn = lambda n, g: masks.center_hole(n)
# torch.manual_seed(0)
# center_model = UNet(profile.base_channels, profile.channel_mults).to(device)
# train_model(center_model, profile.train_steps)
# sel = kind_of == kinds.index("sparse")  # section 9's sparse digits and masks
# out = sample(center_model, y_eval[sel], m_eval[sel], profile.sample_steps, False, torch.Generator().manual_seed(0))
# print(metrics.hole_metrics(out, x_eval[sel], m_eval[sel]))
# ```
# Compare the hole L1 with the `sparse` column of section 9's second table. A network that has only seen center
# holes has never learned what scattered known pixels mean; try `True` (replacement) as the fifth argument of
# `sample` and see how much imposing the known pixels at every step recovers.
# </details>
#
# <details><summary>Solution 4</summary>
#
# $\mathbb E(\epsilon - c)^2 = \mathrm{Var}(\epsilon) + (\mathbb E\epsilon - c)^2 = 1 + c^2$, smallest at $c = 0$ with loss 1
# per pixel. So a loss of 1 means the network has learned nothing about the noise; everything below 1 is what it
# extracts from $x_t$, $t$ and the known pixels. The loss is not the same at every $t$. At large $t$ the task is
# easy: $x_t$ is almost $\epsilon$ itself. At small $t$ it is hard wherever $x_0$ is not known: $\epsilon$ is then a
# small perturbation of $x_0$, and an error in $x_0$ becomes $\sqrt{\mathrm{SNR}_t}$ times larger in $\epsilon$
# (notebook 03, section 2). The curve averages over random $t$, so its level does not say how well any one step
# is learned.
# </details>
