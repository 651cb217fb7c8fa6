"""course_utils: the small shared module of the MNIST diffusion-inpainting course.

One module per concern, in the order the course teaches them:

* ``config``     profiles (COURSE_PROFILE), device choice, seeding, data/output folders
* ``data``       MNIST as 32x32 tensors in [-1, 1], splits, input checks
* ``masks``      binary masks, 1 = known, 0 = missing
* ``schedules``  beta schedules, alpha_bar, SNR, the forward process q(x_t | x0)
* ``diffusion``  x0 from eps, the DDPM posterior, ancestral sampling; DDIM with data consistency (notebook 03)
* ``models``     time embedding and the small U-Net (optionally self-conditioned, with coord-conv inputs)
* ``training``   the eps-MSE objective, training loops, EMA / P2 / hole weighting, resumable atomic checkpoints
* ``metrics``    hole-only PSNR / L1 / SSIM, zero-fill, nearest-pixel and nearest-neighbour baselines
* ``plotting``   image grids, panels and curves every notebook uses
* ``widgets``    ipywidgets controls (each paired with a static figure)
* ``cli``        ``python -m course_utils run | train | sample | eval | badges``

Every public function names the notebook that teaches it and the equation it implements.
"""

__version__ = "0.1.0"
