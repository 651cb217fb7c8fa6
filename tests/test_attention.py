"""The attention blocks of notebook 04: shapes, weights that sum to 1, linear attention against a direct
computation, cross-attention against its formula, the control encoder's zero start."""

import math

import pytest
import torch

from course_utils import attention


@pytest.mark.parametrize("n, size", [(1, 32), (3, 16), (2, 8)])
def test_linear_attention_shapes_and_weights(n, size):
    torch.manual_seed(0)
    block = attention.LinearAttention(8, heads=2)
    x = torch.randn(n, 8, size, size)
    assert block(x).shape == x.shape
    w = block.weights(x)
    assert w.shape == (n, 2, size * size, size * size)
    assert torch.all(w > 0) and torch.allclose(w.sum(-1), torch.ones(n, 2, size * size), atol=1e-5)


def test_linear_attention_equals_the_direct_computation():
    """out_i = sum_j a_ij v_j with the N x N matrix a_ij = q_i . k_j formed explicitly, on a small input."""
    torch.manual_seed(1)
    block = attention.LinearAttention(4, heads=2)
    x = torch.randn(2, 4, 5, 5)
    q, k, v = block.qkv(x)  # N x heads x d x HW
    a = torch.einsum("bhdi,bhdj->bhij", q, k)
    direct = torch.einsum("bhij,bhej->bhei", a, v).reshape(2, 4, 5, 5)
    assert torch.allclose(block(x), x + block.to_out(direct), atol=1e-5)
    # and the block does attend: moving one far-away pixel changes every output
    x2 = x.clone()
    x2[:, :, 4, 4] += 3
    assert (block(x2) - block(x))[:, :, 0, 0].abs().max() > 1e-4


def test_cross_attention_against_its_formula():
    torch.manual_seed(2)
    block = attention.CrossAttention(4, token_dim=6, heads=1)
    x, tokens = torch.randn(2, 4, 3, 3), torch.randn(2, 5, 6)
    out, w = block(x, tokens, return_weights=True)
    assert out.shape == x.shape and w.shape == (2, 1, 9, 5)
    assert torch.allclose(w.sum(-1), torch.ones(2, 1, 9), atol=1e-6)
    q = block.to_q(block.norm(x).flatten(2).transpose(1, 2))
    k, v = block.to_kv(block.token_norm(tokens)).chunk(2, dim=-1)
    ref = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(4), dim=-1) @ v  # N x 9 x 4
    assert torch.allclose(out, x + block.to_out(ref.transpose(1, 2).reshape(2, 4, 3, 3)), atol=1e-5)
    # queries attend to the tokens: changing one token changes the output; the order of tokens does not matter
    assert not torch.allclose(block(x, tokens * torch.tensor([1, 1, 1, 1, 2.0]).view(1, 5, 1)), out)
    assert torch.allclose(block(x, tokens.flip(1)), out, atol=1e-5)
    with pytest.raises(ValueError, match="tokens"):
        block(x, tokens[0])


def test_control_encoder_starts_at_zero_and_gives_tokens():
    torch.manual_seed(3)
    enc = attention.ControlEncoder((8, 16, 16), token_levels=(1, 2))
    features, tokens = enc(torch.randn(3, 2, 32, 32))
    assert [f.shape for f in features] == [(3, 8, 32, 32), (3, 16, 16, 16), (3, 16, 8, 8)]
    assert all(torch.equal(f, torch.zeros_like(f)) for f in features)  # zero convolutions: no effect before training
    assert tokens[1].shape == (3, 256, 16) and tokens[2].shape == (3, 64, 16) and set(tokens) == {1, 2}
    with pytest.raises(ValueError, match="token levels"):
        attention.ControlEncoder((8, 16), token_levels=(2,))
    with pytest.raises(ValueError, match="position"):
        attention.feature_tokens(torch.zeros(1, 4, 8, 8), torch.zeros(4, 4, 4))


def test_heads_must_divide_the_channels():
    with pytest.raises(ValueError, match="multiple of heads"):
        attention.LinearAttention(6, heads=4)


def test_control_encoder_tokens_only_has_no_feature_path():
    enc = attention.ControlEncoder((8, 16, 32), token_levels=(2,), add_features=False)
    feats, toks = enc(torch.randn(2, 2, 32, 32))
    assert feats == [] and enc.zero_convs is None and toks[2].shape == (2, 64, 32)
    full = attention.ControlEncoder((8, 16, 32), token_levels=(2,))
    extra = sum(p.numel() for p in full.zero_convs.parameters())
    assert sum(p.numel() for p in full.parameters()) - extra == sum(p.numel() for p in enc.parameters())
