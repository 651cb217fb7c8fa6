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
# # 06 · The benchmark: every method of the course on the same held-out digits, and what one sample's PSNR hides
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffusion-course/mnist-diffusion-inpainting/blob/main/notebooks/06_benchmark.ipynb)
#
# The course ends where a practitioner starts: *which method should I use, and at what cost?* Notebooks 02 to 05
# each scored their own models on their own tables. Here every method the course built meets the classical
# baselines and one new, strong, non-generative opponent, an **MMSE regressor**, on the same test digits, the same
# masks and measurements, the same metrics and the same clock. Then we put to the test a claim that surprises most
# people the first time: that a single diffusion sample can lose to the regressor on PSNR and still be the better
# reconstruction, and that averaging samples walks back toward the regressor's answer.
#
# ## What you will learn
#
# - How to run a fair benchmark: one set of held-out digits, one observation per digit and task shared by every
#   method, empty cells where a method cannot do a task (never a made-up number), cost counted in network calls.
# - What the MMSE regressor is (the posterior mean E[x0 | y]), why it has the lowest expected squared error a
#   deterministic method can have (so the best PSNR of the pooled error; the per-image PSNR we average is close to
#   it, not the same), and why its digits are blurry.
# - Why a posterior sample has a lower PSNR than the posterior mean (in theory twice its error), what a sample can
#   buy instead (sharp strokes, a digit that looks real), and whether it does here: measured, not promised.
# - How the mean of K samples moves toward the MMSE answer as K grows, measured against the theory.
# - How to read a quality-against-network-calls plot when choosing a method.
#
# ## What you need
#
# - Notebooks 02 to 05, whose models it compares: in `cpu` and `full` the course's shipped ones (`pretrained/`) and
#   notebook 05's fine-tunes, reused from `outputs/` when notebook 05 has run and trained here otherwise; in `ci`
#   each notebook's tiny model. And notebook 03's evaluation harness.
# - Runtime: the README's table (with notebook 05's fine-tunes in `outputs/`; a model that is missing is trained
#   first, and its cell prints how long that took).

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
import json
import math
import time

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from course_utils import benchmark, classifier, config, data, evaluation, metrics, mmse, plotting, tasks

profile = config.get_profile()
bcfg = benchmark.bench_config(profile)  # e.g. benchmark.bench_config(profile, n=200, k=8)
device = config.get_device()
SEED = config.seed_everything(bcfg.seed)
METHOD_NAMES = list(benchmark.METHODS)
# The lesson of section 6 on centre holes: digits, and the K of the mean-of-K curve.
N_LESSON = {"ci": 4, "cpu": 64, "full": 500}[profile.name]
K_CURVE = {"ci": (1, 2), "cpu": (1, 2, 4, 8, 16), "full": (1, 2, 4, 8, 16)}[profile.name]
notebook_start = time.perf_counter()
print(f"profile {profile.name}: {bcfg.n} test digits per table, K = {bcfg.k} samples per digit, seed {SEED}; "
      f"{N_LESSON} digits and K up to {max(K_CURVE)} for the centre-hole lesson | device: {device}")

# %% [markdown]
# ## 1. One set of digits, one observation per task
#
# Every method sees the first `bcfg.n` digits of MNIST's **test** split: no model of the course trained on them,
# nobody tuned anything on them (notebook 05 even carved its own test digits out of MNIST's training split). Each
# task turns a clean digit into an observation (`course_utils.tasks`, notebook 03): five mask tasks (centre holes of
# 12 and 16 pixels, random rectangles, procedural blobs hiding 5 to 60 percent, 10 percent of the pixels kept) and
# three measurements (additive noise, 4x lower resolution, a quarter of the Fourier coefficients). The harness draws
# each observation from one seed, so every method below gets **exactly the same** masks and noise; we check that by
# observing twice.

# %%
test = data.load_mnist("test")[: max(bcfg.n, N_LESSON)]
library = data.load_mnist("train").images  # the nearest-neighbour baseline's library: the training digits
x, labels = test.images[: bcfg.n], test.labels[: bcfg.n]
obs_seed = SEED + evaluation.OBSERVATION_SEED_OFFSET  # the harness's observation seed
shown = {}
for spec in benchmark.TASKS:
    task = tasks.parse_task(spec)
    once, again = task.observe(x, obs_seed), task.observe(x, obs_seed)
    assert torch.equal(once.y, again.y) and torch.equal(once.mask, again.mask)
    shown[spec] = (once.mask * once.y if task.is_mask_task else once.y.clamp(-1, 1), once.mask)
plotting.show_rows({"truth": x, **{spec: y for spec, (y, _) in shown.items()}},
                   masks={spec: m for spec, (y, m) in shown.items() if tasks.parse_task(spec).is_mask_task},
                   n=6, title="The benchmark's tasks on its first test digits (missing pixels in red)",
                   save="06_tasks")
plt.show()

# %% [markdown]
# ## 2. A strong non-generative opponent: the MMSE regressor
#
# Which single answer minimises the expected squared error given the observation? Write the error of a guess $g$ as
# $\mathbb E[\lVert x_0 - g\rVert^2 \mid y] = \lVert g - \mathbb E[x_0 \mid y]\rVert^2 + \mathbb E[\lVert x_0 -
# \mathbb E[x_0\mid y]\rVert^2 \mid y]$: the second term does not depend on $g$, so the best guess is the **posterior
# mean** $\mathbb E[x_0 \mid y]$, the minimum-mean-squared-error (MMSE) estimate. A network trained with the squared
# error learns an approximation of it. Ours is notebook 03's U-Net, trained with notebook 03's batch on 12-pixel
# centre holes for the steps printed below; it is fed the observation where the noisy image was, at $t = 0$, and
# trained on
#
# $$L = \frac{\lVert (1 - m) \odot (f_\theta(y, 0, m, y) - x_0)\rVert^2}{\sum (1 - m)}, \qquad
# \hat x_0 = m \odot y + (1 - m) \odot \mathrm{clip}(f_\theta(y, 0, m, y)).$$
#
# One network call per image. When several digits fit the observation, the posterior mean is their average, a
# blur; PSNR rewards that, a reader does not. In a few lines, checked against `course_utils.mmse` (what
# `python -m course_utils train --model mmse` trains):

# %%
def regress(net, y, m):
    t0 = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
    return m * y + (1 - m) * net(y, t0, m, y).clamp(-1, 1)


def mmse_loss(net, x0, m):
    t0 = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
    missing = 1 - m
    return (missing * (net(m * x0, t0, m, m * x0) - x0) ** 2).sum() / missing.sum()


mcfg = mmse.KIND.default_config(profile)  # the benchmark's regressor: the shipped recipe in cpu and full
net_check = mmse.build_mmse_model(mcfg)
hole_obs = tasks.parse_task(f"center:{mcfg.hole}").observe(x[:4], obs_seed)
with torch.no_grad():
    assert torch.allclose(regress(net_check, hole_obs.y, hole_obs.mask), mmse.regress(net_check, hole_obs.y, hole_obs.mask))
    assert torch.allclose(mmse_loss(net_check, x[:4], hole_obs.mask), mmse.mmse_loss(net_check, x[:4], hole_obs.mask))
print(f"regress and its loss: notebook == course_utils.mmse (the benchmark's regressor: {mcfg.steps} steps of "
      f"{mcfg.batch_size}, centre holes of {mcfg.hole} pixels, notebook 03's network)")

# %% [markdown]
# ## 3. The contestants
#
# `benchmark.METHODS` lists every method once: its family, the notebook that built it, the trained model it needs and
# the sampler settings its notebook reports (notebook 03: DDIM with data consistency; notebook 05: RePaint with its
# resampling walk, DDNM at a tenth of RePaint's calls, fine-tunes with DDNM, given the mask). `benchmark.prepare`
# finds each trained model in the run folder under `outputs/` where its notebook keeps it (one folder per
# configuration), and trains it there when it is missing.

# %%
print(f"{'method':<18}{'family':<11}{'notebook':<10}what it is")
for name, m in benchmark.METHODS.items():
    print(f"{name:<18}{m.family:<11}{m.notebook:<10}{m.description}")

# %%
start = time.perf_counter()
methods, trained = benchmark.prepare(METHOD_NAMES, profile.name, device, library=library, train_missing=True)
print(f"\n{'model':<20}{'notebook':<38}{'':<9}training (when it was made)")
for key, info in trained.items():
    took = f"{info['train_seconds'] / 60:5.1f} min" if info["train_seconds"] is not None else "   (time not recorded)"
    print(f"{key:<20}{info['notebook']:<38}{info['status']:<9}{took}")
print(f"models ready in {time.perf_counter() - start:.0f} s")
clf, clf_info = classifier.course_classifier(profile.name, device=device)
print(f"course classifier: {clf_info['status']}, validation accuracy "
      f"{100 * clf_info['val_accuracy']:.1f}%")

# %% [markdown]
# ## 4. The benchmark
#
# `benchmark.run_benchmark` runs the harness (`evaluation.evaluate`) for every method on every task it fits: K
# samples per digit (one for a deterministic method), PSNR, L1 and SSIM over the missing pixels (over the whole image
# for a measurement), of one sample and of the mean of K; class preservation and the Frechet distance on the course
# classifier's features (of one sample); seconds and network calls per image and sample. `python -m course_utils
# bench` runs the very same function. The `cpu` profile draws one sample per digit (K = 1) to keep the run short
# (notebook 05's RePaint alone costs over a thousand network calls an image); the mean of K is section 6's subject,
# measured there up to K = 16; `full` uses K = 8.

# %%
start = time.perf_counter()
result = benchmark.run_benchmark(methods, x, labels, list(benchmark.TASKS), bcfg.k, SEED, clf, library,
                                 profile=profile.name, data_dir=str(config.data_dir()),
                                 hardware=config.hardware(device), models=trained)
bench_seconds = time.perf_counter() - start
print(f"{len(methods)} methods x {len(benchmark.TASKS)} tasks on {bcfg.n} digits in {bench_seconds / 60:.1f} min")
display(Markdown(f"**PSNR (dB), one sample**\n\n{benchmark.markdown_table(result)}"))
if bcfg.k > 1:
    display(Markdown(f"**PSNR (dB), mean of {bcfg.k} samples**\n\n{benchmark.markdown_table(result, which='mean_k')}"))
display(Markdown(f"**Class preservation, one sample**\n\n{benchmark.markdown_table(result, 'class_acc', digits=3)}"))
display(Markdown(f"**Frechet distance, one sample (lower is better)**\n\n"
                 f"{benchmark.markdown_table(result, 'frechet', digits=1)}"))

# %% [markdown]
# Read the tables task by task. `mmse` and `ddim_dc_03` were trained only on 12-pixel centre holes: on other
# masks they see inputs they never trained on, and there the regressor can fall below every classical baseline,
# zero fill included; it is strong on the task it was trained for. Every row of one task, with the costs:

# %%
display(Markdown(f"**`center:12`**\n\n{benchmark.task_table(result, 'center:12')}"))
display(Markdown(f"**`procedural:0.05-0.6`**\n\n{benchmark.task_table(result, 'procedural:0.05-0.6')}"))

# %% [markdown]
# ## 5. Quality against network calls
#
# A diffusion sampler pays for its quality in network calls: one per step, more with resampling. The regressor
# pays one call, the classical baselines none (drawn as dashed lines). On a log axis, a method is worth its calls
# only if nothing to its left is as high.

# %%
mask_tasks = [spec for spec in benchmark.TASKS if tasks.parse_task(spec).is_mask_task]
fig, axes = plt.subplots(2, math.ceil(len(mask_tasks) / 2), figsize=(15, 8.5), squeeze=False)
axes = axes.flatten()
colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
for ax in axes[len(mask_tasks):]:
    ax.axis("off")
for ax, spec in zip(axes, mask_tasks):
    for i, (name, row) in enumerate(result["methods"].items()):
        s = row.get(spec)
        if s is None:
            continue
        psnr, calls = s["metrics"]["psnr"]["single"], s["network_calls_per_image"]
        if calls == 0:
            ax.axhline(psnr, ls="--", lw=1, color="grey")
            ax.text(1.05, psnr, name, fontsize=7, color="grey", va="bottom")
        else:
            ax.scatter(calls, psnr, color=colors[i % len(colors)], zorder=3)
            ax.annotate(name, (calls, psnr), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlim(0.8, 2000)
    ax.set_title(spec)
    ax.set_xlabel("network calls per image (log)")
    ax.set_ylabel("PSNR over the missing pixels, one sample (dB)")
fig.suptitle(f"Quality against network calls ({profile.name} profile, {bcfg.n} test digits)")
fig.tight_layout()
plotting.save_figure(fig, "06_quality_vs_calls")
plt.show()

# %% [markdown]
# And every method on the same five digits and the same procedural masks (one sample each; the red pixels of the
# `observed` row are the missing ones):

# %%
spec = "procedural:0.05-0.6"
five = tasks.parse_task(spec).observe(x[:5], obs_seed)
rows = {"truth": x[:5], "observed": five.y}
for name, method in methods.items():
    if method.fits(tasks.parse_task(spec)):
        with torch.no_grad():
            rows[name] = method.sample(five.to(device), torch.Generator().manual_seed(SEED)).cpu()
plotting.show_rows(rows, masks={"observed": five.mask}, n=5, scale=1.0,
                   title=f"Every method on the same five digits ({spec})", save="06_every_method")
plt.show()

# %% [markdown]
# ## 6. What one sample's PSNR hides
#
# Take `center:12`, the task the regressor was trained for (a 12-pixel hole can hide the loop that makes a 4 a 9).
# Theory first. If $\tilde x$ is an exact sample of the posterior $p(x_0 \mid y)$, drawn independently of the truth
# given $y$, its expected squared error is
#
# $$\mathbb E\lVert \tilde x - x_0\rVert^2 = 2\,\mathbb E\lVert x_0 - \mathbb E[x_0\mid y]\rVert^2 = 2\,\mathrm{MMSE},$$
#
# twice the error of the ideal regressor (3 dB lower PSNR). A sample pays in squared error for being *a* digit
# instead of the average of all the digits that fit, and it is rewarded by what PSNR does not see: strokes instead
# of grey, the right class, features like a real digit's (the Frechet distance). For any sampler, the mean of $K$
# samples has expected error
#
# $$\mathrm{MSE}(K) = B + V / K, \qquad B = \mathbb E\lVert \mu - x_0\rVert^2, \quad V = \mathbb E\lVert \tilde x - \mu\rVert^2,$$
#
# where $\mu$ is the sampler's own mean: the error of what the samples agree on, plus their spread shrinking as
# $1/K$. An exact posterior sampler has $B = V = \mathrm{MMSE}$, so its mean of $K$ walks toward the MMSE answer
# ($\mathrm{MMSE}\,(1 + 1/K)$, 0.51 dB below it at $K = 8$). We measure all of it with the best diffusion method of
# the table on `center:12` (by PSNR), on the first `N_LESSON` test digits (more than the table's in `cpu`, so the
# regressor's numbers differ slightly from the table's): $K_{\max}$ samples of every digit, for each $K$ the mean of
# the first $K$, $V$ from the samples' spread and $B = \mathrm{MSE}(K_{\max}) - V / K_{\max}$. Compare $V$ with $B$:
# for an exact sampler they are equal. $V$ well below $B$ means the samples are too alike or their mean is off the
# posterior mean; either way averaging them gains less than 3 dB.

# %%
def k_curve(method, images, labels_, spec, ks, reference=None):
    """Mean of the first K samples for K in ks: PSNR and MSE over the missing pixels, class, Frechet distance, and
    the PSNR between the mean of K and ``reference`` (how close it gets to that answer)."""
    o = tasks.parse_task(spec).observe(images, obs_seed)
    samples, _, _ = evaluation.draw_samples(method, o, max(ks), SEED)
    clean = classifier.features(clf, images)
    rows_ = []
    for k in ks:
        mean = samples[:k].mean(0)
        rows_.append({"k": k, "psnr": metrics.psnr_on_mask(mean, images, o.mask).mean().item(),
                      "mse": metrics.hole_mse(mean, images, o.mask).mean().item(),
                      "class_acc": (classifier.predict(clf, mean) == labels_).float().mean().item(),
                      "frechet": classifier.frechet_distance(classifier.features(clf, mean), clean),
                      "to_reference": (metrics.psnr_on_mask(mean, reference, o.mask).mean().item()
                                       if reference is not None else None)})
    return rows_, samples, o


def spread(samples, mask):
    """V of each digit: the samples' unbiased variance per missing pixel (images in [0, 1]), averaged over the
    hole like the hole MSE; shape N (average it over the digits for V)."""
    var = ((samples + 1) / 2).var(dim=0, unbiased=True).flatten(1)
    region = metrics.scored_region(mask)
    return (var * region).sum(1) / region.sum(1)


def sharpness(img, mask):
    """Mean absolute difference between neighbouring pixels inside the missing region (strokes have edges)."""
    dx, dy = (img[..., :, 1:] - img[..., :, :-1]).abs(), (img[..., 1:, :] - img[..., :-1, :]).abs()
    miss = 1 - mask
    return ((dx * miss[..., :, 1:]).sum() + (dy * miss[..., 1:, :]).sum()).item() / miss.sum().item()


HOLE = "center:12"
diffusion_rows = {name: result["methods"][name][HOLE] for name, m in benchmark.METHODS.items()
                  if m.family == "diffusion" and result["methods"].get(name, {}).get(HOLE) is not None}
best = max(diffusion_rows, key=lambda name: diffusion_rows[name]["metrics"]["psnr"]["mean_k"])
x_l, labels_l = test.images[:N_LESSON], test.labels[:N_LESSON]
mmse_out, _, _ = evaluation.draw_samples(methods["mmse"], tasks.parse_task(HOLE).observe(x_l, obs_seed), 1, SEED)
mmse_out = mmse_out[0]
curve, lesson_samples, lesson_obs = k_curve(methods[best], x_l, labels_l, HOLE, K_CURVE, reference=mmse_out)
mmse_row = {"psnr": metrics.psnr_on_mask(mmse_out, x_l, lesson_obs.mask).mean().item(),
            "mse": metrics.hole_mse(mmse_out, x_l, lesson_obs.mask).mean().item(),
            "class_acc": (classifier.predict(clf, mmse_out) == labels_l).float().mean().item(),
            "frechet": classifier.frechet_distance(classifier.features(clf, mmse_out), classifier.features(clf, x_l))}
V_digit = spread(lesson_samples, lesson_obs.mask)
B_digit = metrics.hole_mse(lesson_samples.mean(0), x_l, lesson_obs.mask) - V_digit / len(lesson_samples)
V, B = V_digit.mean().item(), B_digit.mean().item()  # B = MSE(K_max) - V / K_max, as in the equation above
gap = B_digit - metrics.hole_mse(mmse_out, x_l, lesson_obs.mask)  # per digit: B minus the regressor's error
gap_se = (gap.std() / len(gap) ** 0.5).item()
print(f"best diffusion method on {HOLE} (PSNR in the table): {best}; {N_LESSON} digits, K up to {max(K_CURVE)}")
print(f"{'':<22}{'PSNR':>7}{'hole MSE':>10}{'B + V/K':>9}{'class':>7}{'Frechet':>9}{'PSNR to MMSE':>14}")
print(f"{'MMSE regressor':<22}{mmse_row['psnr']:7.2f}{mmse_row['mse']:10.4f}{'':>9}{mmse_row['class_acc']:7.3f}"
      f"{mmse_row['frechet']:9.2f}")
for r in curve:
    label = "one sample" if r["k"] == 1 else f"mean of {r['k']}"
    print(f"{label:<22}{r['psnr']:7.2f}{r['mse']:10.4f}{B + V / r['k']:9.4f}{r['class_acc']:7.3f}{r['frechet']:9.2f}"
          f"{r['to_reference']:14.2f}")
print(f"spread V = {V:.4f}, error of the sampler's mean B = {B:.4f}, V / B = {V / B:.2f} (an exact posterior "
      f"sampler: B = V = MMSE, so V / B = 1); the regressor's MSE {mmse_row['mse']:.4f}")
print(f"B minus the regressor's MSE: {gap.mean().item():+.4f} +- {gap_se:.4f} (standard error over the digits)")
if gap.mean().item() < -2 * gap_se:
    print("B is below the regressor's error by more than two standard errors: the true MMSE is at most B (up to "
          "B's own error), so on these digits the regressor is not yet the posterior mean")
elif gap.mean().item() > 2 * gap_se:
    print("B is above the regressor's error by more than two standard errors: the sampler's mean is off the "
          "posterior mean by more than the regressor is")
else:
    print("B and the regressor's error agree within two standard errors: these digits cannot tell which is closer "
          "to the posterior mean")

# %% [markdown]
# The digits themselves. Where the hole hides what decides the digit, each sample commits to one answer and the mean
# of many samples (an estimate of the sampler's own mean $\mu$, the posterior mean only for an exact sampler)
# averages the answers into grey; a regressor that had learned $\mathbb E[x_0 \mid y]$ exactly would look like that
# mean. The printed sharpness (mean difference between neighbouring pixels in the hole; the truth's for reference)
# says how crisp each one is.

# %%
k_max = max(K_CURVE)
plotting.show_rows({"truth": x_l, "observed": lesson_obs.y, "MMSE regressor": mmse_out,
                    f"{best}, sample 1": lesson_samples[0], f"{best}, sample 2": lesson_samples[1],
                    f"mean of {k_max}": lesson_samples.mean(0)},
                   masks={"observed": lesson_obs.mask}, n=8,
                   title=f"{HOLE}: the MMSE regressor, two samples and the mean of {k_max}",
                   save="06_mmse_vs_samples")
plt.show()
sharp = {"truth": sharpness(x_l, lesson_obs.mask), "MMSE regressor": sharpness(mmse_out, lesson_obs.mask),
         "one sample": sharpness(lesson_samples[0], lesson_obs.mask),
         f"mean of {k_max}": sharpness(lesson_samples.mean(0), lesson_obs.mask)}
print("sharpness in the hole (mean |difference| between neighbouring pixels): "
      + ", ".join(f"{k} {v:.3f}" for k, v in sharp.items()))

# %%
ks = [r["k"] for r in curve]
fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
axes[0].plot(ks, [r["psnr"] for r in curve], "o-", label=f"{best}, mean of K")
axes[0].axhline(mmse_row["psnr"], ls="--", color="k", label="MMSE regressor")
axes[0].set_ylabel("PSNR over the hole (dB)")
axes[1].plot(ks, [r["mse"] for r in curve], "o-", label=f"{best}, mean of K (measured)")
axes[1].plot(ks, [B + V / k for k in ks], ":", color="C1", label="B + V / K (V from the spread)")
axes[1].axhline(mmse_row["mse"], ls="--", color="k", label="MMSE regressor")
axes[1].set_ylabel("mean squared error over the hole")
axes[2].plot(ks, [r["frechet"] for r in curve], "o-", label=f"{best}, mean of K")
axes[2].axhline(mmse_row["frechet"], ls="--", color="k", label="MMSE regressor")
axes[2].set_ylabel("Frechet distance (lower is better)")
axes[3].plot(ks, [r["to_reference"] for r in curve], "o-", label=f"{best}, mean of K")
axes[3].set_ylabel("PSNR between the mean of K\nand the regressor's answer (dB)")
for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("K (samples averaged)")
    ax.legend(fontsize=8)
fig.suptitle(f"{HOLE}: the mean of K samples against the MMSE regressor ({N_LESSON} test digits)")
fig.tight_layout()
plotting.save_figure(fig, "06_mean_of_k")
plt.show()

# %% [markdown]
# Two questions, answered on these digits: is the best diffusion method's mean of 8 within 0.5 dB of the regressor's
# PSNR (or above it)? Does one of its samples keep the class at least as often as the regressor? The cell prints the
# answers, and the Frechet distances of both (on so few digits, only their order means something).

# %%
at8 = next((r for r in curve if r["k"] == 8), curve[-1])
one = curve[0]
checks = {f"mean of {at8['k']} within 0.5 dB of the regressor ({at8['psnr']:.2f} vs {mmse_row['psnr']:.2f} dB)":
          at8["psnr"] >= mmse_row["psnr"] - 0.5,
          f"one sample: class preservation at least the regressor's ({one['class_acc']:.3f} vs "
          f"{mmse_row['class_acc']:.3f})": one["class_acc"] >= mmse_row["class_acc"]}
for what, ok in checks.items():
    print(("yes  " if ok else "no   ") + what)
# A Frechet distance of a few dozen digits in a 128-dimensional feature space is biased upward (the covariance of
# so few points is far from the true one): compare the two on the same digits, never against a fixed threshold.
print(f"one sample's Frechet distance {one['frechet']:.2f} against the regressor's {mmse_row['frechet']:.2f} "
      f"({len(x_l)} digits: compare within this table only)")
if profile.name in ("cpu", "full"):
    assert curve[-1]["psnr"] > one["psnr"], "averaging samples should raise the PSNR"
    assert curve[-1]["to_reference"] > one["to_reference"], "the mean of K should move toward the regressor's answer"
    print(f"key result: {HOLE}, {best}: mean of {at8['k']} {at8['psnr']:.2f} dB vs MMSE {mmse_row['psnr']:.2f} dB; "
          f"one sample Frechet {one['frechet']:.2f} vs {mmse_row['frechet']:.2f}, class {one['class_acc']:.3f} vs "
          f"{mmse_row['class_acc']:.3f} ({sum(checks.values())} of {len(checks)} answered yes)")
else:
    print("key result: ci profile, too few digits to read these numbers")

# %%
result["lesson"] = {"task": HOLE, "method": best, "n": N_LESSON, "curve": curve, "mmse": mmse_row,
                    "spread_V": V, "bias_B": B, "sharpness": sharp, "checks": checks}
result["seconds"] = {"benchmark": bench_seconds, "notebook": time.perf_counter() - notebook_start}
out_file = config.output_dir() / f"benchmark_{profile.name}.json"
out_file.write_text(json.dumps(result, indent=2))
print(f"saved {out_file}; notebook run time {(time.perf_counter() - notebook_start) / 60:.1f} min")

# %% [markdown]
# ## 7. From the command line
#
# `python -m course_utils bench --data-dir DIR --profile cpu --json results.json` runs section 4 on any folder
# holding MNIST (torchvision's layout), by default on more digits than this notebook (`--help` says how many);
# with this notebook's `--n` and `--k` it uses the same digits, observations and seeds and reproduces its tables.
# It uses the trained models in `outputs/`; a missing one is named with the
# command or notebook that makes it, and `--train-missing` trains it first. `--n`, `--k`, `--tasks` and `--methods`
# narrow or widen the run; the JSON holds every method's harness results per task, the profile, the data folder,
# N, K, the date and the machine.
#
# ## Summary
#
# - A benchmark is only fair when every method sees the same digits and the same observations; methods that cannot
#   do a task get an empty cell, and cost is counted in network calls as well as seconds.
# - The MMSE regressor estimates the posterior mean: one network call, the lowest expected squared error a
#   deterministic answer can have (the best PSNR of the pooled error; averaged per-image PSNR can rank differently),
#   and blurry digits wherever the observation is ambiguous.
# - A posterior sample pays in PSNR for committing to one digit (twice the MMSE error for an exact sampler) and can
#   be rewarded by everything PSNR does not see: sharp strokes, the right class, features that look like real
#   digits (the Frechet distance). Whether a sample of ours is, against a regressor with the same network, is a
#   measurement, not a given: section 6 makes it.
# - The mean of K samples has error B + V / K (the error of the samples' mean plus their spread over K): it moves
#   toward the sampler's own mean $\mu$ as K grows, and when B falls below a regressor's error, that regressor has
#   not yet learned the posterior mean.
# - Which method to use depends on the task and the budget: read the quality-against-calls plot from the left.
#
# ## Exercises
#
# 1. Data consistency with repeats (notebook 03) costs calls: add notebook 03's model with `dc_repeats=2` as a
#    method and benchmark it on `center:12` and `center:16` against the table's `ddim_dc_03`.
# 2. A task nobody trained for: benchmark the classical baselines, `mmse`, `conditional_04` and `ddnm_05` (the
#    cheapest use of notebook 05's prior) on `strokes` (brush strokes, notebook 01).
# 3. The mean-of-K curve of notebook 04's conditional model on `sparse:0.1`: does its mean of K approach its own
#    one-sample PSNR plus 3 dB, as an exact posterior sampler's would?
# 4. *Pen and paper.* For one observation, let $s_1, \dots, s_K$ be independent samples of one distribution with mean
#    $\mu$ and per-pixel variance summing to $V$, and $x$ the truth. Show that the mean of K samples has expected squared
#    error $B + V/K$ with $B = \|\mu - x\|^2$. Which $B$ and $V$ does an exact posterior sampler have?
#
# <details><summary>Solution 1</summary>
#
# ```python
# from course_utils import center_hole
# ch_cfg, ch_net, _ = center_hole.KIND.load(trained["center_hole"]["checkpoint"])
# ch_net = ch_net.to(device)
# repeats = {"ddim_dc_03": methods["ddim_dc_03"],
#            "ddim_dc_03, 2 repeats": center_hole.center_hole_method(
#                ch_net, ch_cfg, evaluation.SamplerOptions(ch_cfg.sample_steps, 0.0, 2))}
# extra = benchmark.run_benchmark(repeats, x, labels, ["center:12", "center:16"], bcfg.k, SEED, clf, progress=False)
# print(benchmark.task_table(extra, "center:12"))
# print(benchmark.task_table(extra, "center:16"))
# ```
# Twice the calls; whether it pays shows in the PSNR of one sample and the mean of K (notebook 03 measured small
# or no gains at this budget).
# </details>
#
# <details><summary>Solution 2</summary>
#
# ```python
# cheap = {name: methods[name] for name in ("zero_fill", "nearest_pixel", "nearest_neighbour", "harmonic", "mmse",
#                                           "conditional_04", "ddnm_05")}
# strokes = benchmark.run_benchmark(cheap, x, labels, ["strokes"], bcfg.k, SEED, clf, library, progress=False)
# print(benchmark.task_table(strokes, "strokes"))
# ```
# Thin strokes leave most of every digit visible: the simple fills do well, and the regressor trained only on
# centre holes meets masks it never saw.
# </details>
#
# <details><summary>Solution 3</summary>
#
# ```python
# cond_curve, _, _ = k_curve(methods["conditional_04"], x, labels, "sparse:0.1", K_CURVE)
# for r in cond_curve:
#     print(f"K = {r['k']:2d}: PSNR {r['psnr']:.2f} dB, Frechet {r['frechet']:.2f}")
# print(f"one sample + 3 dB = {cond_curve[0]['psnr'] + 3:.2f} dB (an exact sampler's limit as K grows)")
# ```
# For an exact sampler the gain from K = 1 to large K is 3 dB in the limit (on the squared error pooled over the
# digits; a PSNR averaged digit by digit can differ a little); a sampler whose samples are too alike gains less, one
# whose samples are too noisy can gain more.
# </details>
#
# <details><summary>Solution 4</summary>
#
# $\bar s - x = (\bar s - \mu) + (\mu - x)$. The first term has mean zero and, the samples being independent, total
# variance $V/K$; the second is fixed. The cross term has mean zero, so $\mathbb E\|\bar s - x\|^2 = V/K + B$.
# Averaged over truths and observations, an exact sampler has $\mu = \mathbb E[x \mid y]$, so $B$ becomes the MMSE,
# and its spread is the posterior's, so $V$ is the MMSE too: error $(1 + 1/K)\,\mathrm{MMSE}$, notebook 03's result. A
# sampler with $V$ below the MMSE is under-dispersed; with $B$ above the MMSE its samples' own mean is biased.
# </details>
