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
# # 04 · A conditional diffusion model with cross-attention: digits from sparse, noisy, low-resolution, occluded and k-space observations
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffusion-course/mnist-diffusion-inpainting/blob/main/notebooks/04_conditional_cross_attention.ipynb)
#
# Notebooks 02 and 03 filled holes: some pixels were known exactly, and the sampler copied them back in. Most real
# measurements are not like that: a camera adds noise to every pixel, a cheap sensor sees a low-resolution image, an
# MRI scanner measures a quarter of the Fourier coefficients. Here one network learns $p(x_0 \mid c)$ for six such
# degradations at once, told only the observation $c$ (and the mask, where pixels are known), and reconstruction is
# sampling, **with no replacement of known pixels and no guidance**.
#
# ## What you will learn
#
# - Six degradations as one conditioning interface (sparse pixels, noise, low resolution, rectangles, a centre
#   hole, undersampled k-space).
# - Linear attention, cross-attention and a ControlNet-style control encoder, each written out and checked against
#   `course_utils.attention`.
# - Training one model on a mixture of tasks; sampling it with DDPM and DDIM.
# - The posterior: K samples, their mean, and an uncertainty map checked against the real error.
# - What dropping data consistency costs, and an equal-budget ablation of three ways to feed the condition.
#
# ## What you need
#
# - Notebooks 02 (the U-Net, the DDPM posterior) and 03 (DDIM, predicting $x_0$, the evaluation harness).
# - Runtime: the README's table (training your own model adds what its cell prints).

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
import torch.nn.functional as F
from IPython.display import display

from course_utils import (attention, baselines, center_hole, classifier, cli, conditional, config, data,
                          diffusion, evaluation, metrics, models, plotting, pretrained, schedules, tasks, training,
                          widgets)

profile = config.get_profile()
# The course ships this notebook's model, trained once with the `pretrained` recipe (pretrained/conditional.json
# says how); in the cpu and full profiles the notebook uses it. TRAIN_YOUR_OWN = True trains this profile's own
# model here instead (the cpu recipe: 1,500 steps, 6 to 13 minutes on 2 CPU cores). The ci profile always trains
# a tiny one.
TRAIN_YOUR_OWN = False
own = conditional.KIND.config(profile)  # this profile's settings: its own recipe, evaluation sizes, ablation budget
cfg = own if TRAIN_YOUR_OWN else conditional.KIND.default_config(profile)  # the model's settings
device = config.get_device()
torch.backends.cudnn.allow_tf32 = False  # full float32 on a GPU too, so the checks against the module hold
torch.backends.cuda.matmul.allow_tf32 = False
SEED = config.seed_everything(0)
print(f"profile {profile.name}: the model's settings ({'the shipped recipe' if cfg.profile == 'pretrained' else 'this profile'};"
      " train_size is a cap, the training digits are what the MNIST folder holds)")
print(config.profile_table(cfg))
print(f"this profile's evaluation: {own.eval_size} test digits per task, K = {own.n_samples}; ablation: "
      f"{own.ablation_steps} steps of {own.ablation_batch} digits, {own.ablation_size} validation digits per task")
print("device:", device, "| seed:", SEED)

# %% [markdown]
# ## 1. The conditions
#
# Every observation is made on the fly from a clean digit $x_0$ by a task of `course_utils.tasks`, named by the
# spec strings the evaluation harness uses:
#
# | task | observation $c$ | mask $m$ |
# | --- | --- | --- |
# | `sparse:P` | $m \odot x_0$, a random fraction $P$ of the pixels kept (5 to 20 percent in training) | the kept pixels |
# | `noise:S` | $x_0 + S z$, $z \sim \mathcal N(0, I)$ ($S$ from 0.3 to 1.0 in training) | all zeros |
# | `lowres:4` | each 4x4 block averaged, shown at 32x32 | all zeros |
# | `rect`, `center:12` | $m \odot x_0$ with one to three rectangles, or a 12x12 centre square, hidden | the known pixels |
# | `kspace:0.25` | $\mathcal F^{-1}(M \odot \mathcal F x_0)$: a quarter of the Fourier coefficients, the lowest always, the rest zero | all zeros |
#
# The mask is 1 where a pixel is known exactly (all zeros for the measurement tasks). The model gets $c$ and $m$
# and nothing else: not the task's name, not its strength.

# %%
# the model's training and validation split (the digits it was trained on), and this profile's number of test digits
train, val, test = data.load_splits(dataclasses.replace(cfg, eval_size=own.eval_size), seed=SEED)
print(f"train {len(train)} | validation {len(val)} | test {len(test)} digits")
gallery = ["sparse:0.05", "sparse:0.2", "noise:0.3", "noise:1.0", "lowres:4", "rect", "center:12", "kspace:0.25"]
x_show = val.images[:8]
rows, row_masks = {"truth": x_show}, {}
for spec in gallery:
    obs = tasks.parse_task(spec).observe(x_show, seed=SEED)
    rows[spec] = obs.y
    if obs.task.is_mask_task:
        row_masks[spec] = obs.mask  # missing pixels drawn in red
        assert torch.equal(obs.y, obs.mask * x_show)
plotting.show_rows(rows, masks=row_masks, title="The conditions (validation digits): observation c of each task",
                   save="04_conditions")
plt.show()

# %% [markdown]
# One model learns them all: each training image gets a task drawn from `cfg.tasks` and one observation of it
# (`conditional.observe_mixture`). The sparse pixels are drawn four times and the centre hole twice as often as
# each of the others (`cfg.task_weights`): they leave the most to the model. A batch:

# %%
c_mix, m_mix, which = conditional.observe_mixture(val.images[:64], cfg.tasks, torch.Generator().manual_seed(SEED),
                                                  cfg.task_weights)
counts = torch.bincount(which, minlength=len(cfg.tasks))
print("tasks in one batch of 64:", {spec: int(n) for spec, n in zip(cfg.tasks, counts)})
for j, spec in enumerate(cfg.tasks):  # each image's mask says what kind of task it got
    rows_j = which == j
    assert tasks.parse_task(spec).is_mask_task == bool(m_mix[rows_j].sum() > 0) or not rows_j.any()

# %% [markdown]
# ## 2. The conditional U-Net, block by block
#
# The network predicts $\hat x_0 = f_\theta(x_t, t, m, c)$: notebook 02's U-Net with three levels (32x32, 16x16,
# 8x8) plus three new blocks, each built here and checked against `course_utils`.
#
# ### 2.1 Time embedding and residual blocks (notebook 02)
#
# Sinusoidal features of $t$, $\omega_i = 10000^{-i/(d/2)}$, through a small MLP; each residual block is
# $S h + \mathrm{conv}(\mathrm{SiLU}(\mathrm{GN}(\mathrm{conv}(\mathrm{SiLU}(\mathrm{GN}(h))) + W\,\mathrm{emb}(t))))$,
# $S$ a 1x1 convolution where the number of channels changes (the identity otherwise).

# %%
B = cfg.base_channels
t_demo = torch.tensor([0, 250, 999])
emb = models.sinusoidal_embedding(t_demo, B)
block = models.ResBlock(B, 2 * B, 4 * B)
h_demo = block(torch.randn(3, B, 32, 32), torch.randn(3, 4 * B))
print(f"time embedding {tuple(t_demo.shape)} -> {tuple(emb.shape)}; residual block {(3, B, 32, 32)} -> {tuple(h_demo.shape)}")

# %% [markdown]
# ### 2.2 Linear attention (self-attention at 32x32 and 16x16)
#
# Self-attention lets every pixel look at every other: with queries $q_i$, keys $k_j$ and values $v_j$ (1x1
# convolutions of the features), pixel $i$ gets $\sum_j a_{ij} v_j$. Softmax attention forms all $(HW)^2$ weights
# $a_{ij} \propto e^{q_i \cdot k_j / \sqrt d}$: a million at 32x32. **Linear attention** (Shen et al. 2021) applies
# the softmax separately, over each query's features, $\tilde q_i = \mathrm{softmax}(q_i)$, and over the positions
# of each key feature, $\tilde k = \mathrm{softmax}_j(k)$. Then $a_{ij} = \tilde q_i \cdot \tilde k_j$ is positive,
# each row sums to 1, and the sum regroups:
#
# $$\mathrm{out}_i = \sum_j (\tilde q_i \cdot \tilde k_j)\, v_j = \Big(\underbrace{\textstyle\sum_j v_j \tilde k_j^{\top}}_{d \times d\ \text{context}}\Big)\,\tilde q_i ,$$
#
# a $d \times d$ matrix formed once: cost $O(HW d^2)$ instead of $O((HW)^2 d)$. The block adds the result back:
# $x + W_o\,\mathrm{out}$.

# %%
def linear_attention(x, block):
    """Efficient Attention with the projections of a course_utils LinearAttention block."""
    n, c, h, w = x.shape
    q, k, v = block.to_qkv(block.norm(x)).reshape(n, 3, block.heads, block.dim, h * w).unbind(1)
    q, k = q.softmax(dim=2), k.softmax(dim=3)  # features of each query; positions of each key feature
    context = v @ k.transpose(-1, -2)  # heads x d x d: sum_j v_j k_j^T
    return x + block.to_out((context @ q).reshape(n, c, h, w))


lin = attention.LinearAttention(2 * B, heads=cfg.heads)
x_small = torch.randn(2, 2 * B, 16, 16)
q, k, v = lin.qkv(x_small)
a = q.transpose(-1, -2) @ k  # the implied weights a_ij, (HW) x (HW): only small inputs can afford them
direct = x_small + lin.to_out((v @ a.transpose(-1, -2)).reshape(x_small.shape))
assert torch.allclose(a.sum(-1), torch.ones(1), atol=1e-5) and (a > 0).all()
assert torch.allclose(linear_attention(x_small, lin), direct, atol=1e-5)
assert torch.allclose(linear_attention(x_small, lin), lin(x_small), atol=1e-5)
assert torch.allclose(a, lin.weights(x_small), atol=1e-6)
print("linear attention == the direct sum over all pixel pairs == attention.LinearAttention; rows of a sum to 1")

# %% [markdown]
# Timed at 32x32 with 16 images (the direct version builds 16 x heads x 1024 x 1024
# weights):

# %%
lin32, x32 = attention.LinearAttention(B, heads=cfg.heads), torch.randn(16, B, 32, 32)
with torch.no_grad():
    for name, fn in [("linear", lambda: linear_attention(x32, lin32)),
                     ("direct (softmax-sized)", lambda: x32 + lin32.to_out(
                         (lin32.qkv(x32)[2] @ lin32.weights(x32).transpose(-1, -2)).reshape(x32.shape)))]:
        fn()
        start = time.perf_counter()
        fn()
        print(f"{name:<24} {1000 * (time.perf_counter() - start):7.1f} ms")

# %% [markdown]
# ### 2.3 Cross-attention (at 16x16 and 8x8)
#
# Cross-attention is how the condition talks to the image (Rombach et al. 2022, section 3.3): the queries come
# from the U-Net's features $h$ (one per pixel), the keys and values from a sequence of **tokens** $\tau$ that
# describe the condition:
#
# $$\mathrm{out} = h + W_o\, \mathrm{softmax}\!\Big(\frac{Q K^\top}{\sqrt d}\Big) V, \qquad Q = h W_Q,\ K = \tau W_K,\ V = \tau W_V .$$
#
# Row $i$ of the softmax says which parts of the observation pixel $i$ reads. The tokens are the control encoder's
# 8x8 features (64 tokens): $HW \times 64$ weights, cheap even at 16x16.

# %%
def cross_attention(x, tokens, block):
    """softmax(Q K^T / sqrt(d)) V with the projections of a course_utils CrossAttention block."""
    n, c, h, w = x.shape
    q = block.to_q(block.norm(x).flatten(2).transpose(1, 2))  # N x HW x C
    k, v = block.to_kv(block.token_norm(tokens)).chunk(2, dim=-1)  # N x L x C
    heads = lambda z: z.reshape(n, z.shape[1], block.heads, block.dim).transpose(1, 2)
    weights = (heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(block.dim)).softmax(dim=-1)
    out = (weights @ heads(v)).transpose(1, 2).reshape(n, h * w, c).transpose(1, 2).reshape(n, c, h, w)
    return x + block.to_out(out), weights


cross = attention.CrossAttention(2 * B, token_dim=4 * B, heads=cfg.heads)
tok = torch.randn(2, 64, 4 * B)
ours, w_ours = cross_attention(x_small, tok, cross)
module, w_module = cross(x_small, tok, return_weights=True)
assert torch.allclose(ours, module, atol=1e-5) and torch.allclose(w_ours, w_module, atol=1e-6)
assert torch.allclose(w_ours.sum(-1), torch.ones(1), atol=1e-5)
print(f"cross-attention: features {tuple(x_small.shape)} attend to tokens {tuple(tok.shape)}; "
      f"weights {tuple(w_ours.shape)}, rows sum to 1; equal to attention.CrossAttention")

# %% [markdown]
# ### 2.4 The control encoder
#
# A small CNN reads $[c, m]$ and produces a feature map at every U-Net resolution (32, 16, 8). Two uses:
#
# - **added features** (the way ControlNet injects a condition, Zhang et al. 2023): level $i$'s features pass a
#   1x1 convolution $Z_i$ whose weights and bias **start at zero** and are added to the U-Net's level-$i$ features,
#   $h_i \leftarrow h_i + Z_i(e_i)$. In ControlNet the zero start protects a frozen pretrained U-Net; here
#   everything trains from scratch, so it only makes each added path begin at 0 and grow as its gradient asks (not
#   measured against a random start);
# - **tokens** for cross-attention: the 8x8 features, each with a learned position embedding (attention is
#   blind to order), read as 64 tokens.

# %%
enc = attention.ControlEncoder((B, 2 * B, 4 * B), token_levels=(2,))
feats, toks = enc(torch.cat([c_mix[:4], m_mix[:4]], dim=1))
for level, f in enumerate(feats):
    print(f"level {level}: added features {tuple(f.shape)}")
print(f"tokens at 8x8: {tuple(toks[2].shape)} (N x 64 tokens x {4 * B} channels)")
assert all(torch.count_nonzero(f) == 0 for f in feats), "zero convolutions: an untrained encoder adds nothing"
h_enc = torch.cat([c_mix[:4], m_mix[:4]], dim=1)
for level_block in enc.blocks:  # conv (stride 2 from level 1), GroupNorm, SiLU
    h_enc = level_block(h_enc)
assert torch.allclose(attention.feature_tokens(h_enc, enc.positions["2"]), toks[2])  # 8x8 map + positions -> 64 tokens

# %% [markdown]
# ### 2.5 The whole model
#
# `conditional.ConditionalUNet` puts the blocks together. Down: at each level a residual block and the control
# features added; linear attention at 32x32 and 16x16, and cross-attention at 16x16. Middle: residual block,
# cross-attention at 8x8, residual block. Up: a residual block per level on the skip connection. (Which attention
# blocks there are is a setting, `cfg.attention_at`; section 3 says why there are not more.) A shape trace of one
# forward pass:

# %%
torch.manual_seed(SEED)
net = conditional.build_conditional_model(cfg)
trace, modules = [], dict(net.named_modules())
order = ["encoder.blocks.0", "encoder.blocks.1", "encoder.blocks.2", "stem", "down.0", "down_attn.0.linear", "down.1",
         "down_attn.1.linear", "down_attn.1.cross", "down.2", "mid1", "mid_attn", "mid2", "up.0", "up.1", "up.2", "out"]
for name in order:
    modules[name].register_forward_hook(lambda mod, inp, out, name=name: trace.append((name, tuple(out.shape))))
with torch.no_grad():
    out = net(torch.randn(2, 1, 32, 32), torch.tensor([10, 900]), m_mix[:2], c_mix[:2])
for name, shape in trace:
    print(f"{name:<20} -> {shape}")  # down.i / up.i: residual blocks; encoder.blocks.i: the control encoder
assert out.shape == (2, 1, 32, 32)


# %% [markdown]
# Section 9's ablation compares three networks of the same width: `concat` (notebook 02's U-Net with $[m, c]$ as two
# more input channels, and no self-attention), `cross` (the model above without the added control features) and
# `control_cross` (the full model).

# %%
def n_params(model):
    return sum(p.numel() for p in model.parameters())


for arch in conditional.ARCHITECTURES:
    print(f"{arch:<14} {n_params(conditional.build_conditional_model(dataclasses.replace(cfg, architecture=arch))):>9,} parameters")

# %% [markdown]
# ## 3. Training
#
# **What the network predicts.** Notebook 03 found predicting $x_0$ ahead of predicting $\epsilon$, so the network
# outputs $\hat x_0$, with notebook 03's P2 weights,
#
# $$L = \mathbb E_{x_0, c, t, \epsilon}\Big[\lambda_t\,\big\| x_0 - f_\theta(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\ t,\ m,\ c) \big\|^2\Big], \qquad \lambda_t = \frac{1}{(1 + \mathrm{SNR}(t))^{\gamma}},$$
#
# with every pixel scored. `conditional.conditional_loss` is this loss, trained by the course's one loop,
# `training.fit`. `conditional.KIND.obtain(cfg)` returns the course's shipped model for the `pretrained` recipe
# (after checking its sha256 and config), and otherwise reuses, resumes or trains a run in `outputs/04_conditional/`;
# from a terminal: `python -m course_utils train --model conditional --profile cpu --out DIR`.

# %%
trained = conditional.KIND.obtain(cfg, device)  # the shipped model, or reuse / resume / train this profile's own
checkpoint, model = trained.path, trained.model
# where this notebook writes its results: the run's folder, or outputs/04_conditional/shipped-<profile>/ for the
# shipped model
run_dir = (config.output_dir("04_conditional", f"shipped-{profile.name}") if trained.status == "shipped"
           else trained.path.parent)
losses, history, train_seconds = trained.extra["losses"], trained.extra["history"], trained.extra["seconds"]
if trained.status == "shipped":  # its manifest says how it was made
    print(pretrained.provenance(trained.extra["manifest"], train, "this notebook's validation digits may hold "
                                "digits it has seen (its test digits, MNIST's test split, cannot)"))
print(f"{trained.status} {checkpoint}: {len(losses)} steps, {train_seconds / 60:.1f} min of training")
print(f"{train_seconds / len(losses):.2f} s per training step (batch {cfg.batch_size}, {device})")

# %%
plotting.plot_training(losses, history, "P2-weighted x0 loss", "PSNR (dB)",
                       f"validation: 32 digits, mean over the {len(cfg.tasks)} tasks, 1 sample", save="04_training_curves")
plt.show()
assert sum(losses[-(len(losses) // 10):]) < sum(losses[: len(losses) // 10]), "the loss should go down"

# %% [markdown]
# **What the attention costs.** A training step of this model against notebook 03's U-Net of the same width, same
# batch (the median of alternating rounds):

# %%
def step_time(net, loss_fn, opt):
    start = time.perf_counter()
    opt.zero_grad()
    loss_fn(net).backward()
    opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


sch = schedules.make_schedule(cfg.schedule, cfg.T)
x_b = train.images[: cfg.batch_size].to(device)
c_b, m_b, _ = conditional.observe_mixture(x_b, cfg.tasks, torch.Generator().manual_seed(1))
ch_cfg = center_hole.KIND.config(profile, base_channels=cfg.base_channels, channel_mults=cfg.channel_mults)
nets = {"notebook 03 U-Net": (center_hole.build_center_hole_model(ch_cfg), lambda net: center_hole.inpaint_loss(
            net, x_b, m_b, sch, torch.Generator().manual_seed(2), "x0", 1.0, 1.0, 1.0)),
        "notebook 04 model": (conditional.build_conditional_model(cfg), lambda net: conditional.conditional_loss(
            net, x_b, c_b, m_b, sch, torch.Generator().manual_seed(2)))}
timed = {name: (training.fast_layout(net, device).train(), fn) for name, (net, fn) in nets.items()}
opts = {name: torch.optim.AdamW(net.parameters(), lr=1e-4) for name, (net, _) in timed.items()}
rounds = 2 if profile.name == "ci" else 15
times = {name: [] for name in timed}
for r in range(rounds + 1):  # the two models take turns, so a slow spell of the machine hits both; round 0 warms up
    for name, (net, fn) in timed.items():
        seconds = step_time(net, fn, opts[name])
        if r:
            times[name].append(seconds)
step_seconds = {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}  # the median of the rounds
for name, s in step_seconds.items():
    print(f"{name:<18} {s:6.3f} s per step (median of {rounds}; batch {cfg.batch_size}, width {cfg.base_channels})")
ratio = step_seconds["notebook 04 model"] / step_seconds["notebook 03 U-Net"]
print(f"a step of this model takes {ratio:.2f} times as long")

# %% [markdown]
# That ratio is what the attention blocks and the control encoder cost per step (how the layout keeps it small:
# `docs/history.md`).
#
# ## 4. Sampling with DDPM and with DDIM
#
# Both are notebook 03's loop `diffusion.sample` with the condition handed to the network and **no consistency
# rule**: DDPM steps on `linspace` timesteps, or DDIM steps ($\eta = 0$) on `trailing` ones. Same seeds:

# %%
obs_demo = tasks.parse_task("sparse:0.1").observe(val.images[:8], seed=SEED)
samplers = {f"DDIM, {cfg.sample_steps} steps": ("ddim", cfg.sample_steps),
            f"DDPM, {cfg.ddpm_steps} steps": ("ddpm", cfg.ddpm_steps)}
drawn = {"observation": obs_demo.y}
for label, (kind, steps) in samplers.items():
    method = conditional.conditional_method(model, cfg, evaluation.SamplerOptions(steps), sampler=kind)
    start = time.perf_counter()
    drawn[label] = method.sample(obs_demo.to(device), torch.Generator().manual_seed(SEED)).cpu()
    seconds = time.perf_counter() - start
    psnr = metrics.psnr_on_mask(drawn[label], val.images[:8], obs_demo.mask).mean().item()
    print(f"{label:<18} {1000 * seconds / 8:7.1f} ms per digit, PSNR on the missing pixels {psnr:5.2f} dB (8 digits)")
drawn["truth"] = val.images[:8]
plotting.show_rows(drawn, masks={"observation": obs_demo.mask}, title="sparse:0.1 (10% of the pixels): DDIM and DDPM",
                   save="04_ddpm_vs_ddim")
plt.show()

# %% [markdown]
# ## 5. Where the model looks: attention maps
#
# A forward hook catches what the first cross-attention block (16x16) receives; calling it again with
# `return_weights=True` gives its weights. For one pixel on a stroke, its 64 weights over the encoder's 8x8 tokens
# are drawn over the observation, and linear self-attention's (`LinearAttention.weights`) for the same pixel.

# %%
obs_att = tasks.parse_task("sparse:0.2").observe(val.images[:1], seed=SEED).to(device)
caught = {}
hooks = [model.down_attn[1]["cross"].register_forward_hook(lambda mod, inp, out: caught.update(cross=inp)),
         model.down_attn[1]["linear"].register_forward_hook(lambda mod, inp, out: caught.update(linear=inp))]
t_att = torch.tensor([300], device=device)
x_t_att = sch.alpha_bars[300].sqrt().item() * val.images[:1].to(device) + (1 - sch.alpha_bars[300]).sqrt().item() * \
    torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(3)).to(device)
with torch.no_grad():
    model(x_t_att, t_att, obs_att.mask, obs_att.y)
    for hook in hooks:
        hook.remove()
    _, w_cross = model.down_attn[1]["cross"](*caught["cross"], return_weights=True)
    w_lin = model.down_attn[1]["linear"].weights(caught["linear"][0])
assert torch.allclose(w_cross.sum(-1), torch.ones(1, device=device), atol=1e-4)
stroke = (F.avg_pool2d(val.images[:1], 2)[0, 0] > 0).nonzero()  # 16x16 pixels on the digit
qi, qj = stroke[len(stroke) // 2].tolist()
query = qi * 16 + qj
maps = {"cross-attention (8x8 tokens)": w_cross[0].mean(0)[query].reshape(8, 8).cpu(),
        "linear self-attention (16x16)": w_lin[0].mean(0)[query].reshape(16, 16).cpu()}
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
axes[0].imshow(plotting.to_display(obs_att.y[0].cpu(), obs_att.mask[0].cpu()))
axes[0].plot(2 * qj + 0.5, 2 * qi + 0.5, "c*", ms=14)
axes[0].set_title("observation, query pixel (star)")
for ax, (name, wmap) in zip(axes[1:], maps.items()):
    ax.imshow(plotting.to_display(obs_att.y[0].cpu()), alpha=0.5)
    im = ax.imshow(F.interpolate(wmap[None, None], size=32, mode="nearest")[0, 0], cmap="viridis", alpha=0.65)
    ax.plot(2 * qj + 0.5, 2 * qi + 0.5, "r*", ms=12)
    ax.set_title(f"{name}\nmax weight {wmap.max():.3f}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(f"Attention weights of one query pixel (t = 300, averaged over {cfg.heads} heads)")
plotting.save_figure(fig, "04_attention_maps")
plt.show()

# %% [markdown]
# A uniform map would have every weight at $1/64 \approx 0.016$ (cross) or $1/256 \approx 0.004$ (linear); the
# maximum's rise above it says how selective the block has become.
#
# ## 6. Results per task, on test digits
#
# The harness (`evaluation.evaluate`, as in `python -m course_utils eval`) draws K = `own.n_samples` DDIM samples
# per test digit and scores one sample and the mean of K against each task's classical baselines on the same
# observations, with notebook 03's metrics.

# %%
clf, clf_info = classifier.course_classifier(profile.name, device=device)
print(f"course classifier: {clf_info['status']}, validation accuracy "
      f"{100 * clf_info['val_accuracy']:.1f}%")
RESULT_TASKS = ["sparse:0.1", "noise:0.5", "lowres:4", "kspace:0.25", "center:12"]
x_test, y_test = test.images[: own.eval_size], test.labels[: own.eval_size]
method = conditional.conditional_method(model, cfg, evaluation.SamplerOptions(cfg.sample_steps))
results, per_image, samples_of = {}, {}, {}
for spec in RESULT_TASKS:
    results[spec], per_image[spec], samples_of[spec] = evaluation.evaluate(
        method, x_test, y_test, spec, k=own.n_samples, seed=SEED, classifier=clf, library=train.images)
    print(evaluation.format_results(results[spec]), "\n")

# %%
def best_baseline(summary, metric="psnr"):
    return max(summary["baselines"], key=lambda b: summary["baselines"][b][metric])


def one_sample_class(spec):
    """P(one sample keeps the class), estimated from all K samples of every digit: each of them is "one sample".

    The harness reports the same estimate as metrics["class_acc"]["each_sample"]; the table below asserts they agree.
    """
    return torch.stack([classifier.predict(clf, s) == y_test for s in samples_of[spec]]).float().mean().item()


K = own.n_samples
print(f"{len(x_test)} test digits per task, K = {K}, DDIM {cfg.sample_steps} steps ({profile.name} profile)")
print(f"{'task':<12}{'best baseline':<18}{'PSNR':>6}{'SSIM':>6}{'class':>6}{'FD':>6} |{'1 sample':>9}{'SSIM':>6}"
      f"{'class':>6}{'FD':>6} |{f'mean {K}':>8}{'SSIM':>6}{'class':>6}")
table = {}
for spec, r in results.items():
    b = best_baseline(r)
    br, m = r["baselines"][b], r["metrics"]
    best_class = max(x["class_acc"] for x in r["baselines"].values())
    table[spec] = {"baseline": b, "baseline_psnr": br["psnr"], "best_baseline_class": best_class,
                   "single_psnr": m["psnr"]["single"], "mean_psnr": m["psnr"]["mean_k"],
                   "single_class": m["class_acc"]["single"], "one_sample_class": m["class_acc"]["each_sample"]}
    assert abs(one_sample_class(spec) - table[spec]["one_sample_class"]) < 1e-6, "the harness estimates it the same way"
    print(f"{spec:<12}{b:<18}{br['psnr']:6.2f}{br['ssim']:6.3f}{br['class_acc']:6.2f}{br['frechet']:6.1f} |"
          f"{m['psnr']['single']:9.2f}{m['ssim']['single']:6.3f}{m['class_acc']['single']:6.2f}{m['frechet']['single']:6.1f} |"
          f"{m['psnr']['mean_k']:8.2f}{m['ssim']['mean_k']:6.3f}{m['class_acc']['mean_k']:6.2f}")
metrics_file = run_dir / f"metrics_{profile.name}.json"
metrics_file.write_text(json.dumps({"results": results, "table": table, "profile": profile.name,
                                    "train_seconds": train_seconds, "device": str(device)}, indent=2))
print("saved", metrics_file)

# %% [markdown]
# The baseline columns are each task's best classical method by PSNR. In `cpu` and `full` the notebook checks that
# the mean of K beats it on every task and that one sample keeps the class at least as often as the best of *any*
# baseline. "One sample keeps the class" is a probability: we estimate it from all K samples (the "1 sample" column
# reads the first only, a noisier estimate).

# %%
for spec, row in table.items():
    print(f"{spec:<12} mean of {K} {row['mean_psnr'] - row['baseline_psnr']:+6.2f} dB vs {row['baseline']}; "
          f"one sample's class {row['one_sample_class']:.3f} (all {K} samples; the first alone "
          f"{row['single_class']:.3f}) vs best baseline {row['best_baseline_class']:.3f} "
          f"(room above it: {1 - row['best_baseline_class']:.3f})")
clean_class = results[RESULT_TASKS[0]]["classifier_test_accuracy"]  # the classifier on the clean digits themselves
print(f"the classifier recognises {clean_class:.3f} of these test digits uncorrupted")
class_short = [spec for spec, row in table.items() if row["one_sample_class"] < row["best_baseline_class"]]
if profile.name in ("cpu", "full"):
    for spec, row in table.items():
        assert row["mean_psnr"] > row["baseline_psnr"], f"{spec}: mean of {K} does not beat {row['baseline']}"
    assert not class_short, (
        f"one sample keeps the class less often than the best baseline on {class_short}. At the cpu budget the model is "
        "limited by its training steps, while the nearest neighbour gains with every training digit in its library "
        f"({len(train)} here); section 6's 'The nearest neighbour grows with its library' measures it")
    gains = [row["mean_psnr"] - row["baseline_psnr"] for row in table.values()]
    print(f"key result: the mean of {K} beats the best baseline on all {len(table)} tasks, by "
          f"{min(gains):+.2f} to {max(gains):+.2f} dB, and one sample keeps the class at least as often on all of them")
else:
    print("key result: ci profile, not judged")

# %% [markdown]
# Class preservation has a ceiling: few reconstructions are recognised more often than the uncorrupted digit
# (printed above). Where the best baseline sits near it (light
# noise, a quarter of k-space) little is left to win; the class column separates methods on the hard tasks.
#
# **Is one sample's class a lottery?** Let $q$ be the distribution of the class of the model's samples for one
# observation, $c^*$ the true class. One sample keeps the class with probability $q_{c^*}$; two samples agree with
# probability $\sum_c q_c^2$. If the posterior is *calibrated* (the
# truth behaves like one more draw from it), the two are equal on average. Equal rates are necessary, not
# sufficient (over- and under-confident digits can average out), but a large gap says the posterior is
# miscalibrated. The best single answer is the most probable class, $\arg\max_c q_c$, which the vote of the K
# samples estimates. All three, from the samples the harness drew:

# %%
print(f"{'task':<12}{'one sample':>11}{'two agree':>10}{f'vote of {K}':>10}{'best baseline':>14}")
class_votes = {}
for spec in RESULT_TASKS:
    classes = torch.stack([classifier.predict(clf, s) for s in samples_of[spec]])  # K x N predicted classes
    one = table[spec]["one_sample_class"]  # the harness's estimate from the same K samples
    agree = torch.stack([(classes[a] == classes[b]).float().mean()
                         for a in range(K) for b in range(a + 1, K)]).mean().item() if K > 1 else float("nan")
    vote = (torch.mode(classes, dim=0).values == y_test).float().mean().item()  # a tie goes to the smallest class
    class_votes[spec] = {"one_sample": one, "two_agree": agree, "vote": vote}
    print(f"{spec:<12}{one:11.3f}{agree:10.3f}{vote:10.3f}{table[spec]['best_baseline_class']:14.3f}")
if profile.name in ("cpu", "full"):
    v = class_votes["sparse:0.1"]
    print(f"sparse:0.1: one sample {v['one_sample']:.3f} vs two samples agree {v['two_agree']:.3f}; the model's "
          f"most probable class (vote of {K}) {v['vote']:.3f} vs best baseline {table['sparse:0.1']['best_baseline_class']:.3f}")

# %% [markdown]
# Two samples agreeing more often than one keeps the class says the model is more sure than it is right only where
# the gap exceeds the classifier's own error on clean digits (section 6): "keeps the class" pays for its
# misreadings, "agree" does not. Where one sample trails the vote, a single draw is a lottery over plausible
# classes. On sparse pixels a sample sometimes
# draws a stroke across a pixel observed as background (exercise 1 asks whether that costs the class).
#
# **The nearest neighbour grows with its library.** Its class preservation on the same test observations, with
# random subsets of the training digits as its library (three draws of each size, averaged):

# %%
nn_gen = torch.Generator().manual_seed(SEED)
lib_sizes = sorted({max(len(train) // 2**j, 2) for j in (3, 2, 1, 0)})
print(f"nearest neighbour's class preservation on {len(x_test)} test digits ({profile.name} profile)")
print(f"{'library':>8}" + "".join(f"{spec:>13}{'per doubling':>14}" for spec in ("sparse:0.1", "center:12")))
nn_scaling = {}
for i, size in enumerate(lib_sizes):
    picks = ([torch.randperm(len(train), generator=nn_gen)[:size] for _ in range(3)] if size < len(train)
             else [torch.arange(len(train))])  # the whole library: one draw, the harness's row
    nn_scaling[size] = {}
    for spec in ("sparse:0.1", "center:12"):
        obs = tasks.parse_task(spec).observe(x_test, SEED + evaluation.OBSERVATION_SEED_OFFSET)
        accs = [classifier.accuracy(clf, baselines.nearest_neighbour_fill(obs.y, obs.mask, train.images[p]), y_test)
                for p in picks]
        nn_scaling[size][spec] = sum(accs) / len(accs)
    line = f"{size:>8}"
    for spec in ("sparse:0.1", "center:12"):
        line += f"{nn_scaling[size][spec]:>13.3f}"
        if i > 0:  # the change since the size before, per doubling of the library
            before = lib_sizes[i - 1]
            line += f"{(nn_scaling[size][spec] - nn_scaling[before][spec]) / math.log2(size / before):+14.3f}"
        else:
            line += " " * 14
    print(line)
for spec in ("sparse:0.1", "center:12"):  # the whole library is the results table's row
    assert abs(nn_scaling[len(train)][spec] - results[spec]["baselines"]["nearest_neighbour"]["class_acc"]) < 1e-6
print(f"the model, trained on all {len(train)}: one sample keeps the class "
      + ", ".join(f"{table[spec]['one_sample_class']:.3f} ({spec})" for spec in ("sparse:0.1", "center:12")))

# %% [markdown]
# Every doubling of the library gives the nearest neighbour more digits to copy from, while a model of a fixed
# training budget takes the same optimiser steps; with the full MNIST (60,000 digits) the baseline gets several
# doublings stronger. It can also be stronger on validation digits than on test digits, which were written by other
# people: a validation digit may have a training digit by the same hand to copy. Tune on validation digits, report on
# test digits.
#
# One sample per observation, for every task:

# %%
rows, row_masks = {"truth": x_test[:8]}, {}
for spec in RESULT_TASKS:
    obs = tasks.parse_task(spec).observe(x_test, SEED + evaluation.OBSERVATION_SEED_OFFSET)  # the harness's observations
    rows[f"{spec}: c"] = obs.y[:8]
    if obs.task.is_mask_task:
        row_masks[f"{spec}: c"] = obs.mask[:8]
    rows[f"{spec}: sample"] = samples_of[spec][0, :8]
plotting.show_rows(rows, masks=row_masks, title=f"Corrupted -> reconstructed: one sample of the {profile.name} model "
                   "per observation (test digits)", save="04_corrupted_reconstructed")
plt.show()

# %% [markdown]
# ## 7. The posterior: what the spread of K samples knows
#
# K samples of one observation differ where the observation leaves room. Their per-pixel mean estimates the
# posterior mean, their per-pixel standard deviation is an **uncertainty map**. Two questions, per task:
#
# - does the uncertainty point at the errors? (the correlation of a pixel's std with the error of the mean)
# - does the range of the samples cover the truth? the share of true pixels inside $[\min_k, \max_k]$. An exact
#   sampler covers a continuous value with probability $(K-1)/(K+1)$ (exercise 4); background pixels, where the
#   truth and all samples tie at $-1$, count as inside and push the share up.

# %%
def calibration(samples, truth, mask):
    unit, target = (samples + 1) / 2, (truth + 1) / 2  # [0, 1], like every metric of the course
    mean, std = unit.mean(0), unit.std(0, correction=0)
    scored = metrics.scored_region(mask).flatten() > 0  # the missing pixels, or all for a measurement task
    s, e = std.flatten()[scored], (mean - target).abs().flatten()[scored]
    corr = torch.corrcoef(torch.stack([s, e]))[0, 1].item()
    inside = (unit.amin(0) <= target) & (target <= unit.amax(0))
    return corr, inside.flatten()[scored].float().mean().item()


calib = {}
for spec in RESULT_TASKS:
    obs = tasks.parse_task(spec).observe(x_test, SEED + evaluation.OBSERVATION_SEED_OFFSET)
    corr, cover = calibration(samples_of[spec], x_test, obs.mask)
    module = metrics.uncertainty_calibration(samples_of[spec], x_test, obs.mask)
    assert math.isclose(corr, module["std_error_corr"], abs_tol=1e-4) and math.isclose(cover, module["coverage"], abs_tol=1e-6)
    calib[spec] = module
print(f"{'task':<12}{'corr(std, |error|)':>20}{'coverage of the K-range':>26}   (exact posterior: {(K - 1) / (K + 1):.2f})")
for spec, c in calib.items():
    print(f"{spec:<12}{c['std_error_corr']:>20.3f}{c['coverage']:>26.3f}")

# %%
rows = {}
for spec in ["sparse:0.1", "center:12", "noise:0.5", "kspace:0.25"]:
    obs = tasks.parse_task(spec).observe(x_test[:2], SEED + evaluation.OBSERVATION_SEED_OFFSET)
    for i in range(2):
        rows[f"{spec} #{i}"] = (obs.y[i], obs.mask[i], samples_of[spec][:, i], x_test[i])
plotting.show_posterior(rows, n_samples=3, title=f"K = {K} samples: mean, uncertainty (std) and error of the mean",
                        save="04_uncertainty")
plt.show()

# %% [markdown]
# Where the samples disagree (bright std), the mean is usually wrong too; the correlation puts a number on it.
# Where coverage falls short of the reference, the model is more confident than it should be.
#
# **A calibration curve.** Dropping the $i$ lowest and $i$ highest samples of a pixel gives intervals narrower than
# the range, of level $(K-1-2i)/(K+1)$ for an exact sampler; `coverage_curve` breaks ties at random (the table
# above counts them inside). Calibrated lies on the diagonal, over-confident below it.
#
# **Conformal intervals.** Rescale the spread: mean $\pm\ \lambda\,(\text{std} + 0.01)$, $\lambda$ fitted to cover
# 90% of the pixels of *validation* digits (`metrics.conformal_scale`; above 1 widens, below 1 narrows), checked on
# test digits. Pixels of one image are not exchangeable, so the 90% holds on average, without split conformal's
# guarantee.

# %%
def coverage_curve(samples, truth, mask):
    """{nominal level: coverage} of the intervals that drop the i lowest and i highest of a pixel's K samples."""
    unit, target = (samples + 1) / 2, (truth + 1) / 2  # [0, 1], like every metric of the course
    scored = metrics.scored_region(mask).flatten() > 0
    below = (unit < target).sum(0).flatten()[scored]  # samples strictly below the truth
    equal = (unit == target).sum(0).flatten()[scored]  # samples tied with it
    k = samples.shape[0]
    curve = {}
    for i in range(k // 2):
        inside = torch.zeros(len(below))
        for u in range(k + 1):  # u of the tied samples end up below the truth, each of 0 .. equal equally likely
            rank = below + u
            inside += ((u <= equal) & (rank >= i + 1) & (rank <= k - 1 - i)).float() / (equal + 1)
        curve[(k - 1 - 2 * i) / (k + 1)] = inside.mean().item()
    return dict(sorted(curve.items()))


obs_check = tasks.parse_task("sparse:0.1").observe(x_test, SEED + evaluation.OBSERVATION_SEED_OFFSET)
ours = coverage_curve(samples_of["sparse:0.1"], x_test, obs_check.mask)
module = metrics.interval_coverage(samples_of["sparse:0.1"], x_test, obs_check.mask)
assert ours.keys() == module.keys() and all(math.isclose(ours[a], module[a], abs_tol=1e-5) for a in ours)
print("coverage_curve == metrics.interval_coverage on sparse:0.1:",
      ", ".join(f"{level:.2f} -> {cover:.3f}" for level, cover in ours.items()))

# %%
N_CONFORMAL = {"ci": 4, "cpu": 64, "full": 200}[profile.name]  # validation digits per task that fit lambda
LEVEL = 0.9
x_cal = val.images[:N_CONFORMAL]
curves, conformal = {}, {}
for spec in RESULT_TASKS:
    obs_test = tasks.parse_task(spec).observe(x_test, SEED + evaluation.OBSERVATION_SEED_OFFSET)
    curves[spec] = metrics.interval_coverage(samples_of[spec], x_test, obs_test.mask)
    obs_cal = tasks.parse_task(spec).observe(x_cal, SEED + evaluation.OBSERVATION_SEED_OFFSET)
    cal_samples, _, _ = evaluation.draw_samples(method, obs_cal, K, seed=SEED, progress=False)
    scale = metrics.conformal_scale(cal_samples, x_cal, obs_cal.mask, LEVEL)
    conformal[spec] = {"scale": scale,
                       "validation": metrics.scaled_interval_coverage(cal_samples, x_cal, obs_cal.mask, scale),
                       "test": metrics.scaled_interval_coverage(samples_of[spec], x_test, obs_test.mask, scale),
                       "test, plus-minus one std": metrics.scaled_interval_coverage(
                           samples_of[spec], x_test, obs_test.mask, 1.0)}
fig, ax = plt.subplots(figsize=(4.5, 4))
for spec, curve in curves.items():
    ax.plot(list(curve), list(curve.values()), "o-", label=spec)
ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
ax.set(xlabel="nominal level (exact sampler)", ylabel="coverage on test digits", title=f"K = {K}, {profile.name}")
ax.legend(fontsize=7)
plotting.save_figure(fig, "04_calibration_curve")
plt.show()
print(f"{'task':<12}{'lambda':>8}{'validation':>12}{'test':>8}{'test, +-1 std':>15}   (target level {LEVEL})")
for spec, c in conformal.items():
    print(f"{spec:<12}{c['scale']:8.2f}{c['validation']:12.3f}{c['test']:8.3f}{c['test, plus-minus one std']:15.3f}")

# %% [markdown]
# A scale far above 1 means the samples are much more alike than the truth is to them. Validation and test digits
# come from different writers, so the test coverage can miss the fitted level.
#
# ## 8. Known pixels without projection
#
# Notebook 03 copied the known pixels back in at every step, so they were exact. This model is only *told* them.
# How far do its samples move them? Over the known pixels of the mask tasks (K samples of every test digit):

# %%
for spec in ["sparse:0.1", "center:12"]:
    obs = tasks.parse_task(spec).observe(x_test, SEED + evaluation.OBSERVATION_SEED_OFFSET)
    change = ((samples_of[spec] - obs.y).abs() * obs.mask)  # on the [-1, 1] scale
    mean_change = (change.sum() / (obs.mask.sum() * K)).item()
    print(f"{spec:<11} known pixels: mean |change| {mean_change:.3f}, largest {change.max():.2f} "
          f"(harness: {results[spec]['known_pixels_max_abs_error']:.2f}); on a range of 2")
    assert math.isclose(change.max().item(), results[spec]["known_pixels_max_abs_error"], abs_tol=1e-5)

# %% [markdown]
# The mean change is small and the largest is not: now and then a sample redraws a stroke through a known pixel
# (exercise 1 adds notebook 03's replacement).
#
# ## 9. Ablation: three ways to feed the condition, at the same budget
#
# Each architecture trains from scratch for `own.ablation_steps` steps of `own.ablation_batch` digits (same mixture,
# seed and batches) and is scored on validation digits, one DDIM sample each. These runs are far shorter than the
# main model's: they rank the designs early in training, not where each would end.

# %%
x_abl, y_abl = val.images[: own.ablation_size], val.labels[: own.ablation_size]
ablation = {}
for arch in conditional.ARCHITECTURES:
    row_cfg = dataclasses.replace(own, architecture=arch, steps=own.ablation_steps, batch_size=own.ablation_batch,
                                  save_every=own.ablation_steps, warmup=min(own.warmup, own.ablation_steps // 10 + 1))
    row = conditional.KIND.obtain(row_cfg, device, progress=False)
    row_model, row_seconds = row.model, row.extra["seconds"]
    row_method = conditional.conditional_method(row_model, row_cfg, evaluation.SamplerOptions(own.sample_steps))
    ablation[arch] = {"train_seconds_per_step": row_seconds / row_cfg.steps, "params": n_params(row_model)}
    for spec in RESULT_TASKS:
        r, _, _ = evaluation.evaluate(row_method, x_abl, y_abl, spec, k=1, seed=SEED, classifier=clf,
                                      baselines=False, progress=False)
        ablation[arch][spec] = {"psnr": r["metrics"]["psnr"]["single"], "ssim": r["metrics"]["ssim"]["single"],
                                "class": r["metrics"]["class_acc"]["single"], "s_per_sample": r["seconds_per_image"]}
    print(f"{arch:<14} {ablation[arch]['params']:>8,} parameters, {ablation[arch]['train_seconds_per_step']:.2f} s per "
          f"training step")

# %%
print(f"Equal budget: {own.ablation_steps} steps of {own.ablation_batch} digits per architecture; {len(x_abl)} "
      f"validation digits per task, one DDIM sample ({own.sample_steps} steps)")
print(f"{'task':<12}{'architecture':<15}{'PSNR':>7}{'SSIM':>7}{'class':>7}{'ms/sample':>10}")
for spec in RESULT_TASKS:
    for arch in conditional.ARCHITECTURES:
        r = ablation[arch][spec]
        print(f"{spec:<12}{arch:<15}{r['psnr']:7.2f}{r['ssim']:7.3f}{r['class']:7.2f}{1000 * r['s_per_sample']:10.1f}")
(run_dir / f"ablation_{profile.name}.json").write_text(json.dumps(
    {"budget": {"steps": own.ablation_steps, "batch_size": own.ablation_batch}, "n_images": len(x_abl),
     "rows": ablation}, indent=2))
fig, ax = plt.subplots(figsize=(9, 3.4))
width = 0.8 / len(conditional.ARCHITECTURES)
for i, arch in enumerate(conditional.ARCHITECTURES):
    ax.bar([j + i * width for j in range(len(RESULT_TASKS))], [ablation[arch][s]["psnr"] for s in RESULT_TASKS],
           width, label=arch)
ax.set_xticks([j + width for j in range(len(RESULT_TASKS))], RESULT_TASKS)
ax.set(ylabel="PSNR, one sample (dB)", title=f"Ablation at equal budget ({own.ablation_steps} steps each, {profile.name})")
ax.legend()
plotting.save_figure(fig, "04_ablation")
plt.show()

# %% [markdown]
# `concat` is the cheapest per step and sees the condition only through its first convolution; `cross` reads it
# only through attention to 64 coarse tokens; `control_cross` also gets its features added, pixel-aligned, at every
# resolution. With so few steps, read tenths of a dB as noise; the class column tells which design uses the
# condition at all yet.
#
# ## 10. Try it yourself
#
# Pick a test digit, a degradation and its strength, and press **Sample**: the model draws K samples and shows their
# mean and uncertainty map. The figure is the same view, drawn statically (a widget needs a running kernel).

# %%
static_obs = widgets.explorer_observation(x_test[3], "rect", rect=(8, 12, 16, 8), seed=SEED)
fig = widgets.posterior_figure(model, cfg, x_test[3], static_obs, k=4)
plotting.save_figure(fig, "04_try_it")
plt.show()
widgets.posterior_explorer(model, cfg, x_test, k=4)

# %% [markdown]
# ## 11. From the command line
#
# `eval` scores the same model on any MNIST folder (`--checkpoint pretrained:conditional` names the shipped one):

# %%
named = "pretrained:conditional" if trained.status == "shipped" else str(checkpoint)
assert cli.main(["eval", "--checkpoint", named, "--task", "sparse:0.1", "--data-dir", str(config.data_dir()),
                 "--profile", profile.name, "--n", "8", "--k", "2", "--steps", str(cfg.sample_steps)]) == 0

# %% [markdown]
# ## Summary
#
# - One network learned $p(x_0 \mid c)$ for six degradations, told only $c$ and the mask; reconstruction is
#   sampling.
# - Linear attention regroups $\sum_j (\tilde q_i \cdot \tilde k_j) v_j$ as $(\sum_j v_j \tilde k_j^\top)\,\tilde q_i$:
#   attention over all pixels at linear cost. Cross-attention lets every pixel read tokens of the condition; the
#   control encoder adds the condition's features at every resolution through zero-initialised convolutions.
# - K samples give a posterior mean and an uncertainty map; a calibration curve checks its intervals, and a
#   conformal scale fitted on validation digits corrects their average coverage.
# - Without projection, known pixels are only approximately kept: measured, not assumed.
#
# Next, notebook 05 adapts a model that knows nothing of observations: an unconditional prior.
#
# ## Exercises
#
# 1. Add notebook 03's replacement (`diffusion.Replacement`) to the sampler for `sparse:0.1` and `center:12`. What
#    happens to the known pixels, to the PSNR on the missing ones, and to the class?
# 2. Give the model strengths it never saw in training: `sparse:0.03` and `noise:1.5`. Does the mean of K still
#    beat the baselines?
# 3. How does the PSNR of the mean of K grow with K (1, 2, 4, 8) on `center:12`? Compare with notebook 03's
#    $10\log_{10}(2/(1+1/K))$ for an ideal sampler.
# 4. *Pen and paper.* Let $X_0, \dots, X_K$ be independent draws of one continuous distribution given the observation
#    (the truth and K exact posterior samples). Show that $P(\min_{k \ge 1} X_k \le X_0 \le \max_{k \ge 1} X_k) =
#    (K-1)/(K+1)$. What changes when values can tie (a clipped background pixel)?
#
#
# <details><summary>Solution 1</summary>
#
# ```python
# sch = schedules.make_schedule(cfg.schedule, cfg.T)
# ts = diffusion.timesteps(cfg.T, cfg.sample_steps, "trailing")
# for spec in ["sparse:0.1", "center:12"]:
#     obs = tasks.parse_task(spec).observe(x_test[:16], seed=1).to(device)
#     for label, rule in [("no projection", None), ("replacement", diffusion.Replacement(obs.y, obs.mask, sch))]:
#         outs = []
#         for j in range(2):
#             denoiser = diffusion.Denoiser(model, sch, cfg.prediction, (obs.mask, obs.y))
#             x = diffusion.sample(denoiser, obs.y, ts, "ddim", 0.0, rule, 1, torch.Generator().manual_seed(j))
#             outs.append(x)  # diffusion.sample already applies the rule's finish
#         outs = torch.stack(outs).cpu()
#         drift = ((outs - obs.y.cpu()).abs() * obs.mask.cpu()).max().item()
#         psnr = metrics.psnr_on_mask(outs.mean(0), x_test[:16], obs.mask.cpu()).mean().item()
#         kept = (classifier.predict(clf, outs[0]) == y_test[:16]).float().mean().item()
#         print(f"{spec:<11} {label:<14} known pixels max |change| {drift:.3f}, PSNR of the mean {psnr:.2f} dB, "
#               f"one sample's class {kept:.2f}")
# ```
# With replacement the known pixels are exact. Whether the rest gains depends on the task: replacement corrects a
# sample that wandered across an observed pixel, but puts into $x_t$ a mix the network never saw in training.
# Measure it on more (validation) digits before adopting it.
# </details>
#
# <details><summary>Solution 2</summary>
#
# ```python
# for spec in ["sparse:0.03", "noise:1.5"]:
#     res, _, s = evaluation.evaluate(method, x_test[:16], y_test[:16], spec, k=2, library=train.images, progress=False)
#     best = best_baseline(res)
#     print(f"{spec}: mean of 2 {res['metrics']['psnr']['mean_k']:.2f} dB, best baseline {best} "
#           f"{res['baselines'][best]['psnr']:.2f} dB")
# ```
# Outside the training range the model still draws digits, but they follow the observation less.
# </details>
#
# <details><summary>Solution 3</summary>
#
# ```python
# s = samples_of["center:12"]
# obs = tasks.parse_task("center:12").observe(x_test, SEED + evaluation.OBSERVATION_SEED_OFFSET)
# one = metrics.psnr_on_mask(s[0], x_test, obs.mask).mean().item()
# for k in [k for k in (1, 2, 4, 8) if k <= s.shape[0]]:
#     psnr = metrics.psnr_on_mask(s[:k].mean(0), x_test, obs.mask).mean().item()
#     print(f"K = {k}: {psnr:.2f} dB ({psnr - one:+.2f}; ideal {10 * math.log10(2 / (1 + 1 / k)):+.2f})")
# ```
# Where the gain falls short of the ideal curve, $V < \mathrm{MMSE} + B$ in notebook 03's terms: too little spread, a
# biased mean, or both (the ideal is for pooled squared error; this per-digit average comes close).
# </details>
#
# <details><summary>Solution 4</summary>
#
# By symmetry each of the $K+1$ draws is equally likely to be the smallest or the largest (ties have probability 0).
# $X_0$ lies outside the others' range exactly when it is one of these two: probability $2/(K+1)$. So it lies
# inside with probability $1 - 2/(K+1) = (K-1)/(K+1)$, $7/9$ for $K = 8$. With ties the symmetry breaks: a pixel
# where the truth and all samples equal $-1$ is covered with probability 1.
# </details>

