"""Attention blocks: softmax self-attention, linear self-attention, cross-attention, and the control encoder.

Taught in: 04_conditional_cross_attention (built block by block there, each checked against this module);
05_unconditional_prior_adaptation uses :class:`SelfAttention` in the prior's U-Net and puts LoRA on its projections.

Shapes: feature maps are N x C x H x W; a map is read as a sequence of H * W positions ("pixels"), each a
C-vector. Token sequences are N x L x D.

- :class:`SelfAttention` (Vaswani et al. 2017, eq. 1, with queries, keys and values all from the feature map):
  softmax(Q K^T / sqrt(d)) V over the H W positions, quadratic in their number, so only at 8x8 (64 positions);
- :class:`LinearAttention` (Shen et al. 2021, "Efficient Attention", eq. 4): softmax over the features for each
  query and over the positions for each key, so attention is q(i)^T (sum_j k(j) v(j)^T), linear in the number of
  pixels instead of quadratic. Its implied weights a_ij = q(i) . k(j) are positive and sum to 1 over j.
- :class:`CrossAttention` (Vaswani et al. 2017, eq. 1; the conditioning of Rombach et al. 2022, section 3.3):
  softmax(Q K^T / sqrt(d)) V with the U-Net's features as queries Q and the condition's tokens as keys K and
  values V.
- :class:`ControlEncoder`: a small CNN over the condition image c and its mask that gives (a) a feature map at
  every U-Net resolution, added to the U-Net's own through convolutions initialised at zero (the "zero
  convolutions" of ControlNet, Zhang et al. 2023, section 3.1), and (b) tokens for cross-attention.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups (as many as divide ``channels``): the normalisation of every block of the
    course's U-Nets and attention layers (notebook 02's U-Net first)."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


def _heads_and_width(channels: int, heads: int) -> int:
    if channels < 1 or heads < 1 or channels % heads:
        raise ValueError(f"channels ({channels}) must be a positive multiple of heads ({heads})")
    return channels // heads


class SelfAttention(nn.Module):
    """x + W_o softmax(Q K^T / sqrt(d)) V with Q, K, V = W_qkv norm(x), per head (Vaswani et al. 2017, eq. 1).

    The self-attention block of DDPM's U-Net (Ho et al. 2020, appendix B, which places it at 16x16), here at the
    lowest resolution of the prior of notebook 05; the projections ``to_qkv`` and ``to_out`` are the linear layers
    LoRA adapts there. Weights N x heads x (H W) x (H W) come back with ``return_weights``; each row sums to 1.
    """

    def __init__(self, channels: int, heads: int = 2):
        super().__init__()
        self.heads, self.dim = heads, _heads_and_width(channels, heads)
        self.norm = group_norm(channels)
        self.to_qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        n, c, h, w = x.shape
        qkv = self.to_qkv(self.norm(x).flatten(2).transpose(1, 2))  # N x HW x 3C
        q, k, v = qkv.reshape(n, h * w, 3, self.heads, self.dim).permute(2, 0, 3, 1, 4)  # each N x heads x HW x d
        weights = (q @ k.transpose(-1, -2) / math.sqrt(self.dim)).softmax(dim=-1)
        out = self.to_out((weights @ v).transpose(1, 2).reshape(n, h * w, c))  # N x HW x C
        out = x + out.transpose(1, 2).reshape(n, c, h, w)
        return (out, weights) if return_weights else out


class LinearAttention(nn.Module):
    """x + W_o softmax_features(Q) (softmax_positions(K)^T V), per head (Efficient Attention, eq. 4); notebook 04.

    Cost O(H W d^2) per head instead of O((H W)^2 d): the d x d "context" sum_j k(j) v(j)^T is formed once.
    """

    def __init__(self, channels: int, heads: int = 2):
        super().__init__()
        self.heads, self.dim = heads, _heads_and_width(channels, heads)
        self.norm = group_norm(channels)
        self.to_qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.to_out = nn.Conv2d(channels, channels, 1)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (softmax over features), k (softmax over positions), v, each N x heads x d x (H W); notebook 04."""
        n, c, h, w = x.shape
        q, k, v = self.to_qkv(self.norm(x)).reshape(n, 3, self.heads, self.dim, h * w).unbind(1)
        return q.softmax(dim=2), k.softmax(dim=3), v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(x)
        context = torch.einsum("bhdn,bhen->bhde", k, v)  # sum over positions j of k(j) v(j)^T
        out = torch.einsum("bhde,bhdn->bhen", context, q)  # for each query i: context^T q(i)
        return x + self.to_out(out.reshape(n, c, h, w))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The implied attention matrix a_ij = q(i) . k(j), N x heads x (H W) x (H W); rows sum to 1 (notebook 04).

        Forming it costs what linear attention avoids: for small inputs, checks and heat maps only.
        """
        q, k, _ = self.qkv(x)
        return torch.einsum("bhdi,bhdj->bhij", q, k)


class CrossAttention(nn.Module):
    """x + W_o softmax(Q K^T / sqrt(d)) V, Q from the feature map x, K and V from ``tokens`` (notebook 04).

    ``x``: N x C x H x W (H W queries); ``tokens``: N x L x D (L keys and values). With ``return_weights`` the
    forward pass also returns the attention weights, N x heads x (H W) x L, each row summing to 1.
    """

    def __init__(self, channels: int, token_dim: int, heads: int = 2):
        super().__init__()
        self.heads, self.dim = heads, _heads_and_width(channels, heads)
        self.norm = group_norm(channels)
        self.token_norm = nn.LayerNorm(token_dim)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_kv = nn.Linear(token_dim, 2 * channels, bias=False)
        self.to_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, return_weights: bool = False):
        n, c, h, w = x.shape
        if tokens.dim() != 3 or tokens.shape[0] != n:
            raise ValueError(f"tokens must be N x L x D with N = {n}, got {tuple(tokens.shape)}")
        q = self.to_q(self.norm(x).flatten(2).transpose(1, 2))  # N x HW x C
        k, v = self.to_kv(self.token_norm(tokens)).chunk(2, dim=-1)  # N x L x C each
        split = lambda z: z.reshape(n, z.shape[1], self.heads, self.dim).transpose(1, 2)  # N x heads x len x d
        q, k, v = split(q), split(k), split(v)
        weights = (q @ k.transpose(-1, -2) / math.sqrt(self.dim)).softmax(dim=-1)  # N x heads x HW x L
        out = (weights @ v).transpose(1, 2).reshape(n, h * w, c).transpose(1, 2).reshape(n, c, h, w)
        out = x + self.to_out(out)
        return (out, weights) if return_weights else out


def feature_tokens(features: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """A feature map N x C x H x W as N x (H W) x C tokens, with a learned position embedding (C x H x W) added.

    Attention is blind to order, so each token carries where on the canvas it came from. Taught in notebook 04.
    """
    if position.shape != features.shape[1:]:
        raise ValueError(f"position embedding {tuple(position.shape)} does not fit features {tuple(features.shape)}")
    return (features + position).flatten(2).transpose(1, 2)


class ControlEncoder(nn.Module):
    """A small CNN over the condition [c, m] (2 channels): per-resolution features and tokens (notebook 04).

    Level i works at 32 / 2^i pixels with ``widths[i]`` channels (the U-Net's widths): one convolution (stride 2
    from level 1 on), GroupNorm and SiLU per level. ``forward`` returns
    (features, tokens): ``features[i]`` is added to the U-Net's level-i features through a 1x1 convolution whose
    weights start at zero, so an untrained encoder changes nothing (ControlNet's zero convolutions);
    ``tokens[i]`` are the level's features as N x (H W) x widths[i] tokens for cross-attention, for the levels in
    ``token_levels``. With ``add_features=False`` (tokens only) there are no zero convolutions and no features.
    """

    def __init__(self, widths: tuple[int, ...], token_levels: tuple[int, ...] = (2,), size: int = 32,
                 in_channels: int = 2, add_features: bool = True):
        super().__init__()
        if any(not 0 <= level < len(widths) for level in token_levels):
            raise ValueError(f"token levels {token_levels} must index the {len(widths)} levels")
        self.token_levels = tuple(token_levels)
        self.blocks = nn.ModuleList()
        ch = in_channels
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            self.blocks.append(nn.Sequential(nn.Conv2d(ch, w, 3, stride=stride, padding=1), group_norm(w), nn.SiLU()))
            ch = w
        self.zero_convs = nn.ModuleList(nn.Conv2d(w, w, 1) for w in widths) if add_features else None
        for conv in self.zero_convs or ():
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.positions = nn.ParameterDict({
            str(level): nn.Parameter(0.02 * torch.randn(widths[level], size >> level, size >> level))
            for level in self.token_levels
        })

    def forward(self, condition: torch.Tensor) -> tuple[list[torch.Tensor], dict[int, torch.Tensor]]:
        h = condition
        features, tokens = [], {}
        for level, block in enumerate(self.blocks):
            h = block(h)
            if self.zero_convs is not None:
                features.append(self.zero_convs[level](h))
            if level in self.token_levels:
                tokens[level] = feature_tokens(h, self.positions[str(level)])
        return features, tokens
