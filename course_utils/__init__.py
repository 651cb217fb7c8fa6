"""course_utils: the small shared module of the MNIST diffusion-inpainting course.

One module per concern, in the order the course teaches them:

* ``config``     profiles (COURSE_PROFILE), device choice, seeding, data/output folders
* ``data``       MNIST as 32x32 tensors in [-1, 1], splits, input checks
* ``masks``      binary masks, 1 = known, 0 = missing
* ``schedules``  beta schedules, alpha_bar, SNR, the forward process q(x_t | x0)
* ``diffusion``  the sampling contract: a denoiser (eps / x0 / v), named timesteps, DDPM and DDIM steps,
                 data consistency, one loop (notebooks 02 and 03)
* ``models``     time embedding and the small U-Net (optionally self-conditioned, with coord-conv inputs)
* ``checkpoints`` atomic saves, ``weights_only`` loads, configs stored beside the weights
* ``pretrained`` the course's shipped checkpoints (``pretrained/``) and their manifests
* ``runs``       a trainable model kind described once, and ``obtain``: shipped, reused, resumed or trained
* ``ddpm``       notebook 02's DDPM as a model kind
* ``training``   the eps-MSE objective, the one training loop (``fit``: EMA, checkpoints, exact resume), P2 / hole weights
* ``center_hole`` notebook 03's experiment in one place: its config, model, loss, run folder and sampler
* ``tasks``      degradation tasks named by one spec (``center:12``, ``sparse:0.1``, ``noise:0.5``, ``kspace:0.25``, ...)
* ``baselines``  zero fill, nearest pixel, training-set nearest neighbour, harmonic; smoothing, bicubic, zero-filled iFFT
* ``metrics``    PSNR / L1 / SSIM over the missing pixels (or the whole image): pure functions of tensors
* ``classifier`` the course's MNIST classifier (a model kind): class preservation and a Frechet distance
* ``evaluation`` any method on any task, scored the same way (what ``eval`` runs)
* ``attention``  softmax and linear self-attention, cross-attention and the control encoder (notebooks 04, 05)
* ``conditional`` notebook 04's experiment: p(x0 | c) for every task, its U-Net, loss, run and sampler
* ``inpainting`` training-free inpainting with an unconditional prior: replacement, RePaint, DDNM (notebook 05)
* ``adaptation`` adapting a trained network: zero-initialised input expansion, LoRA (notebook 05)
* ``prior``      notebook 05's experiment: the unconditional prior, its mask-aware fine-tunes, splits and masks
* ``mmse``       the MMSE regressor: notebook 03's U-Net regressing x0 in one call (for notebook 06)
* ``benchmark``  every method on every task it can do, one JSON and markdown table (for notebook 06)
* ``kinds``      the registry of model kinds, by the name ``train --model`` takes
* ``plotting``   image grids, panels and curves every notebook uses
* ``widgets``    ipywidgets controls (each paired with a static figure)
* ``publishing`` the course's one public address and the Colab badges
* ``runner``     executing the notebooks with progress (``./run_course.sh``)
* ``reports``    the pages of docs/ that a run's JSON writes: section times and results
* ``site``       the course as a static HTML site
* ``cli``        ``python -m course_utils run | train | ship | sample | eval | bench | ...``: parsing only

Every public function names the notebook that teaches it and the equation it implements.
"""

__version__ = "0.1.0"
