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
# # 05 · Adapting an unconditional diffusion prior to inpainting: replacement, RePaint, DDNM, mask-aware fine-tuning and LoRA
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffusion-course/mnist-diffusion-inpainting/blob/main/notebooks/05_unconditional_prior_adaptation.ipynb)
#
# Notebooks 02 to 04 trained every model for the job: it saw masks (or observations) from its first step. In
# practice the diffusion model you have was often trained for something else: to generate images, with no mask
# anywhere. This notebook starts from such a model, an **unconditional prior** that only makes digits, and asks
# how to make it inpaint and what each way costs in network calls, training time and quality. First without any
# training: replacing the known pixels at every step, RePaint's resampling, and DDNM's projection. Then by
# adapting the network: a first convolution widened to see the mask, fine-tuned fully or with LoRA. Last, the
# knobs every diffusion sampler has: how many steps (DDPM 1000 against DDIM 100, 50, 25) and which noise schedule.
#
# ## What you will learn
#
# - Why plain replacement ("ground-truth noise injection") leaves a seam at the border of the hole, and how
#   RePaint's jumps back in time repair it, at a price in network calls that we count.
# - A sampler from the newer literature (DDNM's null-space projection) and whether it reaches RePaint's quality
#   with a tenth of its calls.
# - Mask-aware fine-tuning: widen the first convolution with zero-initialised weights (the adapted model equals
#   the prior until it trains), then train everything, or only LoRA adapters, and compare what each trains, costs
#   and must store.
# - Sampling cost against quality (DDPM against DDIM) and the linear, cosine and quadratic schedules side by side.
# - Clean experimental hygiene: a 75/15/10 split and masks that are unique within every split.
#
# ## What you need
#
# - Notebooks 02 (DDPM, the U-Net, replacement) and 03 (DDIM, data consistency, the evaluation harness); the
#   self-attention of section 2 is the softmax attention of notebook 04's cross-attention, applied to the image
#   itself (notebook 04's self-attention was linear).
# - Runtime: the README's table (with the course's shipped prior; `TRAIN_YOUR_OWN = True` adds the prior's own
#   training, which its cell prints).

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
import time

import matplotlib.pyplot as plt
import torch
from torch import nn

from course_utils import (adaptation, attention, checkpoints, classifier, config, diffusion, evaluation, inpainting,
                          masks, metrics, models, plotting, pretrained, prior, schedules, tasks, training)

profile = config.get_profile()
# The course ships its prior, trained once with the `pretrained` recipe (pretrained/prior.json says how); in the
# cpu and full profiles this notebook starts from it. TRAIN_YOUR_OWN = True trains this profile's own prior here
# instead (the cpu recipe: 1,500 steps, a few minutes on 2 CPU cores). The ci profile always trains a tiny one.
TRAIN_YOUR_OWN = False
cfg = prior.PRIOR_KIND.config(profile) if TRAIN_YOUR_OWN else prior.PRIOR_KIND.default_config(profile)
device = config.get_device()
torch.backends.cuda.matmul.allow_tf32 = False  # full float32 on a GPU too, so the checks against the module hold
torch.backends.cudnn.allow_tf32 = False
SEED = config.seed_everything(0)
# How many held-out digits each table scores, and the budget of the short schedule runs, per profile.
N_EVAL = {"ci": 8, "cpu": 100, "full": 500}[profile.name]
N_DDPM1000 = {"ci": 2, "cpu": 20, "full": 100}[profile.name]
SCHEDULE_STEPS = {"ci": 4, "cpu": 200, "full": 1500}[profile.name]
notebook_start = time.perf_counter()
print(f"profile {profile.name}: the prior's settings ({cfg.profile} recipe)")
print(config.profile_table(cfg))
print(f"held-out digits per table: {N_EVAL} | device: {device} | seed: {SEED}")

# %% [markdown]
# ## 1. Digits and masks: a 75/15/10 split, masks unique within each split
#
# Everything in this notebook trains on the first 75 percent of MNIST's training digits (in a seeded order),
# is tuned on the next 15 percent and scored on the last 10 percent (`prior.prior_splits`); MNIST's own test split
# stays untouched for `eval` and notebook 06. The masks are **procedural**: smooth random blobs covering 5 to 60
# percent of the image (`masks.procedural_masks`, notebook 01). Each split draws its masks from a seed stream of
# its own (`prior.mask_bank`), and we check that no mask repeats within a split and that no two splits share one,
# so a score on the test split is a score on masks the model never trained on (section 6 checks the scoring
# harness's own masks the same way).

# %%
train, val, test = prior.prior_splits(cfg, seed=SEED)
n_all = len(train) + len(val) + len(test)
print(f"train {len(train)} | validation {len(val)} | test {len(test)} of {n_all} digits "
      f"({100 * len(train) / n_all:.0f} / {100 * len(val) / n_all:.0f} / {100 * len(test) / n_all:.0f} percent)")
bank_size = prior.finetune_config(cfg, budget=profile.name).bank_size
banks = {"train": prior.mask_bank("train", bank_size), "val": prior.mask_bank("val", len(val)),
         "test": prior.mask_bank("test", len(test))}
for split, bank in banks.items():
    missing = masks.missing_fraction(bank)
    assert masks.duplicate_count(bank) == 0, f"a mask repeats within the {split} split"
    print(f"{split:<6} {len(bank):5d} masks, all unique, missing {missing.min():.2f} to {missing.max():.2f} "
          f"(mean {missing.mean():.2f})")
assert masks.duplicate_count(torch.cat(list(banks.values()))) == 0, "two splits share a mask"
print("no mask is shared between splits")
x_show, m_show = test.images[:8], banks["test"][:8]
plotting.show_rows({"test digit": x_show, "observed": m_show * x_show}, masks={"observed": m_show},
                   title="Test digits and their procedural masks (missing pixels in red)")
plt.show()

# %% [markdown]
# ## 2. The prior: a DDPM that knows nothing about masks
#
# The network is the course U-Net (notebook 02) on $x_t$ alone, three levels (32, 16, 8 pixels) and, between the two
# middle residual blocks, **self-attention** at 8x8: every one of the 64 positions attends to all others,
#
# $$\mathrm{out} = x + W_o\,\mathrm{softmax}\!\big(Q K^\top / \sqrt d\big)\,V, \qquad [Q, K, V] = \mathrm{GN}(x)\,W_{qkv},$$
#
# per head (two here; DDPM's U-Net used one head, at 16x16). At 8x8 the $64 \times 64$ weights are cheap (notebook 04
# needed linear attention at 32x32, where they would be a million). The projections $W_{qkv}$ and $W_o$ are the
# layers LoRA will adapt in section 4. Written out and checked against `course_utils.attention.SelfAttention`:

# %%
def self_attention(x, block):
    """softmax(Q K^T / sqrt(d)) V over the H W positions, per head, with the projections of ``block``."""
    n, c, h, w = x.shape
    q, k, v = block.to_qkv(block.norm(x).flatten(2).transpose(1, 2)).chunk(3, dim=-1)  # N x HW x C each
    heads = lambda z: z.reshape(n, h * w, block.heads, block.dim).transpose(1, 2)  # N x heads x HW x d
    q, k, v = heads(q), heads(k), heads(v)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(block.dim), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(n, h * w, c)
    return x + block.to_out(out).transpose(1, 2).reshape(n, c, h, w), weights


block = attention.SelfAttention(4 * cfg.base_channels)
x_demo = torch.randn(2, 4 * cfg.base_channels, 8, 8)
mine, w_mine = self_attention(x_demo, block)
theirs, w_theirs = block(x_demo, return_weights=True)
assert torch.allclose(mine, theirs, atol=1e-5) and torch.allclose(w_mine.sum(-1), torch.ones(2, 2, 64))
print(f"self-attention {tuple(x_demo.shape)} -> {tuple(mine.shape)}, weights {tuple(w_mine.shape)}: "
      "equal to course_utils.attention.SelfAttention")
net_demo = prior.build_prior(cfg)
print(f"prior U-Net: {models.count_parameters(net_demo):,} parameters, input x_t only "
      f"(cond_channels = {net_demo.cond_channels})")

# %% [markdown]
# **Training.** DDPM's simple loss (eq. 14) with no condition, $L = \mathbb E\,\|\epsilon - \epsilon_\theta(x_t, t)\|^2$:
# the network predicts the noise, the parameterisation RePaint and DDNM are written for (notebook 03 found
# $x_0$-prediction better for a model that sees the mask; here the model sees only $x_t$, and every sampler of
# this notebook converts between the two with `diffusion.x0_and_eps` anyway). Training hands `prior.prior_loss` to
# the course's one loop, `training.fit`. `prior.PRIOR_KIND.obtain(cfg)` returns the course's shipped prior for the
# `pretrained` recipe (after checking its sha256 and config), and otherwise reuses a finished run of the
# configuration in `outputs/05_prior/` or trains it; from a terminal it is
# `python -m course_utils train --model prior --profile cpu --out DIR` (`--profile pretrained` for the shipped recipe).

# %%
trained = prior.PRIOR_KIND.obtain(cfg, device)  # the shipped prior, or reuse / resume / train this profile's own
prior_net = trained.model
losses, history, prior_seconds = trained.extra["losses"], trained.extra["history"], trained.extra["seconds"]
if trained.status == "shipped":  # its manifest says how it was made
    print(pretrained.provenance(trained.extra["manifest"], train,
                                "this notebook's validation and test splits may hold digits it has seen"))
else:
    print(f"{trained.status} the prior in {trained.path.parent}")
print(f"{len(losses)} steps of batch {cfg.batch_size}, {prior_seconds / 60:.1f} min of training "
      f"({prior_seconds / len(losses):.2f} s per step)")
plotting.plot_training(losses, history, "eps loss", "PSNR (dB)",
                       "validation: 32 digits, replacement on procedural masks, 1 sample", save="05_prior_training")
plt.show()
assert sum(losses[-(len(losses) // 10):]) < sum(losses[: len(losses) // 10]), "the loss should go down"

# %% [markdown]
# **Does it make digits?** Unconditional samples (DDPM, `cfg.sample_steps` steps; 64 samples in `ci`, 256 otherwise,
# the first 64 shown), and what the course classifier (notebook 03) says they are. A prior that has learned MNIST
# makes all ten digits, in roughly equal numbers.

# %%
sch = schedules.make_schedule(cfg.schedule, cfg.T)
prior_denoiser = diffusion.Denoiser(prior_net, sch, cfg.prediction)
noise_like = torch.zeros(64 if profile.name == "ci" else 256, 1, 32, 32, device=device)
free = diffusion.sample(prior_denoiser, noise_like, diffusion.timesteps(cfg.T, cfg.sample_steps, "trailing"), "ddpm",
                        generator=torch.Generator().manual_seed(SEED)).cpu()
clf, clf_info = classifier.course_classifier(profile.name, device=device)
predicted = classifier.predict(clf, free)
counts = torch.bincount(predicted, minlength=10)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
axes[0].imshow(torch.cat([torch.cat(list(free[r * 8:(r + 1) * 8, 0]), 1) for r in range(8)], 0), cmap="gray",
               vmin=-1, vmax=1)
axes[0].set_title(f"64 of {len(free)} samples of the prior (DDPM, {cfg.sample_steps} steps)")
axes[0].axis("off")
axes[1].bar(range(10), counts.numpy())
axes[1].set(xticks=range(10), xlabel="class predicted by the course classifier", ylabel="samples",
            title="Which digits the prior makes")
plt.tight_layout()
plt.show()
print(f"classes made: {int((counts > 0).sum())} of 10; counts {counts.tolist()}")
if profile.name != "ci":
    assert (counts > 0).all(), "a prior of MNIST should make every digit"

# %% [markdown]
# **Does it copy its training digits?** A prior that memorised its training set would draw samples that sit on top of
# training digits. For each free sample, and as the reference for each held-out test digit (digits the prior never
# saw, unless the provenance note above says this MNIST differs), we measure the distance to the *nearest training
# digit*: the root mean square pixel difference, in the [-1, 1] units of the images. Copies would pile up near 0, far
# below the test digits; samples that are new digits sit about as far from the training set as unseen real digits do.

# %%
def nearest_train_distance(images):
    """RMS pixel distance from each image to its nearest training digit."""
    library = train.images.flatten(1).to(device)
    return torch.cat([torch.cdist(chunk.flatten(1).to(device), library).min(1).values.cpu()
                      for chunk in images.split(256)]) / math.sqrt(images[0].numel())


d_free, d_test = nearest_train_distance(free), nearest_train_distance(test.images[: len(free)])
plt.figure(figsize=(7, 3.2))
plt.hist([d_test.numpy(), d_free.numpy()], bins=20, label=[f"held-out test digits (median {d_test.median():.3f})",
                                                          f"free samples (median {d_free.median():.3f})"])
plt.xlabel("RMS distance to the nearest training digit")
plt.ylabel("images")
plt.legend()
plt.title(f"{len(free)} samples and {len(d_test)} unseen digits against {len(train)} training digits")
plt.show()
print(f"median distance to the nearest training digit: free samples {d_free.median():.3f}, held-out test digits "
      f"{d_test.median():.3f}; closest sample {d_free.min():.3f}, closest test digit {d_test.min():.3f}")

# %% [markdown]
# ## 3. Inpainting without training
#
# ### 3.1 Replacement (ground-truth noise injection)
#
# The simplest idea, already used in notebooks 02 and 03: run the prior's reverse process, and after every step
# $t \to s$ overwrite the known pixels with the observation noised to $s$,
#
# $$x_s \leftarrow m \odot \big(\sqrt{\bar\alpha_s}\,y + \sqrt{1-\bar\alpha_s}\,\epsilon\big) + (1 - m) \odot x_s .$$
#
# The unknown pixels only ever learn about the known ones through the network's next call, and the known pixels
# are a fresh noisy copy of the truth that does not know what the network did in the hole. At the border the two
# can disagree, and nothing pulls them together. One network call per step:
# `inpainting.replacement_inpaint` is `diffusion.sample` with `diffusion.Replacement`. A centre hole shows it best:

# %%
hole = tasks.parse_task("center:12").observe(test.images[:8], seed=SEED)
obs_hole = hole.to(device)
replaced = inpainting.replacement_inpaint(prior_denoiser, obs_hole.y, obs_hole.mask, cfg.sample_steps,
                                          generator=torch.Generator().manual_seed(SEED)).cpu()
assert torch.equal((hole.mask * replaced)[hole.mask == 1], hole.y[hole.mask == 1])  # known pixels exact

# %% [markdown]
# ### 3.2 RePaint: go back in time and denoise again
#
# RePaint (Lugmayr et al. 2022) keeps replacement's step but changes the walk through the noise levels: after
# descending `jump_length` levels it jumps back up by `jump_length` levels, each jump up a pure forward noising
# $x_t \sim q(x_t \mid x_s)$ (no network call), and descends again. At every `jump_length`-th level it jumps back
# `jump_n_sample - 1` times, so each stretch between two such levels is walked down `jump_n_sample` times in all
# (the *resamplings*, or walks of each jump; the command line's `--resamplings`).
# Each descent lets the network see the known pixels' information already mixed into the hole and correct the
# seam. The walk, written out (diffusers' `RePaintScheduler.set_timesteps` builds the same
# list, and `tests/test_inpainting.py` checks ours against it, step and loop included):

# %%
def repaint_walk(steps, jump_length, jump_n_sample):
    """Noise-level indices (0 = least noisy) in walking order: down one at a time, jumping back up at every
    jump_length-th index, jump_n_sample - 1 times."""
    jumps = {j: jump_n_sample - 1 for j in range(0, steps - jump_length, jump_length)}
    walk, i = [], steps
    while i >= 1:
        i -= 1
        walk.append(i)
        if jumps.get(i, 0) > 0:
            jumps[i] -= 1
            for _ in range(jump_length):
                i += 1
                walk.append(i)
    return walk


def network_calls(walk):
    return sum(1 for i, e in enumerate(walk) if i == 0 or e < walk[i - 1])  # a step down calls the network


for setting in [(250, 10, 10), (50, 5, 30), (50, 5, 10), (20, 5, 3)]:
    walk = repaint_walk(*setting)
    assert walk == inpainting.repaint_walk(*setting) and network_calls(walk) == inpainting.walk_calls(walk)
    print(f"steps {setting[0]:3d}, jump length {setting[1]:2d}, resamplings {setting[2]:2d}: "
          f"{len(walk):5d} entries, {network_calls(walk):5d} network calls")
plt.figure(figsize=(9, 2.6))
plt.plot(repaint_walk(50, 5, 30), lw=1)
plt.gca().invert_yaxis()
plt.xlabel("position in the walk")
plt.ylabel("noise level index")
plt.title("RePaint's walk: 50 levels, jump length 5, 30 resamplings")
plt.show()

# %% [markdown]
# The paper's setting (250 levels, jump 10, 10 resamplings) is 2,410 network calls per image in a walk of 4,570
# entries; count calls, not entries. A step down is DDIM's step with $\eta = 1$ (DDPM's posterior noise) followed by
# replacement, one noise draw serving both (as diffusers' `RePaintScheduler` does). A walk entry $e$ below the one
# before it is a step down that leaves level $e$ for level $e - 1$ (one call); an entry $u$ above the one before it
# re-noises from level $u - 2$ to $u - 1$, so the next step down leaves from there again. The loop, written out and
# checked against `inpainting.repaint` on the same seed (the library walks the course's one sampling loop,
# `diffusion.sample`, along these levels: `inpainting.repaint_levels`):

# %%
@torch.no_grad()
def repaint(denoiser, y, mask, steps, jump_length, jump_n_sample, generator):
    grid = diffusion.timesteps(denoiser.schedule.T, steps, "trailing")[::-1]  # ascending noise levels
    level = lambda i: grid[i] if i >= 0 else -1  # -1: the clean image
    draw = lambda: torch.randn(y.shape, generator=generator).to(y.device)
    walk = repaint_walk(steps, jump_length, jump_n_sample)
    x, last = draw(), walk[0] + 1
    for entry in walk:
        if entry < last:  # down: one network call, then the known pixels noised to the new level
            t, s = level(entry), level(entry - 1)
            x0_hat, eps_hat = denoiser(x, t)
            noise = draw()
            x = diffusion.ddim_step(x0_hat, eps_hat, t, s, denoiser.schedule, 1.0, noise)  # eta = 1
            x = mask * diffusion.noised_known(y, s, denoiser.schedule, None, noise) + (1 - mask) * x
        else:  # up: forward noising q(x_t | x_s), no call
            x = diffusion.renoise(x, level(last - 1), level(last), denoiser.schedule, draw())
        last = entry
    return mask * y + (1 - mask) * x


RP = dict(steps=cfg.sample_steps, jump_length=5, jump_n_sample=30)  # the setting of this notebook's tables
assert RP == inpainting.SAMPLERS["repaint"].defaults(cfg.sample_steps)  # the library's default, for notebook 06 too
rp_mine = repaint(prior_denoiser, obs_hole.y, obs_hole.mask, **RP, generator=torch.Generator().manual_seed(SEED))
rp_lib = inpainting.repaint(prior_denoiser, obs_hole.y, obs_hole.mask, **RP, generator=torch.Generator().manual_seed(SEED))
assert torch.allclose(rp_mine, rp_lib, atol=1e-5)
repainted = rp_lib.cpu()
plotting.show_rows({"truth": test.images[:8], "observed": hole.y,
                    "replacement": replaced, "RePaint": repainted}, masks={"observed": hole.mask},
                   title=f"A 12x12 hole filled by the prior: replacement ({cfg.sample_steps} calls) and RePaint "
                         f"({inpainting.walk_calls(inpainting.repaint_walk(**RP))} calls)", save="05_replacement_vs_repaint")
plt.show()

# %% [markdown]
# The seam is measured on the ring of missing pixels next to known ones (`inpainting.border_region`: missing
# pixels within 2 pixels of a known one) with the harness's hole PSNR restricted to that ring; section 6 reports it
# over the test digits for every method.
#
# ### 3.3 Fewer calls: DDNM's null-space projection
#
# DDNM (Wang et al. 2023) acts on the clean estimate instead of the noisy sample. For a mask the degradation is
# $A = \mathrm{diag}(m)$, its pseudo-inverse is $A$ itself, and DDNM's rectified estimate
# $\hat x_0 \leftarrow A^{+} y + (I - A^{+}A)\,\hat x_0$ becomes
#
# $$\hat x_0 \leftarrow m \odot y + (1 - m) \odot \hat x_0 ,$$
#
# the known pixels from the observation (range space) and the rest from the network (null space), before a DDIM step
# (DDIM's eq. 12) with the network's $\hat\epsilon$. Because the known pixels enter through $\hat x_0$, the estimate
# agrees with $y$ exactly, and the known pixels of $x_s$ carry the same $\hat\epsilon$ and the same fresh noise as
# the hole instead of replacement's independently drawn noise. The notebook's challenge: RePaint's quality at a
# tenth of its network calls.
# `diffusion.NullSpaceProjection` is the rule, `inpainting.ddnm_inpaint` the sampler.
#
# **Where to spend the calls.** The budget can go to many noise levels, each visited once, or to fewer levels, each
# run several times: after a step lands on $s$, re-noise the sample back to $t$ and take the step once more (DDNM+'s
# "time travel", the repeats of notebook 03). Each repeat lets the known pixels, projected into $\hat x_0$, reshape
# the hole at that noise level. The cell compares the two ways of spending the same budget on validation digits and
# keeps the library's setting (`inpainting.DDNM_LEVELS`, `DDNM_ETA`, chosen on validation digits); rerun it with
# `procedural:0.05-0.6` to see whether the ranking holds:

# %%
rp_calls = inpainting.walk_calls(inpainting.repaint_walk(**RP))
ddnm_budget = max(2, rp_calls // 10)  # a tenth of RePaint's calls
levels = min(9, ddnm_budget)  # 9 levels, each repeated as often as the budget allows
DDNM = dict(steps=levels, eta=0.85, repeats=ddnm_budget // levels)
assert DDNM == inpainting.SAMPLERS["ddnm"].defaults(cfg.sample_steps)  # kept for notebook 06 too
x0_hat = torch.zeros_like(obs_hole.y)
assert torch.equal(diffusion.NullSpaceProjection(obs_hole.y, obs_hole.mask).project(x0_hat), obs_hole.y)  # m*y + 0
n_val = 16 if profile.name == "ci" else 100
val_hole = tasks.parse_task("center:12").observe(val.images[:n_val], seed=SEED).to(device)
print(f"RePaint: {rp_calls} calls per image; DDNM's budget: {ddnm_budget} calls. Hole PSNR of one sample, "
      f"{n_val} validation digits:")
ways = [("many levels, once each", ddnm_budget, 1), ("fewer levels, repeated (default)", levels, DDNM["repeats"])]
for label, steps, repeats in ways[:1] if DDNM["repeats"] == 1 else ways:  # the ci prior's budget has no repeat
    filled_val = inpainting.ddnm_inpaint(prior_denoiser, val_hole.y, val_hole.mask, steps, DDNM["eta"], repeats,
                                         torch.Generator().manual_seed(SEED)).cpu()
    val_psnr = metrics.psnr_on_mask(filled_val, val.images[:n_val], val_hole.mask.cpu()).mean().item()
    print(f"  {label:<33} {steps:3d} levels x {repeats:2d} = {steps * repeats} calls: {val_psnr:.2f} dB")

# %% [markdown]
# ## 4. Teaching the prior about masks: input expansion, full fine-tuning, LoRA
#
# The training-free samplers never tell the network where the hole is. The cheapest way to do so: give it the
# mask and the observation as two more input channels, the inputs of notebooks 02 and 03. The first convolution
# $W \ast x_t$ becomes $W \ast x_t + V \ast [m, y]$ with **$V = 0$ at the start**, so the adapted network computes
# exactly what the prior computed until fine-tuning moves $V$. Asserted on a batch:

# %%
adapted = prior.build_prior(cfg)
adapted.load_state_dict(prior_net.state_dict())  # a copy of the prior ...
adaptation.expand_input(adapted)  # ... with the first convolution widened, V = 0
adapted = training.fast_layout(adapted, device).eval()
xb = torch.randn(8, 1, 32, 32, device=device)
tb = torch.randint(0, cfg.T, (8,), device=device)
mb = banks["val"][:8].to(device)
with torch.no_grad():
    max_diff = (adapted(xb, tb, mb, mb * val.images[:8].to(device)) - prior_net(xb, tb)).abs().max().item()
assert max_diff < 1e-6, max_diff
print(f"the expanded model equals the prior on a batch (largest difference {max_diff:.1e}), whatever the mask says; "
      f"new input weights V: {tuple(adapted.stem.extra.weight.shape)}, all zero")

# %% [markdown]
# **LoRA** (Hu et al. 2022) trains a low-rank change of a frozen layer instead of the layer:
# $h = W x + \frac{\alpha}{r} B A x$ with $A \in \mathbb R^{r \times d_\text{in}}$ random, $B \in \mathbb R^{d_\text{out}
# \times r}$ zero (so the change starts at nothing), rank $r$ small. In a few lines, checked against
# `adaptation.LoRA` (and that against the `peft` library in `tests/test_prior.py`):

# %%
class MyLoRA(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.A = nn.Parameter(torch.empty(rank, base.in_features))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + self.scale * (x @ self.A.T) @ self.B.T


layer = nn.Linear(64, 192)
mine, lib = MyLoRA(layer, 4, 4.0), adaptation.LoRA(layer, 4, 4.0)
with torch.no_grad():
    mine.B.normal_()
    lib.A.weight.copy_(mine.A)
    lib.B.weight.copy_(mine.B)
xl = torch.randn(5, 64)
assert torch.allclose(mine(xl), lib(xl), atol=1e-5)
print(f"LoRA on a 64 -> 192 projection: {mine.A.numel() + mine.B.numel()} trainable numbers instead of "
      f"{layer.weight.numel() + layer.bias.numel()}; equal to adaptation.LoRA")

# %% [markdown]
# Three fine-tunes of the same prior, the same number of steps and batch size (`prior.finetune_config`), each on
# notebook 02's loss with masks from the training split's bank:
#
# - **full**: every weight trains (the prior's and $V$);
# - **LoRA on attention**: rank-4 adapters on $W_{qkv}$ and $W_o$ of the self-attention, plus $V$;
# - **LoRA on attention and convolutions**: adapters on every residual block's two convolutions as well, plus $V$.
#
# $V$ trains in every row: without it the network cannot see the mask at all.
#
# **Where the loss looks.** Replacement sampling replaces the known region after every step, so the network's output
# on known pixels is thrown away (DDNM, also used in section 6, keeps $\hat\epsilon$ on known pixels, so this loss
# is tuned for replacement). There, moreover, the target needs no learning at all: $y = x_0$ on known pixels, so
# DDPM's eq. 4 solved for $\epsilon$ gives $\epsilon = (x_t - \sqrt{\bar\alpha_t}\, y) / \sqrt{1 - \bar\alpha_t}$
# exactly. With notebook 02's plain mean over all pixels, a LoRA adapter with so few numbers (the table below counts
# them) spends them on copying that formula through $V$, and can end up *below* replacement with the prior
# (exercise 4). So the LoRA rows weight a known pixel `known_weight = 0` in the loss (the mean over the missing
# pixels) and, since their adapters start at zero and are few, train with a 3x larger learning rate
# (`prior.LORA_LR_SCALE`). The full fine-tune keeps notebook 02's loss. Exercise 4 makes the comparison
# (`known_weight` 1 against 0) on validation digits. Runs of these configurations in `outputs/05_finetune/` are
# reused.

# %%
finetuned, ft_rows = {}, {}
for mode in prior.MODES:
    fcfg = prior.finetune_config(cfg, mode, budget=profile.name)  # this profile's fine-tuning budget
    run = prior.FINETUNE_KIND.obtain(fcfg, device, base_from=prior_net)  # starts from the prior above
    net, seconds, ft_status = run.model, run.extra["seconds"], run.status
    finetuned[mode] = (fcfg, net)
    trainable = models.count_parameters(prior.build_finetuned(fcfg))  # what the run trained
    ft_rows[mode] = {"trainable": trainable, "seconds": seconds, "stored_kb": 4 * trainable / 1024}
    print(f"{mode:<10} {ft_status:<7} {fcfg.steps} steps, {trainable:>7,} trainable parameters, "
          f"{seconds:6.1f} s of training")

# %% [markdown]
# ## 5. Sampling cost against quality: DDPM against DDIM, and three schedules
#
# In this section the fine-tuned (full) model samples like notebook 03's: steps with data consistency (replacement)
# after each. DDPM walks all 1000 levels (one call each); DDIM (eta = 0, deterministic) jumps over them in 100, 50 or
# 25 steps. Quality on the test split's digits with the harness's procedural masks, and seconds per image, in one
# table (the 1000-step row scores fewer digits, printed). A last row, DDIM 50 with eta = 1, puts back the fresh noise
# of every ancestral step (notebook 03: eta = 1 is DDPM's posterior on the shorter chain), to separate "fewer steps"
# from "no noise":

# %%
x_test, y_test = test.images[:N_EVAL], test.labels[:N_EVAL]
PROC = "procedural:0.05-0.6"
full_cfg, full_net = finetuned["full"]


def score(method, n=N_EVAL, spec=PROC, k=1):
    summary, _, samples = evaluation.evaluate(method, x_test[:n], y_test[:n], spec, k=k, seed=SEED, classifier=clf,
                                              baselines=False, progress=False)
    return summary, samples


cost_rows = {}
for label, step, steps, eta, n in [("DDPM 1000", "ddpm", 1000, 1.0, N_DDPM1000), ("DDIM 100", "ddim", 100, 0.0, N_EVAL),
                                   ("DDIM 50", "ddim", 50, 0.0, N_EVAL), ("DDIM 25", "ddim", 25, 0.0, N_EVAL),
                                   ("DDIM 50, eta 1", "ddim", 50, 1.0, N_EVAL)]:
    method = prior.finetuned_method(full_net, full_cfg, evaluation.SamplerOptions(steps, eta), step=step)
    summary, _ = score(method, n=n)
    cost_rows[label] = summary
    m = summary["metrics"]
    print(f"{label:<15} {n:4d} digits  PSNR {m['psnr']['single']:6.2f} dB  SSIM {m['ssim']['single']:.3f}  "
          f"class {m['class_acc']['single']:.2f}  {summary['seconds_per_image']:.3f} s/image  "
          f"{summary['network_calls_per_image']:.0f} calls")
ddim100 = cost_rows["DDIM 100"]
same_n = score(prior.finetuned_method(full_net, full_cfg, evaluation.SamplerOptions(100), step="ddim"), n=N_DDPM1000)[0]
print(f"on the same {N_DDPM1000} digits DDIM 100 has PSNR {same_n['metrics']['psnr']['single']:.2f} dB "
      f"(DDPM 1000: {cost_rows['DDPM 1000']['metrics']['psnr']['single']:.2f} dB)")
eta_gain = (cost_rows["DDIM 50, eta 1"]["metrics"]["psnr"]["single"] - cost_rows["DDIM 50"]["metrics"]["psnr"]["single"])
print(f"the same 50 steps with eta = 1 instead of 0: {eta_gain:+.2f} dB")

# %% [markdown]
# Read the table in three comparisons: DDIM 100, 50 and 25 (fewer steps, no noise); DDIM 50 against DDIM 50 with
# eta = 1 (the same steps with the ancestral kind of fresh noise at each, printed as a difference); and DDPM 1000
# against DDIM 100 on the same digits (printed below the table: the price of a hundred noise-free steps instead of a
# thousand ancestral ones). Where eta = 1 wins, section 6 is right to sample with ancestral steps (replacement) or
# close to them (DDNM, eta 0.85). Why it wins is a hypothesis, not something this table shows: an
# $\epsilon$-predicting network's errors compound along a noise-free path while fresh noise lets later steps correct
# earlier ones; separating that from replacement's own fresh noise on the known pixels would need another
# experiment. Your run prints its own numbers above.

# %% [markdown]
# **Schedules.** How fast $\bar\alpha_t$ falls decides which noise levels training and sampling spend their steps on.
# To compare the linear, cosine and quadratic schedules (notebook 01) fairly we train one small mask-aware model per
# schedule from scratch with the same budget (`SCHEDULE_STEPS` steps, notebook 02's U-Net on $[x_t, m, y]$ at half
# the prior's width, procedural masks of the training bank) and sample each with 50 ancestral steps and replacement.
# In `cpu` these are short runs, enough to see whether the schedule matters at a small budget (differences of a tenth
# of a dB are ties), not to say where they end.

# %%
live_cfg = prior.PRIOR_KIND.config(profile)  # this profile's own prior settings: the live runs' batch and widths


def train_for_schedule(name):
    schedule_ = schedules.make_schedule(name, cfg.T)
    torch.manual_seed(SEED)
    net = training.fast_layout(models.UNet(max(live_cfg.base_channels // 2, 4), live_cfg.channel_mults), device)
    bank = banks["train"].to(device)

    def loss_fn(net_, g):
        idx = torch.randint(len(train), (live_cfg.batch_size,), generator=g)
        m = bank[torch.randint(len(bank), (live_cfg.batch_size,), generator=g).to(device)]
        return training.eps_loss(net_, train.images[idx].to(device), m, schedule_, g)

    run = training.fit(net, loss_fn, SCHEDULE_STEPS, live_cfg.lr, torch.Generator().manual_seed(SEED),
                       warmup=min(live_cfg.warmup, SCHEDULE_STEPS // 5), ema_decay=0.99, progress=False)
    return run["ema"].eval(), schedule_, run["seconds"]


schedule_rows = {}
for name in ("linear", "cosine", "quadratic"):
    net, schedule_, seconds = train_for_schedule(name)
    method = evaluation.Method(f"schedule_{name}", lambda obs, g, net=net, s=schedule_: inpainting.replacement_inpaint(
        diffusion.Denoiser(net, s, "eps", (obs.mask, obs.y)), obs.y, obs.mask, 50, generator=g), network=net)
    summary, _ = score(method)
    schedule_rows[name] = summary
    m = summary["metrics"]
    print(f"{name:<10} {seconds:5.1f} s training  PSNR {m['psnr']['single']:6.2f} dB  SSIM {m['ssim']['single']:.3f}  "
          f"class {m['class_acc']['single']:.2f}  FD {m['frechet']['single']:.1f}")

# %% [markdown]
# ## 6. Every method of this notebook on the same test digits and masks
#
# One table over `procedural:0.05-0.6` on the test split's digits (one sample each): PSNR and L1 over the missing
# pixels, PSNR on the border ring, SSIM, class preservation and Frechet distance on the course classifier, seconds
# and network calls per image. Replacement and the three fine-tuned models use the same sampler (`cfg.sample_steps`
# ancestral steps, replacement after each), so those rows differ only in the network: whether it sees the mask.
# The last three rows ask the same question with DDNM: each fine-tune sampled by the prior's DDNM (the projection on
# a few repeated levels, given $(m, y)$ at every call), against the DDNM row. The harness draws the masks from its
# own seed; we check that they are unique and share none with the training bank.

# %%
obs_test = tasks.parse_task(PROC).observe(x_test, SEED + evaluation.OBSERVATION_SEED_OFFSET)
assert masks.duplicate_count(obs_test.mask) == 0
assert masks.duplicate_count(torch.cat([obs_test.mask, banks["train"]])) == 0
border = inpainting.border_region(obs_test.mask, width=2)
options = evaluation.SamplerOptions(cfg.sample_steps)
ADAPTED = [("fine-tuned (full)", "full"), ("LoRA (attention)", "lora_attn"), ("LoRA (attention + conv)", "lora_all")]
methods = {
    "replacement": prior.prior_method(prior_net, cfg, options, "replacement"),
    "RePaint": prior.prior_method(prior_net, cfg, options, "repaint", jump_length=RP["jump_length"],
                                  jump_n_sample=RP["jump_n_sample"]),
    "DDNM": prior.prior_method(prior_net, cfg, sampler="ddnm", **DDNM),
    **{name: prior.finetuned_method(finetuned[mode][1], finetuned[mode][0], options, step="ddpm")
       for name, mode in ADAPTED},
    **{f"{name}, DDNM": prior.finetuned_method(finetuned[mode][1], finetuned[mode][0], step="ddnm")
       for name, mode in ADAPTED},
}
results, filled = {}, {}
for name, method in methods.items():
    summary, samples = score(method)
    summary["border_psnr"] = metrics.psnr_on_mask(samples[0], x_test, 1 - border).mean().item()
    results[name], filled[name] = summary, samples[0]
print(f"{N_EVAL} test digits, {PROC}, one sample ({profile.name} profile)")
print(f"{'method':<31}{'PSNR':>7}{'L1':>7}{'border':>8}{'SSIM':>7}{'class':>7}{'FD':>7}{'s/img':>8}{'calls':>7}")
for name, r in results.items():
    m = r["metrics"]
    print(f"{name:<31}{m['psnr']['single']:7.2f}{m['l1']['single']:7.3f}{r['border_psnr']:8.2f}"
          f"{m['ssim']['single']:7.3f}{m['class_acc']['single']:7.2f}{m['frechet']['single']:7.1f}"
          f"{r['seconds_per_image']:8.3f}{r['network_calls_per_image']:7.0f}")
print(f"FD: the Frechet distance on {N_EVAL} digits, biased upward at so few: compare it within this table only")

# %%
plotting.show_rows({"truth": x_test[:6], "observed": obs_test.y[:6], **{k: v[:6] for k, v in filled.items()}},
                   masks={"observed": obs_test.mask[:6]}, title=f"The same test digits and masks, every method ({PROC})",
                   save="05_every_method")
plt.show()

# %% [markdown]
# **Training cost against quality** of the three adaptations, with what each must store (the trained numbers in
# float32; LoRA stores only its adapters and $V$, and `adaptation.merge_lora` folds them into the weights for
# sampling at no extra cost), and one sample's PSNR and class with each sampler:

# %%
print(f"{'adaptation':<25}{'trainable':>10}{'stored':>10}{'train s':>9}   replacement: PSNR class   DDNM: PSNR class")
for name, mode in ADAPTED:
    row, m, d = ft_rows[mode], results[name]["metrics"], results[name + ", DDNM"]["metrics"]
    print(f"{name:<25}{row['trainable']:>10,}{row['stored_kb']:>8.1f}kB{row['seconds']:>9.1f}"
          f"{m['psnr']['single']:>20.2f}{m['class_acc']['single']:6.2f}{d['psnr']['single']:>17.2f}"
          f"{d['class_acc']['single']:6.2f}")

# %% [markdown]
# The next cell checks, in `cpu` and `full`, that each fine-tuned model (full and both LoRA rows) beats plain
# replacement on PSNR and class preservation over `procedural:0.05-0.6` ("beats": a higher PSNR and a class
# preservation at least as high), and that RePaint has a higher border-ring PSNR than replacement; it prints each
# comparison before asserting it. Whether DDNM reached RePaint's quality with a tenth of the calls,
# and what each fine-tune adds to DDNM, are printed, not assumed.

# %%
rep = results["replacement"]
psnr = lambda name: results[name]["metrics"]["psnr"]["single"]
cls = lambda name: results[name]["metrics"]["class_acc"]["single"]
for name, _ in ADAPTED:
    print(f"{name:<31} PSNR {psnr(name) - psnr('replacement'):+.2f} dB, class {cls(name) - cls('replacement'):+.2f} "
          "vs replacement")
border_gain = results["RePaint"]["border_psnr"] - rep["border_psnr"]
print(f"RePaint vs replacement on the border ring: {border_gain:+.2f} dB "
      f"({results['RePaint']['network_calls_per_image']:.0f} vs {rep['network_calls_per_image']:.0f} calls)")
reached = psnr("DDNM") >= psnr("RePaint")
print(f"DDNM with {results['DDNM']['network_calls_per_image']:.0f} calls: PSNR {psnr('DDNM'):.2f} dB against RePaint's "
      f"{psnr('RePaint'):.2f} dB with {results['RePaint']['network_calls_per_image']:.0f}: "
      f"{'reached' if reached else 'NOT reached'}")
for name, _ in ADAPTED:
    print(f"{name + ', DDNM':<31} PSNR {psnr(name + ', DDNM') - psnr('DDNM'):+.2f} dB, class "
          f"{cls(name + ', DDNM') - cls('DDNM'):+.2f} vs the prior's DDNM "
          f"({results[name + ', DDNM']['network_calls_per_image']:.0f} and {results['DDNM']['network_calls_per_image']:.0f} calls)")
adapted_rows = [name for name, _ in ADAPTED]
beats = {name: psnr(name) > psnr("replacement") and cls(name) >= cls("replacement") for name in adapted_rows}
print("beat replacement on PSNR and class:", [n for n in adapted_rows if beats[n]] or "none",
      "| did NOT:", [n for n in adapted_rows if not beats[n]] or "none")
if profile.name in ("cpu", "full"):
    assert border_gain > 0, "RePaint should repair the border"
    missed = [name for name in adapted_rows if not beats[name]]
    assert not missed, f"should beat replacement on PSNR and keep the class at least as often: {missed}"
    gains = [psnr(name) - psnr("replacement") for name in adapted_rows]
    print(f"key result: on {PROC} the three fine-tunes beat replacement by {min(gains):+.2f} to {max(gains):+.2f} dB "
          f"and RePaint repairs the border ring by {border_gain:+.2f} dB")
else:
    print("key result: ci profile, not judged")
results_file = config.output_dir("05_prior") / f"results_{profile.name}.json"
results_file.write_text(json.dumps({"profile": profile.name, "n_digits": N_EVAL, "task": PROC, "results": results,
                                    "finetune": ft_rows, "sampling_cost": cost_rows, "schedules": schedule_rows,
                                    "prior_seconds": prior_seconds, "device": str(device)}, indent=2, default=str))
print("saved", results_file)
print(f"notebook run time so far: {(time.perf_counter() - notebook_start) / 60:.1f} min")

# %% [markdown]
# ## 7. From the command line
#
# The prior and its adaptations are model kinds of the course:
#
# ```bash
# python -m course_utils train --model prior --profile cpu --out outputs/prior
# python -m course_utils train --model finetune --from outputs/prior/last.pt --profile cpu --out outputs/ft
# python -m course_utils train --model finetune --from outputs/prior/last.pt --profile cpu --out outputs/lora --lora-rank 4
# python -m course_utils eval --checkpoint outputs/prior/last.pt --task procedural:0.05-0.6 --sampler repaint \
#     --data-dir data
# python -m course_utils eval --checkpoint outputs/lora/last.pt --task procedural:0.05-0.6 --data-dir data
# ```
#
# `train --model prior` trains on the same 75 percent split. `--model finetune --from PRIOR_CHECKPOINT` widens that
# prior and fine-tunes it with this notebook's settings: fully, or with `--lora-rank R` LoRA of rank R on the
# attention projections (`--lora-targets all`: on the convolutions too). `eval --sampler replace`, `repaint` or
# `ddnm` scores a training-free sampler of the prior on MNIST's test digits with every baseline, with this
# notebook's settings unless `--steps`, `--jump-length` or `--resamplings` say otherwise, and counts the network
# calls per image; a fine-tuned checkpoint is scored like any other model, sampled with DDNM given the mask
# (`--steps` and `--eta` set its levels and eta).
#
# ## Summary
#
# - An unconditional prior inpaints without training when a sampler keeps the known pixels: replacement after
#   each step (one call per step, a seam at the border), RePaint's jumps back in time (the seam repaired, many
#   more calls), or DDNM's projection of $\hat x_0$ (consistency at every step, at a tenth of RePaint's calls).
# - Widening the first convolution with zero weights lets the network see the mask without changing what it
#   computes; fine-tuning then teaches it to use the mask, with every weight or with LoRA adapters that train and
#   store a small fraction of the numbers. Section 6 measures what that buys over replacement and over DDNM, and
#   the table shows where it does not pay off (compare each fine-tune's DDNM row with the prior's DDNM).
# - Fewer DDIM steps cost little quality here; the deterministic path (eta = 0) costs more, as eta = 1 on the
#   same steps shows.
# - The schedule decides which noise levels the training and the steps are spent on; compare schedules at equal
#   budget, and treat a ranking from short runs as provisional.
#
# ## Exercises
#
# 1. RePaint's knobs: on 16 validation digits (choose settings on validation, never test), compare (jump length,
#    resamplings) = (5, 1), (5, 3), (5, 10), (10, 5) at `cfg.sample_steps` levels: PSNR against network calls.
# 2. LoRA's rank: fine-tune `lora_attn` with rank 1 and rank 16 for 20 steps each and compare trainable parameters
#    and the loss at the end.
# 3. Merge a LoRA model (`adaptation.merge_lora`) and check that it samples exactly as before, with fewer modules.
# 4. Where the loss looks: fine-tune `lora_attn` with `known_weight=1.0` (every pixel, the full fine-tune's loss)
#    and with the notebook's 0 for the same steps, and compare the validation PSNR of each (`prior.validate_prior`
#    on 64 validation digits, never the test split).
# 5. *Pen and paper.* RePaint's walk in this notebook has 50 levels, jump length 5 and 30 walks of each jump; it
#    jumps back at levels 0, 5, ..., 40 (9 jumps, as the plot of the walk shows). Every move down costs one network
#    call; a move up is forward noising and costs none. Count the calls and the re-noisings per image, and say how
#    the calls grow with the jump length and the number of walks.
#
# <details><summary>Solution 1</summary>
#
# ```python
# for jl, jn in [(5, 1), (5, 3), (5, 10), (10, 5)]:
#     m = prior.prior_method(prior_net, cfg, options, "repaint", jump_length=jl, jump_n_sample=jn)
#     s = evaluation.evaluate(m, val.images[:16], val.labels[:16], PROC, k=1, seed=SEED, classifier=clf,
#                             baselines=False, progress=False)[0]
#     print(f"jump {jl:2d}, resamplings {jn:2d}: PSNR {s['metrics']['psnr']['single']:.2f} dB, "
#           f"{s['network_calls_per_image']:.0f} calls")
# ```
# More resampling costs calls linearly (exercise 5); on 16 digits expect the ranking to be noisy, so confirm a
# choice on more validation digits before you adopt it.
# </details>
#
# <details><summary>Solution 2</summary>
#
# ```python
# for rank in (1, 16):
#     fcfg = prior.finetune_config(cfg, "lora_attn", profile.name, rank=rank, alpha=float(rank), steps=20,
#                                  warmup=2, save_every=20)  # the profile's warm-up is longer than 20 steps
#     out = config.output_dir("05_exercise", f"rank{rank}")
#     run = prior.FINETUNE_KIND.train(fcfg, train, out, device, base_from=prior_net, progress=False)
#     print(f"rank {rank:2d}: {models.count_parameters(run['model']):6,} trainable, mean of the last 10 losses "
#           f"{sum(run['losses'][-10:]) / 10:.4f}")
# ```
# A higher rank trains more numbers. At 20 steps the mean of the last 10 losses says more than the last one: a
# single batch's loss is too noisy to separate the ranks.
# </details>
#
# <details><summary>Solution 3</summary>
#
# ```python
# import copy
# lora_cfg, lora_net = finetuned["lora_all"]
# merged = adaptation.merge_lora(copy.deepcopy(lora_net))
# obs = obs_test[:4].to(device)
# a, b = (diffusion.ddim_inpaint(diffusion.Denoiser(net, sch, cfg.prediction, (obs.mask, obs.y)), obs.y, obs.mask,
#                                10, generator=torch.Generator().manual_seed(0)) for net in (lora_net, merged))
# print("largest difference", (a - b).abs().max().item())
# print("LoRA modules before / after:", sum(isinstance(m, adaptation.LoRA) for m in lora_net.modules()),
#       sum(isinstance(m, adaptation.LoRA) for m in merged.modules()))
# ```
# The difference is at the level of float32 rounding: the low-rank update is folded into W.
# </details>
#
# <details><summary>Solution 4</summary>
#
# ```python
# steps = min(100, prior.finetune_config(cfg, "lora_attn", profile.name).steps)
# for weight in (1.0, 0.0):
#     fcfg = prior.finetune_config(cfg, "lora_attn", profile.name, known_weight=weight, steps=steps, save_every=steps)
#     out = config.output_dir("05_exercise", f"known{weight:g}")
#     run = prior.FINETUNE_KIND.train(fcfg, train, out, device, base_from=prior_net, progress=False)
#     psnr = prior.validate_prior(run["ema"].eval(), cfg, val.images[:64].to(device), sees_mask=True)
#     print(f"known pixels weighted {weight:g}: validation PSNR {psnr:.2f} dB after {steps} steps")
# print(f"the prior with replacement: {prior.validate_prior(prior_net, cfg, val.images[:64].to(device)):.2f} dB")
# ```
# With replacement sampling the output on known pixels is thrown away, so a loss that also scores them spends the
# adapter's few numbers on pixels that do not matter; expect the missing-pixels-only loss to come out ahead for LoRA.
# 64 digits and 100 steps are noisy: run both with two seeds before you trust a difference of a tenth of a dB.
# </details>
#
# <details><summary>Solution 5</summary>
#
# The first pass walks the 50 levels down: 50 calls. Each of the 9 jumps goes back up 5 levels (5 re-noisings) and
# walks them down again (5 calls), and a jump is walked 30 times in all, so it repeats 29 times:
# 9 jumps $\times$ 29 repeats $\times$ 5 levels $= 1305$ re-noisings and 1305 more calls, $50 + 1305 = 1355$ calls
# per image. In general, with $S$ levels, $J$ jumps of length $j$ and $r$ walks, the calls are $S + (r-1)\,J\,j$.
# The jumps sit at $0, j, 2j, \dots$ below $S - j$, so $J j = S - j$ when $j$ divides $S$, and the calls are
# $S + (r-1)(S-j)$: linear in the walks, and slightly fewer for a longer jump (50 levels, jump 10, 5 walks:
# $50 + 4 \cdot 40 = 210$ calls, not $5 \cdot 50$).
# </details>
