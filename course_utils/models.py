"""The denoising network: a sinusoidal time embedding and a small U-Net.

Taught in: 02_ddpm_from_scratch_masked_mnist (the U-Net), 03_ddim_center_hole_data_consistency
(self-conditioning and coord-conv inputs).

The U-Net takes the noisy image x_t together with the mask m and the observation y = m * x0
(stacked as three input channels) and the timestep t, and outputs eps, x0 or v, whichever its kind trains it
on (notebook 02's predicts the noise eps). Every
residual block gets the time embedding added to its features (DDPM appendix B).

Two optional inputs (notebook 03):

* self-conditioning (Chen et al. 2022, "Analog Bits", section 3.2): the model's own previous
  estimate x0_hat is one more input channel (zeros when there is none yet);
* coord-conv (Liu et al. 2018): two constant channels holding each pixel's (x, y) position in
  [-1, 1], so a convolution knows where on the canvas it is (where the hole is).

Notebook 05's unconditional prior is this U-Net with no condition channels and ``attention=True``: softmax
self-attention between the two middle blocks, at the lowest resolution (8x8 for three levels); DDPM's U-Net
(appendix B) attends at 16x16.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .attention import SelfAttention, group_norm


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer position encoding of the timestep (Vaswani et al. 2017, section 3.5; DDPM appendix B).

    emb[:, i] = sin(t * w_i), emb[:, half + i] = cos(t * w_i), with w_i = max_period^(-i / half).
    Taught in notebook 02."""
    if dim < 2 or dim % 2:
        raise ValueError(f"embedding dim must be an even number >= 2, got {dim}")
    t = torch.as_tensor(t).float().flatten()
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    """norm -> SiLU -> conv, add the projected time embedding, norm -> SiLU -> conv, plus a skip.

    Used in notebook 02 (the U-Net) and notebook 03."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int):
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time = nn.Linear(time_dim, out_ch)
        self.norm2 = group_norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.time(temb)[:, :, None, None]
        h = self.conv2(nn.functional.silu(self.norm2(h)))
        return h + self.skip(x)


def coord_channels(n: int, size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """N x 2 x size x size: each pixel's column (x) and row (y) position, scaled to [-1, 1] (coord-conv).

    Taught in notebook 03."""
    line = torch.linspace(-1, 1, size, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(line, line, indexing="ij")
    return torch.stack([xx, yy])[None].expand(n, 2, size, size)


class UNet(nn.Module):
    """A small U-Net f_theta(x_t, t, m, y) (eps_theta in notebook 02).

    One residual block per resolution on the way down (32, 16, 8, ... for ``channel_mults``),
    two in the middle, one per resolution on the way up with the matching skip concatenated;
    stride-2 convolutions halve, nearest-neighbour upsampling + conv doubles. ``cond_channels``
    is 2 for [m, y] (inpainting) and 0 for an unconditional model. ``self_condition`` adds the
    previous x0_hat as an input, ``coord_conv`` the two position channels (notebook 03), ``attention`` a
    self-attention block between the middle residual blocks (notebook 05's prior).
    """

    def __init__(
        self,
        base_channels: int = 32,
        channel_mults: tuple[int, ...] = (1, 2, 2),
        image_channels: int = 1,
        cond_channels: int = 2,
        self_condition: bool = False,
        coord_conv: bool = False,
        attention: bool = False,
    ):
        super().__init__()
        if base_channels < 1 or not channel_mults:
            raise ValueError(f"need base_channels >= 1 and at least one level, got {base_channels}, {channel_mults}")
        self.config = dict(
            base_channels=base_channels, channel_mults=tuple(channel_mults),
            image_channels=image_channels, cond_channels=cond_channels,
            self_condition=bool(self_condition), coord_conv=bool(coord_conv), attention=bool(attention),
        )
        self.cond_channels = cond_channels
        self.self_condition = bool(self_condition)
        self.coord_conv = bool(coord_conv)
        in_channels = image_channels * (2 if self_condition else 1) + cond_channels + (2 if coord_conv else 0)
        self.time_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, self.time_dim), nn.SiLU(),
                                      nn.Linear(self.time_dim, self.time_dim))
        self.stem = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        widths = [base_channels * m for m in channel_mults]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        ch = base_channels
        for i, w in enumerate(widths):
            self.down.append(ResBlock(ch, w, self.time_dim))
            ch = w
            self.downsample.append(nn.Identity() if i == len(widths) - 1 else nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid1 = ResBlock(ch, ch, self.time_dim)
        self.mid_attn = SelfAttention(ch) if attention else nn.Identity()
        self.mid2 = ResBlock(ch, ch, self.time_dim)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up.append(ResBlock(ch + w, w, self.time_dim))
            ch = w
            self.upsample.append(nn.Identity() if i == 0 else
                                 nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(ch, ch, 3, padding=1)))
        self.out_norm = group_norm(ch)
        self.out = nn.Conv2d(ch, image_channels, 3, padding=1)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        x0_prev: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The network output for x_t at timesteps t; ``x0_prev`` is the self-conditioning input (None: zeros)."""
        size = x_t.shape[-1]
        factor = 2 ** (len(self.down) - 1)
        if size % factor:
            raise ValueError(f"image side {size} must be divisible by {factor} for {len(self.down)} levels")
        inputs = [x_t]
        if self.self_condition:
            inputs.append(torch.zeros_like(x_t) if x0_prev is None else x0_prev)
        elif x0_prev is not None:
            raise ValueError("x0_prev was given, but this U-Net was built without self_condition")
        if self.cond_channels:
            if mask is None or y is None:
                raise ValueError("this U-Net is conditional: pass the mask and the observation y")
            inputs += [mask, y]
        if self.coord_conv:
            inputs.append(coord_channels(x_t.shape[0], size, x_t.device, x_t.dtype))
        h = torch.cat(inputs, dim=1) if len(inputs) > 1 else x_t
        temb = self.time_mlp(sinusoidal_embedding(t, self.time_mlp[0].in_features).to(x_t.device))
        h = self.stem(h)
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, temb)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for block, up in zip(self.up, self.upsample):
            h = up(block(torch.cat([h, skips.pop()], dim=1), temb))
        return self.out(nn.functional.silu(self.out_norm(h)))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters. Used in notebook 05."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
