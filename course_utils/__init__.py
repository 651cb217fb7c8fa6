"""course_utils: the small shared module of the MNIST diffusion-inpainting course.

One module per concern, in the order the course teaches them:

* ``config``     profiles (COURSE_PROFILE), device choice, seeding, data/output folders
* ``data``       MNIST as 32x32 tensors in [-1, 1], splits, input checks
* ``masks``      binary masks, 1 = known, 0 = missing
* ``schedules``  beta schedules, alpha_bar, SNR, the forward process q(x_t | x0)
* ``diffusion``  x0 from eps, the DDPM posterior, ancestral sampling with or without data consistency
* ``models``     time embedding and the small U-Net noise predictor
* ``training``   the eps-MSE objective, the training loop, atomic checkpoints
* ``metrics``    hole-only PSNR / L1 and the zero-fill and nearest-neighbour baselines
* ``plotting``   image grids, panels and curves every notebook uses
* ``widgets``    ipywidgets controls (each paired with a static figure)
* ``cli``        ``course run`` (execute every notebook) and ``course badges``

Every public function names the notebook that teaches it and the equation it implements.
"""

__version__ = "0.1.0"
